"""Transactions (KIP-98) with the clients' own transactional producers: commit and abort
seen exactly by read_committed consumers, offsets committed inside a transaction, zombie
producers fenced, and Kafka's error codes for requests out of order."""
import functools
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from harness import create_topic, wait_until


def raw_call(conn, request, response_cls, version):
    """One request on a RawConnection, decoded with kafka-python's classes."""
    request.with_header(correlation_id=7, client_id="raw-test")
    conn.send(request.encode(version=version, header=True, framed=True))
    return response_cls.decode(conn.recv_frame(), version=version, header=True)


def read_all(bootstrap, topic, isolation, partitions=1, timeout=30):
    """Every value a consumer with `isolation` reads from the start to the end."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{isolation}-{time.monotonic()}",
                  "enable.auto.commit": False, "isolation.level": isolation, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, eof = [], set()
    deadline = time.monotonic() + timeout
    try:
        while len(eof) < partitions and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == -191:
                    eof.add(msg.partition())
                continue
            eof.discard(msg.partition())
            out.append(msg.value())
    finally:
        c.close()
    assert len(eof) == partitions, f"{topic} not read to its end ({isolation}): got {len(out)}"
    return out


def txn_producer(bootstrap, txn_id, **extra):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5, **extra})
    p.init_transactions(30)
    return p


def test_committed_records_are_seen_and_aborted_ones_are_not(cluster):
    create_topic(cluster, "payments", partitions=2)
    bootstrap = cluster.bootstrap()
    p = txn_producer(bootstrap, "payments-writer")
    p.begin_transaction()
    for i in range(10):
        p.produce("payments", key=str(i).encode(), value=f"committed-{i}".encode())
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(5):
        p.produce("payments", key=str(i).encode(), value=f"aborted-{i}".encode())
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce("payments", key=b"x", value=b"committed-last")
    p.commit_transaction(30)

    committed = read_all(bootstrap, "payments", "read_committed", partitions=2)
    assert sorted(committed) == sorted([f"committed-{i}".encode() for i in range(10)] + [b"committed-last"])
    everything = read_all(bootstrap, "payments", "read_uncommitted", partitions=2)
    assert len(everything) == 16 and sum(v.startswith(b"aborted") for v in everything) == 5


def test_an_open_transaction_holds_read_committed_consumers_back_until_it_ends(cluster):
    create_topic(cluster, "pending")
    bootstrap = cluster.bootstrap()
    plain = Producer({"bootstrap.servers": bootstrap})
    plain.produce("pending", value=b"before")
    plain.flush(10)
    p = txn_producer(bootstrap, "slow-writer")
    p.begin_transaction()
    p.produce("pending", value=b"in-transaction")
    p.flush(30)
    plain.produce("pending", value=b"after, outside")
    plain.flush(10)
    # The last stable offset stops at the open transaction: only "before" is readable.
    assert read_all(bootstrap, "pending", "read_committed") == [b"before"]
    p.commit_transaction(30)
    assert read_all(bootstrap, "pending", "read_committed") == [b"before", b"in-transaction", b"after, outside"]


def test_consume_transform_produce_commits_offsets_with_the_output(cluster):
    create_topic(cluster, "orders-in")
    create_topic(cluster, "orders-out")
    bootstrap = cluster.bootstrap()
    feed = Producer({"bootstrap.servers": bootstrap})
    for i in range(30):
        feed.produce("orders-in", value=str(i).encode())
    feed.flush(10)

    def run_once(fail_after=None):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "transformer", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
        consumer.subscribe(["orders-in"])
        producer = txn_producer(bootstrap, "transformer-1")
        done = 0
        idle = time.monotonic() + 10
        while time.monotonic() < idle:
            msgs = consumer.consume(10, 1)
            msgs = [m for m in msgs if not m.error()]
            if not msgs:
                continue
            idle = time.monotonic() + 5
            producer.begin_transaction()
            for m in msgs:
                producer.produce("orders-out", value=b"x" + m.value())
            producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                 consumer.consumer_group_metadata(), 30)
            if fail_after is not None and done + len(msgs) > fail_after:
                producer.abort_transaction(30)
                consumer.close()
                return
            producer.commit_transaction(30)
            done += len(msgs)
        consumer.close()

    run_once(fail_after=12)  # a step that fails part-way: its output and offsets are aborted
    run_once()
    out = read_all(bootstrap, "orders-out", "read_committed")
    assert sorted(out) == sorted(b"x" + str(i).encode() for i in range(30)), "every input exactly once"
    check = Consumer({"bootstrap.servers": bootstrap, "group.id": "transformer"})
    assert check.committed([TopicPartition("orders-in", 0)], timeout=30)[0].offset == 30
    check.close()


def test_a_zombie_producer_is_fenced_by_its_successor(cluster):
    create_topic(cluster, "fenced")
    bootstrap = cluster.bootstrap()
    zombie = txn_producer(bootstrap, "singleton")
    zombie.begin_transaction()
    zombie.produce("fenced", value=b"zombie")
    zombie.flush(30)
    successor = txn_producer(bootstrap, "singleton")  # aborts the zombie's open transaction
    successor.begin_transaction()
    successor.produce("fenced", value=b"successor")
    successor.commit_transaction(30)
    with pytest.raises(KafkaException) as e:
        zombie.commit_transaction(30)
    assert e.value.args[0].fatal() or "fenced" in str(e.value).lower(), e.value
    assert read_all(bootstrap, "fenced", "read_committed") == [b"successor"]


def test_kafka_python_transactional_producer(cluster):
    from kafka import KafkaProducer
    create_topic(cluster, "kp-txn")
    bootstrap = cluster.bootstrap()
    p = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="kp-writer")
    p.init_transactions()
    p.begin_transaction()
    for i in range(3):
        p.send("kp-txn", value=f"c{i}".encode())
    p.commit_transaction()
    p.begin_transaction()
    p.send("kp-txn", value=b"a0")
    p.abort_transaction()
    p.close()
    assert read_all(bootstrap, "kp-txn", "read_committed") == [b"c0", b"c1", b"c2"]


def test_transaction_requests_out_of_order_get_kafkas_errors(cluster):
    """EndTxn with no transaction, a stale epoch and an unknown transactional id; a
    transaction timeout past transaction.max.timeout.ms; AddPartitionsToTxn for a topic
    that does not exist. One broker, so it coordinates every transactional id."""
    from kafka.protocol.producer.transaction import (AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
                                                     EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
                                                     InitProducerIdResponse)

    from harness import RawConnection
    create_topic(cluster, "strict")
    txn_producer(cluster.bootstrap(), "strict-writer")  # __transaction_state exists and is loaded
    conn = RawConnection(cluster.broker_ports[1], timeout=30)

    call = functools.partial(raw_call, conn)

    init = call(InitProducerIdRequest(transactional_id="strict-raw", transaction_timeout_ms=60000),
                InitProducerIdResponse, 1)
    assert init.error_code == 0, init
    pid, epoch = init.producer_id, init.producer_epoch

    def end(txn_id, e, committed=True):
        return call(EndTxnRequest(transactional_id=txn_id, producer_id=pid, producer_epoch=e, committed=committed),
                    EndTxnResponse, 1).error_code
    assert end("strict-raw", epoch) == 48, "EndTxn with no transaction: INVALID_TXN_STATE"
    assert end("strict-raw", epoch - 1) == 47, "a stale epoch (v1): INVALID_PRODUCER_EPOCH"
    assert end("never-seen", 0) == 49, "an unknown transactional id: INVALID_PRODUCER_ID_MAPPING"
    too_long = call(InitProducerIdRequest(transactional_id="strict-slow", transaction_timeout_ms=3_600_000),
                    InitProducerIdResponse, 1)
    assert too_long.error_code == 50, "INVALID_TRANSACTION_TIMEOUT"
    Topic = AddPartitionsToTxnRequest.AddPartitionsToTxnTopic
    added = call(AddPartitionsToTxnRequest(v3_and_below_transactional_id="strict-raw", v3_and_below_producer_id=pid,
                                           v3_and_below_producer_epoch=epoch,
                                           v3_and_below_topics=[Topic(name="no-such-topic", partitions=[0]),
                                                                Topic(name="strict", partitions=[0])]),
                 AddPartitionsToTxnResponse, 1)
    codes = {(t.name, p.partition_index): p.partition_error_code
             for t in added.results_by_topic_v3_and_below for p in t.results_by_partition}
    assert codes == {("no-such-topic", 0): 3, ("strict", 0): 55}, codes  # UNKNOWN_TOPIC_OR_PARTITION, OPERATION_NOT_ATTEMPTED

    # v4, the brokers' batched form: one transaction adds a partition, another (with a
    # stale epoch) is fenced, and a verify-only entry reports what is in the transaction.
    Txn = AddPartitionsToTxnRequest.AddPartitionsToTxnTransaction
    TxnTopic = Txn.AddPartitionsToTxnTopic
    batched = call(AddPartitionsToTxnRequest(transactions=[
        Txn(transactional_id="strict-raw", producer_id=pid, producer_epoch=epoch, verify_only=False,
            topics=[TxnTopic(name="strict", partitions=[0])]),
        Txn(transactional_id="strict-raw", producer_id=pid, producer_epoch=epoch, verify_only=True,
            topics=[TxnTopic(name="strict", partitions=[0])]),
        Txn(transactional_id="strict-writer", producer_id=pid, producer_epoch=0, verify_only=True,
            topics=[TxnTopic(name="strict", partitions=[0])]),
    ]), AddPartitionsToTxnResponse, 4)
    results = [(r.transactional_id, [(p.partition_index, p.partition_error_code) for t in r.topic_results
                                     for p in t.results_by_partition]) for r in batched.results_by_transaction]
    assert results == [("strict-raw", [(0, 0)]), ("strict-raw", [(0, 0)]), ("strict-writer", [(0, 49)])], results
    conn.close()


def test_kcat_writes_its_input_in_one_transaction(cluster):
    import subprocess
    create_topic(cluster, "kcat-txn")
    bootstrap = cluster.bootstrap()
    subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", "kcat-txn", "-X", "transactional.id=kcat-writer"],
                   input=b"a\nb\nc\n", check=True, timeout=60)
    assert read_all(bootstrap, "kcat-txn", "read_committed") == [b"a", b"b", b"c"]


def find_transaction_coordinator(cluster, transactional_id):
    """The broker id FindCoordinator (key type 1) names for `transactional_id`."""
    from kafka.protocol.metadata.find_coordinator import FindCoordinatorRequest, FindCoordinatorResponse

    from harness import RawConnection
    for port in cluster.broker_ports.values():
        try:
            conn = RawConnection(port, timeout=10)
        except OSError:
            continue
        r = raw_call(conn, FindCoordinatorRequest(key=transactional_id, key_type=1), FindCoordinatorResponse, 1)
        conn.close()
        if r.error_code == 0:
            return r.node_id
    return None


def test_a_transaction_open_past_its_timeout_is_aborted_and_stops_holding_consumers(empty_cluster):
    cluster = empty_cluster
    cluster.start_coordinator()
    cluster.start_broker(1, "--transaction-abort-timed-out-transaction-cleanup-interval-ms", "200")
    create_topic(cluster, "stalled")
    bootstrap = cluster.bootstrap()
    p = txn_producer(bootstrap, "sleepy", **{"transaction.timeout.ms": 2000})
    p.begin_transaction()
    p.produce("stalled", value=b"never committed")
    p.flush(30)
    plain = Producer({"bootstrap.servers": bootstrap})
    plain.produce("stalled", value=b"later")
    plain.flush(10)
    # Held back while open; once the coordinator aborts it, the later record is readable.
    wait_until(lambda: read_all(bootstrap, "stalled", "read_committed", timeout=10) == [b"later"], timeout=30,
               interval=0.5, what="the expired transaction to be aborted")
    assert read_all(bootstrap, "stalled", "read_uncommitted") == [b"never committed", b"later"]
    with pytest.raises(KafkaException):
        p.commit_transaction(10)
    assert "transaction.timeout.ms" in cluster.brokers[1].log()


def test_the_coordinators_broker_killed_mid_transaction_leaves_no_partial_transaction(empty_cluster):
    """RF 3: __transaction_state and the data replicated to three brokers; the broker
    coordinating the transactional id is killed -9 between the writes and the commit. The
    producer's commit goes to the new coordinator, and read_committed consumers see the
    whole transaction."""
    cluster = empty_cluster
    cluster.start_coordinator()
    rf3 = ("--transaction-state-log-replication-factor", "3", "--transaction-state-log-min-isr", "2",
           "--offsets-topic-replication-factor", "3")
    for b in (1, 2, 3):
        cluster.start_broker(b, *rf3)
    cluster.wait_brokers_know_each_other()
    create_topic(cluster, "ledger", partitions=3, replication_factor=3, config={"min.insync.replicas": "2"})
    bootstrap = cluster.bootstrap()
    p = txn_producer(bootstrap, "ledger-writer", **{"transaction.timeout.ms": 60000})
    p.begin_transaction()
    for i in range(30):
        p.produce("ledger", key=str(i).encode(), value=f"entry-{i}".encode())
    p.flush(30)
    victim = find_transaction_coordinator(cluster, "ledger-writer")
    assert victim in (1, 2, 3)
    cluster.brokers[victim].kill()
    p.commit_transaction(60)
    survivors = ",".join(f"127.0.0.1:{port}" for b, port in cluster.broker_ports.items() if b != victim)
    got = read_all(survivors, "ledger", "read_committed", partitions=3, timeout=60)
    assert sorted(got) == sorted(f"entry-{i}".encode() for i in range(30))
    assert find_transaction_coordinator(cluster, "ledger-writer") not in (None, victim)


def test_operators_describe_and_list_transactions_with_kafka_python(cluster):
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KpTP
    from kafka.errors import TransactionalIdNotFoundError
    create_topic(cluster, "watched", partitions=2)
    bootstrap = cluster.bootstrap()
    p = txn_producer(bootstrap, "watched-writer")
    p.begin_transaction()
    p.produce("watched", value=b"x", partition=1)
    p.flush(30)
    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        d = kp.describe_transactions(["watched-writer"])["watched-writer"]
        assert (d.state.value, d.coordinator_id, d.topic_partitions) == ("Ongoing", 1, {KpTP("watched", 1)}), d
        assert d.transaction_start_time_ms > 0 and d.producer_epoch >= 0
        listed = [t for ts in kp.list_transactions().values() for t in ts]
        assert ("watched-writer", "Ongoing") in [(t.transactional_id, t.state.value) for t in listed], listed
        assert kp.list_transactions(state_filters=["CompleteCommit"]) == {1: []}
        # kafka-transactions find-hanging reads the open transaction's start from DescribeProducers.
        (producer,) = kp.describe_producers([KpTP("watched", 1)])[KpTP("watched", 1)].active_producers
        assert (producer.producer_id, producer.current_transaction_start_offset) == (d.producer_id, 0), producer
        p.commit_transaction(30)
        wait_until(lambda: kp.describe_transactions(["watched-writer"])["watched-writer"].state.value == "CompleteCommit",
                   what="the transaction to complete")
        with pytest.raises(TransactionalIdNotFoundError):
            kp.describe_transactions(["nobody-uses-this-id"])
    finally:
        kp.close()


TRANSFORMER = r'''
import sys, time
from confluent_kafka import Consumer, Producer, TopicPartition
bootstrap = sys.argv[1]
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "etl", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
consumer.assign([TopicPartition("etl-in", 0)])
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "etl-1", "linger.ms": 5})
producer.init_transactions(30)
idle = time.monotonic() + 8
while time.monotonic() < idle:
    msgs = [m for m in consumer.consume(20, 0.5) if not m.error()]
    if not msgs:
        continue
    idle = time.monotonic() + 8
    producer.begin_transaction()
    for m in msgs:
        producer.produce("etl-out", value=b"t-" + m.value())
    producer.flush(30)
    time.sleep(0.1)  # the output is written, not committed: a kill here must not leave it visible
    producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
'''


def test_consume_transform_produce_killed_at_random_points_processes_every_record_once(cluster):
    """A transform step (read_committed consumer, transactional producer committing its input
    offsets with its output) is killed -9 at random points and restarted; in the end every
    input record is in the output exactly once."""
    import random
    import subprocess
    import sys
    create_topic(cluster, "etl-in")
    create_topic(cluster, "etl-out")
    bootstrap = cluster.bootstrap()
    feed = Producer({"bootstrap.servers": bootstrap})
    for i in range(600):
        feed.produce("etl-in", value=str(i).encode())
    feed.flush(10)
    rng = random.Random(13)
    argv = [sys.executable, "-c", TRANSFORMER, bootstrap]
    for _ in range(6):
        worker = subprocess.Popen(argv)
        time.sleep(rng.uniform(1.5, 4.0))
        worker.kill()
        worker.wait(10)
    last = subprocess.run(argv, timeout=180)
    assert last.returncode == 0
    out = read_all(bootstrap, "etl-out", "read_committed")
    assert sorted(out) == sorted(b"t-" + str(i).encode() for i in range(600)), (
        f"{len(out)} records, {len(set(out))} distinct")


def test_a_transactional_batch_for_a_partition_outside_the_transaction_is_refused(cluster):
    """KIP-890: the leader asks the coordinator before a transaction's first batch on a
    partition; a batch the producer never added the partition for is INVALID_TXN_STATE,
    and leaves no open transaction behind to hold read_committed consumers."""
    from kafka.protocol.producer.transaction import (AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
                                                     EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
                                                     InitProducerIdResponse)

    from harness import RawConnection, frame, parse_produce_v3_error, produce_v3, record_batch
    create_topic(cluster, "guarded")
    bootstrap = cluster.bootstrap()
    txn_producer(bootstrap, "guard-init")
    conn = RawConnection(cluster.broker_ports[1], timeout=30)

    call = functools.partial(raw_call, conn)

    init = call(InitProducerIdRequest(transactional_id="guarded-raw", transaction_timeout_ms=60000),
                InitProducerIdResponse, 1)
    pid, epoch = init.producer_id, init.producer_epoch

    def produce(value, seq):
        batch = record_batch([value], producer=(pid, epoch, seq))
        conn.send(frame(0, 3, 9, produce_v3("guarded", 0, batch, acks=-1, transactional_id="guarded-raw")))
        return parse_produce_v3_error(conn.recv_frame())[0]

    assert produce(b"not added", 0) == 48, "INVALID_TXN_STATE"
    Topic = AddPartitionsToTxnRequest.AddPartitionsToTxnTopic
    added = call(AddPartitionsToTxnRequest(v3_and_below_transactional_id="guarded-raw", v3_and_below_producer_id=pid,
                                           v3_and_below_producer_epoch=epoch,
                                           v3_and_below_topics=[Topic(name="guarded", partitions=[0])]),
                 AddPartitionsToTxnResponse, 1)
    assert [p.partition_error_code for t in added.results_by_topic_v3_and_below for p in t.results_by_partition] == [0]
    assert produce(b"added", 0) == 0
    ended = call(EndTxnRequest(transactional_id="guarded-raw", producer_id=pid, producer_epoch=epoch, committed=True),
                 EndTxnResponse, 1)
    assert ended.error_code == 0
    wait_until(lambda: read_all(bootstrap, "guarded", "read_committed", timeout=10) == [b"added"], timeout=30,
               what="the committed batch, and nothing else, to be readable")
    conn.close()


def test_an_idle_transactional_id_is_forgotten_after_its_expiration(empty_cluster):
    from kafka import KafkaAdminClient
    from kafka.errors import TransactionalIdNotFoundError
    cluster = empty_cluster
    cluster.start_coordinator()
    cluster.start_broker(1, "--transactional-id-expiration-ms", "1500",
                         "--transaction-abort-timed-out-transaction-cleanup-interval-ms", "200")
    create_topic(cluster, "short-lived")
    bootstrap = cluster.bootstrap()
    p = txn_producer(bootstrap, "short-lived-writer")
    p.begin_transaction()
    p.produce("short-lived", value=b"x")
    p.commit_transaction(30)
    kp = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        # EndTxn is answered once PrepareCommit is durable; the markers follow, then
        # CompleteCommit (as Kafka), so the state is waited for, not read once.
        def state():
            return kp.describe_transactions(["short-lived-writer"])["short-lived-writer"].state.value
        wait_until(lambda: state() == "CompleteCommit", timeout=30, interval=0.05,
                   what="the transaction to complete")

        def forgotten():
            try:
                kp.describe_transactions(["short-lived-writer"])
                return False
            except TransactionalIdNotFoundError:
                return True
        wait_until(forgotten, timeout=30, interval=0.3, what="the idle transactional id to be forgotten")
    finally:
        kp.close()
    assert "forgot a transactional id" in cluster.brokers[1].log()
    # A producer with the same id starts over.
    again = txn_producer(bootstrap, "short-lived-writer")
    again.begin_transaction()
    again.produce("short-lived", value=b"y")
    again.commit_transaction(30)
    assert read_all(bootstrap, "short-lived", "read_committed") == [b"x", b"y"]


def test_a_client_cannot_write_a_transaction_marker(cluster):
    """A control batch from a producer would end another producer's transaction: refused
    with INVALID_RECORD, as Kafka refuses it, and nothing is written."""
    import struct

    from kafka.record.util import calc_crc32c

    from harness import RawConnection, frame, parse_produce_v3_error, record_batch
    from harness import produce_v3
    create_topic(cluster, "no-forgery")
    batch = bytearray(record_batch([b"\x00\x00\x00\x00"], producer=(4242, 0, -1)))
    attributes = struct.unpack_from(">h", batch, 21)[0] | 0x20
    struct.pack_into(">h", batch, 21, attributes)
    struct.pack_into(">I", batch, 17, calc_crc32c(bytes(batch[21:])))
    conn = RawConnection(cluster.broker_ports[1], timeout=30)
    conn.send(frame(0, 3, 9, produce_v3("no-forgery", 0, bytes(batch), acks=-1)))
    assert parse_produce_v3_error(conn.recv_frame())[0] == 87, "INVALID_RECORD"
    conn.close()
    assert read_all(cluster.bootstrap(), "no-forgery", "read_uncommitted") == []
