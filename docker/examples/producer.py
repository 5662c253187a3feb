"""The tutorials' producer: JSON sensor readings with kafka-python, one a second by
default. BOOTSTRAP (default localhost:9092), TOPIC (default sensors), COUNT (default: run
until stopped)."""
import json
import os
import random
import time

from kafka import KafkaProducer

producer = KafkaProducer(bootstrap_servers=[os.environ.get("BOOTSTRAP", "localhost:9092")],
                         value_serializer=lambda x: json.dumps(x).encode("utf-8"))
topic = os.environ.get("TOPIC", "sensors")
count = int(os.environ.get("COUNT", "0"))
interval = float(os.environ.get("INTERVAL", "1"))
sent = 0
while count == 0 or sent < count:
    reading = {"sensor": f"s{sent % 3}", "temperature": round(random.uniform(15, 30), 2), "ts": time.time()}
    producer.send(topic, value=reading).get(timeout=30)
    print("sent", reading, flush=True)
    sent += 1
    time.sleep(interval)
producer.flush()
