"""Scale benchmark: how one broker's costs grow with the partitions it holds.

    scripts/scale-bench.sh                         # steps of 100, 1,000 and 10,000 partitions
    scripts/scale-bench.sh --steps 100,1000 --records 100000

Release build, one broker, the coordinator and ZooKeeper on loopback. Two phases:

* load: for each step N (and 6, the harness's figure), kbench creates a topic of N
  partitions, produces `--records` records of 1 KiB (default 1,000,000, as the harness) over all of them (acks=1, linger 5 ms,
  1 MB batches) and consumes them back from offset 0, then deletes the topic;
* idle: topics of 10 partitions are added up to each step; at each, the broker's RSS
  (memory per idle partition), how long Metadata for all topics takes (raw Metadata v1
  on one connection, median and max of 20), and a clean restart: from start to the
  listener answering Metadata and to every partition open.

Phases on request (`--phases`, default `load,idle`), each on the cluster as the phases
before left it:

* connections: the broker's RSS growth with `--connections` (500) more idle clients,
  each past its ApiVersions request;
* group: `--group-members` (10) confluent-kafka consumers in their own processes join
  one group subscribed to a topic of `--group-partitions` (10,000) partitions; the time
  from their start until every partition is assigned and nothing changed for 5 s;
* big: `--big-gib` (10) GiB of 1 KiB records produced into 6 partitions, then a clean
  restart timed as above (run it first, on the fresh cluster: `--phases big`);
* cluster: two more brokers join and topics of 10 single-replica partitions are added up
  to each of `--cluster-steps` (10,000, 30,000, 100,000 partitions over the three
  brokers, the controller spreading them); at each, the time to create them, each
  broker's and the coordinator's RSS, ZooKeeper's znode count, Metadata for all topics
  from one broker, the admin API's `GET /topics/<one>` and `GET /partitions`, and at the last step a clean
  restart of broker 2 and a controller fail-over to a standby coordinator, then a record
  produced to and read from one partition on each broker (run it alone, on the fresh
  cluster: `--phases cluster`).

kbench is the shared harness's load generator (`../shared/bench/build.sh`; KBENCH=path
overrides). Not part of the test suite; the figures go in the README.
"""
import argparse
import json
import os
import socket
import statistics
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

from harness import Cluster, RawConnection, ZooKeeper, frame, http_get, wait_until  # noqa: E402

OPENED = "opened local replica"


def kbench():
    for p in (os.environ.get("KBENCH"), os.path.expanduser("~/.cache/kbench/kbench")):
        if p and os.path.exists(p):
            return p
    sys.exit("kbench not found: run ../shared/bench/build.sh (or set KBENCH=/path/to/kbench)")


def run_kbench(*args, timeout=300):
    out = subprocess.run([kbench(), *args], capture_output=True, text=True, timeout=timeout, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def metadata_all_ms(port, rounds=20):
    conn = RawConnection(port, timeout=60)
    times = []
    for i in range(rounds):
        t = time.perf_counter()
        conn.send(frame(3, 1, i, struct.pack(">i", -1)))  # Metadata v1, all topics
        reply = conn.recv_frame()
        times.append((time.perf_counter() - t) * 1000)
        assert struct.unpack(">i", reply[:4])[0] == i
    conn.close()
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


def load(cluster, partitions, records):
    boot = cluster.bootstrap()
    topic = f"wide-{partitions}"
    opened = cluster.brokers[1].log().count(OPENED)
    run_kbench("create", "-b", boot, "-t", topic, "-p", str(partitions), "-r", "1")
    wait_until(lambda: cluster.brokers[1].log().count(OPENED) - opened >= partitions, timeout=600, what=f"{topic} open")
    pid = cluster.brokers[1].proc.pid

    def cpu():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    c0 = cpu()
    produced = run_kbench("produce", "-b", boot, "-t", topic, "-s", "1024", "-n", str(records), "-d", "60", "--acks", "1")
    c1 = cpu()
    consumed = run_kbench("consume", "-b", boot, "-t", topic, "-n", str(records), "-d", "60",
                          "-X", "fetch.queue.backoff.ms=10")
    c2 = cpu()
    run_kbench("delete", "-b", boot, "-t", topic)
    mib = records * 1024 / 2 ** 20
    return {
        "partitions": partitions,
        "produce_rec_per_s": produced["rec_per_s"], "produce_ok": produced["ok"],
        "produce_broker_cpu_ms_per_mib": round((c1 - c0) * 1000 / mib, 2),
        "consume_rec_per_s": consumed["rec_per_s"], "consume_ok": consumed["ok"],
        "consume_broker_cpu_ms_per_mib": round((c2 - c1) * 1000 / mib, 2),
    }


def connection_memory(cluster, n):
    pid, port = cluster.brokers[1].proc.pid, cluster.broker_ports[1]
    time.sleep(1)
    before = rss_mib(pid)
    conns = []
    for i in range(n):
        c = RawConnection(port, timeout=30)
        c.send(frame(18, 0, i, b""))  # ApiVersions v0
        c.recv_frame()
        conns.append(c)
    time.sleep(2)
    after = rss_mib(pid)
    for c in conns:
        c.close()
    return {"connections": n, "rss_before_mib": round(before, 1), "rss_after_mib": round(after, 1),
            "rss_kib_per_connection": round((after - before) * 1024 / n, 1)}


def _member(bootstrap, topic, events, stop):
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "scale-group", "enable.auto.commit": False})
    consumer.subscribe([topic], on_assign=lambda c, ps: events.put(("assign", os.getpid(), len(ps), time.time())),
                       on_revoke=lambda c, ps: events.put(("revoke", os.getpid(), len(ps), time.time())))
    while not stop.is_set():
        consumer.poll(0.1)
    consumer.close()


def group_stability(cluster, members, partitions, quiet_s=5.0, timeout_s=180):
    import multiprocessing
    import queue

    boot, topic = cluster.bootstrap(), f"group-{partitions}"
    opened = cluster.brokers[1].log().count(OPENED)
    run_kbench("create", "-b", boot, "-t", topic, "-p", str(partitions), "-r", "1")
    wait_until(lambda: cluster.brokers[1].log().count(OPENED) - opened >= partitions, timeout=600, what=f"{topic} open")
    events, stop = multiprocessing.Queue(), multiprocessing.Event()
    started = time.time()
    procs = [multiprocessing.Process(target=_member, args=(boot, topic, events, stop)) for _ in range(members)]
    for p in procs:
        p.start()
    held, assigns, last_change = {}, 0, started
    try:
        while time.time() - started < timeout_s:
            complete = len(held) == members and all(held.values()) and sum(held.values()) == partitions
            if complete and time.time() - last_change >= quiet_s:
                break
            try:
                kind, pid, n, at = events.get(timeout=0.2)
            except queue.Empty:
                continue
            held[pid] = n if kind == "assign" else 0
            assigns += kind == "assign"
            last_change = at
        else:
            raise TimeoutError(f"the group did not settle within {timeout_s} s: {held}")
    finally:
        stop.set()
        for p in procs:
            p.join(30)
    return {"members": members, "partitions": partitions, "stable_after_s": round(last_change - started, 2),
            "assignments_received": assigns, "per_member": sorted(held.values())}


def big_restart(cluster, gib):
    boot, topic = cluster.bootstrap(), "big"
    run_kbench("create", "-b", boot, "-t", topic, "-p", "6", "-r", "1")
    records = gib * 2 ** 20  # 1 KiB each
    produced = run_kbench("produce", "-b", boot, "-t", topic, "-s", "1024", "-n", str(records), "-d", "1800",
                          "--acks", "1", timeout=2400)
    # The first phase on a fresh cluster: these 6 are all the broker holds.
    return {"gib": gib, "produce_ok": produced["ok"], "produce_mib_per_s": produced["mib_per_s"],
            "restart": restart(cluster, 6)}


def restart(cluster, hosted):
    broker = cluster.brokers[1]
    broker.terminate(timeout=300)
    before = len(broker.log())
    started = time.perf_counter()
    cluster.start_broker(1, wait=False)
    port = cluster.broker_ports[1]
    while True:
        s = socket.socket()
        if s.connect_ex(("127.0.0.1", port)) == 0:
            s.close()
            break
        s.close()
        if time.perf_counter() - started > 300:
            raise TimeoutError("the broker did not listen within 300 s")
        time.sleep(0.005)
    metadata = metadata_all_ms(port, rounds=1)
    answered = time.perf_counter()
    broker = cluster.brokers[1]
    wait_until(lambda: broker.log()[before:].count(OPENED) >= hosted, timeout=600, interval=0.02,
               what=f"{hosted} partitions open after the restart")
    return {"start_to_metadata_answered_s": round(answered - started, 2),
            "start_to_all_open_s": round(time.perf_counter() - started, 2),
            "first_metadata_ms": metadata["median_ms"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="100,1000,10000")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--skip-load", action="store_true", help="leave out the load phase")
    ap.add_argument("--phases", default="load,idle", help="any of load,idle,connections,group,big; or cluster alone")
    ap.add_argument("--connections", type=int, default=500)
    ap.add_argument("--group-members", type=int, default=10)
    ap.add_argument("--group-partitions", type=int, default=10_000)
    ap.add_argument("--big-gib", type=int, default=10)
    ap.add_argument("--cluster-steps", default="10000,30000,100000")
    args = ap.parse_args()
    phases = set(args.phases.split(",")) - ({"load"} if args.skip_load else set())
    if "cluster" in phases and len(phases) > 1:
        ap.error("run --phases cluster alone: it leaves three brokers and its topics behind, "
                 "which the single-broker phases would then count")
    steps = [int(s) for s in args.steps.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tributary-scale-bench-"))
    zk = ZooKeeper(work / "logs").start()
    cluster = Cluster(zk, work / "logs")
    report = {"records": args.records, "load": [], "idle": []}
    try:
        cluster.start_coordinator()
        cluster.start_broker(1)
        if "cluster" in phases:
            report["cluster"] = three_brokers(cluster, zk, [int(s) for s in args.cluster_steps.split(",")])
        if "big" in phases:
            report["big"] = big_restart(cluster, args.big_gib)
            print(json.dumps(report["big"]), flush=True)
        if "load" in phases:
            for n in [6, *steps]:
                report["load"].append(load(cluster, n, args.records))
                print(json.dumps(report["load"][-1]), flush=True)
        if "idle" in phases:
            idle(cluster, steps, report)
        if "connections" in phases:
            report["connections"] = connection_memory(cluster, args.connections)
            print(json.dumps(report["connections"]), flush=True)
        if "group" in phases:
            report["group"] = group_stability(cluster, args.group_members, args.group_partitions)
            print(json.dumps(report["group"]), flush=True)
        print(json.dumps(report, indent=2))
    finally:
        cluster.stop()
        zk.destroy()
        # The processes' logs stay (the data went with the cluster and ZooKeeper).
        print(f"logs: {work / 'logs'}", file=sys.stderr)


def idle(cluster, steps, report):
    """Topics of 10 partitions added up to each step: RSS, Metadata, restart."""
    # A fresh broker process for the idle phase, so the load phase's allocations do not
    # count: the base is its RSS with no topic of ours.
    restart(cluster, 0)
    time.sleep(2)
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    base_rss = rss_mib(cluster.brokers[1].proc.pid)
    report["base_rss_mib"] = round(base_rss, 1)
    have = 0
    for n in steps:
        create_idle_topics(admin, have, n, timeout=300)
        have = n
        hosted = n
        wait_until(lambda: cluster.brokers[1].log().count(OPENED) >= hosted, timeout=900,
                   what=f"{hosted} idle partitions open")
        time.sleep(2)  # let allocations settle before reading RSS
        rss = rss_mib(cluster.brokers[1].proc.pid)
        step = {"partitions": n, "broker_rss_mib": round(rss, 1),
                "rss_kib_per_idle_partition": round((rss - base_rss) * 1024 / n, 1),
                "metadata_all_topics": metadata_all_ms(cluster.broker_ports[1])}
        step["restart"] = restart(cluster, hosted)
        report["idle"].append(step)
        print(json.dumps(step), flush=True)


def create_idle_topics(admin, have, want, timeout):
    """Topics `idle-NNNNN` of 10 single-replica partitions, from `have` partitions up to
    `want`, 100 topics per CreateTopics request."""
    names = [f"idle-{i:05d}" for i in range(have // 10, want // 10)]
    for i in range(0, len(names), 100):
        futures = admin.create_topics([NewTopic(t, num_partitions=10, replication_factor=1)
                                       for t in names[i:i + 100]], operation_timeout=timeout / 2)
        for f in futures.values():
            f.result(timeout)


class LogCounter:
    """Counts a line in a process's log as it grows, reading only what is new (the logs
    of brokers holding tens of thousands of partitions run to megabytes)."""

    def __init__(self, process, needle=OPENED):
        self.process, self.needle, self.offset, self.count, self.tail = process, needle.encode(), 0, 0, b""

    def __call__(self):
        with open(self.process.log_path, "rb") as f:
            f.seek(self.offset)
            data = self.tail + f.read()
            self.offset = f.tell()
        lines = data.split(b"\n")
        self.tail = lines.pop()
        self.count += sum(self.needle in line for line in lines)
        return self.count


def zk_znodes(zk):
    """ZooKeeper's znode count (the mntr four-letter word)."""
    with socket.create_connection((zk.address, zk.port), timeout=5) as s:
        s.sendall(b"mntr")
        text = b""
        while chunk := s.recv(65536):
            text += chunk
    for line in text.decode().splitlines():
        if line.startswith("zk_znode_count"):
            return int(line.split()[1])
    return None


def http_ms(url, rounds=3):
    import urllib.request

    times, size = [], 0
    for _ in range(rounds):
        t = time.perf_counter()
        with urllib.request.urlopen(url, timeout=120) as r:
            size = len(r.read())
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1), "bytes": size}


def three_brokers(cluster, zk, steps):
    """Three brokers, single-replica topics of 10 partitions up to each step (see the docstring)."""
    for b in (2, 3):
        cluster.start_broker(b)
    cluster.wait_brokers_know_each_other()
    time.sleep(2)
    counters = {b: LogCounter(p) for b, p in cluster.brokers.items()}
    pids = lambda: {f"broker-{b}": p.proc.pid for b, p in cluster.brokers.items()} | {
        "coordinator": cluster.coordinators[0].proc.pid, "zookeeper": zk.proc.pid}
    base = {name: rss_mib(pid) for name, pid in pids().items()}
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    report = {"base_rss_mib": {k: round(v, 1) for k, v in base.items()}, "steps": []}
    print(json.dumps(report), flush=True)
    have = 0
    for n in steps:
        started = time.perf_counter()
        create_idle_topics(admin, have, n, timeout=600)
        created = time.perf_counter() - started
        have = n
        wait_until(lambda: sum(c() for c in counters.values()) >= n, timeout=1800, interval=0.5,
                   what=f"{n} idle partitions open over three brokers")
        opened = time.perf_counter() - started
        time.sleep(3)  # let allocations settle before reading RSS
        rss = {name: rss_mib(pid) for name, pid in pids().items()}
        hosted = {b: c() for b, c in counters.items()}
        step = {"partitions": n, "create_s": round(created, 1), "all_open_s": round(opened, 1),
                "hosted": hosted, "rss_mib": {k: round(v, 1) for k, v in rss.items()},
                "broker_rss_kib_per_idle_partition": {
                    b: round((rss[f"broker-{b}"] - base[f"broker-{b}"]) * 1024 / hosted[b], 1) for b in hosted},
                "znodes": zk_znodes(zk),
                "metadata_all_topics": metadata_all_ms(cluster.broker_ports[1], rounds=5),
                "admin_describe_one_topic": http_ms(cluster.http + "/topics/idle-00000"),
                "admin_get_partitions": http_ms(cluster.http + "/partitions")}
        report["steps"].append(step)
        print(json.dumps(step), flush=True)
    report["restart_broker_2"] = restart_counted(cluster, 2, counters[2].count)
    print(json.dumps(report["restart_broker_2"]), flush=True)
    report["controller_failover"] = failover(cluster)
    print(json.dumps(report["controller_failover"]), flush=True)
    report["round_trip"] = round_trip(cluster)
    print(json.dumps(report["round_trip"]), flush=True)
    return report


def restart_counted(cluster, broker_id, hosted):
    """A clean restart of one broker of several (RF 1, so its partitions go offline): the
    controller marking them offline, the broker listening and opening them all again, and
    the controller giving them back their leader."""
    controller = cluster.coordinators[0]
    offline = LogCounter(controller, "partition offline")
    offline.offset = controller.log_path.stat().st_size
    online = LogCounter(controller, "leader and ISR changed topic=")
    cluster.brokers[broker_id].terminate(timeout=300)
    stopped = time.perf_counter()
    wait_until(lambda: offline() >= hosted, timeout=900, interval=0.1,
               what=f"the controller marking broker {broker_id}'s {hosted} partitions offline")
    marked = time.perf_counter() - stopped
    online.offset = controller.log_path.stat().st_size
    started = time.perf_counter()
    p = cluster.start_broker(broker_id, wait=False)
    counter = LogCounter(p)
    counter.offset = p.log_path.stat().st_size
    port = cluster.broker_ports[broker_id]
    wait_until(lambda: port_listening(port), timeout=300, interval=0.01, what=f"broker {broker_id} listening")
    listening = time.perf_counter() - started
    wait_until(lambda: counter() >= hosted, timeout=900, interval=0.1, what=f"{hosted} partitions open on broker {broker_id}")
    opened = time.perf_counter() - started
    wait_until(lambda: online() >= hosted, timeout=900, interval=0.1,
               what=f"the controller electing broker {broker_id} leader of its {hosted} partitions again")
    return {"broker": broker_id, "hosted": hosted, "stop_to_all_marked_offline_s": round(marked, 2),
            "start_to_listening_s": round(listening, 2), "start_to_all_open_s": round(opened, 2),
            "start_to_all_led_again_s": round(time.perf_counter() - started, 2)}


def port_listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def failover(cluster):
    """A standby coordinator takes over when the active one stops: the time from the
    stop until the standby reports itself active and has read the cluster."""

    active = cluster.coordinators[0]
    standby = cluster.start_coordinator(wait_active=False)
    active.terminate(timeout=60)
    started = time.perf_counter()
    wait_until(lambda: http_get(standby.http + "/health")[1].get("active_controller_id") == standby.controller_id,
               timeout=300, interval=0.02, what="the standby coordinator active")
    elected = time.perf_counter() - started
    wait_until(lambda: http_get(standby.http + "/partitions")[0] == 200, timeout=300, interval=0.1,
               what="the new controller answering GET /partitions")
    return {"stop_to_active_s": round(elected, 2), "stop_to_partitions_answered_s": round(time.perf_counter() - started, 2)}


def round_trip(cluster):
    """One record produced to and read back from a partition led by each broker."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    status, body = http_get(cluster.http + "/topics/idle-00000")
    assert status == 200, body
    leaders = {}
    for t in range(0, 30):
        status, body = http_get(cluster.http + f"/topics/idle-{t:05d}")
        for part in body["partitions"]:
            leaders.setdefault(part["leader"], (f"idle-{t:05d}", part["partition"]))
        if len(leaders) >= 3:
            break
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all"})
    started = time.perf_counter()
    for broker, (topic, partition) in leaders.items():
        producer.produce(topic, value=f"hello {broker}".encode(), partition=partition)
    assert producer.flush(60) == 0
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": "scale-round-trip",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(t, p, 0) for t, p in leaders.values()])
    got = set()
    deadline = time.time() + 60
    while len(got) < len(leaders) and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got.add(m.value().decode())
    consumer.close()
    assert got == {f"hello {b}" for b in leaders}, (got, leaders)
    return {"leaders": sorted(leaders), "records_read_back": len(got),
            "produce_to_read_s": round(time.perf_counter() - started, 2)}


if __name__ == "__main__":
    main()
