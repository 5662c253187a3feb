"""Consumer groups with real clients: kafka-python, confluent-kafka (librdkafka), aiokafka
and the AdminClients, against a real ZooKeeper and broker."""
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import http_get, wait_until


def create_topic(cluster, name, partitions):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=15)[name].result()
    cluster.wait_topic_led(name, partitions)


def produce(cluster, topic, values, key=None):
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "linger.ms": 2})
    for v in values:
        producer.produce(topic, key=key(v) if key else None, value=str(v).encode())
    assert producer.flush(30) == 0


def group_consumer(cluster, group, **extra):
    conf = {"bootstrap.servers": cluster.bootstrap(), "group.id": group, "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    conf.update(extra)
    return Consumer(conf)


def test_kafka_python_group_consumer_resumes_after_restart_without_rereading(cluster):
    from kafka import KafkaConsumer

    produce(cluster, "nasa_data_topic", range(20))
    bootstrap = [cluster.bootstrap()]

    def tutorial_consumer():
        return KafkaConsumer("nasa_data_topic", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=True, auto_commit_interval_ms=200, group_id="my-consumer-group",
                             consumer_timeout_ms=15000)

    started = time.monotonic()
    first = tutorial_consumer()
    seen = []
    for message in first:
        seen.append(int(message.value))
        if len(seen) == 20:
            break
    assignment_and_read_s = time.monotonic() - started
    first.close()  # commits the consumed position
    assert seen == list(range(20))
    # A single consumer gets its assignment after group.initial.rebalance.delay.ms (3 s),
    # not tens of seconds.
    print(f"first consumer assigned and read 20 records in {assignment_and_read_s:.1f} s")
    assert assignment_and_read_s < 15

    produce(cluster, "nasa_data_topic", range(20, 30))
    second = tutorial_consumer()
    again = []
    for message in second:
        again.append(int(message.value))
        if len(again) == 10:
            break
    second.close()
    assert again == list(range(20, 30)), "the restarted consumer re-read committed records or missed new ones"


def test_three_confluent_consumers_share_six_partitions_and_survivors_take_over_a_killed_one(cluster, log_dir):
    create_topic(cluster, "shared", 6)
    # The third member runs in its own process so it can be killed without a LeaveGroup.
    script = log_dir / "member.py"
    script.write_text(
        "import sys\n"
        "from confluent_kafka import Consumer\n"
        "c = Consumer({'bootstrap.servers': sys.argv[1], 'group.id': 'trio', 'session.timeout.ms': 6000,\n"
        "              'heartbeat.interval.ms': 500, 'auto.offset.reset': 'earliest'})\n"
        "c.subscribe(['shared'])\n"
        "while True:\n"
        "    c.poll(0.2)\n"
        "    print(len(c.assignment()), flush=True)\n"
    )
    victim = subprocess.Popen([sys.executable, str(script), cluster.bootstrap()], stdout=subprocess.PIPE, text=True)
    victim_assigned = []
    threading.Thread(target=lambda: [victim_assigned.append(int(line)) for line in victim.stdout], daemon=True).start()
    members = [group_consumer(cluster, "trio") for _ in range(2)]
    try:
        for c in members:
            c.subscribe(["shared"])

        def sizes():
            for c in members:
                c.poll(0.1)
            return [len(c.assignment()) for c in members]

        wait_until(lambda: sizes() == [2, 2] and victim_assigned and victim_assigned[-1] == 2, timeout=60,
                   what="three members with two partitions each")
        owned = {p.partition for c in members for p in c.assignment()}
        assert len(owned) == 4

        killed_at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        wait_until(lambda: sizes() == [3, 3], timeout=40, what="the survivors to take over the killed member's partitions")
        took_over_s = time.monotonic() - killed_at
        print(f"partitions moved {took_over_s:.1f} s after kill -9 (session.timeout.ms=6000)")
        assert {p.partition for c in members for p in c.assignment()} == set(range(6))
        # Detection takes the session timeout; the rebalance itself must not add much.
        assert took_over_s < 6 + 10
    finally:
        if victim.poll() is None:
            victim.kill()
        for c in members:
            c.close()


def test_a_rebalance_during_continuous_produce_loses_nothing_and_sync_commits_make_it_exactly_once(cluster):
    create_topic(cluster, "stream", 4)
    total = 3000
    acked = set()
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "linger.ms": 2})

    def on_delivery(err, msg):
        if err is None:
            acked.add(int(msg.value()))

    def produce_slowly():
        for i in range(total):
            producer.produce("stream", key=str(i % 13).encode(), value=str(i).encode(), on_delivery=on_delivery)
            producer.poll(0)
            if i % 50 == 0:
                time.sleep(0.02)
        producer.flush(30)

    writer = threading.Thread(target=produce_slowly)
    writer.start()
    processed = []          # records whose offset commit succeeded: processed exactly once
    delivered = []          # every record handed to the application
    conf = {"enable.auto.commit": False}
    a = group_consumer(cluster, "stream-group", **conf)
    a.subscribe(["stream"])
    consumers = [a]
    b = None

    def step(c):
        msg = c.poll(0.05)
        if msg is None or msg.error():
            return
        delivered.append(int(msg.value()))
        try:
            c.commit(message=msg, asynchronous=False)
            processed.append(int(msg.value()))
        except Exception:
            pass  # commit refused mid-rebalance: the record will be delivered again

    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            for c in list(consumers):
                step(c)
            if b is None and len(processed) >= 500:
                b = group_consumer(cluster, "stream-group", **conf)
                b.subscribe(["stream"])
                consumers.append(b)
            if a in consumers and len(processed) >= 1800:
                a.close()  # LeaveGroup: b takes every partition
                consumers.remove(a)
            if not writer.is_alive() and len(acked) == total and acked <= set(processed):
                break
    finally:
        writer.join()
        for c in consumers:
            c.close()
    assert len(acked) == total
    missing = acked - set(delivered)
    assert not missing, f"{len(missing)} acknowledged records were never consumed, e.g. {sorted(missing)[:10]}"
    assert b is not None and a not in consumers, "the test never rebalanced"
    duplicates = len(processed) - len(set(processed))
    print(f"delivered {len(delivered)}, processed {len(processed)}, redelivered after failed commits {len(delivered) - len(processed)}")
    assert duplicates == 0, f"{duplicates} records were processed twice despite synchronous commits"
    assert set(processed) == acked


def test_aiokafka_consumer_joins_and_commits(cluster):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as AioTopicPartition

    produce(cluster, "aio", range(10))

    async def run():
        consumer = AIOKafkaConsumer("aio", bootstrap_servers=cluster.bootstrap(), group_id="aio-group",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            got = []
            async for msg in consumer:
                got.append(int(msg.value))
                if len(got) == 10:
                    break
            await consumer.commit()
            return got, await consumer.committed(AioTopicPartition("aio", 0))
        finally:
            await consumer.stop()

    got, committed = asyncio.run(asyncio.wait_for(run(), 60))
    assert got == list(range(10))
    assert committed == 10
    # Another client sees the same committed offset.
    c = group_consumer(cluster, "aio-group")
    try:
        [tp] = c.committed([TopicPartition("aio", 0)], timeout=15)
        assert tp.offset == 10
    finally:
        c.close()


def test_admin_clients_list_describe_and_delete_groups(cluster):
    from kafka.admin import KafkaAdminClient

    produce(cluster, "admin-topic", range(5))
    member = group_consumer(cluster, "admin-group", **{"client.id": "reader-1", "enable.auto.commit": False})
    member.subscribe(["admin-topic"])
    seen = 0
    wait_until(lambda: (member.poll(0.2) is not None and (seen := 1)) or bool(member.assignment()), timeout=30,
               what="the member to be assigned")
    member.commit(offsets=[TopicPartition("admin-topic", 0, 3)], asynchronous=False)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})

    listed = admin.list_consumer_groups(request_timeout=15).result()
    groups = {g.group_id: g for g in listed.valid}
    assert groups["admin-group"].state == ConsumerGroupState.STABLE
    stable_only = admin.list_consumer_groups(states={ConsumerGroupState.EMPTY}, request_timeout=15).result()
    assert "admin-group" not in {g.group_id for g in stable_only.valid}, "the state filter is ignored"

    described = admin.describe_consumer_groups(["admin-group"], request_timeout=15)["admin-group"].result()
    assert described.state == ConsumerGroupState.STABLE
    assert described.partition_assignor == "range"
    [m] = described.members
    assert m.client_id == "reader-1"
    assert m.host.lstrip("/") == "127.0.0.1"
    assert [(tp.topic, tp.partition) for tp in m.assignment.topic_partitions] == [("admin-topic", 0)]

    from confluent_kafka import ConsumerGroupTopicPartitions
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("admin-group")])["admin-group"].result()
    assert [(tp.topic, tp.partition, tp.offset) for tp in offsets.topic_partitions] == [("admin-topic", 0, 3)]

    # kafka-python's admin client speaks the same APIs.
    kp = KafkaAdminClient(bootstrap_servers=[cluster.bootstrap()])
    try:
        assert [g["group_id"] for g in kp.list_groups(states_filter=["Stable"])] == ["admin-group"]
        assert kp.list_groups(states_filter=["Empty"]) == []
        d = kp.describe_groups(["admin-group"])["admin-group"]
        assert (d["group_state"], d["protocol_type"], d["protocol_data"]) == ("Stable", "consumer", "range")
        assert d["members"][0]["member_metadata"]["topics"] == ["admin-topic"]
        assert d["members"][0]["member_assignment"]["assigned_partitions"] == [{"topic": "admin-topic", "partitions": [0]}]
        kp_offsets = kp.list_group_offsets({"admin-group": None})["admin-group"]
        assert [(tp.topic, tp.partition, m.offset) for tp, m in kp_offsets.items()] == [("admin-topic", 0, 3)]
        # OffsetDelete refuses a topic the group still consumes.
        from kafka.structs import TopicPartition as KpTopicPartition
        refused = kp.delete_group_offsets("admin-group", [KpTopicPartition("admin-topic", 0)])
        print("OffsetDelete on a subscribed topic:", refused)
        assert "GroupSubscribedToTopic" in str(refused), refused
    finally:
        kp.close()

    # A group with members cannot be deleted; an empty one can.
    err = admin.delete_consumer_groups(["admin-group"], request_timeout=15)["admin-group"].exception()
    assert err is not None and "NON_EMPTY_GROUP" in str(err.args[0].name()), err
    member.close()
    wait_until(lambda: admin.describe_consumer_groups(["admin-group"])["admin-group"].result().state == ConsumerGroupState.EMPTY,
               timeout=15, what="the group to become empty")
    assert admin.delete_consumer_groups(["admin-group"], request_timeout=15)["admin-group"].result() is None
    listed = admin.list_consumer_groups(request_timeout=15).result()
    assert "admin-group" not in {g.group_id for g in listed.valid}
    err = admin.delete_consumer_groups(["admin-group"], request_timeout=15)["admin-group"].exception()
    assert "GROUP_ID_NOT_FOUND" in str(err.args[0].name()), err


def test_committed_offsets_survive_a_broker_kill_and_restart(cluster):
    produce(cluster, "durable-offsets", range(10))
    c = group_consumer(cluster, "durable-group", **{"enable.auto.commit": False})
    c.subscribe(["durable-offsets"])
    got = []
    wait_until(lambda: (m := c.poll(0.2)) is not None and not m.error() and got.append(int(m.value())) is None and len(got) >= 7,
               timeout=30, what="seven records")
    c.commit(offsets=[TopicPartition("durable-offsets", 0, 7)], asynchronous=False)
    c.close()

    cluster.brokers[1].kill()
    cluster.start_broker(1)
    c = group_consumer(cluster, "durable-group")
    try:
        [tp] = c.committed([TopicPartition("durable-offsets", 0)], timeout=30)
        assert tp.offset == 7
        c.subscribe(["durable-offsets"])
        first = None
        def first_record():
            nonlocal first
            m = c.poll(0.2)
            if m is not None and not m.error():
                first = int(m.value())
            return first is not None
        wait_until(first_record, timeout=30, what="a record after the restart")
        assert first == 7
    finally:
        c.close()


def test_cooperative_sticky_static_members_come_back_without_moving_partitions(cluster):
    create_topic(cluster, "coop", 4)
    revoked = {"a": 0, "b": 0}

    def member(name):
        c = group_consumer(cluster, "coop-group", **{"partition.assignment.strategy": "cooperative-sticky",
                                                    "group.instance.id": f"host-{name}", "session.timeout.ms": 10000})
        c.subscribe(["coop"], on_revoke=lambda consumer, parts: revoked.__setitem__(name, revoked[name] + len(parts)))
        return c

    a, b = member("a"), member("b")
    try:
        def sizes(*cs):
            for c in cs:
                c.poll(0.1)
            return [len(c.assignment()) for c in cs]
        wait_until(lambda: sizes(a, b) == [2, 2], timeout=60, what="two partitions each")
        a_parts = sorted(p.partition for p in a.assignment())
        b_before = revoked["b"]
        # A static member closing sends no LeaveGroup; its successor with the same
        # group.instance.id takes its place and its partitions.
        a.close()
        a = member("a")
        wait_until(lambda: sizes(a, b) == [2, 2], timeout=30, what="the restarted static member to get its partitions back")
        assert sorted(p.partition for p in a.assignment()) == a_parts
        for _ in range(10):
            b.poll(0.1)
        assert revoked["b"] == b_before, "the other member lost partitions: the static rejoin caused a rebalance"
    finally:
        a.close()
        b.close()


def test_a_member_that_stops_polling_keeps_its_partition_until_its_max_poll_interval_expires(cluster):
    """librdkafka's test 0089 (session.timeout.ms 6 s, max.poll.interval.ms 10 s, a one-partition
    topic), with the second member joining late: the first member holds the partition, reads one
    record and stops polling (librdkafka keeps heartbeating in the background); then the second
    member subscribes. The join phase of that rebalance must wait for the silent member up to its
    rebalance timeout (its max.poll.interval.ms), as Kafka's does, so the second member reads the
    partition only after the silent member's interval has run out and it has left or been dropped
    (10 to 20 s after it stopped), never a few seconds in."""
    create_topic(cluster, "slow-poller", 1)
    produce(cluster, "slow-poller", range(10))
    first = group_consumer(cluster, "slow-poller-group", **{"max.poll.interval.ms": 10000})
    second = group_consumer(cluster, "slow-poller-group", **{"max.poll.interval.ms": 10000})
    try:
        first.subscribe(["slow-poller"])
        got = []
        def first_record():
            m = first.poll(0.2)
            if m is not None and not m.error():
                got.append(m.offset())
            return bool(got)
        wait_until(first_record, timeout=60, what="the first member's first record")
        silent_since = time.monotonic()  # from here on the first member is "processing": no poll
        assert got == [0]
        second.subscribe(["slow-poller"])
        deadline = silent_since + 60
        while time.monotonic() < deadline:
            m = second.poll(0.2)
            if m is None or m.error():
                continue
            waited = time.monotonic() - silent_since
            # 0 or 1: the silent member's auto-commit of offset 1 stops once the rebalance begins
            assert m.offset() in (0, 1), f"the second member read offset {m.offset()}"
            assert waited > 10.0, f"the partition moved {waited:.1f} s after its member stopped polling, before its max.poll.interval.ms (10 s) ran out"
            assert waited < 20.0, f"the partition moved only {waited:.1f} s after its member stopped polling"
            return
        raise AssertionError("the second member got no record within 60 s")
    finally:
        first.close()
        second.close()


def test_static_members_with_a_regex_subscription_keep_their_assignment_across_metadata_refreshes(cluster):
    """librdkafka's test 0102: two static members (group.instance.id) subscribed by regex, with
    topic.metadata.refresh.interval.ms 2 s. Once assigned, refreshes of the same metadata must
    not rebalance them; a new topic matching the pattern must, and must be assigned; a member
    that restarts with its instance id is back before session.timeout.ms without revoking the
    other's partitions."""
    create_topic(cluster, "static-regex", 3)
    events = []

    def member(name):
        c = group_consumer(cluster, "static-regex-group", **{
            "group.instance.id": name, "max.poll.interval.ms": 9000, "topic.metadata.refresh.interval.ms": 2000,
            "metadata.max.age.ms": 5000})
        c.subscribe(["^static-regex.*"],
                    on_assign=lambda consumer, parts: events.append((name, "assign", sorted((p.topic, p.partition) for p in parts))),
                    on_revoke=lambda consumer, parts: events.append((name, "revoke", sorted((p.topic, p.partition) for p in parts))))
        return c

    members = {"consumer1": member("consumer1"), "consumer2": member("consumer2")}

    def poll_all():
        for c in members.values():
            c.poll(0.1)

    def assigned():
        poll_all()
        return {name: sorted((p.topic, p.partition) for p in c.assignment()) for name, c in members.items()}

    try:
        wait_until(lambda: sum(len(v) for v in assigned().values()) == 3 and all(assigned().values()),
                   timeout=60, what="both static members assigned the three partitions")
        settled, before = assigned(), len(events)
        end = time.monotonic() + 8  # four metadata refreshes of each member
        while time.monotonic() < end:
            poll_all()
        assert events[before:] == [], f"a rebalance with nothing changed: {events[before:]}"
        assert assigned() == settled

        create_topic(cluster, "static-regex-new", 1)
        # Each member rejoins when its own metadata refresh finds the topic, so there may be one
        # rebalance or two (as with Kafka): wait until the new topic is assigned and no member
        # has seen a rebalance for longer than a refresh interval.
        last_event = {"count": len(events), "at": time.monotonic()}
        def settled_with_new_topic():
            current = assigned()
            if len(events) != last_event["count"]:
                last_event.update(count=len(events), at=time.monotonic())
            return ("static-regex-new", 0) in sum(current.values(), []) and time.monotonic() - last_event["at"] > 3.0
        wait_until(settled_with_new_topic, timeout=45, what="the new topic matching the pattern to be assigned")
        assert {e[0] for e in events[before:] if e[1] == "revoke"} == {"consumer1", "consumer2"}

        kept, before = assigned(), len(events)
        members["consumer2"].close()
        restarted_at = time.monotonic()
        members["consumer2"] = member("consumer2")
        wait_until(lambda: assigned()["consumer2"] == kept["consumer2"], timeout=30,
                   what="the restarted static member to get its partitions back")
        assert time.monotonic() - restarted_at < 6.0, "the restarted static member waited out session.timeout.ms"
        assert [e for e in events[before:] if e[0] == "consumer1"] == [], "the other member was rebalanced by a static restart"
    finally:
        for c in members.values():
            c.close()


# --- Bad input on the wire: requests real clients do not send, encoded with kafka-python's
# own message classes so every field is exactly what the test says.

def _call(conn, request, response_cls, version):
    request.with_header(correlation_id=7, client_id="raw-test")
    conn.send(request.encode(version=version, header=True, framed=True))
    return response_cls.decode(conn.recv_frame(), version=version, header=True)


def test_group_requests_with_bad_input_get_kafkas_error_codes(cluster):
    from kafka.protocol.consumer.group import (HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
                                               OffsetCommitRequest, OffsetCommitResponse, SyncGroupRequest,
                                               SyncGroupResponse)
    from kafka.protocol.metadata.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse

    from harness import RawConnection, api_versions_v0_ok, frame, parse_produce_v3_error, produce_v3, record_batch

    create_topic(cluster, "raw-topic", 1)
    port = cluster.broker_ports[1]
    conn = RawConnection(port, timeout=30)
    Protocol = JoinGroupRequest.JoinGroupRequestProtocol

    def join(member_id="", group="raw-group", session=10000, rebalance=10000, version=5, on=conn):
        req = JoinGroupRequest(group_id=group, session_timeout_ms=session, rebalance_timeout_ms=rebalance,
                               member_id=member_id, group_instance_id=None, protocol_type="consumer",
                               protocols=[Protocol(name="range", metadata=b"\x00\x00\x00\x00\x00\x00")])
        # COORDINATOR_LOAD_IN_PROGRESS: retry, as clients do, for 30 s at most. Socket errors
        # propagate (one caller closes the connection under a parked join on purpose).
        deadline = time.monotonic() + 30
        while True:
            response = _call(on, req, JoinGroupResponse, version)
            if response.error_code != 14:
                return response
            assert time.monotonic() < deadline, "JoinGroup still answered COORDINATOR_LOAD_IN_PROGRESS after 30 s"
            time.sleep(0.05)

    # The group's coordinator exists once FindCoordinator has created __consumer_offsets.
    wait_until(lambda: _call(conn, FindCoordinatorRequest(key="raw-group"), FindCoordinatorResponse, 0).error_code == 0,
               timeout=30, what="a group coordinator")

    assert join(group="").error_code == 24, "empty group id: INVALID_GROUP_ID"
    assert join(group="g" * 40000, version=9).error_code == 24, "over-long group id: INVALID_GROUP_ID"
    assert join(member_id="ghost", group="nobody-here").error_code == 25, "unknown member: UNKNOWN_MEMBER_ID"
    assert join(session=1000).error_code == 26, "session timeout below group.min.session.timeout.ms"

    first = join(version=4)
    assert first.error_code == 79, "v4+ first join: MEMBER_ID_REQUIRED"
    member = first.member_id
    assert member.startswith("raw-test-")
    joined = join(member_id=member, version=4)  # answered after group.initial.rebalance.delay.ms
    assert (joined.error_code, joined.generation_id, joined.leader) == (0, 1, member)

    def heartbeat(generation, member_id=member):
        req = HeartbeatRequest(group_id="raw-group", generation_id=generation, member_id=member_id)
        return _call(conn, req, HeartbeatResponse, 1).error_code

    assert heartbeat(0) == 22, "stale generation: ILLEGAL_GENERATION"
    assert heartbeat(1, "someone-else") == 25, "UNKNOWN_MEMBER_ID"
    assert heartbeat(1) == 0

    # A second member's join (parked on its own connection) starts a rebalance.
    other = RawConnection(port, timeout=30)
    def parked_join():
        try:
            join(on=other, version=3)
        except OSError:
            pass  # the test closes this connection while the join is still parked

    parked = threading.Thread(target=parked_join, daemon=True)
    parked.start()
    wait_until(lambda: heartbeat(1) == 27, timeout=10, what="REBALANCE_IN_PROGRESS on heartbeat")
    sync = SyncGroupRequest(group_id="raw-group", generation_id=1, member_id=member, assignments=[])
    assert _call(conn, sync, SyncGroupResponse, 1).error_code == 27, "sync during a rebalance: REBALANCE_IN_PROGRESS"

    def commit(topic, partition, metadata="", generation=-1, member_id=""):
        P = OffsetCommitRequest.OffsetCommitRequestTopic.OffsetCommitRequestPartition
        T = OffsetCommitRequest.OffsetCommitRequestTopic
        req = OffsetCommitRequest(group_id="raw-simple", generation_id_or_member_epoch=generation, member_id=member_id,
                                  topics=[T(name=topic, partitions=[P(partition_index=partition, committed_offset=1,
                                                                      committed_metadata=metadata)])])
        return _call(conn, req, OffsetCommitResponse, 5).topics[0].partitions[0].error_code

    assert commit("no-such-topic", 0) == 3, "UNKNOWN_TOPIC_OR_PARTITION"
    assert commit("raw-topic", 99) == 3, "UNKNOWN_TOPIC_OR_PARTITION"
    assert commit("raw-topic", 0, metadata="m" * 5000) == 12, "OFFSET_METADATA_TOO_LARGE"
    assert commit("raw-topic", 0, generation=3, member_id="ghost") == 22, "unknown group, generation set: ILLEGAL_GENERATION"
    assert commit("raw-topic", 0) == 0, "a simple (generation -1) commit to an empty group is allowed"

    # Nobody but the coordinator writes to __consumer_offsets.
    conn.send(frame(0, 3, 8, produce_v3("__consumer_offsets", 0, record_batch([b"forged"]))))
    assert parse_produce_v3_error(conn.recv_frame())[0] == 17, "INVALID_TOPIC_EXCEPTION"

    other.close()
    conn.close()
    assert cluster.brokers[1].alive()
    assert api_versions_v0_ok(port)


def test_http_admin_shows_groups_members_offsets_and_lag(cluster):
    from harness import http_request

    create_topic(cluster, "lagging", 2)
    producer = Producer({"bootstrap.servers": cluster.bootstrap()})
    for v in range(40):
        producer.produce("lagging", value=str(v).encode(), partition=v % 2)
    assert producer.flush(30) == 0
    member = group_consumer(cluster, "http-group", **{"client.id": "lag-reader", "enable.auto.commit": False})
    member.subscribe(["lagging"])
    wait_until(lambda: member.poll(0.2) is not None or len(member.assignment()) == 2, timeout=30, what="an assignment")
    wait_until(lambda: member.poll(0.2) is None and len(member.assignment()) == 2, timeout=30, what="a settled assignment")
    member.commit(offsets=[TopicPartition("lagging", 0, 5), TopicPartition("lagging", 1, 0)], asynchronous=False)
    try:
        status, body = http_get(f"{cluster.http}/groups")
        assert status == 200
        assert {"group_id": "http-group", "state": "Stable", "protocol_type": "consumer", "coordinator": 1} in body["groups"]

        status, g = http_get(f"{cluster.http}/groups/http-group")
        assert status == 200, g
        assert (g["state"], g["protocol"], g["coordinator"]) == ("Stable", "range", 1)
        [m] = g["members"]
        assert (m["client_id"], m["client_host"], m["subscription"]) == ("lag-reader", "/127.0.0.1", ["lagging"])
        assert sorted((a["topic"], a["partition"]) for a in m["assignment"]) == [("lagging", 0), ("lagging", 1)]
        assert {o["partition"]: o["log_end_offset"] for o in g["offsets"]} == {0: 20, 1: 20}
        assert {o["partition"]: o["lag"] for o in g["offsets"]} == {0: 15, 1: 20}
        assert g["total_lag"] == 35

        status, err = http_request("DELETE", f"{cluster.http}/groups/http-group")
        assert status == 409 and "still has members" in err["error"], err
    finally:
        member.close()
    wait_until(lambda: http_get(f"{cluster.http}/groups/http-group")[1].get("state") == "Empty", timeout=15,
               what="the group to be empty")
    status, _ = http_request("DELETE", f"{cluster.http}/groups/http-group")
    assert status == 200
    status, err = http_get(f"{cluster.http}/groups/http-group")
    assert status == 404 and "no consumer group" in err["error"]
    assert http_request("DELETE", f"{cluster.http}/groups/never-was")[0] == 404
