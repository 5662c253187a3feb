#!/usr/bin/env bash
# Benchmark (release build): transactional produce (transactions of 100 and 10,000 records)
# and read_committed consume, beside the plain runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins
exec .venv/bin/python integration-tests/txn_bench.py "$@"
