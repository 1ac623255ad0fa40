#!/usr/bin/env bash
# Guest toolchains beyond Rust, at pinned versions, installed once into
# ~/.cache/weir (kept between runs): componentize-py for Python plugins.
set -euo pipefail
COMPONENTIZE_PY_VERSION=0.25.1
VENV="${WEIR_PY_VENV:-$HOME/.cache/weir/py-venv}"
if [ "$("$VENV/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')" != "$COMPONENTIZE_PY_VERSION" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "componentize-py==$COMPONENTIZE_PY_VERSION"
    echo "installed componentize-py $COMPONENTIZE_PY_VERSION into $VENV" >&2
fi
