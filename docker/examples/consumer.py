"""The tutorials' consumer: reads the JSON readings in a consumer group with kafka-python
and prints them. BOOTSTRAP (default localhost:9092), TOPIC (default sensors), GROUP
(default sensor-readers), COUNT (default: run until stopped)."""
import json
import os

from kafka import KafkaConsumer

consumer = KafkaConsumer(os.environ.get("TOPIC", "sensors"),
                         bootstrap_servers=[os.environ.get("BOOTSTRAP", "localhost:9092")],
                         group_id=os.environ.get("GROUP", "sensor-readers"),
                         auto_offset_reset="earliest",
                         value_deserializer=lambda x: json.loads(x.decode("utf-8")))
count = int(os.environ.get("COUNT", "0"))
seen = 0
for message in consumer:
    print("received", message.partition, message.offset, message.value, flush=True)
    seen += 1
    if count and seen >= count:
        break
consumer.close()
