//! Consumer groups against real clients in separate processes: fair shares and clean
//! rebalances across confluent-kafka, kafka-python and the rdkafka crate; committed offsets
//! surviving a killed group and a killed coordinator; static membership.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fjord_tests::members::{assert_no_double_ownership, ClientKind, Member};
use fjord_tests::wire::Wire;
use fjord_tests::{client_config, create_topic, create_topic_rf, wait_until, Cluster, Node};
use kafka_protocol::messages::{FindCoordinatorRequest, GroupId, OffsetFetchRequest};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const REBALANCE: Duration = Duration::from_secs(60);

/// Group settings that keep tests quick: no initial rebalance delay.
const QUICK_GROUPS: &[&str] = &["--override", "group.initial.rebalance.delay.ms=0"];

fn produce(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize) {
    let producer: ThreadedProducer<DefaultProducerContext> = client_config(bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for p in 0..partitions {
        for i in 0..per_partition {
            let value = format!("{p}-{i}");
            loop {
                match producer.send(
                    BaseRecord::<(), String>::to(topic)
                        .partition(p)
                        .payload(&value),
                ) {
                    Ok(()) => break,
                    Err((e, _)) if e.to_string().contains("Queue full") => {
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("produce: {e}"),
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

fn shares(members: &[&Member]) -> Vec<usize> {
    members.iter().map(|m| m.assignment().len()).collect()
}

/// Waits until the live members split all `partitions` between them, each holding
/// `expected` of them.
fn wait_for_shares(members: &[&Member], partitions: i32, expected: &[usize]) {
    let settled = || {
        let mut union = BTreeSet::new();
        let mut total = 0;
        for m in members {
            let a = m.assignment();
            total += a.len();
            union.extend(a);
        }
        let mut got = shares(members);
        got.sort_unstable();
        let mut want = expected.to_vec();
        want.sort_unstable();
        union.len() == partitions as usize && total == partitions as usize && got == want
    };
    let deadline = std::time::Instant::now() + REBALANCE;
    while !settled() {
        if std::time::Instant::now() >= deadline {
            // Name what each member saw, so a stalled client shows in the failure.
            let seen: Vec<String> = members
                .iter()
                .map(|m| format!("{}: {:?}", m.name, m.events()))
                .collect();
            panic!(
                "timed out after {REBALANCE:?} waiting for assignment shares {expected:?}; \
                 members saw:\n{}",
                seen.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval until the deadline
    }
}

#[test]
fn three_client_libraries_share_a_topic_and_rebalance_cleanly() {
    let node = Node::start_with(QUICK_GROUPS);
    let bootstrap = node.bootstrap();
    create_topic(&bootstrap, "shared", 6, &[]);
    let group = "mixed-clients";
    let a = Member::spawn(
        "confluent",
        ClientKind::Confluent,
        &bootstrap,
        group,
        "shared",
        &[],
    );
    let b = Member::spawn(
        "kafka-python",
        ClientKind::KafkaPython,
        &bootstrap,
        group,
        "shared",
        &[],
    );
    let mut c = Member::spawn(
        "rdkafka",
        ClientKind::Rdkafka,
        &bootstrap,
        group,
        "shared",
        &[],
    );
    wait_for_shares(&[&a, &b, &c], 6, &[2, 2, 2]);

    // A fourth member joins.
    let mut d = Member::spawn(
        "confluent-2",
        ClientKind::Confluent,
        &bootstrap,
        group,
        "shared",
        &[],
    );
    wait_for_shares(&[&a, &b, &c, &d], 6, &[2, 2, 1, 1]);

    // One leaves cleanly (LeaveGroup): the rest rebalance at once.
    let mut b = b;
    b.close();
    wait_for_shares(&[&a, &c, &d], 6, &[2, 2, 2]);

    // One dies without a word: the session timeout removes it.
    c.kill9();
    wait_for_shares(&[&a, &d], 6, &[3, 3]);

    assert_no_double_ownership(&[&a, &b, &c, &d]);
    let mut a = a;
    a.close();
    d.close();
}

/// Per partition, the offsets a member processed.
fn processed(m: &Member) -> BTreeMap<i32, Vec<i64>> {
    let mut out: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (p, o) in m.records() {
        out.entry(p).or_default().push(o);
    }
    out
}

#[test]
fn a_killed_group_resumes_at_its_committed_offsets() {
    let node = Node::start_with(QUICK_GROUPS);
    let bootstrap = node.bootstrap();
    let partitions = 3;
    let per_partition = 600;
    create_topic(&bootstrap, "resume", partitions, &[]);
    produce(&bootstrap, "resume", partitions, per_partition);
    let group = "resumers";
    let flags = ["--commit", "sync", "--log-records"];
    let mut first = vec![
        Member::spawn(
            "confluent",
            ClientKind::Confluent,
            &bootstrap,
            group,
            "resume",
            &flags,
        ),
        Member::spawn(
            "rdkafka",
            ClientKind::Rdkafka,
            &bootstrap,
            group,
            "resume",
            &flags,
        ),
    ];
    wait_until("some progress", REBALANCE, || {
        let done: usize = first.iter().map(|m| m.count("committed")).sum();
        (done >= 400).then_some(())
    });
    for m in &mut first {
        m.kill9();
    }
    // What the killed group had acknowledged, and how far it had read.
    let mut acked: BTreeMap<i32, i64> = BTreeMap::new();
    let mut read_up_to: BTreeMap<i32, i64> = BTreeMap::new();
    for m in &first {
        for (p, o) in m.acked_commits() {
            let e = acked.entry(p).or_insert(o);
            *e = (*e).max(o);
        }
        for (p, o) in m.records() {
            let e = read_up_to.entry(p).or_insert(o + 1);
            *e = (*e).max(o + 1);
        }
    }
    assert!(!acked.is_empty(), "the first group committed nothing");

    let mut second = vec![
        Member::spawn(
            "kafka-python",
            ClientKind::KafkaPython,
            &bootstrap,
            group,
            "resume",
            &flags,
        ),
        Member::spawn(
            "confluent-2",
            ClientKind::Confluent,
            &bootstrap,
            group,
            "resume",
            &flags,
        ),
    ];
    wait_until("the rest consumed", Duration::from_secs(120), || {
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        for m in &second {
            for (p, o) in m.acked_commits() {
                let e = ends.entry(p).or_insert(o);
                *e = (*e).max(o);
            }
        }
        (0..partitions)
            .all(|p| ends.get(&p).copied().unwrap_or(-1) == per_partition as i64)
            .then_some(())
    });
    for p in 0..partitions {
        let mut again: Vec<i64> = second
            .iter()
            .flat_map(|m| processed(m).remove(&p).unwrap_or_default())
            .collect();
        again.sort_unstable();
        let restart = again.first().copied().unwrap_or(per_partition as i64);
        let committed = acked.get(&p).copied().unwrap_or(0);
        let read = read_up_to.get(&p).copied().unwrap_or(0);
        // Nothing before the last acknowledged commit comes again, and nothing after what
        // the dead group read was skipped.
        assert!(
            restart >= committed && restart <= read,
            "partition {p}: restarted at {restart}, acked commit {committed}, read up to {read}"
        );
        let mut all: Vec<i64> = first
            .iter()
            .flat_map(|m| processed(m).remove(&p).unwrap_or_default())
            .chain(again)
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), per_partition, "partition {p}: records lost");
    }
    for m in &mut second {
        m.close();
    }
}

/// The broker coordinating `group`, as FindCoordinator says.
fn coordinator_of(bootstrap: &str, group: &str) -> i32 {
    wait_until("a coordinator", REBALANCE, || {
        let first = bootstrap.split(',').next()?;
        let resp = Wire::connect(first).call(
            3,
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(group.to_string()))
                .with_key_type(0),
        );
        (resp.error_code == 0).then_some(resp.node_id.0)
    })
}

/// Committed offsets of `group`, read from its coordinator.
fn committed(cluster: &mut Cluster, group: &str) -> BTreeMap<i32, i64> {
    let bootstrap = cluster.bootstrap();
    wait_until("committed offsets", REBALANCE, || {
        let id = coordinator_of(&bootstrap, group);
        let node = cluster.nodes.iter().find(|n| n.node_id == id)?;
        let resp = Wire::connect(&node.bootstrap()).call(
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_topics(None),
        );
        if resp.error_code != 0 {
            return None;
        }
        Some(
            resp.topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .map(|p| (p.partition_index, p.committed_offset))
                .collect(),
        )
    })
}

#[test]
fn acknowledged_commits_survive_killing_the_coordinator() {
    let mut cluster = Cluster::start(3, 0, QUICK_GROUPS);
    let bootstrap = cluster.bootstrap();
    let partitions = 3;
    let per_partition = 3000;
    create_topic_rf(&bootstrap, "ledger", partitions, 3, &[]);
    produce(&bootstrap, "ledger", partitions, per_partition);
    let group = "ledger-readers";
    let mut member = Member::spawn(
        "rdkafka",
        ClientKind::Rdkafka,
        &bootstrap,
        group,
        "ledger",
        &["--commit", "sync", "--session-timeout-ms", "10000"],
    );
    wait_until("commits flowing", REBALANCE, || {
        (member.count("committed") >= 300).then_some(())
    });
    let victim = coordinator_of(&bootstrap, group);
    let before_kill = member.count("committed");
    cluster.node(victim).kill9();
    // The member finds the new coordinator and keeps committing there.
    wait_until("commits to the new coordinator", REBALANCE, || {
        (member.count("committed") >= before_kill + 300).then_some(())
    });
    member.kill9();
    let acked = member.acked_commits();
    let stored = committed(&mut cluster, group);
    assert_ne!(coordinator_of(&cluster.bootstrap(), group), victim);
    for (p, o) in &acked {
        let s = stored.get(p).copied().unwrap_or(-1);
        // At most one more commit could have been in flight when the member died.
        assert!(
            s >= *o,
            "partition {p}: acknowledged commit {o} lost (stored {s})"
        );
    }
}

#[test]
fn a_static_member_restarting_within_its_session_causes_no_rebalance() {
    let node = Node::start_with(QUICK_GROUPS);
    let bootstrap = node.bootstrap();
    create_topic(&bootstrap, "static", 6, &[]);
    let group = "static-members";
    let flags = |id: &'static str| vec!["--instance-id", id, "--session-timeout-ms", "30000"];
    let mut one = Member::spawn(
        "static-1",
        ClientKind::Confluent,
        &bootstrap,
        group,
        "static",
        &flags("s1"),
    );
    let two = Member::spawn(
        "static-2",
        ClientKind::Confluent,
        &bootstrap,
        group,
        "static",
        &flags("s2"),
    );
    wait_for_shares(&[&one, &two], 6, &[3, 3]);
    let before = one.assignment();
    let two_events = (two.count("assigned"), two.count("revoked"));

    one.kill9();
    let again = Member::spawn(
        "static-1b",
        ClientKind::Confluent,
        &bootstrap,
        group,
        "static",
        &flags("s1"),
    );
    let back = wait_until("the restarted member's assignment", REBALANCE, || {
        let a = again.assignment();
        (!a.is_empty()).then_some(a)
    });
    assert_eq!(
        back, before,
        "the restarted static member got other partitions"
    );
    assert_eq!(
        (two.count("assigned"), two.count("revoked")),
        two_events,
        "the other member saw a rebalance"
    );
}

/// Runs `fjord` with `args` against `node`; returns (success, stdout + stderr).
fn fjord_cli(node: &Node, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(fjord_tests::fjord_bin())
        .args(args)
        .env("FJORD_BOOTSTRAP_SERVER", node.bootstrap())
        .output()
        .expect("run fjord");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `(partition, current offset, lag)` rows of `fjord group describe`.
fn described_offsets(node: &Node, group: &str) -> BTreeMap<i32, (String, String)> {
    let (ok, out) = fjord_cli(node, &["group", "describe", group]);
    assert!(ok, "{out}");
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() >= 5 && cols[0] == "admin" {
                Some((
                    cols[1].parse().ok()?,
                    (cols[2].to_string(), cols[4].to_string()),
                ))
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn group_admin_commands_and_apis() {
    let node = Node::start_with(QUICK_GROUPS);
    let bootstrap = node.bootstrap();
    create_topic(&bootstrap, "admin", 3, &[]);
    produce(&bootstrap, "admin", 3, 10);
    let group = "admin-group";
    let mut m = Member::spawn(
        "rdkafka",
        ClientKind::Rdkafka,
        &bootstrap,
        group,
        "admin",
        &["--commit", "sync"],
    );
    wait_until("everything committed", REBALANCE, || {
        let c = m.acked_commits();
        (0..3).all(|p| c.get(&p) == Some(&10)).then_some(())
    });

    // While the member is active, its offsets cannot be reset.
    let (ok, out) = fjord_cli(
        &node,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            "admin",
            "--to-earliest",
            "--execute",
        ],
    );
    assert!(!ok && out.contains("active members"), "{out}");
    let (ok, out) = fjord_cli(&node, &["group", "describe", group, "--members"]);
    assert!(
        ok && out.contains("Stable") && out.contains("admin(0,1,2)"),
        "{out}"
    );
    m.close();

    let (ok, out) = fjord_cli(&node, &["group", "list"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with(group) && l.contains("Empty")),
        "{out}"
    );
    let rows = described_offsets(&node, group);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(
        rows.values().all(|(cur, lag)| cur == "10" && lag == "0"),
        "{rows:?}"
    );

    let (ok, out) = fjord_cli(
        &node,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            "admin",
            "--to-earliest",
        ],
    );
    assert!(ok && out.contains("dry run"), "{out}");
    assert!(
        described_offsets(&node, group)
            .values()
            .all(|(cur, _)| cur == "10"),
        "a dry run changes nothing"
    );
    let (ok, out) = fjord_cli(
        &node,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            "admin",
            "--to-earliest",
            "--execute",
        ],
    );
    assert!(ok, "{out}");
    assert!(described_offsets(&node, group)
        .values()
        .all(|(cur, lag)| cur == "0" && lag == "10"));
    let (ok, out) = fjord_cli(
        &node,
        &[
            "group",
            "reset-offsets",
            group,
            "--topic",
            "admin",
            "--partitions",
            "1",
            "--shift-by",
            "4",
            "--execute",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(
        described_offsets(&node, group)[&1],
        ("4".to_string(), "6".to_string())
    );

    // OffsetDelete removes one partition's commit of an empty group.
    let resp = Wire::connect(&bootstrap).call(
        0,
        &kafka_protocol::messages::OffsetDeleteRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("admin-group")))
            .with_topics(vec![kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(fjord_tests::topic_name("admin"))
                .with_partitions(vec![
                    kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestPartition::default()
                        .with_partition_index(2),
                ])]),
    );
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    let rows = described_offsets(&node, group);
    assert!(
        !rows.contains_key(&2),
        "partition 2's offset was deleted: {rows:?}"
    );

    let (ok, out) = fjord_cli(&node, &["group", "delete", group]);
    assert!(ok, "{out}");
    let (ok, out) = fjord_cli(&node, &["group", "list"]);
    assert!(ok && !out.contains(group), "{out}");
    let (ok, out) = fjord_cli(&node, &["group", "delete", group]);
    assert!(!ok && out.contains("GroupIdNotFound"), "{out}");
}

/// Partitions added to a subscribed topic are assigned at once: the coordinator starts
/// a rebalance of the groups that subscribe to it (tests/python/partition_growth.py),
/// with both the eager and the cooperative protocol.
#[test]
fn groups_take_up_partitions_added_to_their_topic() {
    let node = Node::start_with(QUICK_GROUPS);
    for strategy in ["range", "cooperative-sticky"] {
        let out = std::process::Command::new(fjord_tests::python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/python/partition_growth.py"
            ))
            .args([
                "--bootstrap-server",
                &node.bootstrap(),
                "--strategy",
                strategy,
            ])
            .output()
            .expect("run python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{strategy}: {stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            node.log()
        );
        println!("{stdout}");
    }
}
