#!/usr/bin/env bash
# Build a Go operator (a Go module using guest-sdk/go) into a Weir plugin
# component, in one command:
#
#   scripts/go-operator.sh plugins/state-machine-go state-machine-go.wasm
#
# It runs `go build` for wasip1 as a reactor (-buildmode=c-shared), then
# `weir component new`, which embeds the weir:plugin@0.1.0 world and adapts
# WASI preview 1 with the reactor adapter matching the host's wasmtime.
# Go is $WEIR_GO, else /usr/local/go/bin/go, else `go` on PATH; `weir` is
# $WEIR, else `weir` on PATH, else `cargo run -p weir` in this repository.
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: $0 GO_MODULE_DIR OUT.wasm" >&2
    exit 2
fi
dir=$1
out=$(realpath -m "$2")
go="${WEIR_GO:-$(command -v /usr/local/go/bin/go || command -v go || true)}"
if [ -z "$go" ]; then
    echo "Go is missing: Go operators need Go 1.24 or newer (https://go.dev/dl/; or set WEIR_GO)" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$dir" && GOOS=wasip1 GOARCH=wasm "$go" build -buildmode=c-shared -trimpath -o "$tmp/op.core.wasm" .)
if [ -n "${WEIR:-}" ]; then
    "$WEIR" component new "$tmp/op.core.wasm" -o "$out"
elif command -v weir >/dev/null; then
    weir component new "$tmp/op.core.wasm" -o "$out"
else
    cargo run --release -q --manifest-path "$(dirname "$0")/../Cargo.toml" -p weir -- \
        component new "$tmp/op.core.wasm" -o "$out"
fi
