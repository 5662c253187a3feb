"""Benchmark: produce and consume throughput and end-to-end latency, driven by librdkafka
(confluent-kafka) against a one-broker cluster built in release mode.

    scripts/bench.sh            # builds release binaries, then runs this

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


def produce(bootstrap, topic, size, count, acks):
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5, "batch.size": 1000000,
                         "queue.buffering.max.kbytes": 1048576, "queue.buffering.max.messages": 1000000,
                         "compression.type": "none"})
    value = os.urandom(size)
    failures = []
    start = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value=value, on_delivery=lambda e, m: e and failures.append(e))
                break
            except BufferError:
                producer.poll(0.001)
    producer.flush(120)
    elapsed = time.perf_counter() - start
    assert not failures, failures[:3]
    return {"records_per_s": round(count / elapsed), "MiB_per_s": round(count * size / elapsed / MiB, 1)}


def consume(bootstrap, topic, partitions, size, count):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
                         "fetch.max.bytes": 52428800, "max.partition.fetch.bytes": 10485760,
                         "queued.max.messages.kbytes": 1048576})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = 0
    start = None
    while got < count:
        batch = consumer.consume(num_messages=100000, timeout=1.0)
        if batch and start is None:
            start = time.perf_counter()
        got += sum(1 for m in batch if not m.error())
    elapsed = time.perf_counter() - start
    consumer.close()
    return {"records_per_s": round(count / elapsed), "MiB_per_s": round(count * size / elapsed / MiB, 1)}


def _latency_reader(bootstrap, topic, total, out):
    """Runs in its own process, so the producer's pacing loop cannot starve it of the GIL."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "lat", "enable.auto.commit": False})  # default fetch.wait.max.ms
    consumer.assign([TopicPartition(topic, 0, 0)])
    samples = []
    deadline = time.monotonic() + 120
    out.put("ready")
    while len(samples) < total and time.monotonic() < deadline:
        m = consumer.poll(0.1)
        if m is None or m.error():
            continue
        samples.append(time.time() - float(m.value()[:20]))
    consumer.close()
    out.put(samples)


def latency(bootstrap, topic, rate, seconds, size):
    import multiprocessing

    total = rate * seconds
    queue = multiprocessing.Queue()
    reader = multiprocessing.Process(target=_latency_reader, args=(bootstrap, topic, total, queue))
    reader.start()
    assert queue.get(timeout=60) == "ready"
    time.sleep(1.0)  # let the consumer park its first fetch
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 0})
    pad = b"x" * max(0, size - 20)
    start = time.perf_counter()
    for i in range(total):
        target = start + i / rate
        while time.perf_counter() < target:
            producer.poll(0)
        producer.produce(topic, value=f"{time.time():<20.6f}".encode() + pad)
    producer.flush(30)
    samples = sorted(queue.get(timeout=180))
    reader.join(30)
    q = lambda p: round(samples[min(len(samples) - 1, int(p * len(samples)))] * 1000, 2)
    return {"rate_msgs_per_s": rate, "samples": len(samples), "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": round(samples[-1] * 1000, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300000)
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="tributary-bench-"))
    zk = ZooKeeper(logs).start()
    cluster = Cluster(zk, logs)
    results = {}
    try:
        cluster.start_coordinator()
        cluster.start_broker(1)
        bootstrap = cluster.bootstrap()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for size in (100, 1024):
            for acks in ("1", "all"):
                topic = f"bench-{size}-{acks}"
                admin.create_topics([NewTopic(topic, args.partitions, 1)], operation_timeout=30)[topic].result()
                cluster.wait_topic_led(topic, partitions=args.partitions)
                count = args.records * (4 if size == 100 else 1)
                results[f"produce {size} B acks={acks}"] = produce(bootstrap, topic, size, count, acks)
                if acks == "1":
                    results[f"consume {size} B"] = consume(bootstrap, topic, args.partitions, size, count)
                print(json.dumps(results), flush=True)
        admin.create_topics([NewTopic("latency", 1, 1)], operation_timeout=30)["latency"].result()
        cluster.wait_topic_led("latency", partitions=1)
        results["end-to-end latency 1 KiB at 5000 msg/s"] = latency(bootstrap, "latency", 5000, 10, 1024)
    finally:
        cluster.stop()
        zk.destroy()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
