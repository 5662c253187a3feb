"""Replication across three brokers: followers fetch from leaders, the ISR and high watermark
follow them, and an idempotent acks=all producer loses nothing and duplicates nothing while
leaders are killed, stopped until their ZooKeeper session expires, and the active
coordinator dies."""
import signal
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import Cluster, Ensemble, consume_all, create_topic, http_get, http_request, wait_until

TOPIC = "replicated"
PARTITIONS = 3


def start_three(cluster, *extra):
    cluster.start_coordinator()
    for b in (1, 2, 3):
        cluster.start_broker(b, "--replica-lag-time-max-ms", "10000", *extra)
    cluster.wait_brokers_know_each_other((1, 2, 3))


def create_rf3(cluster, topic=TOPIC, partitions=PARTITIONS):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic(topic, partitions, 3, config={"min.insync.replicas": "2"})],
                        operation_timeout=15)[topic].result()
    cluster.wait_topic_led(topic, partitions=partitions)
    wait_until(lambda: all(len(p["isr"]) == 3 for p in partitions_of(cluster, topic)), what="full ISRs")


def partitions_of(cluster, topic=TOPIC):
    """The topic's partitions from the admin API ([] while no coordinator answers, e.g.
    right after the one asked was killed)."""
    try:
        status, body = http_get(f"{cluster.http}/topics/{topic}")
    except OSError:
        return []
    return body["partitions"] if status == 200 else []


def leader_of(cluster, partition, topic=TOPIC):
    for p in partitions_of(cluster, topic):
        if p["partition"] == partition:
            return p["leader"]
    return None


class Stream:
    """An idempotent acks=all producer writing keyed records until stopped, recording what
    was acknowledged, plus a watcher measuring how long any partition had no leader."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.acked = {}  # (partition, offset) -> value
        # Acknowledged without an offset: librdkafka reports those when a retried batch
        # turns out to have been written already (its offset is then unknown to it).
        self.acked_without_offset = []
        self.errors = []
        self.stop = threading.Event()
        self.longest_leaderless = 0.0
        self.sent = 0
        self.threads = [threading.Thread(target=self._produce), threading.Thread(target=self._watch)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(120)

    def _produce(self):
        producer = Producer({
            "bootstrap.servers": self.cluster.bootstrap(), "enable.idempotence": True, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 120000, "retry.backoff.ms": 100,
        })

        def on_delivery(err, msg):
            if err is None and msg.offset() is None:
                self.acked_without_offset.append((msg.partition(), msg.value()))
            elif err is None:
                self.acked[(msg.partition(), msg.offset())] = msg.value()
            else:
                self.errors.append(str(err))

        i = 0
        while not self.stop.is_set():
            key = f"key-{i % 12}"
            try:
                producer.produce(TOPIC, key=key.encode(), value=f"{key}:{i}".encode(), on_delivery=on_delivery)
                i += 1
            except BufferError:
                producer.poll(0.05)
            producer.poll(0)
            time.sleep(0.001)
        remaining = producer.flush(120)
        self.sent = i
        assert remaining == 0, f"{remaining} records never acknowledged"

    def _watch(self):
        since = {}
        while not self.stop.is_set():
            now = time.monotonic()
            for p in partitions_of(self.cluster):
                if p["leader"] is None:
                    since.setdefault(p["partition"], now)
                elif p["partition"] in since:
                    self.longest_leaderless = max(self.longest_leaderless, now - since.pop(p["partition"]))
            time.sleep(0.05)

    def wait_progress(self, n=200, timeout=60):
        target = len(self.acked) + n
        wait_until(lambda: len(self.acked) >= target, timeout=timeout, what=f"{n} more acknowledged records")


def verify(cluster, acked, bootstrap=None, acked_without_offset=()):
    """Every acknowledged record is read back at its offset (or, acknowledged without one,
    in its partition); per partition, each key's sequence numbers only grow, and no value
    appears twice."""
    got = consume_all(bootstrap or cluster.bootstrap(), TOPIC, PARTITIONS, acked, timeout=90, read_on_s=3)
    missing = set(acked) - set(got)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    for k, v in acked.items():
        assert got[k] == v, f"record at {k} is {got[k]!r}, producer was told {v!r}"
    for partition, value in acked_without_offset:
        assert any(v == value and p == partition for (p, _), v in got.items()), f"acknowledged {value!r} lost"
    values = list(got.values())
    assert len(values) == len(set(values)), f"{len(values) - len(set(values))} duplicated records"
    last = {}
    for (partition, offset) in sorted(got):
        key, seq = got[(partition, offset)].decode().split(":")
        assert int(seq) > last.get(key, -1), f"{key} out of order at partition {partition} offset {offset}"
        last[key] = int(seq)
    return got


def read_values(consumer, count, what):
    """Polls until `count` record values arrived (30 s at most); returns them in order."""
    seen = []

    def enough():
        m = consumer.poll(0.2)
        if m is not None and not m.error():
            seen.append(m.value())
        return len(seen) >= count

    wait_until(enough, timeout=30, what=what)
    return seen


def test_topics_with_fewer_replicas_than_min_insync_replicas_are_held_to_their_replicas(empty_cluster):
    """Kafka's effective min ISR (never more than the replicas): with the broker default at 2, a
    replication-factor-1 topic takes acks=all writes, its high watermark moves so consumers see
    them, and group offsets (__consumer_offsets at RF 1 here) commit."""
    c = empty_cluster
    c.start_coordinator()
    c.start_broker(1, "--min-insync-replicas", "2")
    create_topic(c, "single")
    delivered = []
    producer = Producer({"bootstrap.servers": c.bootstrap(), "acks": "all", "retries": 0, "message.timeout.ms": 10000})
    for i in range(5):
        producer.produce("single", value=f"v{i}".encode(), on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(15) == 0 and delivered == [None] * 5, delivered
    consumer = Consumer({"bootstrap.servers": c.bootstrap(), "group.id": "g", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe(["single"])
    read_values(consumer, 5, "the 5 records (the high watermark moved)")
    committed = consumer.commit(asynchronous=False)
    assert [(p.topic, p.offset, p.error) for p in committed] == [("single", 5, None)]
    consumer.close()
    summary = http_get(c.http + "/partitions")[1]
    assert summary["under_min_isr"] == [], summary


def test_followers_replicate_and_acks_all_needs_min_insync_replicas(empty_cluster):
    c = empty_cluster
    start_three(c)
    create_rf3(c)
    producer = Producer({"bootstrap.servers": c.bootstrap(), "acks": "all", "enable.idempotence": True})
    for i in range(30):
        producer.produce(TOPIC, key=f"k{i}".encode(), value=f"k{i}:{i}".encode(), partition=0)
    assert producer.flush(30) == 0
    leader = leader_of(c, 0)
    # Stop both followers of partition 0: after replica.lag.time.max.ms the leader drops them
    # from the ISR (writing the state znode), and acks=all is refused below min.insync.replicas.
    followers = [b for b in (1, 2, 3) if b != leader]
    for b in followers:
        c.brokers[b].signal(signal.SIGSTOP)
    try:
        wait_until(lambda: [p["isr"] for p in partitions_of(c) if p["partition"] == 0] == [[leader]], timeout=40,
                   what="the leader alone in the ISR")
        errors = []
        p2 = Producer({"bootstrap.servers": c.bootstrap([leader]), "acks": "all", "retries": 0,
                       "message.timeout.ms": 5000})
        p2.produce(TOPIC, value=b"refused", partition=0, on_delivery=lambda err, msg: errors.append(err))
        p2.flush(10)
        assert errors and errors[0] is not None and errors[0].name() == "NOT_ENOUGH_REPLICAS", errors
    finally:
        for b in followers:
            c.brokers[b].signal(signal.SIGCONT)
    # Back in the ISR once caught up; acks=all works again and every replica took the data.
    wait_until(lambda: all(len(p["isr"]) == 3 for p in partitions_of(c)), timeout=40, what="followers rejoining")
    acked = {}
    producer.produce(TOPIC, value=b"k0:1000", partition=0, on_delivery=lambda err, msg: acked.setdefault(msg.offset(), err))
    assert producer.flush(30) == 0 and list(acked.values()) == [None]
    # Kill the leader: a follower takes over holding all 31 records.
    c.brokers[leader].kill()
    wait_until(lambda: leader_of(c, 0) not in (None, leader), timeout=30, what="a new leader for partition 0")
    consumer = Consumer({"bootstrap.servers": c.bootstrap([b for b in (1, 2, 3) if b != leader]), "group.id": "v",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    seen = read_values(consumer, 31, "31 records from the new leader")
    consumer.close()
    assert seen[-1] == b"k0:1000" and len(seen) == 31
    # The admin API lists the partition as under-replicated while the old leader is away.
    summary = http_get(c.http + "/partitions")[1]
    assert 0 in [p["partition"] for p in summary["under_replicated"] if p["topic"] == TOPIC], summary
    assert leader in summary["offline_brokers"]
    # It comes back, catches up and rejoins the ISR; the admin API shows every replica at 31.
    c.start_broker(leader, "--replica-lag-time-max-ms", "10000")
    wait_until(lambda: all(len(p["isr"]) == 3 for p in partitions_of(c)), timeout=40, what="the old leader rejoining")

    def offsets_converged():
        p0 = next(p for p in partitions_of(c) if p["partition"] == 0)
        return (p0["high_watermark"], p0["log_end_offset"], sorted(p0["replica_log_end_offsets"].values())) == (31, 31, [31, 31, 31])

    wait_until(offsets_converged, timeout=30, what="every replica of partition 0 at offset 31 in the admin API")
    # A preferred-leader election moves leadership back to each partition's first replica.
    status, body = http_request("POST", c.http + "/partitions/preferred-leader-election")
    assert status == 202, body
    wait_until(lambda: all(p["leader"] == p["replicas"][0] for p in partitions_of(c)), timeout=30,
               what="preferred leaders back in place")


def kill_leader_and_rejoin(c, stream, partition, what):
    """kill -9 the leader of `partition`, wait for `what` (a new leader) and for the producer
    to make progress, restart the victim and wait for full ISRs. Returns seconds from the
    kill to the new leader."""
    victim = leader_of(c, partition)
    killed = time.monotonic()
    c.brokers[victim].kill()
    wait_until(lambda: leader_of(c, partition) not in (None, victim), timeout=30, what=what)
    took = time.monotonic() - killed
    stream.wait_progress()
    c.start_broker(victim, "--replica-lag-time-max-ms", "10000")
    wait_until(lambda: all(len(p["isr"]) == 3 for p in partitions_of(c)), timeout=60, what="full ISRs again")
    return took


def test_no_acknowledged_record_lost_across_leader_and_coordinator_failures(empty_cluster):
    c = empty_cluster
    start_three(c)
    c.start_coordinator(wait_active=False)  # the standby
    create_rf3(c)
    failovers = 0
    longest = 0.0  # from kill -9 to a new leader: the ZooKeeper session timeout dominates
    with Stream(c) as stream:
        stream.wait_progress()
        # (a) kill -9 the leader of partition 0 three times; each victim returns and rejoins.
        for _ in range(3):
            longest = max(longest, kill_leader_and_rejoin(c, stream, 0, "a new leader"))
            failovers += 1
        # (c) kill the active coordinator; the standby takes over and handles the next failure.
        active = next(p for p in c.coordinators if http_get(p.http + "/health")[1]["this_coordinator"]["active_controller"])
        active.kill()
        standby = next(p for p in c.coordinators if p is not active)
        wait_until(lambda: http_get(standby.http + "/health")[1]["this_coordinator"]["active_controller"], timeout=30,
                   what="the standby coordinator taking over")
        longest = max(longest, kill_leader_and_rejoin(c, stream, 1, "a leader elected by the new controller"))
        failovers += 1
        stream.wait_progress()
    print(f"\nfailovers: {failovers}; longest time from kill -9 to a new leader: {longest:.1f} s; "
          f"longest time a partition was offline: {stream.longest_leaderless:.1f} s; "
          f"acknowledged: {len(stream.acked)} (+{len(stream.acked_without_offset)} without offset: "
          f"{stream.acked_without_offset[:5]}); delivery errors: {len(stream.errors)}")
    assert not stream.errors, stream.errors[:5]
    verify(c, stream.acked, acked_without_offset=stream.acked_without_offset)
    # A full cluster restart keeps everything.
    for b in (1, 2, 3):
        c.brokers[b].terminate()
    for b in (1, 2, 3):
        c.start_broker(b, "--replica-lag-time-max-ms", "10000")
    c.wait_topic_led(TOPIC, partitions=PARTITIONS)
    verify(c, stream.acked, acked_without_offset=stream.acked_without_offset)


def test_a_stopped_leader_whose_session_expires_is_fenced_and_rejoins(empty_cluster):
    c = empty_cluster
    start_three(c)
    create_rf3(c)
    with Stream(c) as stream:
        stream.wait_progress()
        victim = leader_of(c, 0)
        c.brokers[victim].signal(signal.SIGSTOP)
        try:
            # Its ZooKeeper session expires; the controller moves leadership away.
            wait_until(lambda: victim not in [b["id"] for b in http_get(c.http + "/brokers")[1]], timeout=30,
                       what=f"broker {victim}'s session to expire")
            wait_until(lambda: leader_of(c, 0) not in (None, victim), timeout=30, what="a new leader")
            stream.wait_progress()
        finally:
            c.brokers[victim].signal(signal.SIGCONT)
        # The zombie re-registers, follows the new leader (truncating what it alone had) and rejoins.
        wait_until(lambda: victim in [b["id"] for b in http_get(c.http + "/brokers")[1]], timeout=30,
                   what=f"broker {victim} re-registering")
        wait_until(lambda: all(len(p["isr"]) == 3 for p in partitions_of(c)), timeout=60, what="full ISRs again")
        stream.wait_progress()
    print(f"\nlongest time a partition had no leader: {stream.longest_leaderless:.1f} s; acknowledged: {len(stream.acked)} "
          f"(+{len(stream.acked_without_offset)} without offset)")
    assert not stream.errors, stream.errors[:5]
    verify(c, stream.acked, acked_without_offset=stream.acked_without_offset)


def test_a_three_node_zookeeper_ensemble_losing_one_node_keeps_the_cluster_serving(log_dir):
    ensemble = Ensemble(log_dir / "zookeeper").start()
    c = Cluster(ensemble, log_dir)
    try:
        start_three(c)
        create_rf3(c)
        with Stream(c) as stream:
            stream.wait_progress()
            lost = ensemble.leader()
            lost.stop()
            # The two remaining servers elect a leader; sessions move over without expiring.
            wait_until(lambda: any(m.mode() == "leader" for m in ensemble.members if m is not lost), timeout=60,
                       what="a new ZooKeeper leader")
            stream.wait_progress(timeout=90)
            # Metadata writes still work: a new topic is created and led.
            admin = AdminClient({"bootstrap.servers": c.bootstrap()})
            admin.create_topics([NewTopic("after-zk-loss", 2, 3)], operation_timeout=30)["after-zk-loss"].result()
            c.wait_topic_led("after-zk-loss", partitions=2)
            assert len(http_get(c.http + "/brokers")[1]) == 3, "a broker lost its registration"
            stream.wait_progress()
        assert not stream.errors, stream.errors[:5]
        verify(c, stream.acked, acked_without_offset=stream.acked_without_offset)
    finally:
        c.stop()
        ensemble.destroy()


def test_committed_offsets_survive_the_group_coordinators_death(empty_cluster):
    """__consumer_offsets replicated 3 ways: kill -9 the group's coordinator and a new
    consumer of the group resumes from the committed offsets, served by the new leader."""
    c = empty_cluster
    c.start_coordinator()
    for b in (1, 2, 3):
        c.start_broker(b, "--offsets-topic-replication-factor", "3", "--replica-lag-time-max-ms", "10000")
    c.wait_brokers_know_each_other((1, 2, 3))
    create_rf3(c, partitions=1)
    producer = Producer({"bootstrap.servers": c.bootstrap(), "acks": "all"})
    for i in range(100):
        producer.produce(TOPIC, value=f"k:{i}".encode(), partition=0)
    assert producer.flush(30) == 0

    def consumer():
        k = Consumer({"bootstrap.servers": c.bootstrap(), "group.id": "resume", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        k.subscribe([TOPIC])
        return k

    first = consumer()
    read = []
    while len(read) < 60:
        m = first.poll(1.0)
        if m is not None and not m.error():
            read.append(m.offset())
            if len(read) == 60:
                first.commit(message=m, asynchronous=False)
    first.close()
    wait_until(lambda: len(http_get(c.http + "/topics/__consumer_offsets")[1].get("partitions", [])) == 50,
               what="__consumer_offsets")
    group = http_get(c.http + "/groups/resume")[1]
    coordinator = group["coordinator"]
    assert [o["committed_offset"] for o in group["offsets"]] == [60], group
    c.brokers[coordinator].kill()
    # A new member of the group, once the offsets partition has a new leader, starts at 60.
    second = consumer()
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 40 and time.monotonic() < deadline:
        m = second.poll(1.0)
        if m is not None and not m.error():
            got.append(m.offset())
    second.close()
    assert got and got[0] == 60 and len(got) == 40, got[:5]
