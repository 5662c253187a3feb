"""docker/ is for people with Docker; here it is checked with what runs without an engine:
the compose file validates, and its environment, given to the binaries directly, yields a
working cluster."""
import os
import subprocess

import yaml
from confluent_kafka import Consumer, Producer

from harness import BIN, ROOT, Process, free_port, http_get, wait_until, api_versions_v0_ok

COMPOSE = ROOT / "docker" / "docker-compose.yml"


def test_compose_file_is_valid():
    out = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    assert set(services) == {"zookeeper", "coordinator", "broker"}
    assert services["broker"]["command"] == ["broker"] and services["coordinator"]["command"] == ["coordinator"]


def test_the_compose_environment_runs_a_cluster_without_docker(zookeeper, log_dir, tmp_path):
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    chroot = "/compose-test"
    broker_port, http_port, rest_port = free_port(), free_port(), free_port()

    def env_of(service):
        env = {k: str(v) for k, v in services[service]["environment"].items()}
        # Only what exists solely inside Docker changes: the ZooKeeper host, ports, the volume path.
        env["TRIBUTARY_ZOOKEEPER_CONNECT"] = env["TRIBUTARY_ZOOKEEPER_CONNECT"].replace("zookeeper:2181", zookeeper.connect + chroot)
        if "TRIBUTARY_HTTP_LISTEN" in env:
            env["TRIBUTARY_HTTP_LISTEN"] = f"127.0.0.1:{http_port}"
        if "TRIBUTARY_REST_LISTEN" in env:
            env["TRIBUTARY_REST_LISTEN"] = f"127.0.0.1:{rest_port}"
        if "TRIBUTARY_LISTENERS" in env:
            env["TRIBUTARY_LISTENERS"] = f"PLAINTEXT://127.0.0.1:{broker_port}"
            env["TRIBUTARY_ADVERTISED_LISTENERS"] = f"PLAINTEXT://localhost:{broker_port}"
            env["TRIBUTARY_DATA_DIR"] = str(tmp_path / "data")
        return env

    procs = []
    try:
        for service in ("coordinator", "broker"):
            argv = [str(BIN / services[service]["command"][0])]
            procs.append(Process(service, argv, log_dir / f"{service}.log").start(env=dict(os.environ) | env_of(service)))
        wait_until(lambda: api_versions_v0_ok(broker_port), timeout=60, what="the broker from the compose environment")
        producer = Producer({"bootstrap.servers": f"localhost:{broker_port}"})
        producer.produce("compose", value=b"hello")
        assert producer.flush(20) == 0
        # A group consumer: the compose settings give a single broker working consumer groups.
        consumer = Consumer({"bootstrap.servers": f"localhost:{broker_port}", "group.id": "c", "auto.offset.reset": "earliest"})
        consumer.subscribe(["compose"])
        msg = wait_until(lambda: (lambda m: m if m is not None and not m.error() else None)(consumer.poll(0.5)), what="the record")
        assert msg.value() == b"hello"
        consumer.close()
        assert http_get(f"http://127.0.0.1:{http_port}/topics/compose")[0] == 200
        # The REST API on the port the compose file gives it.
        assert http_get(f"http://127.0.0.1:{rest_port}/topics")[1] == http_get(f"http://127.0.0.1:{http_port}/rest/topics")[1]
    finally:
        for p in procs:
            p.kill()


def test_a_bitnami_style_environment_alone_runs_a_broker(zookeeper, log_dir, tmp_path):
    """The variables of the bitnami tutorial's compose file, and nothing else, configure
    the broker and the coordinator; JVM variables are named as not applicable and a Kafka
    setting Tributary lacks as a warning."""
    from kafka import KafkaConsumer, KafkaProducer

    port, http_port = free_port(), free_port()
    kafka_env = {
        "KAFKA_BROKER_ID": "1",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{port}",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_ZOOKEEPER_CONNECT": zookeeper.connect + "/bitnami-env",
        "ALLOW_PLAINTEXT_LISTENER": "yes",
        "KAFKA_CFG_LOG_DIRS": str(tmp_path / "data"),
        "KAFKA_CFG_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_CFG_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_HEAP_OPTS": "-Xmx1G -Xms1G",
        "KAFKA_COMPRESSION_TYPE": "producer",
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TRIBUTARY_"))}
    procs = []
    try:
        for name, argv in (("coordinator", [str(BIN / "coordinator"), "--http-listen", f"127.0.0.1:{http_port}"]),
                           ("broker", [str(BIN / "broker")])):
            procs.append(Process(name, argv, log_dir / f"{name}.log").start(env=clean | kafka_env))
        wait_until(lambda: api_versions_v0_ok(port), timeout=60, what="the broker configured by KAFKA_* variables")
        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{port}")
        producer.send("bitnami", b"hello").get(timeout=30)
        producer.close()
        consumer = KafkaConsumer("bitnami", bootstrap_servers=f"127.0.0.1:{port}", group_id="g",
                                 auto_offset_reset="earliest", consumer_timeout_ms=20000)
        assert [m.value for m in consumer][:1] == [b"hello"]
        consumer.close()
        broker_log = procs[1].log()
        assert "KAFKA_HEAP_OPTS" in broker_log and "do not apply to Tributary" in broker_log
        assert "KAFKA_COMPRESSION_TYPE" in broker_log and "does not implement" in broker_log
        assert (tmp_path / "data").is_dir(), "KAFKA_CFG_LOG_DIRS chose the data directory"
    finally:
        for p in procs:
            p.kill()

    bad = subprocess.run([str(BIN / "broker")], env=clean | kafka_env | {"KAFKA_CFG_NUM_PARTITIONS": "many"},
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "KAFKA_CFG_NUM_PARTITIONS" in bad.stderr and "many" in bad.stderr, bad.stderr
