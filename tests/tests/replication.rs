//! Replication on 3-node loopback clusters (RF 3, min.insync.replicas 2), each scenario
//! checked by the shared checker: every acknowledged acks=all write is read back exactly
//! once, at its offset, in order, with no gaps.

use std::time::Duration;

use fjord_tests::checker::{check, read_topic, Workload};
use fjord_tests::wire::Wire;
use fjord_tests::{topic_name, wait_until, Cluster, Node, FAST_FAILOVER};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, MetadataRequest, MetadataResponse, ProduceRequest,
};
use kafka_protocol::protocol::StrBytes;

const FAST: &[&str] = FAST_FAILOVER;

fn create(node: &Node, topic: &str, assignments: &[&[i32]], configs: &[(&str, &str)]) {
    let mut w = Wire::connect(&node.bootstrap());
    let t = CreatableTopic::default()
        .with_name(topic_name(topic))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(
            assignments
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    CreatableReplicaAssignment::default()
                        .with_partition_index(i as i32)
                        .with_broker_ids(r.iter().copied().map(BrokerId).collect())
                })
                .collect(),
        )
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    let r = w.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![t]),
    );
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

fn metadata(node: &Node, topic: &str) -> MetadataResponse {
    let mut w = Wire::connect(&node.bootstrap());
    w.call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
        ])),
    )
}

/// `(leader, isr)` of a partition as `node` reports it.
fn leader_and_isr(node: &Node, topic: &str, partition: i32) -> (i32, Vec<i32>) {
    let md = metadata(node, topic);
    // A node that has not applied the topic's creation yet reports it unknown.
    let Some(p) = md
        .topics
        .first()
        .and_then(|t| t.partitions.get(partition as usize))
    else {
        return (-1, Vec::new());
    };
    (p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect())
}

fn wait_isr(c: &mut Cluster, observer: i32, topic: &str, partitions: i32, want: usize) {
    wait_until(
        &format!("ISR of {want} on every partition"),
        Duration::from_secs(60),
        || {
            (0..partitions)
                .all(|p| {
                    let (leader, isr) = leader_and_isr(c.node(observer), topic, p);
                    leader >= 0 && isr.len() == want
                })
                .then_some(())
        },
    );
}

fn rf3(c: &mut Cluster, topic: &str, partitions: i32) {
    let rotations: [&[i32]; 3] = [&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]];
    let assignments: Vec<&[i32]> = (0..partitions as usize).map(|i| rotations[i % 3]).collect();
    create(
        c.node(1),
        topic,
        &assignments,
        &[("min.insync.replicas", "2")],
    );
    wait_isr(c, 1, topic, partitions, 3);
}

#[test]
fn killing_a_leader_mid_stream_loses_nothing() {
    let mut c = Cluster::start(3, 0, FAST);
    rf3(&mut c, "kill-leader", 3);
    let w = Workload::start(&c.bootstrap(), "kill-leader", Duration::from_secs(60));
    w.wait_for_progress(3_000, Duration::from_secs(60));
    let (victim, _) = leader_and_isr(c.node(1), "kill-leader", 0);
    c.node(victim).kill9();
    let observer = if victim == 1 { 2 } else { 1 };
    wait_until(
        "partition 0 has a new leader",
        Duration::from_secs(30),
        || {
            let (leader, _) = leader_and_isr(c.node(observer), "kill-leader", 0);
            (leader >= 0 && leader != victim).then_some(())
        },
    );
    w.wait_for_progress(3_000, Duration::from_secs(60));
    c.node(victim).restart();
    wait_isr(&mut c, observer, "kill-leader", 3, 3);
    w.wait_for_progress(1_000, Duration::from_secs(60));
    let outcome = w.stop();
    let report = check(&c.bootstrap(), "kill-leader", 3, &outcome);
    assert_eq!(
        report.failures,
        0,
        "no acks=all send failed beyond client retries: {:?}",
        outcome.failures.first()
    );
    println!("{report:?}");
}

#[test]
fn a_frozen_follower_leaves_the_isr_and_rejoins() {
    let mut c = Cluster::start(3, 0, FAST);
    rf3(&mut c, "freeze", 1);
    let (leader, _) = leader_and_isr(c.node(1), "freeze", 0);
    let follower = (1..=3)
        .find(|id| *id != leader && c.active_controller() != Some(*id))
        .unwrap_or(if leader == 3 { 2 } else { 3 });
    let w = Workload::start(&c.bootstrap(), "freeze", Duration::from_secs(60));
    w.wait_for_progress(1_000, Duration::from_secs(60));
    c.node(follower).pause();
    wait_until(
        "the frozen follower leaves the ISR",
        Duration::from_secs(30),
        || {
            let (_, isr) = leader_and_isr(c.node(leader), "freeze", 0);
            (!isr.contains(&follower) && isr.len() == 2).then_some(())
        },
    );
    w.wait_for_progress(2_000, Duration::from_secs(60));
    c.node(follower).resume();
    wait_until("it catches up and rejoins", Duration::from_secs(60), || {
        let (_, isr) = leader_and_isr(c.node(leader), "freeze", 0);
        (isr.len() == 3).then_some(())
    });
    let outcome = w.stop();
    let report = check(&c.bootstrap(), "freeze", 1, &outcome);
    assert_eq!(report.failures, 0, "{:?}", outcome.failures.first());
}

fn produce_error(node: &Node, topic: &str) -> i16 {
    let mut w = Wire::connect(&node.bootstrap());
    let r = w.call(
        9,
        &ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(3_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(fjord_tests::record_batch(
                        1,
                        10,
                        1_700_000_000_000,
                        None,
                    )))])]),
    );
    r.responses[0].partition_responses[0].error_code
}

#[test]
fn losing_two_of_three_replicas_refuses_acks_all_until_they_return() {
    // Replicas on 3, 4 and 5; the metadata quorum is 1, 2 and 3, so it survives.
    let mut c = Cluster::start(3, 2, FAST);
    create(
        c.node(1),
        "two-down",
        &[&[3, 4, 5]],
        &[("min.insync.replicas", "2")],
    );
    wait_isr(&mut c, 1, "two-down", 1, 3);
    wait_until("the leader accepts writes", Duration::from_secs(30), || {
        (produce_error(c.node(3), "two-down") == 0).then_some(())
    });

    c.node(4).kill9();
    c.node(5).kill9();
    wait_until("ISR shrinks to the leader", Duration::from_secs(30), || {
        let (leader, isr) = leader_and_isr(c.node(1), "two-down", 0);
        (leader == 3 && isr == vec![3]).then_some(())
    });
    // The leader may hear of its own ISR shrink a moment after other nodes show it; a
    // write in that moment is refused after the append (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    // Never is one accepted.
    wait_until(
        "NOT_ENOUGH_REPLICAS, not silently accepted",
        Duration::from_secs(30),
        || match produce_error(c.node(3), "two-down") {
            19 => Some(()),
            20 => None,
            other => panic!("acks=all write with one in-sync replica answered {other}"),
        },
    );
    c.node(4).restart();
    c.node(5).restart();
    wait_isr(&mut c, 1, "two-down", 1, 3);
    assert_eq!(produce_error(c.node(3), "two-down"), 0, "recovered");
}

#[test]
fn rolling_restart_under_load_fails_no_sends() {
    let mut c = Cluster::start(3, 0, FAST);
    rf3(&mut c, "rolling", 3);
    let w = Workload::start(&c.bootstrap(), "rolling", Duration::from_secs(120));
    w.wait_for_progress(2_000, Duration::from_secs(60));
    for id in 1..=3 {
        let status = c.node(id).stop();
        assert!(
            status.is_some_and(|s| s.success()),
            "node {id} stops cleanly on SIGTERM"
        );
        w.wait_for_progress(500, Duration::from_secs(60));
        c.node(id).restart();
        let observer = if id == 1 { 2 } else { 1 };
        wait_isr(&mut c, observer, "rolling", 3, 3);
        w.wait_for_progress(500, Duration::from_secs(60));
    }
    let outcome = w.stop();
    let report = check(&c.bootstrap(), "rolling", 3, &outcome);
    assert_eq!(
        report.failures,
        0,
        "zero failed acks=all sends: {:?}",
        outcome.failures.first()
    );
    println!("{report:?}");
}

#[test]
fn a_divergent_suffix_is_truncated_on_rejoin_and_never_served() {
    let mut c = Cluster::start(
        3,
        0,
        &[
            FAST,
            &["--override", "leader.imbalance.check.interval.seconds=1"],
        ]
        .concat(),
    );
    // min.insync.replicas 1 and acks=1: the leader alone acknowledges.
    create(c.node(1), "diverge", &[&[1, 2, 3]], &[]);
    wait_isr(&mut c, 2, "diverge", 1, 3);
    let mut w = Wire::connect(&c.node(1).bootstrap());
    let produce = |w: &mut Wire, tag: &str, acks: i16| {
        let r = w.call(
            9,
            &ProduceRequest::default()
                .with_acks(acks)
                .with_timeout_ms(10_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(topic_name("diverge"))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(tagged_batch(tag)))])]),
        );
        r.responses[0].partition_responses[0].error_code
    };
    for i in 0..10 {
        wait_until("replicated write", Duration::from_secs(30), || {
            (produce(&mut w, &format!("replicated-{i}"), -1) == 0).then_some(())
        });
    }
    // Freeze the followers briefly (well under the lag time), so the leader takes writes
    // nobody else has, then kill the leader before they can copy them. The followers'
    // fetches already parked at the leader may still carry the first write after the
    // freeze, so that one is a throwaway; nothing after it can leave the leader.
    c.node(2).pause();
    c.node(3).pause();
    assert_eq!(produce(&mut w, "in-flight", 1), 0);
    // A parked fetch woken by that write must have read before the next one lands, or one
    // answer carries both and the followers legitimately have an "unreplicated" record.
    wait_until("parked fetches answered", Duration::from_secs(10), || {
        (c.node(1).metric("fjord_replica_fetches_waiting") == 0.0).then_some(())
    });
    for i in 0..5 {
        assert_eq!(produce(&mut w, &format!("unreplicated-{i}"), 1), 0);
    }

    c.node(1).kill9();
    c.node(2).resume();
    c.node(3).resume();
    let new_leader = wait_until("a follower takes over", Duration::from_secs(30), || {
        let (leader, _) = leader_and_isr(c.node(2), "diverge", 0);
        (leader == 2 || leader == 3).then_some(leader)
    });
    let mut w2 = Wire::connect(&c.node(new_leader).bootstrap());
    for i in 0..3 {
        // The metadata names the new leader a moment before its partition has taken
        // over; a client retries NOT_LEADER_OR_FOLLOWER, and so does this one.
        wait_until(
            "write to the new leader",
            Duration::from_secs(30),
            || match produce(&mut w2, &format!("after-{i}"), -1) {
                0 => Some(()),
                6 => None,
                other => panic!("write to the new leader answered {other}"),
            },
        );
    }
    // The old leader comes back: its divergent suffix must go.
    c.node(1).restart();
    wait_isr(&mut c, 2, "diverge", 1, 3);
    // Preferred leader rebalancing gives partition 0 back to node 1, so reading it reads
    // node 1's log.
    wait_until("node 1 leads again", Duration::from_secs(30), || {
        (leader_and_isr(c.node(2), "diverge", 0).0 == 1).then_some(())
    });
    let records = read_topic(&c.node(1).bootstrap(), "diverge", 1);
    let values: Vec<String> = records[&0].iter().map(|(_, v)| v.clone()).collect();
    assert!(
        values.iter().all(|v| !v.starts_with("unreplicated")),
        "never served: {values:?}"
    );
    assert_eq!(
        values
            .iter()
            .filter(|v| v.starts_with("replicated"))
            .count(),
        10
    );
    assert!(values.len() == 13 || values.len() == 14, "{values:?}");
    assert_eq!(values.iter().filter(|v| v.starts_with("after")).count(), 3);
    // And the bytes are gone from node 1's segment files.
    let dir = c.node(1).data_dir.join("logs").join("diverge-0");
    for entry in std::fs::read_dir(&dir).expect("partition dir").flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            let bytes = std::fs::read(entry.path()).expect("segment");
            assert!(
                !contains(&bytes, b"unreplicated"),
                "divergent records truncated from {}",
                entry.path().display()
            );
        }
    }
}

/// One batch holding a single record whose value is `tag`.
fn tagged_batch(tag: &str) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let r = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(bytes::Bytes::from(tag.to_string())),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [&r],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.freeze()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn consumers_read_from_an_in_sync_follower_in_their_rack() {
    let selector =
        "replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector";
    let mut c = Cluster::start_with(3, 0, &[FAST, &["--override", selector]].concat(), |id| {
        vec![
            "--rack".to_string(),
            ["a", "b", "c"][(id - 1) as usize].to_string(),
        ]
    });
    create(c.node(1), "racks", &[&[1, 2, 3]], &[]);
    wait_isr(&mut c, 1, "racks", 1, 3);
    let w = Workload::start(&c.node(1).bootstrap(), "racks", Duration::from_secs(30));
    w.wait_for_progress(500, Duration::from_secs(30));
    let outcome = w.stop();
    wait_until("followers caught up", Duration::from_secs(30), || {
        let md = metadata(c.node(1), "racks");
        (md.topics[0].partitions[0].isr_nodes.len() == 3).then_some(())
    });
    assert_eq!(
        c.node(2).metric("fjord_fetched_bytes_total"),
        0.0,
        "node 2 leads nothing and served no consumer yet"
    );
    // A consumer in rack b is sent to node 2, which follows the partition.
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = fjord_tests::client_config(&c.bootstrap())
        .set("group.id", "rack-b")
        .set("client.rack", "b")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("racks", 0, rdkafka::Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut got = 0usize;
    wait_until("records read in rack b", Duration::from_secs(60), || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m.expect("consume");
            got += 1;
        }
        (got >= outcome.acks.len()).then_some(())
    });
    assert!(
        c.node(2).metric("fjord_fetched_bytes_total") > 0.0,
        "the follower in rack b served the reads"
    );
}

#[test]
fn under_replication_is_reported_and_preferred_leaders_return_on_request() {
    let mut c = Cluster::start(
        3,
        0,
        &[FAST, &["--override", "auto.leader.rebalance.enable=false"]].concat(),
    );
    create(c.node(1), "urp", &[&[1, 2, 3]], &[]);
    wait_isr(&mut c, 2, "urp", 1, 3);
    c.node(1).kill9();
    wait_until(
        "leadership moves off node 1",
        Duration::from_secs(30),
        || {
            let (leader, isr) = leader_and_isr(c.node(2), "urp", 0);
            (leader != 1 && leader >= 0 && isr.len() == 2).then_some(())
        },
    );
    let status = c.status(2).expect("status");
    assert_eq!(
        status["under_replicated_partitions"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let out = std::process::Command::new(fjord_tests::fjord_bin())
        .args([
            "topic",
            "describe",
            "urp",
            "--under-replicated-partitions",
            "--bootstrap-server",
            &c.node(2).bootstrap(),
        ])
        .output()
        .expect("fjord");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Partition: 0"),
        "listed as under-replicated"
    );
    c.node(1).restart();
    wait_isr(&mut c, 2, "urp", 1, 3);
    assert_ne!(
        leader_and_isr(c.node(2), "urp", 0).0,
        1,
        "no automatic rebalance when disabled"
    );
    // A preferred election (kafka-leader-election.sh's, as `fjord cluster elect-leaders`)
    // moves it back to replica 1.
    let elect = |c: &mut Cluster| {
        let out = std::process::Command::new(fjord_tests::fjord_bin())
            .args([
                "cluster",
                "elect-leaders",
                "--election-type",
                "preferred",
                "--topic",
                "urp",
                "--bootstrap-server",
                &c.node(2).bootstrap(),
            ])
            .output()
            .expect("fjord");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };
    let first = elect(&mut c);
    assert!(
        first.contains("Successfully completed leader election (PREFERRED) for partitions urp-0"),
        "{first}"
    );
    wait_until("node 1 leads again", Duration::from_secs(30), || {
        (leader_and_isr(c.node(2), "urp", 0).0 == 1).then_some(())
    });
    let again = elect(&mut c);
    assert!(
        again.contains("Valid replica already elected for partitions urp-0"),
        "ELECTION_NOT_NEEDED: {again}"
    );
}
