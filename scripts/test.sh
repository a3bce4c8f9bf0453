#!/usr/bin/env bash
# Installs everything the test suite needs, then runs all of it: ./scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

# System packages: Chromium for the browser tests, nats-server for the scale-out tests.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    say "installing ${missing[*]} (apt-get)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

say "installing the collector with its test extras (pip)"
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

if ! command -v chromium >/dev/null 2>&1; then
    say "no system Chromium: fetching Playwright's build"
    python3 -m playwright install chromium
fi

if [ -f tag/package-lock.json ] && command -v npm >/dev/null 2>&1; then
    say "installing the tag's pinned build tool (npm ci)"
    (cd tag && npm ci --no-audit --no-fund --loglevel=error)
fi

say "running the test suite"
exec python3 -m pytest "$@"
