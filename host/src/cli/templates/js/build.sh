#!/usr/bin/env bash
# Build @NAME@.wasm with componentize-js (scripts/install-toolchains.sh in
# the Weir source tree installs it into guest-sdk/js), no WASI.
set -euo pipefail
cd "$(dirname "$0")"
node "@SDK@/guest-sdk/js/build.mjs" operator.js @NAME@.wasm
