"""Acknowledged records survive kill -9 of the broker; restarts keep data."""
import threading

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from harness import consume_all, wait_until


def test_kill_9_keeps_every_acknowledged_record(cluster):
    topic = "durable"
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic(topic, 2, 1)], operation_timeout=15)[topic].result()
    cluster.wait_topic_led(topic, partitions=2)
    acked = {}
    stop = threading.Event()

    def produce():
        producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "linger.ms": 2,
                             "message.timeout.ms": 4000, "retries": 0})

        def on_delivery(err, msg):
            if err is None:
                acked[(msg.partition(), msg.offset())] = msg.value()

        i = 0
        while not stop.is_set():
            try:
                producer.produce(topic, key=str(i).encode(), value=f"record-{i}".encode(), on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            producer.poll(0.001)
        producer.flush(10)

    writer = threading.Thread(target=produce)
    writer.start()
    wait_until(lambda: len(acked) >= 3000, timeout=60, what="3000 acknowledged records")
    cluster.brokers[1].kill()  # kill -9 while the producer is mid-stream
    stop.set()
    writer.join(30)
    before_restart = dict(acked)
    assert len(before_restart) >= 3000

    cluster.start_broker(1)
    cluster.wait_topic_led(topic, partitions=2)
    got = consume_all(cluster.bootstrap(), topic, 2, before_restart.keys())
    missing = {k: v for k, v in before_restart.items() if got.get(k) != v}
    assert not missing, f"{len(missing)} acknowledged records lost or changed, e.g. {list(missing.items())[:3]}"


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
