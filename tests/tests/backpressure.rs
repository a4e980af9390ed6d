//! Backpressure: a client that pipelines requests and then stops reading the answers
//! costs the broker a bounded amount of memory, and once it reads again every answer
//! arrives, in order.

use std::time::{Duration, Instant};

use fjord_tests::wire::Wire;
use fjord_tests::{client_config, create_topic, topic_name, Node};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const RECORD: usize = 256 * 1024;
const FETCH_BYTES: i32 = 8 << 20;
const RECORDS: usize = 64;
const PIPELINED: usize = 48;

fn fill(node: &Node, topic: &str, records: usize) {
    let producer: BaseProducer = client_config(&node.bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let value = vec![b'x'; RECORD];
    for _ in 0..records {
        loop {
            match producer.send(BaseRecord::<(), _>::to(topic).payload(&value)) {
                Ok(()) => break,
                Err((e, _)) if e.to_string().contains("Queue full") => {
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => panic!("send: {e}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("all records acknowledged");
}

fn fetch(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_BYTES)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(FETCH_BYTES)])])
}

#[test]
fn a_client_that_stops_reading_costs_one_answer_of_memory() {
    let node = Node::start();
    let topic = "backpressure";
    create_topic(&node.bootstrap(), topic, 1, &[]);
    fill(&node, topic, RECORDS); // 16 MiB: a fetch from offset 0 gets a full 8 MiB answer
    let before = node.rss_bytes();

    // First a long poll at the log end, which holds the head of the line for 3 s, then
    // fetches from the start, each with an 8 MiB answer ready at once. Unbounded, the
    // broker would read them all behind the long poll: 47 answers, 376 MiB.
    let mut wire = Wire::connect(&node.bootstrap());
    let mut ids = vec![wire.send(12, &fetch(topic, RECORDS as i64, 3_000))];
    ids.extend((1..PIPELINED).map(|_| wire.send(12, &fetch(topic, 0, 0))));

    // An observation window, not a synchronisation: memory is sampled while the broker
    // does whatever it will with the unread connection.
    let mut peak = before;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        peak = peak.max(node.rss_bytes());
        std::thread::sleep(Duration::from_millis(50)); // sampling interval
    }
    let handled = node.metric("fjord_requests_total{api=\"Fetch\"}");
    let grown = peak.saturating_sub(before) as f64 / (1 << 20) as f64;
    println!("fetches handled while unread: {handled}, resident memory grew {grown:.1} MiB");
    assert!(
        handled <= 4.0,
        "the broker handled {handled} of {PIPELINED} pipelined fetches nobody read"
    );
    assert!(
        grown < 64.0,
        "resident memory grew {grown:.1} MiB for one unread connection"
    );

    // Reading again drains every answer, in order: the long poll's empty one, then full
    // ones.
    let first = wire.receive::<FetchRequest>(12, ids[0]);
    assert_eq!(first.responses[0].partitions[0].error_code, 0);
    for id in &ids[1..] {
        let resp = wire.receive::<FetchRequest>(12, *id);
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let bytes = p.records.as_ref().map_or(0, |r| r.len());
        assert!(
            bytes > (FETCH_BYTES as usize) / 2,
            "a full answer, not {bytes} bytes"
        );
    }
    assert_eq!(
        node.metric("fjord_requests_total{api=\"Fetch\"}"),
        PIPELINED as f64
    );
}
