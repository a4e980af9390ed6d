//! Log compaction through the Kafka protocol: a million updates over ten thousand keys
//! compact to the latest value per key at its original offset, tombstoned keys vanish once
//! delete.retention.ms has passed, and keyless records are refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_tests::{client_config, create_topic, wait_until, Node};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

const UPDATES: usize = 1_000_000;
const KEYS: usize = 10_000;
const DELETED: usize = 1_000;

/// An acknowledged write: key, value (`None` for a tombstone) and offset.
type Written = (String, Option<String>, i64);

#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Vec<Written>>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let m = result.as_ref().expect("every record is acknowledged");
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let value = m.payload().map(|v| String::from_utf8_lossy(v).into_owned());
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key, value, m.offset()));
    }
}

fn send(p: &ThreadedProducer<Acks>, topic: &str, key: &str, value: Option<&str>) {
    let mut record = BaseRecord::<str, str>::to(topic).key(key);
    if let Some(v) = value {
        record = record.payload(v);
    }
    let mut record = record;
    loop {
        match p.send(record) {
            Ok(()) => return,
            Err((e, r)) if e.to_string().contains("Queue full") => {
                record = r;
                p.poll(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("produce: {e}"),
        }
    }
}

/// Every record of partition 0 up to its high watermark: (offset, key, value).
fn read_all(bootstrap: &str, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "compaction-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = -1;
    while last + 1 < high {
        match consumer.poll(Duration::from_secs(5)) {
            Some(Ok(m)) => {
                last = m.offset();
                out.push((
                    m.offset(),
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    m.payload().map(|v| String::from_utf8_lossy(v).into_owned()),
                ));
            }
            Some(Err(e)) => panic!("consume: {e}"),
            // Compaction can leave the last offsets empty; nothing more to read.
            None => break,
        }
    }
    out
}

#[test]
fn a_million_updates_compact_to_the_latest_value_per_key() {
    let node = Node::start_with(&["--override", "log.cleaner.backoff.ms=200"]);
    let bootstrap = node.bootstrap();
    let topic = "compacted";
    create_topic(
        &bootstrap,
        topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "1048576"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "2000"),
        ],
    );
    let acks = Acks::default();
    let producer: ThreadedProducer<Acks> = client_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .create_with_context(acks.clone())
        .expect("producer");
    for i in 0..UPDATES {
        let key = format!("key-{}", i % KEYS);
        send(&producer, topic, &key, Some(&format!("value-{i}")));
    }
    for k in 0..DELETED {
        send(&producer, topic, &format!("key-{k}"), None);
    }
    // Fill more than a segment with one other key, so every record above sits in a closed
    // segment that compaction may clean.
    let filler = "x".repeat(1000);
    for _ in 0..1500 {
        send(&producer, topic, "filler", Some(&filler));
    }
    producer.flush(Duration::from_secs(120)).expect("flush");

    // What the log must compact to: each live key's last write, at its original offset.
    let mut expected: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
    for (key, value, offset) in acks.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        expected.insert(key.clone(), (*offset, value.clone()));
    }
    expected.retain(|k, (_, v)| v.is_some() && k != "filler");
    assert_eq!(expected.len(), KEYS - DELETED);

    let compacted = wait_until(
        "compaction to the latest value per key, tombstones expired",
        Duration::from_secs(240),
        || {
            let records = read_all(&bootstrap, topic);
            let real: Vec<_> = records.iter().filter(|(_, k, _)| k != "filler").collect();
            let done = real.len() == expected.len()
                && real
                    .iter()
                    .all(|(o, k, v)| expected.get(k).is_some_and(|(eo, ev)| eo == o && ev == v));
            done.then_some(records)
        },
    );
    // The live keys, plus at most the filler records of the active segment.
    assert!(
        compacted.len() <= expected.len() + 1500,
        "{} records left of {}",
        compacted.len(),
        UPDATES + DELETED + 1500
    );
    let log = node.log();
    assert!(
        log.contains("compacted log"),
        "the cleaner never reported a pass"
    );
}

#[test]
fn compacted_topics_refuse_records_without_a_key() {
    let node = Node::start();
    let bootstrap = node.bootstrap();
    create_topic(
        &bootstrap,
        "keyed-only",
        1,
        &[("cleanup.policy", "compact")],
    );
    let producer: rdkafka::producer::FutureProducer = client_config(&bootstrap)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let result = fjord_tests::futures_block_on(producer.send(
        rdkafka::producer::FutureRecord::<(), str>::to("keyed-only").payload("no key"),
        Duration::from_secs(10),
    ));
    let (err, _) = result.expect_err("a keyless record is refused");
    assert!(
        err.to_string().contains("InvalidRecord") || err.to_string().contains("Invalid record"),
        "{err}"
    );
}
