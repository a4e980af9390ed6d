#!/usr/bin/env python3
"""The classic word count as a consumer group (confluent-kafka). Run two or more copies
with the same --group and they share the work.

    lines  --split-->  <output>-words (keyed by word)  --count-->  <output> (word -> total)

Splitting writes every word keyed by itself, so a word always lands in the same partition
of the words topic. Counting owns whole partitions of the words topic, so each word is
counted by one member at a time; it writes running totals to the output topic, a
compacted table keyed by word, in the same partition number. A member that takes a
partition over first reloads its totals from that output partition. Input offsets are
committed only after the writes they led to are acknowledged: at-least-once counting.
"""
import argparse
import os
import signal
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

parser = argparse.ArgumentParser()
parser.add_argument("--bootstrap-server", default=os.environ.get("FJORD_BOOTSTRAP_SERVER", "127.0.0.1:9092"))
parser.add_argument("--input", required=True, help="topic of text lines")
parser.add_argument("--output", required=True, help="topic of word -> count")
parser.add_argument("--group", default="wordcount")
parser.add_argument("--partitions", type=int, default=2, help="partitions of the topics this creates")
parser.add_argument("--idle-exit", type=float, default=0,
                    help="exit after this many seconds without new input (0: run until stopped)")
args = parser.parse_args()

words_topic = args.output + "-words"
common = {"bootstrap.servers": args.bootstrap_server}

admin = AdminClient(common)
wanted = [NewTopic(words_topic, args.partitions, 1),
          NewTopic(args.output, args.partitions, 1, config={"cleanup.policy": "compact"})]
for topic, future in admin.create_topics(wanted).items():
    try:
        future.result()
    except KafkaException as e:
        if "TOPIC_ALREADY_EXISTS" not in str(e):
            raise

producer = Producer({**common, "enable.idempotence": True, "linger.ms": 5})


def consumer(group):
    return Consumer({**common, "group.id": group, "enable.auto.commit": False,
                     "auto.offset.reset": "earliest"})


totals = {}  # words-topic partition -> {word: count}
last_activity = time.monotonic()


def reload_totals(_, partitions):
    """Rebuild the totals of newly owned partitions from the output table."""
    global last_activity
    last_activity = time.monotonic()
    reader = Consumer({**common, "group.id": args.group + "-reload", "enable.auto.commit": False})
    for tp in partitions:
        table = {}
        low, high = reader.get_watermark_offsets(TopicPartition(args.output, tp.partition), timeout=10)
        if high > low:
            reader.assign([TopicPartition(args.output, tp.partition, low)])
            while True:
                msg = reader.poll(1.0)
                if msg is not None and not msg.error():
                    table[msg.key().decode()] = int(msg.value().decode())
                    if msg.offset() + 1 >= high:
                        break
                elif reader.position([TopicPartition(args.output, tp.partition)])[0].offset >= high:
                    break
        totals[tp.partition] = table
    reader.close()


def forget_totals(_, partitions):
    global last_activity
    last_activity = time.monotonic()
    for tp in partitions:
        totals.pop(tp.partition, None)


def touched(_, partitions):
    global last_activity
    last_activity = time.monotonic()


splitter = consumer(args.group + "-split")
splitter.subscribe([args.input], on_assign=touched, on_revoke=touched)
counter = consumer(args.group + "-count")
counter.subscribe([words_topic], on_assign=reload_totals, on_revoke=forget_totals)

running = True


def commit(c):
    """Commits what was just processed. If a rebalance took the partitions meanwhile, the
    new owner reprocesses from the last commit: counted at least once."""
    global last_activity
    last_activity = time.monotonic()
    try:
        c.commit(asynchronous=False)
    except KafkaException as e:
        print(f"commit failed, input will be reprocessed: {e}", file=sys.stderr)



def stop(*_):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)

while running:
    lines = [m for m in splitter.consume(num_messages=500, timeout=0.1) if not m.error()]
    for m in lines:
        for word in m.value().decode().lower().split():
            producer.produce(words_topic, key=word, value=b"1")
    if lines:
        producer.flush()
        commit(splitter)

    words = [m for m in counter.consume(num_messages=500, timeout=0.1) if not m.error()]
    changed = {}
    for m in words:
        table = totals.setdefault(m.partition(), {})
        word = m.key().decode()
        table[word] = table.get(word, 0) + 1
        changed[(m.partition(), word)] = table[word]
    for (partition, word), total in changed.items():
        producer.produce(args.output, key=word, value=str(total).encode(), partition=partition)
    if words:
        producer.flush()
        commit(counter)

    if args.idle_exit and time.monotonic() - last_activity > args.idle_exit:
        break

splitter.close()
counter.close()
producer.flush()
print(f"wordcount member {os.getpid()} stopped", file=sys.stderr)
