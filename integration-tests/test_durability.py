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
