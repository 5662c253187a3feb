"""The admin calls Kafka UI, the Java AdminClient (kafka-topics, cub kafka-ready) and the
Python clients make first: describe the cluster, a broker's configs with their sources and
Kafka's version keys, and ACLs, which a broker without an authorizer answers with
SECURITY_DISABLED."""
import pytest
from confluent_kafka.admin import AclBindingFilter, AclOperation, AclPermissionType, AdminClient, ConfigResource, \
    ResourcePatternType, ResourceType
from kafka import KafkaAdminClient


def test_describe_cluster_and_broker_configs(empty_cluster):
    cluster = empty_cluster
    cluster.start_coordinator()
    cluster.start_broker(1, "--num-partitions", "3")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})

    described = admin.describe_cluster(request_timeout=30).result(30)
    port = cluster.broker_ports[1]
    assert [(n.id, n.host, n.port) for n in described.nodes] == [(1, "127.0.0.1", port)]
    assert described.cluster_id

    configs = admin.describe_configs([ConfigResource(ResourceType.BROKER, "1")])
    entries = next(iter(configs.values())).result(30)
    assert entries["inter.broker.protocol.version"].value == "3.9-IV0"
    # Given on the command line: the broker's static config; left alone: Kafka's default.
    assert (entries["num.partitions"].value, entries["num.partitions"].source) == ("3", 4)  # STATIC_BROKER_CONFIG
    assert (entries["log.retention.ms"].value, entries["log.retention.ms"].source) == ("604800000", 5)  # DEFAULT

    # kafka-python reads the same broker configs.
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    from kafka.admin import ConfigResource as KpResource, ConfigResourceType
    assert "3.9-IV0" in str(kp.describe_configs([KpResource(ConfigResourceType.BROKER, "1")], config_filter="all"))
    kp.close()


def test_acls_are_security_disabled(cluster):
    # kafka-python surfaces the response's error code.
    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ResourcePatternFilter
    from kafka.admin import ResourceType as KpResourceType, ACLResourcePatternType
    from kafka.errors import SecurityDisabledError
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    acl_filter = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                           permission_type=ACLPermissionType.ANY,
                           resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None, ACLResourcePatternType.ANY))
    with pytest.raises(SecurityDisabledError):
        kp.describe_acls(acl_filter)
    kp.close()
    # librdkafka answers with no ACLs rather than an error; it must not fail or hang.
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    confluent_filter = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                        AclPermissionType.ANY)
    assert admin.describe_acls(confluent_filter, request_timeout=30).result(30) == []


def test_version_inferring_clients_identify_kafka_3_9(cluster):
    """kafka-python (like franz-go and the consoles built on it) infers the broker's Kafka
    version from ApiVersions and switches features on by it."""
    from kafka import KafkaConsumer
    consumer = KafkaConsumer(bootstrap_servers=cluster.bootstrap())
    try:
        assert consumer.config["api_version"] == (3, 9)
    finally:
        consumer.close()


def test_describe_log_dirs_lists_partitions_with_their_sizes(cluster):
    """Kafka UI shows topic sizes from DescribeLogDirs."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": cluster.bootstrap()})
    for _ in range(10):
        producer.produce("sized", value=b"x" * 1000)
    assert producer.flush(30) == 0
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    try:
        text = str(kp.describe_log_dirs())
    finally:
        kp.close()
    assert "sized" in text and str(cluster.data_root) in text, text[:2000]


def test_describe_topic_partitions_pages_with_a_cursor(cluster):
    """DescribeTopicPartitions (KIP-966), which newer `kafka-topics --describe` uses: a page
    of at most response_partition_limit partitions and a cursor to the next one."""
    from confluent_kafka.admin import NewTopic
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    for name, n in (("pa", 3), ("pb", 2)):
        admin.create_topics([NewTopic(name, n, 1)], operation_timeout=15)[name].result()
        cluster.wait_topic_led(name, partitions=n)
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    seen, cursor, pages = [], None, 0
    while True:
        page = kp.describe_topic_partitions(["pb", "pa", "nope"], response_partition_limit=2, cursor=cursor)
        pages += 1
        for t in page["topics"]:
            if t["name"] == "nope":
                assert t["error_code"] == 3  # UNKNOWN_TOPIC_OR_PARTITION
                continue
            assert t["error_code"] == 0 and t["topic_id"]
            seen += [(t["name"], p["partition_index"], p["leader_id"]) for p in t["partitions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "the cursor does not advance"
    assert seen == [("pa", 0, 1), ("pa", 1, 1), ("pa", 2, 1), ("pb", 0, 1), ("pb", 1, 1)]
    assert pages == 3
    kp.close()


def test_list_offsets_and_offset_reset_through_the_admin_client(cluster):
    """Kafka UI's partition view (ListOffsets earliest, latest, max timestamp) and its
    offset reset for an empty group (OffsetCommit through AlterConsumerGroupOffsets)."""
    from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic, OffsetSpec
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("offs", 1, 1)], operation_timeout=15)["offs"].result()
    cluster.wait_topic_led("offs")
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "linger.ms": 0})
    for i, ts in enumerate([1_000_000, 3_000_000, 2_000_000]):
        producer.produce("offs", value=f"r{i}".encode(), partition=0, timestamp=ts)
        assert producer.flush(15) == 0
    tp = TopicPartition("offs", 0)
    specs = {"earliest": OffsetSpec.earliest(), "latest": OffsetSpec.latest(), "max": OffsetSpec.max_timestamp()}
    got = {name: admin.list_offsets({tp: spec}, request_timeout=30)[tp].result(30).offset for name, spec in specs.items()}
    assert got == {"earliest": 0, "latest": 3, "max": 1}, got

    # Reset an empty group's offset, then read it back.
    request = [ConsumerGroupTopicPartitions("reset-me", [TopicPartition("offs", 0, 2)])]
    admin.alter_consumer_group_offsets(request)["reset-me"].result(30)
    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("reset-me", [tp])])["reset-me"].result(30)
    assert [(p.topic, p.partition, p.offset) for p in listed.topic_partitions] == [("offs", 0, 2)]


def test_replicas_stay_in_the_one_data_directory(cluster):
    """kafka-python's alter_replica_log_dirs: the broker's own directory is where the replica
    already is; any other path is LOG_DIR_NOT_FOUND."""
    from confluent_kafka.admin import NewTopic
    from kafka.errors import LogDirNotFoundError, NoError
    from kafka.structs import TopicPartitionReplica
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("dirs", 1, 1)], operation_timeout=15)["dirs"].result()
    cluster.wait_topic_led("dirs")
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    replica = TopicPartitionReplica("dirs", 0, 1)
    data_dir = str(cluster.data_root / "broker-1")
    assert kp.alter_replica_log_dirs({replica: data_dir}) == {replica: NoError}
    assert kp.alter_replica_log_dirs({replica: "/no/such/dir"}) == {replica: LogDirNotFoundError}
    kp.close()
