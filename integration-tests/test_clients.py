"""Real clients against a real cluster: the tutorial scripts, confluent-kafka, kcat, AdminClient."""
import json
import random
import subprocess
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

from harness import http_get, wait_until


def test_kafka_python_tutorial_scripts_run_unchanged(cluster):
    # The producer and consumer from the Kafka tutorials, as users have them.
    from kafka import KafkaConsumer, KafkaProducer

    bootstrap = [cluster.bootstrap()]
    producer = KafkaProducer(bootstrap_servers=bootstrap, value_serializer=lambda x: json.dumps(x).encode("utf-8"))
    sent = [{"sensorID": "AI110", "value": random.random(), "timestamp": time.time(), "i": i} for i in range(50)]
    for reading in sent:
        producer.send("sensors", value=reading)
    producer.flush()
    producer.close()

    consumer = KafkaConsumer("sensors", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             value_deserializer=lambda x: json.loads(x.decode("utf-8")), consumer_timeout_ms=10000)
    received = []
    for message in consumer:
        received.append(message.value)
        if len(received) == len(sent):
            break
    consumer.close()
    assert received == sent
    # The topic was auto-created with the broker defaults (num.partitions=1, RF 1).
    status, topic = http_get(f"{cluster.http}/topics/sensors")
    assert status == 200
    assert [p["replicas"] for p in topic["partitions"]] == [[1]]


def test_confluent_keyed_acks_all_reads_back_in_order_per_partition(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("keyed", num_partitions=3, replication_factor=1)], operation_timeout=15)["keyed"].result()

    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "linger.ms": 5})
    acked = []

    def on_delivery(err, msg):
        assert err is None, err
        acked.append((msg.partition(), msg.offset(), msg.key(), msg.value()))

    for i in range(1500):
        producer.produce("keyed", key=f"sensor-{i % 11}".encode(), value=f"reading-{i}".encode(), on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert len(acked) == 1500
    # Same key, same partition (the default partitioner hashes keys).
    partition_of = {}
    for partition, _, key, _ in acked:
        assert partition_of.setdefault(key, partition) == partition

    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "readback", "enable.auto.commit": False})
    consumer.assign([TopicPartition("keyed", p, 0) for p in range(3)])
    received = []
    deadline = time.monotonic() + 30
    while len(received) < len(acked) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        received.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
    consumer.close()
    for p in range(3):
        assert [r for r in received if r[0] == p] == [a for a in acked if a[0] == p], f"partition {p} differs"


def test_kcat_lists_metadata_and_round_trips_records(cluster):
    lines = [f"key{i}:value {i}" for i in range(20)]
    subprocess.run(["kcat", "-b", cluster.bootstrap(), "-P", "-t", "kcat-topic", "-K:"], input="\n".join(lines) + "\n",
                   text=True, check=True, timeout=60)
    out = subprocess.run(["kcat", "-b", cluster.bootstrap(), "-C", "-t", "kcat-topic", "-o", "beginning", "-e", "-f", "%k:%s\n"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.splitlines() == lines
    meta = json.loads(subprocess.run(["kcat", "-b", cluster.bootstrap(), "-L", "-J"], capture_output=True, text=True,
                                     check=True, timeout=60).stdout)
    assert [b["id"] for b in meta["brokers"]] == [1]
    topic = next(t for t in meta["topics"] if t["topic"] == "kcat-topic")
    assert topic["partitions"][0]["leader"] == 1
    assert meta["controllerid"] == 1


def test_admin_client_creates_describes_grows_and_deletes_topics(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    # validate_only writes nothing.
    admin.create_topics([NewTopic("admin-t", 2, 1)], validate_only=True)["admin-t"].result()
    assert http_get(f"{cluster.http}/topics/admin-t")[0] == 404
    admin.create_topics([NewTopic("admin-t", 2, 1, config={"retention.ms": "3600000"})], operation_timeout=15)["admin-t"].result()
    cluster.wait_topic_led("admin-t", partitions=2)

    configs = admin.describe_configs([ConfigResource("topic", "admin-t")])
    entries = next(iter(configs.values())).result()
    assert entries["retention.ms"].value == "3600000"
    assert not entries["retention.ms"].is_default
    assert entries["cleanup.policy"].value == "delete"
    assert entries["cleanup.policy"].is_default

    admin.create_partitions([NewPartitions("admin-t", 4)], operation_timeout=15)["admin-t"].result()
    cluster.wait_topic_led("admin-t", partitions=4)
    assert len(admin.list_topics(timeout=10).topics["admin-t"].partitions) == 4

    producer = Producer({"bootstrap.servers": cluster.bootstrap()})
    for i in range(10):
        producer.produce("admin-t", value=b"x", partition=i % 4)
    assert producer.flush(15) == 0

    admin.delete_topics(["admin-t"], operation_timeout=15)["admin-t"].result()
    wait_until(lambda: "admin-t" not in admin.list_topics(timeout=10).topics, what="the topic to vanish from metadata")
    # Re-created under the same name, it starts empty: the old data went with the old topic.
    admin.create_topics([NewTopic("admin-t", 1, 1)], operation_timeout=15)["admin-t"].result()
    cluster.wait_topic_led("admin-t", partitions=1)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "g", "enable.auto.commit": False})
    low, high = consumer.get_watermark_offsets(TopicPartition("admin-t", 0), timeout=10)
    consumer.close()
    assert (low, high) == (0, 0)


def test_admin_client_errors_carry_kafka_codes(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    cases = {
        "bad name!": (NewTopic("bad name!", 1, 1), 17),  # INVALID_TOPIC_EXCEPTION
        "too-many-replicas": (NewTopic("too-many-replicas", 1, 3), 38),  # INVALID_REPLICATION_FACTOR
        "bad-config": (NewTopic("bad-config", 1, 1, config={"retention.ms": "soon"}), 40),  # INVALID_CONFIG
    }
    for name, (topic, code) in cases.items():
        try:
            admin.create_topics([topic], operation_timeout=15)[name].result()
            raise AssertionError(f"{name} should have been refused")
        except KafkaException as e:
            assert e.args[0].code() == code, (name, e)
    admin.create_topics([NewTopic("dup", 1, 1)], operation_timeout=15)["dup"].result()
    try:
        admin.create_topics([NewTopic("dup", 1, 1)], operation_timeout=15)["dup"].result()
        raise AssertionError("a second create should fail")
    except KafkaException as e:
        assert e.args[0].code() == 36  # TOPIC_ALREADY_EXISTS
    try:
        admin.create_partitions([NewPartitions("dup", 1)], operation_timeout=15)["dup"].result()
        raise AssertionError("shrinking should fail")
    except KafkaException as e:
        assert e.args[0].code() == 37  # INVALID_PARTITIONS
