#!/usr/bin/env bash
# Times a clean restart of a broker holding GIB GiB (issue 17, item 4), with the memory and
# page faults around it. Run it under the harness's cluster:
#
#   [GIB=10] [COLD=1] scripts/kbench.sh exec scripts/bench-restart.sh
#
# kbench produces GIB GiB of 1 KiB records (acks=1) into a fresh topic of six partitions;
# the broker's RSS is read right after and 20 s later; the broker is stopped with SIGTERM
# and, once gone, started again from the same binary with the same arguments and
# environment (so _RJEM_MALLOC_CONF given to scripts/kbench.sh reaches both). Prints the
# time from that start to its "accepting Kafka clients" line and the page faults, CPU and
# RSS of the new process at that moment. COLD=1 drops the page cache first (needs root),
# so that sled reads its files back from the disk. The restarted broker is stopped at the
# end; the cluster's own teardown removes its data.
set -euo pipefail
: "${KBENCH:?run this under scripts/kbench.sh exec}" "${BROKER:?}" "${BROKER_PID:?}"
GIB=${GIB:-10}
exe=$(readlink "/proc/$BROKER_PID/exe")
mapfile -d '' envs <"/proc/$BROKER_PID/environ"
mapfile -d '' args <"/proc/$BROKER_PID/cmdline"
log=$(mktemp /tmp/bench-restart.XXXXXX.log)
rss_mib() { awk '/VmRSS/{print int($2/1024)}' "/proc/$1/status"; }

topic=restart-$RANDOM
"$KBENCH" create -b "$BROKER" -t "$topic" -p 6 -r 1 >/dev/null
sleep 1
mib_s=$("$KBENCH" produce -b "$BROKER" -t "$topic" -s 1024 -n $((GIB * 1024 * 1024)) -d 1800 --acks 1 \
  | grep -o '"mib_per_s":[0-9.]*' | cut -d: -f2)
rss_after=$(rss_mib "$BROKER_PID")
sleep 20
rss_idle=$(rss_mib "$BROKER_PID")
kill -TERM "$BROKER_PID"
while kill -0 "$BROKER_PID" 2>/dev/null; do sleep 0.1; done
if [ -n "${COLD:-}" ]; then
  sync
  echo 3 >/proc/sys/vm/drop_caches
fi
start=$(date +%s.%N)
env -i "${envs[@]}" "$exe" "${args[@]:1}" >"$log" 2>&1 &
pid=$!
# Whatever ends the script from here, the restarted broker (not one of scripts/kbench.sh's
# processes, so not in its teardown) goes with it, before that teardown removes its data.
trap 'kill -TERM "$pid" 2>/dev/null || true' EXIT
until grep -q "accepting Kafka clients" "$log"; do
  kill -0 "$pid" 2>/dev/null || { echo "the restarted broker exited; its log: $log" >&2; exit 1; }
  sleep 0.05
done
end=$(date +%s.%N)
read -r faults ticks < <(awk '{print $10, $14+$15}' "/proc/$pid/stat")
echo "malloc_conf=${_RJEM_MALLOC_CONF:-built-in} GiB=$GIB produce ${mib_s} MiB/s" \
  "RSS after ${rss_after} MiB, 20 s later ${rss_idle} MiB;" \
  "restart to accepting $(python3 -c "print(round($end - $start, 2))") s${COLD:+ (page cache dropped)}," \
  "faults $faults, CPU $((ticks * 10)) ms, RSS $(rss_mib "$pid") MiB"
kill -TERM "$pid"
wait "$pid" || true
trap - EXIT
rm -f "$log"
