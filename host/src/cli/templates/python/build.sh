#!/usr/bin/env bash
# Build @NAME@.wasm with componentize-py (scripts/install-toolchains.sh in
# the Weir source tree installs the pinned version), no WASI.
set -euo pipefail
cd "$(dirname "$0")"
SDK="@SDK@"
PY="${COMPONENTIZE_PY:-$HOME/.cache/weir/py-venv/bin/componentize-py}"
"$PY" -d "$SDK/wit/v0.1.0" -w operator-plugin componentize app \
    -p . -p "$SDK/guest-sdk/python" -s -o @NAME@.wasm
