"""Test harness: real ZooKeeper servers, real broker and coordinator processes.

Everything listens on free loopback ports and lives in temporary directories; every
process is stopped by PID at teardown. Each test gets its own ZooKeeper chroot, so one
ZooKeeper server can serve the whole session without tests seeing each other.
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("TRIBUTARY_BIN", ROOT / "target" / "debug"))
LOGS = Path(__file__).resolve().parent / "logs"
ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"


def wait_until(condition, timeout=30.0, interval=0.05, what="condition"):
    """Polls `condition` until it returns a truthy value; fails the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as e:  # the condition may fail while things come up
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class ZooKeeper:
    """One ZooKeeper 3.8 server (Debian's package) on a free port, or one member of an ensemble."""

    def __init__(self, log_dir, port=None, data_dir=None, address="127.0.0.1", sasl_users=None, require_sasl=False):
        """sasl_users: {user: password} ZooKeeper accepts with SASL DIGEST-MD5 (the Server
        section of its JAAS file); require_sasl: refuse sessions without such a login."""
        self.address = address
        self.port = port or free_port()
        self.dir = Path(data_dir or tempfile.mkdtemp(prefix="tributary-zk-"))
        self.log_dir = Path(log_dir)
        self.proc = None
        self.extra_config = ""
        self.sasl_users = sasl_users or {}
        self.require_sasl = require_sasl

    def start(self, wait=True):
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        cfg = self.dir / "zoo.cfg"
        cfg.write_text(
            f"tickTime=500\ndataDir={self.dir / 'data'}\nclientPort={self.port}\nclientPortAddress={self.address}\n"
            "admin.enableServer=false\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n4lw.commands.whitelist=*\n"
            + self.extra_config
        )
        jvm_flags = []
        if self.sasl_users:
            jaas = self.dir / "zookeeper_jaas.conf"
            users = "".join(f' user_{u}="{p}"' for u, p in self.sasl_users.items())
            jaas.write_text(f"Server {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required{users};\n}};\n")
            jvm_flags.append(f"-Djava.security.auth.login.config={jaas}")
            with cfg.open("a") as f:
                f.write("authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n")
                if self.require_sasl:
                    f.write("enforce.auth.enabled=true\nenforce.auth.schemes=sasl\n")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"zookeeper-{self.port}.log", "ab")
        env = dict(os.environ, ZOO_LOG_DIR=str(self.dir), JVMFLAGS="-Xmx256m")
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", *jvm_flags, "-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(cfg)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )
        if wait:
            wait_until(self.ready, timeout=60, what=f"ZooKeeper on port {self.port}")
        return self

    def mode(self):
        """standalone, leader or follower (from the srvr four-letter word); None if not serving."""
        try:
            with socket.create_connection((self.address, self.port), timeout=1) as s:
                s.sendall(b"srvr")
                text = b""
                while chunk := s.recv(4096):
                    text += chunk
        except OSError:
            return None
        for line in text.decode(errors="replace").splitlines():
            if line.startswith("Mode: "):
                return line.split(": ", 1)[1].strip()
        return None

    def serving(self):
        return self.mode() in ("standalone", "leader", "follower")

    def ready(self):
        try:
            with socket.create_connection((self.address, self.port), timeout=1) as s:
                s.sendall(b"ruok")
                return s.recv(4) == b"imok"
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def connect(self):
        return f"{self.address}:{self.port}"


class Ensemble:
    """Three ZooKeeper servers forming one quorum, each on its own client port."""

    def __init__(self, log_dir, size=3):
        self.members = [ZooKeeper(log_dir) for _ in range(size)]
        self.peer_ports = [(free_port(), free_port()) for _ in range(size)]

    def start(self):
        servers = "".join(f"server.{i + 1}=127.0.0.1:{a}:{b}\n" for i, (a, b) in enumerate(self.peer_ports))
        for i, m in enumerate(self.members):
            (m.dir / "data").mkdir(parents=True, exist_ok=True)
            (m.dir / "data" / "myid").write_text(str(i + 1))
            m.extra_config = "initLimit=10\nsyncLimit=5\n" + servers
            m.start(wait=False)
        for m in self.members:
            wait_until(m.serving, timeout=90, what=f"ZooKeeper {m.port} to join the quorum")
        return self

    def leader(self):
        return next(m for m in self.members if m.mode() == "leader")

    def destroy(self):
        for m in self.members:
            m.destroy()

    @property
    def connect(self):
        return ",".join(m.connect for m in self.members)


class Process:
    """A broker or coordinator process, logging to its own file."""

    def __init__(self, name, argv, log_path):
        self.name, self.argv, self.log_path = name, argv, Path(log_path)
        self.proc = None

    def start(self, env=None):
        """Starts the process with this environment (default: the test's own), plus the
        test log level."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = dict(os.environ if env is None else env, RUST_LOG=os.environ.get("TRIBUTARY_TEST_LOG", "info"), NO_COLOR="1")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self):
        """kill -9: no shutdown code runs."""
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout=20):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def wait_exit(self, timeout=30):
        return self.proc.wait(timeout)

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Cluster:
    """Coordinators and brokers sharing one ZooKeeper chroot."""

    def __init__(self, zk, log_dir, chroot=None, session_timeout_ms=6000):
        self.zk = zk
        self.log_dir = Path(log_dir)
        self.chroot = chroot or f"/tributary-test-{uuid.uuid4().hex[:8]}"
        self.session_timeout_ms = session_timeout_ms
        self.brokers = {}
        self.broker_ports = {}
        self.coordinators = []
        self.data_root = Path(tempfile.mkdtemp(prefix="tributary-data-"))

    @property
    def zookeeper_connect(self):
        return self.zk.connect + self.chroot

    def bootstrap(self, ids=None):
        return ",".join(f"127.0.0.1:{self.broker_ports[i]}" for i in (ids or sorted(self.broker_ports)))

    def broker_argv(self, broker_id, *extra):
        port = self.broker_ports.setdefault(broker_id, free_port())
        return [
            str(BIN / "broker"), "--broker-id", str(broker_id),
            # A test naming its own listeners keeps broker_ports[id] on one of them.
            *([] if "--listeners" in extra else ["--listeners", f"PLAINTEXT://127.0.0.1:{port}"]),
            "--zookeeper-connect", self.zookeeper_connect,
            "--zookeeper-session-timeout-ms", str(self.session_timeout_ms),
            "--data-dir", str(self.data_root / f"broker-{broker_id}"),
            "--shutdown-grace-ms", "2000",
            # Kafka's default (3) needs three live brokers before any group works.
            *([] if "--offsets-topic-replication-factor" in extra else ["--offsets-topic-replication-factor", "1"]),
            *([] if "--transaction-state-log-replication-factor" in extra
              else ["--transaction-state-log-replication-factor", "1", "--transaction-state-log-min-isr", "1"]),
            *extra,
        ]

    def start_broker(self, broker_id, *extra, wait=True, env=None):
        p = Process(f"broker-{broker_id}", self.broker_argv(broker_id, *extra), self.log_dir / f"broker-{broker_id}.log").start(env)
        self.brokers[broker_id] = p
        if wait:
            self.wait_broker_ready(broker_id)
        return p

    def wait_broker_ready(self, broker_id):
        port = self.broker_ports[broker_id]
        p = self.brokers[broker_id]
        def serving():
            if not p.alive():
                _raise(f"broker {broker_id} exited:\n{p.log()[-3000:]}")
            return port_open(port) and api_versions_v0_ok(port)
        wait_until(serving, timeout=60, what=f"broker {broker_id} to serve on {port}")

    def wait_brokers_know_each_other(self, ids=None):
        """Until every broker in `ids` lists all of them in Metadata: a broker serves as soon as
        it is registered, before its metadata cache has seen the brokers started after it, and
        a request that counts live brokers (CreateTopics' replication factor) asks that cache."""
        from confluent_kafka.admin import AdminClient

        ids = sorted(ids or self.brokers)
        for b in ids:
            admin = AdminClient({"bootstrap.servers": self.bootstrap([b])})
            wait_until(lambda: {*ids} <= set(admin.list_topics(timeout=5).brokers), what=f"broker {b} seeing brokers {ids}")

    def start_coordinator(self, *extra, wait_active=True, env=None):
        port = free_port()
        cid = 3000 + len(self.coordinators)
        argv = [str(BIN / "coordinator"), "--zookeeper-connect", self.zookeeper_connect, "--http-listen", f"127.0.0.1:{port}",
                "--controller-id", str(cid), "--zookeeper-session-timeout-ms", str(self.session_timeout_ms), *extra]
        p = Process(f"coordinator-{cid}", argv, self.log_dir / f"coordinator-{cid}.log").start(env)
        p.http = f"http://127.0.0.1:{port}"
        p.controller_id = cid
        self.coordinators.append(p)
        wait_until(lambda: http_get(p.http + "/health")[0] in (200, 503), timeout=30, what=f"coordinator {cid} HTTP")
        if wait_active:
            wait_until(lambda: http_get(p.http + "/health")[1].get("active_controller_id") is not None, timeout=30,
                       what="an active controller")
        return p

    @property
    def http(self):
        live = [c for c in self.coordinators if c.alive()]
        return live[0].http

    def wait_topic_led(self, topic, partitions=None, timeout=30):
        def led():
            status, body = http_get(f"{self.http}/topics/{topic}")
            if status != 200:
                return False
            parts = body["partitions"]
            return (partitions is None or len(parts) == partitions) and all(p["leader"] is not None for p in parts)
        wait_until(led, timeout=timeout, what=f"leaders for every partition of {topic}")

    def stop(self):
        for p in list(self.brokers.values()) + self.coordinators:
            p.kill()
        shutil.rmtree(self.data_root, ignore_errors=True)


def create_topic(cluster, topic, partitions=1, replication_factor=1, config=None):
    """Creates a topic with the real AdminClient and waits until every partition has a leader."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    new = NewTopic(topic, partitions, replication_factor, config=config or {})
    admin.create_topics([new], operation_timeout=15)[topic].result()
    cluster.wait_topic_led(topic, partitions=partitions)


class ContinuousProducer:
    """A confluent-kafka producer writing numbered records to `topic` from a thread until
    stopped (the `with` block's end); `acked` maps (partition, offset) to the value of every
    record the broker acknowledged. No retries, so a record is acknowledged once or never."""

    def __init__(self, bootstrap, topic, acks="all", **config):
        from confluent_kafka import Producer

        self.topic = topic
        self.acked = {}
        self.failed = 0
        self._stop = threading.Event()
        self._producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 2,
                                   "message.timeout.ms": 4000, "retries": 0, **config})
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, err, msg):
        if err is None:
            self.acked[(msg.partition(), msg.offset())] = msg.value()
        else:
            self.failed += 1

    def _run(self):
        i = 0
        while not self._stop.is_set():
            try:
                self._producer.produce(self.topic, key=str(i).encode(), value=f"record-{i}".encode(),
                                       on_delivery=self._on_delivery)
                i += 1
            except BufferError:
                pass
            self._producer.poll(0.001)
        self._producer.flush(10)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive(), "the producer thread did not stop"


def consume_all(bootstrap, topic, partitions, expected_keys, timeout=60, read_on_s=0):
    """Reads until every (partition, offset) in `expected_keys` has been seen, or the timeout;
    then, with `read_on_s`, goes on until nothing new arrived for that long (so records past
    the expected ones, such as duplicates, are seen too). Returns {(partition, offset): value}.

    Stopping at a record count would be wrong after a kill: records the broker stored but
    whose acknowledgement never reached the producer count too, and would end the read
    before the last acknowledged ones of another partition.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = {}
    missing = set(expected_keys)
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        got[(msg.partition(), msg.offset())] = msg.value()
        missing.discard((msg.partition(), msg.offset()))
    idle = time.monotonic() + read_on_s
    while time.monotonic() < idle:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got[(msg.partition(), msg.offset())] = msg.value()
            idle = time.monotonic() + read_on_s
    consumer.close()
    return got


def _raise(message):
    raise AssertionError(message)


def http_get(url):
    return http_request("GET", url)


def http_request(method, url, body=None):
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


# --- A raw Kafka client for the bad-input cases real clients never produce. ----------------

def frame(api_key, version, correlation_id, body, client_id=b"raw-test", flexible=False):
    header = struct.pack(">hhi", api_key, version, correlation_id)
    header += struct.pack(">h", len(client_id)) + client_id
    if flexible:
        header += b"\x00"  # empty tagged fields
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


class RawConnection:
    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self):
        size = struct.unpack(">i", self._read(4))[0]
        return self._read(size)

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed by the broker")
            out += chunk
        return out

    def closed_by_peer(self, timeout=5):
        """True when the broker closed the connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.sock.close()


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def api_versions_v0_ok(port):
    """One ApiVersions v0 round trip on a fresh connection: proof the broker still serves."""
    c = RawConnection(port)
    try:
        c.send(frame(18, 0, 99, b""))
        reply = c.recv_frame()
        correlation_id, error_code = struct.unpack(">ih", reply[:6])
        return correlation_id == 99 and error_code == 0
    finally:
        c.close()


def produce_v3(topic, partition, records, acks=1, transactional_id=None):
    """A Produce v3 body carrying `records` (raw batch bytes) for one partition."""
    body = kstr(transactional_id) if transactional_id is not None else struct.pack(">h", -1)
    body += struct.pack(">hi", acks, 10000)
    body += struct.pack(">i", 1) + kstr(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", partition)
    body += struct.pack(">i", len(records)) + records
    return body


def parse_produce_v3_error(reply):
    """(partition error code, base offset) from a Produce v3 response frame."""
    pos = 4  # correlation id
    (n_topics,) = struct.unpack_from(">i", reply, pos); pos += 4
    (name_len,) = struct.unpack_from(">h", reply, pos); pos += 2 + name_len
    (n_parts,) = struct.unpack_from(">i", reply, pos); pos += 4
    partition, error_code, base_offset = struct.unpack_from(">ihq", reply, pos)
    return error_code, base_offset


def record_batch(values, base_offset=0, producer=None):
    """A valid, uncompressed magic-2 batch built with kafka-python's own builder; with
    `producer` = (id, epoch, first sequence), a transactional batch of that producer."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    pid, epoch, seq = producer or (-1, -1, -1)
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=producer is not None, producer_id=pid,
                                  producer_epoch=epoch, base_sequence=seq, batch_size=1 << 20)
    for i, v in enumerate(values):
        b.append(i, timestamp=int(time.time() * 1000), key=None, value=v, headers=[])
    return bytes(b.build())
