#!/usr/bin/env bash
# The test suite: unit tests, end-to-end tests (real files, plugins built
# from source) and a smoke run of the benchmark. Plugins are built by the
# build scripts; they need the wasm32-unknown-unknown target.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
cargo test --workspace --release --all-targets
