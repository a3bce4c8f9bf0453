#!/usr/bin/env bash
# Installs everything the test suite needs, then runs all of it: ./scripts/test.sh [pytest args]
# Python packages go into the project's own environment (.venv, or $INTILERY_VENV), built from
# uv.lock; system tools (Chromium, nats-server, Node.js) come from apt when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

say() { printf '\n== %s\n' "$*"; }

# System packages: Chromium for the browser tests, nats-server for the scale-out tests,
# Node.js and npm to rebuild the tag and check that the shipped one is fresh, strace, nginx,
# PostgreSQL (the tests start their own servers on free 127.0.0.1 ports).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v strace >/dev/null 2>&1 || missing+=(strace)  # proves fsync comes before each 200
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)  # first-party mode behind a proxy
command -v curl >/dev/null 2>&1 || missing+=(curl)  # the README's examples, run as written (tests/core/test_readme.py)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)  # tests/mail: a DKIM key made for the test
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 || missing+=(postgresql)  # profiles on PostgreSQL
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    say "installing ${missing[*]} (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

make_env --all-extras

if ! command -v chromium >/dev/null 2>&1; then
    say "no system Chromium: fetching Playwright's build"
    "$VENV/bin/python" -m playwright install chromium
fi

say "installing the tag's pinned build tool (npm ci)"
(cd tag && npm ci --no-audit --no-fund --loglevel=error)
say "installing the pinned Segment and RudderStack SDKs the compatibility tests drive (npm ci)"
(cd tests/browser/sdks && npm ci --no-audit --no-fund --loglevel=error)

say "running the test suite"
exec "$VENV/bin/python" -m pytest "$@"
