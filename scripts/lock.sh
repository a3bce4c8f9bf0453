#!/usr/bin/env bash
# Refreshes uv.lock from pyproject.toml: every dependency of the package and of each extra,
# resolved within the ranges, pinned and hashed. Commit the result.
#   ./scripts/lock.sh               re-resolve what pyproject.toml changed
#   ./scripts/lock.sh --upgrade     take the newest release of everything
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_uv
"$VENV/bin/uv" lock "$@"
