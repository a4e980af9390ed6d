//! kill -9 the node while a producer writes with acks=1, restart it, and check that every
//! acknowledged record is still there, offsets are dense, and nothing torn is served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_tests::{client_config, create_topic, wait_until, Node};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 3;

/// Acknowledged `(partition, offset) -> value`.
#[derive(Clone, Default)]
struct Acks(Arc<Mutex<HashMap<(i32, i64), String>>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            self.0
                .lock()
                .expect("lock")
                .insert((m.partition(), m.offset()), value);
        }
    }
}

fn acked(acks: &Acks) -> usize {
    acks.0.lock().expect("lock").len()
}

/// Reads every partition from the beginning to its high watermark.
fn read_all(bootstrap: &str) -> HashMap<(i32, i64), String> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "crash-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
            .expect("watermarks");
        ends.insert(p, high);
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let total: i64 = ends.values().sum();
    let mut out = HashMap::new();
    wait_until("recovered log read back", Duration::from_secs(120), || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("no consume errors: a torn batch must never be served");
            let v = String::from_utf8(m.payload().unwrap_or_default().to_vec()).expect("utf8");
            assert!(
                v.starts_with("record-") && v.ends_with(";end"),
                "record is whole: {v}"
            );
            out.insert((m.partition(), m.offset()), v);
        }
        (out.len() as i64 >= total).then_some(())
    });
    for (p, end) in &ends {
        for o in 0..*end {
            assert!(
                out.contains_key(&(*p, o)),
                "partition {p} offset {o} missing: offsets must be dense"
            );
        }
    }
    out
}

/// Simulates a write torn by the crash: half a batch header, then garbage, at the end
/// of every partition's active segment.
fn tear_tails(node: &Node) {
    use std::io::Write;
    for p in 0..PARTITIONS {
        let dir = node.data_dir.join("logs").join(format!("{TOPIC}-{p}"));
        let mut segments: Vec<_> = std::fs::read_dir(&dir)
            .expect("partition dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        segments.sort();
        let last = segments.last().expect("a segment");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(last)
            .expect("open segment");
        // A plausible length prefix and header start, cut short.
        let mut torn = vec![0u8; 8];
        torn.extend_from_slice(&500i32.to_be_bytes());
        torn.extend_from_slice(&[0, 0, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02]);
        f.write_all(&torn).expect("tear");
    }
}

#[test]
fn acknowledged_writes_survive_kill_minus_nine() {
    let mut node = Node::start();
    create_topic(&node.bootstrap(), TOPIC, PARTITIONS, &[]);
    let acks = Acks::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acks, stop, bootstrap) = (acks.clone(), Arc::clone(&stop), node.bootstrap());
        std::thread::spawn(move || {
            let producer: ThreadedProducer<Acks> = client_config(&bootstrap)
                .set("acks", "1")
                .set("linger.ms", "2")
                .set("message.timeout.ms", "5000")
                .create_with_context(acks)
                .expect("producer");
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                let key = format!("k{}", i % 100);
                let value = format!("record-{i}-{};end", "p".repeat((i % 300) as usize));
                if producer
                    .send(BaseRecord::to(TOPIC).key(&key).payload(&value))
                    .is_err()
                {
                    producer.poll(Duration::from_millis(5));
                    continue;
                }
                i += 1;
            }
            // Give in-flight acks a chance to arrive, then drop whatever is left.
            let _ = producer.flush(Duration::from_secs(6));
        })
    };
    wait_until("20k acknowledged writes", Duration::from_secs(120), || {
        (acked(&acks) >= 20_000).then_some(())
    });
    node.kill9();
    stop.store(true, Ordering::Release);
    writer.join().expect("writer");
    let acknowledged = acks.0.lock().expect("lock").clone();
    tear_tails(&node);

    node.restart();
    assert_eq!(
        node.log()
            .matches("recovery truncated a torn or corrupt log tail")
            .count(),
        PARTITIONS as usize,
        "every torn tail is cut on restart"
    );
    let recovered = read_all(&node.bootstrap());
    for ((p, o), v) in &acknowledged {
        assert_eq!(
            recovered.get(&(*p, *o)),
            Some(v),
            "acknowledged record at {p}/{o} lost or changed"
        );
    }

    // The log continues densely after the recovered end.
    let ends: HashMap<i32, i64> = (0..PARTITIONS)
        .map(|p| (p, recovered.keys().filter(|(q, _)| *q == p).count() as i64))
        .collect();
    let after = Acks::default();
    let producer: ThreadedProducer<Acks> = client_config(&node.bootstrap())
        .set("acks", "all")
        .create_with_context(after.clone())
        .expect("producer");
    for p in 0..PARTITIONS {
        producer
            .send(
                BaseRecord::to(TOPIC)
                    .partition(p)
                    .key("after")
                    .payload("record-after;end"),
            )
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let after = after.0.lock().expect("lock").clone();
    for p in 0..PARTITIONS {
        assert!(
            after.contains_key(&(p, ends[&p])),
            "partition {p} continues at offset {}",
            ends[&p]
        );
    }
    let reread = read_all(&node.bootstrap());
    assert_eq!(reread.len(), recovered.len() + PARTITIONS as usize);
    println!(
        "{} acknowledged records survived kill -9",
        acknowledged.len()
    );
}
