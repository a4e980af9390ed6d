"""KIP-848 consumer groups (group.protocol=consumer) with confluent-kafka (librdkafka).

  --bootstrap-server B   --assignor uniform|range

Three members share a 6-partition topic through ConsumerGroupHeartbeat, committing every
record they process; one leaves and the other two take its partitions over; an admin
client sees the group through ConsumerGroupDescribe and ListGroups; a second group
subscribes by regular expression. Every produced record must be consumed, each partition
owned by one member at a time, and the committed offsets must reach the end of the log.
Prints "consumer protocol ok: ..." with timings.
"""

import argparse
import sys
import threading
import time

from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    ConsumerGroupType,
    Producer,
)
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6
RECORDS = 600


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def produce(bs, topic, start, count):
    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True})
    for i in range(start, start + count):
        p.produce(topic, key=str(i).encode(), value=str(i).encode(), partition=i % PARTITIONS)
    if p.flush(30) != 0:
        fail("records not delivered")


def consumer(bs, group, name, assignor):
    conf = {
        "bootstrap.servers": bs,
        "group.id": group,
        "client.id": name,
        "group.protocol": "consumer",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    if assignor:
        conf["group.remote.assignor"] = assignor
    return Consumer(conf)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap-server", required=True)
    ap.add_argument("--assignor", default="")
    a = ap.parse_args()
    bs = a.bootstrap_server
    tag = a.assignor or "default"
    topic = f"kip848-{tag}"
    group = f"kip848-group-{tag}"
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        f.result()
    produce(bs, topic, 0, RECORDS)

    seen = {}
    owned = {}
    errors = []
    lock = threading.Lock()
    stops = {m: threading.Event() for m in ("a", "b", "c")}

    def member(name):
        c = consumer(bs, group, name, a.assignor)
        c.subscribe([topic])
        try:
            while not stops[name].is_set():
                msg = c.poll(0.05)
                with lock:
                    owned[name] = {tp.partition for tp in c.assignment()}
                if msg is None:
                    continue
                if msg.error():
                    errors.append(f"{name}: {msg.error()}")
                    continue
                with lock:
                    seen.setdefault(int(msg.key()), []).append(name)
                # A commit carries the member epoch; the coordinator checks it.
                c.commit(message=msg, asynchronous=False)
        except Exception as e:  # noqa: BLE001 - any client error fails the test
            errors.append(f"{name}: {e!r}")
        finally:
            c.close()
            with lock:
                owned.pop(name, None)

    def wait_for(what, members, timeout):
        start = time.time()
        while time.time() - start < timeout:
            with lock:
                parts = [set(owned.get(m, set())) for m in members]
            union = set().union(*parts)
            disjoint = sum(len(p) for p in parts) == len(union)
            if all(parts) and union == set(range(PARTITIONS)) and disjoint:
                return time.time() - start
            if errors:
                fail(f"{what}: client errors {errors}")
            time.sleep(0.05)
        fail(f"{what}: owned {owned} after {timeout}s")

    def wait_consumed(n, timeout):
        start = time.time()
        while time.time() - start < timeout:
            with lock:
                if len(seen) >= n:
                    return time.time() - start
            time.sleep(0.05)
        fail(f"consumed {len(seen)} of {n} distinct records after {timeout}s")

    threads = {m: threading.Thread(target=member, args=(m,)) for m in ("a", "b", "c")}
    for t in threads.values():
        t.start()
    shared = wait_for("three members share the topic", ("a", "b", "c"), 60)
    wait_consumed(RECORDS, 60)

    # What an admin client sees: ConsumerGroupDescribe and ListGroups v5.
    desc = admin.describe_consumer_groups([group])[group].result()
    if desc.type != ConsumerGroupType.CONSUMER:
        fail(f"group type {desc.type}")
    if len(desc.members) != 3:
        fail(f"described members {desc.members}")
    described = set()
    for m in desc.members:
        described |= {tp.partition for tp in m.assignment.topic_partitions}
    if described != set(range(PARTITIONS)):
        fail(f"described assignment covers {described}")
    listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result()
    if group not in [g.group_id for g in listed.valid]:
        fail(f"ListGroups(type=consumer) misses {group}: {listed.valid}")
    classic = admin.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result()
    if group in [g.group_id for g in classic.valid]:
        fail("the group is listed as classic")

    # c leaves (ConsumerGroupHeartbeat with epoch -1); a and b take its partitions.
    stops["c"].set()
    threads["c"].join()
    took_over = wait_for("two members take over", ("a", "b"), 60)
    produce(bs, topic, RECORDS, RECORDS)
    wait_consumed(2 * RECORDS, 60)

    desc = admin.describe_consumer_groups([group])[group].result()
    if desc.state != ConsumerGroupState.STABLE or len(desc.members) != 2:
        fail(f"after the leave: state {desc.state}, members {len(desc.members)}")
    for m in ("a", "b"):
        stops[m].set()
        threads[m].join()
    if errors:
        fail(f"client errors {errors}")

    committed = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)]
    )[group].result()
    total = sum(tp.offset for tp in committed.topic_partitions if tp.topic == topic)
    if total != 2 * RECORDS:
        fail(f"committed offsets sum to {total}, want {2 * RECORDS}")

    # A regex subscription, resolved by the coordinator against the topics that exist.
    got = set()
    c = consumer(bs, f"{group}-regex", "regex", a.assignor)
    c.subscribe([f"^kip848-{tag}.*"])
    deadline = time.time() + 60
    while time.time() < deadline and len(got) < 2 * RECORDS:
        msg = c.poll(0.1)
        if msg is not None and not msg.error():
            got.add(int(msg.key()))
    c.close()
    if len(got) != 2 * RECORDS:
        fail(f"regex member consumed {len(got)} of {2 * RECORDS}")

    dups = sum(1 for v in seen.values() if len(v) > 1)
    print(
        f"consumer protocol ok: {tag}: three members shared {PARTITIONS} partitions in {shared:.1f}s, "
        f"two took over a leaver's in {took_over:.1f}s, {len(seen)} records consumed "
        f"({dups} redelivered), offsets committed to the end, regex subscription consumed all",
        flush=True,
    )


if __name__ == "__main__":
    main()
