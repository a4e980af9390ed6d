#!/usr/bin/env python3
"""One consumer-group member for the group tests, with confluent-kafka or kafka-python.

Prints one JSON object per line on stdout, each with a wall-clock "t" in milliseconds:
  {"event": "assigned", "partitions": [..]}   after a rebalance hands partitions over
  {"event": "revoked", "partitions": [..]}    before partitions are taken away
  {"event": "record", "p": P, "o": O, "v": V} with --log-records (V: the value as text)
  {"event": "committed", "p": P, "o": NEXT}   once a synchronous commit is acknowledged
kafka-python's "assigned" events also carry the group "generation" they belong to.
--commit sync commits after every record; --commit batch after every poll, per partition.
  {"event": "closed"}                          after a clean close
--property KEY=VALUE passes client settings (librdkafka's names; mapped for kafka-python).
It runs until standard input closes, then closes the consumer (leaving the group).
"""
import argparse
import json
import sys
import threading
import time

import kafka_props

parser = argparse.ArgumentParser()
parser.add_argument("--client", choices=["confluent", "kafka-python"], required=True)
parser.add_argument("--bootstrap-server", required=True)
parser.add_argument("--group", required=True)
parser.add_argument("--topic", required=True)
parser.add_argument("--instance-id")
parser.add_argument("--session-timeout-ms", type=int, default=6000)
parser.add_argument("--commit", choices=["none", "sync", "batch"], default="none")
parser.add_argument("--log-records", action="store_true")
parser.add_argument("--property", action="append", help="KEY=VALUE, librdkafka's names (security settings)")
args = parser.parse_args()
props = kafka_props.parse(args.property)

lock = threading.Lock()


def emit(event, **fields):
    fields["event"] = event
    fields["t"] = int(time.time() * 1000)
    with lock:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


stop = threading.Event()


def text(value):
    return value.decode("utf-8", "replace") if value is not None else None


def watch_stdin():
    sys.stdin.read()
    stop.set()


threading.Thread(target=watch_stdin, daemon=True).start()


def run_confluent():
    from confluent_kafka import Consumer

    conf = {
        "bootstrap.servers": args.bootstrap_server,
        "group.id": args.group,
        "client.id": "confluent-" + (args.instance_id or "dynamic"),
        "session.timeout.ms": args.session_timeout_ms,
        "heartbeat.interval.ms": 500,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "partition.assignment.strategy": "range",
    }
    conf.update(props)
    if conf.get("group.protocol") == "consumer":
        # KIP-848: the coordinator owns sessions, heartbeats and assignment.
        for classic_only in ("session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"):
            conf.pop(classic_only, None)
    if args.instance_id:
        conf["group.instance.id"] = args.instance_id
    c = Consumer(conf)

    def on_assign(consumer, partitions):
        emit("assigned", partitions=sorted(p.partition for p in partitions))

    def on_revoke(consumer, partitions):
        emit("revoked", partitions=sorted(p.partition for p in partitions))

    c.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke)
    while not stop.is_set():
        msg = c.poll(0.1)
        if msg is None or msg.error():
            continue
        if args.log_records:
            emit("record", p=msg.partition(), o=msg.offset(), v=text(msg.value()))
        if args.commit in ("sync", "batch"):
            try:
                c.commit(message=msg, asynchronous=False)
                emit("committed", p=msg.partition(), o=msg.offset() + 1)
            except Exception as e:  # a failed commit is retried by the next one
                emit("commit-failed", p=msg.partition(), error=str(e))
    c.close()
    emit("closed")


def run_kafka_python():
    from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit("revoked", partitions=sorted(p.partition for p in revoked))

        def on_partitions_assigned(self, assigned):
            generation = getattr(getattr(c, "_coordinator", None), "_generation", None)
            gen_id = getattr(generation, "generation_id", -1) if generation else -1
            emit("assigned", partitions=sorted(p.partition for p in assigned), generation=gen_id)

    kwargs = dict(
        bootstrap_servers=args.bootstrap_server,
        group_id=args.group,
        client_id="kafka-python-" + (args.instance_id or "dynamic"),
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=500,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **kafka_props.to_kafka_python(props),
    )
    if args.instance_id:
        kwargs["group_instance_id"] = args.instance_id
    c = KafkaConsumer(**kwargs)
    c.subscribe([args.topic], listener=Listener())
    while not stop.is_set():
        batches = c.poll(timeout_ms=100)
        for tp, records in batches.items():
            for r in records:
                if args.log_records:
                    emit("record", p=tp.partition, o=r.offset, v=text(r.value))
                if args.commit == "sync":
                    try:
                        c.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(r.offset + 1, None, -1)})
                        emit("committed", p=tp.partition, o=r.offset + 1)
                    except Exception as e:
                        emit("commit-failed", p=tp.partition, error=str(e))
            if args.commit == "batch" and records:
                last = records[-1].offset + 1
                try:
                    c.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(last, None, -1)})
                    emit("committed", p=tp.partition, o=last)
                except Exception as e:
                    emit("commit-failed", p=tp.partition, error=str(e))
    c.close()
    emit("closed")


if args.client == "confluent":
    run_confluent()
else:
    run_kafka_python()
