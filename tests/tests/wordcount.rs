//! The README's word count (docs/examples/wordcount.py): two members of one group split
//! lines into words and count them, and the output table holds every word's exact count.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Buf;
use fjord_tests::wire::Wire;
use fjord_tests::{client_config, create_topic, python, repo_root, wait_until, Node};
use kafka_protocol::messages::{ConsumerProtocolAssignment, DescribeGroupsRequest, GroupId};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

const VOCABULARY: &[&str] = &[
    "kafka",
    "fjord",
    "raft",
    "log",
    "segment",
    "partition",
    "leader",
    "follower",
    "offset",
    "group",
    "commit",
    "replica",
];

struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The latest value of every key of `topic` (a compacted table of two partitions).
fn table(bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "wordcount-checker")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in 0..2 {
        if let Ok((low, high)) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
            if high > low {
                tpl.add_partition_offset(topic, p, Offset::Offset(low))
                    .expect("tpl");
                ends.insert(p, high);
            }
        }
    }
    let mut out = BTreeMap::new();
    if ends.is_empty() {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    while !ends.is_empty() {
        let Some(Ok(m)) = consumer.poll(Duration::from_secs(2)) else {
            break;
        };
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        out.insert(key, value);
        if ends
            .get(&m.partition())
            .is_some_and(|h| m.offset() + 1 >= *h)
        {
            ends.remove(&m.partition());
        }
    }
    out
}

/// How many members of `group` hold at least one partition.
fn busy_members(bootstrap: &str, group: &str) -> usize {
    let resp = Wire::connect(bootstrap).call(
        5,
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]),
    );
    resp.groups
        .first()
        .map(|g| {
            g.members
                .iter()
                .filter(|m| {
                    let mut b = m.member_assignment.clone();
                    if b.remaining() < 2 {
                        return false;
                    }
                    let version = b.get_i16();
                    ConsumerProtocolAssignment::decode(&mut b, version.clamp(0, 3)).is_ok_and(|a| {
                        a.assigned_partitions
                            .iter()
                            .any(|t| !t.partitions.is_empty())
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn two_group_members_count_every_word_exactly() {
    let node = Node::start_with(&["--override", "group.initial.rebalance.delay.ms=0"]);
    let bootstrap = node.bootstrap();
    create_topic(&bootstrap, "lines", 2, &[]);
    let spawn = || {
        Member(
            Command::new(python())
                .arg(repo_root().join("docs/examples/wordcount.py"))
                .args(["--bootstrap-server", &bootstrap])
                .args([
                    "--input",
                    "lines",
                    "--output",
                    "word-counts",
                    "--group",
                    "wordcount",
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("start wordcount.py"),
        )
    };
    let _a = spawn();
    let _b = spawn();
    // Both members hold a share of the words before any line arrives.
    wait_until("two busy counting members", Duration::from_secs(60), || {
        (busy_members(&bootstrap, "wordcount-count") == 2).then_some(())
    });

    let producer: ThreadedProducer<DefaultProducerContext> =
        client_config(&bootstrap).create().expect("producer");
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..2_000usize {
        let words: Vec<&str> = (0..(i % 7) + 1)
            .map(|j| VOCABULARY[(i * 31 + j * 17) % VOCABULARY.len()])
            .collect();
        for w in &words {
            *expected.entry(w.to_string()).or_default() += 1;
        }
        let line = words.join(" ").to_uppercase();
        let key = i.to_string();
        producer
            .send(BaseRecord::to("lines").key(&key).payload(&line))
            .expect("queue line");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let expected: BTreeMap<String, String> = expected
        .into_iter()
        .map(|(w, n)| (w, n.to_string()))
        .collect();

    wait_until("every word counted", Duration::from_secs(120), || {
        (table(&bootstrap, "word-counts") == expected).then_some(())
    });
    assert_eq!(
        busy_members(&bootstrap, "wordcount-count"),
        2,
        "both members still count a share of the words"
    );
}
