//! Topic `compression.type`: with a codec named, the leader recompresses every batch a
//! producer sent with another codec, and consumers read the same records back; with
//! `producer` (the default) batches are stored as sent.

use std::time::Duration;

use fjord_tests::wire::Wire;
use fjord_tests::{client_config, create_topic, topic_name, wait_until, Node};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// The codec bits of every batch stored in `topic`-0, read raw.
fn stored_codecs(node: &Node, topic: &str) -> Vec<i16> {
    let mut wire = Wire::connect(&node.bootstrap());
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 24)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 24)])]);
    let resp = wire.call(12, &req);
    let records = resp.responses[0].partitions[0]
        .records
        .clone()
        .expect("records");
    let mut codecs = Vec::new();
    let mut rest = &records[..];
    while rest.len() >= 61 {
        let len = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) as usize + 12;
        codecs.push(i16::from_be_bytes([rest[21], rest[22]]) & 0x07);
        rest = &rest[len.min(rest.len())..];
    }
    codecs
}

fn produce(node: &Node, topic: &str, codec: &str, n: usize) {
    let producer: BaseProducer = client_config(&node.bootstrap())
        .set("compression.type", codec)
        .set("linger.ms", "20")
        .create()
        .expect("producer");
    for i in 0..n {
        let v = format!(
            "value {i} of a record that compresses: {}",
            "abc".repeat(20)
        );
        producer
            .send(BaseRecord::to(topic).key(&format!("k{i}")).payload(&v))
            .map_err(|(e, _)| e)
            .expect("queued");
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");
}

fn consume(node: &Node, topic: &str, n: usize) -> Vec<String> {
    let consumer: BaseConsumer = client_config(&node.bootstrap())
        .set("group.id", "compression-type")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut got = Vec::new();
    wait_until("every record", Duration::from_secs(30), || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("record");
            got.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
        (got.len() >= n).then_some(())
    });
    got
}

#[test]
fn the_topic_codec_is_what_is_stored_and_consumers_read_every_record() {
    let node = Node::start();
    let n = 500;
    for (topic_codec, producer_codec, stored) in [
        ("zstd", "none", 4),
        ("gzip", "lz4", 1),
        ("uncompressed", "snappy", 0),
        ("lz4", "zstd", 3),
        ("snappy", "gzip", 2),
        ("producer", "lz4", 3),
    ] {
        let topic = format!("codec-{topic_codec}");
        create_topic(
            &node.bootstrap(),
            &topic,
            1,
            &[
                ("compression.type", topic_codec),
                ("compression.gzip.level", "9"),
            ],
        );
        produce(&node, &topic, producer_codec, n);
        let codecs = stored_codecs(&node, &topic);
        assert!(!codecs.is_empty());
        assert!(
            codecs.iter().all(|c| *c == stored),
            "topic {topic_codec}, producer {producer_codec}: stored codecs {codecs:?}"
        );
        let got = consume(&node, &topic, n);
        for (i, v) in got.iter().enumerate() {
            assert!(v.starts_with(&format!("value {i} ")), "{topic}: {v}");
        }
    }
}
