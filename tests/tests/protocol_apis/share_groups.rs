//! KIP-932 share groups on the group coordinator, at the wire level: ShareGroupHeartbeat
//! membership (join, assignments covering every partition, leave), ShareGroupDescribe,
//! ListGroups by type "share", DeleteGroups, a group id being one kind of group only,
//! and the group surviving a coordinator restart (it is stored in `__consumer_offsets`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use fjord_tests::wire::Wire;
use fjord_tests::{create_topic, Node};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

const GROUP: &str = "share-wire-group";
const TOPIC: &str = "share-wire";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn heartbeat(
    w: &mut Wire,
    group: &str,
    member: &str,
    epoch: i32,
    topics: Option<&[&str]>,
) -> ShareGroupHeartbeatResponse {
    w.call(
        1,
        &ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names(
                topics.map(|ts| ts.iter().map(|t| fjord_tests::topic_name(t)).collect()),
            ),
    )
}

/// Heartbeats until the coordinator answers with something other than "not ready yet"
/// (`__consumer_offsets` is created on first use and loaded after a restart).
fn heartbeat_when_ready(
    bootstrap: &str,
    member: &str,
    epoch: i32,
    topics: Option<&[&str]>,
) -> (Wire, ShareGroupHeartbeatResponse) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut w = Wire::connect(bootstrap);
        w.call(
            3,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(GROUP)),
        );
        let r = heartbeat(&mut w, GROUP, member, epoch, topics);
        let retriable = [
            ResponseError::CoordinatorLoadInProgress.code(),
            ResponseError::CoordinatorNotAvailable.code(),
            ResponseError::NotCoordinator.code(),
        ];
        if !retriable.contains(&r.error_code) || Instant::now() > deadline {
            return (w, r);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The (topic id, partition) pairs of a heartbeat's assignment.
fn assigned(r: &ShareGroupHeartbeatResponse) -> BTreeSet<(Uuid, i32)> {
    r.assignment
        .as_ref()
        .map(|a| {
            a.topic_partitions
                .iter()
                .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic_id, *p)))
                .collect()
        })
        .unwrap_or_default()
}

fn describe(w: &mut Wire, group: &str) -> share_group_describe_response::DescribedGroup {
    let r = w.call(
        1,
        &ShareGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s(group))])
            .with_include_authorized_operations(true),
    );
    r.groups.into_iter().next().expect("one group described")
}

/// (group id, state, type) of the share groups ListGroups v5 lists for `types`.
///
/// ListGroups answers COORDINATOR_LOAD_IN_PROGRESS, with a partial list, while any
/// `__consumer_offsets` partition this broker leads is still loading (after a restart the
/// coordinator opens them in batches); like Kafka's admin client, this asks again until
/// the list is whole. Any other error fails the test.
fn list(w: &mut Wire, types: &[&str]) -> Vec<(String, String, String)> {
    let r = fjord_tests::wait_until(
        "ListGroups to answer with every coordinator partition loaded",
        Duration::from_secs(30),
        || {
            let r = w.call(
                5,
                &ListGroupsRequest::default()
                    .with_types_filter(types.iter().map(|t| s(t)).collect()),
            );
            (r.error_code != ResponseError::CoordinatorLoadInProgress.code()).then_some(r)
        },
    );
    assert_eq!(r.error_code, 0, "{r:?}");
    r.groups
        .iter()
        .map(|g| {
            (
                g.group_id.0.to_string(),
                g.group_state.to_string(),
                g.group_type.to_string(),
            )
        })
        .collect()
}

fn delete(w: &mut Wire, group: &str) -> i16 {
    let r = w.call(
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]),
    );
    r.results[0].error_code
}

#[test]
fn share_group_membership_describe_list_and_delete() {
    let mut node = Node::start();
    let bs = node.bootstrap();
    create_topic(&bs, TOPIC, 3, &[]);
    let topics: &[&str] = &[TOPIC];

    let (mut w, first) = heartbeat_when_ready(&bs, "m1", 0, Some(topics));
    let versions = w.call(3, &ApiVersionsRequest::default());
    for api in [ApiKey::ShareGroupHeartbeat, ApiKey::ShareGroupDescribe] {
        let k = versions
            .api_keys
            .iter()
            .find(|k| k.api_key == api as i16)
            .unwrap_or_else(|| panic!("{api:?} advertised"));
        assert_eq!((k.min_version, k.max_version), (1, 1), "{api:?}");
    }
    assert!(
        versions
            .finalized_features
            .iter()
            .any(|f| f.name.as_str() == "share.version" && f.max_version_level == 1),
        "share.version 1 is finalized on a new cluster: {versions:?}"
    );

    assert_eq!(first.error_code, 0, "{first:?}");
    assert!(first.error_message.is_none());
    // Every coordinator partition loaded, so groups hashing elsewhere (the unknown one
    // below) are answered too: ListGroups says so.
    list(&mut w, &[]);
    assert_eq!(first.member_id.as_deref(), Some("m1"));
    let m1_epoch = first.member_epoch;
    assert!(m1_epoch > 0);
    assert_eq!(
        first.heartbeat_interval_ms, 5_000,
        "group.share.heartbeat.interval.ms"
    );
    assert_eq!(
        assigned(&first).len(),
        3,
        "the only member gets every partition"
    );

    let second = heartbeat(&mut w, GROUP, "m2", 0, Some(topics));
    assert_eq!(second.error_code, 0, "{second:?}");
    let m2_epoch = second.member_epoch;
    assert!(m2_epoch > m1_epoch, "a join moves the group epoch");
    // m1 learns the new target at its next heartbeat, with the epoch it holds.
    let again = heartbeat(&mut w, GROUP, "m1", m1_epoch, None);
    assert_eq!(again.error_code, 0, "{again:?}");
    assert_eq!(again.member_epoch, m2_epoch);
    let (a1, a2) = (assigned(&again), assigned(&second));
    assert!(!a1.is_empty() && !a2.is_empty(), "{a1:?} {a2:?}");
    let all: BTreeSet<(Uuid, i32)> = a1.union(&a2).copied().collect();
    assert_eq!(
        all.iter().map(|(_, p)| *p).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "together the members cover every partition"
    );
    // Validation with Kafka's messages, and fencing.
    let bad = heartbeat(&mut w, GROUP, "m3", 0, None);
    assert_eq!(bad.error_code, ResponseError::InvalidRequest.code());
    assert_eq!(
        bad.error_message.as_deref(),
        Some("SubscribedTopicNames must be set in first request.")
    );
    let fenced = heartbeat(&mut w, GROUP, "m1", m2_epoch + 7, None);
    assert_eq!(fenced.error_code, ResponseError::FencedMemberEpoch.code());
    let stranger = heartbeat(&mut w, GROUP, "nobody", m2_epoch, None);
    assert_eq!(stranger.error_code, ResponseError::UnknownMemberId.code());

    let d = describe(&mut w, GROUP);
    assert_eq!(d.error_code, 0, "{d:?}");
    assert!(d.error_message.is_none());
    assert_eq!(d.group_state.as_str(), "Stable");
    assert_eq!(d.group_epoch, m2_epoch);
    assert_eq!(d.assignment_epoch, m2_epoch);
    assert_eq!(d.assignor_name.as_str(), "simple");
    assert_ne!(d.authorized_operations, i32::MIN, "asked for");
    assert_eq!(d.members.len(), 2);
    for m in &d.members {
        assert_eq!(m.member_epoch, m2_epoch, "{m:?}");
        assert_eq!(
            m.subscribed_topic_names,
            vec![fjord_tests::topic_name(TOPIC)]
        );
        assert!(m
            .assignment
            .topic_partitions
            .iter()
            .all(|tp| tp.topic_name.0.as_str() == TOPIC));
    }
    let unknown = describe(&mut w, "no-such-share-group");
    assert_eq!(unknown.error_code, ResponseError::GroupIdNotFound.code());

    let listed = list(&mut w, &["share"]);
    assert!(
        listed.contains(&(GROUP.into(), "Stable".into(), "share".into())),
        "{listed:?}"
    );
    assert!(
        !list(&mut w, &["consumer", "classic"])
            .iter()
            .any(|(g, _, _)| g == GROUP),
        "a share group is neither"
    );

    // One kind of group per id: the classic and consumer protocols, commits and
    // DescribeGroups are refused as Kafka refuses them.
    let join = w.call(
        9,
        &JoinGroupRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(s("range"))
            ]),
    );
    assert_eq!(
        join.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    let consumer = w.call(
        0,
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_member_id(s("c1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![fjord_tests::topic_name(TOPIC)]))
            .with_topic_partitions(Some(vec![])),
    );
    assert_eq!(
        consumer.error_code,
        ResponseError::GroupIdNotFound.code(),
        "{consumer:?}\n{}",
        node.log()
    );
    let commit = w.call(
        9,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(s(GROUP)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(fjord_tests::topic_name(TOPIC))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(0)])]),
    );
    assert_eq!(
        commit.topics[0].partitions[0].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    let classic = w.call(
        5,
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s(GROUP))]),
    );
    assert_eq!(
        classic.groups[0].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    // ...and a share heartbeat on a consumer group's id.
    let mut cw = Wire::connect(&bs);
    let other = cw.call(
        0,
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("share-wire-consumers")))
            .with_member_id(s("c1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![fjord_tests::topic_name(TOPIC)]))
            .with_topic_partitions(Some(vec![])),
    );
    assert_eq!(other.error_code, 0, "{other:?}");
    let cross = heartbeat(&mut cw, "share-wire-consumers", "s1", 0, Some(topics));
    assert_eq!(cross.error_code, ResponseError::GroupIdNotFound.code());

    assert_eq!(
        delete(&mut w, GROUP),
        ResponseError::NonEmptyGroup.code(),
        "members are still in it"
    );
    drop(w);
    drop(cw);

    // The group is stored: after a restart its members carry on with their epochs.
    node.stop();
    node.restart();
    let (mut w, back) = heartbeat_when_ready(&bs, "m1", m2_epoch, None);
    assert_eq!(back.error_code, 0, "after a restart: {back:?}");
    assert_eq!(back.member_epoch, m2_epoch);
    assert_eq!(describe(&mut w, GROUP).members.len(), 2);

    for member in ["m1", "m2"] {
        let left = heartbeat(&mut w, GROUP, member, -1, None);
        assert_eq!(left.error_code, 0, "{left:?}");
        assert_eq!(left.member_epoch, -1);
    }
    let d = describe(&mut w, GROUP);
    assert_eq!(d.group_state.as_str(), "Empty", "{d:?}");
    assert!(d.members.is_empty());
    let listed = list(&mut w, &["share"]);
    assert!(
        listed.contains(&(GROUP.into(), "Empty".into(), "share".into())),
        "{listed:?}"
    );

    assert_eq!(delete(&mut w, GROUP), 0);
    assert_eq!(
        describe(&mut w, GROUP).error_code,
        ResponseError::GroupIdNotFound.code()
    );
    assert!(!list(&mut w, &[]).iter().any(|(g, _, _)| g == GROUP));
    assert_eq!(delete(&mut w, GROUP), ResponseError::GroupIdNotFound.code());
}

/// A member that stops heartbeating is removed once its session times out
/// (`group.share.session.timeout.ms`), and the group is then empty. share.version 0 takes
/// the share APIs away, as in Kafka before `kafka-features.sh upgrade --feature
/// share.version=1`.
#[test]
fn share_sessions_time_out_and_share_version_0_turns_share_groups_off() {
    let node = Node::start_with(&["--override", "group.share.session.timeout.ms=1000"]);
    let bs = node.bootstrap();
    create_topic(&bs, TOPIC, 1, &[]);
    let (mut w, joined) = heartbeat_when_ready(&bs, "quiet", 0, Some(&[TOPIC]));
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(describe(&mut w, GROUP).group_state.as_str(), "Stable");
    fjord_tests::wait_until(
        "the silent member's session times out",
        Duration::from_secs(20),
        || (describe(&mut w, GROUP).group_state.as_str() == "Empty").then_some(()),
    );
    let late = heartbeat(&mut w, GROUP, "quiet", joined.member_epoch, None);
    assert_eq!(late.error_code, ResponseError::UnknownMemberId.code());

    let downgrade = |w: &mut Wire, level: i16, upgrade_type: i8| {
        let r = w.call(
            1,
            &UpdateFeaturesRequest::default()
                .with_timeout_ms(10_000)
                .with_feature_updates(vec![update_features_request::FeatureUpdateKey::default()
                    .with_feature(s("share.version"))
                    .with_max_version_level(level)
                    .with_upgrade_type(upgrade_type)]),
        );
        assert_eq!(r.error_code, 0, "{r:?}");
    };
    downgrade(&mut w, 0, 2);
    let off = heartbeat(&mut w, GROUP, "quiet", 0, Some(&[TOPIC]));
    assert_eq!(off.error_code, ResponseError::UnsupportedVersion.code());
    assert_eq!(
        describe(&mut w, GROUP).error_code,
        ResponseError::UnsupportedVersion.code()
    );
    let versions = w.call(3, &ApiVersionsRequest::default());
    assert!(
        !versions
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::ShareGroupHeartbeat as i16),
        "not offered with share.version 0"
    );
    downgrade(&mut w, 1, 1);
    let on = heartbeat(&mut w, GROUP, "quiet", 0, Some(&[TOPIC]));
    assert_eq!(on.error_code, 0, "{on:?}");
}
