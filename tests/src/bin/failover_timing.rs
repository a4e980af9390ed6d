//! Measures, on a 3-node loopback cluster, as medians over N trials at the default
//! setting, with fencing on disconnect turned off (the baseline), and at an aggressive
//! timeout setting:
//! - controller failover: active controller killed -> a metadata write succeeds on a
//!   survivor;
//! - broker fencing: broker killed -> Metadata no longer names it leader;
//! - partition failover: leader of an RF 3 partition killed -> the first acks=all produce
//!   succeeds on the new leader.
//!
//! cargo build --release --bin fjord && \
//!   FJORD_BIN=target/release/fjord cargo run --release -p fjord-tests --bin failover-timing -- 20 [default|session-only|aggressive]

use std::time::{Duration, Instant};

use fjord_tests::wire::Wire;
use fjord_tests::{topic_name, wait_until, Cluster, Node};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, ProduceRequest};
use kafka_protocol::protocol::StrBytes;

fn create_on(node: &Node, topic: &str) -> i16 {
    let mut w = Wire::connect(&node.bootstrap());
    let r = w.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(60_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(6)
                .with_replication_factor(1)]),
    );
    r.topics[0].error_code
}

/// Partition leaders of `topic` as `node` reports them.
fn leaders(node: &Node, topic: &str) -> Vec<i32> {
    let mut w = Wire::connect(&node.bootstrap());
    let md = w.call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ])),
    );
    md.topics[0]
        .partitions
        .iter()
        .map(|p| p.leader_id.0)
        .collect()
}

fn create_rf3(node: &Node, topic: &str) {
    let mut w = Wire::connect(&node.bootstrap());
    let r = w.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(60_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(1)
                .with_replication_factor(3)
                .with_configs(vec![CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("min.insync.replicas"))
                    .with_value(Some(StrBytes::from_static_str("2")))])]),
    );
    assert_eq!(r.topics[0].error_code, 0);
}

/// One acks=all write to partition 0 of `topic` through `node`; the error code.
fn produce_all(node: &Node, topic: &str) -> i16 {
    let mut w = Wire::connect(&node.bootstrap());
    let r = w.call(
        9,
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(fjord_tests::record_batch(
                        1,
                        100,
                        1_700_000_000_000,
                        None,
                    )))])]),
    );
    r.responses[0].partition_responses[0].error_code
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn trials(name: &str, heartbeat: Duration, extra: &[&str], n: usize) -> [(Duration, Duration); 3] {
    let mut c = Cluster::start(3, 0, extra);
    assert_eq!(create_on(c.node(1), "timing"), 0);
    create_rf3(c.node(1), "replicated");
    let mut failover = Vec::new();
    let mut fencing = Vec::new();
    let mut partition = Vec::new();
    for t in 0..n {
        // Controller failover.
        let old = wait_until("controller", Duration::from_secs(60), || {
            c.active_controller()
        });
        let survivor = (1..=3).find(|id| *id != old).unwrap_or(1);
        let started = Instant::now();
        c.node(old).kill9();
        // A client retries a failed metadata write; failover ends at the first success.
        let mut attempt = 0;
        loop {
            let code = create_on(c.node(survivor), &format!("failover-{t}-{attempt}"));
            if code == 0 {
                break;
            }
            eprintln!(
                "{name} trial {}: metadata write failed with code {code}; retrying",
                t + 1
            );
            attempt += 1;
            assert!(attempt < 20, "no metadata write succeeded after failover");
        }
        failover.push(started.elapsed());
        c.node(old).restart();

        // Broker fencing: a broker that is not the controller, leading some partitions.
        let controller = wait_until("controller", Duration::from_secs(60), || {
            c.active_controller()
        });
        let victim = (1..=3).find(|id| *id != controller).unwrap_or(1);
        let observer = (1..=3).find(|id| *id != victim).unwrap_or(1);
        wait_until("victim leads again", Duration::from_secs(60), || {
            leaders(c.node(observer), "timing")
                .contains(&victim)
                .then_some(())
        });
        // Kill at a random point of the heartbeat cycle, in steady state: a fresh
        // registration or election would count as a heartbeat just before the kill.
        let jitter =
            Duration::from_millis(rand::random::<u64>() % heartbeat.as_millis().max(1) as u64);
        std::thread::sleep(heartbeat * 2 + jitter); // benchmark pacing, not synchronisation
        let started = Instant::now();
        c.node(victim).kill9();
        wait_until("victim fenced", Duration::from_secs(120), || {
            (!leaders(c.node(observer), "timing").contains(&victim)).then_some(())
        });
        fencing.push(started.elapsed());
        c.node(victim).restart();

        // Partition failover: kill the leader of the RF 3 partition, then write with
        // acks=all through whichever node Metadata names leader until one succeeds.
        wait_until("full ISR, writable", Duration::from_secs(120), || {
            let l = leaders(c.node(observer), "replicated")[0];
            (l >= 0 && produce_all(c.node(l), "replicated") == 0).then_some(())
        });
        std::thread::sleep(heartbeat * 2); // benchmark pacing, not synchronisation
        let old = leaders(c.node(observer), "replicated")[0];
        let survivor = (1..=3).find(|id| *id != old).unwrap_or(1);
        let started = Instant::now();
        c.node(old).kill9();
        wait_until(
            "acks=all write on the new leader",
            Duration::from_secs(120),
            || {
                let l = leaders(c.node(survivor), "replicated")[0];
                (l >= 0 && l != old && produce_all(c.node(l), "replicated") == 0).then_some(())
            },
        );
        partition.push(started.elapsed());
        c.node(old).restart();
        eprintln!(
            "{name} trial {}: controller {:?}, fencing {:?}, partition {:?}",
            t + 1,
            failover[t],
            fencing[t],
            partition[t]
        );
    }
    let summary = |v: Vec<Duration>| {
        let max = *v.iter().max().unwrap_or(&Duration::ZERO);
        (median(v), max)
    };
    [summary(failover), summary(fencing), summary(partition)]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let profiles: [(&str, &str, Duration, Vec<&str>); 3] = [
        (
            "default",
            "election 1000 ms, session 9000 ms, heartbeat 2000 ms",
            Duration::from_millis(2000),
            vec![],
        ),
        // The baseline: brokers fenced only when their session runs out.
        (
            "session-only",
            "defaults with broker.session.disconnect.grace.ms=-1",
            Duration::from_millis(2000),
            vec!["--override", "broker.session.disconnect.grace.ms=-1"],
        ),
        (
            "aggressive",
            "election 300 ms, session 2000 ms, heartbeat 200 ms",
            Duration::from_millis(200),
            vec![
                "--override",
                "controller.quorum.election.timeout.ms=300",
                "--override",
                "broker.session.timeout.ms=2000",
                "--override",
                "broker.heartbeat.interval.ms=200",
            ],
        ),
    ];
    println!("| setting | controller failover | broker fencing | partition failover (acks=all) |");
    println!("|---|---|---|---|");
    // An optional second argument runs one profile only.
    let only = std::env::args().nth(2);
    for (name, desc, heartbeat, extra) in profiles {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let r = trials(name, heartbeat, &extra, n);
        let cell = |(m, x): (Duration, Duration)| {
            format!("{} ms (max {} ms)", m.as_millis(), x.as_millis())
        };
        println!(
            "| {name} ({desc}) | {} | {} | {} |",
            cell(r[0]),
            cell(r[1]),
            cell(r[2])
        );
    }
    println!("\nMedians (and maxima) over {n} trials each, 3 nodes on loopback.");
}
