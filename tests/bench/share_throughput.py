"""Share group against classic group throughput (issue 32): one topic, the same records,
read in the same run by a classic consumer group (librdkafka's Consumer, committing as
it goes) and by a share group (ShareConsumer, implicit acknowledgement, so every record
is accepted and stored by the share coordinator), alternated ROUNDS times. Each is
timed from its first record to its last, so group joining is not counted.

  share_throughput.py FJORD_BIN BOOTSTRAP [RECORDS] [ROUNDS] [CONSUMERS]

Prints one line per run and a median summary line starting with "summary".
"""

import statistics
import subprocess
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, ShareConsumer
from confluent_kafka.admin import AdminClient, NewTopic

fjord, bs = sys.argv[1], sys.argv[2]
records = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
consumers = int(sys.argv[5]) if len(sys.argv) > 5 else 2
PARTITIONS = 6
topic = f"share-bench-{uuid.uuid4().hex[:6]}"

admin = AdminClient({"bootstrap.servers": bs})
admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
p = Producer({"bootstrap.servers": bs, "linger.ms": 5, "batch.size": 1 << 20})
payload = b"x" * 100
for i in range(records):
    while True:
        try:
            p.produce(topic, value=payload, partition=i % PARTITIONS)
            break
        except BufferError:
            p.poll(0.1)
p.flush(60)


def drain(make, poll):
    """Runs CONSUMERS consumers until RECORDS records were read between them."""
    count = [0]
    first = [None]
    last = [None]
    lock = threading.Lock()
    done = threading.Event()

    def worker(i):
        c = make(i)
        c.subscribe([topic])
        while not done.is_set():
            n = poll(c)
            if n:
                with lock:
                    # Timed from the first record to the last: joining differs by
                    # protocol (a classic group waits group.initial.rebalance.delay.ms)
                    # and is not what is compared.
                    if first[0] is None:
                        first[0] = time.monotonic()
                    count[0] += n
                    if count[0] >= records:
                        last[0] = time.monotonic()
                        done.set()
        c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(consumers)]
    for t in threads:
        t.start()
    done.wait(300)
    done.set()
    for t in threads:
        t.join()
    if first[0] is None or last[0] is None:
        raise SystemExit(f"only {count[0]} of {records} records read")
    return count[0] / max(last[0] - first[0], 1e-6)


def classic(r):
    group = f"classic-{r}-{uuid.uuid4().hex[:6]}"

    def make(i):
        return Consumer({"bootstrap.servers": bs, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})

    def poll(c):
        return sum(1 for m in c.consume(500, 0.5) if not m.error())
    return drain(make, poll)


def share(r):
    group = f"share-{r}-{uuid.uuid4().hex[:6]}"
    subprocess.run([fjord, "config", "alter", "--bootstrap-server", bs, "--group", group,
                    "--add-config", "share.auto.offset.reset=earliest"],
                   check=True, capture_output=True)

    def make(i):
        return ShareConsumer({"bootstrap.servers": bs, "group.id": group})

    def poll(c):
        return sum(1 for m in c.poll(0.5) if not m.error())
    return drain(make, poll)


results = {"classic": [], "share": []}
for r in range(rounds):
    for kind, fn in (("classic", classic), ("share", share)):
        rate = fn(r)
        results[kind].append(rate)
        print(f"round {r + 1} {kind}: {rate:,.0f} records/s", flush=True)
c, s = statistics.median(results["classic"]), statistics.median(results["share"])
print(f"summary records={records} consumers={consumers} classic={c:.0f} share={s:.0f} "
      f"share/classic={s / c:.2f}", flush=True)
