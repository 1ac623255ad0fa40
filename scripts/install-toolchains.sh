#!/usr/bin/env bash
# Guest toolchains beyond Rust, at pinned versions: componentize-py for
# Python plugins (into ~/.cache/weir, kept between runs) and componentize-js
# for JavaScript plugins (guest-sdk/js/node_modules, from package-lock.json).
set -euo pipefail
COMPONENTIZE_PY_VERSION=0.25.1
VENV="${WEIR_PY_VENV:-$HOME/.cache/weir/py-venv}"
if [ "$("$VENV/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')" != "$COMPONENTIZE_PY_VERSION" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "componentize-py==$COMPONENTIZE_PY_VERSION"
    echo "installed componentize-py $COMPONENTIZE_PY_VERSION into $VENV" >&2
fi
cd "$(dirname "$0")/.."
if [ ! -d guest-sdk/js/node_modules/@bytecodealliance/componentize-js ]; then
    (cd guest-sdk/js && npm ci --no-audit --no-fund --loglevel=error)
    echo "installed componentize-js into guest-sdk/js/node_modules" >&2
fi
