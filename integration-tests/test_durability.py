"""Acknowledged records survive kill -9 of the broker and a SIGTERM mid-stream; restarts keep data."""
import signal

from confluent_kafka import Producer

from harness import ContinuousProducer, consume_all, create_topic, wait_until


def assert_all_acknowledged_records_read_after_restart(cluster, topic, partitions, acked):
    acked = dict(acked)
    assert len(acked) >= 3000
    cluster.start_broker(1)
    cluster.wait_topic_led(topic, partitions=partitions)
    got = consume_all(cluster.bootstrap(), topic, partitions, acked.keys())
    missing = {k: v for k, v in acked.items() if got.get(k) != v}
    assert not missing, f"{len(missing)} acknowledged records lost or changed, e.g. {list(missing.items())[:3]}"


def test_kill_9_keeps_every_acknowledged_record(cluster):
    topic = "durable"
    create_topic(cluster, topic, partitions=2)
    with ContinuousProducer(cluster.bootstrap(), topic, acks="all") as writer:
        wait_until(lambda: len(writer.acked) >= 3000, timeout=60, what="3000 acknowledged records")
        cluster.brokers[1].kill()  # kill -9 while the producer is mid-stream
    assert_all_acknowledged_records_read_after_restart(cluster, topic, 2, writer.acked)


def test_sigterm_during_acks_all_produce_keeps_every_acknowledged_record(cluster):
    """Shutdown in Kafka's order: stop accepting, drain requests in progress, stop background
    work, flush, close the ZooKeeper session; exit 0, and every acknowledged record is there
    after a restart."""
    topic = "graceful"
    create_topic(cluster, topic, partitions=2)
    broker = cluster.brokers[1]
    with ContinuousProducer(cluster.bootstrap(), topic, acks="all") as writer:
        wait_until(lambda: len(writer.acked) >= 3000, timeout=60, what="3000 acknowledged records")
        broker.signal(signal.SIGTERM)
        assert broker.wait_exit(30) == 0, broker.log()[-3000:]
    log = broker.log()
    assert "shut down: connections closed, fetchers stopped, log store flushed, ZooKeeper session closed" in log
    assert_all_acknowledged_records_read_after_restart(cluster, topic, 2, writer.acked)


def test_a_clean_restart_keeps_data_and_offsets(cluster):
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "1"})
    for i in range(200):
        producer.produce("restart", value=f"v{i}".encode())
    assert producer.flush(15) == 0
    cluster.brokers[1].terminate()
    cluster.start_broker(1)
    cluster.wait_topic_led("restart", partitions=1)
    got = consume_all(cluster.bootstrap(), "restart", 1, [(0, o) for o in range(200)])
    assert [got[(0, o)] for o in range(200)] == [f"v{i}".encode() for i in range(200)]
    # New records continue the offsets.
    producer = Producer({"bootstrap.servers": cluster.bootstrap()})
    offsets = []
    producer.produce("restart", value=b"after", on_delivery=lambda e, m: offsets.append(m.offset()))
    assert producer.flush(15) == 0
    assert offsets == [200]


def test_a_clean_restart_takes_closed_chunks_and_producer_state_from_what_the_shutdown_stored(cluster):
    """A clean shutdown stores the producers' state with its last checkpoint, and closed
    chunks carry summaries: the restart reads back neither the chunks nor the batches, and
    the idempotent producer's state and every record are as before."""
    import re

    from kafka import KafkaAdminClient
    from kafka.structs import TopicPartition as KpTopicPartition

    topic = "snapshotted"
    create_topic(cluster, topic, config={"segment.bytes": "14"})  # every batch closes its chunk
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "enable.idempotence": True, "linger.ms": 0})
    for i in range(20):
        producer.produce(topic, value=f"v{i}".encode(), partition=0)
        assert producer.flush(15) == 0

    def producer_state():
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
        try:
            (state,) = admin.describe_producers([KpTopicPartition(topic, 0)]).values()
        finally:
            admin.close()
        producers = state.active_producers if hasattr(state, "active_producers") else state["active_producers"]
        get = (lambda p, k: getattr(p, k)) if producers and hasattr(producers[0], "last_sequence") else (lambda p, k: p[k])
        return [(get(p, "producer_id"), get(p, "producer_epoch"), get(p, "last_sequence")) for p in producers]

    before = producer_state()
    assert [s[1:] for s in before] == [(0, 19)], before
    broker = cluster.brokers[1]
    log_before = len(broker.log())
    broker.signal(signal.SIGTERM)
    assert broker.wait_exit(30) == 0, broker.log()[-3000:]
    broker = cluster.start_broker(1)
    cluster.wait_topic_led(topic)
    opened = re.compile(r"opened local replica tp=snapshotted-0 .*chunks_from_summaries=(\d+) chunks_read=(\d+)")
    wait_until(lambda: opened.search(broker.log()[log_before:]), timeout=30, what="the partition to open")
    summarized, read = map(int, opened.search(broker.log()[log_before:]).groups())
    assert (summarized, read) == (19, 1), "only the open chunk is read back"
    # The restarted broker opens the partition while the controller still has it leaderless
    # (its only replica was gone); wait for the leadership it then gets, not the view's old one.
    wait_until(lambda: "became leader tp=snapshotted-0" in broker.log()[log_before:], timeout=30,
               what="the restarted broker to lead snapshotted-0")
    assert producer_state() == before, "the producer's state comes back from the snapshot"
    # The same producer goes on where it was; every record reads back in order.
    producer.produce(topic, value=b"v20", partition=0)
    assert producer.flush(15) == 0
    assert producer_state() == [(before[0][0], 0, 20)]
    got = consume_all(cluster.bootstrap(), topic, 1, [(0, o) for o in range(21)])
    assert [got[(0, o)] for o in range(21)] == [f"v{i}".encode() for i in range(21)]
