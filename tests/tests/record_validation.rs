//! Record validation as Kafka's LogValidator does it, against a real node: batches with
//! a valid CRC but lying counts, offset deltas, lengths or varints, compressed payloads
//! that do not inflate, decompression bombs, and keyless records on compacted topics.
//! Each gets Kafka's error (with per-record errors, KIP-467, where a record is to blame),
//! none reaches the log, and the high watermark never moves for them. librdkafka's own
//! test of per-record errors (0011, `invalid_record_fail_cnt`) passes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fjord_tests::hostile::{self, raw_batch, record, records, ZSTD};
use fjord_tests::wire::Wire;
use fjord_tests::{client_config, create_topic, topic_name, wait_until, Node};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ProduceRequest};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const CORRUPT_MESSAGE: i16 = 2;
const INVALID_RECORD: i16 = 87;

fn produce(wire: &mut Wire, topic: &str, records: Bytes) -> PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let mut resp = wire.call(9, &req);
    resp.responses.remove(0).partition_responses.remove(0)
}

fn high_watermark(wire: &mut Wire, topic: &str) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    wire.call(7, &req).topics[0].partitions[0].offset
}

fn indices(p: &PartitionProduceResponse) -> Vec<i32> {
    p.record_errors.iter().map(|e| e.batch_index).collect()
}

#[test]
fn malformed_batches_get_kafka_errors_and_never_reach_the_log() {
    let node = Node::start();
    create_topic(&node.bootstrap(), "v", 1, &[]);
    create_topic(&node.bootstrap(), "c", 1, &[("cleanup.policy", "compact")]);
    let mut wire = Wire::connect(&node.bootstrap());
    let good = produce(&mut wire, "v", raw_batch(3, 2, 0, &records(3, 10)));
    assert_eq!((good.error_code, good.base_offset), (0, 0));
    assert_eq!(high_watermark(&mut wire, "v"), 3);

    // Each case: what it is, the batch, the error, the records blamed.
    let three = records(3, 10);
    let mut negative_key = record(0, Some(b"a"), b"x");
    let mut body = vec![0u8];
    hostile::put_varint(&mut body, 0);
    hostile::put_varint(&mut body, 1);
    hostile::put_varint(&mut body, -5); // key length
    hostile::put_varint(&mut body, 0);
    hostile::put_varint(&mut body, 0);
    hostile::put_varint(&mut negative_key, body.len() as i64);
    negative_key.extend_from_slice(&body);
    let mut eleven_byte_varint = vec![0xffu8; 10];
    eleven_byte_varint.push(0x01);
    let garbage: Vec<u8> = (0..500u32).map(|i| (i * 131 % 251) as u8).collect();
    // One record whose value is 80 MiB of zeros: a few KiB compressed.
    let mut bomb = Vec::new();
    let mut bomb_body = vec![0u8];
    hostile::put_varint(&mut bomb_body, 0);
    hostile::put_varint(&mut bomb_body, 0);
    hostile::put_varint(&mut bomb_body, -1);
    hostile::put_varint(&mut bomb_body, 80 << 20);
    hostile::put_varint(&mut bomb, bomb_body.len() as i64 + (80 << 20) + 1);
    bomb.extend_from_slice(&bomb_body);
    bomb.resize(bomb.len() + (80 << 20), 0);
    bomb.push(0);
    let bomb = hostile::zstd(&bomb);
    let mut two_batches = raw_batch(1, 0, 0, &records(1, 5)).to_vec();
    two_batches.extend_from_slice(&raw_batch(1, 0, 0, &records(1, 5)));

    let cases: Vec<(&str, Bytes, i16, Vec<i32>)> = vec![
        (
            "1000 records declared, 3 present",
            raw_batch(1000, 999, 0, &three),
            INVALID_RECORD,
            vec![3],
        ),
        (
            "last offset delta 2^31-1",
            raw_batch(3, i32::MAX, 0, &three),
            INVALID_RECORD,
            vec![],
        ),
        (
            "a negative key length",
            raw_batch(2, 1, 0, &negative_key),
            INVALID_RECORD,
            vec![1],
        ),
        (
            "an 11-byte varint",
            raw_batch(1, 0, 0, &eleven_byte_varint),
            INVALID_RECORD,
            vec![0],
        ),
        (
            "garbage records",
            raw_batch(5, 4, 0, &garbage),
            INVALID_RECORD,
            vec![0],
        ),
        (
            "a zstd payload that does not inflate",
            raw_batch(3, 2, ZSTD, &garbage),
            CORRUPT_MESSAGE,
            vec![],
        ),
        (
            "a decompression bomb",
            raw_batch(1, 0, ZSTD, &bomb),
            INVALID_RECORD,
            vec![],
        ),
        (
            "two batches for one partition",
            Bytes::from(two_batches),
            INVALID_RECORD,
            vec![],
        ),
    ];
    for (what, batch, code, blamed) in cases {
        let p = produce(&mut wire, "v", batch);
        assert_eq!(p.error_code, code, "{what}: {:?}", p.error_message);
        assert_eq!(indices(&p), blamed, "{what}");
        assert!(
            p.error_message.as_ref().is_some_and(|m| !m.is_empty()),
            "{what}: a message says why"
        );
    }
    assert_eq!(
        high_watermark(&mut wire, "v"),
        3,
        "nothing refused moved the high watermark"
    );

    // Compacted topic: the keyless records, and only they, are blamed.
    let mut mixed = Vec::new();
    for i in 0..10 {
        let key: Option<&[u8]> = if i % 3 == 0 { None } else { Some(b"k") };
        mixed.extend(record(i, key, b"v"));
    }
    let p = produce(&mut wire, "c", raw_batch(10, 9, 0, &mixed));
    assert_eq!(p.error_code, INVALID_RECORD);
    assert_eq!(indices(&p), vec![0, 3, 6, 9]);
    assert_eq!(high_watermark(&mut wire, "c"), 0);

    // The log holds exactly the three good records, readable by a real client.
    let consumer: BaseConsumer = client_config(&node.bootstrap())
        .set("group.id", "record-validation")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("v", 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut seen = Vec::new();
    wait_until("the good records", Duration::from_secs(30), || {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("a valid record");
            seen.push((m.offset(), m.key().map(<[u8]>::to_vec)));
        }
        (seen.len() >= 3).then_some(())
    });
    assert_eq!(
        seen,
        vec![
            (0, Some(b"k0".to_vec())),
            (1, Some(b"k1".to_vec())),
            (2, Some(b"k2".to_vec()))
        ]
    );
}

/// Delivery outcomes of a librdkafka producer, by error.
#[derive(Clone, Default)]
struct Outcomes(Arc<Mutex<Vec<Option<RDKafkaErrorCode>>>>);

impl ClientContext for Outcomes {}

impl ProducerContext for Outcomes {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(_) => None,
            Err((e, _)) => Some(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail)),
        };
        self.0.lock().expect("outcomes").push(outcome);
    }
}

/// librdkafka's test 0011 (`test_message_single_partition_record_fail`): on a compacted
/// topic every tenth record has no key. Sent in one batch, those fail with
/// INVALID_RECORD and the rest with _INVALID_DIFFERENT_RECORD; sent one per batch, the
/// rest are delivered.
#[test]
fn librdkafka_fails_exactly_the_keyless_records() {
    let node = Node::start();
    for (variation, batch_size) in [(0, "1000000"), (1, "1")] {
        let topic = format!("compacted-{variation}");
        create_topic(
            &node.bootstrap(),
            &topic,
            1,
            &[("cleanup.policy", "compact")],
        );
        let outcomes = Outcomes::default();
        let producer: ThreadedProducer<Outcomes> = client_config(&node.bootstrap())
            .set("batch.size", batch_size)
            .set("linger.ms", "100")
            .create_with_context(outcomes.clone())
            .expect("producer");
        for i in 0..100 {
            let value = format!("test message #{i}");
            let mut rec = BaseRecord::<str, str>::to(&topic)
                .payload(&value)
                .partition(0);
            if i % 10 != 0 {
                rec = rec.key(&value);
            }
            producer.send(rec).map_err(|(e, _)| e).expect("queued");
        }
        let all = wait_until("every delivery report", Duration::from_secs(60), || {
            let o = outcomes.0.lock().expect("outcomes").clone();
            (o.len() == 100).then_some(o)
        });
        let count = |want: Option<RDKafkaErrorCode>| all.iter().filter(|o| **o == want).count();
        assert_eq!(
            count(Some(RDKafkaErrorCode::InvalidRecord)),
            10,
            "variation {variation}: {all:?}"
        );
        if variation == 0 {
            assert_eq!(count(Some(RDKafkaErrorCode::InvalidDifferentRecord)), 90);
        } else {
            assert_eq!(count(None), 90);
        }
    }
}
