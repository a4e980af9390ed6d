//! Client quotas against a real node: set with `fjord quota` (AlterClientQuotas), read
//! back with DescribeClientQuotas, kept across a restart, and enforced on confluent-kafka
//! clients, which receive `throttle_time_ms` and are held to their byte rates while an
//! unthrottled client in the same run is not; controller mutations beyond their rate fail
//! with THROTTLING_QUOTA_EXCEEDED, and request time is throttled too.

use std::process::Command;
use std::time::Instant;

use fjord_tests::wire::Wire;
use fjord_tests::{create_topic, fjord_bin, python, topic_name, Node};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    alter_client_quotas_request, describe_client_quotas_request, AlterClientQuotasRequest,
    CreateTopicsRequest, DescribeClientQuotasRequest, MetadataRequest,
};
use kafka_protocol::protocol::StrBytes;

const THROTTLING_QUOTA_EXCEEDED: i16 = 89;
const INVALID_REQUEST: i16 = 42;

fn fjord(node: &Node, args: &[&str]) -> String {
    let out = Command::new(fjord_bin())
        .args(args)
        .arg("--bootstrap-server")
        .arg(node.bootstrap())
        .output()
        .expect("run fjord");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "fjord {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs tests/python/quotas.py; returns (bytes, seconds, throttle reports).
fn client(node: &Node, mode: &str, client_id: &str, topic: &str, bytes: u64) -> (f64, f64, f64) {
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/quotas.py"))
        .args([mode, "--bootstrap-server", &node.bootstrap()])
        .args(["--client-id", client_id, "--topic", topic])
        .args(["--bytes", &bytes.to_string()])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "quotas.py {mode} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    let f = |k: &str| v[k].as_f64().expect(k);
    (f("bytes"), f("seconds"), f("throttle_reports"))
}

/// Short quota windows (two of one second), so a test sees throttling after seconds
/// rather than after Kafka's eleven-second span.
const SHORT_WINDOWS: &[&str] = &["--override", "quota.window.num=2"];

#[test]
fn byte_rate_quotas_hold_real_clients_to_their_rate() {
    let mut node = Node::start_with(SHORT_WINDOWS);
    create_topic(&node.bootstrap(), "q", 1, &[]);
    fjord(
        &node,
        &[
            "quota",
            "alter",
            "--client-id",
            "slow",
            "--add",
            "producer_byte_rate=1000000,consumer_byte_rate=1000000",
        ],
    );
    fjord(
        &node,
        &[
            "quota",
            "alter",
            "--user-default",
            "--add",
            "request_percentage=400",
        ],
    );
    let described = fjord(&node, &["quota", "describe"]);
    assert!(
        described.contains("client-id=slow\tconsumer_byte_rate=1000000,producer_byte_rate=1000000"),
        "{described}"
    );
    assert!(
        described.contains("user=<default>\trequest_percentage=400"),
        "{described}"
    );

    // 6 MB at 1 MB/s, beside an unthrottled client moving the same in the same run.
    let bytes = 6_000_000;
    let (moved, fast_secs, fast_reports) = client(&node, "produce", "fast", "q", bytes);
    assert_eq!(moved as u64, bytes);
    let (_, slow_secs, slow_reports) = client(&node, "produce", "slow", "q", bytes);
    println!(
        "produce: unthrottled {fast_secs:.2}s ({fast_reports} throttle reports), \
         at 1 MB/s {slow_secs:.2}s ({slow_reports} reports)"
    );
    assert_eq!(fast_reports, 0.0, "no quota, no throttling");
    assert!(slow_reports > 0.0, "the client was told it was throttled");
    // The quota's window lets a burst through first; beyond it the rate holds.
    assert!(
        bytes as f64 / slow_secs < 2.0 * 1_000_000.0,
        "held near 1 MB/s: {:.0} B/s",
        bytes as f64 / slow_secs
    );

    let (_, fast_secs, fast_reports) = client(&node, "consume", "fast", "q", bytes);
    let (_, slow_secs, slow_reports) = client(&node, "consume", "slow", "q", bytes);
    println!(
        "consume: unthrottled {fast_secs:.2}s ({fast_reports} reports), at 1 MB/s \
         {slow_secs:.2}s ({slow_reports} reports)"
    );
    assert!(slow_reports > 0.0);
    assert!(
        bytes as f64 / slow_secs < 2.0 * 1_000_000.0,
        "held near 1 MB/s: {:.0} B/s",
        bytes as f64 / slow_secs
    );

    // Quotas are in the metadata log: a restart keeps them.
    node.stop();
    node.restart();
    let again = fjord(&node, &["quota", "describe", "--client-id", "slow"]);
    assert!(again.contains("producer_byte_rate=1000000"), "{again}");
    fjord(
        &node,
        &[
            "quota",
            "alter",
            "--client-id",
            "slow",
            "--delete",
            "producer_byte_rate,consumer_byte_rate",
        ],
    );
    let gone = fjord(&node, &["quota", "describe", "--client-id", "slow"]);
    assert!(gone.trim().is_empty(), "{gone}");
}

fn entity(kind: &str, name: Option<&str>) -> alter_client_quotas_request::EntityData {
    alter_client_quotas_request::EntityData::default()
        .with_entity_type(StrBytes::from_string(kind.into()))
        .with_entity_name(name.map(|n| StrBytes::from_string(n.into())))
}

fn set(
    wire: &mut Wire,
    entity_parts: Vec<alter_client_quotas_request::EntityData>,
    key: &str,
    value: f64,
) -> i16 {
    let req = AlterClientQuotasRequest::default().with_entries(vec![
        alter_client_quotas_request::EntryData::default()
            .with_entity(entity_parts)
            .with_ops(vec![alter_client_quotas_request::OpData::default()
                .with_key(StrBytes::from_string(key.into()))
                .with_value(value)]),
    ]);
    wire.call(1, &req).entries[0].error_code
}

#[test]
fn mutation_and_request_quotas_and_invalid_quotas() {
    let node = Node::start_with(SHORT_WINDOWS);
    let mut wire = Wire::connect(&node.bootstrap());
    // The wire client's id is fjord-wire-test.
    let me = || vec![entity("client-id", Some("fjord-wire-test"))];
    assert_eq!(set(&mut wire, me(), "no_such_quota", 1.0), INVALID_REQUEST);
    assert_eq!(
        set(&mut wire, me(), "producer_byte_rate", -5.0),
        INVALID_REQUEST
    );
    // IP entities take only connection_creation_rate (KIP-612), and only for addresses.
    assert_eq!(
        set(
            &mut wire,
            vec![entity("ip", Some("10.0.0.1"))],
            "producer_byte_rate",
            5.0
        ),
        INVALID_REQUEST
    );
    assert_eq!(
        set(
            &mut wire,
            vec![entity("ip", Some("not-an-address"))],
            "connection_creation_rate",
            5.0
        ),
        INVALID_REQUEST
    );
    assert_eq!(
        set(
            &mut wire,
            vec![entity("ip", Some("10.0.0.1"))],
            "connection_creation_rate",
            5.0
        ),
        0
    );
    assert_eq!(set(&mut wire, me(), "controller_mutation_rate", 1.0), 0);

    let described = wire.call(
        1,
        &DescribeClientQuotasRequest::default().with_components(vec![
            describe_client_quotas_request::ComponentData::default()
                .with_entity_type(StrBytes::from_static_str("client-id"))
                .with_match_type(0)
                .with_match(Some(StrBytes::from_static_str("fjord-wire-test"))),
        ]),
    );
    let entries = described.entries.expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].values[0].key.as_str(),
        "controller_mutation_rate"
    );

    // 1 partition/s with a 2 s burst: 20 partitions pass, then the bucket is empty.
    let create = |name: &str, partitions: i32| {
        CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)])
    };
    let first = wire.call(7, &create("m1", 20));
    assert_eq!(first.topics[0].error_code, 0);
    let second = wire.call(7, &create("m2", 1));
    assert_eq!(second.topics[0].error_code, THROTTLING_QUOTA_EXCEEDED);
    assert!(second.throttle_time_ms > 0, "{}", second.throttle_time_ms);

    // request_percentage=0.5: 5 ms of handling per second. Metadata requests add up
    // and the answers start carrying a throttle; the next request is then held that long.
    assert_eq!(set(&mut wire, me(), "request_percentage", 0.5), 0);
    let mut throttled = None;
    for _ in 0..5_000 {
        let r = wire.call(12, &MetadataRequest::default().with_topics(None));
        if r.throttle_time_ms > 0 {
            throttled = Some(r.throttle_time_ms);
            break;
        }
    }
    let ms = throttled.expect("handling time was throttled");
    let held = Instant::now();
    wire.call(12, &MetadataRequest::default().with_topics(Some(vec![])));
    let waited = held.elapsed().as_millis() as i32;
    assert!(
        waited + 50 >= ms,
        "the connection was held {waited} ms of the {ms} ms throttle"
    );
}
