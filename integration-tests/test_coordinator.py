"""The coordinator: controller election and failover, epoch fencing, the HTTP admin API."""
import json
import time

from confluent_kafka import Producer

from harness import http_get, http_request, wait_until


def active_coordinator(cluster):
    for c in cluster.coordinators:
        if c.alive() and http_get(c.http + "/health")[1]["this_coordinator"]["active_controller"]:
            return c
    return None


def test_a_standby_coordinator_takes_over_and_the_epoch_increments(cluster, zk_client):
    standby = cluster.start_coordinator()
    first = active_coordinator(cluster)
    assert first is not None and first is not standby
    epoch_before = int(zk_client.get(f"{cluster.chroot}/controller_epoch")[0])
    assert http_get(standby.http + "/health")[1]["this_coordinator"]["active_controller"] is False

    first.kill()
    started = time.monotonic()
    wait_until(lambda: active_coordinator(cluster) is standby, timeout=30, what="the standby to become active")
    takeover_s = time.monotonic() - started
    epoch_after = int(zk_client.get(f"{cluster.chroot}/controller_epoch")[0])
    assert epoch_after == epoch_before + 1
    assert json.loads(zk_client.get(f"{cluster.chroot}/controller")[0])["brokerid"] == standby.controller_id
    print(f"standby took over {takeover_s:.1f}s after kill -9 of the active coordinator (session timeout 6 s)")

    # The new controller does the controller's work: new topics get leaders.
    status, _ = http_request("POST", standby.http + "/topics", {"name": "after-failover", "partitions": 2})
    assert status == 201
    cluster.wait_topic_led("after-failover", partitions=2)
    state = json.loads(zk_client.get(f"{cluster.chroot}/brokers/topics/after-failover/partitions/0/state")[0])
    assert state["controller_epoch"] == epoch_after


def test_a_stale_controllers_writes_are_rejected(cluster, zk_client):
    coordinator = cluster.coordinators[0]
    root = cluster.chroot
    epoch, stat = zk_client.get(f"{root}/controller_epoch")
    # Another controller wins behind this one's back: /controller_epoch moves on.
    zk_client.set(f"{root}/controller_epoch", str(int(epoch) + 5).encode(), version=stat.version)
    # Its next write (states for a new topic) fails the epoch check; it resigns, re-elects
    # itself past the new epoch, and only then writes.
    assert http_request("POST", coordinator.http + "/topics", {"name": "fenced", "partitions": 1})[0] == 201
    cluster.wait_topic_led("fenced")
    assert "fenced: /controller_epoch moved past the epoch" in coordinator.log()
    state = json.loads(zk_client.get(f"{root}/brokers/topics/fenced/partitions/0/state")[0])
    new_epoch = int(zk_client.get(f"{root}/controller_epoch")[0])
    assert new_epoch > int(epoch) + 5
    assert state["controller_epoch"] == new_epoch, "no state was written under the stale epoch"


def test_a_dead_brokers_partitions_go_offline_and_return_with_it(cluster, zk_client):
    assert http_request("POST", cluster.http + "/topics", {"name": "rf1", "partitions": 1})[0] == 201
    cluster.wait_topic_led("rf1")
    path = f"{cluster.chroot}/brokers/topics/rf1/partitions/0/state"
    cluster.brokers[1].kill()
    wait_until(lambda: json.loads(zk_client.get(path)[0])["leader"] == -1, timeout=30, what="the partition to go offline")
    offline = json.loads(zk_client.get(path)[0])
    assert offline["isr"] == [1], "the last ISR member is kept"
    assert offline["leader_epoch"] == 1
    status, topic = http_get(cluster.http + "/topics/rf1")
    assert topic["partitions"][0]["leader"] is None and topic["partitions"][0]["offline_replicas"] == [1]
    cluster.start_broker(1)
    wait_until(lambda: json.loads(zk_client.get(path)[0])["leader"] == 1, timeout=30, what="leadership to return")
    assert json.loads(zk_client.get(path)[0])["leader_epoch"] == 2
    producer = Producer({"bootstrap.servers": cluster.bootstrap()})
    producer.produce("rf1", value=b"back")
    assert producer.flush(20) == 0


def test_http_admin_api(cluster):
    http = cluster.http
    status, health = http_get(http + "/health")
    assert status == 200 and health["status"] == "ok" and health["controller_epoch"] >= 1
    status, brokers = http_get(http + "/brokers")
    assert status == 200 and [b["id"] for b in brokers] == [1]
    assert brokers[0]["endpoints"] == [f"PLAINTEXT://127.0.0.1:{cluster.broker_ports[1]}"]

    status, created = http_request("POST", http + "/topics", {"name": "via-http", "partitions": 3, "replication_factor": 1,
                                                               "config": {"retention.ms": "60000"}})
    assert status == 201 and created["replicas"] == {"0": [1], "1": [1], "2": [1]}
    cluster.wait_topic_led("via-http", partitions=3)
    status, topic = http_get(http + "/topics/via-http")
    assert status == 200
    assert topic["config"] == {"retention.ms": "60000"}
    assert [(p["partition"], p["leader"], p["isr"], p["replicas"]) for p in topic["partitions"]] == [(0, 1, [1], [1]), (1, 1, [1], [1]), (2, 1, [1], [1])]
    status, topics = http_get(http + "/topics")
    summary = next(t for t in topics if t["name"] == "via-http")
    assert (summary["partitions"], summary["replication_factor"], summary["marked_for_deletion"]) == (3, 1, False)

    # Bad input: 4xx with a JSON reason. The rules are the ones CreateTopics applies.
    assert http_request("POST", http + "/topics", {"name": "metric_name"})[0] == 201
    for body, code, needle in [
        ({"name": "via-http"}, 409, "already exists"),
        ({"name": "metric.name"}, 409, "collides with existing topic \"metric_name\""),
        ({"name": "cfg", "config": {"retention.ms": "soon"}}, 400, "retention.ms"),
        ({"name": "bad/name"}, 400, "only ASCII"),
        ({"name": "wide", "replication_factor": 3}, 400, "larger than the 1 live broker"),
        ({"name": "zero", "partitions": 0}, 400, "at least 1"),
        (b"{not json", 400, "must be JSON"),
    ]:
        status, err = http_request("POST", http + "/topics", body)
        assert status == code and needle in err["error"], (body, status, err)
    assert http_get(http + "/topics/nope")[0] == 404
    assert http_request("DELETE", http + "/topics/nope")[0] == 404
    assert http_get(http + "/no/such/path")[0] == 404

    status, _ = http_request("DELETE", http + "/topics/via-http")
    assert status == 202
    wait_until(lambda: http_get(http + "/topics/via-http")[0] == 404, timeout=30, what="the topic to be deleted")
