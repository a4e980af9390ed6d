//! Horizontal scaling on loopback clusters, under a live workload: brokers that join get
//! replicas from `fjord cluster balance`, a drained broker can be stopped with no partition
//! ever offline, and a reassignment survives a controller failover. Every scenario ends
//! with the shared checker (no acknowledged write lost, duplicated or reordered).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_tests::checker::{check, History, Workload, WorkloadSpec};
use fjord_tests::members::{ClientKind, Member};
use fjord_tests::wire::Wire;
use fjord_tests::{create_topic_rf, wait_until, Cluster, FAST_FAILOVER};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, ListPartitionReassignmentsRequest, MetadataRequest,
};
use kafka_protocol::protocol::StrBytes;

const FAST: &[&str] = FAST_FAILOVER;

/// Two idempotent acks=all producers at a steady 2000 records/s: enough traffic to move
/// under, without starving the five processes sharing two cores (an unthrottled
/// producer made moves and group joins wait on the CPU).
fn steady_workload(bootstrap: &str, topic: &str) -> Workload {
    Workload::start_with(
        bootstrap,
        topic,
        &WorkloadSpec {
            producers: 2,
            rate: Some(2_000),
            delivery_timeout: Duration::from_secs(60),
            max_in_flight: 1,
        },
        History::default(),
    )
}

/// Runs `fjord cluster ARGS --bootstrap-server B`; returns standard output, or panics
/// with both streams when it fails.
fn cli(bootstrap: &str, args: &[&str]) -> String {
    let out = fjord_tests::fjord_cli()
        .arg("cluster")
        .args(args)
        .arg("--bootstrap-server")
        .arg(bootstrap)
        .output()
        .expect("run fjord");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fjord cluster {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every partition's `(topic, partition, leader, replicas)` as one broker reports it.
fn partitions(bootstrap: &str) -> Vec<(String, i32, i32, Vec<i32>)> {
    let mut w = Wire::connect(bootstrap.split(',').next().unwrap_or(bootstrap));
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

fn replica_counts(bootstrap: &str, topic: &str) -> BTreeMap<i32, usize> {
    let mut counts = BTreeMap::new();
    for (_, _, _, replicas) in partitions(bootstrap).iter().filter(|p| p.0 == topic) {
        for r in replicas {
            *counts.entry(*r).or_insert(0) += 1;
        }
    }
    counts
}

fn reassignments_running(bootstrap: &str) -> usize {
    let mut w = Wire::connect(bootstrap.split(',').next().unwrap_or(bootstrap));
    let r = w.call(
        0,
        &ListPartitionReassignmentsRequest::default().with_topics(None),
    );
    r.topics.iter().map(|t| t.partitions.len()).sum()
}

/// Deletes the cluster-wide `leader.replication.throttled.rate`.
fn lift_throttle(bootstrap: &str) {
    let mut w = Wire::connect(bootstrap);
    let r = w.call(
        0,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str(""))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str(
                        "leader.replication.throttled.rate",
                    ))
                    .with_config_operation(1)]),
        ]),
    );
    assert_eq!(
        r.responses[0].error_code, 0,
        "{:?}",
        r.responses[0].error_message
    );
}

/// Polls metadata in the background and remembers every partition seen without a leader.
struct OfflineWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    handle: std::thread::JoinHandle<()>,
}

impl OfflineWatch {
    fn start(bootstrap: &str) -> OfflineWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, out, b) = (Arc::clone(&stop), Arc::clone(&seen), bootstrap.to_string());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                // A failed poll (a connection reset at teardown) is no observation.
                let seen = std::panic::catch_unwind(|| partitions(&b)).unwrap_or_default();
                for (t, p, leader, _) in seen {
                    if leader < 0 {
                        out.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(format!("{t}-{p}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(100)); // sampling interval
            }
        });
        OfflineWatch { stop, seen, handle }
    }

    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        seen
    }
}

#[test]
fn joining_brokers_get_replicas_and_a_drained_broker_leaves_without_loss() {
    let mut c = Cluster::start(3, 0, FAST);
    let first = c.node(1).bootstrap();
    create_topic_rf(&first, "scale", 12, 2, &[]);
    let w = steady_workload(&c.bootstrap(), "scale");
    let mut reader = Member::spawn(
        "reader",
        ClientKind::Rdkafka,
        &c.bootstrap(),
        "scale-readers",
        "scale",
        &["--log-records"],
    );
    w.wait_for_progress(2_000, Duration::from_secs(60));
    wait_until("the consumer reads", Duration::from_secs(60), || {
        (reader.count("record") > 0).then_some(())
    });

    // Two new machines join: they hold nothing until the cluster is balanced.
    for _ in 0..2 {
        c.add_node(FAST);
    }
    let before = replica_counts(&first, "scale");
    assert!(
        !before.contains_key(&4) && !before.contains_key(&5),
        "{before:?}"
    );
    let watch = OfflineWatch::start(&first);
    let plan = cli(&first, &["balance", "--execute", "--wait"]);
    let after = replica_counts(&first, "scale");
    println!("replicas per broker: before {before:?}, after {after:?}\n{plan}");
    assert_eq!(after.len(), 5, "every broker holds replicas: {after:?}");
    // Issue 33: a long move reports its progress (partitions, bytes copied, time).
    assert!(plan.contains(" partitions moved"), "{plan}");
    let (min, max) = (
        after.values().min().copied().unwrap_or(0),
        after.values().max().copied().unwrap_or(0),
    );
    assert!(max - min <= 1, "replicas are even: {after:?}");
    w.wait_for_progress(1_000, Duration::from_secs(60));

    // Broker 5 is drained (recorded through a node's admin port) and removed.
    let admin = c.node(1).admin_addr();
    cli(&first, &["drain", "5", "--wait", "--admin-server", &admin]);
    let drained = partitions(&first);
    assert!(
        drained
            .iter()
            .all(|(_, _, l, r)| *l != 5 && !r.contains(&5)),
        "nothing left on broker 5"
    );
    c.node(5).stop();
    w.wait_for_progress(1_000, Duration::from_secs(60));
    let offline = watch.finish();
    assert!(offline.is_empty(), "partitions went offline: {offline:?}");
    let read = reader.count("record");
    wait_until(
        "the consumer keeps reading",
        Duration::from_secs(60),
        || (reader.count("record") > read).then_some(()),
    );

    let outcome = w.stop();
    reader.close();
    let report = check(&first, "scale", 12, &outcome);
    println!("{report:?}");
}

#[test]
fn a_reassignment_completes_after_the_controller_fails_over() {
    let mut c = Cluster::start(3, 0, FAST);
    let first = c.node(1).bootstrap();
    create_topic_rf(&first, "moving", 1, 2, &[]);
    let new = c.add_node(FAST);
    let w = steady_workload(&c.bootstrap(), "moving");
    w.wait_for_progress(5_000, Duration::from_secs(60));

    // Move the partition onto the new broker, slowly enough (throttled) that the move is
    // still running when the controller dies.
    let (_, _, _, replicas) = partitions(&first)
        .into_iter()
        .find(|p| p.0 == "moving")
        .expect("partition");
    let target = [new, replicas[0]];
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    std::fs::write(
        &plan,
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"moving","partition":0,"replicas":[{},{}]}}]}}"#,
            target[0], target[1]
        ),
    )
    .expect("plan");
    let plan = plan.to_string_lossy().into_owned();
    cli(
        &first,
        &[
            "reassign",
            "--execute",
            "--file",
            &plan,
            "--throttle",
            "20000",
        ],
    );
    assert_eq!(reassignments_running(&first), 1, "the move is throttled");

    let controller = wait_until("an active controller", Duration::from_secs(30), || {
        c.active_controller()
    });
    c.node(controller).kill9();
    let observer = (1..=4).find(|id| *id != controller).unwrap_or(1);
    let live = c.node(observer).bootstrap();
    wait_until("a new controller", Duration::from_secs(30), || {
        c.active_controller().filter(|n| *n != controller)
    });
    // The new controller carries the move on from the metadata log; lifting the throttle
    // lets it finish.
    assert_eq!(
        reassignments_running(&live),
        1,
        "still running after the failover"
    );
    lift_throttle(&live);
    // The killed node may be a target replica: like Kafka, the move completes once every
    // target replica is in sync, so it has to come back.
    c.node(controller).restart();
    wait_until(
        "the reassignment completes",
        Duration::from_secs(120),
        || {
            let out = fjord_tests::fjord_cli()
                .args(["cluster", "reassign", "--verify", "--file", &plan])
                .arg("--bootstrap-server")
                .arg(&live)
                .output()
                .ok()?;
            out.status.success().then_some(())
        },
    );
    let (_, _, leader, now) = partitions(&live)
        .into_iter()
        .find(|p| p.0 == "moving")
        .expect("partition");
    assert_eq!(
        now,
        target.to_vec(),
        "the partition lives on the target replicas"
    );
    assert!(target.contains(&leader));
    w.wait_for_progress(1_000, Duration::from_secs(60));
    let outcome = w.stop();
    let report = check(&c.bootstrap(), "moving", 1, &outcome);
    println!("{report:?}");
}

#[test]
fn automatic_balancing_fills_a_new_broker_and_empties_a_dead_one() {
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend([
        "--override",
        "auto.balance.enable=true",
        "--override",
        "auto.balance.grace.ms=3000",
    ]);
    let mut c = Cluster::start(3, 0, &args);
    let first = c.node(1).bootstrap();
    create_topic_rf(&first, "auto", 6, 2, &[]);
    let w = steady_workload(&c.bootstrap(), "auto");
    w.wait_for_progress(1_000, Duration::from_secs(60));

    let new = c.add_node(&args);
    wait_until(
        "the new broker holds replicas",
        Duration::from_secs(90),
        || {
            let counts = replica_counts(&first, "auto");
            (counts.get(&new).copied().unwrap_or(0) >= 2 && reassignments_running(&first) == 0)
                .then_some(())
        },
    );

    // Broker 3 dies for good: after the grace period its replicas move to the others.
    c.node(3).kill9();
    wait_until("broker 3 is emptied", Duration::from_secs(90), || {
        let parts = partitions(&first);
        parts
            .iter()
            .filter(|p| p.0 == "auto")
            .all(|(_, _, _, r)| r.len() == 2 && !r.contains(&3))
            .then_some(())
    });
    w.wait_for_progress(1_000, Duration::from_secs(60));
    let outcome = w.stop();
    let report = check(&first, "auto", 6, &outcome);
    println!("{report:?}");
}
