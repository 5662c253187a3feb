"""Partition-level admin calls: DeleteRecords (kafka-delete-records, Kafka UI's "clear
messages"), DescribeProducers and ElectLeaders (kafka-leader-election), through
confluent-kafka's and kafka-python's AdminClients."""
import signal

from confluent_kafka import Consumer, ElectionType, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KpTopicPartition

from harness import ContinuousProducer, consume_all, http_get, http_request, wait_until

OFFSET_OUT_OF_RANGE, ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE = 1, 84, 80


def start_two(cluster, *extra):
    cluster.start_coordinator()
    for b in (1, 2):
        cluster.start_broker(b, "--replica-lag-time-max-ms", "3000", *extra)
    cluster.wait_brokers_know_each_other((1, 2))


def partition_state(cluster, topic, partition=0):
    status, body = http_get(f"{cluster.http}/topics/{topic}")
    assert status == 200, body
    return body["partitions"][partition]


def create_rf2(cluster, topic, replicas=(1, 2)):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[list(replicas)])], operation_timeout=15)[topic].result()
    cluster.wait_topic_led(topic)
    wait_until(lambda: sorted(partition_state(cluster, topic)["isr"]) == [1, 2], what=f"both replicas of {topic} in sync")
    return admin


def test_delete_records_moves_the_log_start_on_every_replica(empty_cluster):
    cluster = empty_cluster
    start_two(cluster)
    admin = create_rf2(cluster, "trim")
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "linger.ms": 0})
    for i in range(10):
        producer.produce("trim", value=f"r{i}".encode(), partition=0)
        assert producer.flush(15) == 0

    deleted = admin.delete_records([TopicPartition("trim", 0, 4)], request_timeout=30)
    (future,) = deleted.values()
    assert future.result(30).low_watermark == 4
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "trim", "auto.offset.reset": "error",
                         "enable.auto.commit": False})
    assert consumer.get_watermark_offsets(TopicPartition("trim", 0), timeout=10) == (4, 10)

    # A consumer asking below the log start is told it is out of range.
    consumer.assign([TopicPartition("trim", 0, 2)])

    def out_of_range():
        msg = consumer.poll(0.5)
        return msg is not None and msg.error() is not None and msg.error().code() == KafkaError._AUTO_OFFSET_RESET
    wait_until(out_of_range, timeout=30, what="OFFSET_OUT_OF_RANGE below the new log start")
    consumer.close()

    # Beyond the high watermark: OFFSET_OUT_OF_RANGE, nothing deleted.
    (future,) = admin.delete_records([TopicPartition("trim", 0, 100)], request_timeout=30).values()
    try:
        future.result(30)
        raise AssertionError("deleting beyond the high watermark was accepted")
    except KafkaException as e:
        assert e.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE, e
    # The follower moved its log start too: with the leader gone, it serves from offset 4.
    leader = partition_state(cluster, "trim")["leader"]
    cluster.brokers[leader].terminate()
    follower = 3 - leader
    wait_until(lambda: partition_state(cluster, "trim")["leader"] == follower, what="the follower to take over")

    def watermarks_on_the_new_leader():
        # A fresh client each time: librdkafka remembers a partition it found unknown.
        c = Consumer({"bootstrap.servers": cluster.bootstrap([follower]), "group.id": "trim2"})
        try:
            return c.get_watermark_offsets(TopicPartition("trim", 0), timeout=5)
        finally:
            c.close()
    wait_until(lambda: watermarks_on_the_new_leader() == (4, 10), timeout=30, what="the new leader's log to start at 4")

    # kafka-python: -1 deletes up to the high watermark.
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap([follower]))
    result = kp.delete_records({KpTopicPartition("trim", 0): -1})
    assert result[KpTopicPartition("trim", 0)]["low_watermark"] == 10, result
    kp.close()


def test_describe_producers_lists_idempotent_producers(cluster):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("idem", 1, 1)], operation_timeout=15)["idem"].result()
    cluster.wait_topic_led("idem")
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "enable.idempotence": True, "linger.ms": 0})
    for i in range(3):
        producer.produce("idem", value=f"r{i}".encode(), partition=0)
        assert producer.flush(15) == 0
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    states = kp.describe_producers([KpTopicPartition("idem", 0)])
    (state,) = states.values()
    producers = state.active_producers if hasattr(state, "active_producers") else state["active_producers"]
    assert len(producers) == 1, states
    p = producers[0]
    get = (lambda k: getattr(p, k)) if hasattr(p, "last_sequence") else (lambda k: p[k])
    assert (get("producer_epoch"), get("last_sequence")) == (0, 2), p
    assert get("producer_id") >= 0 and get("last_timestamp") > 0
    kp.close()


def test_elect_leaders_preferred_and_unclean(empty_cluster):
    cluster = empty_cluster
    start_two(cluster)
    admin = create_rf2(cluster, "lead", replicas=(1, 2))
    tp = TopicPartition("lead", 0)

    def elect(kind):
        return admin.elect_leaders(kind, [tp]).result(30)[tp]

    # Preferred replica already leads: ELECTION_NOT_NEEDED.
    assert elect(ElectionType.PREFERRED).code() == ELECTION_NOT_NEEDED
    # Broker 1 goes and comes back: broker 2 leads until the preferred election.
    cluster.brokers[1].terminate()
    wait_until(lambda: partition_state(cluster, "lead")["leader"] == 2, what="broker 2 to lead")
    assert elect(ElectionType.PREFERRED).code() == PREFERRED_LEADER_NOT_AVAILABLE
    cluster.start_broker(1, "--replica-lag-time-max-ms", "3000")
    wait_until(lambda: sorted(partition_state(cluster, "lead")["isr"]) == [1, 2], timeout=60, what="broker 1 back in sync")
    # The broker taking the call checks eligibility against its own metadata.
    for b in (1, 2):
        probe = AdminClient({"bootstrap.servers": cluster.bootstrap([b])})
        wait_until(lambda: sorted(probe.list_topics("lead", timeout=5).topics["lead"].partitions[0].isrs) == [1, 2],
                   what=f"broker {b} to see broker 1 in sync")
    assert elect(ElectionType.PREFERRED) is None
    assert partition_state(cluster, "lead")["leader"] == 1

    # Unclean: broker 2 leaves the ISR, broker 1 (the only in-sync replica) dies; broker 2
    # comes back out of sync, and only an unclean election brings the partition back.
    cluster.brokers[2].terminate()
    wait_until(lambda: partition_state(cluster, "lead")["isr"] == [1], what="broker 2 out of the ISR")
    cluster.brokers[1].kill()
    wait_until(lambda: partition_state(cluster, "lead")["leader"] is None, what="the partition offline")
    cluster.start_broker(2, "--replica-lag-time-max-ms", "3000")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap([2])})
    assert partition_state(cluster, "lead")["leader"] is None, "an unclean election happened unasked"
    assert admin.elect_leaders(ElectionType.UNCLEAN, [tp]).result(30)[tp] is None
    assert partition_state(cluster, "lead")["leader"] == 2
    # kafka-python: asked again, nothing needed (kafka-python ignores ELECTION_NOT_NEEDED).
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap([2]))
    kp.elect_leaders(1, {"lead": [0]})
    kp.close()


def test_reassignment_under_acks_all_produce_loses_nothing(empty_cluster):
    """{1,2} -> {2,3} while a producer writes with acks=all: the new replica catches up,
    leadership leaves broker 1, broker 1 is removed and deletes its copy, and every
    acknowledged record is still there."""
    cluster = empty_cluster
    cluster.start_coordinator()
    for b in (1, 2, 3):
        cluster.start_broker(b, "--replica-lag-time-max-ms", "10000")
    cluster.wait_brokers_know_each_other((1, 2, 3))
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("moving", num_partitions=1, replica_assignment=[[1, 2]])], operation_timeout=15)["moving"].result()
    cluster.wait_topic_led("moving")
    wait_until(lambda: sorted(partition_state(cluster, "moving")["isr"]) == [1, 2], what="both replicas in sync")
    assert partition_state(cluster, "moving")["leader"] == 1

    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    with ContinuousProducer(cluster.bootstrap(), "moving", acks="all") as stream:
        wait_until(lambda: len(stream.acked) >= 500, timeout=60, what="records acknowledged before the move")
        result = kp.alter_partition_reassignments({KpTopicPartition("moving", 0): [2, 3]})
        assert all(v is None or getattr(v, "errno", 0) == 0 for v in (result or {}).values()), result
        # Progress is visible while it runs (or it is already done).
        listed = kp.list_partition_reassignments()
        assert listed in ({}, None) or KpTopicPartition("moving", 0) in listed, listed
        wait_until(lambda: partition_state(cluster, "moving")["replicas"] == [2, 3], timeout=90,
                   what="the reassignment to finish")
        before = len(stream.acked)
        wait_until(lambda: len(stream.acked) >= before + 500, timeout=60, what="records acknowledged after the move")
    assert not kp.list_partition_reassignments(), "a finished reassignment is still listed"
    kp.close()
    state = partition_state(cluster, "moving")
    assert state["leader"] in (2, 3) and sorted(state["isr"]) == [2, 3], state
    # Broker 1 no longer hosts the partition; brokers 2 and 3 do (DescribeLogDirs).
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap([2, 3]))

    def hosting(broker):
        described = kp.describe_log_dirs(brokers=[broker])
        return {t["name"] for entry in described for d in entry["log_dirs"] for t in d["topics"]}
    assert "moving" in hosting(2) and "moving" in hosting(3)
    wait_until(lambda: "moving" not in hosting(1), what="broker 1 to delete its copy")
    kp.close()
    got = consume_all(cluster.bootstrap([2, 3]), "moving", 1, stream.acked, timeout=90)
    missing = set(stream.acked) - set(got)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    assert all(got[k] == v for k, v in stream.acked.items())


def test_bad_reassignments_are_refused_and_a_cancel_restores_the_replicas(empty_cluster):
    cluster = empty_cluster
    start_two(cluster)
    create_rf2(cluster, "stay", replicas=(1, 2))
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    from kafka.errors import InvalidReplicationAssignmentError as InvalidReplicaAssignmentError, NoReassignmentInProgressError, UnknownTopicOrPartitionError
    cases = [
        ({KpTopicPartition("stay", 0): [1, 9]}, InvalidReplicaAssignmentError),  # broker 9 is not live
        ({KpTopicPartition("stay", 0): [1, 1]}, InvalidReplicaAssignmentError),
        ({KpTopicPartition("stay", 7): [1, 2]}, UnknownTopicOrPartitionError),
        ({KpTopicPartition("stay", 0): None}, NoReassignmentInProgressError),  # cancel with nothing running
    ]
    for request, error in cases:
        try:
            result = kp.alter_partition_reassignments(request)
        except error:
            continue
        assert any(isinstance(v, error) or (isinstance(v, type) and issubclass(v, error)) for v in (result or {}).values()), (request, result)
    assert partition_state(cluster, "stay")["replicas"] == [1, 2]

    # A move that cannot finish (broker 3 is paused, so it never catches up) is cancelled:
    # the replicas go back to {1, 2} and broker 3 is not left in the ISR.
    cluster.start_broker(3, "--replica-lag-time-max-ms", "3000")
    cluster.wait_brokers_know_each_other((1, 2, 3))
    cluster.brokers[3].signal(signal.SIGSTOP)
    try:
        result = kp.alter_partition_reassignments({KpTopicPartition("stay", 0): [1, 3]})
        assert all(v is None or getattr(v, "errno", 0) == 0 for v in (result or {}).values()), result
        listed = kp.list_partition_reassignments()
        assert KpTopicPartition("stay", 0) in listed, listed
        kp.alter_partition_reassignments({KpTopicPartition("stay", 0): None})
        state = partition_state(cluster, "stay")
        # Kafka keeps the full set target-first during a move, so {1, 2} may come back as [2, 1].
        assert (sorted(state["replicas"]), sorted(state["isr"])) == ([1, 2], [1, 2]), state
        assert not kp.list_partition_reassignments()
    finally:
        cluster.brokers[3].signal(signal.SIGCONT)
    kp.close()


def test_reassignment_over_the_http_admin_api(empty_cluster):
    cluster = empty_cluster
    start_two(cluster)
    create_rf2(cluster, "web", replicas=(1, 2))
    http = cluster.http
    status, body = http_request("POST", f"{http}/reassignments", {"partitions": [{"topic": "web", "partition": 0, "replicas": [2]}]})
    assert status == 202, body
    wait_until(lambda: partition_state(cluster, "web")["replicas"] == [2], what="the move to broker 2 alone")
    assert http_get(f"{http}/reassignments") == (200, {"reassignments": []})
    cases = [
        ({"partitions": [{"topic": "web", "partition": 0, "replicas": [2, 9]}]}, 400, "not live"),
        ({"partitions": [{"topic": "web", "partition": 0, "replicas": [2, 2]}]}, 400, "each broker once"),
        ({"partitions": [{"topic": "web", "partition": 5, "replicas": [1]}]}, 404, "does not exist"),
        ({"partitions": []}, 400, "at least one"),
        (b"[1,2", 400, "request body must be JSON"),
    ]
    for body, code, words in cases:
        status, answer = http_request("POST", f"{http}/reassignments", body)
        assert (status, words in answer["error"]) == (code, True), (body, status, answer)
    status, answer = http_request("DELETE", f"{http}/reassignments/web/0")
    assert (status, "no reassignment" in answer["error"]) == (404, True), answer
    assert partition_state(cluster, "web")["replicas"] == [2]


def test_replication_throttles_slow_a_reassignment(empty_cluster):
    """What `kafka-reassign-partitions --throttle 200000` sets: the rates on the brokers and
    the throttled replicas on the topic. The new replica then catches up at about that rate
    instead of at once."""
    import time
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
    cluster = empty_cluster
    cluster.start_coordinator()
    for b in (1, 2):
        cluster.start_broker(b, "--replica-lag-time-max-ms", "10000", "--replication-quota-window-num", "2")
    cluster.wait_brokers_know_each_other((1, 2))
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("slow", num_partitions=1, replica_assignment=[[1]])], operation_timeout=15)["slow"].result()
    cluster.wait_topic_led("slow")
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "linger.ms": 20})
    for i in range(2000):
        producer.produce("slow", value=b"x" * 1000, partition=0)
    assert producer.flush(30) == 0

    def alter(resource_type, name, key, value):
        entry = ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
        futures = admin.incremental_alter_configs([ConfigResource(resource_type, name, incremental_configs=[entry])])
        next(iter(futures.values())).result(30)
    alter(ResourceType.BROKER, "1", "leader.replication.throttled.rate", "200000")
    alter(ResourceType.BROKER, "2", "follower.replication.throttled.rate", "200000")
    alter(ResourceType.TOPIC, "slow", "leader.replication.throttled.replicas", "0:1")
    alter(ResourceType.TOPIC, "slow", "follower.replication.throttled.replicas", "0:2")

    started = time.monotonic()
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap())
    kp.alter_partition_reassignments({KpTopicPartition("slow", 0): [1, 2]})
    kp.close()
    wait_until(lambda: http_get(cluster.http + "/reassignments")[1]["reassignments"] == []
               and sorted(partition_state(cluster, "slow")["isr"]) == [1, 2], timeout=90, what="the throttled move to finish")
    elapsed = time.monotonic() - started
    print(f"2 MB moved under a 200 kB/s replication throttle in {elapsed:.1f} s")
    # 2 MB at 200 kB/s, less the one window a throttle lets through at first: about 9 s
    # (10.8 s measured). Half of that is the bound: an unthrottled follower catches up on
    # 2 MB in one or two 1 MB fetches.
    assert elapsed >= 4, f"the move took {elapsed:.1f} s: not throttled"


def test_a_broker_dying_mid_move_leaves_the_partition_available_and_the_move_finishes_later(empty_cluster):
    cluster = empty_cluster
    cluster.start_coordinator()
    for b in (1, 2, 3):
        cluster.start_broker(b, "--replica-lag-time-max-ms", "3000")
    cluster.wait_brokers_know_each_other((1, 2, 3))
    create_rf2(cluster, "fragile", replicas=(1, 2))
    # Broker 3 takes the move, then dies before it has caught up. The admin client is
    # connected first: a client that discovers broker 3 while it is stopped may wait on it.
    kp = KafkaAdminClient(bootstrap_servers=cluster.bootstrap([1, 2]))
    assert not kp.list_partition_reassignments()
    cluster.brokers[3].signal(signal.SIGSTOP)
    try:
        kp.alter_partition_reassignments({KpTopicPartition("fragile", 0): [1, 3]})
    finally:
        cluster.brokers[3].kill()
    wait_until(lambda: 3 not in [b["id"] for b in http_get(cluster.http + "/brokers")[1]], what="broker 3 gone")
    state = partition_state(cluster, "fragile")
    assert (state["replicas"], sorted(state["isr"]), state["leader"]) == ([1, 3, 2], [1, 2], 1), state
    assert http_get(cluster.http + "/reassignments")[1]["reassignments"] == [
        {"topic": "fragile", "partition": 0, "replicas": [1, 3, 2], "adding": [3], "removing": [2]}]
    # Still available, acks=all included.
    producer = Producer({"bootstrap.servers": cluster.bootstrap([1, 2]), "acks": "all"})
    for i in range(20):
        producer.produce("fragile", value=f"r{i}".encode(), partition=0)
    assert producer.flush(30) == 0
    # Broker 3 returns, catches up, and the move completes.
    cluster.start_broker(3, "--replica-lag-time-max-ms", "3000")
    wait_until(lambda: partition_state(cluster, "fragile")["replicas"] == [1, 3], timeout=60, what="the move to finish")
    assert sorted(partition_state(cluster, "fragile")["isr"]) == [1, 3]
    got = consume_all(cluster.bootstrap([1, 3]), "fragile", 1, {(0, i) for i in range(20)}, timeout=60)
    assert len(got) == 20
    kp.close()
