//! A real third-party client (librdkafka via the rdkafka crate) against a real `fjord`
//! process: 100k keyed records for every codec under each of acks 0, 1 and -1 (1.5M in
//! all), consumed back intact.

use std::collections::HashMap;
use std::time::Duration;

use fjord_tests::{client_config, create_topic, wait_until, Node};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "roundtrip";
const PARTITIONS: i32 = 3;
const PER_RUN: usize = 100_000;
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const ACKS: [&str; 3] = ["0", "1", "-1"];

struct Sent {
    key: String,
    headers: Vec<(String, String)>,
    timestamp: i64,
}

fn value_of(codec: &str, acks: &str, i: usize) -> String {
    format!("{codec}/{acks}-{i}-{}", "x".repeat(i % 97))
}

#[test]
fn every_codec_and_acks_level_round_trips() {
    let node = Node::start();
    create_topic(&node.bootstrap(), TOPIC, PARTITIONS, &[]);
    let base_ts = 1_700_000_000_000i64;
    let mut sent: HashMap<String, Sent> = HashMap::new();

    for codec in CODECS {
        for acks in ACKS {
            let producer: BaseProducer = client_config(&node.bootstrap())
                .set("acks", acks)
                .set("compression.type", codec)
                .set("linger.ms", "5")
                .set("queue.buffering.max.messages", "200000")
                .create()
                .expect("producer");
            for i in 0..PER_RUN {
                let key = format!("key-{}", i % 1000);
                let value = value_of(codec, acks, i);
                let headers = vec![
                    ("codec".to_string(), codec.to_string()),
                    ("acks".to_string(), acks.to_string()),
                ];
                let timestamp = base_ts + i as i64;
                let mut owned = OwnedHeaders::new();
                for (k, v) in &headers {
                    owned = owned.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                let mut record = BaseRecord::to(TOPIC)
                    .key(&key)
                    .payload(&value)
                    .headers(owned)
                    .timestamp(timestamp);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, r)) => {
                            producer.poll(Duration::from_millis(5));
                            record = r;
                        }
                    }
                }
                sent.insert(
                    value,
                    Sent {
                        key,
                        headers,
                        timestamp,
                    },
                );
            }
            producer.flush(Duration::from_secs(60)).expect("flush");
            assert_eq!(
                producer.in_flight_count(),
                0,
                "{codec}/acks={acks}: undelivered records"
            );
        }
    }

    let consumer: BaseConsumer = client_config(&node.bootstrap())
        .set("group.id", "roundtrip-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let total = sent.len();
    let mut seen = 0usize;
    let mut key_partition: HashMap<String, i32> = HashMap::new();
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    wait_until("all records consumed", Duration::from_secs(300), || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            let value = String::from_utf8(m.payload().expect("value").to_vec()).expect("utf8");
            let s = sent
                .remove(&value)
                .unwrap_or_else(|| panic!("unexpected or duplicate record {value}"));
            let key = std::str::from_utf8(m.key().expect("key")).expect("utf8");
            assert_eq!(key, s.key);
            assert_eq!(m.timestamp().to_millis(), Some(s.timestamp));
            let headers: Vec<(String, String)> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_string(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(headers, s.headers);
            let p = *key_partition.entry(s.key).or_insert(m.partition());
            assert_eq!(p, m.partition(), "a key must stay in one partition");
            let prev = last_offset.insert(m.partition(), m.offset());
            assert!(
                prev.is_none_or(|o| o < m.offset()),
                "offsets grow within a partition"
            );
            seen += 1;
        }
        (seen == total).then_some(())
    });
    assert!(sent.is_empty());
    assert_eq!(key_partition.len(), 1000);
}
