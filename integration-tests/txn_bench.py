"""Benchmark: transactional produce and read_committed consume beside their plain
counterparts, on a release build, one broker. confluent-kafka (librdkafka) in one Python
process, 1 KiB records, 4 partitions, `linger.ms=5`; the same producer settings with and
without `transactional.id`, so the difference is the transactions' cost.

    scripts/txn-bench.sh [--records 200000]

Not part of the test suite; numbers go in the README with the machine they came from.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TRIBUTARY_BIN", str(Path(__file__).resolve().parent.parent / "target" / "release"))
os.environ.setdefault("TRIBUTARY_TEST_LOG", "warn")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from harness import Cluster, ZooKeeper  # noqa: E402

MiB = 1024 * 1024
PARTITIONS = 4
VALUE = b"v" * 1024


def produce(bootstrap, topic, records, txn_size):
    """Writes `records` 1 KiB records; in transactions of `txn_size` when given."""
    conf = {"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1000000, "acks": "all",
            "queue.buffering.max.kbytes": 1048576}
    if txn_size:
        conf["transactional.id"] = f"bench-{topic}"
    p = Producer(conf)
    if txn_size:
        p.init_transactions(30)
    start = time.perf_counter()
    i = 0
    while i < records:
        n = min(txn_size or records, records - i)
        if txn_size:
            p.begin_transaction()
        for j in range(n):
            while True:
                try:
                    p.produce(topic, value=VALUE, key=str(i + j).encode())
                    break
                except BufferError:
                    p.poll(0.01)
            if j % 1000 == 0:
                p.poll(0)
        if txn_size:
            p.commit_transaction(60)
        i += n
    p.flush(60)
    elapsed = time.perf_counter() - start
    return {"records_per_s": round(records / elapsed), "MiB_per_s": round(records * 1024 / elapsed / MiB, 1)}


def consume(bootstrap, topic, records, isolation):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{topic}-{isolation}", "enable.auto.commit": False,
                  "isolation.level": isolation, "fetch.max.bytes": 52428800})
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    got = 0
    start = time.perf_counter()
    deadline = start + 300
    while got < records and time.perf_counter() < deadline:
        for m in c.consume(10000, 1):
            if not m.error():
                got += 1
    elapsed = time.perf_counter() - start
    c.close()
    return {"records": got, "records_per_s": round(got / elapsed), "MiB_per_s": round(got * 1024 / elapsed / MiB, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200000)
    args = ap.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="tributary-txn-bench-"))
    zk = ZooKeeper(logs).start()
    cluster = Cluster(zk, logs)
    results = {}
    try:
        cluster.start_coordinator()
        cluster.start_broker(1)
        bootstrap = cluster.bootstrap()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        runs = {"plain": None, "transactions of 100": 100, "transactions of 10,000": 10000}
        for name, size in runs.items():
            topic = "bench-" + name.replace(" ", "-").replace(",", "")
            admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
            cluster.wait_topic_led(topic, partitions=PARTITIONS)
            results[f"produce 1 KiB, {name}"] = produce(bootstrap, topic, args.records, size)
            results[f"consume 1 KiB, {name}, read_committed"] = consume(bootstrap, topic, args.records, "read_committed")
            results[f"consume 1 KiB, {name}, read_uncommitted"] = consume(bootstrap, topic, args.records, "read_uncommitted")
            print(json.dumps(results), flush=True)
    finally:
        cluster.stop()
        zk.destroy()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
