//! Producer throughput and latency on a 3-node loopback cluster: 1 KiB records from one
//! librdkafka producer, RF 3 with acks=all against RF 1 with acks=1 in the same run.
//!
//! cargo build --release --bin fjord && \
//!   FJORD_BIN=target/release/fjord cargo run --release -p fjord-tests --bin replication-bench -- 200000

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fjord_tests::wire::Wire;
use fjord_tests::{client_config, topic_name, Cluster};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::CreateTopicsRequest;
use kafka_protocol::protocol::StrBytes;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

#[derive(Clone, Default)]
struct Latencies(Arc<Mutex<Vec<Duration>>>);

impl ClientContext for Latencies {}

impl ProducerContext for Latencies {
    type DeliveryOpaque = Box<Instant>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        if result.is_ok() {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sent.elapsed());
        }
    }
}

struct Run {
    records_per_sec: f64,
    mb_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

fn run(bootstrap: &str, topic: &str, acks: &str, n: usize) -> Run {
    let latencies = Latencies::default();
    let producer: ThreadedProducer<Latencies> = client_config(bootstrap)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("batch.size", "262144")
        .set("queue.buffering.max.kbytes", "262144")
        .create_with_context(latencies.clone())
        .expect("producer");
    let value = vec![b'x'; 1024];
    let started = Instant::now();
    for i in 0..n {
        let key = format!("k{}", i % 1024);
        let mut record = BaseRecord::with_opaque_to(topic, Box::new(Instant::now()))
            .key(&key)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    std::thread::sleep(Duration::from_micros(200)); // queue full: back-pressure
                    record = r;
                    record.delivery_opaque = Box::new(Instant::now());
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let elapsed = started.elapsed().as_secs_f64();
    let mut l = latencies
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    l.sort();
    assert_eq!(l.len(), n, "every record acknowledged");
    Run {
        records_per_sec: n as f64 / elapsed,
        mb_per_sec: n as f64 * 1024.0 / elapsed / 1e6,
        p50: l[l.len() / 2],
        p99: l[l.len() * 99 / 100],
    }
}

fn create(bootstrap: &str, topic: &str, rf: i16, min_isr: &str) {
    let mut w = Wire::connect(bootstrap);
    let r = w.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(60_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(3)
                .with_replication_factor(rf)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("min.insync.replicas"))
                    .with_value(Some(StrBytes::from_string(min_isr.to_string())))])]),
    );
    assert_eq!(r.topics[0].error_code, 0);
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let mut c = Cluster::start(3, 0, &[]);
    let first = c.node(1).bootstrap();
    create(&first, "rf1", 1, "1");
    create(&first, "rf3", 3, "2");
    let bootstrap = c.bootstrap();
    // Warm up both topics (connections, metadata, segment files).
    run(&bootstrap, "rf1", "1", 10_000);
    run(&bootstrap, "rf3", "all", 10_000);
    let base = run(&bootstrap, "rf1", "1", n);
    let repl = run(&bootstrap, "rf3", "all", n);
    // Replication load without waiting for it: tells CPU cost from acknowledgement latency.
    let repl_leader_ack = run(&bootstrap, "rf3", "1", n);
    println!("| scenario | records/s | MB/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    for (name, r) in [
        ("RF 1, acks=1", &base),
        ("RF 3, acks=all, min.insync.replicas=2", &repl),
        ("RF 3, acks=1", &repl_leader_ack),
    ] {
        println!(
            "| {name} | {:.0} | {:.1} | {:.1} ms | {:.1} ms |",
            r.records_per_sec,
            r.mb_per_sec,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3
        );
    }
    println!("\nRF 3 acks=all throughput / RF 1 acks=1 throughput = {:.2} (target >= 0.5); {n} records of 1 KiB, 3 partitions, one producer, 3 nodes and the client on one 2-core machine.", repl.records_per_sec / base.records_per_sec);
}
