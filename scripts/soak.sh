#!/usr/bin/env bash
# Crash soak: the crash-anywhere tests (file sink, kills during plugin
# swaps, and Kafka to Kafka
# exactly once against the test broker, also with broker restarts and
# failing checkpoints) with 100 SIGKILLs at random moments each, every run restarted with `--from-savepoint latest`, then the
# committed output compared with an uninterrupted run; then a JavaScript
# plugin holding ~700k keys through its checkpoints. WEIR_CRASH_RUNS
# overrides 100.
set -euo pipefail
cd "$(dirname "$0")/.."
export WEIR_CRASH_RUNS="${WEIR_CRASH_RUNS:-100}"
cargo test --release -p weir-tests --test all crash_anywhere_and_restart_from_latest -- --nocapture
cargo test --release -p weir-tests --test all kill_9_during_swaps -- --nocapture
eval "$(scripts/kafka.sh start)"
cargo test --release -p weir-tests --test all kafka_kill_9 -- --nocapture
# Kafka exactly once under SIGKILLs, broker restarts and failing
# checkpoints at once (epochs split and spilled), then a 2 GiB epoch
# produced exactly once across a crash with memory bounded by its budget.
cargo test --release -p weir-tests --test all kafka_soak::kills_broker_restarts -- --nocapture
cargo test --release -p weir-tests --test all kafka_soak::a_2_gib_epoch -- --ignored --nocapture
# Group mode: three processes on a 12-partition topic with state in S3
# (status, a group savepoint, dead letters), the KIP-848 protocol, then
# kill -9 of one process, a fourth joining and one paused past its session
# timeout; the output must stay exactly the DFA's.
eval "$(scripts/s3-server.sh start)"
cargo test --release -p weir-tests --test all group:: -- --ignored --nocapture --test-threads 1
# About 700k live keys in the JavaScript plugin, checkpointed (slow).
cargo test --release -p weir-tests --test all a_javascript_plugin_with_700k_keys -- --ignored --nocapture
