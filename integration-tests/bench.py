"""Benchmark: produce and consume throughput and end-to-end latency, driven by librdkafka
against a cluster built in release mode: one broker, or `--brokers 3` with every topic
replicated to all of them (RF 3, min.insync.replicas 2). Throughput uses kcat (librdkafka in
C, reading records from a file) so the client is not the bottleneck; latency uses
confluent-kafka (librdkafka) with a producer and a consumer in separate processes.

    scripts/bench.sh            # builds release binaries, then runs this

Not part of the test suite; numbers go in the README with the machine they came from.
"""
import argparse
import json
import os
import subprocess
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


def record_file(size, count):
    """A file of `count` newline-terminated records of `size` bytes (newline included)."""
    path = Path(tempfile.gettempdir()) / f"tributary-bench-{size}x{count}.txt"
    if not path.exists() or path.stat().st_size != size * count:
        line = (os.urandom(size).hex()[: size - 1] + "\n").encode()
        with open(path, "wb") as f:
            for _ in range(count // 10000):
                f.write(line * 10000)
            f.write(line * (count % 10000))
    return path


def broker_cpu_s(pids):
    """User + system CPU seconds of the broker processes together."""
    total = 0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def broker_write_bytes(pids):
    """Bytes the broker processes together sent to the disk (counted when pages are dirtied)."""
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/io"):
            if line.startswith("write_bytes:"):
                total += int(line.split()[1])
    return total


def settle_disk():
    """Writes back what earlier runs left dirty, so that each run starts on a quiet disk
    instead of paying for its predecessor's writes (the runs differ in length)."""
    os.sync()


def produce(bootstrap, topic, size, count, acks, broker_pids):
    path = record_file(size, count)
    settle_disk()
    cpu0 = broker_cpu_s(broker_pids)
    written0 = broker_write_bytes(broker_pids)
    start = time.perf_counter()
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-X", "linger.ms=5", "-X", "batch.size=1000000",
                    "-X", f"acks={acks}", "-X", "queue.buffering.max.kbytes=1048576"], stdin=open(path, "rb"), check=True)
    elapsed = time.perf_counter() - start
    cpu = broker_cpu_s(broker_pids) - cpu0
    written = broker_write_bytes(broker_pids) - written0
    return {"records_per_s": round(count / elapsed), "MiB_per_s": round(count * size / elapsed / MiB, 1),
            "broker_cpu_s_per_GiB": round(cpu / (count * size / 1024 ** 3), 2),
            "disk_bytes_per_record_byte": round(written / (count * size), 2)}


def consume(bootstrap, topic, size, count):
    start = time.perf_counter()
    # -c stops at exactly `count` records; output goes to /dev/null so that the reader is kcat alone.
    subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-c", str(count),
                    "-X", "fetch.max.bytes=52428800"], stdout=subprocess.DEVNULL, check=True)
    elapsed = time.perf_counter() - start
    return {"records_per_s": round(count / elapsed), "MiB_per_s": round(count * size / elapsed / MiB, 1)}


def group_consume(bootstrap, topic, size, count, members):
    """`members` kcat processes in one consumer group (-G) share the topic's partitions and
    exit at the end of their partitions (-e). Reported from the first byte any member
    receives (after the group's first rebalance, which waits
    group.initial.rebalance.delay.ms) until the last member exits; every byte must have
    arrived exactly once, so a lost or duplicated record fails the run. Members print only
    partition and offset of each record, so the pipe to this script is not the bottleneck."""
    import threading
    group = f"bench-{topic}-{members}"
    started = time.perf_counter()
    procs = [subprocess.Popen(["kcat", "-b", bootstrap, "-G", group, topic, "-q", "-e", "-X", "auto.offset.reset=earliest",
                               "-X", "fetch.max.bytes=52428800", "-f", "%p %o\\n"], stdout=subprocess.PIPE)
             for _ in range(members)]
    first = [None] * members
    output = [[] for _ in range(members)]

    def drain(i, p):
        while chunk := p.stdout.read1(1 << 20):
            if first[i] is None:
                first[i] = time.perf_counter()
            output[i].append(chunk)

    threads = [threading.Thread(target=drain, args=(i, p)) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    for p in procs:
        p.wait(timeout=600)
    for t in threads:
        t.join()
    done = time.perf_counter()
    per_member = [b"".join(chunks).splitlines() for chunks in output]
    seen = [line for lines in per_member for line in lines]
    assert len(seen) == count and len(set(seen)) == count, f"the group read {len(seen)} records ({len(set(seen))} distinct), expected {count}"
    begin = min(f for f in first if f is not None)
    return {"members": members, "records_per_s": round(count / (done - begin)),
            "MiB_per_s": round(count * size / (done - begin) / MiB, 1),
            "first_record_after_s": round(begin - started, 2),
            "records_per_member": [len(lines) for lines in per_member]}


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
        # Sleep rather than spin: on 2 cores a spinning producer starves the broker.
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, value=f"{time.time():<20.6f}".encode() + pad)
        producer.poll(0)
    producer.flush(30)
    samples = sorted(queue.get(timeout=180))
    reader.join(30)
    q = lambda p: round(samples[min(len(samples) - 1, int(p * len(samples)))] * 1000, 2)
    return {"rate_msgs_per_s": rate, "samples": len(samples), "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": round(samples[-1] * 1000, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1000000, help="1 KiB records per run (100 B runs use 3x)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--latency-only", action="store_true")
    ap.add_argument("--group-only", action="store_true", help="only the produce 1 KiB acks=1 and consumer-group read runs")
    ap.add_argument("--brokers", type=int, default=1, help="brokers; topics are replicated to all of them")
    ap.add_argument("--broker-arg", action="append", default=[], help="extra broker flag, e.g. --broker-arg=--log-flush-interval-ms=60000")
    args = ap.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="tributary-bench-"))
    zk = ZooKeeper(logs).start()
    cluster = Cluster(zk, logs)
    results = {}
    try:
        cluster.start_coordinator()
        for b in range(1, args.brokers + 1):
            cluster.start_broker(b, *args.broker_arg)
        bootstrap = cluster.bootstrap()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        rf = args.brokers
        topic_config = {"min.insync.replicas": str(min(2, rf))}
        pids = [p.proc.pid for p in cluster.brokers.values()]
        for b in cluster.brokers:
            view = AdminClient({"bootstrap.servers": cluster.bootstrap([b])})
            while len(view.list_topics(timeout=10).brokers) < rf:
                time.sleep(0.1)
        # Latency first, on a quiet broker: right after the throughput runs the page cache
        # holds gigabytes still to be written, which shows in the tail (see the README).
        admin.create_topics([NewTopic("latency", 1, rf, config=topic_config)], operation_timeout=30)["latency"].result()
        cluster.wait_topic_led("latency", partitions=1)
        # The latency consumer has a group.id, so librdkafka looks up its coordinator, and the
        # first lookup creates __consumer_offsets (50 partitions). Do that before measuring.
        warm = Consumer({"bootstrap.servers": bootstrap, "group.id": "lat"})
        warm.committed([TopicPartition("latency", 0)], timeout=30)
        warm.close()
        cluster.wait_topic_led("__consumer_offsets")
        settle_disk()
        results["end-to-end latency 1 KiB at 5000 msg/s"] = latency(bootstrap, "latency", 5000, 10, 1024)
        print(json.dumps(results), flush=True)
        sizes = () if args.latency_only else (1024,) if args.group_only else (100, 1024)
        for size in sizes:
            for acks in ("1",) if args.group_only else ("1", "all"):
                topic = f"bench-{size}-{acks}"
                admin.create_topics([NewTopic(topic, args.partitions, rf, config=topic_config)], operation_timeout=30)[topic].result()
                cluster.wait_topic_led(topic, partitions=args.partitions)
                count = args.records * (3 if size == 100 else 1)
                results[f"produce {size} B acks={acks}"] = produce(bootstrap, topic, size, count, acks, pids)
                if acks == "1":
                    results[f"consume {size} B"] = consume(bootstrap, topic, size, count)
                    results[f"consume {size} B, group of 3"] = group_consume(bootstrap, topic, size, count, 3)
                print(json.dumps(results), flush=True)
    finally:
        cluster.stop()
        zk.destroy()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
