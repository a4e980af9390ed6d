//! kafka-share-groups.sh's work on a KIP-932 share group: DescribeShareGroupOffsets,
//! AlterShareGroupOffsets and DeleteShareGroupOffsets on the wire, and `fjord group
//! describe|reset-offsets|delete-offsets|delete|list` on a share group. The share-partition
//! is moved by a raw-wire member (ShareGroupHeartbeat, ShareFetch, ShareAcknowledge), so
//! each start offset the admin APIs show is one the test made.

use std::time::{Duration, Instant};

use fjord_tests::wire::Wire;
use fjord_tests::{create_topic, record_batch, topic_name, Node};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_share_group_offsets_request::{
    AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic;
use kafka_protocol::messages::describe_share_group_offsets_request::{
    DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch,
};
use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{ok_stdout, stderr, stdout};
use fjord_tests::run_cli;

const GROUP: &str = "share-admin-group";
const TOPIC: &str = "share-admin";
/// ShareAcknowledge types.
const ACCEPT: i8 = 1;
const RELEASE: i8 = 2;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn produce(w: &mut Wire, n: usize) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(record_batch(n, 10, 0, None)))])]);
    let resp = w.call(9, &req);
    assert_eq!(
        resp.responses[0].partition_responses[0].error_code, 0,
        "{resp:?}"
    );
}

fn heartbeat(w: &mut Wire, member: &str, epoch: i32) -> ShareGroupHeartbeatResponse {
    w.call(
        1,
        &ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names((epoch == 0).then(|| vec![topic_name(TOPIC)])),
    )
}

/// Joins `member`, retrying while the coordinator is still being created or loaded.
fn join(bootstrap: &str, member: &str) -> Wire {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut w = Wire::connect(bootstrap);
        // FindCoordinator creates __consumer_offsets on first use, as clients ask it first.
        w.call(3, &FindCoordinatorRequest::default().with_key(s(GROUP)));
        let r = heartbeat(&mut w, member, 0);
        if r.error_code == 0 {
            return w;
        }
        let retriable = [
            ResponseError::CoordinatorLoadInProgress.code(),
            ResponseError::CoordinatorNotAvailable.code(),
            ResponseError::NotCoordinator.code(),
        ];
        assert!(
            retriable.contains(&r.error_code) && Instant::now() < deadline,
            "joining {member}: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn leave(w: &mut Wire, member: &str) {
    let r = heartbeat(w, member, -1);
    assert_eq!((r.error_code, r.member_epoch), (0, -1), "{r:?}");
}

/// A ShareFetch of partition 0 by `member`: the (first, last) offsets it acquired.
fn share_fetch(w: &mut Wire, member: &str, topic_id: Uuid, epoch: i32) -> Vec<(i64, i64)> {
    let r = w.call(
        1,
        &ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(GROUP))))
            .with_member_id(Some(s(member)))
            .with_share_session_epoch(epoch)
            .with_max_wait_ms(2_000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_max_records(5)
            .with_batch_size(5)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition_index(0)
                    .with_partition_max_bytes(1 << 20)])]),
    );
    assert_eq!(r.error_code, 0, "{r:?}");
    r.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .flat_map(|p| {
            assert!(
                p.error_code == 0 || p.error_code == ResponseError::FencedStateEpoch.code(),
                "{p:?}"
            );
            p.acquired_records
                .iter()
                .map(|a| (a.first_offset, a.last_offset))
        })
        .collect()
}

fn acknowledge(w: &mut Wire, member: &str, topic_id: Uuid, epoch: i32, batches: &[(i64, i64, i8)]) {
    let r = w.call(
        1,
        &ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(s(GROUP))))
            .with_member_id(Some(s(member)))
            .with_share_session_epoch(epoch)
            .with_topics(vec![AcknowledgeTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![AcknowledgePartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(
                        batches
                            .iter()
                            .map(|(first, last, kind)| {
                                AcknowledgementBatch::default()
                                    .with_first_offset(*first)
                                    .with_last_offset(*last)
                                    .with_acknowledge_types(vec![*kind])
                            })
                            .collect(),
                    )])]),
    );
    assert_eq!(r.error_code, 0, "{r:?}");
    for p in r.responses.iter().flat_map(|t| &t.partitions) {
        assert_eq!(p.error_code, 0, "{p:?}");
    }
}

/// DescribeShareGroupOffsets of partition 0 (or, with `all`, of every partition the
/// group has state for): (group error, [(partition, start offset, error)]).
fn describe_offsets(w: &mut Wire, group: &str, all: bool) -> (i16, Vec<(i32, i64, i16)>) {
    let r = w.call(
        0,
        &DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics((!all).then(|| {
                    vec![DescribeShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(topic_name(TOPIC))
                        .with_partitions(vec![0])]
                })),
        ]),
    );
    let g = &r.groups[0];
    (
        g.error_code,
        g.topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| (p.partition_index, p.start_offset, p.error_code))
            .collect(),
    )
}

fn start_offset(w: &mut Wire) -> i64 {
    let (error, partitions) = describe_offsets(w, GROUP, false);
    assert_eq!(error, 0);
    assert_eq!(partitions.len(), 1, "{partitions:?}");
    assert_eq!(partitions[0].2, 0, "{partitions:?}");
    partitions[0].1
}

fn alter(w: &mut Wire, offset: i64) -> AlterShareGroupOffsetsResponse {
    w.call(
        0,
        &AlterShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_topics(vec![AlterShareGroupOffsetsRequestTopic::default()
                .with_topic_name(topic_name(TOPIC))
                .with_partitions(vec![
                    AlterShareGroupOffsetsRequestPartition::default()
                        .with_partition_index(0)
                        .with_start_offset(offset),
                ])]),
    )
}

/// A new member's first acquisition: where the share-partition hands out from now. A
/// leader that still held the old state is fenced on its first write and reloads, so a
/// fetch may come back empty once.
fn first_acquired(bootstrap: &str, member: &str, topic_id: Uuid) -> (Wire, i64) {
    let mut w = join(bootstrap, member);
    let (acquired, _) = fetch_some(&mut w, member, topic_id);
    (w, acquired[0].0)
}

/// ShareFetches (opening the session, then going on in it) until something is
/// acquired: what was, and the session epoch to use next.
fn fetch_some(w: &mut Wire, member: &str, topic_id: Uuid) -> (Vec<(i64, i64)>, i32) {
    for epoch in 0..5 {
        let acquired = share_fetch(w, member, topic_id, epoch);
        if !acquired.is_empty() {
            return (acquired, epoch + 1);
        }
    }
    panic!("{member} acquired nothing");
}

#[test]
fn share_group_offsets_are_described_altered_and_deleted() {
    let node = Node::start();
    let bs = node.bootstrap();
    create_topic(&bs, TOPIC, 1, &[]);
    let set_earliest = [
        "config",
        "alter",
        "--group",
        GROUP,
        "--add-config",
        "share.auto.offset.reset=earliest",
    ];
    ok_stdout(&node, &set_earliest);
    let mut admin = Wire::connect(&bs);
    produce(&mut admin, 5);
    produce(&mut admin, 5);
    let topic_id = admin
        .call(12, &MetadataRequest::default().with_topics(None))
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == TOPIC))
        .map(|t| t.topic_id)
        .expect("the topic is in the metadata");

    let versions = admin.call(3, &ApiVersionsRequest::default());
    for api in [
        ApiKey::DescribeShareGroupOffsets,
        ApiKey::AlterShareGroupOffsets,
        ApiKey::DeleteShareGroupOffsets,
    ] {
        let k = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == api as i16)
            .unwrap_or_else(|| panic!("{api:?} advertised"));
        assert_eq!((k.min_version, k.max_version), (0, 0), "{api:?}");
    }

    // A member takes 0-4 and accepts them: the start offset moves to 5.
    let mut m1 = join(&bs, "m1");
    let (acquired, epoch) = fetch_some(&mut m1, "m1", topic_id);
    assert_eq!(acquired.first().map(|a| a.0), Some(0), "{acquired:?}");
    let last = acquired.iter().map(|a| a.1).max().expect("acquired");
    assert!(last >= 4, "{acquired:?}");
    let mut acks = vec![(0, 4, ACCEPT)];
    if last > 4 {
        acks.push((5, last, RELEASE));
    }
    acknowledge(&mut m1, "m1", topic_id, epoch, &acks);
    assert_eq!(start_offset(&mut admin), 5);
    let (error, all) = describe_offsets(&mut admin, GROUP, true);
    assert_eq!(
        (error, all),
        (0, vec![(0, 5, 0)]),
        "every partition with state"
    );

    // Not while a member is in.
    let refused = alter(&mut admin, 2);
    assert_eq!(
        refused.error_code,
        ResponseError::NonEmptyGroup.code(),
        "{refused:?}"
    );
    assert_eq!(start_offset(&mut admin), 5);

    leave(&mut m1, "m1");
    let altered = alter(&mut admin, 2);
    assert_eq!(altered.error_code, 0, "{altered:?}");
    assert_eq!(altered.responses[0].topic_id, topic_id);
    assert_eq!(
        altered.responses[0].partitions[0].error_code, 0,
        "{altered:?}"
    );
    assert_eq!(start_offset(&mut admin), 2);
    let negative = alter(&mut admin, -5);
    assert_eq!(
        negative.responses[0].partitions[0].error_code,
        ResponseError::InvalidRequest.code()
    );

    // The leader had 5 in memory: a new member gets 2 (the leader reloaded).
    let (mut m2, first) = first_acquired(&bs, "m2", topic_id);
    assert_eq!(first, 2);
    leave(&mut m2, "m2");

    // The CLI: describe, a dry run, then a reset to the earliest offset.
    let out = ok_stdout(&node, &["group", "describe", "--group", GROUP]);
    let row: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with(TOPIC))
        .unwrap_or_else(|| panic!("a row for the partition: {out}"))
        .split_whitespace()
        .collect();
    assert_eq!(row, [TOPIC, "0", "2", "10", "8"], "{out}");
    assert!(out.contains("Empty"), "{out}");
    let out = ok_stdout(&node, &["group", "describe", "--group", GROUP, "--members"]);
    assert!(out.contains("0 members"), "{out}");
    let reset = [
        "group",
        "reset-offsets",
        "--group",
        GROUP,
        "--topic",
        TOPIC,
        "--to-earliest",
    ];
    let out = ok_stdout(&node, &reset);
    assert!(out.contains("dry run"), "{out}");
    assert_eq!(start_offset(&mut admin), 2, "a dry run changes nothing");
    let out = ok_stdout(&node, &[&reset[..], &["--execute"]].concat());
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [GROUP, TOPIC, "0", "0"]),
        "{out}"
    );
    assert_eq!(start_offset(&mut admin), 0);

    let out = ok_stdout(&node, &["group", "list"]);
    let line = out
        .lines()
        .find(|l| l.starts_with(GROUP))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        line.split_whitespace().take(3).collect::<Vec<_>>(),
        [GROUP, "Empty", "share"],
        "{out}"
    );

    // A member in: the CLI says why it cannot reset.
    let mut m3 = join(&bs, "m3");
    let o = run_cli(&node, &[&reset[..], &["--execute"]].concat(), None);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("active members"), "{}", stderr(&o));
    let delete_offsets = |w: &mut Wire, topic: &str| {
        w.call(
            0,
            &DeleteShareGroupOffsetsRequest::default()
                .with_group_id(GroupId(s(GROUP)))
                .with_topics(vec![DeleteShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(topic_name(topic))]),
        )
    };
    let refused = delete_offsets(&mut admin, TOPIC);
    assert_eq!(refused.error_code, ResponseError::NonEmptyGroup.code());
    leave(&mut m3, "m3");
    let unknown = delete_offsets(&mut admin, "no-such-topic");
    assert_eq!(unknown.error_code, 0);
    assert_eq!(
        unknown.responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(start_offset(&mut admin), 0, "nothing deleted yet");

    // Deleting the offsets deletes the state.
    let out = ok_stdout(
        &node,
        &[
            "group",
            "delete-offsets",
            "--group",
            GROUP,
            "--topic",
            TOPIC,
        ],
    );
    assert!(out.contains("Successful"), "{out}");
    assert_eq!(start_offset(&mut admin), -1);

    // Other kinds of group, and no group, are not share groups.
    let (error, _) = describe_offsets(&mut admin, "no-such-group", true);
    assert_eq!(error, ResponseError::GroupIdNotFound.code());

    // DeleteGroups takes the group and its share-partitions' state: the same id joined
    // again starts at the earliest offset, not at 3.
    assert_eq!(alter(&mut admin, 3).error_code, 0);
    let deleted = admin.call(
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(GROUP))]),
    );
    assert_eq!(deleted.results[0].error_code, 0, "{deleted:?}");
    let (error, _) = describe_offsets(&mut admin, GROUP, true);
    assert_eq!(error, ResponseError::GroupIdNotFound.code());
    let out = ok_stdout(&node, &["group", "list"]);
    assert!(!out.contains(GROUP), "{out}");
    // (Set again, in case the group's configs went with it.)
    ok_stdout(&node, &set_earliest);
    let (mut m4, first) = first_acquired(&bs, "m4", topic_id);
    assert_eq!(first, 0, "the state went with the group");
    leave(&mut m4, "m4");

    // `fjord group delete` deletes an empty share group.
    let out = ok_stdout(&node, &["group", "delete", GROUP]);
    assert!(out.contains("Deleted group"), "{out}");
}
