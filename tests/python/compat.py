#!/usr/bin/env python3
"""Round trip through a Fjord node with two independent Python clients.

confluent-kafka (librdkafka) and kafka-python (pure Python) each: create a topic with
their AdminClient, describe it, produce keyed records with headers and timestamps,
consume them back by assignment, check every field, and delete the topic.
Exits non-zero with a message on the first mismatch.
"""
import argparse
import sys
import time
import uuid

N = 2000
PARTITIONS = 3


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def expected_records(tag):
    base_ts = int(time.time() * 1000) - 10_000
    return [
        (f"key-{i % 50}".encode(), f"{tag}-value-{i}".encode() * (1 + i % 3),
         [("h1", f"hv-{i}".encode()), ("idx", str(i).encode())], base_ts + i)
        for i in range(N)
    ]


def check(tag, sent, got):
    if len(got) != len(sent):
        fail(f"{tag}: consumed {len(got)} records, produced {len(sent)}")
    by_value = {r[1]: r for r in got}
    partition_of_key = {}
    for key, value, headers, ts in sent:
        if value not in by_value:
            fail(f"{tag}: record {value[:30]!r} missing")
        gkey, _, gheaders, gts, gpart = by_value[value]
        if gkey != key:
            fail(f"{tag}: key {gkey!r} != {key!r}")
        if list(gheaders) != headers:
            fail(f"{tag}: headers {gheaders!r} != {headers!r}")
        if gts != ts:
            fail(f"{tag}: timestamp {gts} != {ts}")
        if partition_of_key.setdefault(key, gpart) != gpart:
            fail(f"{tag}: key {key!r} found in partitions {partition_of_key[key]} and {gpart}")
    print(f"{tag}: {len(got)} records match (keys, values, headers, timestamps, partitioning)")


def run_confluent(bootstrap):
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

    topic = f"compat-confluent-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for t, f in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1,
                                              config={"retention.ms": "3600000"})]).items():
        f.result(30)
    md = admin.list_topics(topic, timeout=30)
    if len(md.topics[topic].partitions) != PARTITIONS:
        fail(f"confluent: described {len(md.topics[topic].partitions)} partitions")
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(30)
    if configs["retention.ms"].value != "3600000":
        fail(f"confluent: retention.ms is {configs['retention.ms'].value}")
    if configs["segment.bytes"].value != "1073741824":
        fail(f"confluent: segment.bytes default is {configs['segment.bytes'].value}")

    sent = expected_records("confluent")
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "compression.type": "lz4"})
    errors = []
    for key, value, headers, ts in sent:
        while True:
            try:
                p.produce(topic, key=key, value=value, headers=headers, timestamp=ts,
                          on_delivery=lambda e, m: e and errors.append(e))
                break
            except BufferError:
                p.poll(0.05)
    p.flush(60)
    if errors:
        fail(f"confluent: delivery errors {errors[:3]}")

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-confluent",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, i, 0) for i in range(PARTITIONS)])
    got = []
    deadline = time.time() + 60
    while len(got) < N and time.time() < deadline:
        m = c.poll(1.0)
        if m is None:
            continue
        if m.error():
            fail(f"confluent: consume error {m.error()}")
        got.append((m.key(), m.value(), [(k, v) for k, v in (m.headers() or [])], m.timestamp()[1], m.partition()))
    c.close()
    check("confluent-kafka", sent, got)
    for t, f in admin.delete_topics([topic]).items():
        f.result(30)
    if topic in admin.list_topics(timeout=30).topics:
        fail("confluent: topic still listed after delete")
    print("confluent-kafka: admin create/describe/delete topics ok")


def run_kafka_python(bootstrap):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    topic = f"compat-kafkapython-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    described = admin.describe_topics([topic])
    if len(described[0]["partitions"]) != PARTITIONS:
        fail(f"kafka-python: described {described}")

    sent = expected_records("kafkapython")
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, compression_type="gzip")
    futures = [p.send(topic, key=k, value=v, headers=h, timestamp_ms=ts) for k, v, h, ts in sent]
    p.flush(60)
    for f in futures:
        f.get(30)
    p.close()

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    c.assign([TopicPartition(topic, i) for i in range(PARTITIONS)])
    c.seek_to_beginning()
    got = []
    deadline = time.time() + 60
    while len(got) < N and time.time() < deadline:
        for tp, msgs in c.poll(timeout_ms=1000).items():
            for m in msgs:
                got.append((m.key, m.value, [(k, v) for k, v in m.headers], m.timestamp, m.partition))
    c.close()
    check("kafka-python", sent, got)
    admin.delete_topics([topic])
    if topic in admin.list_topics():
        fail("kafka-python: topic still listed after delete")
    admin.close()
    print("kafka-python: admin create/describe/delete topics ok")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap-server", default="127.0.0.1:9092")
    ap.add_argument("--client", choices=["confluent", "kafka-python", "all"], default="all")
    a = ap.parse_args()
    if a.client in ("confluent", "all"):
        run_confluent(a.bootstrap_server)
    if a.client in ("kafka-python", "all"):
        run_kafka_python(a.bootstrap_server)
    print("OK")


if __name__ == "__main__":
    main()
