//! Drain on loopback clusters, as operators know it from Redpanda's decommission: once
//! `fjord cluster drain N` has run, broker N gets no new replica from any path (topic
//! creation, internal topics, CreatePartitions, explicit assignments, KIP-455
//! reassignments, `fjord cluster balance`, automatic balancing) and leads nothing, until
//! `fjord cluster undrain N`. `fjord cluster status` shows it drained, and an unknown
//! broker id is an error.

use std::process::Output;
use std::time::{Duration, Instant};

use fjord_tests::wire::Wire;
use fjord_tests::{create_topic_rf, topic_name, wait_until, Cluster, FAST_FAILOVER};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    MetadataRequest,
};

const FAST: &[&str] = FAST_FAILOVER;
const INVALID_REPLICA_ASSIGNMENT: i16 = 39;

/// Runs `fjord ARGS` against one node (its Kafka and admin ports, through the
/// environment, as an operator's shell would have them).
fn fjord(c: &mut Cluster, node: i32, args: &[&str]) -> Output {
    let n = c.node(node);
    fjord_tests::fjord_cli()
        .args(args)
        .env("FJORD_BOOTSTRAP_SERVER", n.bootstrap())
        .env("FJORD_ADMIN_SERVER", n.admin_addr())
        .output()
        .expect("run fjord")
}

/// Like [`fjord`], and it must succeed; returns standard output.
fn fjord_ok(c: &mut Cluster, node: i32, args: &[&str]) -> String {
    let out = fjord(c, node, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fjord {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every partition (internal topics too) as `(topic, partition, leader, replicas)`.
fn partitions(bootstrap: &str) -> Vec<(String, i32, i32, Vec<i32>)> {
    let mut w = Wire::connect(bootstrap);
    let md = w.call(12, &MetadataRequest::default().with_topics(None));
    md.topics
        .iter()
        .flat_map(|t| {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            t.partitions.iter().map(move |p| {
                (
                    name.clone(),
                    p.partition_index,
                    p.leader_id.0,
                    p.replica_nodes.iter().map(|b| b.0).collect(),
                )
            })
        })
        .collect()
}

/// Partitions that have a replica on `broker` or are led by it, as `topic-partition`.
fn on_broker(bootstrap: &str, broker: i32) -> Vec<String> {
    partitions(bootstrap)
        .into_iter()
        .filter(|(_, _, leader, replicas)| *leader == broker || replicas.contains(&broker))
        .map(|(t, p, _, r)| format!("{t}-{p} {r:?}"))
        .collect()
}

fn create_with_assignments(bootstrap: &str, topic: &str, assignments: &[&[i32]]) -> i16 {
    let mut w = Wire::connect(bootstrap);
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
        );
    let r = w.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![t]),
    );
    r.topics[0].error_code
}

/// CreatePartitions to `count` partitions, with replica lists for the new ones or not.
fn grow(bootstrap: &str, topic: &str, count: i32, assignments: Option<&[&[i32]]>) -> i16 {
    let mut w = Wire::connect(bootstrap);
    let r = w.call(
        3,
        &CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(count)
                .with_assignments(assignments.map(|a| {
                    a.iter()
                        .map(|r| {
                            CreatePartitionsAssignment::default()
                                .with_broker_ids(r.iter().copied().map(BrokerId).collect())
                        })
                        .collect()
                }))]),
    );
    r.results[0].error_code
}

/// AlterPartitionReassignments of one partition to `target`: the partition's error code.
fn reassign(bootstrap: &str, topic: &str, partition: i32, target: &[i32]) -> i16 {
    let mut w = Wire::connect(bootstrap);
    let r = w.call(
        0,
        &AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(partition)
                    .with_replicas(Some(
                        target.iter().copied().map(BrokerId).collect(),
                    ))])]),
    );
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    r.responses[0].partitions[0].error_code
}

/// Asks for a coordinator until one is named, which creates the internal topic behind it.
fn coordinator(bootstrap: &str, key: &str, key_type: i8) -> i32 {
    wait_until("a coordinator is named", Duration::from_secs(60), || {
        Wire::connect(bootstrap)
            .find_coordinator(key, key_type)
            .ok()
    })
}

#[test]
fn a_drained_broker_gets_no_new_replica_from_any_path_until_undrained() {
    let mut c = Cluster::start(3, 1, FAST);
    let boot = c.node(1).bootstrap();
    create_topic_rf(&boot, "before", 8, 2, &[]);
    assert!(
        !on_broker(&boot, 4).is_empty(),
        "broker 4 starts with replicas"
    );

    let out = fjord_ok(
        &mut c,
        1,
        &["cluster", "drain", "4", "--wait", "--wait-timeout", "120"],
    );
    println!("{out}");
    assert_eq!(on_broker(&boot, 4), Vec::<String>::new(), "drain emptied 4");
    // Moved, not multiplied: every partition keeps its two replicas.
    let grown: Vec<_> = partitions(&boot)
        .into_iter()
        .filter(|p| p.0 == "before" && p.3.len() != 2)
        .collect();
    assert!(
        grown.is_empty(),
        "drain changed replication factors: {grown:?}"
    );

    // Placement by the controller: a new topic, the internal topics, new partitions.
    create_topic_rf(&boot, "after", 12, 3, &[]);
    coordinator(&boot, "a-group", 0);
    coordinator(&boot, "a-transactional-id", 1);
    assert_eq!(grow(&boot, "after", 16, None), 0);
    let all = partitions(&boot);
    for internal in ["__consumer_offsets", "__transaction_state"] {
        assert!(all.iter().any(|p| p.0 == internal), "{internal} exists");
    }
    assert_eq!(
        on_broker(&boot, 4),
        Vec::<String>::new(),
        "nothing placed on drained broker 4"
    );

    // Replica lists that name it are refused.
    assert_eq!(
        create_with_assignments(&boot, "manual", &[&[1, 4], &[2, 3]]),
        INVALID_REPLICA_ASSIGNMENT
    );
    assert_eq!(
        grow(&boot, "after", 17, Some(&[&[4, 1, 2]])),
        INVALID_REPLICA_ASSIGNMENT
    );
    let (_, _, _, replicas) = all
        .iter()
        .find(|p| p.0 == "before" && p.1 == 0)
        .expect("before-0");
    assert_eq!(
        reassign(&boot, "before", 0, &[4, replicas[0]]),
        INVALID_REPLICA_ASSIGNMENT,
        "a reassignment onto the drained broker"
    );
    // Replica lists that do not name it still work.
    assert_eq!(create_with_assignments(&boot, "manual", &[&[1, 2]]), 0);

    // Balancing by hand leaves the empty, drained broker alone.
    let plan = fjord_ok(
        &mut c,
        1,
        &[
            "cluster",
            "balance",
            "--execute",
            "--wait",
            "--wait-timeout",
            "120",
        ],
    );
    println!("{plan}");
    assert_eq!(on_broker(&boot, 4), Vec::<String>::new(), "balance skips 4");

    // Status shows it.
    let status = fjord_ok(&mut c, 1, &["cluster", "status"]);
    println!("{status}");
    let line = status
        .lines()
        .find(|l| l.split_whitespace().next() == Some("4") && l.contains("PLAINTEXT"))
        .expect("broker 4 listed");
    assert!(line.contains("drained"), "{line}");
    let json = c.status(2).expect("status of node 2");
    let brokers = json["brokers"].as_array().expect("brokers");
    for b in brokers {
        assert_eq!(
            b["drained"].as_bool(),
            Some(b["id"] == 4),
            "{b} (every node's image knows)"
        );
    }

    // Undrained, it takes replicas again.
    fjord_ok(&mut c, 1, &["cluster", "undrain", "4"]);
    fjord_ok(
        &mut c,
        1,
        &[
            "cluster",
            "balance",
            "--execute",
            "--wait",
            "--wait-timeout",
            "120",
        ],
    );
    assert!(
        !on_broker(&boot, 4).is_empty(),
        "balance gives the undrained broker replicas"
    );
    let status = fjord_ok(&mut c, 1, &["cluster", "status"]);
    assert!(!status.contains("drained"), "{status}");
}

#[test]
fn automatic_balancing_never_refills_a_drained_broker() {
    let extra: Vec<&str> = FAST
        .iter()
        .copied()
        .chain(["--override", "auto.balance.enable=true"])
        .collect();
    let mut c = Cluster::start(3, 0, &extra);
    let boot = c.node(1).bootstrap();
    create_topic_rf(&boot, "auto", 12, 2, &[]);
    let new = c.add_node(&extra);
    wait_until(
        "automatic balancing moves replicas onto the new broker",
        Duration::from_secs(90),
        || (!on_broker(&boot, new).is_empty()).then_some(()),
    );

    // Drained while automatic balancing is filling it.
    let out = fjord_ok(
        &mut c,
        1,
        &[
            "cluster",
            "drain",
            &new.to_string(),
            "--wait",
            "--wait-timeout",
            "120",
        ],
    );
    println!("{out}");
    // Three balancing rounds (one every 5 s) later, it is still empty.
    let until = Instant::now() + Duration::from_secs(16);
    while Instant::now() < until {
        assert_eq!(
            on_broker(&boot, new),
            Vec::<String>::new(),
            "automatic balancing left drained broker {new} alone"
        );
        std::thread::sleep(Duration::from_millis(250)); // sampling interval
    }
}

#[test]
fn drain_and_undrain_refuse_an_unknown_broker() {
    let mut c = Cluster::start(1, 0, FAST);
    for cmd in ["drain", "undrain"] {
        let out = fjord(&mut c, 1, &["cluster", cmd, "9"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd} 9: {stderr}");
        assert!(
            stderr.contains("broker 9") && stderr.contains("not registered"),
            "{cmd} 9: {stderr}"
        );
    }
    // A known broker can be drained (it holds nothing) and undrained.
    fjord_ok(&mut c, 1, &["cluster", "drain", "1"]);
    fjord_ok(&mut c, 1, &["cluster", "undrain", "1"]);
}
