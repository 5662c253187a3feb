"""Client quotas as `kafka-configs --entity-type clients/users` sets them (AlterClientQuotas,
stored in /config/clients and /config/users in Kafka's layout) and as Kafka enforces them:
a producer over its byte rate is answered with throttle_time_ms and muted, and slows to
its quota without errors. Neither Python client has an API for client quotas, so the
requests go through kafka-python's protocol classes, as the Java AdminClient sends them."""
import json
import subprocess
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka.protocol.admin.client_quotas import AlterClientQuotasRequest, DescribeClientQuotasRequest

from harness import wait_until

INVALID_REQUEST = 42


def send(cluster, request):
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    try:
        return kp._manager.run(kp._manager.send, request)
    finally:
        kp.close()


def alter_quota(cluster, entity, ops, validate_only=False):
    """entity: [(type, name or None)]; ops: [(key, value or None to remove)]. Returns
    (error_code, error_message)."""
    Entry = AlterClientQuotasRequest.EntryData
    request = AlterClientQuotasRequest(
        entries=[Entry(entity=[Entry.EntityData(entity_type=t, entity_name=n) for t, n in entity],
                       ops=[Entry.OpData(key=k, value=float(v or 0), remove=v is None) for k, v in ops])],
        validate_only=validate_only)
    (entry,) = send(cluster, request).entries
    return entry.error_code, entry.error_message


def describe_quotas(cluster, components, strict=False):
    """components: [(type, match_type, match)]. Returns {((type, name), ...): {key: value}}."""
    C = DescribeClientQuotasRequest.ComponentData
    response = send(cluster, DescribeClientQuotasRequest(
        components=[C(entity_type=t, match_type=m, match=n) for t, m, n in components], strict=strict))
    assert response.error_code == 0, response
    return {tuple((e.entity_type, e.entity_name) for e in entry.entity): {v.key: v.value for v in entry.values}
            for entry in response.entries}


def test_a_producer_byte_rate_slows_kcat_to_its_quota(empty_cluster, zk_client):
    cluster = empty_cluster
    cluster.start_coordinator()
    # Four one-second samples (Kafka's default is eleven): a fresh client may burst about
    # three seconds of quota before it is throttled.
    cluster.start_broker(1, "--quota-window-num", "2", "--quota-window-size-seconds", "1")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("metered", 1, 1, config={"message.timestamp.type": "LogAppendTime"})],
                        operation_timeout=15)["metered"].result()
    cluster.wait_topic_led("metered")
    quota = 1_000_000
    assert alter_quota(cluster, [("client-id", "kcat-slow")], [("producer_byte_rate", quota)]) == (0, None)
    data, _ = zk_client.get(f"{cluster.chroot}/config/clients/kcat-slow")
    assert json.loads(data) == {"version": 1, "config": {"producer_byte_rate": "1000000"}}
    assert describe_quotas(cluster, [("client-id", 0, "kcat-slow")]) == {(("client-id", "kcat-slow"),): {"producer_byte_rate": 1e6}}

    line = b"x" * 1000 + b"\n"
    records = 12000
    kcat = subprocess.run(
        ["kcat", "-P", "-b", cluster.bootstrap(), "-t", "metered", "-p", "0", "-X", "client.id=kcat-slow",
         "-X", "linger.ms=5", "-X", "message.timeout.ms=60000"],
        input=line * records, capture_output=True, timeout=120)
    assert kcat.returncode == 0, kcat.stderr.decode()[-2000:]

    # The rate as the broker appended it, after the first four seconds (the burst a fresh
    # client is allowed, and kcat starting up).
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "m", "enable.auto.commit": False})
    consumer.assign([TopicPartition("metered", 0, 0)])
    stamps = []
    deadline = time.monotonic() + 60
    while len(stamps) < records and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 1.0):
            if not msg.error():
                stamps.append((msg.timestamp()[1], len(msg.value())))
    consumer.close()
    assert len(stamps) == records, f"{len(stamps)} of {records} records read back"
    start = stamps[0][0] + 2000
    steady = [(ts, size) for ts, size in stamps if ts >= start]
    span_s = (steady[-1][0] - start) / 1000
    rate = sum(size for _, size in steady) / span_s
    print(f"kcat under a producer_byte_rate of {quota} B/s: {rate:.0f} B/s over {span_s:.1f} s after the burst")
    assert 0.8 * quota <= rate <= 1.2 * quota, f"steady rate {rate:.0f} B/s over {span_s:.1f} s against a quota of {quota}"


def test_bad_quotas_are_refused_and_nothing_changes(cluster, zk_client):
    cases = [
        ([("user", "alice")], [("producer_byte_rate", -5)], "positive"),
        ([("user", "alice")], [("producer_byte_rate", 1.5)], "whole number"),
        ([("user", "alice")], [("bytes_please", 10)], "Unrecognized"),
        ([("ip", "10.0.0.1")], [("connection_creation_rate", 10)], "IP quotas"),
        ([("user", "alice"), ("user", "bob")], [("producer_byte_rate", 10)], "twice"),
        ([], [("producer_byte_rate", 10)], "needs a user or a client-id"),
    ]
    for entity, ops, words in cases:
        code, message = alter_quota(cluster, entity, ops)
        assert (code, words in (message or "")) == (INVALID_REQUEST, True), (entity, ops, code, message)
    assert not zk_client.exists(f"{cluster.chroot}/config/users/alice")
    # validate_only writes nothing; defaults and users combine as Kafka names them.
    assert alter_quota(cluster, [("user", "alice")], [("consumer_byte_rate", 100)], validate_only=True) == (0, None)
    assert not zk_client.exists(f"{cluster.chroot}/config/users/alice")
    assert alter_quota(cluster, [("user", None), ("client-id", "app")], [("request_percentage", 25)]) == (0, None)
    assert zk_client.exists(f"{cluster.chroot}/config/users/<default>/clients/app")
    assert describe_quotas(cluster, [("user", 1, None)]) == {(("user", None), ("client-id", "app")): {"request_percentage": 25.0}}
    assert describe_quotas(cluster, [("user", 1, None)], strict=True) == {}
    assert alter_quota(cluster, [("user", None), ("client-id", "app")], [("request_percentage", None)]) == (0, None)
    assert describe_quotas(cluster, []) == {}
    assert cluster.brokers[1].alive()
