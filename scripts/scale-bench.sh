#!/usr/bin/env bash
# Scale benchmark (release build): produce/consume over 100 to 10,000 partitions on one
# broker, memory per idle partition, Metadata for all topics, restart to serving.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --bins
exec .venv/bin/python integration-tests/scale_bench.py "$@"
