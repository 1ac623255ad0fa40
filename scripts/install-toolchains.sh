#!/usr/bin/env bash
# Guest toolchains beyond Rust, at pinned versions: componentize-py for
# Python plugins (into ~/.cache/weir, kept between runs), componentize-js
# for JavaScript plugins (guest-sdk/js/node_modules, from package-lock.json)
# and Debian's clang, lld and wasi-libc for C plugins.
set -euo pipefail
COMPONENTIZE_PY_VERSION=0.25.1
VENV="${WEIR_PY_VENV:-$HOME/.cache/weir/py-venv}"
if [ "$("$VENV/bin/componentize-py" --version 2>/dev/null | awk '{print $2}')" != "$COMPONENTIZE_PY_VERSION" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "componentize-py==$COMPONENTIZE_PY_VERSION"
    echo "installed componentize-py $COMPONENTIZE_PY_VERSION into $VENV" >&2
fi
cd "$(dirname "$0")/.."
if ! command -v clang >/dev/null || [ ! -f /usr/include/wasm32-wasi/stdlib.h ] \
    || ! ls /usr/lib/llvm-14/lib/clang/14*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang lld wasi-libc libclang-rt-14-dev-wasm32 >/dev/null
    echo "installed clang, lld, wasi-libc and the wasm32 compiler runtime (Debian)" >&2
fi
if [ ! -d guest-sdk/js/node_modules/@bytecodealliance/componentize-js ]; then
    (cd guest-sdk/js && npm ci --no-audit --no-fund --loglevel=error)
    echo "installed componentize-js into guest-sdk/js/node_modules" >&2
fi
# Go (1.24 or newer: go:wasmexport) for Go plugins: not installed here, only
# checked, so a missing Go fails with a clear message before the build does.
GO="${WEIR_GO:-$(command -v /usr/local/go/bin/go || command -v go || true)}"
if [ -z "$GO" ]; then
    echo "Go is missing: Go operators (plugins/state-machine-go) need Go 1.24 or newer" \
        "(https://go.dev/dl/, into /usr/local/go, or set WEIR_GO)" >&2
    exit 1
fi
# Rust's wasm32-wasip2 target, for the test plugin built for it.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
fi
# Chromium (Debian's) for the status page's browser tests.
if ! command -v chromium >/dev/null; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    echo "installed chromium (Debian)" >&2
fi
