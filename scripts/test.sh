#!/usr/bin/env bash
# The whole test suite: unit tests, then the integration tests that run real ZooKeeper,
# the broker and coordinator binaries, and real Kafka clients (kafka-python,
# confluent-kafka, kcat). Between them, a short run of the cargo-fuzz targets
# (scripts/fuzz.sh smoke). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== build"
cargo build --workspace --all-targets --locked  # the targets `cargo test` builds, with the same features, so it compiles nothing again
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== unit tests"
cargo test --workspace --locked
echo "== fuzzing, short run (the 10-minute runs: scripts/fuzz.sh 600)"
scripts/fuzz.sh smoke
echo "== integration tests"
.venv/bin/python -m pytest integration-tests -q -p no:cacheprovider "$@"
