#!/usr/bin/env bash
# Build @NAME@.wasm: bindings, clang for wasm32-wasi (Debian's clang, lld,
# wasi-libc and libclang-rt-14-dev-wasm32), then a component.
set -euo pipefail
cd "$(dirname "$0")"
"${WEIR:-weir}" component build-c operator.c --sdk "@SDK@" -o @NAME@.wasm
