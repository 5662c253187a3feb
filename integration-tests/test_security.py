"""TLS and SASL listeners with real clients: confluent-kafka, kafka-python and kcat over SSL
(client certificates), SASL_PLAINTEXT and SASL_SSL with PLAIN and both SCRAM mechanisms;
SCRAM credentials created through AlterUserScramCredentials and seen by every broker;
refusals (wrong password, expired or untrusted certificate, unknown mechanism, a client
that skips the handshake, a handshake flood) answered as Kafka answers them, logged, and
harmless to other clients; a three-broker RF 3 cluster replicating over SASL_SSL."""
import json
import os
import socket
import ssl
import struct
import subprocess

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialDeletion,
                                   UserScramCredentialUpsertion)
from kafka import KafkaConsumer

from certs import Authority, server_sans
from harness import RawConnection, create_topic, frame, free_port, http_get, http_request, kstr, wait_until

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
              'password="admin-secret" user_admin="admin-secret" user_carol="carol-secret";')


def start_secure_broker(cluster, broker_id, protocols, props, inter="PLAINTEXT"):
    """A broker with one listener per protocol (named after it) and `props` in its
    properties file; broker_ports[id] stays on the PLAINTEXT listener, which the test
    harness and the coordinator use."""
    ports = {p: free_port() for p in ["PLAINTEXT", *protocols]}
    cluster.broker_ports[broker_id] = ports["PLAINTEXT"]
    conf = cluster.log_dir / f"broker-{broker_id}.properties"
    conf.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    endpoints = ",".join(f"{p}://127.0.0.1:{port}" for p, port in ports.items())
    cluster.start_broker(
        broker_id, "--config", str(conf), "--listeners", endpoints, "--advertised-listeners", endpoints,
        "--listener-security-protocol-map", ",".join(f"{p}:{p}" for p in ports), "--inter-broker-listener-name", inter,
    )
    return ports


def errors_of(config):
    """A client configuration whose errors are collected in the returned list."""
    errors = []
    return dict(config, error_cb=lambda e: errors.append(str(e))), errors


def refused(config, timeout=8):
    """Metadata through `config` fails; returns what the client reported."""
    config, errors = errors_of(config)
    admin = AdminClient(config)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=timeout)
    admin.poll(1)  # serves error_cb
    del admin  # no retries in the background
    return " | ".join(errors)


def failed_authentications(broker):
    return broker.log().count("failed authentication")


def produce(config, topic, values):
    p = Producer(dict(config, **{"message.timeout.ms": 20000}))
    for v in values:
        p.produce(topic, value=v)
    assert p.flush(30) == 0


def tls_peer_common_name(port, ca, cert, key):
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s, context.wrap_socket(s, server_hostname="localhost") as t:
        subject = dict(x[0] for x in t.getpeercert()["subject"])
        return subject["commonName"]


@pytest.mark.timeout(240)
def test_ssl_clients_authenticate_with_certificates_and_certificates_reload(empty_cluster, tmp_path):
    cluster = empty_cluster
    ca, other = Authority(tmp_path / "ca"), Authority(tmp_path / "other", "Untrusted CA")
    _, _, keystore = ca.issue("broker", "/CN=broker-v1", server_sans())
    alice = ca.issue("alice", "/O=Acme/OU=Data/CN=alice")
    expired = ca.issue("old", "/CN=old", expired=True)
    mallory = other.issue("mallory", "/CN=mallory")
    ports = start_secure_broker(cluster, 1, ["SSL"], {
        "listener.name.ssl.ssl.keystore.type": "PEM",
        "listener.name.ssl.ssl.keystore.location": keystore,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": ca.cert,
        "ssl.client.auth": "required",
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+),OU=.*$/$1/L,DEFAULT",
    })
    cluster.start_coordinator()
    create_topic(cluster, "tls")
    broker = cluster.brokers[1]
    ssl_config = {"bootstrap.servers": f"127.0.0.1:{ports['SSL']}", "security.protocol": "SSL",
                  "ssl.ca.location": str(ca.cert)}

    def with_cert(issued):
        cert, key, _ = issued
        return dict(ssl_config, **{"ssl.certificate.location": str(cert), "ssl.key.location": str(key)})

    produce(with_cert(alice), "tls", [b"v%d" % i for i in range(10)])
    consumer = KafkaConsumer("tls", bootstrap_servers=f"127.0.0.1:{ports['SSL']}", security_protocol="SSL",
                             ssl_cafile=str(ca.cert), ssl_certfile=str(alice[0]), ssl_keyfile=str(alice[1]),
                             auto_offset_reset="earliest", consumer_timeout_ms=15000)
    assert [m.value for m in consumer] == [b"v%d" % i for i in range(10)]
    consumer.close()

    # No certificate, an expired one, one from a CA the broker does not trust, and a client
    # that does not trust the broker: each refused in the handshake, with a log line.
    before = failed_authentications(broker)
    refused(ssl_config)
    assert "expired" in refused(with_cert(expired)).lower() or failed_authentications(broker) > before
    refused(with_cert(mallory))
    refused(dict(with_cert(alice), **{"ssl.ca.location": str(other.cert)}))
    wait_until(lambda: failed_authentications(broker) >= before + 3, timeout=10, what="failed TLS handshakes logged")
    assert "CertificateExpired" in broker.log() or "expired" in broker.log().lower()
    # Other clients are unaffected, on either listener.
    produce({"bootstrap.servers": cluster.bootstrap()}, "tls", [b"plain"])
    produce(with_cert(alice), "tls", [b"after"])

    # Certificate rotation: new files at the same path are used by the next connection.
    assert tls_peer_common_name(ports["SSL"], ca.cert, alice[0], alice[1]) == "broker-v1"
    _, _, rotated = ca.issue("broker2", "/CN=broker-v2", server_sans())
    staged = keystore.with_suffix(".new")
    staged.write_text(rotated.read_text())
    os.replace(staged, keystore)
    wait_until(lambda: tls_peer_common_name(ports["SSL"], ca.cert, alice[0], alice[1]) == "broker-v2", timeout=10,
               what="the rotated certificate in use")
    assert "reloaded the TLS key store" in broker.log()
    assert broker.alive()


def scram_admin_setup(bootstrap):
    """alice: SCRAM-SHA-256 (4096 iterations); bob: SCRAM-SHA-512 (8192), through
    AlterUserScramCredentials on a PLAINTEXT listener."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    upserts = [
        UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"alice-secret"),
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"bob-secret"),
    ]
    for f in admin.alter_user_scram_credentials(upserts).values():
        f.result()
    return admin


def sasl(port, mechanism, user, password, protocol="SASL_PLAINTEXT", **extra):
    return dict({"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": protocol, "sasl.mechanisms": mechanism,
                 "sasl.username": user, "sasl.password": password}, **extra)


SASL_PROPS = {
    "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
    "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
    "connection.failed.authentication.delay.ms": "100",
}


@pytest.mark.timeout(240)
def test_sasl_plain_and_scram_with_credentials_in_zookeeper(empty_cluster, zk_client):
    cluster = empty_cluster
    ports = {b: start_secure_broker(cluster, b, ["SASL_PLAINTEXT"], SASL_PROPS) for b in (1, 2)}
    cluster.start_coordinator()
    cluster.wait_brokers_know_each_other()
    create_topic(cluster, "sasl", partitions=2)
    admin = scram_admin_setup(cluster.bootstrap([1]))

    # Kafka's znode layout: /config/users/<user> holds the mechanism's credential.
    data, _ = zk_client.get(f"{cluster.chroot}/config/users/alice")
    assert b'"SCRAM-SHA-256":"salt=' in data and b"iterations=4096" in data and b"alice-secret" not in data
    described = admin.describe_user_scram_credentials(["alice", "bob"])
    infos = {u: [(i.mechanism, i.iterations) for i in d.result().scram_credential_infos] for u, d in described.items()}
    assert infos == {"alice": [(ScramMechanism.SCRAM_SHA_256, 4096)], "bob": [(ScramMechanism.SCRAM_SHA_512, 8192)]}
    with pytest.raises(KafkaException, match="RESOURCE_NOT_FOUND|does not exist"):
        admin.describe_user_scram_credentials(["nobody"])["nobody"].result()

    # SCRAM-SHA-256 through confluent-kafka on broker 2 (the credential reached it through
    # /config/changes), SCRAM-SHA-512 through kafka-python on broker 1, PLAIN through kcat.
    alice_on_2 = sasl(ports[2]["SASL_PLAINTEXT"], "SCRAM-SHA-256", "alice", "alice-secret")
    wait_until(lambda: AdminClient(alice_on_2).list_topics(timeout=5) is not None, timeout=20,
               what="alice's credential on broker 2")
    produce(alice_on_2, "sasl", [b"r%d" % i for i in range(6)])
    consumer = KafkaConsumer("sasl", bootstrap_servers=f"127.0.0.1:{ports[1]['SASL_PLAINTEXT']}",
                             security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                             sasl_plain_username="bob", sasl_plain_password="bob-secret",
                             auto_offset_reset="earliest", consumer_timeout_ms=15000)
    assert sorted(m.value for m in consumer) == sorted(b"r%d" % i for i in range(6))
    consumer.close()
    out = subprocess.run(["kcat", "-b", f"127.0.0.1:{ports[1]['SASL_PLAINTEXT']}", "-X", "security.protocol=SASL_PLAINTEXT",
                          "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username=carol", "-X", "sasl.password=carol-secret",
                          "-C", "-t", "sasl", "-o", "beginning", "-e", "-q"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert sorted(out) == sorted("r%d" % i for i in range(6))

    # A wrong password: Kafka's error, a log line naming the user, never the password.
    broker = cluster.brokers[1]
    before = failed_authentications(broker)
    said = refused(sasl(ports[1]["SASL_PLAINTEXT"], "SCRAM-SHA-256", "alice", "wrong-password-0451"))
    assert "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256" in said
    said = refused(sasl(ports[1]["SASL_PLAINTEXT"], "PLAIN", "carol", "wrong-password-0451"))
    assert "Invalid username or password" in said
    said = refused(sasl(ports[1]["SASL_PLAINTEXT"], "SCRAM-SHA-512", "nobody", "x"))
    assert "invalid credentials" in said
    wait_until(lambda: failed_authentications(broker) >= before + 3, timeout=10, what="failed authentications logged")
    log = broker.log()
    assert any("alice" in line for line in log.splitlines() if "failed authentication" in line)
    assert "wrong-password-0451" not in log and "alice-secret" not in log

    # Deleting a credential locks the user out on every broker.
    for f in admin.alter_user_scram_credentials([UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_256)]).values():
        f.result()
    wait_until(lambda: _fails(alice_on_2), timeout=20, what="alice refused on broker 2 after deletion")

    # The coordinator's HTTP API manages the same credentials.
    users = f"{cluster.http}/users"
    assert http_request("PUT", f"{users}/dave/scram/SCRAM-SHA-512", {"password": "dave-secret", "iterations": 8192})[0] == 200
    dave = sasl(ports[2]["SASL_PLAINTEXT"], "SCRAM-SHA-512", "dave", "dave-secret")
    wait_until(lambda: not _fails(dave), timeout=20, what="dave, created over HTTP, logging in on broker 2")
    listed = {u["user"]: u["scram"] for u in http_get(users)[1]["users"]}
    assert listed == {"bob": [{"mechanism": "SCRAM-SHA-512", "iterations": 8192}],
                      "dave": [{"mechanism": "SCRAM-SHA-512", "iterations": 8192}]}
    status, body = http_request("PUT", f"{users}/dave/scram/SCRAM-SHA-512", {"password": "x", "iterations": 10})
    assert status == 400 and "4096" in body["error"]
    assert http_request("PUT", f"{users}/dave/scram/PLAIN", {"password": "x"})[0] == 400
    assert http_request("DELETE", f"{users}/dave/scram/SCRAM-SHA-512")[0] == 200
    assert http_request("DELETE", f"{users}/dave/scram/SCRAM-SHA-512")[0] == 404
    assert "dave-secret" not in cluster.coordinators[0].log()
    assert all(b.alive() for b in cluster.brokers.values())


def _fails(config):
    try:
        AdminClient(config).list_topics(timeout=4)
        return False
    except KafkaException:
        return True


def handshake_v1(mechanism, correlation_id=1):
    return frame(17, 1, correlation_id, kstr(mechanism))


def parse_handshake(reply):
    correlation_id, error_code, count = struct.unpack(">ihi", reply[:10])
    rest, mechanisms = reply[10:], []
    for _ in range(count):
        n = struct.unpack(">h", rest[:2])[0]
        mechanisms.append(rest[2:2 + n].decode())
        rest = rest[2 + n:]
    return correlation_id, error_code, mechanisms


@pytest.mark.timeout(180)
def start_env_broker(cluster, broker_id, env):
    """A broker with a PLAINTEXT and a SASL_PLAINTEXT listener, configured through the
    images' environment only; returns the SASL port."""
    ports = {p: free_port() for p in ["PLAINTEXT", "SASL_PLAINTEXT"]}
    cluster.broker_ports[broker_id] = ports["PLAINTEXT"]
    endpoints = ",".join(f"{p}://127.0.0.1:{port}" for p, port in ports.items())
    cluster.start_broker(broker_id, "--listeners", endpoints, env=dict(
        {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}, KAFKA_ADVERTISED_LISTENERS=endpoints,
        KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        KAFKA_INTER_BROKER_LISTENER_NAME="PLAINTEXT", **env))
    return ports["SASL_PLAINTEXT"]


@pytest.mark.timeout(180)
def test_the_images_user_variables_and_jaas_files_configure_sasl(empty_cluster, zk_client, tmp_path):
    cluster = empty_cluster
    bitnami_env = {"KAFKA_CFG_SASL_ENABLED_MECHANISMS": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
                   "KAFKA_CLIENT_USERS": "alice,bob", "KAFKA_CLIENT_PASSWORDS": "alice-pw,bob-pw"}
    # bitnami: users and passwords in two lists; PLAIN accepts them, and they get SCRAM
    # credentials in ZooKeeper at start (SCRAM-SHA-256 with 8192 iterations, SHA-512 4096).
    bitnami = start_env_broker(cluster, 1, bitnami_env)
    # confluent: a KafkaServer section in the JAAS file KAFKA_OPTS names (which wins over
    # bitnami's variables, as in the bitnami image).
    jaas = tmp_path / "kafka_server_jaas.conf"
    jaas.write_text("KafkaServer {\n  org.apache.kafka.common.security.plain.PlainLoginModule required\n"
                    '  username="admin" password="admin-secret"\n  user_admin="admin-secret"\n  user_carol="carol-pw";\n};\n')
    confluent = start_env_broker(cluster, 2, {
        "KAFKA_SASL_ENABLED_MECHANISMS": "PLAIN", "KAFKA_OPTS": f"-Xmx1g -Djava.security.auth.login.config={jaas}",
        "KAFKA_CLIENT_USERS": "dave", "KAFKA_CLIENT_PASSWORDS": "dave-pw"})

    def logs_in(config):
        return AdminClient(config).list_topics(timeout=10).brokers

    users = f"{cluster.chroot}/config/users"
    data, stat = zk_client.get(f"{users}/bob")
    assert b"SCRAM-SHA-256" in data and b"iterations=8192" in data and b"SCRAM-SHA-512" in data and b"bob-pw" not in data
    assert logs_in(sasl(bitnami, "PLAIN", "alice", "alice-pw"))
    bob = sasl(bitnami, "SCRAM-SHA-512", "bob", "bob-pw")
    wait_until(lambda: logs_in(bob), timeout=20, what="bob's SCRAM credential")
    assert logs_in(sasl(confluent, "PLAIN", "carol", "carol-pw"))
    assert "Authentication failed" in refused(sasl(bitnami, "PLAIN", "alice", "wrong"), timeout=3)
    assert "Authentication failed" in refused(sasl(confluent, "PLAIN", "dave", "dave-pw"), timeout=3)
    for b in (1, 2):
        log = cluster.brokers[b].log()
        assert "alice-pw" not in log and "carol-pw" not in log
        assert not [line for line in log.splitlines() if "do not apply" in line and "KAFKA_CLIENT_USERS" in line]

    # A restart with the same passwords writes nothing: the credentials already match.
    cluster.brokers[1].terminate()
    restarted = start_env_broker(cluster, 1, bitnami_env)
    assert logs_in(sasl(restarted, "SCRAM-SHA-256", "bob", "bob-pw"))
    assert zk_client.get(f"{users}/bob")[1].version == stat.version


def auth_counts(port):
    """kafka_server_socket_server_metrics_*_authentication_total of the SASL listener."""
    from test_metrics import scrape, value
    samples = scrape(f"http://127.0.0.1:{port}/metrics")
    name = "kafka_server_socket_server_metrics_{}_total"
    return {k: value(samples, name.format(k), listener="SASL_PLAINTEXT") or 0 for k in
            ["successful_authentication", "successful_reauthentication", "failed_authentication"]}


@pytest.mark.timeout(120)
def test_librdkafka_re_authenticates_before_its_session_expires(empty_cluster):
    """KIP-368: with connections.max.reauth.ms the broker tells the client its session
    lifetime; librdkafka re-authenticates on the same connection before it ends, so a
    producer writing throughout loses nothing and is never disconnected for it."""
    cluster = empty_cluster
    metrics = free_port()
    ports = start_secure_broker(cluster, 1, ["SASL_PLAINTEXT"], dict(
        SASL_PROPS, **{"connections.max.reauth.ms": "2000", "metrics.listen": f"127.0.0.1:{metrics}"}))
    cluster.start_coordinator()
    create_topic(cluster, "reauth")
    scram_admin_setup(cluster.bootstrap())
    errors = []
    producer = Producer(sasl(ports["SASL_PLAINTEXT"], "SCRAM-SHA-512", "bob", "bob-secret", error_cb=errors.append))
    acked = []

    def produced_through_reauthentications():
        producer.produce("reauth", value=b"%d" % len(acked), on_delivery=lambda e, m: acked.append(e))
        producer.poll(0.1)
        return auth_counts(metrics)["successful_reauthentication"] >= 3
    wait_until(produced_through_reauthentications, timeout=60, interval=0.1, what="three re-authentications")
    assert producer.flush(20) == 0
    assert acked and all(e is None for e in acked), [e for e in acked if e][:3]
    counts = auth_counts(metrics)
    assert counts["failed_authentication"] == 0 and counts["successful_authentication"] >= 1, counts
    broker = cluster.brokers[1]
    assert "did not re-authenticate" not in broker.log()
    assert not errors, errors


@pytest.mark.timeout(120)
def test_the_coordinator_reaches_brokers_with_a_client_properties_file(empty_cluster, tmp_path):
    """client.config (what kafka-topics --command-config takes) gives the coordinator's own
    connections their security: group lag over SASL, the REST API's librdkafka producer too."""
    cluster = empty_cluster
    metrics = free_port()
    ports = start_secure_broker(cluster, 1, ["SASL_PLAINTEXT"], dict(SASL_PROPS, **{"metrics.listen": f"127.0.0.1:{metrics}"}))
    client_config = tmp_path / "client.properties"
    client_config.write_text(
        "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
        'sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret";\n')
    coordinator = cluster.start_coordinator("--client-config", str(client_config))
    create_topic(cluster, "lagged")
    produce({"bootstrap.servers": cluster.bootstrap()}, "lagged", [b"v%d" % i for i in range(5)])
    consumer = KafkaConsumer("lagged", bootstrap_servers=cluster.bootstrap(), group_id="g", auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=10000)
    assert len([next(consumer) for _ in range(2)]) == 2
    consumer.commit()
    consumer.close()

    before = auth_counts(metrics)["successful_authentication"]
    status, group = http_get(f"{cluster.http}/groups/g")
    assert status == 200, group
    assert group["total_lag"] == 3, group
    after_lag = auth_counts(metrics)["successful_authentication"]
    assert after_lag > before, "the coordinator asked over the SASL listener"
    from test_rest import BINARY, call
    status, body, _ = call("POST", f"{cluster.http}/rest/topics/lagged", {"records": [{"value": "ZnJvbSBSRVNU"}]},
                           content_type=BINARY)
    assert status == 200 and body["offsets"][0]["offset"] == 5, body
    assert auth_counts(metrics)["successful_authentication"] > after_lag, "the REST producer logged in too"
    assert "admin-secret" not in coordinator.log()


def test_sasl_protocol_misuse_is_refused_without_harm(empty_cluster):
    cluster = empty_cluster
    ports = start_secure_broker(cluster, 1, ["SASL_PLAINTEXT"], SASL_PROPS)
    cluster.start_coordinator()
    create_topic(cluster, "misuse")
    scram_admin_setup(cluster.bootstrap())
    port = ports["SASL_PLAINTEXT"]
    broker = cluster.brokers[1]

    # An unknown mechanism: UNSUPPORTED_SASL_MECHANISM (33) with the enabled ones, then closed.
    c = RawConnection(port)
    c.send(handshake_v1("GSSAPI"))
    assert parse_handshake(c.recv_frame()) == (1, 33, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    assert c.closed_by_peer()
    # A client that skips the handshake: closed, with a log line saying why.
    c = RawConnection(port)
    c.send(frame(3, 1, 2, struct.pack(">i", -1)))
    assert c.closed_by_peer()
    wait_until(lambda: "unexpected Metadata request during SASL authentication" in broker.log(), timeout=5,
               what="the skipped handshake logged")
    # Before authentication frames are capped at sasl.server.max.receive.size (512 KiB).
    c = RawConnection(port)
    c.send(struct.pack(">i", 600 * 1024) + b"\x00" * 64)
    assert c.closed_by_peer()
    wait_until(lambda: "larger than sasl.server.max.receive.size" in broker.log(), timeout=5,
               what="the oversized unauthenticated frame logged with the setting that bounds it")
    # SaslAuthenticate on a PLAINTEXT listener: ILLEGAL_SASL_STATE (34).
    c = RawConnection(cluster.broker_ports[1])
    c.send(frame(36, 0, 3, struct.pack(">i", 3) + b"abc"))
    assert struct.unpack(">ih", c.recv_frame()[:6]) == (3, 34)
    c.close()

    # A handshake flood: connections that start and never finish. Clients still get in.
    flood = []
    for i in range(300):
        f = RawConnection(port)
        f.send(handshake_v1("SCRAM-SHA-256", i))
        flood.append(f)
    assert parse_handshake(flood[-1].recv_frame())[1] == 0
    produce(sasl(port, "SCRAM-SHA-512", "bob", "bob-secret"), "misuse", [b"through the flood"])
    for f in flood:
        f.close()
    assert broker.alive()


@pytest.mark.timeout(300)
def test_three_brokers_replicate_over_sasl_ssl(empty_cluster, tmp_path):
    cluster = empty_cluster
    ca = Authority(tmp_path / "ca")
    _, _, keystore = ca.issue("broker", "/CN=broker", server_sans())
    props = {
        "ssl.keystore.location": keystore,
        "ssl.truststore.location": ca.cert,
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
    }
    ports = {b: start_secure_broker(cluster, b, ["SASL_SSL"], props, inter="SASL_SSL") for b in (1, 2, 3)}
    cluster.start_coordinator()
    cluster.wait_brokers_know_each_other()
    create_topic(cluster, "replicated", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    scram_admin_setup(cluster.bootstrap())

    def isr():
        return http_get(f"{cluster.http}/topics/replicated")[1]["partitions"][0]

    bootstrap = ",".join(f"127.0.0.1:{ports[b]['SASL_SSL']}" for b in (1, 2, 3))
    client = sasl(0, "SCRAM-SHA-512", "bob", "bob-secret", protocol="SASL_SSL", **{"ssl.ca.location": str(ca.cert)})
    client["bootstrap.servers"] = bootstrap
    # bob's credential reaches each broker through a /config/changes notification: wait for all three.
    for b in (1, 2, 3):
        one = dict(client, **{"bootstrap.servers": f"127.0.0.1:{ports[b]['SASL_SSL']}"})
        wait_until(lambda: AdminClient(one).list_topics(timeout=5) is not None, timeout=30, what=f"bob's credential on broker {b}")
    produce(dict(client, acks="all"), "replicated", [b"a%d" % i for i in range(100)])
    # Followers fetch over SASL_SSL (the only inter-broker listener): all three in sync.
    wait_until(lambda: len(isr()["isr"]) == 3, timeout=30, what="three replicas in sync over SASL_SSL")
    leader = isr()["leader"]
    cluster.brokers[leader].kill()
    wait_until(lambda: isr()["leader"] not in (None, leader), timeout=30, what="a new leader")
    produce(dict(client, acks="all"), "replicated", [b"b%d" % i for i in range(100)])
    out = subprocess.run(["kcat", "-b", bootstrap, "-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={ca.cert}",
                          "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=bob", "-X", "sasl.password=bob-secret",
                          "-C", "-t", "replicated", "-o", "beginning", "-e", "-q"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert sorted(out) == sorted(["a%d" % i for i in range(100)] + ["b%d" % i for i in range(100)])
    # kafka-python over SASL_SSL with PLAIN reads the same.
    consumer = KafkaConsumer("replicated", bootstrap_servers=bootstrap.split(","), security_protocol="SASL_SSL",
                             ssl_cafile=str(ca.cert), sasl_mechanism="PLAIN", sasl_plain_username="carol",
                             sasl_plain_password="carol-secret", auto_offset_reset="earliest", consumer_timeout_ms=15000)
    assert sorted(m.value.decode() for m in consumer) == sorted(out)
    consumer.close()
    for b, p in cluster.brokers.items():
        if b != leader:
            # Inter-broker logins (PLAIN as admin) never fail; bob's tries before his credential arrived may.
            failed = [line for line in p.log().splitlines() if "failed authentication" in line
                      and 'user \\"bob\\" failed: no such user' not in line]
            assert not failed, "\n".join(failed)


def _acl(resource_type, name, principal, operation, permission="ALLOW", pattern="LITERAL"):
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    return AclBinding(getattr(ResourceType, resource_type), name, getattr(ResourcePatternType, pattern), principal, "*",
                      getattr(AclOperation, operation), getattr(AclPermissionType, permission))


def _consume_error(config, topic, group):
    """The first error a group consumer gets on `topic`, or the value of the first record."""
    from confluent_kafka import Consumer
    c = Consumer(dict(config, **{"group.id": group, "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    try:
        def first():
            m = c.poll(0.5)
            if m is None:
                return None
            return m.error().code() if m.error() else m.value()
        return wait_until(first, timeout=40, what=f"a record or an error from {topic} in group {group}")
    finally:
        c.close()


@pytest.mark.timeout(300)
def test_acls_let_a_user_do_exactly_what_they_grant(empty_cluster, zk_client):
    """alice may write and read topic `a` and read group `g`: she can do exactly that, and
    gets Kafka's authorization error for everything else; ACLs sit in Kafka's znodes."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AclBindingFilter, NewTopic
    cluster = empty_cluster
    props = dict(SASL_PROPS, **{
        "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
        # The PLAINTEXT listener is the internal one (the harness and the coordinator).
        "super.users": "User:admin;User:ANONYMOUS",
    })
    ports = start_secure_broker(cluster, 1, ["SASL_PLAINTEXT"], props)
    cluster.start_coordinator()
    admin_plain = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    for f in admin_plain.alter_user_scram_credentials([
        UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"alice-secret"),
        UserScramCredentialUpsertion("admin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"admin-secret"),
    ]).values():
        f.result()
    port = ports["SASL_PLAINTEXT"]
    admin = AdminClient(sasl(port, "SCRAM-SHA-256", "admin", "admin-secret"))
    for t in admin.create_topics([NewTopic("a", 1, 1), NewTopic("b", 1, 1)], operation_timeout=15).values():
        t.result()
    cluster.wait_topic_led("a")
    cluster.wait_topic_led("b")
    grants = [_acl("TOPIC", "a", "User:alice", "WRITE"), _acl("TOPIC", "a", "User:alice", "READ"),
              _acl("GROUP", "g", "User:alice", "READ")]
    for f in admin.create_acls(grants).values():
        f.result()

    # Kafka's znodes, and a change notification for each pattern.
    data, _ = zk_client.get(f"{cluster.chroot}/kafka-acl/Topic/a")
    assert json.loads(data) == {"version": 1, "acls": [
        {"principal": "User:alice", "permissionType": "Allow", "operation": "Read", "host": "*"},
        {"principal": "User:alice", "permissionType": "Allow", "operation": "Write", "host": "*"}]}
    assert zk_client.get_children(f"{cluster.chroot}/kafka-acl-changes")
    described = admin.describe_acls(AclBindingFilter(
        *[getattr(x, a) for x, a in [(grants[0], "restype"), (grants[0], "name"), (grants[0], "resource_pattern_type")]],
        None, None, grants[0].operation.__class__.ANY, grants[0].permission_type.__class__.ANY)).result()
    assert sorted(str(b.operation) for b in described) == ["AclOperation.READ", "AclOperation.WRITE"]

    alice = sasl(port, "SCRAM-SHA-256", "alice", "alice-secret")
    produce(alice, "a", [b"allowed"])
    # Another topic: TOPIC_AUTHORIZATION_FAILED on delivery.
    errors = []
    p = Producer(dict(alice, **{"message.timeout.ms": 10000}))
    p.produce("b", value=b"denied", on_delivery=lambda err, msg: errors.append(err))
    p.flush(20)
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # Reading `a` in group g works; in group h: GROUP_AUTHORIZATION_FAILED.
    assert _consume_error(alice, "a", "g") == b"allowed"
    assert _consume_error(alice, "a", "h") == KafkaError.GROUP_AUTHORIZATION_FAILED
    # Metadata hides b; creating, deleting and ACL changes are refused.
    alice_admin = AdminClient(alice)
    assert set(alice_admin.list_topics(timeout=10).topics) == {"a"}
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        alice_admin.create_topics([NewTopic("c", 1, 1)], operation_timeout=10)["c"].result()
    with pytest.raises(KafkaException, match="TOPIC_AUTHORIZATION_FAILED"):
        alice_admin.delete_topics(["a"], operation_timeout=10)["a"].result()
    with pytest.raises(KafkaException, match="CLUSTER_AUTHORIZATION_FAILED"):
        list(alice_admin.create_acls([_acl("TOPIC", "b", "User:alice", "WRITE")]).values())[0].result()
    # kafka-python sees the same: its producer to b is refused.
    from kafka import KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError
    kp = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_PLAINTEXT",
                       sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice", sasl_plain_password="alice-secret",
                       max_block_ms=10000)
    with pytest.raises(TopicAuthorizationFailedError):
        kp.send("b", b"x").get(timeout=10)
    kp.send("a", b"from kafka-python").get(timeout=10)
    kp.close()

    # A DENY wins over the ALLOW (a prefixed pattern, written by kafka-acls the same way).
    for f in admin.create_acls([_acl("TOPIC", "a", "User:alice", "READ", "DENY", "PREFIXED")]).values():
        f.result()
    data, _ = zk_client.get(f"{cluster.chroot}/kafka-acl-extended/prefixed/Topic/a")
    assert json.loads(data)["acls"][0]["permissionType"] == "Deny"
    assert _consume_error(alice, "a", "g") == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # DeleteAcls removes the deny; reading works again.
    deleted = admin.delete_acls([AclBindingFilter(
        *[getattr(_acl("TOPIC", "a", "User:alice", "READ", "DENY", "PREFIXED"), a) for a in
          ("restype", "name", "resource_pattern_type", "principal", "host", "operation", "permission_type")])])
    assert len(list(deleted.values())[0].result()) == 1
    # (group g committed past the first record when it read it)
    assert _consume_error(alice, "a", "g") == b"from kafka-python"
    assert "authorization denied" in cluster.brokers[1].log()
    assert cluster.brokers[1].alive()


def _http(method, url, user=None, password=None, token=None, body=None):
    import base64
    import urllib.error
    import urllib.request
    headers = {"content-type": "application/json"}
    if user is not None:
        headers["authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    def parsed(raw):
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return raw.decode(errors="replace")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), parsed(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), parsed(e.read())


@pytest.mark.timeout(180)
def test_the_http_api_authenticates_and_checks_acls(empty_cluster, tmp_path):
    """http.auth=basic against the SCRAM users, the brokers' ACLs per request; an
    unauthenticated delete is refused (401), an unauthorized one too (403)."""
    from confluent_kafka.admin import NewTopic
    cluster = empty_cluster
    # The broker's ACL APIs need its authorizer; its PLAINTEXT clients act as super users here.
    cluster.start_broker(1, "--authorizer-class-name", "kafka.security.authorizer.AclAuthorizer",
                         "--super-users", "User:ANONYMOUS")
    cluster.start_coordinator("--http-auth", "basic", "--authorizer-class-name", "kafka.security.authorizer.AclAuthorizer",
                              "--super-users", "User:admin")
    admin = scram_admin_setup(cluster.bootstrap())  # alice (SHA-256) and bob (SHA-512)
    for f in admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            "admin", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"admin-secret")]).values():
        f.result()
    admin.create_topics([NewTopic("guarded", 1, 1)], operation_timeout=15)["guarded"].result()
    http = cluster.coordinators[0].http

    # Probes stay open; everything else needs a login.
    assert _http("GET", f"{http}/health")[0] == 200
    assert _http("GET", f"{http}/metrics")[0] in (200, 503)
    status, headers, body = _http("DELETE", f"{http}/topics/guarded")
    assert status == 401 and "Basic" in {k.lower(): v for k, v in headers.items()}.get("www-authenticate", "") and "authentication required" in body["error"]
    assert _http("GET", f"{http}/topics/guarded", "alice", "wrong")[0] == 401
    # alice is known but has no ACL: 403 naming the grant.
    status, _, body = _http("DELETE", f"{http}/topics/guarded", "alice", "alice-secret")
    assert status == 403 and "kafka-acls" in body["error"] and "Delete" in body["error"]
    # An ACL written through Kafka's API opens it (bob: SCRAM-SHA-512 credential).
    for f in admin.create_acls([_acl("TOPIC", "guarded", "User:bob", "DESCRIBE")]).values():
        f.result()
    assert _http("GET", f"{http}/topics/guarded", "bob", "bob-secret")[0] == 200
    assert _http("DELETE", f"{http}/topics/guarded", "bob", "bob-secret")[0] == 403
    # The super user may.
    status, _, body = _http("DELETE", f"{http}/topics/guarded", "admin", "admin-secret")
    assert status in (200, 202), body
    log = cluster.coordinators[0].log()
    assert "not authenticated" in log and "refused by the ACLs" in log and "alice-secret" not in log
