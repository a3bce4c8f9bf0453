#!/usr/bin/env bash
# The project's own virtual environment, built from uv.lock; sourced by the other scripts.
#   ensure_uv                    the environment exists and holds the locked uv
#   make_env [uv sync options]   ... and the locked dependencies (e.g. make_env --all-extras)
# The environment is $INTILERY_VENV (default .venv), made when missing and reused after;
# nothing is installed outside it. uv is the version pinned in pyproject.toml's dev group
# (and so in uv.lock), bootstrapped into the environment with pip.
VENV=${INTILERY_VENV:-.venv}
export UV_PROJECT_ENVIRONMENT="$VENV" UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1

ensure_uv() {
    if [ ! -x "$VENV/bin/python" ]; then
        printf '\n== creating the virtual environment %s\n' "$VENV"
        if ! python3 -m venv "$VENV"; then
            echo "python3 -m venv failed: install the venv module (Debian/Ubuntu: apt-get install python3-venv)" >&2
            return 1
        fi
    fi
    local want have
    want=$("$VENV/bin/python" -c 'import tomllib; print(next(p["version"] for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "uv"))')
    have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("uv"))' 2>/dev/null || true)
    if [ "$want" != "$have" ]; then
        printf '\n== installing uv %s into %s (pip)\n' "$want" "$VENV"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv==$want"
    fi
}

make_env() {
    ensure_uv || return 1
    if ! "$VENV/bin/uv" lock --check --quiet; then
        echo "uv.lock does not match pyproject.toml: run ./scripts/lock.sh and commit uv.lock" >&2
        return 1
    fi
    printf '\n== installing the locked dependencies into %s (uv sync --frozen %s)\n' "$VENV" "$*"
    "$VENV/bin/uv" sync --frozen --quiet --python "$VENV/bin/python" "$@"
}
