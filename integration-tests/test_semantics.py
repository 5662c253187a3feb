"""Kafka semantics seen through real clients: acks=0, LogAppendTime, offsets by
timestamp, retention."""
import time

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import struct

from harness import RawConnection, frame, produce_v3, record_batch, wait_until


def read_all(bootstrap, topic, count, timeout=30, offset=0):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sem", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, offset)])
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and not m.error():
            out.append(m)
    consumer.close()
    return out


def test_acks_0_records_arrive_without_responses(cluster):
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=[cluster.bootstrap()], acks=0, enable_idempotence=False)
    for i in range(100):
        producer.send("acks0", value=f"v{i}".encode())
    producer.flush()
    producer.close()
    assert [m.value() for m in read_all(cluster.bootstrap(), "acks0", 100)] == [f"v{i}".encode() for i in range(100)]
    # On the wire: an acks=0 Produce gets no response, so the next answer on the
    # connection belongs to the request that follows it.
    port = cluster.broker_ports[1]
    c = RawConnection(port)
    c.send(frame(0, 3, 11, produce_v3("acks0", 0, record_batch([b"silent"]), acks=0)))
    c.send(frame(18, 0, 12, b""))
    assert struct.unpack(">i", c.recv_frame()[:4])[0] == 12
    c.close()


def test_log_append_time_topics_stamp_the_broker_time(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("lat", 1, 1, config={"message.timestamp.type": "LogAppendTime"})], operation_timeout=15)["lat"].result()
    cluster.wait_topic_led("lat")
    before = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": cluster.bootstrap()})
    producer.produce("lat", value=b"x", timestamp=1000)  # an old CreateTime the broker must override
    assert producer.flush(15) == 0
    after = int(time.time() * 1000)
    (message,) = read_all(cluster.bootstrap(), "lat", 1)
    kind, ts = message.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before - 1000 <= ts <= after + 1000


INVALID_TIMESTAMP, INVALID_RECORD = 32, 87
INVALID_DIFFERENT_RECORD = -138  # librdkafka's local code for a culprit's innocent batch mates


def test_records_stamped_outside_the_topics_bounds_are_named_and_refused(cluster):
    """KIP-937 bounds with KIP-467 answers (issue 18 item 3): on a topic with
    message.timestamp.before.max.ms and after.max.ms of one hour, a batch of 20 where every
    other record is stamped two days ago or two days ahead is refused whole; the answer names
    those records, so librdkafka fails exactly them (INVALID_RECORD when several) and their
    batch mates with _INVALID_DIFFERENT_RECORD; a lone one gets INVALID_TIMESTAMP; resent
    alone, the good ones are written."""
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    hour = 3_600_000
    admin.create_topics([NewTopic("stamped", 1, 1, config={"message.timestamp.before.max.ms": str(hour),
                                                            "message.timestamp.after.max.ms": str(hour)})],
                        operation_timeout=15)["stamped"].result()
    cluster.wait_topic_led("stamped")
    now = int(time.time() * 1000)
    stamp = {i: now if i % 2 == 0 else now + (1 if i % 4 == 1 else -1) * 48 * hour for i in range(20)}
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "linger.ms": 500, "batch.num.messages": 100})
    results = {}
    for i in range(20):
        producer.produce("stamped", value=b"%d" % i, timestamp=stamp[i],
                         on_delivery=lambda err, msg, i=i: results.__setitem__(i, err))
    assert producer.flush(60) == 0
    codes = {i: err.code() if err else 0 for i, err in results.items()}
    # With more than one record error librdkafka gives each culprit INVALID_RECORD (the
    # partition's INVALID_TIMESTAMP goes to a lone culprit, below).
    assert sorted(i for i, c in codes.items() if c == INVALID_RECORD) == list(range(1, 20, 2)), results
    assert sorted(i for i, c in codes.items() if c == INVALID_DIFFERENT_RECORD) == list(range(0, 20, 2)), results
    lone = []
    producer.produce("stamped", value=b"late", timestamp=now - 48 * hour, on_delivery=lambda err, msg: lone.append(err))
    assert producer.flush(30) == 0
    assert lone[0] is not None and lone[0].code() == INVALID_TIMESTAMP, lone
    for i in range(0, 20, 2):
        producer.produce("stamped", value=b"%d" % i, timestamp=stamp[i])
    assert producer.flush(30) == 0
    assert [int(m.value()) for m in read_all(cluster.bootstrap(), "stamped", 10)] == list(range(0, 20, 2))


def test_offsets_for_times_finds_the_first_record_at_or_after(cluster):
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "linger.ms": 0})
    for i, ts in enumerate([1_000_000, 2_000_000, 3_000_000]):
        producer.produce("times", value=f"r{i}".encode(), timestamp=ts)
        producer.flush(15)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "t", "enable.auto.commit": False})
    found = consumer.offsets_for_times([TopicPartition("times", 0, 1_500_000)], timeout=10)
    assert found[0].offset == 1
    found = consumer.offsets_for_times([TopicPartition("times", 0, 9_000_000)], timeout=10)
    assert found[0].offset == -1  # nothing that late: the end
    consumer.close()


def test_timestamp_lookups_answer_at_record_granularity_within_a_batch(cluster):
    """KIP-79 and KIP-734 (KAFKA-16310) within one batch: three records stamped +100, +400
    and +200 ms travel together; by time, the answer is the first record at or after the
    target, and MAX_TIMESTAMP names the record holding the largest timestamp (librdkafka's
    offsetsForTimes test and confluent-kafka's list_offsets test, which failed at batch
    granularity)."""
    from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
    from confluent_kafka import TopicPartition as TP

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("in-batch", 1, 1)])["in-batch"].result(15)
    cluster.wait_topic_led("in-batch")
    base = 1_700_000_000_000
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "linger.ms": 500, "batch.num.messages": 3})
    for i, delta in enumerate([100, 400, 200]):
        producer.produce("in-batch", value=f"r{i}".encode(), timestamp=base + delta)
    assert producer.flush(15) == 0
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "t", "enable.auto.commit": False})
    for target, want in [(base, 0), (base + 150, 1), (base + 300, 1), (base + 400, 1), (base + 401, -1)]:
        found = consumer.offsets_for_times([TopicPartition("in-batch", 0, target)], timeout=10)
        assert found[0].offset == want, (target - base, found[0].offset)
    consumer.close()
    result = admin.list_offsets({TP("in-batch", 0): OffsetSpec.max_timestamp()})[TP("in-batch", 0)].result(10)
    assert (result.offset, result.timestamp) == (1, base + 400), result


def test_retention_by_time_advances_the_log_start(empty_cluster):
    cluster = empty_cluster
    cluster.start_coordinator()
    cluster.start_broker(1, "--log-retention-check-interval-ms", "200")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("short", 1, 1, config={"retention.ms": "1000"})], operation_timeout=15)["short"].result()
    cluster.wait_topic_led("short")
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "linger.ms": 0})
    old = int(time.time() * 1000) - 60_000
    for i in range(5):
        producer.produce("short", value=f"old{i}".encode(), timestamp=old)
        producer.flush(15)
    producer.produce("short", value=b"new")
    producer.flush(15)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "r", "enable.auto.commit": False})
    wait_until(lambda: consumer.get_watermark_offsets(TopicPartition("short", 0), timeout=5)[0] == 5, timeout=30,
               what="retention to delete the five old batches")
    assert consumer.get_watermark_offsets(TopicPartition("short", 0), timeout=5) == (5, 6)
    consumer.close()
    assert [m.value() for m in read_all(cluster.bootstrap(), "short", 1, offset=-2)] == [b"new"]  # from the log start


def test_a_leader_named_by_metadata_accepts_produce_at_once(cluster):
    # Metadata (and CreateTopics, which waits for leaders) must not name this broker leader
    # before it acts as one: a NOT_LEADER_OR_FOLLOWER in that window makes clients retry a
    # batch after later ones, reordering records.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    port = cluster.broker_ports[1]
    for i in range(30):
        topic = f"ready-{i}"
        admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=15)[topic].result()
        assert produce_raw(port, topic, record_batch([b"first"])) == (0, 0), topic


def produce_raw(port, topic, records):
    from harness import parse_produce_v3_error

    c = RawConnection(port)
    c.send(frame(0, 3, 1, produce_v3(topic, 0, records)))
    result = parse_produce_v3_error(c.recv_frame())
    c.close()
    return result


def test_nullable_strings_with_nothing_to_say_are_null(cluster):
    """Kafka sends null, not "", for an error message when there is no error (aiokafka's
    admin test checks a created topic's error_message `is None` before deleting it)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic as AioNewTopic

    async def run():
        admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap())
        await admin.start()
        try:
            created = await admin.create_topics([AioNewTopic("nulls", 1, 1)])
            listed = await admin.list_topics()
            deleted = await admin.delete_topics(["nulls"])
            return created, listed, deleted
        finally:
            await admin.close()

    created, listed, deleted = asyncio.run(asyncio.wait_for(run(), 60))
    assert created.topic_errors[0][:2] == ("nulls", 0)
    assert created.topic_errors[0][2] is None, created.topic_errors
    assert "nulls" in listed
    assert deleted.topic_error_codes == [("nulls", 0)]
