"""Log compaction (cleanup.policy=compact) as Kafka users rely on it: keyed topics read back
as the latest value of each key at its original offset, tombstones honoured and then
removed, __consumer_offsets kept small, keyless records refused, and the cleaner safe
under kill -9 and across replicas."""
import re
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import create_topic, http_get, wait_until

INVALID_RECORD, INVALID_CONFIG = 87, 40
INVALID_DIFFERENT_RECORD = -138  # librdkafka's local code for a culprit's innocent batch mates

# Fast cleaning for tests: chunks close 100 ms after their first record, a log is cleaned as
# soon as anything is dirty, tombstones go 100 ms after their first pass.
FAST = {
    "cleanup.policy": "compact",
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "100",
}
FAST_CLEANER = ("--log-cleaner-backoff-ms", "100")


def read_partition(bootstrap, topic, partition=0, timeout=30):
    """Every record of the partition from its start to its end as [(offset, key, value)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-check", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, partition, 0)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:  # _PARTITION_EOF
                    return out
                continue
            out.append((msg.offset(), msg.key(), msg.value()))
    finally:
        c.close()
    raise AssertionError(f"{topic}-{partition} not read to its end in {timeout} s (got {len(out)} records)")


def read_partition_kafka_python(bootstrap, topic, partition=0, timeout=30):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KpTP
    tp = KpTP(topic, partition)
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        c.assign([tp])
        c.seek_to_beginning(tp)
        end = c.end_offsets([tp])[tp]
        out = []
        deadline = time.monotonic() + timeout
        while c.position(tp) < end and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=500).values():
                out.extend((r.offset, r.key, r.value) for r in records)
        assert c.position(tp) >= end, f"kafka-python stopped at {c.position(tp)} of {end}"
        return out
    finally:
        c.close()


def produce_updates(client, bootstrap, topic, updates):
    """Writes [(key, value or None)] in order; returns {key: (offset, value)} of the last write
    of each key, from the acknowledgements."""
    last = {}
    if client == "confluent":
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
        def remember(err, msg):
            assert err is None, err
            last[msg.key()] = max(last.get(msg.key(), (-1, None)), (msg.offset(), msg.value()))
        for i, (k, v) in enumerate(updates):
            p.produce(topic, key=k, value=v, on_delivery=remember)
            if i % 1000 == 0:
                p.poll(0)
        assert p.flush(60) == 0
    else:
        from kafka import KafkaProducer
        p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        futures = [(k, v, p.send(topic, key=k, value=v)) for k, v in updates]
        p.flush(60)
        for k, v, f in futures:
            meta = f.get(30)
            last[k] = max(last.get(k, (-1, None)), (meta.offset, v))
        p.close()
    return last


def topic_view(cluster, topic):
    status, body = http_get(f"{cluster.http}/topics/{topic}")
    assert status == 200, body
    return body


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_a_compacted_topic_reads_back_the_latest_value_of_each_live_key(empty_cluster, client):
    """10,000 updates over 100 keys, then tombstones for ten of them: once cleaned, the topic
    holds exactly one record per live key, the latest, at the offset it was written at;
    a consumer that began before the clean still ends with every key's latest value."""
    cluster = empty_cluster
    cluster.start_coordinator()
    cluster.start_broker(1, *FAST_CLEANER)
    create_topic(cluster, "devices", config=FAST)
    bootstrap = cluster.bootstrap()
    updates = [(f"key-{i % 100}".encode(), f"value-{i}".encode()) for i in range(10_000)]

    early = Consumer({"bootstrap.servers": bootstrap, "group.id": "early", "enable.auto.commit": False})
    early.assign([TopicPartition("devices", 0, 0)])
    last = produce_updates(client, bootstrap, "devices", updates)
    # The early consumer reads part of the log before the cleaner runs, the rest after.
    seen = {}
    while len(seen) < 50:
        msg = early.poll(1)
        if msg is not None and not msg.error():
            seen[msg.key()] = msg.value()
    last.update(produce_updates(client, bootstrap, "devices", [(f"key-{i}".encode(), None) for i in range(10)]))
    live = {k: (o, v) for k, (o, v) in last.items() if v is not None}
    assert len(live) == 90

    read = read_partition if client == "confluent" else read_partition_kafka_python
    want = sorted((o, k, v) for k, (o, v) in live.items())
    wait_until(lambda: read(bootstrap, "devices") == want, timeout=60, interval=0.5,
               what="the topic compacted to the latest value of each live key, tombstones removed")

    end = max(o for o, _ in last.values()) + 1
    while True:
        msg = early.poll(1)
        if msg is None:
            break
        if not msg.error():
            seen[msg.key()] = msg.value()
    early.close()
    # Deleted keys' tombstones may be gone before it reaches them (delete.retention.ms is
    # 100 ms here); every live key's latest value is not.
    assert {k: seen.get(k) for k in live} == {k: v for k, (_, v) in live.items()}, "the early consumer missed a latest value"

    p = topic_view(cluster, "devices")["partitions"][0]
    assert p["high_watermark"] == end, "offsets never change"
    cleaner = p["cleaner"]
    assert cleaner["first_dirty_offset"] == end and cleaner["dirty_ratio"] == 0, cleaner
    assert cleaner["last_clean"]["finished_ms"] > 0 and cleaner["last_clean"]["bytes_after"] <= cleaner["last_clean"]["bytes_before"]
    assert p["size_bytes"] < 20_000, p
    log = cluster.brokers[1].log()
    assert re.search(r"compacted the log.*tp=devices-0", log), "no info line for the clean"


def test_keyless_records_and_bad_compaction_configs_get_kafkas_errors(cluster):
    create_topic(cluster, "keyed", config={"cleanup.policy": "compact"})
    bootstrap = cluster.bootstrap()
    for compression in ("none", "lz4", "zstd"):
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": compression, "linger.ms": 0})
        errors = []
        # Separate batches: Kafka refuses a whole batch that holds a keyless record.
        p.produce("keyed", value=b"no key", on_delivery=lambda err, msg: errors.append(err))
        assert p.flush(30) == 0
        p.produce("keyed", key=b"k", value=b"with key", on_delivery=lambda err, msg: errors.append(err))
        assert p.flush(30) == 0
        assert errors[0] is not None and errors[0].code() == INVALID_RECORD, (compression, errors)
        assert errors[1] is None, (compression, errors)
    assert [(k, v) for _, k, v in read_partition(bootstrap, "keyed")] == [(b"k", b"with key")] * 3

    admin = AdminClient({"bootstrap.servers": bootstrap})
    bad = {
        "bad-policy": {"cleanup.policy": "shred"},
        "bad-ratio": {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "1.5"},
        "bad-segment": {"segment.ms": "0"},
        "bad-retention": {"delete.retention.ms": "-5"},
    }
    futures = admin.create_topics([NewTopic(t, 1, 1, config=c) for t, c in bad.items()], request_timeout=30)
    for topic, f in futures.items():
        with pytest.raises(KafkaException) as e:
            f.result(30)
        assert e.value.args[0].code() == INVALID_CONFIG, (topic, e.value)


def test_consumer_offsets_stays_small_under_a_committing_group(empty_cluster):
    """A group committing every 10 ms: __consumer_offsets is compacted (its chunks close
    after log.roll.ms here), so its partition stays small, and a restarted coordinator
    loads the group's latest offset from the compacted log."""
    cluster = empty_cluster
    cluster.start_coordinator()
    cluster.start_broker(1, *FAST_CLEANER, "--log-roll-ms", "500")
    create_topic(cluster, "events")
    bootstrap = cluster.bootstrap()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "committer", "enable.auto.commit": False})
    c.assign([TopicPartition("events", 0, 0)])
    commits = 0
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        c.commit(offsets=[TopicPartition("events", 0, commits)], asynchronous=False)
        commits += 1
        time.sleep(0.01)
    c.close()
    assert commits > 300

    def offsets_partition():
        for p in topic_view(cluster, "__consumer_offsets")["partitions"]:
            if p.get("cleaner") and p["cleaner"].get("last_clean"):
                return p
        return None
    wait_until(offsets_partition, timeout=30, what="a cleaned __consumer_offsets partition")
    p = offsets_partition()
    # Each commit is a ~100-byte batch: uncompacted the partition would hold commits x that.
    assert p["size_bytes"] < commits * 100 / 3, (commits, p)

    cluster.brokers[1].terminate()
    cluster.start_broker(1, *FAST_CLEANER, "--log-roll-ms", "500")
    check = Consumer({"bootstrap.servers": bootstrap, "group.id": "committer"})
    committed = check.committed([TopicPartition("events", 0)], timeout=30)
    check.close()
    assert committed[0].offset == commits - 1


def test_kill_9_during_a_clean_loses_nothing_acknowledged(empty_cluster):
    """The cleaner is slowed to 300 KB/s so that a pass is in progress when the broker is
    killed; after the restart every key's latest acknowledged value is there, and cleaning
    finishes."""
    cluster = empty_cluster
    cluster.start_coordinator()
    slow = (*FAST_CLEANER, "--log-cleaner-io-max-bytes-per-second", "300000")
    cluster.start_broker(1, *slow)
    create_topic(cluster, "state", config={**FAST, "delete.retention.ms": "86400000"})
    bootstrap = cluster.bootstrap()
    value = b"x" * 1000
    updates = [(f"k{i % 500}".encode(), value + str(i).encode()) for i in range(4000)]
    last = produce_updates("confluent", bootstrap, "state", updates)
    broker = cluster.brokers[1]
    wait_until(lambda: "beginning to compact the log" in broker.log(), timeout=30, what="a clean to start")
    time.sleep(0.5)  # into the pass: at 300 KB/s the 4 MB pass takes seconds
    assert "compacted the log" not in broker.log(), "the pass finished before the kill; slow it down further"
    broker.kill()
    cluster.start_broker(1, *FAST_CLEANER)
    want = sorted((o, k, v) for k, (o, v) in last.items())
    got = read_partition(bootstrap, "state")
    latest = {}
    for o, k, v in got:
        latest[k] = (o, v)
    assert sorted((o, k, v) for k, (o, v) in latest.items()) == want, "a latest value was lost"
    wait_until(lambda: read_partition(bootstrap, "state") == want, timeout=60, interval=0.5,
               what="cleaning to finish after the restart")


def test_replicas_agree_with_the_leader_record_by_record_and_a_new_replica_copies_the_gaps(empty_cluster):
    """Each replica compacts its own copy; once both are clean they hold the same records at
    the same offsets (read through each as leader). A replica added by reassignment copies
    the compacted leader's log, gaps included, and agrees too."""
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KpTP

    cluster = empty_cluster
    cluster.start_coordinator()
    for b in (1, 2, 3):
        cluster.start_broker(b, *FAST_CLEANER)
    cluster.wait_brokers_know_each_other()
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("mirrored", 1, replica_assignment=[[1, 2]], config=FAST)])["mirrored"].result(30)
    cluster.wait_topic_led("mirrored")
    bootstrap = cluster.bootstrap()
    last = produce_updates("confluent", bootstrap, "mirrored",
                           [(f"k{i % 50}".encode(), f"v{i}".encode()) for i in range(3000)])
    want = sorted((o, k, v) for k, (o, v) in last.items())

    def cleaned_everywhere(replicas):
        p = topic_view(cluster, "mirrored")["partitions"][0]
        sizes = p["replica_size_bytes"]
        return all(r in map(int, sizes) for r in replicas) and max(sizes.values()) < 10_000

    wait_until(lambda: read_partition(bootstrap, "mirrored") == want, timeout=60, interval=0.5, what="leader compacted")
    wait_until(lambda: cleaned_everywhere([1, 2]), timeout=60, interval=0.5, what="follower compacted")

    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        kp.alter_partition_reassignments({KpTP("mirrored", 0): [2, 3]})
        wait_until(lambda: topic_view(cluster, "mirrored")["partitions"][0]["replicas"] == [2, 3]
                   and http_get(cluster.http + "/reassignments")[1]["reassignments"] == [],
                   timeout=60, what="the move to [2, 3]")
    finally:
        kp.close()
    # Broker 2 leads now: its copy reads the same.
    wait_until(lambda: topic_view(cluster, "mirrored")["partitions"][0]["leader"] == 2, timeout=30, what="2 to lead")
    assert read_partition(bootstrap, "mirrored") == want, "the follower's compacted copy differs"
    # Broker 3 copied the compacted log; make it lead and read it.
    wait_until(lambda: 3 in topic_view(cluster, "mirrored")["partitions"][0]["isr"], timeout=30, what="3 in the ISR")
    cluster.brokers[2].terminate()
    wait_until(lambda: topic_view(cluster, "mirrored")["partitions"][0]["leader"] == 3, timeout=30, what="3 to lead")
    assert read_partition(bootstrap, "mirrored") == want, "the new replica's copy differs"


def test_keyless_records_of_a_batch_are_named_as_the_culprits(cluster):
    """KIP-467: the Produce answer names each refused record (record_errors). Kafka refuses
    the whole batch; librdkafka fails the named records with INVALID_RECORD and the others
    with _INVALID_DIFFERENT_RECORD ("an invalid record in the same batch caused the failure
    of this message too"), so an application can resend exactly those. Without
    record_errors every record would carry INVALID_RECORD."""
    create_topic(cluster, "mixed", config={"cleanup.policy": "compact"})
    p = Producer({"bootstrap.servers": cluster.bootstrap(), "linger.ms": 500, "batch.num.messages": 100})
    results = {}
    for i in range(20):
        key = None if i % 2 else b"k%d" % i
        p.produce("mixed", key=key, value=b"%d" % i, on_delivery=lambda err, msg, i=i: results.__setitem__(i, err))
    assert p.flush(60) == 0
    codes = {i: err.code() if err else 0 for i, err in results.items()}
    assert sorted(i for i, c in codes.items() if c == INVALID_RECORD) == list(range(1, 20, 2)), results
    assert sorted(i for i, c in codes.items() if c == INVALID_DIFFERENT_RECORD) == list(range(0, 20, 2)), results
    # The keyed ones, resent alone, are written; nothing of the refused batch was.
    for i in range(0, 20, 2):
        p.produce("mixed", key=b"k%d" % i, value=b"%d" % i)
    assert p.flush(30) == 0
    assert sorted(int(v) for _, _, v in read_partition(cluster.bootstrap(), "mixed")) == list(range(0, 20, 2))
