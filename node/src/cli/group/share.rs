//! `fjord group` on KIP-932 share groups, as kafka-share-groups.sh: members through
//! ShareGroupDescribe; each share-partition's start offset (SPSO) through
//! DescribeShareGroupOffsets, with the lag to the log end; resets through
//! AlterShareGroupOffsets and deletions through DeleteShareGroupOffsets. A share group
//! has no committed offsets: its start offsets stand in for them, so reset-offsets plans
//! a share group exactly as a consumer group.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_share_group_offsets_request::{
    AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic;
use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, DeleteShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsRequest, GroupId, ShareGroupDescribeRequest, TopicName,
};

use super::plan::Tp;
use super::{check, coordinator, error_name, log_offsets, str, until_ready, LATEST};
use crate::cli::client::ConnectArgs;
use crate::cli::CliError;

/// A share group as ShareGroupDescribe shows it.
pub(super) struct ShareGroupView {
    pub state: String,
    pub members: Vec<ShareMemberView>,
}

pub(super) struct ShareMemberView {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<(String, Vec<i32>)>,
}

/// The share group `group`, or `None` if the id names no share group (none at all, a
/// group of another kind, or a cluster without share groups).
pub(super) fn find(connect: &ConnectArgs, group: &str) -> Result<Option<ShareGroupView>, CliError> {
    until_ready(connect, || {
        let mut w = coordinator(connect, group)?;
        let resp = match w.call(
            1,
            &ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(str(group))]),
        ) {
            Ok(r) => r,
            // A cluster without share groups may close the connection on this API: no
            // share group there. A cluster that is not reachable at all says so at the
            // next question.
            Err(_) => return Ok(None),
        };
        let Some(g) = resp.groups.into_iter().next() else {
            return Ok(None);
        };
        if super::retriable(g.error_code) {
            check(g.error_code, &format!("describing {group}"))?;
        }
        if g.error_code != 0 {
            // GROUP_ID_NOT_FOUND, share groups off, ...: not a share group.
            return Ok(None);
        }
        Ok(Some(ShareGroupView {
            state: g.group_state.to_string(),
            members: g
                .members
                .iter()
                .map(|m| ShareMemberView {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    assignment: m
                        .assignment
                        .topic_partitions
                        .iter()
                        .map(|tp| (tp.topic_name.0.to_string(), tp.partitions.clone()))
                        .collect(),
                })
                .collect(),
        }))
    })
}

/// Each share-partition's start offset, -1 where it has no state yet. All partitions the
/// group has state for when `topics` is `None`.
pub(super) fn start_offsets(
    connect: &ConnectArgs,
    group: &str,
    topics: Option<&BTreeMap<String, Vec<i32>>>,
) -> Result<BTreeMap<Tp, i64>, CliError> {
    use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestTopic;
    let req = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
        DescribeShareGroupOffsetsRequestGroup::default()
            .with_group_id(GroupId(str(group)))
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|(t, ps)| {
                        DescribeShareGroupOffsetsRequestTopic::default()
                            .with_topic_name(TopicName(str(t)))
                            .with_partitions(ps.clone())
                    })
                    .collect()
            })),
    ]);
    until_ready(connect, || {
        let resp = coordinator(connect, group)?.call(0, &req)?;
        let g = resp
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| CliError::Kafka("empty DescribeShareGroupOffsets answer".into()))?;
        check(
            g.error_code,
            &format!("describing the offsets of share group {group}"),
        )?;
        let mut out = BTreeMap::new();
        for t in g.topics {
            for p in t.partitions {
                check(
                    p.error_code,
                    &format!("describing {}-{}", t.topic_name.0, p.partition_index),
                )?;
                out.insert(
                    (t.topic_name.0.to_string(), p.partition_index),
                    p.start_offset,
                );
            }
        }
        Ok(out)
    })
}

/// `fjord group describe` of a share group.
pub(super) fn describe(
    connect: &ConnectArgs,
    group: &str,
    view: &ShareGroupView,
    show_members: bool,
) -> Result<(), CliError> {
    if show_members {
        outln!(
            "Share group {group} is {} ({} members, assignor simple)",
            view.state,
            view.members.len()
        );
        outln!(
            "{:<50} {:<16} {:<24} ASSIGNMENT",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        );
        for m in &view.members {
            let assignment: Vec<String> = m
                .assignment
                .iter()
                .map(|(t, ps)| {
                    let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                    format!("{t}({})", ps.join(","))
                })
                .collect();
            outln!(
                "{:<50} {:<16} {:<24} {}",
                m.member_id,
                m.host,
                m.client_id,
                assignment.join(" ")
            );
        }
        return Ok(());
    }
    let starts = start_offsets(connect, group, None)?;
    let keys: Vec<Tp> = starts.keys().cloned().collect();
    let ends = log_offsets(connect, &keys, LATEST)?;
    outln!(
        "Share group {group} is {} with {} members.",
        view.state,
        view.members.len()
    );
    outln!(
        "{:<30} {:>9} {:>15} {:>15} {:>10}",
        "TOPIC",
        "PARTITION",
        "START-OFFSET",
        "LOG-END-OFFSET",
        "LAG"
    );
    for ((topic, partition), start) in starts {
        let end = ends.get(&(topic.clone(), partition)).copied();
        // As kafka-share-groups.sh: the records at or past the start offset, in flight
        // ones included; nothing to say for a partition with no state yet.
        let lag = match end {
            Some(e) if start >= 0 => (e - start).max(0).to_string(),
            _ => "-".into(),
        };
        outln!(
            "{:<30} {:>9} {:>15} {:>15} {:>10}",
            topic,
            partition,
            if start >= 0 {
                start.to_string()
            } else {
                "-".into()
            },
            end.map_or("-".into(), |e| e.to_string()),
            lag,
        );
    }
    Ok(())
}

/// AlterShareGroupOffsets with `plan`: the group must have no members.
pub(super) fn alter(
    connect: &ConnectArgs,
    group: &str,
    plan: &[(Tp, i64)],
) -> Result<(), CliError> {
    let mut by_topic: BTreeMap<&str, Vec<AlterShareGroupOffsetsRequestPartition>> = BTreeMap::new();
    for ((t, p), o) in plan {
        by_topic.entry(t).or_default().push(
            AlterShareGroupOffsetsRequestPartition::default()
                .with_partition_index(*p)
                .with_start_offset(*o),
        );
    }
    let req = AlterShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    AlterShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(TopicName(str(t)))
                        .with_partitions(ps)
                })
                .collect(),
        );
    until_ready(connect, || {
        let resp = coordinator(connect, group)?.call(0, &req)?;
        if ResponseError::try_from_code(resp.error_code) == Some(ResponseError::NonEmptyGroup) {
            return Err(CliError::Kafka(format!(
                "share group {group} has active members; stop its consumers before resetting offsets"
            )));
        }
        check(
            resp.error_code,
            &format!("altering the offsets of share group {group}"),
        )?;
        for t in &resp.responses {
            for p in &t.partitions {
                check(
                    p.error_code,
                    &format!("altering {}-{}", t.topic_name.0, p.partition_index),
                )?;
            }
        }
        Ok(())
    })
}

/// `fjord group delete-offsets` of a share group: whole topics only, as
/// DeleteShareGroupOffsets deletes the state of every partition of a topic.
pub(super) fn delete_offsets(
    connect: &ConnectArgs,
    group: &str,
    topics: &[String],
) -> Result<(), CliError> {
    let req = DeleteShareGroupOffsetsRequest::default()
        .with_group_id(GroupId(str(group)))
        .with_topics(
            topics
                .iter()
                .map(|t| {
                    DeleteShareGroupOffsetsRequestTopic::default()
                        .with_topic_name(TopicName(str(t)))
                })
                .collect(),
        );
    let resp = until_ready(connect, || {
        let resp = coordinator(connect, group)?.call(0, &req)?;
        if ResponseError::try_from_code(resp.error_code) == Some(ResponseError::NonEmptyGroup) {
            return Err(CliError::Kafka(format!(
                "share group {group} has active members; stop its consumers before deleting offsets"
            )));
        }
        check(
            resp.error_code,
            &format!("deleting offsets of share group {group}"),
        )?;
        Ok(resp)
    })?;
    outln!("{:<30} STATUS", "TOPIC");
    let mut failed = 0;
    for t in &resp.responses {
        let status = match t.error_code {
            0 => "Successful".to_string(),
            c => {
                failed += 1;
                format!("Error: {}", error_name(c))
            }
        };
        outln!("{:<30} {status}", t.topic_name.0);
    }
    if failed > 0 {
        return Err(CliError::Kafka(format!(
            "the offsets of {failed} of {} topics were not deleted",
            resp.responses.len()
        )));
    }
    Ok(())
}
