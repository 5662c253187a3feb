"""ZooKeeper security as Kafka has it: the brokers and the coordinator log in to a ZooKeeper
that requires SASL (DIGEST-MD5, the JAAS `Client` section), and with `zookeeper.set.acl` the
znodes they create are writable by that login only, readable by all except the SCRAM
credentials (Kafka's `ZkData.defaultAcls`)."""

import os
import subprocess

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import Permissions

from harness import BIN, Cluster, ZooKeeper, create_topic, wait_until

pytestmark = pytest.mark.timeout(180)

USERS = {"kafka": "kafka-secret", "reader": "reader-secret"}


def kazoo(zk, chroot, user):
    client = KazooClient(
        hosts=zk.connect + chroot,
        sasl_options={"mechanism": "DIGEST-MD5", "username": user, "password": USERS[user]},
    )
    client.start(timeout=20)
    return client


@pytest.fixture
def sasl_zookeeper(log_dir):
    zk = ZooKeeper(log_dir / "zookeeper", sasl_users=USERS, require_sasl=True).start()
    yield zk
    zk.destroy()


def test_a_cluster_logs_in_to_zookeeper_and_protects_its_znodes(sasl_zookeeper, log_dir, tmp_path):
    jaas = tmp_path / "kafka_jaas.conf"
    jaas.write_text(
        "// as in the confluent image's documentation\n"
        "Client {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n"
        '  username="kafka"\n  password="kafka-secret";\n};\n'
    )
    cluster = Cluster(sasl_zookeeper, log_dir)
    try:
        # The coordinator the bitnami way, the broker the confluent way.
        cluster.start_coordinator("--zookeeper-set-acl", "true", env=dict(
            os.environ, KAFKA_ZOOKEEPER_PROTOCOL="SASL", KAFKA_ZOOKEEPER_USER="kafka",
            KAFKA_ZOOKEEPER_PASSWORD="kafka-secret"))
        broker = cluster.start_broker(1, env=dict(
            os.environ, KAFKA_OPTS=f"-Xmx1g -Djava.security.auth.login.config={jaas}", KAFKA_ZOOKEEPER_SET_ACL="true"))
        assert "kafka-secret" not in broker.log()

        create_topic(cluster, "readings", partitions=1)
        producer = Producer({"bootstrap.servers": cluster.bootstrap()})
        producer.produce("readings", key=b"k", value=b"21.5")
        assert producer.flush(20) == 0
        consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "g", "auto.offset.reset": "earliest"})
        consumer.assign([TopicPartition("readings", 0, 0)])
        got = []

        def read():
            m = consumer.poll(1)
            if m is not None and not m.error():
                got.append(m.value())
            return got
        wait_until(read, what="the record back")
        consumer.close()
        assert got == [b"21.5"]

        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        upsert = UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"alice-pw")
        for f in admin.alter_user_scram_credentials([upsert]).values():
            f.result()

        owner = kazoo(sasl_zookeeper, cluster.chroot, "kafka")
        other = kazoo(sasl_zookeeper, cluster.chroot, "reader")
        try:
            # Written by the coordinator (topic, partition state), by the broker (its
            # registration, the cluster id) and through the broker (SCRAM credentials).
            for path in ["/brokers/topics/readings", "/brokers/topics/readings/partitions/0/state",
                         "/brokers/ids/1", "/cluster/id", "/controller", "/config/topics/readings"]:
                acls, _ = owner.get_acls(path)
                assert {(a.id.scheme, a.id.id, a.perms) for a in acls} == {
                    ("sasl", "kafka", Permissions.ALL), ("world", "anyone", Permissions.READ)}, path
                assert other.get(path)[0] is not None
                with pytest.raises(NoAuthError):
                    other.set(path, b"{}")
            acls, _ = owner.get_acls("/config/users/alice")
            assert {(a.id.scheme, a.id.id) for a in acls} == {("sasl", "kafka")}
            assert b"SCRAM-SHA-256" in owner.get("/config/users/alice")[0]
            with pytest.raises(NoAuthError):
                other.get("/config/users/alice")
            with pytest.raises(NoAuthError):
                other.delete("/brokers/ids/1")
            with pytest.raises(NoAuthError):
                other.create("/admin/delete_topics/readings")
            assert other.exists("/brokers/topics/readings")
        finally:
            owner.stop()
            other.stop()

        # A wrong password, and no login at all: the broker stops at once (not after
        # zookeeper.connection.timeout.ms) and says why.
        bad = cluster.start_broker(2, "--zookeeper-connection-timeout-ms", "60000", wait=False, env=dict(
            os.environ, KAFKA_ZOOKEEPER_PROTOCOL="SASL", KAFKA_ZOOKEEPER_USER="kafka", KAFKA_ZOOKEEPER_PASSWORD="wrong"))
        assert bad.wait_exit(30) != 0
        assert "refused the SASL login kafka" in bad.log(), bad.log()[-2000:]
        assert "wrong" not in bad.log().replace("what is wrong", "")
        anonymous = cluster.start_broker(3, "--zookeeper-connection-timeout-ms", "60000", wait=False,
                                         env={k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")})
        assert anonymous.wait_exit(30) != 0
        assert "none given: the server requires one" in anonymous.log(), anonymous.log()[-2000:]
    finally:
        cluster.stop()


def test_set_acl_without_a_login_is_refused_at_start(tmp_path):
    run = subprocess.run(
        [str(BIN / "broker"), "--broker-id", "1", "--zookeeper-connect", "127.0.0.1:1", "--data-dir", str(tmp_path),
         "--zookeeper-set-acl", "true"],
        capture_output=True, text=True, timeout=30, env={k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
    )
    assert run.returncode == 2
    assert "zookeeper.set.acl" in run.stderr and "SASL login" in run.stderr, run.stderr
