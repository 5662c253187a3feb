#!/usr/bin/env bash
# Produce throughput with what it costs the brokers: MiB/s, all brokers' CPU-ms and minor
# page faults per MiB, the client's CPU and the share of the machine left idle (issue 17,
# items 3 and 5). Run it under the harness's cluster, one broker or three:
#
#   [ACKS=1|all] scripts/kbench.sh exec scripts/bench-produce-cpu.sh [ROUNDS]
#   BROKERS=3 TRIBUTARY_MIN_INSYNC_REPLICAS=2 ACKS=all scripts/kbench.sh exec scripts/bench-produce-cpu.sh
#
# Each round: a fresh topic of six partitions (replication factor 3 with three brokers,
# else 1), then 1,000,000 records of 1 KiB from kbench; CPU and faults from
# /proc/<pid>/stat of every broker, idle from /proc/stat, around the produce.
# WARM_GIB=n writes and deletes an n GiB file before each round (outside what is measured),
# so that the round starts with that much freed memory the host still backs (README, "The
# machine's memory, measured"; with the page reporting settings WARM_MEMORY_GIB in
# scripts/kbench.sh sets).
set -euo pipefail
: "${KBENCH:?run this under scripts/kbench.sh exec}" "${BROKER:?}" "${BROKER_PID:?}"
ROUNDS=${1:-3}
ACKS=${ACKS:-1}
pids=${BROKER_PIDS:-$BROKER_PID}
n=$(wc -w <<<"$pids")
rf=$((n >= 3 ? 3 : 1))
brokers() { # faults ticks, summed over the brokers
  local f=0 t=0 a b p
  for p in $pids; do
    read -r a b < <(awk '{print $10, $14+$15}' "/proc/$p/stat")
    f=$((f + a)); t=$((t + b))
  done
  echo "$f $t"
}
machine() { awk '/^cpu /{print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat; }
for _ in $(seq "$ROUNDS"); do
  topic=cpu-$RANDOM
  "$KBENCH" create -b "$BROKER" -t "$topic" -p 6 -r "$rf" >/dev/null
  sleep 2
  if [ -n "${WARM_GIB:-}" ]; then
    warm=$(mktemp "${TMPDIR:-/tmp}/warm.XXXXXX")
    dd if=/dev/zero of="$warm" bs=1M count=$((WARM_GIB * 1024)) status=none || { rm -f "$warm"; exit 1; }
    rm -f "$warm"
  fi
  sync
  read -r f0 t0 < <(brokers)
  read -r all0 idle0 < <(machine)
  out=$("$KBENCH" produce -b "$BROKER" -t "$topic" -s 1024 -n 1000000 -d 300 --acks "$ACKS")
  read -r f1 t1 < <(brokers)
  read -r all1 idle1 < <(machine)
  mib=$(grep -o '"mib_per_s":[0-9.]*' <<<"$out" | cut -d: -f2)
  client=$(grep -o '"client_cpu_s":[0-9.]*' <<<"$out" | cut -d: -f2)
  python3 -c "
mib = 1e6 * 1024 / 2**20
print(f'brokers={$n} rf={$rf} acks=$ACKS {float(\"$mib\"):.1f} MiB/s, brokers {($t1 - $t0) * 10 / mib:.2f} CPU-ms/MiB,'
      f' {($f1 - $f0) / mib:.0f} faults/MiB, client {float(\"${client:-0}\"):.2f} CPU-s, machine idle {100 * ($idle1 - $idle0) / ($all1 - $all0):.1f} %')"
done
