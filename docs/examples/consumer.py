#!/usr/bin/env python3
"""Print every record of a topic from the beginning, then exit (confluent-kafka)."""
import argparse
import os

from confluent_kafka import Consumer, TopicPartition

parser = argparse.ArgumentParser()
parser.add_argument("--bootstrap-server", default=os.environ.get("FJORD_BOOTSTRAP_SERVER", "127.0.0.1:9092"))
parser.add_argument("--topic", required=True)
args = parser.parse_args()

consumer = Consumer({"bootstrap.servers": args.bootstrap_server, "group.id": "readme-consumer",
                     "enable.auto.commit": False})
partitions = consumer.list_topics(args.topic, timeout=10).topics[args.topic].partitions
ends = {p: consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)[1] for p in partitions}
consumer.assign([TopicPartition(args.topic, p, 0) for p in partitions])
remaining = {p: end for p, end in ends.items() if end > 0}
while remaining:
    msg = consumer.poll(1.0)
    if msg is None:
        continue
    if msg.error():
        raise SystemExit(msg.error())
    print(f"partition {msg.partition()} offset {msg.offset()}: {msg.value().decode()}")
    if msg.offset() + 1 >= remaining.get(msg.partition(), 0):
        remaining.pop(msg.partition(), None)
consumer.close()
