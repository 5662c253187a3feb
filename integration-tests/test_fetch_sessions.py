"""Incremental fetch sessions (KIP-227) with kafka-python, which opens one by default: after
one full fetch over every assigned partition, its fetches name only the partitions whose
position moved and the broker answers only those with something new."""
import logging
import os
import re
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from harness import create_topic, free_port, wait_until
from test_metrics import scrape, value

PARTITIONS = 20
INCREMENTAL = re.compile(r"sent an incremental fetch response for session (\d+) with (\d+) response partitions \((\d+) implied\)")


class Captured(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.timeout(120)
def test_kafka_python_consumes_through_an_incremental_fetch_session(empty_cluster):
    cluster = empty_cluster
    cluster.start_coordinator()
    metrics_port = free_port()
    cluster.start_broker(1, "--metrics-listen", f"127.0.0.1:{metrics_port}")
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    create_topic(cluster, "sessions", partitions=PARTITIONS)

    captured = Captured()
    fetcher_log = logging.getLogger("kafka.consumer.fetcher")
    level = fetcher_log.level
    fetcher_log.addHandler(captured)
    fetcher_log.setLevel(logging.DEBUG)
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap())
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap(), auto_offset_reset="earliest",
                             fetch_max_wait_ms=100, consumer_timeout_ms=500)
    try:
        consumer.assign([TopicPartition("sessions", p) for p in range(PARTITIONS)])
        received = {}

        def drain(want):
            for m in consumer:
                received.setdefault(m.partition, []).append(m.value)
            return sum(len(v) for v in received.values()) >= want

        # Quiet partitions first: the session opens over all twenty.
        def opened():
            consumer.poll(timeout_ms=100)  # nothing produced yet: this only drives the fetches
            return any("created a new incremental fetch session" in m for m in captured.messages)

        wait_until(opened, timeout=30, what="kafka-python to open a fetch session")
        expected = {}
        for wave, partition in enumerate([3, 17, 3]):
            values = [b"w%d-%d" % (wave, i) for i in range(10)]
            for v in values:
                producer.send("sessions", v, partition=partition)
            producer.flush()
            expected.setdefault(partition, []).extend(values)
            wait_until(lambda: drain(10 * (wave + 1)), timeout=30, what=f"wave {wave} on partition {partition}")
        assert received == expected

        # The answers that carried records named only the partition that had them.
        answers = [tuple(map(int, m.groups())) for m in map(INCREMENTAL.search, captured.messages) if m]
        assert answers, captured.messages[-20:]
        assert all(n + implied == PARTITIONS for _, n, implied in answers), answers
        assert any(n == 1 for _, n, _ in answers), answers
        assert len({session for session, _, _ in answers}) == 1, "one session throughout"
        # Nothing was refused or malformed (kafka-python logs those at INFO).
        assert not [m for m in captured.messages if "unable to process" in m or "invalid" in m]

        samples = scrape(url)
        assert value(samples, "kafka_server_fetchsessioncache_numincrementalfetchsessions") >= 1
        assert value(samples, "kafka_server_fetchsessioncache_numincrementalfetchpartitionscached") >= PARTITIONS
    finally:
        consumer.close()
        producer.close()
        fetcher_log.removeHandler(captured)
        fetcher_log.setLevel(level)


@pytest.mark.timeout(180)
def test_followers_replicate_through_fetch_sessions(empty_cluster):
    """Each follower keeps one session with each leader: after the first full fetch it names
    only the partitions it moved, and every replica still catches up."""
    from confluent_kafka import Producer

    from harness import http_get

    cluster = empty_cluster
    cluster.start_coordinator()
    ports = {b: free_port() for b in (1, 2, 3)}
    lag_ms = 1000
    env = dict(os.environ, TRIBUTARY_REPLICA_LAG_TIME_MAX_MS=str(lag_ms))
    for b in (1, 2, 3):
        cluster.start_broker(b, "--metrics-listen", f"127.0.0.1:{ports[b]}", env=env)
    cluster.wait_brokers_know_each_other()
    create_topic(cluster, "replicated", partitions=12, replication_factor=3)
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all"})
    for i in range(120):
        producer.produce("replicated", b"v%d" % i, partition=i % 12)
    assert producer.flush(30) == 0

    def all_in_sync():
        partitions = http_get(f"{cluster.http}/topics/replicated")[1]["partitions"]
        return len(partitions) == 12 and all(len(p["isr"]) == 3 for p in partitions)

    wait_until(all_in_sync, timeout=60, what="every replica in sync")
    # Every broker leads some partitions and holds one session per follower of them.
    for b in (1, 2, 3):
        def sessions():
            s = scrape(f"http://127.0.0.1:{ports[b]}/metrics")
            leads = value(s, "kafka_server_replicamanager_leadercount")
            held = value(s, "kafka_server_fetchsessioncache_numincrementalfetchpartitionscached")
            return leads and value(s, "kafka_server_fetchsessioncache_numincrementalfetchsessions") == 2 and held == 2 * leads

        wait_until(sessions, timeout=30, what=f"two follower sessions on broker {b} over the partitions it leads")
    # Quiet partitions in a session still count as fetched: over three replica.lag.time.max.ms
    # without writes, no follower leaves the ISR.
    deadline = time.monotonic() + 3 * lag_ms / 1000
    while time.monotonic() < deadline:
        assert all_in_sync(), http_get(f"{cluster.http}/topics/replicated")[1]["partitions"]
        time.sleep(0.1)
    # A late write to one partition reaches every replica through the sessions.
    producer.produce("replicated", b"late", partition=5)
    assert producer.flush(30) == 0

    def replicas_have_it():
        ends = [value(scrape(f"http://127.0.0.1:{ports[b]}/metrics"), "kafka_log_log_logendoffset",
                      topic="replicated", partition="5") for b in (1, 2, 3)]
        return ends == [11, 11, 11]

    wait_until(replicas_have_it, timeout=30, what="the late write on all three replicas")
