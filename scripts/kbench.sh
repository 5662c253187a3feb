#!/usr/bin/env bash
# Runs the shared Kafka-protocol benchmark harness (kbench on librdkafka, ../shared/bench/)
# against a release build of Tributary: ZooKeeper, the coordinator and one broker on
# loopback in a temporary directory, their PIDs given to the harness so that it reports
# broker CPU per MiB. Everything it starts is stopped on exit.
#
#   scripts/kbench.sh run [bench.py options]         Tributary alone
#   scripts/kbench.sh compare [bench.py options]     side by side with Tansu in memory
#                                                    (../shared/bench/peers.sh tansu-mem)
#   scripts/kbench.sh exec COMMAND [ARGS...]         runs COMMAND against Tributary alone,
#                                                    with BROKER (host:port), METRICS (the
#                                                    broker's /metrics URL), KBENCH (the
#                                                    kbench binary) and BROKER_PID set
#
# BROKERS=3 starts three brokers instead of one (PORT, PORT+1, PORT+2; the first is the
# bootstrap). TRIBUTARY_BIN=/dir/with/broker+coordinator runs those binaries instead of building
# (an A/B comparison with an older build). HARNESS=/path/to/shared/bench overrides where
# the harness is; results go to
# $OUT (default ./kbench-<mode>-<date>.json). Run nothing else meanwhile.
#
# WARM_MEMORY_GIB=n (a measurement of the machine, not of the broker; needs root): this VM
# hands free memory back to its host (virtio-balloon free page reporting), and writing into
# such memory again costs a host fault per page, for the page cache and for every process
# alike (README, "Fresh memory on this machine"). With n set, the run first asks the
# kernel to keep freed pages for five minutes before reporting them, and up to 32 GiB of
# them (min_free_ms and max_waiting_mib in /sys/module/page_reporting/parameters/,
# parameters of this machine's kernel), then writes and deletes an n GiB file, so that
# what the run writes lands in memory the host still backs. The old settings are put back
# on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-run}
shift || true
HARNESS=${HARNESS:-$ROOT/../shared/bench}
if [ ! -f "$HARNESS/bench.py" ]; then
  echo "the harness is not at $HARNESS (set HARNESS=/path/to/shared/bench)" >&2
  exit 1
fi
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
BIN=${TRIBUTARY_BIN:-$ROOT/target/release}
[ -n "${TRIBUTARY_BIN:-}" ] || cargo build --release --bins
# shellcheck source=scripts/zookeeper.sh
. scripts/zookeeper.sh
[ -x "${KBENCH_BUILD:-$HOME/.cache/kbench}/kbench" ] || "$HARNESS/build.sh"

DIR=$(mktemp -d /tmp/tributary-kbench.XXXXXX)
PORT=${PORT:-9092}
ZK_PORT=$((PORT + 100))
pids=()
stop() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$MODE" = compare ]; then "$HARNESS/peers.sh" stop >/dev/null 2>&1 || true; fi
  if [ -n "${REPORTING_WAS:-}" ]; then
    echo "${REPORTING_WAS% *}" >"$REPORTING/min_free_ms" || true
    echo "${REPORTING_WAS#* }" >"$REPORTING/max_waiting_mib" || true
  fi
  rm -rf "$DIR"
}
trap stop EXIT INT TERM

if [ -n "${WARM_MEMORY_GIB:-}" ]; then
  REPORTING=/sys/module/page_reporting/parameters
  if [ ! -w "$REPORTING/min_free_ms" ] || [ ! -w "$REPORTING/max_waiting_mib" ]; then
    echo "WARM_MEMORY_GIB: this kernel has no $REPORTING/min_free_ms and max_waiting_mib (or this is not root); nothing changed" >&2
    exit 1
  fi
  REPORTING_WAS="$(cat "$REPORTING/min_free_ms") $(cat "$REPORTING/max_waiting_mib")"
  echo 300000 >"$REPORTING/min_free_ms"
  echo 32768 >"$REPORTING/max_waiting_mib"
  dd if=/dev/zero of="$DIR/warm" bs=1M count=$((WARM_MEMORY_GIB * 1024)) status=none
  rm -f "$DIR/warm"
  echo "free page reporting held back (min_free_ms 300000, max_waiting_mib 32768; were $REPORTING_WAS) after ${WARM_MEMORY_GIB} GiB written and deleted; put back on exit" >&2
fi

start_zookeeper "$DIR" "$ZK_PORT" || { kill "$ZOOKEEPER_PID" 2>/dev/null; exit 1; }
zk=$ZOOKEEPER_PID
pids+=("$zk")
export TRIBUTARY_ZOOKEEPER_CONNECT=127.0.0.1:$ZK_PORT
TRIBUTARY_HTTP_LISTEN=127.0.0.1:$((PORT + 200)) TRIBUTARY_REST_LISTEN=127.0.0.1:$((PORT + 300)) \
  "$BIN/coordinator" >"$DIR/coordinator.log" 2>&1 &
coordinator=$!
pids+=("$coordinator")
# BROKERS=n starts n brokers on PORT, PORT+1, ... (internal topics replicated to up to three).
BROKERS=${BROKERS:-1}
INTERNAL_RF=$((BROKERS < 3 ? BROKERS : 3))
broker_pids=()
for i in $(seq 1 "$BROKERS"); do
  port=$((PORT + i - 1))
  log="$DIR/broker.log"
  [ "$BROKERS" = 1 ] || log="$DIR/broker-$i.log"
  TRIBUTARY_BROKER_ID=$i TRIBUTARY_LISTENERS=PLAINTEXT://127.0.0.1:$port TRIBUTARY_ADVERTISED_LISTENERS=PLAINTEXT://127.0.0.1:$port \
  TRIBUTARY_DATA_DIR="$DIR/broker-$i" TRIBUTARY_OFFSETS_TOPIC_REPLICATION_FACTOR=$INTERNAL_RF \
  TRIBUTARY_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=$INTERNAL_RF TRIBUTARY_METRICS_LISTEN=127.0.0.1:$((PORT + 400 + i - 1)) \
    "$BIN/broker" >"$log" 2>&1 &
  broker_pids+=("$!")
  pids+=("$!")
done
broker=${broker_pids[0]}
for i in $(seq 1 "$BROKERS"); do
  for _ in $(seq 1 60); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$((PORT + i - 1))") 2>/dev/null; then break; fi
    sleep 0.5
  done
done
OURS="tributary=127.0.0.1:$PORT@$(IFS=,; echo "${broker_pids[*]}"),$coordinator,$zk"
OUT=${OUT:-$ROOT/kbench-$MODE-$(date +%Y%m%d-%H%M).json}
prev=
for a in "$@"; do # an --out given to bench.py wins over $OUT: name that file at the end
  [ "$prev" != --out ] || OUT=$a
  prev=$a
done
case "$MODE" in
  run) python3 "$HARNESS/bench.py" run --broker "$OURS" --out "$OUT" "$@" ;;
  compare)
    PEER=$("$HARNESS/peers.sh" tansu-mem | grep '^tansu-mem=')
    python3 "$HARNESS/bench.py" compare --broker "$OURS" --broker "$PEER" --out "$OUT" "$@"
    ;;
  exec)
    BROKER=127.0.0.1:$PORT METRICS=http://127.0.0.1:$((PORT + 400))/metrics BROKER_PID=$broker BROKER_PIDS="${broker_pids[*]}" \
      KBENCH=${KBENCH_BUILD:-$HOME/.cache/kbench}/kbench "$@"
    exit
    ;;
  *) echo "usage: scripts/kbench.sh run|compare [bench.py options] | exec COMMAND [ARGS...]" >&2; exit 2 ;;
esac
echo "results: $OUT (broker log: kept only while running, in $DIR)"
