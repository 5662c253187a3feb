#!/usr/bin/env bash
# Benchmark (release build): produce latency with and without the log cleaner running, and
# the size and failover load time of a compacted __consumer_offsets under a committing group.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins
exec .venv/bin/python integration-tests/compaction_bench.py "$@"
