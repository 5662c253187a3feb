"""Restart benchmark: a broker holding many partitions and a few GiB restarts; how soon
after its listener opens does it answer ApiVersions and Metadata, and how many partitions
are still recovering at that moment (those answer NOT_LEADER_OR_FOLLOWER, which clients
retry)? Release build, one broker, one topic of `--partitions` partitions filled with
`--gib` GiB by kcat, then `--restarts` clean restarts (SIGTERM, start again).

    scripts/restart-bench.sh                       # 2000 partitions, 3 GiB, 3 restarts
    scripts/restart-bench.sh --partitions 500 --gib 1

"Listener opens" is the first moment a TCP connect succeeds: the broker binds its port at
start but listens only once it can answer, so a client connecting earlier is refused and
retries. Not part of the test suite; the figures go in the README.
"""
import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TRIBUTARY_BIN", str(Path(__file__).resolve().parent.parent / "target" / "release"))
os.environ["TRIBUTARY_TEST_LOG"] = "warn,state_change=info,tributary_broker=info"

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from harness import Cluster, RawConnection, ZooKeeper, frame, wait_until  # noqa: E402
from bench import record_file  # noqa: E402

GiB = 1024 ** 3
OPENED = "opened local replica"


def first_connect(port, deadline_s):
    """Connects as soon as the port listens (trying every millisecond); returns the socket
    and the moment the connect succeeded."""
    end = time.perf_counter() + deadline_s
    while time.perf_counter() < end:
        s = socket.socket()
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return s, time.perf_counter()
        s.close()
        time.sleep(0.001)
    raise TimeoutError(f"port {port} did not open within {deadline_s} s")


def round_trip(conn, data):
    conn.sock.sendall(data)
    return conn.recv_frame()


def measure_restart(cluster, hosted):
    broker = cluster.brokers[1]
    port = cluster.broker_ports[1]
    broker.terminate(timeout=120)
    log_before = len(broker.log())
    started = time.perf_counter()
    cluster.start_broker(1, wait=False)
    sock, listening = first_connect(port, 300)
    conn = RawConnection.__new__(RawConnection)
    conn.sock = sock
    conn.sock.settimeout(30)
    reply = round_trip(conn, frame(18, 0, 1, b""))
    api_versions = time.perf_counter()
    assert struct.unpack(">ih", reply[:6]) == (1, 0), reply[:6]
    reply = round_trip(conn, frame(3, 1, 2, struct.pack(">i", -1)))  # Metadata v1, all topics
    metadata = time.perf_counter()
    assert struct.unpack(">i", reply[:4])[0] == 2
    # While partitions recover: ApiVersions round trips every 10 ms on the same
    # connection, until every partition is open.
    broker = cluster.brokers[1]
    probes = []
    while broker.log()[log_before:].count(OPENED) < hosted and time.perf_counter() - listening < 600:
        t = time.perf_counter()
        round_trip(conn, frame(18, 0, 3, b""))
        probes.append((time.perf_counter() - t) * 1000)
        time.sleep(0.01)
    sock.close()
    probes.sort()

    def recovering_at_listen():
        m = re.search(r"partitions_opening=(\d+)[^\n]*accepting Kafka clients|accepting Kafka clients[^\n]*partitions_opening=(\d+)",
                      broker.log()[log_before:])
        return m and int(m.group(1) or m.group(2))

    wait_until(lambda: recovering_at_listen() is not None, timeout=30, what="the 'accepting Kafka clients' line")
    wait_until(lambda: broker.log()[log_before:].count(OPENED) >= hosted, timeout=600,
               what=f"all {hosted} partitions to open")
    all_open = time.perf_counter()
    return {
        "process_start_to_listen_s": round(listening - started, 2),
        "listen_to_api_versions_ms": round((api_versions - listening) * 1000, 1),
        "listen_to_metadata_ms": round((metadata - listening) * 1000, 1),
        "partitions_still_opening_at_listen": recovering_at_listen(),
        "listen_to_all_partitions_open_s": round(all_open - listening, 2),
        "api_versions_while_recovering_ms": probes and {
            "probes": len(probes), "p50": round(probes[len(probes) // 2], 1),
            "p99": round(probes[int(len(probes) * 0.99)], 1), "max": round(probes[-1], 1)},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=2000)
    ap.add_argument("--gib", type=float, default=3.0)
    ap.add_argument("--restarts", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tributary-restart-bench-"))
    zk = ZooKeeper(work / "logs").start()
    cluster = Cluster(zk, work / "logs")
    try:
        cluster.start_coordinator()
        cluster.start_broker(1)
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
        admin.create_topics([NewTopic("restart", num_partitions=args.partitions, replication_factor=1)])["restart"].result(120)
        wait_until(lambda: cluster.brokers[1].log().count(OPENED) >= args.partitions, timeout=600,
                   what=f"{args.partitions} partitions to open")
        size = 16 * 1024
        count = int(args.gib * GiB / size)
        path = record_file(size, count)
        started = time.perf_counter()
        subprocess.run(["kcat", "-P", "-b", cluster.bootstrap(), "-t", "restart", "-X", "linger.ms=20",
                        "-X", "batch.size=1000000", "-X", "acks=1", "-X", "queue.buffering.max.kbytes=1048576"],
                       stdin=open(path, "rb"), check=True)
        fill_s = time.perf_counter() - started
        data_dir = cluster.data_root / "broker-1"
        disk = sum(f.stat().st_size for f in data_dir.rglob("*") if f.is_file())
        hosted = cluster.brokers[1].log().count(OPENED)
        runs = [measure_restart(cluster, hosted) for _ in range(args.restarts)]
        print(json.dumps({
            "partitions": args.partitions, "hosted_partitions": hosted, "records": count, "record_bytes": size,
            "data_GiB_on_disk": round(disk / GiB, 2), "fill_MiB_per_s": round(count * size / fill_s / 2 ** 20, 1),
            "restarts": runs,
        }, indent=2))
    finally:
        cluster.stop()
        zk.stop()


if __name__ == "__main__":
    main()
