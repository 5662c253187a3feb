"""Named listeners, as the tutorials' compose files use them: each client is told the
addresses of the listener it connected to, followers fetch over inter.broker.listener.name,
and /brokers/ids/<id> carries every endpoint and the protocol map as Kafka writes them."""
import json

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient

from harness import free_port, http_get, wait_until


def start_two_listener_broker(cluster, broker_id, host_name="localhost"):
    """PLAINTEXT on 127.0.0.1 for other brokers and containers, PLAINTEXT_HOST advertised
    under `host_name` for the host: the confluent tutorial's layout."""
    internal, external = free_port(), free_port()
    cluster.broker_ports[broker_id] = internal
    cluster.start_broker(
        broker_id,
        "--listeners", f"PLAINTEXT://127.0.0.1:{internal},PLAINTEXT_HOST://127.0.0.1:{external}",
        "--advertised-listeners", f"PLAINTEXT://127.0.0.1:{internal},PLAINTEXT_HOST://{host_name}:{external}",
        "--listener-security-protocol-map", "PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT",
        "--inter-broker-listener-name", "PLAINTEXT",
    )
    return internal, external


def test_each_client_gets_the_addresses_of_the_listener_it_came_on(empty_cluster, zk_client):
    cluster = empty_cluster
    cluster.start_coordinator()
    internal, external = start_two_listener_broker(cluster, 1)

    seen = {}
    for name, bootstrap in (("internal", f"127.0.0.1:{internal}"), ("host", f"localhost:{external}")):
        md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=20)
        seen[name] = {(b.host, b.port) for b in md.brokers.values()}
    assert seen == {"internal": {("127.0.0.1", internal)}, "host": {("localhost", external)}}

    # kafka-python on the host listener: its cluster view says localhost:<host port>.
    admin = KafkaAdminClient(bootstrap_servers=f"localhost:{external}")
    assert [(b["host"], b["port"]) for b in admin.describe_cluster()["brokers"]] == [("localhost", external)]
    admin.close()

    # Produce on one listener, consume in a group on the other.
    producer = Producer({"bootstrap.servers": f"localhost:{external}"})
    producer.produce("listeners", value=b"across")
    assert producer.flush(20) == 0
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{internal}", "group.id": "g", "auto.offset.reset": "earliest"})
    consumer.subscribe(["listeners"])
    msg = wait_until(lambda: (lambda m: m if m is not None and not m.error() else None)(consumer.poll(0.5)),
                     timeout=60, what="the record through the other listener")
    assert msg.value() == b"across"
    consumer.close()

    # Kafka's registration layout: every endpoint, the protocol map, host/port of the first.
    data, _ = zk_client.get(f"{cluster.chroot}/brokers/ids/1")
    reg = json.loads(data)
    assert reg["endpoints"] == [f"PLAINTEXT://127.0.0.1:{internal}", f"PLAINTEXT_HOST://localhost:{external}"]
    assert reg["listener_security_protocol_map"] == {"PLAINTEXT": "PLAINTEXT", "PLAINTEXT_HOST": "PLAINTEXT"}
    assert (reg["host"], reg["port"]) == ("127.0.0.1", internal)
    status, brokers = http_get(cluster.http + "/brokers")
    assert status == 200 and brokers[0]["endpoints"] == reg["endpoints"]
    assert brokers[0]["listener_security_protocol_map"] == reg["listener_security_protocol_map"]


def test_followers_fetch_over_the_inter_broker_listener(empty_cluster):
    """The host listener is advertised under a name that does not resolve here: replication
    works only if followers use the inter-broker listener."""
    cluster = empty_cluster
    cluster.start_coordinator()
    for broker_id in (1, 2):
        start_two_listener_broker(cluster, broker_id, host_name="unreachable.invalid")
    cluster.wait_brokers_know_each_other((1, 2))
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    admin.create_topics([NewTopic("replicated", num_partitions=1, replication_factor=2)])["replicated"].result(30)
    cluster.wait_topic_led("replicated")
    producer = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all"})
    for i in range(10):
        producer.produce("replicated", value=str(i).encode())
    assert producer.flush(30) == 0

    def isr():
        status, topic = http_get(cluster.http + "/topics/replicated")
        return status == 200 and sorted(topic["partitions"][0]["isr"]) == [1, 2]
    wait_until(isr, timeout=60, what="both brokers in the ISR (the follower fetching over PLAINTEXT)")
