"""Dynamic configuration as kafka-configs, Kafka UI and the AdminClients change it: topic and
broker configs written to /config/<type>/<name> with a /config/changes notification in
Kafka's layout, taken up by the brokers without a restart; broker log levels through
BROKER_LOGGER; and Kafka's error codes for what cannot change."""
import json

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType
from kafka import KafkaAdminClient

from harness import RawConnection, frame, http_get, http_request, wait_until

INVALID_REQUEST, INVALID_CONFIG, UNKNOWN_TOPIC = 42, 40, 3


def incremental(admin, resource_type, name, *ops, validate_only=False):
    """One IncrementalAlterConfigs call: ops are (key, value, AlterConfigOpType)."""
    entries = [ConfigEntry(k, v, incremental_operation=op) for k, v, op in ops]
    futures = admin.incremental_alter_configs([ConfigResource(resource_type, name, incremental_configs=entries)],
                                              validate_only=validate_only, request_timeout=30)
    return next(iter(futures.values())).result(30)


def refused(admin, resource_type, name, *ops):
    """The Kafka error code and message of a refused IncrementalAlterConfigs."""
    try:
        incremental(admin, resource_type, name, *ops)
    except KafkaException as e:
        err = e.args[0]
        return err.code(), err.str()
    raise AssertionError(f"{resource_type} {name} {ops} was accepted")


def describe(admin, resource_type, name):
    futures = admin.describe_configs([ConfigResource(resource_type, name)], request_timeout=30)
    return next(iter(futures.values())).result(30)


def alter_cluster_default(cluster, configs):
    """IncrementalAlterConfigs SET on the BROKER resource with the empty name, as
    `kafka-configs --entity-default` sends it; neither Python client lets a caller name it,
    so this goes through kafka-python's request class. Returns the error code."""
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    try:
        request = kp._alter_configs_request([KpResource(ConfigResourceType.BROKER, "", configs=configs)], False, True)
        response = kp._manager.run(kp._manager.send, request)
        (result,) = response.responses
        return result.error_code
    finally:
        kp.close()


def produce_batches(bootstrap, topic, n):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(n):
        producer.produce(topic, value=f"r{i}".encode())
        assert producer.flush(15) == 0


def low_watermark(consumer, topic):
    return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[0]


def changes_naming(zk_client, cluster, entity_path):
    root = f"{cluster.chroot}/config/changes"
    found = []
    for child in zk_client.get_children(root):
        data, _ = zk_client.get(f"{root}/{child}")
        payload = json.loads(data)
        if payload == {"version": 2, "entity_path": entity_path}:
            found.append(child)
    return found


def test_a_topic_retention_change_applies_without_a_restart(empty_cluster, zk_client):
    cluster = empty_cluster
    cluster.start_coordinator()
    cluster.start_broker(1, "--log-retention-check-interval-ms", "200")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("kept", 1, 1)], operation_timeout=15)["kept"].result()
    cluster.wait_topic_led("kept")
    produce_batches(cluster.bootstrap(), "kept", 4)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "w"})
    assert low_watermark(consumer, "kept") == 0

    incremental(admin, ResourceType.TOPIC, "kept", ("retention.ms", "1", AlterConfigOpType.SET))
    # Kafka's layout: the override in /config/topics/<t>, announced under /config/changes.
    data, _ = zk_client.get(f"{cluster.chroot}/config/topics/kept")
    assert json.loads(data) == {"version": 1, "config": {"retention.ms": "1"}}
    assert changes_naming(zk_client, cluster, "topics/kept"), "no config_change_<seq> for topics/kept"
    # The broker applies it from its watch: the old batches go, the newest stays.
    wait_until(lambda: low_watermark(consumer, "kept") == 3, timeout=30, what="retention.ms=1 to delete old batches")
    entry = describe(admin, ResourceType.TOPIC, "kept")["retention.ms"]
    assert (entry.value, entry.source) == ("1", 1)  # DYNAMIC_TOPIC_CONFIG

    # DELETE returns the topic to the broker's value.
    incremental(admin, ResourceType.TOPIC, "kept", ("retention.ms", None, AlterConfigOpType.DELETE))
    wait_until(lambda: describe(admin, ResourceType.TOPIC, "kept")["retention.ms"].value == "604800000",
               what="retention.ms back to the broker default")
    # APPEND on a list config starts from its default, as Kafka's does.
    incremental(admin, ResourceType.TOPIC, "kept", ("cleanup.policy", "compact", AlterConfigOpType.APPEND))
    assert describe(admin, ResourceType.TOPIC, "kept")["cleanup.policy"].value == "delete,compact"
    consumer.close()

    # kafka-python's alter_configs (IncrementalAlterConfigs when advertised) and describe.
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    result = kp.alter_configs([KpResource(ConfigResourceType.TOPIC, "kept", configs={"max.message.bytes": "2000"})])
    assert result == {"topic": {"kept": "OK"}}, result
    described = kp.describe_configs([KpResource(ConfigResourceType.TOPIC, "kept")])
    assert described["topic"]["kept"]["max.message.bytes"]["value"] == "2000", described
    kp.close()


def test_broker_configs_change_for_the_cluster_and_for_one_broker(empty_cluster, zk_client):
    cluster = empty_cluster
    cluster.start_coordinator()
    cluster.start_broker(1, "--log-retention-check-interval-ms", "200")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("plain", 1, 1)], operation_timeout=15)["plain"].result()
    cluster.wait_topic_led("plain")
    produce_batches(cluster.bootstrap(), "plain", 3)

    # Cluster-wide default (empty resource name): /config/brokers/<default>.
    assert alter_cluster_default(cluster, {"log.retention.ms": "1"}) == 0
    data, _ = zk_client.get(f"{cluster.chroot}/config/brokers/<default>")
    assert json.loads(data)["config"] == {"log.retention.ms": "1"}
    assert changes_naming(zk_client, cluster, "brokers/<default>")
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "w"})
    wait_until(lambda: low_watermark(consumer, "plain") == 2, timeout=30,
               what="the cluster-wide log.retention.ms to reach a topic without an override")
    consumer.close()
    entry = describe(admin, ResourceType.BROKER, "1")["log.retention.ms"]
    assert (entry.value, entry.source, entry.is_read_only) == ("1", 3, False)  # DYNAMIC_DEFAULT_BROKER_CONFIG
    assert describe(admin, ResourceType.BROKER, "1")["broker.id"].is_read_only

    # Per broker: /config/brokers/1 wins over the default; message.max.bytes applies to produce.
    incremental(admin, ResourceType.BROKER, "1", ("message.max.bytes", "2000", AlterConfigOpType.SET))
    wait_until(lambda: describe(admin, ResourceType.BROKER, "1")["message.max.bytes"].source == 2,
               what="message.max.bytes as DYNAMIC_BROKER_CONFIG")
    errors = []
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "linger.ms": 0, "retries": 0})
    producer.produce("plain", value=b"x" * 5000, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)
    assert [e.code() for e in errors] == [KafkaError.MSG_SIZE_TOO_LARGE], errors

    # Flush settings change too (the interval as the longest a record waits for a flush).
    incremental(admin, ResourceType.BROKER, "1", ("log.flush.interval.ms", "200", AlterConfigOpType.SET),
                ("log.flush.interval.messages", "1000", AlterConfigOpType.SET))
    entries = describe(admin, ResourceType.BROKER, "1")
    assert [(entries[k].value, entries[k].source) for k in ("log.flush.interval.ms", "log.flush.interval.messages")] == \
        [("200", 2), ("1000", 2)]

    # Back to the static value.
    incremental(admin, ResourceType.BROKER, "1", ("message.max.bytes", None, AlterConfigOpType.DELETE))
    wait_until(lambda: describe(admin, ResourceType.BROKER, "1")["message.max.bytes"].value == "1048588",
               what="message.max.bytes back to its default")


def test_what_cannot_change_is_refused_with_kafkas_codes_and_nothing_changes(empty_cluster, zk_client):
    cluster = empty_cluster
    cluster.start_coordinator()
    cluster.start_broker(1)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("fixed", 1, 1, config={"retention.ms": "60000"})], operation_timeout=15)["fixed"].result()
    cluster.wait_topic_led("fixed")
    SET, APPEND = AlterConfigOpType.SET, AlterConfigOpType.APPEND
    cases = [
        (ResourceType.BROKER, "1", ("broker.id", "5", SET), INVALID_REQUEST, "Cannot update these configs dynamically"),
        (ResourceType.BROKER, "1", ("advertised.listeners", "PLAINTEXT://h:1", SET), INVALID_REQUEST, "only at start-up"),
        (ResourceType.BROKER, "1", ("log.retention.ms", "soon", SET), INVALID_REQUEST, "log.retention.ms"),
        (ResourceType.BROKER, "1", ("min.insync.replicas", "0", SET), INVALID_REQUEST, "min.insync.replicas"),
        (ResourceType.BROKER, "1", ("no.such.setting", "1", SET), INVALID_REQUEST, "Unknown broker configs"),
        (ResourceType.TOPIC, "missing", ("retention.ms", "1", SET), UNKNOWN_TOPIC, "does not exist"),
        (ResourceType.TOPIC, "fixed", ("retention.bogus", "1", SET), INVALID_CONFIG, "Unknown topic config name"),
        (ResourceType.TOPIC, "fixed", ("retention.ms", "abc", SET), INVALID_REQUEST, "Invalid config value for resource"),
        (ResourceType.TOPIC, "fixed", ("retention.ms", "5", APPEND), INVALID_REQUEST, "append is not allowed"),
    ]
    for resource_type, name, op, code, words in cases:
        got_code, message = refused(admin, resource_type, name, op)
        assert (got_code, words in message) == (code, True), (resource_type, name, op, got_code, message)
    assert alter_cluster_default(cluster, {"broker.id": "7"}) == INVALID_REQUEST
    # validate_only checks and writes nothing.
    incremental(admin, ResourceType.TOPIC, "fixed", ("retention.ms", "5", SET), validate_only=True)
    data, _ = zk_client.get(f"{cluster.chroot}/config/topics/fixed")
    assert json.loads(data)["config"] == {"retention.ms": "60000"}
    assert not zk_client.exists(f"{cluster.chroot}/config/brokers/1")
    assert not zk_client.exists(f"{cluster.chroot}/config/brokers/<default>")
    assert describe(admin, ResourceType.BROKER, "1")["broker.id"].value == "1"
    assert cluster.brokers[1].alive()


def test_log_levels_change_through_broker_logger(cluster):
    """kafka-configs --entity-type broker-loggers, through kafka-python (librdkafka has no
    BROKER_LOGGER resource)."""
    from kafka.admin import AlterConfigOp, ConfigResource as KpResource, ConfigResourceType
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())

    def levels():
        described = kp.describe_configs([KpResource(ConfigResourceType.BROKER_LOGGER, "1")], config_filter="all")
        return {k: v["value"] for k, v in described["broker_logger"]["1"].items()}

    def alter(configs):
        result = kp.alter_configs([KpResource(ConfigResourceType.BROKER_LOGGER, "1", configs=configs)],
                                  raise_on_unknown=False)
        return result["broker_logger"]["1"]

    assert (levels()["root"], levels()["tributary_broker::net"]) == ("INFO", "INFO"), levels()
    port = cluster.broker_ports[1]
    marker = "ApiVersions version too new"

    def too_new_api_versions():
        c = RawConnection(port)
        try:
            c.send(frame(18, 99, 7, b""))
            c.recv_frame()
        finally:
            c.close()

    too_new_api_versions()
    log = cluster.brokers[1]
    assert marker not in log.log(), "a debug line was logged at INFO"
    assert alter({"tributary_broker::net": "DEBUG"}) == "OK"
    assert levels()["tributary_broker::net"] == "DEBUG"
    too_new_api_versions()
    wait_until(lambda: marker in log.log(), timeout=10, what="the debug line once tributary_broker::net logs at DEBUG")
    assert alter({"tributary_broker::net": (AlterConfigOp.DELETE, None)}) == "OK"
    assert levels()["tributary_broker::net"] == "INFO"
    lines = log.log().count(marker)
    too_new_api_versions()  # answered after the broker logged (or not) for it
    assert log.log().count(marker) == lines
    # Kafka's refusals: no such logger, no such level, the root logger cannot be reset.
    assert "InvalidConfigurationError" in alter({"no.such.logger": "DEBUG"})
    assert "InvalidConfigurationError" in alter({"root": "LOUD"})
    assert "InvalidRequestError" in alter({"root": (AlterConfigOp.DELETE, None)})
    assert levels()["root"] == "INFO"
    kp.close()


def test_configs_over_the_http_admin_api(cluster, zk_client):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("web", 1, 1)], operation_timeout=15)["web"].result()
    cluster.wait_topic_led("web")
    http = cluster.http

    status, body = http_request("PATCH", f"{http}/topics/web/configs", {"set": {"retention.ms": "120000"}})
    assert (status, body["configs"]) == (200, {"retention.ms": "120000"}), body
    assert http_get(f"{http}/topics/web/configs") == (200, {"entity": "topics/web", "znode": "/config/topics/web",
                                                             "configs": {"retention.ms": "120000"}})
    assert changes_naming(zk_client, cluster, "topics/web")
    wait_until(lambda: describe(admin, ResourceType.TOPIC, "web")["retention.ms"].value == "120000",
               what="the broker to apply a change made over HTTP")

    status, body = http_request("PATCH", f"{http}/brokers/default/configs", {"set": {"log.retention.ms": "5000"}})
    assert (status, body["entity"]) == (200, "brokers/<default>"), body
    wait_until(lambda: describe(admin, ResourceType.BROKER, "1")["log.retention.ms"].source == 3,
               what="log.retention.ms as DYNAMIC_DEFAULT_BROKER_CONFIG")
    status, body = http_request("PATCH", f"{http}/brokers/default/configs", {"delete": ["log.retention.ms"]})
    assert (status, body["configs"]) == (200, {}), body

    # Bad requests: a status and a sentence, nothing written.
    cases = [
        ("PATCH", "/topics/web/configs", b"{not json", 400, "request body must be JSON"),
        ("PATCH", "/topics/web/configs", {"set": {"retention.ms": 5}}, 400, "request body must be JSON"),
        ("PATCH", "/topics/web/configs", {"set": {"retention.bogus": "1"}}, 400, "unknown topic config"),
        ("PATCH", "/topics/web/configs", {"set": {"retention.ms": "soon"}}, 400, "retention.ms"),
        ("PATCH", "/topics/web/configs", {"set": {"retention.ms": "1"}, "delete": ["retention.ms"]}, 400, "both"),
        ("PATCH", "/topics/missing/configs", {"set": {"retention.ms": "1"}}, 404, "does not exist"),
        ("GET", "/topics/missing/configs", None, 404, "does not exist"),
        ("PATCH", "/brokers/1/configs", {"set": {"broker.id": "2"}}, 400, "not dynamic broker configs"),
        ("PATCH", "/brokers/1/configs", {"set": {"min.insync.replicas": "0"}}, 400, "at least 1"),
        ("PATCH", "/brokers/one/configs", {"set": {"log.retention.ms": "1"}}, 400, "broker id"),
    ]
    for method, path, body, code, words in cases:
        status, answer = http_request(method, http + path, body)
        assert (status, words in answer["error"]) == (code, True), (method, path, status, answer)
    assert http_get(f"{http}/topics/web/configs")[1]["configs"] == {"retention.ms": "120000"}
    assert http_get(f"{http}/brokers/1/configs")[1]["configs"] == {}
