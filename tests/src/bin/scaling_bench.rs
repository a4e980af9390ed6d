//! The scaling experiment: one fixed workload (a librdkafka producer writing 1 KiB records
//! round-robin over 15 partitions with acks=1, then a consumer reading them back) on a
//! cluster that grows from 1 to 3 to 5 nodes on loopback. After each growth step
//! `fjord cluster balance --execute --wait` spreads the partitions, and each node's
//! produced bytes (its `fjord_produced_bytes_total`) show how evenly the load spreads.
//! Prints one JSON object per cluster size; `tests/bench/scaling.sh` turns them into
//! `docs/scaling.md` and a plot.
//!
//!   FJORD_BIN=target/release/fjord cargo run --release -p fjord-tests --bin scaling-bench -- 10

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use fjord_tests::{client_config, create_topic_rf, http_get, Cluster};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

const TOPIC: &str = "scaling";
const PARTITIONS: i32 = 15;
const RECORD: usize = 1024;

/// Each running node's `fjord_produced_bytes_total`.
fn produced_bytes(c: &mut Cluster) -> BTreeMap<i32, f64> {
    let mut out = BTreeMap::new();
    for n in c.nodes.iter_mut() {
        if !n.is_running() {
            continue;
        }
        let Ok((200, body)) = http_get(&n.admin_addr(), "/metrics") else {
            continue;
        };
        let total: f64 = body
            .lines()
            .filter(|l| l.starts_with("fjord_produced_bytes_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        out.insert(n.node_id, total);
    }
    out
}

/// Produces for `seconds`; returns (records, bytes per second).
fn produce(bootstrap: &str, seconds: u64) -> (u64, f64) {
    let producer: ThreadedProducer<DefaultProducerContext> = client_config(bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", "262144")
        .set("queue.buffering.max.kbytes", "262144")
        .create()
        .expect("producer");
    let value = vec![b'x'; RECORD];
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let mut record = BaseRecord::<(), [u8]>::to(TOPIC)
            .partition((sent % PARTITIONS as u64) as i32)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(1)); // queue full: back-pressure
                    record = r;
                }
            }
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let elapsed = started.elapsed().as_secs_f64();
    (sent, sent as f64 * RECORD as f64 / elapsed)
}

/// Reads `records` records from the given start offsets; returns bytes per second.
fn consume(bootstrap: &str, from: &BTreeMap<i32, i64>, records: u64) -> f64 {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "scaling-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "52428800")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (p, o) in from {
        tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o))
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let mut read = 0u64;
    while read < records && started.elapsed() < Duration::from_secs(300) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            read += u64::from(m.payload().is_some());
        }
    }
    read as f64 * RECORD as f64 / started.elapsed().as_secs_f64()
}

fn high_watermarks(bootstrap: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("consumer");
    (0..PARTITIONS)
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                .expect("watermarks");
            (p, high)
        })
        .collect()
}

fn balance(bootstrap: &str) {
    let out = fjord_tests::fjord_cli()
        .args([
            "cluster",
            "balance",
            "--execute",
            "--wait",
            "--bootstrap-server",
        ])
        .arg(bootstrap)
        .output()
        .expect("fjord cluster balance");
    assert!(
        out.status.success(),
        "balance failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let mut c = Cluster::start(1, 0, &[]);
    let first = c.node(1).bootstrap();
    create_topic_rf(&first, TOPIC, PARTITIONS, 1, &[]);
    produce(&c.bootstrap(), 2); // warm-up: connections, metadata, segment files
    for size in [1usize, 3, 5] {
        while c.nodes.len() < size {
            c.add_node(&[]);
        }
        if size > 1 {
            balance(&first);
        }
        let bootstrap = c.bootstrap();
        let start = high_watermarks(&bootstrap);
        let before = produced_bytes(&mut c);
        let (records, produce_bps) = produce(&bootstrap, seconds);
        let after = produced_bytes(&mut c);
        let consume_bps = consume(&bootstrap, &start, records);
        let per_node: BTreeMap<i32, f64> = after
            .iter()
            .map(|(id, b)| (*id, b - before.get(id).copied().unwrap_or(0.0)))
            .collect();
        let (min, max) = per_node
            .values()
            .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        println!(
            "{}",
            serde_json::json!({
                "nodes": size,
                "records": records,
                "produce_mb_per_sec": produce_bps / 1e6,
                "consume_mb_per_sec": consume_bps / 1e6,
                "bytes_in_per_node": per_node,
                "max_min_ratio": if min > 0.0 { max / min } else { f64::INFINITY },
            })
        );
    }
}
