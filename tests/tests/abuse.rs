//! Attacks on resources, each against its own node, with the node's peak resident
//! memory (VmHWM) measured from just before the attack. The bounds asserted are the ones
//! docs/architecture.md states; before these limits existed the same attacks took the
//! figures in each test's comment.
//!
//! - CreateTopics with a million and with 2^31-1 partitions (18 GB and a dead node).
//! - Five connections each sending a 100 MiB request (500 MiB).
//! - Decompression bombs to a compacted topic (1 GiB).
//! - Twenty connections fetching 2^31-1 bytes and never reading (1.1 GiB).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use fjord_tests::hostile::{self, raw_batch, ZSTD};
use fjord_tests::wire::Wire;
use fjord_tests::{client_config, create_topic, topic_name, Node};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreateTopicsRequest, FetchRequest, ProduceRequest,
};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const MIB: u64 = 1 << 20;
const POLICY_VIOLATION: i16 = 44;
const INVALID_RECORD: i16 = 87;

fn grown_mib(node: &Node, before: u64) -> f64 {
    node.peak_rss_bytes().saturating_sub(before) as f64 / MIB as f64
}

fn create(name: &str, partitions: i32) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
}

/// Before: a million partitions were accepted; 2^31-1 grew a broker to 18 GB.
#[test]
fn absurd_partition_counts_are_refused_before_anything_is_allocated() {
    let node = Node::start_with(&["--override", "max.partitions.per.broker=200"]);
    let mut wire = Wire::connect(&node.bootstrap());
    let before = node.rss_bytes();
    node.reset_peak_rss();
    for partitions in [1_000_000, i32::MAX] {
        let r = wire.call(7, &create("huge", partitions));
        assert_eq!(r.topics[0].error_code, POLICY_VIOLATION, "{partitions}");
        assert!(r.topics[0]
            .error_message
            .as_ref()
            .is_some_and(|m| m.contains("10000")));
    }
    // Several topics that together exceed the per-request limit all fail.
    let many = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(
            (0..3)
                .map(|i| {
                    CreatableTopic::default()
                        .with_name(topic_name(&format!("part-{i}")))
                        .with_num_partitions(4_000)
                        .with_replication_factor(1)
                })
                .collect(),
        );
    let r = wire.call(7, &many);
    assert!(r.topics.iter().all(|t| t.error_code == POLICY_VIOLATION));

    // The per-broker limit: 150 fit, 100 more do not, then the topic may not grow.
    assert_eq!(wire.call(7, &create("fits", 150)).topics[0].error_code, 0);
    let r = wire.call(7, &create("overflows", 100));
    assert_eq!(r.topics[0].error_code, POLICY_VIOLATION);
    assert!(r.topics[0]
        .error_message
        .as_ref()
        .is_some_and(|m| m.contains("max.partitions.per.broker")));
    let grow = |count| {
        CreatePartitionsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name("fits"))
                .with_count(count)])
    };
    for count in [i32::MAX, 300] {
        let r = wire.call(3, &grow(count));
        assert_eq!(r.results[0].error_code, POLICY_VIOLATION, "to {count}");
    }
    assert_eq!(wire.call(3, &grow(160)).results[0].error_code, 0);
    let grown = grown_mib(&node, before);
    println!("partition requests: peak memory grew {grown:.1} MiB");
    assert!(grown < 64.0, "grew {grown:.1} MiB");
}

/// Sends a Produce frame announcing `len` bytes and then streams that many bytes.
fn send_huge_frame(addr: String, len: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut s) = TcpStream::connect(&addr) else {
            return;
        };
        let _ = s.set_write_timeout(Some(Duration::from_secs(120)));
        let mut head = (len as i32).to_be_bytes().to_vec();
        head.extend_from_slice(&0i16.to_be_bytes()); // Produce
        head.extend_from_slice(&9i16.to_be_bytes());
        head.extend_from_slice(&1i32.to_be_bytes());
        if s.write_all(&head).is_err() {
            return;
        }
        let chunk = vec![0x5au8; 1 << 20];
        let mut sent = head.len() - 4;
        while sent < len {
            let n = chunk.len().min(len - sent);
            if s.write_all(&chunk[..n]).is_err() {
                return; // closed after its frame failed to decode: expected
            }
            sent += n;
        }
        let mut sink = [0u8; 64];
        let _ = s.read(&mut sink);
    })
}

/// Before: five connections each sending 100 MiB took 500 MiB.
#[test]
fn concurrent_huge_requests_share_the_request_pool() {
    let mut node = Node::start();
    let before = node.rss_bytes();
    node.reset_peak_rss();
    let len = 100 * MIB as usize - 16;
    let senders: Vec<_> = (0..5)
        .map(|_| send_huge_frame(node.bootstrap(), len))
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    let grown = grown_mib(&node, before);
    println!("five 100 MiB requests: peak memory grew {grown:.1} MiB");
    assert!(node.is_running());
    // queued.max.request.bytes is 100 MiB: one such frame at a time.
    assert!(grown < 100.0 + 48.0, "grew {grown:.1} MiB");
}

/// A zstd batch of one record whose 60 MiB value is zeros (a few KiB compressed).
fn bomb(keyed: bool) -> Bytes {
    let value_len: i64 = 60 << 20;
    let mut body = vec![0u8];
    hostile::put_varint(&mut body, 0);
    hostile::put_varint(&mut body, 0);
    if keyed {
        hostile::put_varint(&mut body, 1);
        body.push(b'k');
    } else {
        hostile::put_varint(&mut body, -1);
    }
    hostile::put_varint(&mut body, value_len);
    let mut record = Vec::new();
    hostile::put_varint(&mut record, body.len() as i64 + value_len + 1);
    record.extend_from_slice(&body);
    record.resize(record.len() + value_len as usize, 0);
    record.push(0); // no headers
    raw_batch(1, 0, ZSTD, &hostile::zstd(&record))
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

/// Before: decompression bombs to a compacted topic peaked at 1 GiB.
#[test]
fn decompression_bombs_are_inflated_as_a_stream() {
    let node = Node::start();
    create_topic(
        &node.bootstrap(),
        "table",
        1,
        &[("cleanup.policy", "compact")],
    );
    let (keyless, keyed) = (bomb(false), bomb(true));
    println!("bomb: {} bytes, 60 MiB inflated", keyed.len());
    let before = node.rss_bytes();
    node.reset_peak_rss();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (addr, keyless, keyed) = (node.bootstrap(), keyless.clone(), keyed.clone());
            std::thread::spawn(move || {
                let mut wire = Wire::connect(&addr);
                for _ in 0..3 {
                    let r = wire.call(9, &produce("table", keyless.clone()));
                    assert_eq!(
                        r.responses[0].partition_responses[0].error_code, INVALID_RECORD,
                        "the keyless record is refused"
                    );
                    let r = wire.call(9, &produce("table", keyed.clone()));
                    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let grown = grown_mib(&node, before);
    println!("24 bombs of 60 MiB: peak memory grew {grown:.1} MiB");
    assert!(grown < 32.0, "grew {grown:.1} MiB");
}

/// Before: twenty connections fetching 2^31-1 bytes and never reading took 1.1 GiB.
#[test]
fn unread_fetch_answers_share_the_response_budget() {
    let node = Node::start_with(&["--override", "queued.max.response.bytes=67108864"]);
    create_topic(&node.bootstrap(), "big", 1, &[]);
    let producer: BaseProducer = client_config(&node.bootstrap())
        .set("linger.ms", "10")
        .create()
        .expect("producer");
    let value = vec![b'x'; 512 * 1024];
    for _ in 0..128 {
        loop {
            match producer.send(BaseRecord::<(), _>::to("big").payload(&value)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(50));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("64 MiB written");
    let before = node.rss_bytes();
    node.reset_peak_rss();
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(i32::MAX)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("big"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(i32::MAX)])]);
    let mut idle: Vec<Wire> = (0..20)
        .map(|_| {
            let mut w = Wire::connect(&node.bootstrap());
            w.send(12, &fetch);
            w
        })
        .collect();
    // Every fetch has been handled once the node has counted them all; their answers
    // sit unread.
    fjord_tests::wait_until("20 fetches handled", Duration::from_secs(60), || {
        (node.metric("fjord_requests_total{api=\"Fetch\"}") >= 20.0).then_some(())
    });
    let held = node.metric("fjord_response_memory_bytes") / MIB as f64;
    let grown = grown_mib(&node, before);
    println!(
        "20 unread 2 GiB fetches: {held:.1} MiB held in answers, peak memory grew {grown:.1} MiB"
    );
    // The budget, and beyond it a first batch (about 1 MiB here) per answer.
    assert!(held <= 64.0 + 21.0, "{held:.1} MiB held");
    assert!(grown < 64.0 + 21.0 + 48.0, "grew {grown:.1} MiB");
    // A reader gets its answer (possibly smaller, never an error), and once the idle
    // connections go, so does their memory.
    let r = idle[0].receive::<FetchRequest>(12, 1);
    assert_eq!(r.responses[0].partitions[0].error_code, 0);
    idle.clear();
    fjord_tests::wait_until("answers released", Duration::from_secs(30), || {
        (node.metric("fjord_response_memory_bytes") == 0.0).then_some(())
    });
}
