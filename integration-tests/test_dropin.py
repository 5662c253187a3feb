"""The drop-in for the tutorials' compose files, without Docker: the image's entrypoint
(docker/entrypoint.sh) runs on this machine with exactly the environment of the kafka
service in docker/compose-{confluent,bitnami,kraft}.yml. The compose host names are mapped
to loopback addresses in /etc/hosts for the test's duration; the images' volume paths are
put under a temp dir (TRIBUTARY_VOLUME_ROOT) and the admin API on a free port. The
tutorials' producer and consumer (docker/examples) run unchanged against each."""
import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest
import yaml
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient

from harness import BIN, ROOT, ZooKeeper, api_versions_v0_ok, free_port, port_open, wait_until

DOCKER = ROOT / "docker"
EXAMPLES = DOCKER / "examples"
HOSTS = "/etc/hosts"
MARK = "# tributary test_dropin"


@contextmanager
def hosts(mapping):
    """Adds `address name` lines to /etc/hosts, and removes exactly those afterwards."""
    if not os.access(HOSTS, os.W_OK):
        pytest.fail(f"{HOSTS} is not writable: these tests map compose host names to loopback addresses there; run as root")
    lines = [f"{address} {name} {MARK}\n" for name, address in mapping.items()]
    with open(HOSTS, "a") as f:
        f.writelines(lines)
    try:
        yield
    finally:
        with open(HOSTS) as f:
            kept = [line for line in f if not line.rstrip("\n").endswith(MARK)]
        with open(HOSTS, "w") as f:
            f.writelines(kept)


def service_env(compose, service):
    env = yaml.safe_load((DOCKER / compose).read_text())["services"][service]["environment"]
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


class Container:
    """The entrypoint as a container's PID 1: started in its own session, stopped with a
    SIGTERM to that one process, as `docker stop` does."""

    def __init__(self, compose, service, volume_root, log_path, extra=None):
        base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TRIBUTARY_", "CLUSTER_ID"))}
        self.http_port = free_port()
        self.env = base | service_env(compose, service) | {
            "TRIBUTARY_BIN_DIR": str(BIN),
            "TRIBUTARY_VOLUME_ROOT": str(volume_root),
            "TRIBUTARY_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
        } | (extra or {})
        self.log_path = log_path
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(DOCKER / "entrypoint.sh")], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_serving(self, port=9092):
        def serving():
            if self.proc.poll() is not None:
                raise AssertionError(f"the entrypoint exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            return port_open(port) and api_versions_v0_ok(port)
        wait_until(serving, timeout=90, what=f"the container's broker on port {port}")

    def group_alive(self):
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False

    def stop(self):
        """SIGTERM to the entrypoint alone; returns its exit status once every process of
        the container is gone."""
        os.kill(self.proc.pid, signal.SIGTERM)
        status = self.proc.wait(60)
        wait_until(lambda: not self.group_alive(), timeout=30, what="every process of the container to exit")
        return status

    def kill(self):
        if self.proc and self.group_alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@contextmanager
def container(*args, **kwargs):
    c = Container(*args, **kwargs).start()
    try:
        yield c
    finally:
        c.kill()


def children_running(parent, program):
    """Pids of `parent`'s children whose command is `program` (read from /proc, so that the
    test needs no procps)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            argv0 = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and argv0 == str(program):
            found.append(int(entry))
    return found


def example(script, timeout=90, **env):
    """Runs a tutorial script unchanged, configured as its compose service configures it."""
    out = subprocess.run([sys.executable, str(EXAMPLES / script)], env=dict(os.environ, **env), capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def brokers_seen(bootstrap):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30)
    return md, {(b.host, b.port) for b in md.brokers.values()}


def produce_and_consume(bootstrap, count=5, group="sensor-readers"):
    example("producer.py", BOOTSTRAP=bootstrap, COUNT=str(count), INTERVAL="0")
    out = example("consumer.py", BOOTSTRAP=bootstrap, COUNT=str(count), GROUP=group)
    assert out.count("received") == count, out


def test_compose_files_swap_only_the_kafka_image():
    for compose, kafka, others in (("compose-confluent.yml", "kafka-1", {"zookeeper-1", "zookeeper-2"}),
                                   ("compose-bitnami.yml", "kafka", {"zookeeper"}),
                                   ("compose-kraft.yml", "kafka-server", {"kafka-topic-creator"})):
        out = subprocess.run(["docker-compose", "-f", str(DOCKER / compose), "config"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        services = yaml.safe_load(out.stdout)["services"]
        assert services[kafka]["image"].startswith("tributary"), compose
        assert others | {"producer", "consumer", "kafka-ui"} <= set(services), compose
        assert all(not services[s]["image"].startswith("tributary") for s in services if s != kafka), compose


def test_bitnami_compose_environment(log_dir, tmp_path):
    with hosts({"zookeeper": "127.0.3.1"}):
        zk = ZooKeeper(log_dir, port=2181, address="127.0.3.1").start()
        try:
            with container("compose-bitnami.yml", "kafka", tmp_path, log_dir / "kafka.log") as c:
                c.wait_serving()
                admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
                assert [(b["host"], b["port"]) for b in admin.describe_cluster()["brokers"]] == [("127.0.0.1", 9092)]
                admin.close()
                produce_and_consume("localhost:9092")
                assert (tmp_path / "bitnami" / "kafka" / "data" / "meta.properties").exists(), "bitnami's volume layout"
                assert "broker | " in c.log() and "coordinator | " in c.log(), "both log with their names"
                assert c.stop() == 0
            # The same volume again: the records are still there.
            with container("compose-bitnami.yml", "kafka", tmp_path, log_dir / "kafka-again.log") as c:
                c.wait_serving()
                out = example("consumer.py", BOOTSTRAP="localhost:9092", COUNT="5", GROUP="after-restart")
                assert out.count("received") == 5
                assert c.stop() == 0
        finally:
            zk.destroy()


def test_confluent_compose_environment(log_dir, tmp_path):
    # Both ZooKeeper names resolve to one server here; the broker is given both, as in the file.
    with hosts({"zookeeper-1": "127.0.5.1", "zookeeper-2": "127.0.5.1", "kafka-1": "127.0.6.1"}):
        zk = ZooKeeper(log_dir, port=2181, address="127.0.5.1").start()
        try:
            with container("compose-confluent.yml", "kafka-1", tmp_path, log_dir / "kafka-1.log") as c:
                c.wait_serving(29092)
                # The host listener tells host clients localhost:29092; the container listener
                # tells containers kafka-1:9092.
                assert brokers_seen("localhost:29092")[1] == {("localhost", 29092)}
                assert brokers_seen("kafka-1:9092")[1] == {("kafka-1", 9092)}
                for bootstrap, seen in (("localhost:29092", ("localhost", 29092)), ("kafka-1:9092", ("kafka-1", 9092))):
                    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
                    assert [(b["host"], b["port"]) for b in admin.describe_cluster()["brokers"]] == [seen]
                    admin.close()
                produce_and_consume("kafka-1:9092")
                assert (tmp_path / "var" / "lib" / "kafka" / "data" / "meta.properties").exists(), "confluent's layout"
                assert c.stop() == 0
        finally:
            zk.destroy()


def test_kraft_compose_environment_runs_alone(log_dir, tmp_path):
    with hosts({"kafka-server": "127.0.4.1"}):
        with container("compose-kraft.yml", "kafka-server", tmp_path, log_dir / "kafka-server.log") as c:
            c.wait_serving()
            md, seen = brokers_seen("localhost:9092")
            assert seen == {("localhost", 9092)} and md.cluster_id == "0000000000000000000000"
            assert brokers_seen("kafka-server:29092")[1] == {("kafka-server", 29092)}
            assert not port_open(19092, host="127.0.4.1"), "the controller listener is not served"
            assert "not serving this listener" in c.log()

            # What the topic creator's `cub kafka-ready` and `kafka-topics --create
            # --if-not-exists` ask: describe the cluster, list topics, create the topic; a
            # second create is TOPIC_ALREADY_EXISTS, which --if-not-exists accepts.
            admin = AdminClient({"bootstrap.servers": "kafka-server:29092"})
            assert len(admin.list_topics(timeout=30).brokers) >= 1
            admin.create_topics([NewTopic("sensors", num_partitions=1, replication_factor=1)])["sensors"].result(30)
            with pytest.raises(KafkaException) as again:
                admin.create_topics([NewTopic("sensors", num_partitions=1, replication_factor=1)])["sensors"].result(30)
            assert again.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
            assert "sensors" in admin.list_topics(timeout=30).topics

            produce_and_consume("kafka-server:29092")
            assert c.stop() == 0
        with container("compose-kraft.yml", "kafka-server", tmp_path, log_dir / "kafka-server-again.log") as c:
            c.wait_serving()
            assert brokers_seen("localhost:9092")[0].cluster_id == "0000000000000000000000"
            out = example("consumer.py", BOOTSTRAP="localhost:9092", COUNT="5", GROUP="after-restart")
            assert out.count("received") == 5, "the volume kept the records and the embedded ZooKeeper's state"
            # A process that dies takes the container with it, so a restart policy applies.
            broker = children_running(c.proc.pid, BIN / "broker")
            assert len(broker) == 1, broker
            os.kill(broker[0], signal.SIGKILL)
            assert c.proc.wait(60) != 0
            wait_until(lambda: not c.group_alive(), timeout=30, what="the rest of the container to stop")
            assert "the broker exited" in c.log()


def test_zookeeper_and_kraft_variables_together_are_refused(log_dir, tmp_path):
    c = Container("compose-kraft.yml", "kafka-server", tmp_path, log_dir / "refused.log",
                  extra={"KAFKA_ZOOKEEPER_CONNECT": "zookeeper:2181"}).start()
    try:
        assert c.proc.wait(30) == 2
        log = c.log()
        assert "KAFKA_ZOOKEEPER_CONNECT" in log and "KAFKA_PROCESS_ROLES" in log, log
    finally:
        c.kill()

