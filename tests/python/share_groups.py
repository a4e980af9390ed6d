"""Share groups (KIP-932) with confluent-kafka's ShareConsumer (librdkafka).

  --bootstrap-server B  --fjord PATH  [--lock-ms N]  [--scenario NAME ...]

The broker must run with group.share.min.record.lock.duration.ms <= --lock-ms and
group.share.delivery.count.limit=3. Scenarios:

  shared     two members hold different records of one partition at the same time,
             and between them every record is delivered exactly once
  redeliver  records not acknowledged before their lock runs out go to another member
             with a higher delivery count; RELEASEd ones come back, REJECTed ones never
  limit      a record released on its last delivery attempt is archived: never again
  implicit   with implicit acknowledgement, what a poll returned is accepted by the next
             commit: nobody gets it again

and two phases a cluster test runs around a leader kill and a coordinator move
(failover-before, failover-after; see their docstrings).

Prints "share groups ok: ..." per scenario.
"""

import argparse
import subprocess
import sys
import time
import uuid

from confluent_kafka import AcknowledgeType, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic

DELIVERY_LIMIT = 3


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


class Env:
    def __init__(self, bootstrap, fjord, lock_ms):
        self.bs = bootstrap
        self.fjord = fjord
        self.lock_ms = lock_ms
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def topic(self, name, partitions=1):
        fs = self.admin.create_topics([NewTopic(name, partitions, 1)])
        for f in fs.values():
            f.result(30)
        return name

    def group(self, name, **configs):
        """A share group starting at the earliest record, with the given configs."""
        settings = {"share.auto.offset.reset": "earliest", **configs}
        add = ",".join(f"{k}={v}" for k, v in settings.items())
        out = subprocess.run(
            [self.fjord, "config", "alter", "--bootstrap-server", self.bs,
             "--group", name, "--add-config", add],
            capture_output=True, text=True, timeout=60,
        )
        if out.returncode != 0:
            fail(f"config alter {name}: {out.stdout}{out.stderr}")
        return name

    def produce(self, topic, values, partition=0):
        p = Producer({"bootstrap.servers": self.bs, "enable.idempotence": True})
        for v in values:
            p.produce(topic, value=v.encode(), partition=partition)
        if p.flush(30) != 0:
            fail("records not delivered")

    def consumer(self, group, name, explicit=False):
        conf = {
            "bootstrap.servers": self.bs,
            "group.id": group,
            "client.id": name,
        }
        if explicit:
            conf["share.acknowledgement.mode"] = "explicit"
        return ShareConsumer(conf)


def poll_until(consumer, want, deadline_s, what):
    """Polls until `want(records so far)` holds; returns the records (each message)."""
    got = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for m in consumer.poll(0.5):
            if m.error():
                fail(f"{what}: poll error {m.error()}")
            got.append(m)
        if want(got):
            return got
    fail(f"{what}: timed out with {len(got)} records: "
         f"{[(m.value(), m.delivery_count()) for m in got][:20]}")


def scenario_shared(env):
    topic = env.topic(f"share-shared-{uuid.uuid4().hex[:6]}")
    group = env.group(f"sg-shared-{uuid.uuid4().hex[:6]}")
    a = env.consumer(group, "a", explicit=True)
    b = env.consumer(group, "b", explicit=True)
    a.subscribe([topic])
    b.subscribe([topic])
    env.produce(topic, [f"first-{i}" for i in range(50)])
    held_by_a = poll_until(a, lambda g: len(g) > 0, 30, "a's first poll")
    # a holds its records unacknowledged; what b gets must be other records.
    env.produce(topic, [f"second-{i}" for i in range(50)])
    first_a = {m.offset() for m in held_by_a}
    got_b = poll_until(
        b, lambda g: len(first_a) + len(g) >= 100 or any(m.offset() in first_a for m in g),
        30, "b while a holds")
    overlap = first_a & {m.offset() for m in got_b}
    if overlap:
        fail(f"records held by a were delivered to b: {sorted(overlap)[:10]}")
    for m in held_by_a:
        a.acknowledge(m)
    for m in got_b:
        b.acknowledge(m)
    a.commit_sync(30)
    b.commit_sync(30)
    seen = first_a | {m.offset() for m in got_b}
    # The rest, if any, goes to whoever asks; nothing twice, nothing lost.
    rest = []
    deadline = time.monotonic() + 30
    while len(seen) < 100 and time.monotonic() < deadline:
        for c in (a, b):
            for m in c.poll(0.3):
                if m.error():
                    fail(f"poll error {m.error()}")
                if m.offset() in seen:
                    fail(f"offset {m.offset()} delivered twice")
                seen.add(m.offset())
                rest.append(m)
                c.acknowledge(m)
            c.commit_sync(30)
    if seen != set(range(100)):
        fail(f"missing offsets: {sorted(set(range(100)) - seen)[:20]}")
    a.close()
    b.close()
    print(f"share groups ok: shared: a held {len(first_a)}, b got {len(got_b)} others, "
          f"then {len(rest)} more; 100 of 100 delivered once", flush=True)


def scenario_redeliver(env):
    topic = env.topic(f"share-redeliver-{uuid.uuid4().hex[:6]}")
    group = env.group(f"sg-redeliver-{uuid.uuid4().hex[:6]}",
                      **{"share.record.lock.duration.ms": env.lock_ms})
    env.produce(topic, [f"r-{i}" for i in range(10)])
    a = env.consumer(group, "a", explicit=True)
    a.subscribe([topic])
    taken = poll_until(a, lambda g: len(g) >= 10, 30, "a takes all")
    if any(m.delivery_count() != 1 for m in taken):
        fail(f"first delivery counts: {[m.delivery_count() for m in taken]}")
    # a goes silent holding everything; once the locks run out b gets the records.
    started = time.monotonic()
    b = env.consumer(group, "b", explicit=True)
    b.subscribe([topic])
    again = poll_until(b, lambda g: len(g) >= 10, 30 + env.lock_ms / 1000, "b after expiry")
    waited = time.monotonic() - started
    if sorted(m.offset() for m in again) != list(range(10)):
        fail(f"redelivered offsets {sorted(m.offset() for m in again)}")
    if any(m.delivery_count() != 2 for m in again):
        fail(f"second delivery counts: {[m.delivery_count() for m in again]}")
    # 0-3 accepted, 4-6 rejected, 7-9 released.
    for m in again:
        kind = (AcknowledgeType.ACCEPT if m.offset() < 4
                else AcknowledgeType.REJECT if m.offset() < 7
                else AcknowledgeType.RELEASE)
        b.acknowledge(m, kind)
    results = b.commit_sync(30)
    bad = {tp: e for tp, e in (results or {}).items() if e is not None}
    if bad:
        fail(f"acknowledgements failed: {bad}")
    back = poll_until(b, lambda g: len(g) >= 3, 30, "released records come back")
    offsets = sorted(m.offset() for m in back)
    if offsets != [7, 8, 9]:
        fail(f"after RELEASE/REJECT got {offsets}, want [7, 8, 9]")
    if any(m.delivery_count() != 3 for m in back):
        fail(f"third delivery counts: {[m.delivery_count() for m in back]}")
    for m in back:
        b.acknowledge(m, AcknowledgeType.ACCEPT)
    b.commit_sync(30)
    # Nothing else comes: everything is accepted or rejected.
    env.produce(topic, ["marker"])
    tail = poll_until(b, lambda g: any(m.value() == b"marker" for m in g), 30, "marker")
    stray = [m.offset() for m in tail if m.value() != b"marker"]
    if stray:
        fail(f"finished records delivered again: {stray}")
    for m in tail:
        b.acknowledge(m)
    b.commit_sync(30)
    a.close()
    b.close()
    print(f"share groups ok: redeliver: 10 records back to another member after "
          f"{waited:.1f}s (lock {env.lock_ms} ms); released ones came back, rejected "
          f"and accepted ones did not", flush=True)


def scenario_limit(env):
    topic = env.topic(f"share-limit-{uuid.uuid4().hex[:6]}")
    group = env.group(f"sg-limit-{uuid.uuid4().hex[:6]}")
    env.produce(topic, ["poison"])
    c = env.consumer(group, "c", explicit=True)
    c.subscribe([topic])
    counts = []
    for attempt in range(1, DELIVERY_LIMIT + 1):
        got = poll_until(c, lambda g: len(g) >= 1, 30, f"delivery {attempt}")
        if [m.value() for m in got] != [b"poison"]:
            fail(f"delivery {attempt}: {[m.value() for m in got]}")
        counts.append(got[0].delivery_count())
        c.acknowledge(got[0], AcknowledgeType.RELEASE)
        c.commit_sync(30)
    if counts != list(range(1, DELIVERY_LIMIT + 1)):
        fail(f"delivery counts {counts}")
    env.produce(topic, ["healthy"])
    got = poll_until(c, lambda g: any(m.value() == b"healthy" for m in g), 30, "after limit")
    if any(m.value() == b"poison" for m in got):
        fail("the poison record was delivered past the delivery limit")
    for m in got:
        c.acknowledge(m)
    c.commit_sync(30)
    c.close()
    print(f"share groups ok: limit: delivered {counts}, then archived", flush=True)


def java_partition(key, partitions):
    """Kafka's partition for a coordinator key: abs(String.hashCode) % partitions."""
    h = 0
    data = key.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    if h >= 1 << 31:
        h -= 1 << 32
    return 0 if h == -(1 << 31) else abs(h) % partitions


def failover_names(args):
    return args.topic or "share-failover", args.group or "sg-failover"


def scenario_failover_before(env, args):
    """Before the failures: 100 records accepted (and the answer seen), 100 more
    produced. Prints where the partition's share state lives."""
    topic, group = failover_names(args)
    env.admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[
        topic].result(30)
    env.group(group)
    env.produce(topic, [f"f-{i}" for i in range(100)])
    c = env.consumer(group, "before", explicit=True)
    c.subscribe([topic])
    accepted = set()
    deadline = time.monotonic() + 60
    while len(accepted) < 100 and time.monotonic() < deadline:
        batch = [m for m in c.poll(0.5)]
        for m in batch:
            if m.error():
                fail(f"poll error {m.error()}")
            c.acknowledge(m)
        results = c.commit_sync(30) or {}
        if any(e is not None for e in results.values()):
            fail(f"acknowledgement failed: {results}")
        accepted.update(m.offset() for m in batch)
    if accepted != set(range(100)):
        fail(f"accepted {len(accepted)} of 100")
    c.close()
    env.produce(topic, [f"f-{i}" for i in range(100, 200)])
    from confluent_kafka import TopicCollection
    desc = env.admin.describe_topics(TopicCollection([topic]))[topic].result(30)
    tid = desc.topic_id
    raw = (tid.get_most_significant_bits() & (2**64 - 1)).to_bytes(8, "big") + \
        (tid.get_least_significant_bits() & (2**64 - 1)).to_bytes(8, "big")
    import base64
    key = f"{group}:{base64.urlsafe_b64encode(raw).decode().rstrip('=')}:0"
    print(f"SHARE_STATE_PARTITION {java_partition(key, args.state_partitions)}", flush=True)
    print("share groups ok: failover-before: 100 accepted, 100 more waiting", flush=True)


def scenario_failover_after(env, args):
    """After the leader and the share coordinator moved: the other 100 records and 100
    new ones are delivered, and none of the 100 accepted before."""
    topic, group = failover_names(args)
    env.produce(topic, [f"f-{i}" for i in range(200, 300)])
    c = env.consumer(group, "after", explicit=True)
    c.subscribe([topic])
    seen = {}
    deadline = time.monotonic() + 90
    while len(seen) < 200 and time.monotonic() < deadline:
        for m in c.poll(0.5):
            if m.error():
                fail(f"poll error {m.error()}")
            if m.offset() < 100:
                fail(f"accepted record {m.offset()} delivered again after the failover")
            seen[m.offset()] = m.delivery_count()
            c.acknowledge(m)
        c.commit_sync(30)
    if set(seen) != set(range(100, 300)):
        fail(f"after the failover got {len(seen)} of 200: missing "
             f"{sorted(set(range(100, 300)) - set(seen))[:20]}")
    c.close()
    print(f"share groups ok: failover-after: 200 of 200 delivered, none of the 100 "
          f"accepted before; max delivery count {max(seen.values())}", flush=True)


def scenario_implicit(env):
    """Implicit acknowledgement: what a poll returned is accepted by the next commit,
    so nobody gets it again once the locks would have run out. (librdkafka's close()
    alone acknowledges nothing: it releases what the last poll returned.)"""
    topic = env.topic(f"share-close-{uuid.uuid4().hex[:6]}")
    group = env.group(f"sg-close-{uuid.uuid4().hex[:6]}",
                      **{"share.record.lock.duration.ms": env.lock_ms})
    env.produce(topic, [f"c-{i}" for i in range(20)])
    a = env.consumer(group, "a")
    a.subscribe([topic])
    got = poll_until(a, lambda g: len(g) >= 20, 30, "a reads all")
    results = a.commit_sync(30) or {}
    if any(e is not None for e in results.values()):
        fail(f"implicit acknowledgements failed: {results}")
    a.close()
    env.produce(topic, ["after-close"])
    b = env.consumer(group, "b")
    b.subscribe([topic])
    deadline = time.monotonic() + env.lock_ms / 1000 + 5
    seen = []
    while time.monotonic() < deadline:
        for m in b.poll(0.5):
            if m.error():
                fail(f"poll error {m.error()}")
            seen.append(m.value())
    again = [v for v in seen if v != b"after-close"]
    if again:
        fail(f"records accepted by commit_sync were delivered again: {again[:10]}")
    if b"after-close" not in seen:
        fail("the record produced after the close was not delivered")
    b.close()
    print(f"share groups ok: implicit: {len(got)} records accepted by commit_sync(), none "
          f"delivered again past the {env.lock_ms} ms lock", flush=True)


SCENARIOS = {
    "shared": scenario_shared,
    "implicit": scenario_implicit,
    "redeliver": scenario_redeliver,
    "limit": scenario_limit,
}

# Scenarios a cluster test runs around its failures, not run by default.
PHASES = {
    "failover-before": scenario_failover_before,
    "failover-after": scenario_failover_after,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap-server", required=True)
    ap.add_argument("--fjord", required=True)
    ap.add_argument("--lock-ms", type=int, default=2000)
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS) + sorted(PHASES))
    ap.add_argument("--topic")
    ap.add_argument("--group")
    ap.add_argument("--state-partitions", type=int, default=50)
    args = ap.parse_args()
    env = Env(args.bootstrap_server, args.fjord, args.lock_ms)
    for name in args.scenario or list(SCENARIOS):
        if name in PHASES:
            PHASES[name](env, args)
        else:
            SCENARIOS[name](env)


if __name__ == "__main__":
    main()
