"""Transactions with confluent-kafka against Fjord.

Subcommands (each takes --bootstrap-server):
  visibility        committed records are seen by read_committed, aborted ones only by
                    read_uncommitted
  fencing           two producers with one transactional.id: only the newest commits
  committed         offsets sent to a transaction are what committed() returns right
                    after commit_transaction(), with no UNSTABLE_OFFSET_COMMIT
  fill T N          N records "0".."N-1" into topic T with an idempotent producer
  copy SRC DST      consume-transform-produce SRC to DST in transactions, with the
                    consumer's offsets sent to each transaction; resumes from the group's
                    committed offsets; exits 0 once SRC is fully copied, 3 on a fatal error
                    (the caller starts it again)
  verify SRC DST    DST, read_committed, holds every record of SRC exactly once
  txn-workload T S  for S seconds, transactions of one record per partition of T, every
                    third one aborted on purpose; writes each transaction's fate (commit
                    acknowledged, aborted, unknown) to --out
  check-txn T       reads T read_committed and checks the fates in --out: no aborted
                    reads, no torn transactions, no lost acknowledged commits
  compacted-aborts  on a compacted topic, an aborted transaction between two committed
                    ones: read_committed sees the commits before and after the cleaner
                    ran, and the cleaner removes the aborted records (read_uncommitted
                    stops seeing them)
"""

import argparse
import sys
import time

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

GROUP = "copy-group"
TXN_ID = "copy-app"


def log(*args):
    print(*args, flush=True)


def create(bs, topic, partitions=1):
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result()


def read_all(bs, topic, isolation, idle_s=3.0, deadline_s=120.0):
    """Every record of `topic` as (partition, offset, value), read until idle."""
    c = Consumer(
        {
            "bootstrap.servers": bs,
            "group.id": f"reader-{isolation}-{time.time()}",
            "isolation.level": isolation,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    md = c.list_topics(topic, timeout=30)
    parts = sorted(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out = []
    start = time.time()
    last = time.time()
    while time.time() - start < deadline_s:
        msgs = c.consume(1000, 0.5)
        for m in msgs:
            if m.error():
                log("read error", m.error())
                continue
            out.append((m.partition(), m.offset(), m.value().decode()))
            last = time.time()
        if not msgs and time.time() - last > idle_s:
            break
    c.close()
    return out


def visibility(bs):
    create(bs, "vis")
    p = Producer({"bootstrap.servers": bs, "transactional.id": "vis-app"})
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(10):
        p.produce("vis", value=f"commit-{i}".encode())
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(10):
        p.produce("vis", value=f"abort-{i}".encode())
    p.flush(30)
    # An open transaction holds read_committed readers back.
    p.abort_transaction(30)
    p.begin_transaction()
    p.produce("vis", value=b"commit-last")
    p.commit_transaction(30)
    committed = [v for _, _, v in read_all(bs, "vis", "read_committed")]
    uncommitted = [v for _, _, v in read_all(bs, "vis", "read_uncommitted")]
    want = [f"commit-{i}" for i in range(10)] + ["commit-last"]
    assert committed == want, f"read_committed saw {committed}"
    aborted = [f"abort-{i}" for i in range(10)]
    assert uncommitted == want[:10] + aborted + ["commit-last"], uncommitted
    log(f"visibility ok: {len(committed)} committed, {len(aborted)} aborted")


def fencing(bs):
    create(bs, "fence")
    old = Producer({"bootstrap.servers": bs, "transactional.id": "fence-app"})
    old.init_transactions(30)
    old.begin_transaction()
    old.produce("fence", value=b"zombie")
    old.flush(30)
    new = Producer({"bootstrap.servers": bs, "transactional.id": "fence-app"})
    new.init_transactions(60)  # aborts the old producer's open transaction
    new.begin_transaction()
    new.produce("fence", value=b"newest")
    new.commit_transaction(30)
    fenced = False
    try:
        old.produce("fence", value=b"zombie-2")
        old.commit_transaction(30)
    except KafkaException as e:
        err = e.args[0]
        fenced = err.fatal() or err.code() in (
            KafkaError._FENCED,
            KafkaError.PRODUCER_FENCED,
            KafkaError.INVALID_PRODUCER_EPOCH,
        )
        log("old producer:", err)
    assert fenced, "the zombie producer committed"
    committed = [v for _, _, v in read_all(bs, "fence", "read_committed")]
    assert committed == ["newest"], committed
    log("fencing ok: only the newest producer committed")


def committed(bs, rounds=20):
    create(bs, "offsets-src")
    create(bs, "offsets-dst")
    group = "committed-check"
    consumer = Consumer(
        {
            "bootstrap.servers": bs,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bs, "transactional.id": "committed-app"})
    producer.init_transactions(30)
    for n in range(1, rounds + 1):
        producer.begin_transaction()
        producer.produce("offsets-dst", value=str(n).encode())
        producer.send_offsets_to_transaction(
            [TopicPartition("offsets-src", 0, n * 10)],
            consumer.consumer_group_metadata(),
            30,
        )
        producer.commit_transaction(30)
        # At once: the transaction is committed, so its offsets must be stable.
        [tp] = consumer.committed([TopicPartition("offsets-src", 0)], timeout=10)
        if tp.error is not None or tp.offset != n * 10:
            raise SystemExit(f"round {n}: committed() gave {tp} ({tp.error}), want {n * 10}")
    consumer.close()
    log(f"committed ok: {rounds} transactions' offsets read back at once")


def fill(bs, topic, n):
    p = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "linger.ms": 5})
    for i in range(n):
        while True:
            try:
                p.produce(topic, key=str(i).encode(), value=str(i).encode())
                break
            except BufferError:
                p.poll(0.1)
    left = p.flush(120)
    assert left == 0, f"{left} records not delivered"
    log(f"filled {n}")


def copy(bs, src, dst, progress_file):
    consumer = Consumer(
        {
            "bootstrap.servers": bs,
            "group.id": GROUP,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bs,
            "transactional.id": TXN_ID,
            "transaction.timeout.ms": 20000,
            "linger.ms": 5,
        }
    )
    producer.init_transactions(120)
    parts = sorted(consumer.list_topics(src, timeout=30).topics[src].partitions)
    tps = [TopicPartition(src, p) for p in parts]
    ends = {}
    for tp in tps:
        ends[tp.partition] = consumer.get_watermark_offsets(tp, timeout=30)[1]

    def rewind():
        committed = consumer.committed(tps, timeout=60)
        start = [
            TopicPartition(src, tp.partition, tp.offset if tp.offset >= 0 else 0)
            for tp in committed
        ]
        consumer.assign(start)
        return {tp.partition: tp.offset for tp in start}

    done = rewind()
    while any(done[p] < ends[p] for p in parts):
        msgs = [m for m in consumer.consume(500, 1.0) if not m.error()]
        if not msgs:
            continue
        try:
            producer.begin_transaction()
            for m in msgs:
                while True:
                    try:
                        producer.produce(dst, value=m.value(), partition=m.partition())
                        break
                    except BufferError:
                        producer.poll(0.1)
            positions = consumer.position(consumer.assignment())
            producer.send_offsets_to_transaction(
                positions, consumer.consumer_group_metadata(), 60
            )
            producer.commit_transaction(60)
            for tp in positions:
                if tp.offset >= 0:
                    done[tp.partition] = tp.offset
            with open(progress_file, "w") as f:
                f.write(str(sum(done.values())))
        except KafkaException as e:
            err = e.args[0]
            log("transaction failed:", err)
            if err.fatal():
                sys.exit(3)
            if err.txn_requires_abort():
                try:
                    producer.abort_transaction(60)
                except KafkaException as e2:
                    log("abort failed:", e2.args[0])
                    sys.exit(3)
                done = rewind()
            elif err.retriable():
                # The commit's fate is unknown to us; committing again is idempotent.
                try:
                    producer.commit_transaction(60)
                except KafkaException as e3:
                    log("commit retry failed:", e3.args[0])
                    sys.exit(3)
                positions = consumer.position(consumer.assignment())
                for tp in positions:
                    if tp.offset >= 0:
                        done[tp.partition] = tp.offset
            else:
                sys.exit(3)
    consumer.close()
    with open(progress_file, "w") as f:
        f.write(str(sum(done.values())))
    log(f"copied {sum(done.values())}")


def verify(bs, src, dst):
    source = sorted(int(v) for _, _, v in read_all(bs, src, "read_uncommitted"))
    copied = [int(v) for _, _, v in read_all(bs, dst, "read_committed")]
    everything = read_all(bs, dst, "read_uncommitted")
    dupes = len(copied) - len(set(copied))
    missing = sorted(set(source) - set(copied))
    extra = sorted(set(copied) - set(source))
    log(
        f"source {len(source)} copied {len(copied)} duplicates {dupes} "
        f"missing {len(missing)} extra {len(extra)} uncommitted-total {len(everything)}"
    )
    assert len(set(source)) == len(source), "the source itself has duplicates"
    assert dupes == 0 and not missing and not extra, missing[:10]
    log(f"exactly once: {len(copied)} records")


def txn_workload(bs, topic, seconds, out_file):
    parts = sorted(
        Consumer({"bootstrap.servers": bs, "group.id": "probe"})
        .list_topics(topic, timeout=30)
        .topics[topic]
        .partitions
    )
    fates = {}

    def producer():
        p = Producer(
            {
                "bootstrap.servers": bs,
                "transactional.id": "chaos-txn",
                "transaction.timeout.ms": 30000,
            }
        )
        p.init_transactions(120)
        return p

    p = producer()
    deadline = time.time() + seconds
    i = 0
    while time.time() < deadline:
        i += 1
        name = f"t{i}"
        abort = i % 3 == 0
        fates[name] = "unknown"
        try:
            p.begin_transaction()
            for part in parts:
                p.produce(topic, value=f"{name}-{part}".encode(), partition=part)
            if abort:
                p.flush(60)
                p.abort_transaction(60)
                fates[name] = "aborted"
            else:
                p.commit_transaction(60)
                fates[name] = "committed"
        except KafkaException as e:
            err = e.args[0]
            log(f"{name}: {err}")
            if err.txn_requires_abort():
                try:
                    p.abort_transaction(60)
                    fates[name] = "aborted"
                except KafkaException:
                    p = producer()
            elif not err.retriable():
                # Fatal (fenced, or an unknown outcome): a new producer fences the old
                # one and aborts whatever it left open.
                p = producer()
    with open(out_file, "w") as f:
        for name, fate in fates.items():
            f.write(f"{name} {fate}\n")
    log(f"transactions: {len(fates)}")


def check_txn(bs, topic, fates_file):
    fates = dict(line.split() for line in open(fates_file) if line.strip())
    parts = sorted(
        Consumer({"bootstrap.servers": bs, "group.id": "probe"})
        .list_topics(topic, timeout=30)
        .topics[topic]
        .partitions
    )
    seen = {}
    for _, _, v in read_all(bs, topic, "read_committed"):
        name, part = v.rsplit("-", 1)
        seen.setdefault(name, []).append(int(part))
    aborted_reads = sorted(n for n in seen if fates.get(n) == "aborted")
    torn = sorted(n for n, ps in seen.items() if sorted(ps) != parts)
    duplicated = sorted(n for n, ps in seen.items() if len(ps) != len(set(ps)))
    lost = sorted(n for n, f in fates.items() if f == "committed" and n not in seen)
    committed = sum(1 for f in fates.values() if f == "committed")
    aborted = sum(1 for f in fates.values() if f == "aborted")
    unknown = sum(1 for f in fates.values() if f == "unknown")
    log(
        f"transactions {len(fates)}: committed {committed}, aborted {aborted}, "
        f"unknown {unknown}; read_committed saw {len(seen)}; aborted reads "
        f"{len(aborted_reads)}, torn {len(torn)}, duplicated {len(duplicated)}, "
        f"lost commits {len(lost)}"
    )
    assert not aborted_reads, f"aborted transactions visible: {aborted_reads[:5]}"
    assert not torn, f"torn transactions: {torn[:5]}"
    assert not duplicated, f"duplicated records: {duplicated[:5]}"
    assert not lost, f"acknowledged commits lost: {lost[:5]}"
    assert committed > 0, "no transaction committed"
    log("transactional checks passed")


def compacted_aborts(bs):
    topic = "compacted-txn"
    admin = AdminClient({"bootstrap.servers": bs})
    configs = {
        "cleanup.policy": "compact",
        "segment.bytes": "1048576",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "2000",
    }
    for f in admin.create_topics([NewTopic(topic, 1, 1, config=configs)]).values():
        f.result()
    p = Producer({"bootstrap.servers": bs, "transactional.id": "compact-app"})
    p.init_transactions(30)
    for fate, keys in (("commit-a", range(0, 10)), ("abort", range(10, 20)), ("commit-b", range(20, 30))):
        p.begin_transaction()
        for k in keys:
            p.produce(topic, key=f"k{k}".encode(), value=fate.encode())
        if fate == "abort":
            p.flush(30)
            p.abort_transaction(30)
        else:
            p.commit_transaction(30)

    def values(isolation):
        return sorted(v for _, _, v in read_all(bs, topic, isolation, idle_s=1.5) if v != "x" * 1000)

    # Before cleaning: the active segment is never cleaned.
    want = sorted(["commit-a"] * 10 + ["commit-b"] * 10)
    before = values("read_committed")
    assert before == want, f"read_committed before cleaning: {before}"
    assert values("read_uncommitted").count("abort") == 10, "aborted records before cleaning"
    # More than a segment of other keys, so the transactions sit in closed segments.
    filler = Producer({"bootstrap.servers": bs, "enable.idempotence": True, "linger.ms": 20})
    for i in range(1500):
        filler.produce(topic, key=b"filler", value=b"x" * 1000)
        filler.poll(0)
    filler.flush(60)
    deadline = time.time() + 120
    while True:
        seen = values("read_uncommitted")
        if "abort" not in seen:
            break
        assert time.time() < deadline, f"the cleaner left {seen.count('abort')} aborted records"
        time.sleep(1)
    assert sorted(seen) == want, f"read_uncommitted after cleaning: {seen}"
    # The abort marker goes delete.retention.ms (2 s) after its pass: read_committed must
    # see every committed record throughout, before and after that.
    until = time.time() + 8
    while time.time() < until:
        after = values("read_committed")
        assert after == want, f"read_committed after cleaning: {after}"
    log("compacted aborts ok: 20 committed kept, 10 aborted removed")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap-server", required=True)
    ap.add_argument("command")
    ap.add_argument("args", nargs="*")
    ap.add_argument("--progress-file", default="/dev/null")
    ap.add_argument("--out", default="/dev/null")
    a = ap.parse_args()
    bs = a.bootstrap_server
    if a.command == "visibility":
        visibility(bs)
    elif a.command == "fencing":
        fencing(bs)
    elif a.command == "committed":
        committed(bs)
    elif a.command == "fill":
        fill(bs, a.args[0], int(a.args[1]))
    elif a.command == "copy":
        copy(bs, a.args[0], a.args[1], a.progress_file)
    elif a.command == "verify":
        verify(bs, a.args[0], a.args[1])
    elif a.command == "txn-workload":
        txn_workload(bs, a.args[0], float(a.args[1]), a.out)
    elif a.command == "check-txn":
        check_txn(bs, a.args[0], a.out)
    elif a.command == "compacted-aborts":
        compacted_aborts(bs)
    else:
        ap.error(f"unknown command {a.command}")


if __name__ == "__main__":
    main()
