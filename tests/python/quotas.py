#!/usr/bin/env python3
"""Drive a Fjord node with confluent-kafka under client quotas and report what the
client saw, as one JSON line: bytes moved, seconds taken, and the throttle reports
librdkafka delivered through its throttle_cb (throttle_time_ms of the broker's answers).

  quotas.py produce --client-id ID --topic T --bytes N
  quotas.py consume --client-id ID --topic T --bytes N
"""
import argparse
import json
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["produce", "consume"])
    p.add_argument("--bootstrap-server", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--bytes", type=int, required=True)
    a = p.parse_args()

    from confluent_kafka import Consumer, Producer, TopicPartition

    throttles = []

    def on_throttle(event):
        if event.throttle_time > 0:
            throttles.append(event.throttle_time * 1000.0)

    common = {
        "bootstrap.servers": a.bootstrap_server,
        "client.id": a.client_id,
        "throttle_cb": on_throttle,
    }
    record = b"x" * 10_000
    moved = 0
    start = time.monotonic()
    if a.mode == "produce":
        producer = Producer({**common, "linger.ms": 5, "acks": "all"})
        failed = []

        def delivered(err, msg):
            if err is not None:
                failed.append(str(err))

        while moved < a.bytes:
            try:
                producer.produce(a.topic, record, partition=0, on_delivery=delivered)
                moved += len(record)
            except BufferError:
                producer.poll(0.1)
            producer.poll(0)
        if producer.flush(120) != 0 or failed:
            print(f"FAIL: {len(failed)} deliveries failed: {failed[:3]}", file=sys.stderr)
            sys.exit(1)
    else:
        consumer = Consumer({**common, "group.id": a.client_id, "enable.auto.commit": False,
                             "fetch.max.bytes": 1_048_576})
        consumer.assign([TopicPartition(a.topic, 0, 0)])
        deadline = time.monotonic() + 120
        while moved < a.bytes:
            if time.monotonic() > deadline:
                print(f"FAIL: consumed {moved} of {a.bytes} bytes", file=sys.stderr)
                sys.exit(1)
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                moved += len(msg.value())
        # Keep polling a moment so throttle reports already sent are delivered.
        consumer.poll(0.5)
        consumer.close()
    elapsed = time.monotonic() - start
    print(json.dumps({
        "bytes": moved,
        "seconds": elapsed,
        "throttle_reports": len(throttles),
        "max_throttle_ms": max(throttles, default=0.0),
    }))


if __name__ == "__main__":
    main()
