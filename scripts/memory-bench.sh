#!/usr/bin/env bash
# Broker memory while it takes data: GIB topics of 1 GiB each (1 KiB records, acks=1, six
# partitions, kbench's 1 MB batches), the broker's resident memory after each, then after
# 15 s idle. Runs against the benchmark cluster of scripts/kbench.sh:
#
#   scripts/kbench.sh exec scripts/memory-bench.sh        (GIB=6 by default)
#
# Run nothing else meanwhile.
set -euo pipefail
: "${BROKER:?run under scripts/kbench.sh exec}" "${KBENCH:?}" "${BROKER_PID:?}"
rss_mib() { awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$BROKER_PID/status"; }
echo "broker RSS at start: $(rss_mib) MiB"
for i in $(seq 1 "${GIB:-6}"); do
  topic=memory-$i-$RANDOM
  "$KBENCH" create -b "$BROKER" -t "$topic" -p 6 -r 1 >/dev/null
  rate=$("$KBENCH" produce -b "$BROKER" -t "$topic" -s 1024 -n 1048576 -d 120 --acks 1 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["mib_per_s"])')
  echo "after $i GiB: RSS $(rss_mib) MiB (this GiB at $rate MiB/s)"
done
sleep 15
echo "after 15 s idle: RSS $(rss_mib) MiB"
