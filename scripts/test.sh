#!/usr/bin/env bash
# The test suite: unit tests, end-to-end tests (real files, plugins built
# from source, the `weir` binary killed and restarted, a real S3-compatible
# server and a real Apache Kafka broker on 127.0.0.1) and a smoke run of the
# benchmarks. Plugins are built
# by the build scripts; they need the wasm32-unknown-unknown target and
# componentize-py (scripts/install-toolchains.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
bash scripts/install-toolchains.sh
# The S3 server for the S3 tests (moto, installed once into a venv).
eval "$(scripts/s3-server.sh start)"
# A real Apache Kafka broker for the Kafka tests (from Maven Central with
# mvn, cached; needs Java 17+).
eval "$(scripts/kafka.sh start)"
cargo test --workspace --release --all-targets
# The README's marked examples, against the weir built above and the broker.
bash scripts/readme-check.sh
