#!/usr/bin/env bash
# Restart benchmark (release build): how soon a broker with 2,000 partitions and a few GiB
# answers ApiVersions and Metadata after its listener opens, while partitions still recover.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins
exec .venv/bin/python integration-tests/restart_bench.py "$@"
