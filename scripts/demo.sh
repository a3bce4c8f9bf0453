#!/usr/bin/env bash
# Runs the collector with the demo shop (embedded defaults, no setup), from the project's own
# environment (.venv, built from uv.lock when missing): ./scripts/demo.sh [intilery demo options]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
make_env --inexact
exec "$VENV/bin/intilery" demo "$@"
