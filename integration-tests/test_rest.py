"""The REST Proxy-compatible API on the coordinator (`--rest-listen`, and under /rest on the
admin port): v2 produce and consumer instances and v3 produce as Confluent's REST Proxy
answers them, checked against kafka-python on the other side."""
import base64
import http.client
import json
import urllib.error
import urllib.request

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2

from harness import create_topic, free_port, http_get, wait_until

BINARY = "application/vnd.kafka.binary.v2+json"
JSON = "application/vnd.kafka.json.v2+json"
V2 = "application/vnd.kafka.v2+json"


def call(method, url, body=None, content_type=V2, accept=None, raw=None):
    """(status, parsed JSON or None, headers)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {}
    if content_type and data is not None:
        headers["content-type"] = content_type
    if accept:
        headers["accept"] = accept
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=40) as r:
            text = r.read()
            return r.status, (json.loads(text) if text else None), r.headers
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, (json.loads(text) if text else None), e.headers


@pytest.fixture
def rest(empty_cluster):
    port = free_port()
    empty_cluster.start_coordinator("--rest-listen", f"127.0.0.1:{port}", "--consumer-instance-timeout-ms", "60000")
    empty_cluster.start_broker(1)
    empty_cluster.rest = f"http://127.0.0.1:{port}"
    return empty_cluster


def b64(b):
    return base64.b64encode(b).decode()


def read_with_kafka_python(bootstrap, topic, count):
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=20000, group_id=None)
    got = []
    for m in consumer:
        got.append(m)
        if len(got) == count:
            break
    consumer.close()
    return got


def test_v2_produce_binary_and_json_as_kafka_python_reads_them(rest):
    create_topic(rest, "rest-in", partitions=3)
    status, body, headers = call("POST", f"{rest.rest}/topics/rest-in", {
        "records": [{"key": b64(f"k{i}".encode()), "value": b64(f"v{i}".encode())} for i in range(6)]
        + [{"value": b64(b"to-2"), "partition": 2}, {"key": None, "value": None, "partition": 1}],
    }, content_type=BINARY)
    assert status == 200, body
    assert headers["content-type"].startswith(V2)
    assert body["key_schema_id"] is None and len(body["offsets"]) == 8
    assert all(o["error_code"] is None and o["offset"] >= 0 for o in body["offsets"]), body
    # Keys are partitioned with murmur2, as the Java client and kafka-python partition them.
    for i in range(6):
        assert body["offsets"][i]["partition"] == (murmur2(f"k{i}".encode()) & 0x7fffffff) % 3, (i, body)
    assert body["offsets"][6]["partition"] == 2
    got = read_with_kafka_python(rest.bootstrap(), "rest-in", 8)
    by_value = {m.value: m for m in got}
    assert by_value[b"v3"].key == b"k3"
    assert by_value[None].key is None and by_value[None].partition == 1, "a null value is a tombstone"
    # The partition path, and the JSON format.
    status, body, _ = call("POST", f"{rest.rest}/topics/rest-in/partitions/0",
                           {"records": [{"value": {"sensor": 7, "temp": 21.5}}, {"key": "a", "value": [1, 2]}]},
                           content_type=JSON)
    assert status == 200 and {o["partition"] for o in body["offsets"]} == {0}, body
    got = read_with_kafka_python(rest.bootstrap(), "rest-in", 10)
    values = [m.value for m in got if m.partition == 0]
    assert json.dumps({"sensor": 7, "temp": 21.5}, separators=(",", ":")).encode() in values
    assert b"[1,2]" in values
    # Metadata endpoints, here and under /rest on the admin port.
    assert call("GET", f"{rest.rest}/topics")[1] == http_get(f"{rest.http}/rest/topics")[1]
    assert "rest-in" in call("GET", f"{rest.rest}/topics")[1]
    status, t, _ = call("GET", f"{rest.rest}/topics/rest-in")
    assert status == 200 and [p["partition"] for p in t["partitions"]] == [0, 1, 2]
    assert t["partitions"][0]["replicas"] == [{"broker": 1, "leader": True, "in_sync": True}]
    assert call("GET", f"{rest.rest}/topics/rest-in/partitions/2")[1]["leader"] == 1


def test_v3_produce_one_record_and_a_stream(rest):
    create_topic(rest, "v3-in", partitions=2)
    status, clusters, _ = call("GET", f"{rest.rest}/v3/clusters")
    assert status == 200
    cluster_id = clusters["data"][0]["cluster_id"]
    url = f"{rest.rest}/v3/clusters/{cluster_id}/topics/v3-in/records"
    status, r, _ = call("POST", url, {
        "partition_id": 1,
        "headers": [{"name": "trace", "value": b64(b"abc")}, {"name": "empty", "value": None}],
        "key": {"type": "STRING", "data": "device-1"},
        "value": {"type": "JSON", "data": {"t": 20}},
        "timestamp": "2024-05-01T12:00:00.250Z",
    }, content_type="application/json")
    assert status == 200, r
    assert (r["error_code"], r["cluster_id"], r["topic_name"], r["partition_id"]) == (200, cluster_id, "v3-in", 1)
    assert r["key"] == {"type": "STRING", "size": 8} and r["value"]["type"] == "JSON"
    assert r["timestamp"] == "2024-05-01T12:00:00.250Z"
    [m] = read_with_kafka_python(rest.bootstrap(), "v3-in", 1)
    assert (m.key, m.value, m.partition, m.timestamp) == (b"device-1", b'{"t":20}', 1, 1714564800250)
    assert dict(m.headers) == {"trace": b"abc", "empty": None}

    # A stream: records sent one after another in one chunked body, a result per line.
    host, port = rest.rest.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    records = [{"value": {"type": "BINARY", "data": b64(f"s{i}".encode())}} for i in range(3)]
    records.insert(2, {"value": {"type": "AVRO", "data": 1}})

    def chunks():
        for rec in records:
            yield (json.dumps(rec) + "\n").encode()
    conn.request("POST", f"/v3/clusters/{cluster_id}/topics/v3-in/records", body=chunks(),
                 headers={"content-type": "application/json", "transfer-encoding": "chunked"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200
    lines = [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]
    conn.close()
    assert [line["error_code"] for line in lines] == [200, 200, 400, 200], lines
    assert "schema registry" in lines[2]["message"]


def test_a_rest_consumer_instance_shares_a_group_with_a_kafka_python_member(rest):
    create_topic(rest, "shared", partitions=4)
    base = f"{rest.rest}/consumers/sharers"
    status, created, _ = call("POST", base, {"name": "rest-1", "format": "binary", "auto.offset.reset": "earliest",
                                             "auto.commit.enable": "false"})
    assert status == 200, created
    assert created["instance_id"] == "rest-1"
    assert created["base_uri"].endswith("/consumers/sharers/instances/rest-1")
    inst = f"{base}/instances/rest-1"
    assert call("POST", f"{inst}/subscription", {"topics": ["shared"]})[0] == 204
    assert call("GET", f"{inst}/subscription")[1] == {"topics": ["shared"]}
    # Poll until the instance is assigned all four partitions.
    wait_until(lambda: call("GET", f"{inst}/records?timeout=500", accept=BINARY)[0] == 200
               and len(call("GET", f"{inst}/assignments")[1]["partitions"]) == 4,
               timeout=30, interval=0.2, what="the REST instance to own the group's partitions")
    member = KafkaConsumer("shared", bootstrap_servers=rest.bootstrap(), group_id="sharers",
                           auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=1000)
    seen_rest, seen_kp = [], []

    def poll_both():
        # Both keep polling (so both take part in rebalances); records are committed as read.
        status, records, _ = call("GET", f"{inst}/records?timeout=200", accept=BINARY)
        assert status == 200, records
        seen_rest.extend(base64.b64decode(r["value"]) for r in records)
        if records:
            assert call("POST", f"{inst}/offsets")[0] == 200
        for tp, msgs in member.poll(timeout_ms=200).items():
            seen_kp.extend(m.value for m in msgs)
        if seen_kp:
            member.commit()

    def shared_two_and_two():
        poll_both()
        return len(call("GET", f"{inst}/assignments")[1]["partitions"]) == 2 and len(member.assignment()) == 2
    wait_until(shared_two_and_two, timeout=60, interval=0.05, what="the group to split its partitions two and two")
    producer = KafkaProducer(bootstrap_servers=rest.bootstrap(), acks="all")
    for i in range(40):
        producer.send("shared", key=str(i).encode(), value=f"r{i}".encode())
    producer.flush(30)
    producer.close()

    def both_read_everything():
        poll_both()
        return len(set(seen_rest) | set(seen_kp)) == 40
    wait_until(both_read_everything, timeout=60, interval=0.05, what="both members to read the 40 records")
    assert seen_rest and seen_kp, "each member read the records of its own partitions"
    assert not set(seen_rest) & set(seen_kp), "no record went to both members"
    assert set(seen_rest) | set(seen_kp) == {f"r{i}".encode() for i in range(40)}
    status, group = http_get(f"{rest.http}/groups/sharers")
    assert status == 200 and len(group["members"]) == 2, group
    # Committed offsets of the instance's partitions, as GET .../offsets shows them.
    assigned = call("GET", f"{inst}/assignments")[1]["partitions"]
    status, committed, _ = call("GET", f"{inst}/offsets", {"partitions": assigned})
    assert status == 200 and len(committed["offsets"]) == 2
    member.close()
    assert call("DELETE", inst)[0] == 204
    assert call("GET", f"{inst}/records", accept=BINARY)[1]["error_code"] == 40403


def test_browsing_a_partition_by_offset_and_time_with_an_assigned_instance(rest):
    create_topic(rest, "browse")
    producer = KafkaProducer(bootstrap_servers=rest.bootstrap(), acks="all")
    for i in range(10):
        producer.send("browse", value=json.dumps({"n": i}).encode(), timestamp_ms=1_700_000_000_000 + i * 1000)
    producer.flush(30)
    producer.close()
    base = f"{rest.rest}/consumers/browser"
    assert call("POST", base, {"name": "b", "format": "json", "auto.commit.enable": "false"})[0] == 200
    inst = f"{base}/instances/b"
    assert call("POST", f"{inst}/assignments", {"partitions": [{"topic": "browse", "partition": 0}]})[0] == 204

    def read(n):
        got = []
        wait_until(lambda: got.extend(call("GET", f"{inst}/records?timeout=500", accept=JSON)[1]) or len(got) >= n,
                   timeout=20, what=f"{n} records")
        return got
    assert call("POST", f"{inst}/positions", {"offsets": [{"topic": "browse", "partition": 0, "offset": 7}]})[0] == 204
    got = read(3)
    assert [r["value"] for r in got] == [{"n": 7}, {"n": 8}, {"n": 9}] and got[0]["offset"] == 7
    assert got[0]["timestamp"] == 1_700_000_007_000
    status, _, _ = call("POST", f"{inst}/positions", {"timestamps": [
        {"topic": "browse", "partition": 0, "timestamp": "2023-11-14T22:13:24.500Z"}]})
    assert status == 204
    assert [r["offset"] for r in read(5)][:1] == [5], "the first record at or after 22:13:24.500 is offset 5"
    assert call("POST", f"{inst}/positions/beginning", {"partitions": [{"topic": "browse", "partition": 0}]})[0] == 204
    assert read(10)[0]["offset"] == 0
    # Asking for binary from a json instance: 406.
    status, body, _ = call("GET", f"{inst}/records", accept=BINARY)
    assert (status, body["error_code"]) == (406, 40601)


def test_bad_requests_get_the_rest_proxys_errors_and_nothing_breaks(rest):
    create_topic(rest, "guarded", partitions=2)
    url = f"{rest.rest}/topics/guarded"
    ok = {"records": [{"value": b64(b"x")}]}
    cases = [
        (call("POST", url, ok, content_type="text/plain"), 415, 415),
        (call("POST", url, ok, content_type="application/vnd.kafka.avro.v2+json"), 415, 415),
        (call("POST", url, ok, content_type=None), 415, 415),
        (call("POST", f"{rest.rest}/topics/no-such-topic", ok, content_type=BINARY), 404, 40401),
        (call("POST", f"{url}/partitions/9", ok, content_type=BINARY), 404, 40402),
        (call("POST", url, {"records": [{"value": "not base64!"}]}, content_type=BINARY), 422, 42203),
        (call("POST", url, raw=b"{not json", content_type=BINARY), 422, 422),
        (call("POST", url, {"records": []}, content_type=BINARY), 422, 42200),
        (call("POST", url, raw=json.dumps({"records": [{"value": b64(b"x" * 1024)}] * 20000}).encode(),
              content_type=BINARY), 413, 413),
        (call("GET", f"{rest.rest}/consumers/g/instances/nobody/records", accept=BINARY), 404, 40403),
        (call("POST", f"{rest.rest}/consumers/g", {"format": "avro"}), 422, 42204),
        (call("POST", f"{rest.rest}/consumers/g", {"auto.offset.reset": "sideways"}), 422, 42204),
        (call("GET", f"{rest.rest}/no/such/path"), 404, 404),
        (call("POST", f"{rest.rest}/v3/clusters/wrong-id/topics/guarded/records", {"value": {"data": 1}},
              content_type="application/json"), 404, 404),
    ]
    for (status, body, _), want_status, want_code in cases:
        assert (status, body["error_code"]) == (want_status, want_code), body
        assert body["message"], body
    assert call("POST", f"{rest.rest}/consumers/g", {"name": "twice"})[0] == 200
    status, body, _ = call("POST", f"{rest.rest}/consumers/g", {"name": "twice"})
    assert (status, body["error_code"]) == (409, 40902)
    # After all that, the API and the coordinator still work.
    status, body, _ = call("POST", url, ok, content_type=BINARY)
    assert status == 200 and body["offsets"][0]["error_code"] is None
    assert rest.coordinators[0].alive()


def test_idle_consumer_instances_expire(empty_cluster):
    port = free_port()
    empty_cluster.start_coordinator("--rest-listen", f"127.0.0.1:{port}", "--consumer-instance-timeout-ms", "1000")
    empty_cluster.start_broker(1)
    base = f"http://127.0.0.1:{port}/consumers/idlers"
    assert call("POST", base, {"name": "sleepy"})[0] == 200
    # Asking about the instance would keep it alive: watch the coordinator's log instead.
    wait_until(lambda: "idle longer than consumer.instance.timeout.ms" in empty_cluster.coordinators[0].log(),
               timeout=15, interval=0.2, what="the idle instance to expire")
    status, body, _ = call("GET", f"{base}/instances/sleepy/records", accept=BINARY)
    assert (status, body["error_code"]) == (404, 40403)


def test_a_rest_consumer_and_the_rest_producer_carry_on_when_a_leader_is_killed(empty_cluster):
    """The bar for the client the REST API runs on: after kill -9 of a partition leader,
    REST produce goes to the new leader and a REST group consumer reads on, losing nothing
    (records read but not yet committed when the group moves may come again, as with any
    Kafka consumer)."""
    cluster = empty_cluster
    port = free_port()
    cluster.start_coordinator("--rest-listen", f"127.0.0.1:{port}")
    for b in (1, 2, 3):
        cluster.start_broker(b, "--offsets-topic-replication-factor", "3")
    cluster.wait_brokers_know_each_other((1, 2, 3))
    create_topic(cluster, "sturdy", partitions=2, replication_factor=3)
    rest = f"http://127.0.0.1:{port}"
    base = f"{rest}/consumers/sturdy-readers"
    assert call("POST", base, {"name": "r", "auto.offset.reset": "earliest", "auto.commit.enable": "false"})[0] == 200
    inst = f"{base}/instances/r"
    assert call("POST", f"{inst}/subscription", {"topics": ["sturdy"]})[0] == 204
    seen = []

    def read_until(n):
        def more():
            status, records, _ = call("GET", f"{inst}/records?timeout=500", accept=BINARY)
            assert status == 200, records
            seen.extend(base64.b64decode(r["value"]) for r in records)
            if records:
                assert call("POST", f"{inst}/offsets")[0] == 200
            return len(set(seen)) >= n
        wait_until(more, timeout=60, interval=0.05, what=f"{n} records through the REST consumer")

    def produce(values):
        status, body, _ = call("POST", f"{rest}/topics/sturdy", {
            "records": [{"key": b64(v), "value": b64(v)} for v in values]}, content_type=BINARY)
        assert status == 200 and all(o["error_code"] is None for o in body["offsets"]), body

    produce([f"a{i}".encode() for i in range(20)])
    read_until(20)
    status, topic = http_get(f"{cluster.http}/topics/sturdy")
    leader = topic["partitions"][0]["leader"]
    cluster.brokers[leader].kill()
    wait_until(lambda: http_get(f"{cluster.http}/topics/sturdy")[1]["partitions"][0]["leader"] not in (None, leader),
               timeout=30, what="a new leader for partition 0")
    produce([f"b{i}".encode() for i in range(20)])
    read_until(40)
    assert set(seen) == {f"a{i}".encode() for i in range(20)} | {f"b{i}".encode() for i in range(20)}, seen
