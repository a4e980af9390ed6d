#!/usr/bin/env python3
"""Produce each line of standard input as one record (confluent-kafka)."""
import argparse
import os
import sys

from confluent_kafka import Producer

parser = argparse.ArgumentParser()
parser.add_argument("--bootstrap-server", default=os.environ.get("FJORD_BOOTSTRAP_SERVER", "127.0.0.1:9092"))
parser.add_argument("--topic", required=True)
args = parser.parse_args()

producer = Producer({"bootstrap.servers": args.bootstrap_server, "acks": "all"})
failed = []
count = 0
for line in sys.stdin:
    count += 1
    producer.produce(args.topic, value=line.rstrip("\n").encode(),
                     on_delivery=lambda err, msg: err and failed.append(err))
    producer.poll(0)
producer.flush(30)
if failed:
    sys.exit(f"{len(failed)} records failed: {failed[0]}")
print(f"produced {count} records to {args.topic}")
