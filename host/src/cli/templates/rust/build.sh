#!/usr/bin/env bash
# Build @NAME@.wasm: the crate for wasm32-unknown-unknown (no WASI), then a
# component (`rustup target add wasm32-unknown-unknown` once).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --target wasm32-unknown-unknown
"${WEIR:-weir}" component new "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/@CRATE@.wasm" \
    -o @NAME@.wasm
