"""Admin APIs with kafka-python against a Fjord cluster: each check is what an operator's
tool asks, and what Kafka answers.

  --bootstrap-server B   any broker of the cluster
  --brokers N            how many brokers (and voters) the cluster has
  --data-dir-of ID=DIR   (repeatable) each broker's data directory, as given to it

Checks: CreateTopics answers a null error message on success; DescribeConfigs of a
broker includes its static settings with their sources; DescribeLogDirs reports each
broker's replicas and volume; AlterReplicaLogDirs accepts the dir a replica is in and
refuses others; DescribeQuorum names the leader, every voter and their endpoints;
DescribeTopicPartitions pages through partitions with a cursor; ListConfigResources
lists topics and brokers; a transactional producer fenced by a newer one is told
PRODUCER_FENCED (or INVALID_PRODUCER_EPOCH) when it adds a partition, not an unknown
error. Prints one "ok:" line per check.
"""

import argparse
import os
import sys
import time

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import (
    InvalidProducerEpochError,
    KafkaError,
    LogDirNotFoundError,
    NoError,
    ProducerFencedError,
)

TOPIC = "admin-apis"
PARTITIONS = 5


def log(*args):
    print(*args, flush=True)


def fail(msg):
    log("FAIL:", msg)
    sys.exit(1)


def wait_for(what, f, timeout=30.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            got = f()
            if got:
                return got
        except KafkaError as e:
            last = e
        time.sleep(0.1)
    fail(f"timed out waiting for {what} (last error: {last})")


def create_topic(admin, brokers):
    rf = min(3, brokers)
    result = admin.create_topics(
        {TOPIC: {"num_partitions": PARTITIONS, "replication_factor": rf}}
    )
    [t] = result["topics"]
    if t["error_code"] != 0:
        fail(f"create: {t}")
    if t["error_message"] is not None:
        fail(f"success carries error_message {t['error_message']!r}; Kafka sends null")
    admin.wait_for_topics([TOPIC])
    log("ok: CreateTopics success has a null error_message")
    # One record per partition on every in-sync replica, so each has bytes on disk.
    producer = KafkaProducer(bootstrap_servers=admin.config["bootstrap_servers"], acks="all")
    for part in range(PARTITIONS):
        producer.send(TOPIC, b"x" * 100, partition=part).get(timeout=30)
    producer.close()


def broker_configs(admin, broker_id):
    res = admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, str(broker_id))],
        config_filter="all",
    )
    return res["broker"][str(broker_id)]


def describe_configs(admin, node_ids):
    for b in node_ids:
        configs = broker_configs(admin, b)
        for key in ("advertised.listeners", "listeners", "log.dirs", "node.id",
                    "controller.quorum.voters", "process.roles", "num.partitions",
                    "ssl.client.auth", "sasl.enabled.mechanisms", "super.users"):
            if key not in configs:
                fail(f"broker {b} config lacks {key}: {sorted(configs)}")
        node_id = configs["node.id"]
        if node_id["value"] != str(b):
            fail(f"broker {b} says node.id {node_id}")
        listeners = configs["listeners"]
        if not listeners["value"] or "://" not in listeners["value"]:
            fail(f"broker {b} listeners {listeners}")
        if not listeners["read_only"]:
            fail(f"listeners must be read-only: {listeners}")
        if configs.get("ssl.client.auth", {}).get("value") != "none":
            fail(f"broker {b} ssl.client.auth {configs.get('ssl.client.auth')}")
        jaas = configs.get("sasl.jaas.config", {})
        if not jaas.get("is_sensitive") or jaas.get("value") is not None:
            fail(f"sasl.jaas.config must be sensitive and hidden: {jaas}")
    log(f"ok: DescribeConfigs BROKER has listeners, log.dirs and the rest on {len(node_ids)} brokers")


def describe_log_dirs(admin, node_ids, data_dirs):
    replicas = 0
    result = admin.describe_log_dirs()
    by_broker = {r["broker"]: r["log_dirs"] for r in result}
    for b in node_ids:
        dirs = by_broker.get(b)
        if not dirs or len(dirs) != 1:
            fail(f"broker {b} log dirs {dirs}")
        d = dirs[0]
        if d["error_code"] != 0:
            fail(f"broker {b}: {d}")
        want = os.path.realpath(data_dirs[b])
        if d["log_dir"] != want:
            fail(f"broker {b} log dir {d['log_dir']!r}, given {want!r}")
        if not (0 < d["usable_bytes"] <= d["total_bytes"]):
            fail(f"broker {b} volume {d['usable_bytes']} of {d['total_bytes']}")
        for t in d["topics"]:
            if t["name"] != TOPIC:
                continue
            for p in t["partitions"]:
                replicas += 1
                if p["partition_size"] <= 0 or p["is_future_key"]:
                    fail(f"broker {b} partition {p}")
    want = PARTITIONS * min(3, len(node_ids))
    if replicas != want:
        fail(f"{replicas} replicas of {TOPIC} described, want {want}")
    log(f"ok: DescribeLogDirs reports {replicas} replicas with their sizes")
    return by_broker


def alter_replica_log_dirs(admin, by_broker):
    broker, dirs = sorted(by_broker.items())[0]
    here = dirs[0]["log_dir"]
    part = next(
        p["partition_index"]
        for t in dirs[0]["topics"] if t["name"] == TOPIC
        for p in t["partitions"]
    )
    same = admin.alter_replica_log_dirs({(TOPIC, part, broker): here})
    if list(same.values()) != [NoError]:
        fail(f"moving a replica to its own dir: {same}")
    other = admin.alter_replica_log_dirs({(TOPIC, part, broker): "/no/such/log/dir"})
    if list(other.values()) != [LogDirNotFoundError]:
        fail(f"moving a replica to an unknown dir: {other}")
    log("ok: AlterReplicaLogDirs accepts the replica's own dir and refuses an unknown one")


def describe_quorum(admin, node_ids):
    def ready():
        q = admin.describe_metadata_quorum()
        [t] = q["topics"]
        [p] = t["partitions"]
        voters = sorted(v["replica_id"] for v in p["current_voters"])
        return (q, p) if voters == sorted(node_ids) and p["leader_id"] in node_ids else None

    q, p = wait_for("a quorum of every node", ready)
    if q["topics"][0]["topic_name"] != "__cluster_metadata" or p["error"] is not None:
        fail(f"quorum {q}")
    if p["high_watermark"] <= 0 or p["leader_epoch"] <= 0:
        fail(f"quorum partition {p}")
    leader = next(v for v in p["current_voters"] if v["replica_id"] == p["leader_id"])
    if leader["log_end_offset"] < p["high_watermark"]:
        fail(f"leader end {leader} below the high watermark {p['high_watermark']}")
    nodes = sorted(n["node_id"] for n in q.get("nodes", []))
    if nodes != sorted(node_ids):
        fail(f"quorum nodes {q.get('nodes')}")
    log(f"ok: DescribeQuorum: leader {p['leader_id']}, {len(node_ids)} voters, "
        f"high watermark {p['high_watermark']}")


def describe_topic_partitions(admin):
    seen = []
    cursor = None
    pages = 0
    while True:
        page = admin.describe_topic_partitions(
            [TOPIC, "no-such-topic"], response_partition_limit=2, cursor=cursor
        )
        pages += 1
        for t in page["topics"]:
            if t["name"] == "no-such-topic":
                if t["error_code"] != 3:
                    fail(f"unknown topic answered {t}")
                continue
            if t["error_code"] != 0 or len(t["partitions"]) > 2:
                fail(f"page {pages}: {t}")
            for p in t["partitions"]:
                if p["leader_id"] < 0 or p["leader_id"] not in p["isr_nodes"]:
                    fail(f"partition {p}")
                seen.append(p["partition_index"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        if pages > 10:
            fail("the cursor never ends")
    if seen != list(range(PARTITIONS)):
        fail(f"pages covered partitions {seen}")
    log(f"ok: DescribeTopicPartitions paged {PARTITIONS} partitions in {pages} answers")


def list_config_resources(admin, node_ids):
    listed = admin.list_config_resources(["TOPIC", "BROKER"])
    if TOPIC not in listed.get("topic", []):
        fail(f"topics listed {listed}")
    if sorted(listed.get("broker", [])) != sorted(str(b) for b in node_ids):
        fail(f"brokers listed {listed}")
    log("ok: ListConfigResources lists topics and brokers")


def fenced_producer(bs):
    topic = "fence-kp"
    admin = KafkaAdminClient(bootstrap_servers=bs)
    admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    admin.wait_for_topics([topic])
    admin.close()
    old = KafkaProducer(bootstrap_servers=bs, transactional_id="kp-fence")
    old.init_transactions()
    old.begin_transaction()
    old.send(topic, b"zombie", partition=0).get(timeout=30)
    new = KafkaProducer(bootstrap_servers=bs, transactional_id="kp-fence")
    new.init_transactions()
    # The old producer now adds a partition it has not written: AddPartitionsToTxn with
    # its stale epoch.
    try:
        old.send(topic, b"zombie-2", partition=1).get(timeout=30)
        old.commit_transaction()
    except (ProducerFencedError, InvalidProducerEpochError) as e:
        log(f"ok: a fenced producer adding a partition is told {type(e).__name__}")
    except KafkaError as e:
        fail(f"a fenced producer was told {type(e).__name__}: {e}")
    else:
        fail("the fenced producer committed")
    finally:
        new.close()
        old.close(timeout=1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap-server", required=True)
    p.add_argument("--brokers", type=int, required=True)
    p.add_argument("--data-dir-of", action="append", default=[])
    a = p.parse_args()
    data_dirs = {}
    for item in a.data_dir_of:
        k, _, v = item.partition("=")
        data_dirs[int(k)] = v
    admin = KafkaAdminClient(bootstrap_servers=a.bootstrap_server)
    node_ids = wait_for(
        f"{a.brokers} brokers",
        lambda: (lambda ids: ids if len(ids) == a.brokers else None)(
            sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"])
        ),
    )
    create_topic(admin, a.brokers)
    describe_configs(admin, node_ids)
    by_broker = describe_log_dirs(admin, node_ids, data_dirs)
    alter_replica_log_dirs(admin, by_broker)
    describe_quorum(admin, node_ids)
    describe_topic_partitions(admin)
    list_config_resources(admin, node_ids)
    fenced_producer(a.bootstrap_server)
    admin.close()
    log("all admin API checks passed")


if __name__ == "__main__":
    main()
