"""ZooKeeper in Kafka's layout, registration, session expiry, outages."""
import json
import signal
import subprocess
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import BIN, Cluster, ZooKeeper, free_port, http_get, wait_until


def test_znodes_follow_kafkas_layout(cluster, zk_client):
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("layout", 2, 1, config={"retention.ms": "1000000"})], operation_timeout=15)["layout"].result()
    cluster.wait_topic_led("layout", partitions=2)
    root = cluster.chroot

    data, stat = zk_client.get(f"{root}/brokers/ids/1")
    reg = json.loads(data)
    assert stat.ephemeralOwner != 0, "broker registrations are ephemeral"
    assert reg["version"] == 5 and reg["host"] == "127.0.0.1" and reg["port"] == cluster.broker_ports[1]
    assert reg["endpoints"] == [f"PLAINTEXT://127.0.0.1:{cluster.broker_ports[1]}"]
    assert reg["listener_security_protocol_map"] == {"PLAINTEXT": "PLAINTEXT"}
    assert isinstance(reg["timestamp"], str) and reg["jmx_port"] == -1

    cluster_id = json.loads(zk_client.get(f"{root}/cluster/id")[0])
    assert cluster_id["version"] == "1" and len(cluster_id["id"]) == 22

    controller, cstat = zk_client.get(f"{root}/controller")
    assert cstat.ephemeralOwner != 0
    assert json.loads(controller)["brokerid"] == cluster.coordinators[0].controller_id
    epoch = int(zk_client.get(f"{root}/controller_epoch")[0])
    assert epoch >= 1

    assignment = json.loads(zk_client.get(f"{root}/brokers/topics/layout")[0])
    assert assignment["version"] == 3 and len(assignment["topic_id"]) == 22
    assert assignment["partitions"] == {"0": [1], "1": [1]}
    for p in (0, 1):
        state = json.loads(zk_client.get(f"{root}/brokers/topics/layout/partitions/{p}/state")[0])
        assert state == {"version": 1, "leader": 1, "leader_epoch": 0, "controller_epoch": epoch, "isr": [1]}
    config = json.loads(zk_client.get(f"{root}/config/topics/layout")[0])
    assert config == {"version": 1, "config": {"retention.ms": "1000000"}}
    for path in ("/consumers", "/brokers/seqid", "/config/changes", "/admin/delete_topics", "/isr_change_notification",
                 "/latest_producer_id_block", "/log_dir_event_notification"):
        assert zk_client.exists(root + path), path


def test_stopping_or_killing_a_broker_removes_its_znode(cluster, zk_client):
    path = f"{cluster.chroot}/brokers/ids/1"
    assert zk_client.exists(path)
    # SIGTERM: the broker closes its session, so the znode goes at once.
    cluster.brokers[1].terminate()
    assert cluster.brokers[1].proc.returncode == 0, cluster.brokers[1].log()[-2000:]
    wait_until(lambda: not zk_client.exists(path), timeout=3, what="the znode to vanish on a clean stop")
    # kill -9: the znode goes when the session times out (6 s in tests).
    cluster.start_broker(1)
    wait_until(lambda: zk_client.exists(path), what="re-registration")
    cluster.brokers[1].kill()
    wait_until(lambda: not zk_client.exists(path), timeout=20, what="the znode to vanish after the session timeout")


def test_an_expired_session_leads_to_re_registration(cluster, zk_client):
    path = f"{cluster.chroot}/brokers/ids/1"
    first_epoch = zk_client.exists(path).czxid
    broker = cluster.brokers[1]
    broker.signal(signal.SIGSTOP)
    try:
        wait_until(lambda: not zk_client.exists(path), timeout=30, what="session expiry of the stopped broker")
    finally:
        broker.signal(signal.SIGCONT)
    stat = wait_until(lambda: zk_client.exists(path), timeout=30, what="re-registration after expiry")
    assert stat.czxid > first_epoch, "a new registration means a new broker epoch"
    # It still serves.
    producer = Producer({"bootstrap.servers": cluster.bootstrap()})
    producer.produce("after-expiry", value=b"still here")
    assert producer.flush(20) == 0


def test_a_second_broker_with_the_same_id_is_refused(cluster):
    # Broker 1's command line with its own listener and data directory.
    argv = cluster.broker_argv(1)
    argv[argv.index("--listeners") + 1] = "PLAINTEXT://127.0.0.1:%d" % free_port()
    argv[argv.index("--data-dir") + 1] = str(cluster.data_root / "dup")
    duplicate = cluster.brokers[1].__class__("dup", argv, cluster.log_dir / "duplicate.log").start()
    assert duplicate.wait_exit(30) != 0
    assert "already registered" in duplicate.log()
    assert cluster.brokers[1].alive()


def test_zookeeper_down_at_start_is_a_clear_error(log_dir, tmp_path):
    port = free_port()
    out = subprocess.run([str(BIN / "broker"), "--broker-id", "1", "--listeners", f"PLAINTEXT://127.0.0.1:{free_port()}",
                          "--zookeeper-connect", f"127.0.0.1:{port}", "--zookeeper-connection-timeout-ms", "2000",
                          "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "could not open a ZooKeeper session" in out.stderr and "check that ZooKeeper is running" in out.stderr


def test_unknown_settings_are_refused_at_start(tmp_path):
    cfg = tmp_path / "server.properties"
    cfg.write_text("broker.id=1\nzookeeper.connect=127.0.0.1:1\nlog.retention.hourz=5\n")
    out = subprocess.run([str(BIN / "broker"), "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "log.retention.hourz" in out.stderr
    out = subprocess.run([str(BIN / "broker"), "--broker-id", "1", "--zookeeper-connect", "x:1", "--num-partitions", "0"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "num.partitions" in out.stderr


def test_a_zookeeper_outage_does_not_stop_produce_and_fetch(log_dir):
    zk = ZooKeeper(log_dir).start()
    cluster = Cluster(zk, log_dir, session_timeout_ms=20000)
    try:
        cluster.start_coordinator()
        cluster.start_broker(1)
        producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all"})
        for i in range(50):
            producer.produce("outage", value=f"before-{i}".encode())
        assert producer.flush(20) == 0
        zk.stop()
        for i in range(50):
            producer.produce("outage", value=f"during-{i}".encode())
        assert producer.flush(20) == 0, "the leader keeps accepting writes while ZooKeeper is away"
        zk.start()
        # While ZooKeeper is away the admin API answers 503 with an error body; it is back
        # once it lists broker 1 again (re-registered on the same session or a new one).
        def admin_sees_broker_1():
            status, body = http_get(f"{cluster.http}/brokers")
            return status == 200 and isinstance(body, list) and [b["id"] for b in body] == [1]

        wait_until(admin_sees_broker_1, timeout=30, what="the admin API to reconnect and list broker 1")
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "x", "enable.auto.commit": False})
        consumer.assign([TopicPartition("outage", 0, 0)])
        values = []
        deadline = time.monotonic() + 30
        while len(values) < 100 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                values.append(m.value())
        consumer.close()
        assert values == [f"before-{i}".encode() for i in range(50)] + [f"during-{i}".encode() for i in range(50)]
        assert cluster.brokers[1].alive()
    finally:
        cluster.stop()
        zk.destroy()
