"""Benchmark: what log compaction costs and what it saves, on a release build.

1. **Produce latency with and without cleaning.** A producer sends 1 KiB records with
   acks=all at a fixed rate to one topic and times each acknowledgement, while another
   process rewrites 2,000 keys of a compacted topic at about 5 MB/s (chunks close every
   second, `min.cleanable.dirty.ratio=0.1`, so the cleaner runs all the time). Run three
   times on fresh brokers, the same load each time: the cleaner unpaced, paced to
   `log.cleaner.io.max.bytes.per.second=2000000`, and off.
2. **__consumer_offsets under a committing group.** Two brokers (the offsets topic
   replicated to both); one group commits 12 partitions every 100 ms for `--minutes`;
   the size of its __consumer_offsets partition is sampled through the HTTP admin API.
   Then the coordinating broker is killed (-9) and the other takes the partition over:
   the load time is the `elapsed_ms` of its "loaded consumer groups" log line. With
   `--compare-off` the same again with the cleaner off.

    scripts/compaction-bench.sh [--minutes 10] [--compare-off]

Not part of the test suite; numbers go in the README with the machine they came from.
"""
import argparse
import json
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TRIBUTARY_BIN", str(Path(__file__).resolve().parent.parent / "target" / "release"))
os.environ.setdefault("TRIBUTARY_TEST_LOG", "info")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from harness import Cluster, ZooKeeper, http_get, wait_until  # noqa: E402


def _churn(bootstrap, stop, rate, keys):
    """Rewrites `keys` keys of the compacted topic `churn` at `rate` records/s of 1 KiB."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    value = b"c" * 1024
    start = time.perf_counter()
    i = 0
    while not stop.is_set():
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        p.produce("churn", key=f"k{i % keys}".encode(), value=value)
        p.poll(0)
        i += 1
    p.flush(30)


def produce_latency(bootstrap, rate, seconds):
    """acks=all produce latency of 1 KiB records at `rate`/s: p50, p99, max in ms."""
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
    samples = []
    value = b"x" * 1024

    def delivered(err, msg, sent):
        if err is None:
            samples.append(time.perf_counter() - sent)

    start = time.perf_counter()
    total = rate * seconds
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent = time.perf_counter()
        p.produce("latency", value=value, on_delivery=lambda err, msg, sent=sent: delivered(err, msg, sent))
        p.poll(0)
    p.flush(30)
    samples.sort()
    q = lambda f: round(samples[min(len(samples) - 1, int(f * len(samples)))] * 1000, 2)
    return {"samples": len(samples), "p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999), "max_ms": round(samples[-1] * 1000, 2)}


def latency_run(logs, name, cleaner_flags, seconds):
    zk = ZooKeeper(logs / f"zk-latency-{name}").start()
    cluster = Cluster(zk, logs / f"latency-{name}")
    cluster.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        cluster.start_coordinator()
        cluster.start_broker(1, "--log-cleaner-backoff-ms", "200", *cleaner_flags)
        bootstrap = cluster.bootstrap()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        churn = {"cleanup.policy": "compact", "segment.ms": "1000", "min.cleanable.dirty.ratio": "0.1", "delete.retention.ms": "1000"}
        fs = admin.create_topics([NewTopic("latency", 1, 1), NewTopic("churn", 1, 1, config=churn)], operation_timeout=30)
        for f in fs.values():
            f.result()
        cluster.wait_topic_led("latency")
        cluster.wait_topic_led("churn")
        stop = multiprocessing.Event()
        writer = multiprocessing.Process(target=_churn, args=(bootstrap, stop, 5000, 2000))
        writer.start()
        time.sleep(5)  # the churn topic fills and its first chunks close
        log = cluster.brokers[1].log
        passes_before = log().count("compacted the log")
        result = produce_latency(bootstrap, 2000, seconds)
        result["cleaner_passes_during_run"] = log().count("compacted the log") - passes_before
        stop.set()
        writer.join(60)
        result["churn_partition_bytes_after"] = http_get(f"{cluster.http}/topics/churn")[1]["partitions"][0]["size_bytes"]
        return result
    finally:
        cluster.stop()
        zk.destroy()


def offsets_run(logs, cleaner_on, minutes):
    zk = ZooKeeper(logs / f"zk-offsets-{cleaner_on}").start()
    cluster = Cluster(zk, logs / f"offsets-cleaner-{cleaner_on}")
    cluster.log_dir.mkdir(parents=True, exist_ok=True)
    flags = ("--offsets-topic-replication-factor", "2", "--log-cleaner-enable", str(cleaner_on).lower())
    try:
        cluster.start_coordinator()
        for b in (1, 2):
            cluster.start_broker(b, *flags)
        cluster.wait_brokers_know_each_other()
        bootstrap = cluster.bootstrap()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic("events", 12, 2)], operation_timeout=30)["events"].result()
        cluster.wait_topic_led("events")
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "committer", "enable.auto.commit": False})
        c.assign([TopicPartition("events", p, 0) for p in range(12)])
        c.commit(offsets=[TopicPartition("events", p, 0) for p in range(12)], asynchronous=False)

        def coordinator_id():
            try:
                return admin.describe_consumer_groups(["committer"])["committer"].result(30).coordinator.id
            except Exception:
                return None
        coordinator = wait_until(coordinator_id, timeout=60, what="the group's coordinator")
        # The group's __consumer_offsets partition: the one its coordinator loaded.
        sizes = []
        stop = threading.Event()

        def sample():
            while not stop.wait(30):
                parts = http_get(f"{cluster.http}/topics/__consumer_offsets")[1]["partitions"]
                sizes.append(max(p["size_bytes"] or 0 for p in parts))

        sampler = threading.Thread(target=sample)
        sampler.start()
        commits = 0
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            c.commit(offsets=[TopicPartition("events", p, commits) for p in range(12)], asynchronous=False)
            commits += 1
            time.sleep(0.1)
        stop.set()
        sampler.join()
        c.close()
        parts = http_get(f"{cluster.http}/topics/__consumer_offsets")[1]["partitions"]
        final = max(p["size_bytes"] or 0 for p in parts)
        other = 2 if coordinator == 1 else 1
        before = cluster.brokers[other].log().count("loaded consumer groups")
        cluster.brokers[coordinator].kill()
        wait_until(lambda: cluster.brokers[other].log().count("loaded consumer groups") > before, timeout=60,
                   what="the other broker to load the group")
        line = [l for l in cluster.brokers[other].log().splitlines() if "loaded consumer groups" in l][-1]
        load_ms = int(re.search(r"elapsed_ms=(\d+)", line).group(1))
        records = int(re.search(r"records=(\d+)", line).group(1))
        return {"minutes": minutes, "commits": commits, "records_committed": commits * 12,
                "partition_bytes_sampled_every_30s": sizes, "partition_bytes_at_end": final,
                "failover_load_ms": load_ms, "records_replayed_at_failover": records}
    finally:
        cluster.stop()
        zk.destroy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--latency-seconds", type=int, default=30)
    ap.add_argument("--compare-off", action="store_true", help="also run the offsets scenario with the cleaner off")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="tributary-compaction-bench-"))
    results = {}
    if not args.skip_latency:
        runs = {
            "cleaner on": (),
            "cleaner paced to 2 MB/s": ("--log-cleaner-io-max-bytes-per-second", "2000000"),
            "cleaner off": ("--log-cleaner-enable", "false"),
        }
        for name, flags in runs.items():
            key = f"produce acks=all 1 KiB at 2000/s, churn at 5 MB/s, {name}"
            results[key] = latency_run(logs, name.replace(" ", "-").replace("/", ""), flags, args.latency_seconds)
            print(json.dumps(results), flush=True)
    for on in (True, False) if args.compare_off else (True,):
        results[f"__consumer_offsets, 12 partitions committed every 100 ms, cleaner {'on' if on else 'off'}"] = offsets_run(logs, on, args.minutes)
        print(json.dumps(results), flush=True)
    print(json.dumps(results, indent=2))
    print(f"logs: {logs}")


if __name__ == "__main__":
    main()
