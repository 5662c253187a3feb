#!/usr/bin/env bash
# Puts the produce of scripts/bench.sh (integration-tests/bench.py: kcat reading a file of
# newline-terminated records) and of the shared harness (kbench on librdkafka from memory)
# on one broker, alternating, so that the two benchmarks' figures can be read side by side
# (issue 17, item 6). Run it under the harness's cluster:
#
#   scripts/kbench.sh exec scripts/bench-agree.sh [ROUNDS] [PARTITIONS] [--after-small]
#
# Each round produces 1,000,000 records of 1 KiB with acks=1 into a fresh topic, once with
# bench.py's kcat command line and once with kbench, and prints for each: MiB/s from the
# wall clock around the client, the broker's CPU-ms per MiB (/proc/<pid>/stat) and the
# client's own CPU-s (user, system). --after-small first runs bench.py's 100 B scenarios
# (3,000,000 records with acks=1, read back with kcat, then with acks=all), which is what
# bench.py does before its 1 KiB runs. Topics are not deleted (a deletion makes sled shrink
# its file on a later write; README, "The tail after a topic is deleted").
set -euo pipefail
: "${KBENCH:?run this under scripts/kbench.sh exec}" "${BROKER:?}" "${BROKER_PID:?}"
ROUNDS=${1:-5}
PARTITIONS=${2:-4}
AFTER_SMALL=${3:-}
SIZE=1024
COUNT=1000000

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# bench.py's own record file (record_file in integration-tests/bench.py), so both runs read
# the very file bench.py reads.
records() { # size count
  (cd "$ROOT/integration-tests" && "$ROOT/.venv/bin/python" -c \
    'import sys; from bench import record_file; print(record_file(int(sys.argv[1]), int(sys.argv[2])))' "$1" "$2")
}

new_topic() {
  local topic=$1-$RANDOM$RANDOM
  "$KBENCH" create -b "$BROKER" -t "$topic" -p "$PARTITIONS" -r 1 >/dev/null
  echo "$topic"
}

broker_ticks() { awk '{print $14 + $15}' "/proc/$BROKER_PID/stat"; }

# bench.py's kcat command line; TIME_FILE set: under /usr/bin/time, which writes there.
kcat_produce() { # topic file acks
  ${TIME_FILE:+/usr/bin/time -f "%U %S" -o "$TIME_FILE"} kcat -P -b "$BROKER" -t "$1" -X linger.ms=5 \
    -X batch.size=1000000 -X "acks=$3" -X queue.buffering.max.kbytes=1048576 <"$2"
}

kbench_produce() { # topic
  ${TIME_FILE:+/usr/bin/time -f "%U %S" -o "$TIME_FILE"} "$KBENCH" produce -b "$BROKER" -t "$1" \
    -s "$SIZE" -n "$COUNT" -d 120 --acks 1 >/dev/null
}

# One measured produce: prints client, MiB/s, broker CPU-ms/MiB, client CPU-s.
measure() { # kcat|kbench
  local name=$1 topic times start end t0 t1
  topic=$(new_topic "agree-$name")
  sync
  times=$(mktemp)
  t0=$(broker_ticks)
  start=$(date +%s.%N)
  if [ "$name" = kcat ]; then
    TIME_FILE=$times kcat_produce "$topic" "$FILE" 1
  else
    TIME_FILE=$times kbench_produce "$topic"
  fi
  end=$(date +%s.%N)
  t1=$(broker_ticks)
  read -r user sys <"$times"
  rm -f "$times"
  python3 -c "
import os, sys
name, start, end, t0, t1, user, sys_s, size, count = sys.argv[1:]
mib = int(count) * int(size) / 2**20
wall = float(end) - float(start)
tick = os.sysconf('SC_CLK_TCK')
print(f'{name:7} {wall:5.2f} s  {mib / wall:4.0f} MiB/s  broker {(float(t1) - float(t0)) / tick * 1000 / mib:.2f} CPU-ms/MiB'
      f'  client {user} s user {sys_s} s system')" "$name" "$start" "$end" "$t0" "$t1" "$user" "$sys" "$SIZE" "$COUNT"
}

FILE=$(records "$SIZE" "$COUNT")

if [ "$AFTER_SMALL" = --after-small ]; then
  small=$(records 100 3000000)
  for acks in 1 all; do
    topic=$(new_topic "agree-small-$acks")
    kcat_produce "$topic" "$small" "$acks"
    if [ "$acks" = 1 ]; then
      kcat -C -b "$BROKER" -t "$topic" -o beginning -e -q -c 3000000 -X fetch.max.bytes=52428800 >/dev/null
    fi
  done
fi

echo "1,000,000 records of $SIZE B, acks=1, $PARTITIONS partitions, $ROUNDS rounds"
for _ in $(seq 1 "$ROUNDS"); do
  measure kcat
  measure kbench
done
