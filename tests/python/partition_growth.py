"""A consumer group with confluent-kafka keeps up with a topic that gains partitions.

  --bootstrap-server B   --strategy range|cooperative-sticky

Two members share a 4-partition topic; CreatePartitions takes it to 6; the members must
own all 6 soon after, not at librdkafka's next metadata refresh (five minutes by
default). Prints "growth ok: ..." with how long each step took.
"""

import argparse
import sys
import threading
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap-server", required=True)
    p.add_argument("--strategy", default="range")
    a = p.parse_args()
    bs = a.bootstrap_server
    topic = f"growth-{a.strategy}"
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(topic, 4, 1)]).values():
        f.result()
    owned = {}
    stop = threading.Event()

    def member(name):
        c = Consumer(
            {
                "bootstrap.servers": bs,
                "group.id": topic,
                "client.id": name,
                "partition.assignment.strategy": a.strategy,
            }
        )
        c.subscribe([topic])
        while not stop.is_set():
            c.poll(0.05)
            owned[name] = {tp.partition for tp in c.assignment()}
        c.close()

    def wait_for(what, n, timeout):
        start = time.time()
        while time.time() - start < timeout:
            parts = [owned.get(m, set()) for m in ("a", "b")]
            if all(parts) and set().union(*parts) == set(range(n)) and not parts[0] & parts[1]:
                return time.time() - start
            time.sleep(0.05)
        stop.set()
        sys.exit(f"FAIL: {what}: owned {owned} after {timeout}s")

    threads = [threading.Thread(target=member, args=(m,)) for m in ("a", "b")]
    for t in threads:
        t.start()
    joined = wait_for("two members share 4 partitions", 4, 60)
    for f in admin.create_partitions([NewPartitions(topic, 6)]).values():
        f.result()
    # Far below the five-minute refresh that would otherwise bring the news.
    grown = wait_for("two members share 6 partitions", 6, 30)
    stop.set()
    for t in threads:
        t.join()
    print(f"growth ok: {a.strategy}: shared in {joined:.1f}s, new partitions owned {grown:.1f}s after CreatePartitions", flush=True)


if __name__ == "__main__":
    main()
