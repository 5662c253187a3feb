"""Bad input gets Kafka's error code or a closed connection with a log line: never a crash,
never lost or corrupted data, other connections unaffected."""
import re
import struct

import pytest
from confluent_kafka import KafkaError, Producer

from harness import (RawConnection, api_versions_v0_ok, frame, kstr, parse_produce_v3_error, produce_v3, record_batch,
                     wait_until)


@pytest.fixture
def broker(cluster):
    port = cluster.broker_ports[1]
    # A connection opened before the abuse must keep working through it.
    bystander = RawConnection(port)
    yield cluster, port
    bystander.send(frame(18, 0, 5, b""))
    assert struct.unpack(">i", bystander.recv_frame()[:4])[0] == 5, "an unrelated connection was affected"
    bystander.close()
    assert cluster.brokers[1].alive(), cluster.brokers[1].log()[-3000:]
    assert api_versions_v0_ok(port)


def closes_with_log(cluster, port, data, log_needle):
    c = RawConnection(port)
    c.send(data)
    assert c.closed_by_peer(), "the broker should close the connection"
    c.close()
    wait_until(lambda: log_needle in cluster.brokers[1].log(), timeout=5, what=f"a log line containing {log_needle!r}")


def test_an_oversized_frame_closes_only_that_connection(broker):
    cluster, port = broker
    closes_with_log(cluster, port, struct.pack(">i", 200 * 1024 * 1024) + b"\x00" * 16, "exceeds socket.request.max.bytes")


def test_a_negative_size_closes_the_connection(broker):
    cluster, port = broker
    closes_with_log(cluster, port, struct.pack(">i", -5), "negative request size")


def test_unknown_api_keys_and_versions_close_the_connection(broker):
    cluster, port = broker
    closes_with_log(cluster, port, frame(999, 0, 1, b""), "unknown api key 999")
    closes_with_log(cluster, port, frame(3, 99, 1, b""), "Metadata v99 is outside the advertised range")
    # CreateDelegationToken (38): a Kafka API this broker does not offer.
    closes_with_log(cluster, port, frame(38, 1, 1, b""), "is not supported by this broker")


def test_a_too_new_api_versions_gets_the_v0_fallback(broker):
    _, port = broker
    c = RawConnection(port)
    c.send(frame(18, 77, 42, b"", flexible=True))
    reply = c.recv_frame()
    correlation_id, error_code, n = struct.unpack(">ihi", reply[:10])
    assert (correlation_id, error_code) == (42, 35)  # UNSUPPORTED_VERSION, encoded as v0
    keys = {struct.unpack(">hhh", reply[10 + 6 * i:16 + 6 * i])[0] for i in range(n)}
    assert {0, 1, 3, 18} <= keys
    c.close()


def test_malformed_and_hostile_bodies_close_the_connection(broker):
    cluster, port = broker
    closes_with_log(cluster, port, frame(3, 1, 1, b"\x00\x00"), "request is malformed")
    # An array claiming 2^31-1 topics with nothing behind it: no giant allocation, no abort.
    closes_with_log(cluster, port, frame(3, 1, 2, b"\x7f\xff\xff\xff"), "request is malformed")
    closes_with_log(cluster, port, struct.pack(">i", 3) + b"\x00\x03\x00", "shorter than a request header")


def produce_raw(port, topic, partition, records):
    c = RawConnection(port)
    c.send(frame(0, 3, 1, produce_v3(topic, partition, records)))
    result = parse_produce_v3_error(c.recv_frame())
    c.close()
    return result


def test_crc_mismatch_is_corrupt_message_and_nothing_is_stored(broker):
    cluster, port = broker
    Producer({"bootstrap.servers": cluster.bootstrap()}).list_topics("crc", timeout=10)  # auto-create
    cluster.wait_topic_led("crc")
    batch = bytearray(record_batch([b"one", b"two"]))
    batch[-1] ^= 0xFF
    assert produce_raw(port, "crc", 0, bytes(batch))[0] == 2  # CORRUPT_MESSAGE
    truncated = record_batch([b"x"])[:-3]
    assert produce_raw(port, "crc", 0, truncated)[0] == 2
    # The next valid batch gets offset 0: nothing of the bad ones was stored.
    assert produce_raw(port, "crc", 0, record_batch([b"good"])) == (0, 0)


def test_unknown_topics_and_partitions_are_unknown_topic_or_partition(broker):
    cluster, port = broker
    Producer({"bootstrap.servers": cluster.bootstrap()}).list_topics("known", timeout=10)
    cluster.wait_topic_led("known")
    assert produce_raw(port, "known", 7, record_batch([b"x"]))[0] == 3
    assert produce_raw(port, "never-created", 0, record_batch([b"x"]))[0] == 3


def test_invalid_topic_names_are_invalid_topic_exception(broker):
    _, port = broker
    c = RawConnection(port)
    body = struct.pack(">i", 2) + kstr("bad name!") + kstr("x" * 250)  # Metadata v1 topics
    c.send(frame(3, 1, 1, body))
    reply = c.recv_frame()
    c.close()
    assert reply.count(struct.pack(">h", 17)) >= 2  # INVALID_TOPIC_EXCEPTION for both


def test_a_batch_over_message_max_bytes_is_message_too_large(empty_cluster):
    cluster = empty_cluster
    cluster.start_coordinator()
    cluster.start_broker(1, "--message-max-bytes", "10000")
    errors = []
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "message.max.bytes": 1000000})
    producer.produce("big", value=b"x" * 20000, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(20)
    assert errors and errors[0] is not None and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    small = []
    producer.produce("big", value=b"y" * 100, on_delivery=lambda err, msg: small.append((err, msg.offset())))
    producer.flush(20)
    assert small == [(None, 0)], "the refused batch left nothing behind"
    assert cluster.brokers[1].alive()


LEVEL_LINE = re.compile(r"^\S+Z\s+(INFO|WARN|ERROR) ")


def test_log_lines_name_the_broker_and_the_request_they_belong_to(broker):
    cluster, port = broker
    Producer({"bootstrap.servers": cluster.bootstrap()}).list_topics("logged", timeout=10)
    cluster.wait_topic_led("logged")
    batch = bytearray(record_batch([b"one"]))
    batch[-1] ^= 0xFF
    assert produce_raw(port, "logged", 0, bytes(batch))[0] == 2  # CORRUPT_MESSAGE
    needle = "refused a record batch"
    wait_until(lambda: needle in cluster.brokers[1].log(), timeout=5, what=f"a log line containing {needle!r}")
    line = next(line for line in cluster.brokers[1].log().splitlines() if needle in line)
    for part in ("WARN broker_id=1 ", "peer=127.0.0.1:", 'client_id="raw-test"', "api=Produce", "v=3", "logged-0"):
        assert part in line, (part, line)

    broker_lines = [line for line in cluster.brokers[1].log().splitlines() if LEVEL_LINE.match(line)]
    assert broker_lines and all(" broker_id=1 " in line for line in broker_lines), \
        [line for line in broker_lines if " broker_id=1 " not in line][:3]
    coordinator_lines = [line for line in cluster.coordinators[0].log().splitlines() if LEVEL_LINE.match(line)]
    assert coordinator_lines and all(" controller_id=" in line for line in coordinator_lines), \
        [line for line in coordinator_lines if " controller_id=" not in line][:3]
    elected = next(line for line in coordinator_lines if "became the active controller" in line)
    assert re.search(r" controller_epoch=\d+ ", elected), elected
