#!/usr/bin/env bash
# End-to-end latency split at the broker (scripts/e2e-split.c): the load of kbench e2e
# (1 KiB at RATE/s, linger.ms=1, the consumer's fetch.wait.max.ms=500, a fresh topic of six
# partitions per run, here with message.timestamp.type=LogAppendTime), reported as
#
#   e2e              intended send -> consumer receipt (kbench e2e's figure)
#   producer ack     intended send -> delivery report
#   to append        intended send -> the broker's append (its LogAppendTime, whole ms:
#                    this part reads up to 1 ms short, the next up to 1 ms long)
#   append to poll   append -> consumer receipt
#
# then where the slowest 1 % spent their time, whether they come in bursts (distinct 50 ms
# windows), and how many of those bursts had hypervisor steal (/proc/stat, sampled every
# 5 ms) within 20 ms, against the same for random instants. Runs against the benchmark
# cluster of scripts/kbench.sh:
#
#   scripts/kbench.sh exec scripts/e2e-split.sh [ACKS] [RUNS]
#   BROKERS=3 RF=3 scripts/kbench.sh exec scripts/e2e-split.sh all 4
#
# RATE (5000), SECONDS_RUN (10), RF (1; at RF 3 min.insync.replicas=2), EXTRA ("name=value ..."
# librdkafka properties, c.name=value for the consumer). Raw CSVs stay in $OUT_DIR
# (default ./e2e-split-<date>). Run nothing else meanwhile.
set -euo pipefail
: "${BROKER:?run under scripts/kbench.sh exec}" "${KBENCH:?}"
cd "$(dirname "$0")/.."
ACKS=${1:-1}
RUNS=${2:-3}
RF=${RF:-1}
LIB=$(dirname "$KBENCH")/lib
TOOL=$(dirname "$KBENCH")/e2e-split
if [ ! -x "$TOOL" ] || [ scripts/e2e-split.c -nt "$TOOL" ]; then
  so=$(basename "$(ls "$LIB"/librdkafka*.so.1 | head -1)")
  cc -O2 -Wall -Wextra -o "$TOOL" scripts/e2e-split.c -L"$LIB" -l:"$so" -lpthread -Wl,-rpath,"$LIB"
fi
OUT_DIR=${OUT_DIR:-$PWD/e2e-split-$(date +%Y%m%d-%H%M)}
mkdir -p "$OUT_DIR"
for run in $(seq 1 "$RUNS"); do
  topic=e2e-split-$run-$RANDOM
  .venv/bin/python - "$BROKER" "$topic" "$RF" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap, topic, rf = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = {"message.timestamp.type": "LogAppendTime", "min.insync.replicas": "2" if rf > 1 else "1"}
admin = AdminClient({"bootstrap.servers": bootstrap})  # held until the futures resolve
for future in admin.create_topics([NewTopic(topic, 6, rf, config=config)]).values():
    future.result(30)
PY
  python3 - "$OUT_DIR/steal-$run.txt" "$((${SECONDS_RUN:-10} + 4))" <<'PY' &
import sys, time
# Hypervisor steal per CPU (/proc/stat, 10 ms ticks), each change with its time.
out, end, last = open(sys.argv[1], "w"), time.time() + float(sys.argv[2]), None
while time.time() < end:
    now = [int(l.split()[8]) for l in open("/proc/stat") if l.startswith("cpu") and l[3] != " "]
    if last is not None and now != last:
        out.write("%.4f %d\n" % (time.time(), sum(a - b for a, b in zip(now, last))))
        out.flush()
    last = now
    time.sleep(0.005)
PY
  sampler=$!
  # shellcheck disable=SC2086 # EXTRA is a list of name=value words
  "$TOOL" "$BROKER" "$topic" "$ACKS" "${RATE:-5000}" "${SECONDS_RUN:-10}" "$OUT_DIR/$topic.csv" ${EXTRA:-}
  wait "$sampler" || true
  python3 - "$OUT_DIR/$topic.csv" "$OUT_DIR/steal-$run.txt" "$ACKS" "$RF" <<'PY'
import csv, random, statistics, sys
rows = [{k: int(v) for k, v in r.items()} for r in csv.DictReader(open(sys.argv[1]))]
rows = rows[len(rows) // 10:]  # the first 10 % warm up, as kbench's --warmup
got = [r for r in rows if r["received_ns"] > 0 and r["appended_ms"] > 0]
ms = lambda ns: ns / 1e6
e2e = [ms(r["received_ns"] - r["intended_ns"]) for r in got]
ack = [ms(r["acked_ns"] - r["intended_ns"]) for r in got if r["acked_ns"] > 0]
to_append = [ms(r["appended_ms"] * 1_000_000 - r["intended_ns"]) for r in got]
to_poll = [ms(r["received_ns"] - r["appended_ms"] * 1_000_000) for r in got]
def pct(v, q):
    v = sorted(v)
    return v[int(q * (len(v) - 1))]
print(f"acks={sys.argv[3]} RF {sys.argv[4]}: {len(got)} records measured, {len(rows) - len(got)} missing")
for name, v in [("e2e", e2e), ("producer ack", ack), ("to append", to_append), ("append to poll", to_poll)]:
    print(f"  {name:15} p50 {pct(v, .5):6.2f}  p90 {pct(v, .9):6.2f}  p99 {pct(v, .99):6.2f}  p999 {pct(v, .999):6.2f}  max {max(v):6.2f} ms")
cut = pct(e2e, .99)
tail = [r for r in got if ms(r["received_ns"] - r["intended_ns"]) >= cut]
part = lambda f: statistics.median(f(r) for r in tail)
print(f"  slowest 1 % (e2e >= {cut:.2f} ms, {len(tail)} records): median {part(lambda r: ms(r['appended_ms'] * 1_000_000 - r['intended_ns'])):.2f} ms to append, "
      f"{part(lambda r: ms(r['received_ns'] - r['appended_ms'] * 1_000_000)):.2f} ms append to poll")
windows = sorted({r["intended_ns"] // 50_000_000 for r in tail})
span = (got[-1]["intended_ns"] - got[0]["intended_ns"]) // 50_000_000 + 1
steal = [float(l.split()[0]) for l in open(sys.argv[2])]
near = lambda t: any(abs(s - t) <= 0.02 + 0.025 for s in steal)
bursts = sum(near((w * 50_000_000 + 25_000_000) / 1e9) for w in windows)
t0, t1 = got[0]["intended_ns"] / 1e9, got[-1]["intended_ns"] / 1e9
chance = sum(near(random.uniform(t0, t1)) for _ in range(2000)) / 20
print(f"  they fall in {len(windows)} of {span} 50 ms windows; steal within 20 ms of {bursts} of those windows "
      f"(of a random window: {chance:.0f} %); steal ticks in the run: {len(steal)}")
PY
done
echo "raw instants: $OUT_DIR"
