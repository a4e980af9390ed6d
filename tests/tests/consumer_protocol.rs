//! KIP-848 consumer groups (`group.protocol=consumer`): librdkafka through
//! confluent-kafka end to end, and the wire protocol where a client cannot be made to
//! misbehave on purpose (stale epochs, zombies, a coordinator restart mid-group).

use std::time::{Duration, Instant};

use fjord_tests::wire::Wire;
use fjord_tests::{create_topic, Node};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
    FindCoordinatorRequest, GroupId, JoinGroupRequest, OffsetCommitRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// librdkafka with `group.protocol=consumer` consumes through ConsumerGroupHeartbeat with
/// either server-side assignor, hands a leaver's partitions over, commits with its member
/// epoch, and is described by ConsumerGroupDescribe (tests/python/consumer_protocol.py).
#[test]
fn librdkafka_members_share_and_hand_over_partitions() {
    let node = Node::start_with(&["--override", "group.consumer.heartbeat.interval.ms=500"]);
    for assignor in ["uniform", "range"] {
        let out = std::process::Command::new(fjord_tests::python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/python/consumer_protocol.py"
            ))
            .args([
                "--bootstrap-server",
                &node.bootstrap(),
                "--assignor",
                assignor,
            ])
            .output()
            .expect("run python");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{assignor}: {stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            node.log()
        );
        println!("{stdout}");
    }
}

fn heartbeat(
    wire: &mut Wire,
    group: &str,
    member: &str,
    epoch: i32,
    owned: Option<Vec<TopicPartitions>>,
) -> ConsumerGroupHeartbeatResponse {
    let mut req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_member_id(StrBytes::from_string(member.into()))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(-1)
        .with_topic_partitions(owned);
    if epoch == 0 {
        req.rebalance_timeout_ms = 30_000;
        req.subscribed_topic_names =
            Some(vec![TopicName(StrBytes::from_static_str("kip848-wire"))]);
    }
    wire.call(1, &req)
}

fn commit(wire: &mut Wire, group: &str, member: &str, epoch: i32) -> i16 {
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_member_id(StrBytes::from_string(member.into()))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("kip848-wire")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(0)])]);
    wire.call(9, &req).topics[0].partitions[0].error_code
}

/// Heartbeats until the coordinator answers with something other than "not ready yet".
fn heartbeat_when_ready(
    bootstrap: &str,
    group: &str,
    member: &str,
    epoch: i32,
    owned: Option<Vec<TopicPartitions>>,
) -> (Wire, ConsumerGroupHeartbeatResponse) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut wire = Wire::connect(bootstrap);
        // As a client does first: this also creates __consumer_offsets on first use.
        wire.call(
            3,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.into())),
        );
        let r = heartbeat(&mut wire, group, member, epoch, owned.clone());
        let retriable = [
            ResponseError::CoordinatorLoadInProgress.code(),
            ResponseError::CoordinatorNotAvailable.code(),
            ResponseError::NotCoordinator.code(),
        ];
        if !retriable.contains(&r.error_code) || Instant::now() > deadline {
            return (wire, r);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The group (epochs, members, assignments) is stored in `__consumer_offsets`: after a
/// restart of the coordinator its member carries on with its epoch. Commits and
/// heartbeats with epochs the coordinator did not hand out are refused with Kafka's codes,
/// and the classic protocol cannot take over a group in use.
#[test]
fn group_state_survives_a_restart_and_stale_epochs_are_fenced() {
    let mut node = Node::start();
    let bs = node.bootstrap();
    create_topic(&bs, "kip848-wire", 4, &[]);
    let group = "kip848-wire-group";
    let (mut wire, joined) = heartbeat_when_ready(&bs, group, "m1", 0, Some(vec![]));
    assert_eq!(joined.error_code, 0, "{joined:?}");
    let epoch = joined.member_epoch;
    assert!(epoch > 0);
    let assignment = joined
        .assignment
        .expect("a joining member learns its assignment");
    let owned: Vec<TopicPartitions> = assignment
        .topic_partitions
        .iter()
        .map(|tp| {
            TopicPartitions::default()
                .with_topic_id(tp.topic_id)
                .with_partitions(tp.partitions.clone())
        })
        .collect();
    assert_eq!(owned.iter().map(|t| t.partitions.len()).sum::<usize>(), 4);

    assert_eq!(commit(&mut wire, group, "m1", epoch), 0);
    assert_eq!(
        commit(&mut wire, group, "m1", epoch - 1),
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(
        commit(&mut wire, group, "zombie", epoch),
        ResponseError::UnknownMemberId.code()
    );
    let future = heartbeat(&mut wire, group, "m1", epoch + 5, None);
    assert_eq!(future.error_code, ResponseError::FencedMemberEpoch.code());
    let classic = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(StrBytes::from_static_str("range"))
        ]);
    assert_eq!(
        wire.call(9, &classic).error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    drop(wire);

    node.stop();
    node.restart();
    let (mut wire, again) = heartbeat_when_ready(&bs, group, "m1", epoch, Some(owned));
    assert_eq!(again.error_code, 0, "after a restart: {again:?}");
    assert_eq!(again.member_epoch, epoch);
    let described = wire.call(
        1,
        &ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(StrBytes::from_static_str(group))]),
    );
    let g = &described.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.assignor_name.as_str(), "uniform");
    assert_eq!(g.members.len(), 1);
    assert_eq!(g.members[0].member_id.as_str(), "m1");
    assert_eq!(g.members[0].member_epoch, epoch);
    assert_eq!(
        g.members[0].assignment.topic_partitions[0]
            .topic_name
            .0
            .as_str(),
        "kip848-wire"
    );

    // The CLI falls back to ConsumerGroupDescribe for such groups.
    let out = std::process::Command::new(fjord_tests::fjord_bin())
        .args(["group", "describe", group, "--members"])
        .env("FJORD_BOOTSTRAP_SERVER", &bs)
        .output()
        .expect("run fjord");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("is Stable (1 members, assignor uniform)") && text.contains("kip848-wire("),
        "{text}"
    );

    // Leaving empties the group; the classic protocol may then take the id over.
    let left = heartbeat(&mut wire, group, "m1", -1, None);
    assert_eq!(left.error_code, 0);
    assert_eq!(left.member_epoch, -1);
    let r = wire.call(9, &classic);
    assert_ne!(
        r.error_code,
        ResponseError::InconsistentGroupProtocol.code(),
        "{r:?}"
    );
}

/// KIP-932 share groups through confluent-kafka's ShareConsumer
/// (tests/python/share_groups.py): two members hold different records of one partition
/// at once; records whose locks run out go to another member with a higher delivery
/// count; RELEASEd records come back and REJECTed ones never; a record released on its
/// last delivery attempt is archived.
#[test]
fn librdkafka_share_consumers_share_a_partition_and_settle_records() {
    let node = Node::start_with(&[
        "--override",
        "group.share.min.record.lock.duration.ms=1000",
        "--override",
        "group.share.delivery.count.limit=3",
        "--override",
        "group.share.min.heartbeat.interval.ms=500",
        "--override",
        "group.share.heartbeat.interval.ms=500",
    ]);
    let out = std::process::Command::new(fjord_tests::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/python/share_groups.py"
        ))
        .args(["--bootstrap-server", &node.bootstrap(), "--lock-ms", "2000"])
        .arg("--fjord")
        .arg(fjord_tests::fjord_bin())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    println!("{stdout}");
}

/// The leader of `topic`'s `partition` as `node` sees it (-1: none, or not known).
fn leader_seen_by(node: &Node, topic: &str, partition: usize) -> i32 {
    let mut w = Wire::connect(&node.bootstrap());
    let md = w.call(
        4,
        &kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(fjord_tests::topic_name(topic))),
        ])),
    );
    md.topics
        .first()
        .and_then(|t| t.partitions.get(partition))
        .map_or(-1, |p| p.leader_id.0)
}

/// Kills `victim` and waits until another live node names a new leader of the
/// partition, then starts `victim` again.
fn kill_and_replace_leader(
    cluster: &mut fjord_tests::Cluster,
    victim: i32,
    topic: &str,
    partition: usize,
) {
    cluster.node(victim).kill9();
    let witness = if victim == 1 { 2 } else { 1 };
    fjord_tests::wait_until(
        &format!("a new leader of {topic}-{partition}"),
        Duration::from_secs(60),
        || {
            let leader = leader_seen_by(cluster.node(witness), topic, partition);
            (leader > 0 && leader != victim).then_some(())
        },
    );
    cluster.node(victim).spawn_again();
    cluster.node(victim).wait_ready(Duration::from_secs(90));
}

/// KIP-932 across failures: 100 records are accepted, then the partition's leader is
/// killed, and then the broker storing its share state (`__share_group_state`); after
/// both, every other record is delivered and none of the accepted ones again
/// (tests/python/share_groups.py, failover phases).
#[test]
fn share_group_state_survives_a_leader_kill_and_a_coordinator_move() {
    let mut cluster = fjord_tests::Cluster::start(
        3,
        0,
        &[
            "--override",
            "group.share.min.heartbeat.interval.ms=500",
            "--override",
            "group.share.heartbeat.interval.ms=500",
        ],
    );
    let run = |bootstrap: String, phase: &str| {
        let out = std::process::Command::new(fjord_tests::python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/python/share_groups.py"
            ))
            .args(["--bootstrap-server", &bootstrap, "--scenario", phase])
            .arg("--fjord")
            .arg(fjord_tests::fjord_bin())
            .output()
            .expect("run python");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{phase}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{stdout}");
        stdout
    };
    let before = run(cluster.bootstrap(), "failover-before");
    let state_partition: usize = before
        .lines()
        .find_map(|l| l.strip_prefix("SHARE_STATE_PARTITION "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the share state's partition");
    let leader = leader_seen_by(cluster.node(1), "share-failover", 0);
    assert!(leader > 0, "share-failover-0 has a leader");
    kill_and_replace_leader(&mut cluster, leader, "share-failover", 0);
    let coordinator = leader_seen_by(cluster.node(1), "__share_group_state", state_partition);
    assert!(
        coordinator > 0,
        "__share_group_state-{state_partition} has a leader"
    );
    kill_and_replace_leader(
        &mut cluster,
        coordinator,
        "__share_group_state",
        state_partition,
    );
    run(cluster.bootstrap(), "failover-after");
}
