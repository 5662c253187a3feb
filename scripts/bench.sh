#!/usr/bin/env bash
# Benchmark (release build): produce/consume throughput and end-to-end latency with librdkafka.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins
exec .venv/bin/python integration-tests/bench.py "$@"
