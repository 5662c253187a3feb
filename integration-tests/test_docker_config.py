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
    broker_port, http_port = free_port(), free_port()

    def env_of(service):
        env = {k: str(v) for k, v in services[service]["environment"].items()}
        # Only what exists solely inside Docker changes: the ZooKeeper host, ports, the volume path.
        env["TRIBUTARY_ZOOKEEPER_CONNECT"] = env["TRIBUTARY_ZOOKEEPER_CONNECT"].replace("zookeeper:2181", zookeeper.connect + chroot)
        if "TRIBUTARY_HTTP_LISTEN" in env:
            env["TRIBUTARY_HTTP_LISTEN"] = f"127.0.0.1:{http_port}"
        if "TRIBUTARY_LISTENERS" in env:
            env["TRIBUTARY_LISTENERS"] = f"PLAINTEXT://127.0.0.1:{broker_port}"
            env["TRIBUTARY_ADVERTISED_LISTENERS"] = f"PLAINTEXT://localhost:{broker_port}"
            env["TRIBUTARY_DATA_DIR"] = str(tmp_path / "data")
        return env

    procs = []
    try:
        for service in ("coordinator", "broker"):
            argv = [str(BIN / services[service]["command"][0])]
            p = Process(service, argv, log_dir / f"{service}.log")
            saved = dict(os.environ)
            os.environ.update(env_of(service))
            try:
                p.start()
            finally:
                os.environ.clear()
                os.environ.update(saved)
            procs.append(p)
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
    finally:
        for p in procs:
            p.kill()
