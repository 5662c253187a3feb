"""Prometheus metrics on the broker (`--metrics-listen`) and the coordinator (`/metrics` on its
HTTP port), as a kafka-python producer and group consumer work, read the way Prometheus,
Grafana dashboards built on the JMX exporter and kafka_exporter, and Kafka UI read them."""
import re
import urllib.request

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import MessageSizeTooLargeError

from harness import create_topic, free_port, http_get, wait_until

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url):
    """The exposition as {(name, frozenset(labels)): value}, checking the content type and
    that every non-comment line is a well-formed sample."""
    with urllib.request.urlopen(url, timeout=15) as r:
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers["content-type"]
        text = r.read().decode()
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        samples[(m.group(1), labels)] = float(m.group(3))
    return samples


def value(samples, metric, **labels):
    return samples.get((metric, frozenset(labels.items())))


def total(samples, metric, **labels):
    """The sum of `metric` over the series whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and want <= ls)


def read(consumer, n):
    """Reads `n` records from `consumer` (which gives up after its consumer_timeout_ms)."""
    got = 0
    for _ in consumer:
        got += 1
        if got == n:
            break
    return got


def test_broker_metrics_follow_a_producer_and_a_group_consumer(empty_cluster):
    cluster = empty_cluster
    cluster.start_coordinator()
    metrics_port = free_port()
    cluster.start_broker(1, "--metrics-listen", f"127.0.0.1:{metrics_port}")
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    create_topic(cluster, "metered", partitions=2)
    create_topic(cluster, "tiny", config={"max.message.bytes": "1000"})
    before = scrape(url)
    assert value(before, "kafka_server_brokertopicmetrics_messagesin_total", topic="metered") == 0
    assert value(before, "kafka_server_replicamanager_leadercount") >= 3
    assert value(before, "kafka_controller_kafkacontroller_activecontrollercount") == 0

    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap(), acks="all", linger_ms=5)
    for i in range(50):
        producer.send("metered", key=str(i % 5).encode(), value=b"v" * 100)
    producer.flush(30)
    # A batch over the topic's max.message.bytes: MESSAGE_TOO_LARGE, a failed produce.
    try:
        producer.send("tiny", value=b"x" * 5000).get(timeout=30)
        raise AssertionError("a 5000-byte record was accepted by a topic with max.message.bytes=1000")
    except MessageSizeTooLargeError:
        pass
    producer.close()

    consumer = KafkaConsumer("metered", bootstrap_servers=cluster.bootstrap(), group_id="metered-readers",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=20000)
    assert read(consumer, 50) == 50
    consumer.commit()
    consumer.close()

    after = scrape(url)
    assert value(after, "kafka_server_brokertopicmetrics_messagesin_total", topic="metered") == 50
    assert value(after, "kafka_server_brokertopicmetrics_messagesin_total") >= 50
    bytes_in = value(after, "kafka_server_brokertopicmetrics_bytesin_total", topic="metered")
    assert bytes_in > 50 * 100, bytes_in
    assert value(after, "kafka_server_brokertopicmetrics_bytesout_total", topic="metered") >= 50 * 100
    assert value(after, "kafka_server_brokertopicmetrics_messagesout_total", topic="metered") >= 50
    assert value(after, "kafka_server_brokertopicmetrics_failedproducerequests_total", topic="tiny") >= 1
    assert value(after, "kafka_server_brokertopicmetrics_failedproducerequests_total", topic="metered") == 0
    assert value(after, "kafka_server_brokertopicmetrics_totalfetchrequests_total", topic="metered") >= 1
    # Per API: counts by version, and the JMX exporter's quantiles of the total time.
    assert total(after, "kafka_network_requestmetrics_requests_total", request="Produce") >= 1
    assert total(after, "kafka_network_requestmetrics_requests_total", request="FetchConsumer") >= 1
    assert total(after, "kafka_network_requestmetrics_requests_total", request="OffsetCommit") >= 1
    assert value(after, "kafka_network_requestmetrics_totaltimems", request="Produce", quantile="0.99") >= 0
    assert value(after, "kafka_network_requestmetrics_totaltimems_count", request="Produce") >= 1
    # Replicas: two partitions of "metered", one of "tiny", those of __consumer_offsets.
    assert value(after, "kafka_server_replicamanager_partitioncount") >= 3
    assert value(after, "kafka_server_replicamanager_underreplicatedpartitions") == 0
    assert value(after, "kafka_log_log_size", topic="metered", partition="0") + \
        value(after, "kafka_log_log_size", topic="metered", partition="1") > 50 * 100
    assert value(after, "kafka_log_log_logendoffset", topic="metered", partition="0") + \
        value(after, "kafka_log_log_logendoffset", topic="metered", partition="1") == 50
    assert value(after, "kafka_server_socket_server_metrics_connection_count", listener="PLAINTEXT") >= 0
    # acks=all on a single replica waits for a flush.
    assert value(after, "kafka_log_logflushstats_logflushrateandtimems_count") >= 1
    assert value(after, "tributary_log_append_time_ms_count") >= 1
    assert value(after, "process_resident_memory_bytes") > 0
    # Kafka UI's Prometheus mode reads these: per topic, and broker-wide with only the name label.
    assert ("kafka_server_BrokerTopicMetrics_FifteenMinuteRate",
            frozenset({("name", "BytesInPerSec"), ("topic", "metered")})) in after
    assert value(after, "kafka_server_BrokerTopicMetrics_FifteenMinuteRate", name="BytesOutPerSec") is not None

    # The rates move on the next 5-second tick.
    def rate_moved():
        s = scrape(url)
        return value(s, "kafka_server_BrokerTopicMetrics_OneMinuteRate", name="BytesInPerSec", topic="metered") > 0
    wait_until(rate_moved, timeout=20, interval=0.5, what="the 1-minute bytes-in rate to move")

    # A deleted topic's series go.
    status, _ = http_get(f"{cluster.http}/topics/tiny")
    assert status == 200
    from harness import http_request
    assert http_request("DELETE", f"{cluster.http}/topics/tiny")[0] in (200, 202)
    wait_until(lambda: ("kafka_server_brokertopicmetrics_bytesin_total", frozenset({("topic", "tiny")}))
               not in scrape(url), timeout=30, interval=0.3, what="the deleted topic's series to go")


def test_coordinator_metrics_show_lag_as_the_http_admin_does(cluster):
    create_topic(cluster, "lagging", partitions=2)
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap(), acks="all")
    for i in range(40):
        producer.send("lagging", key=str(i).encode(), value=b"x")
    producer.flush(30)
    producer.close()

    consumer = KafkaConsumer("lagging", bootstrap_servers=cluster.bootstrap(), group_id="laggards",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=20000,
                             max_poll_records=5)
    # Read some, commit, and compare the metrics with GET /groups/laggards.
    assert read(consumer, 15) == 15
    consumer.commit()
    url = f"{cluster.http}/metrics"
    status, group = http_get(f"{cluster.http}/groups/laggards")
    assert status == 200, group
    m = scrape(url)
    assert value(m, "kafka_controller_kafkacontroller_activecontrollercount") == 1
    assert value(m, "tributary_zookeeper_connected") == 1
    assert value(m, "tributary_metrics_scrape_complete") == 1
    assert value(m, "kafka_brokers") == 1
    assert value(m, "kafka_topic_partitions", topic="lagging") == 2
    assert total(m, "kafka_topic_partition_current_offset", topic="lagging") == 40
    assert value(m, "kafka_controller_kafkacontroller_offlinepartitionscount") == 0
    assert value(m, "kafka_consumergroup_members", consumergroup="laggards") == 1
    assert group["total_lag"] == 40 - 15, group
    for o in group["offsets"]:
        labels = dict(consumergroup="laggards", topic=o["topic"], partition=str(o["partition"]))
        assert value(m, "kafka_consumergroup_lag", **labels) == o["lag"], (o, m)
        assert value(m, "kafka_consumergroup_current_offset", **labels) == o["committed_offset"]
    assert value(m, "kafka_consumergroup_lag_sum", consumergroup="laggards", topic="lagging") == group["total_lag"]
    assert value(m, "kafka_consumergroup_group_sum_lag", group="laggards") == group["total_lag"]

    # Read the rest: the lag falls to 0 in both.
    assert read(consumer, 25) == 25
    consumer.commit()
    consumer.close()
    m = scrape(url)
    assert value(m, "kafka_consumergroup_group_sum_lag", group="laggards") == 0
    assert http_get(f"{cluster.http}/groups/laggards")[1]["total_lag"] == 0


def test_metrics_are_off_unless_asked(cluster):
    assert "serving Prometheus metrics" not in cluster.brokers[1].log()


def test_the_monitoring_compose_file_scrapes_what_the_binaries_serve_and_its_dashboard_asks_for_nothing_else(
        empty_cluster):
    """docker/compose-monitoring.yml validates; its Prometheus scrapes the broker's metrics
    listener and the coordinator's HTTP port as the compose file sets them; and every metric
    the Grafana dashboard queries is one that a running broker or coordinator serves."""
    import json
    import subprocess

    import yaml

    from harness import ROOT
    compose = ROOT / "docker" / "compose-monitoring.yml"
    out = subprocess.run(["docker-compose", "-f", str(compose), "config"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    assert set(services) == {"zookeeper", "coordinator", "broker", "prometheus", "grafana"}
    metrics_port = services["broker"]["environment"]["TRIBUTARY_METRICS_LISTEN"].rsplit(":", 1)[1]
    http_port = services["coordinator"]["environment"]["TRIBUTARY_HTTP_LISTEN"].rsplit(":", 1)[1]
    prometheus = yaml.safe_load((ROOT / "docker" / "monitoring" / "prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"broker:{metrics_port}", f"coordinator:{http_port}"}

    cluster = empty_cluster
    cluster.start_coordinator()
    port = free_port()
    cluster.start_broker(1, "--metrics-listen", f"127.0.0.1:{port}")
    create_topic(cluster, "dashboarded")
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap(), acks="all")
    producer.send("dashboarded", b"x").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer("dashboarded", bootstrap_servers=cluster.bootstrap(), group_id="dash",
                             auto_offset_reset="earliest", consumer_timeout_ms=20000)
    next(iter(consumer))
    consumer.commit()
    consumer.close()
    served = {name for name, _ in scrape(f"http://127.0.0.1:{port}/metrics")}
    served |= {name for name, _ in scrape(f"{cluster.http}/metrics")}
    dashboard = json.loads((ROOT / "docker" / "monitoring" / "grafana" / "dashboards" / "tributary.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {m for e in exprs for m in re.findall(r"\b(?:kafka|tributary|process)_[A-Za-z0-9_]+", e)}
    assert asked and asked <= served, f"the dashboard queries metrics nobody serves: {sorted(asked - served)}"
