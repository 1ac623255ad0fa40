#!/usr/bin/env bash
# Hot-swap soak: 1000 swaps back and forth in one process (two builds of
# the state-machine plugin, 10k live keys), through the control endpoint.
# Prints the pause of each 100th swap and the process's resident memory,
# which must stay flat. Bounded: about a minute on 2 cores.
#   bash scripts/swap-soak.sh            # 1000 swaps
#   WEIR_SWAPS=200 bash scripts/swap-soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WEIR_SWAPS="${WEIR_SWAPS:-1000}" WEIR_SWAP_KEYS="${WEIR_SWAP_KEYS:-10000}" \
  cargo bench -p weir-tests --bench swap
