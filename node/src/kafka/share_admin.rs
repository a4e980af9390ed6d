//! The share-group admin APIs of KIP-932: DescribeShareGroupOffsets,
//! AlterShareGroupOffsets and DeleteShareGroupOffsets (kafka-share-groups.sh
//! `--describe`, `--reset-offsets`, `--delete-offsets`). Sent to the group's coordinator,
//! which checks the group here and then reads, writes or deletes each share-partition's
//! state at the share coordinator (`share_state`), as Kafka's group coordinator does
//! through its persister.
//!
//! A share-partition's "offset" is its start offset (SPSO): everything below it is
//! finished. Altering it writes a fresh state (no records in flight) with the state epoch
//! one above what was stored; the partition leader's next write at the old state epoch
//! is then refused with FENCED_STATE_EPOCH and it reloads. A leader on this broker
//! forgets its copy at once. A leader elsewhere notices at its next write, which comes
//! with its next acquisition: until then (only if it had nothing left to hand out)
//! nothing is delivered from the old state either. A deleted state is not fenced that
//! way, since a tombstone has no epoch; both are allowed only on an empty group, which
//! has no member fetching.
//!
//! Like Kafka, an altered start offset is not checked against the log: a leader moves
//! one below the log start up to it when it loads, and one past the end waits for the
//! log to get there. Negative offsets are refused (INVALID_REQUEST): -1 is how the share
//! coordinator spells "not initialized".

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse, DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse, DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{info, warn};
use uuid::Uuid;

use fjord_controller::ClusterMetadata;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::dispatch::Reply;
use crate::broker::Broker;
use crate::group::share::ShareSnapshot;
use crate::share_state::{self, ShareKey, ADMIN_LEADER_EPOCH};

/// Kafka's message when share.version is below 1.
const SHARE_GROUPS_OFF: &str = "share groups are off: share.version is 0";

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// The share group a request names, checked on its coordinator: found and a share
/// group. Returns what the admin APIs need of it.
fn share_group(
    broker: &Broker,
    md: &ClusterMetadata,
    group_id: &str,
) -> Result<ShareGroupView, (ResponseError, Option<String>)> {
    let shard = broker
        .groups
        .shard_for(md, group_id)
        .map_err(|e| (e, None))?;
    match shard.share_group_info(group_id).map_err(|e| (e, None))? {
        Some(info) => Ok(ShareGroupView {
            shard,
            empty: info.members == 0,
            topics_with_state: info.topics_with_state,
        }),
        // Kafka's answer for no group and for a group of another kind alike.
        None => Err((
            ResponseError::GroupIdNotFound,
            Some(format!("Group {group_id} is not a share group.")),
        )),
    }
}

struct ShareGroupView {
    shard: Arc<crate::group::shard::Shard>,
    empty: bool,
    topics_with_state: BTreeMap<Uuid, (String, i32)>,
}

/// The partitions of the topic named `name` in the image: (id, partition count).
fn topic_in(md: &ClusterMetadata, name: &str) -> Option<(Uuid, i32)> {
    md.topics
        .get(name)
        .map(|t| (t.id, i32::try_from(t.partitions.len()).unwrap_or(i32::MAX)))
}

// ---------------------------------------------------------------------------------------
// DescribeShareGroupOffsets

/// What to answer for one partition: read its state, or an error known already.
enum Describe {
    Read(ShareKey),
    Fail(ResponseError),
}

struct DescribeTopic {
    name: String,
    id: Uuid,
    partitions: Vec<(i32, Describe)>,
}

pub fn describe_offsets(ctx: &RequestContext, req: DescribeShareGroupOffsetsRequest) -> Reply {
    let md = ctx.broker.metadata();
    let enabled = super::features::share_groups_enabled(&md);
    let check = authz::Check::new(ctx);
    // Each group: its answer at once (an error), or the topics whose states to read.
    let mut plans: Vec<
        Result<(String, Vec<DescribeTopic>), DescribeShareGroupOffsetsResponseGroup>,
    > = Vec::with_capacity(req.groups.len());
    for g in &req.groups {
        let group_id = g.group_id.0.to_string();
        let fail = |e: ResponseError, why: Option<String>| {
            DescribeShareGroupOffsetsResponseGroup::default()
                .with_group_id(g.group_id.clone())
                .with_error_code(e.code())
                .with_error_message(why.map(text))
        };
        if !enabled {
            plans.push(Err(fail(
                ResponseError::UnsupportedVersion,
                Some(SHARE_GROUPS_OFF.into()),
            )));
            continue;
        }
        if !check.group(Op::Describe, &group_id) {
            plans.push(Err(fail(ResponseError::GroupAuthorizationFailed, None)));
            continue;
        }
        let group = match share_group(&ctx.broker, &md, &group_id) {
            Ok(v) => v,
            Err((e, why)) => {
                plans.push(Err(fail(e, why)));
                continue;
            }
        };
        let key = |topic_id: Uuid, partition: i32| ShareKey {
            group_id: group_id.clone(),
            topic_id,
            partition,
        };
        let topics = match &g.topics {
            // Every partition of every topic the group may have state for that still
            // exists (a deleted topic's id is not shown under a name reused since).
            None => group
                .topics_with_state
                .iter()
                .filter_map(|(id, (_, stored_count))| {
                    let t = md.topic_by_id(id)?;
                    if !check.topic(Op::Describe, &t.name) {
                        return None;
                    }
                    let count = i32::try_from(t.partitions.len())
                        .unwrap_or(i32::MAX)
                        .max(*stored_count);
                    Some(DescribeTopic {
                        name: t.name.clone(),
                        id: *id,
                        partitions: (0..count)
                            .map(|p| (p, Describe::Read(key(*id, p))))
                            .collect(),
                    })
                })
                .collect(),
            Some(topics) => topics
                .iter()
                .map(|t| {
                    let name = t.topic_name.0.to_string();
                    let found = topic_in(&md, &name);
                    let allowed = check.topic(Op::Describe, &name);
                    DescribeTopic {
                        id: found.filter(|_| allowed).map_or(Uuid::nil(), |(id, _)| id),
                        partitions: t
                            .partitions
                            .iter()
                            .map(|&p| {
                                let what = match found {
                                    _ if !allowed => {
                                        Describe::Fail(ResponseError::TopicAuthorizationFailed)
                                    }
                                    Some((id, count)) if (0..count).contains(&p) => {
                                        Describe::Read(key(id, p))
                                    }
                                    _ => Describe::Fail(ResponseError::UnknownTopicOrPartition),
                                };
                                (p, what)
                            })
                            .collect(),
                        name,
                    }
                })
                .collect(),
        };
        plans.push(Ok((group_id, topics)));
    }
    let broker = Arc::clone(&ctx.broker);
    Reply::Later(Box::pin(async move {
        let mut groups = Vec::with_capacity(plans.len());
        for plan in plans {
            let (group_id, topics) = match plan {
                Err(answer) => {
                    groups.push(answer);
                    continue;
                }
                Ok(p) => p,
            };
            let mut out = Vec::with_capacity(topics.len());
            for t in topics {
                let reads = t.partitions.into_iter().map(|(p, what)| {
                    let broker = &broker;
                    async move {
                        let part = DescribeShareGroupOffsetsResponsePartition::default()
                            .with_partition_index(p);
                        let outcome = match what {
                            Describe::Fail(e) => Err(e),
                            Describe::Read(key) => {
                                share_state::read(broker, &key, ADMIN_LEADER_EPOCH).await
                            }
                        };
                        match outcome {
                            Ok(stored) => part
                                .with_start_offset(stored.map_or(-1, |s| s.start_offset))
                                .with_leader_epoch(-1),
                            Err(e) => part
                                .with_start_offset(-1)
                                .with_leader_epoch(-1)
                                .with_error_code(e.code()),
                        }
                    }
                });
                out.push(
                    DescribeShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(TopicName(text(t.name)))
                        .with_topic_id(t.id)
                        .with_partitions(futures::future::join_all(reads).await),
                );
            }
            groups.push(
                DescribeShareGroupOffsetsResponseGroup::default()
                    .with_group_id(kafka_protocol::messages::GroupId(text(group_id)))
                    .with_topics(out),
            );
        }
        ResponseKind::DescribeShareGroupOffsets(
            DescribeShareGroupOffsetsResponse::default().with_groups(groups),
        )
    }))
}

// ---------------------------------------------------------------------------------------
// AlterShareGroupOffsets

/// One partition to alter: its key and new start offset, or an error known already.
enum Alter {
    Write(ShareKey, i64),
    Fail(ResponseError, Option<&'static str>),
}

struct AlterTopic {
    name: String,
    /// Nil, and no partitions, for a topic not found or not allowed.
    id: Uuid,
    partition_count: i32,
    partitions: Vec<(i32, Alter)>,
}

fn alter_error(
    req: &AlterShareGroupOffsetsRequest,
    e: ResponseError,
    why: Option<String>,
) -> ResponseKind {
    // As Kafka's error answer: the error at the top and on every partition asked about.
    let responses = req
        .topics
        .iter()
        .map(|t| {
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(t.topic_name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AlterShareGroupOffsetsResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(e.code())
                        })
                        .collect(),
                )
        })
        .collect();
    ResponseKind::AlterShareGroupOffsets(
        AlterShareGroupOffsetsResponse::default()
            .with_error_code(e.code())
            .with_error_message(why.map(text))
            .with_responses(responses),
    )
}

pub fn alter_offsets(ctx: &RequestContext, req: AlterShareGroupOffsetsRequest) -> Reply {
    let md = ctx.broker.metadata();
    let group_id = req.group_id.0.to_string();
    if !super::features::share_groups_enabled(&md) {
        return alter_error(
            &req,
            ResponseError::UnsupportedVersion,
            Some(SHARE_GROUPS_OFF.into()),
        )
        .into();
    }
    let check = authz::Check::new(ctx);
    if !check.group(Op::Read, &group_id) {
        return alter_error(&req, ResponseError::GroupAuthorizationFailed, None).into();
    }
    let group = match share_group(&ctx.broker, &md, &group_id) {
        Ok(g) => g,
        Err((e, why)) => return alter_error(&req, e, why).into(),
    };
    if !group.empty {
        // Kafka's answer: the members' leaders would overwrite the new state at once.
        return alter_error(
            &req,
            ResponseError::NonEmptyGroup,
            Some(format!(
                "The group {group_id} is not empty: stop its members before altering its offsets."
            )),
        )
        .into();
    }
    let mut plan: Vec<AlterTopic> = Vec::new();
    for t in &req.topics {
        let name = t.topic_name.0.to_string();
        let allowed = check.topic(Op::Read, &name);
        let found = topic_in(&md, &name).filter(|_| allowed);
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let what = match found {
                    _ if !allowed => Alter::Fail(ResponseError::TopicAuthorizationFailed, None),
                    Some((id, count)) if (0..count).contains(&p.partition_index) => {
                        if p.start_offset < 0 {
                            Alter::Fail(
                                ResponseError::InvalidRequest,
                                Some("The start offset must not be negative."),
                            )
                        } else {
                            let key = ShareKey {
                                group_id: group_id.clone(),
                                topic_id: id,
                                partition: p.partition_index,
                            };
                            Alter::Write(key, p.start_offset)
                        }
                    }
                    _ => Alter::Fail(ResponseError::UnknownTopicOrPartition, None),
                };
                (p.partition_index, what)
            })
            .collect();
        let (id, partition_count) = found.unwrap_or((Uuid::nil(), 0));
        plan.push(AlterTopic {
            name,
            id,
            partition_count,
            partitions,
        });
    }
    let broker = Arc::clone(&ctx.broker);
    let shard = group.shard;
    Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(plan.len());
        let mut altered: Vec<(Uuid, String, i32)> = Vec::new();
        let mut written: HashSet<ShareKey> = HashSet::new();
        for AlterTopic {
            name,
            id,
            partition_count,
            partitions,
        } in plan
        {
            let writes = partitions.into_iter().map(|(p, what)| {
                let broker = &broker;
                async move {
                    let outcome = match what {
                        Alter::Fail(e, why) => Err((e, why)),
                        Alter::Write(key, offset) => reset_state(broker, &key, offset)
                            .await
                            .map(|()| key)
                            .map_err(|e| (e, None)),
                    };
                    (p, outcome)
                }
            });
            let mut out = Vec::new();
            for (p, outcome) in futures::future::join_all(writes).await {
                let part =
                    AlterShareGroupOffsetsResponsePartition::default().with_partition_index(p);
                out.push(match outcome {
                    Ok(key) => {
                        written.insert(key);
                        part
                    }
                    Err((e, why)) => part
                        .with_error_code(e.code())
                        .with_error_message(why.map(text)),
                });
            }
            if out.iter().any(|p| p.error_code == 0) {
                altered.push((id, name.clone(), partition_count));
            }
            responses.push(
                AlterShareGroupOffsetsResponseTopic::default()
                    .with_topic_name(TopicName(text(name)))
                    .with_topic_id(id)
                    .with_partitions(out),
            );
        }
        forget_at_leader(&broker, &written);
        if !altered.is_empty() {
            if let Err(e) = shard.note_share_state_topics(&group_id, &altered) {
                // The states are written; only listing them with the group's is late.
                warn!(group = %group_id, error = ?e, "could not record the share group's altered topics");
            }
        }
        ResponseKind::AlterShareGroupOffsets(
            AlterShareGroupOffsetsResponse::default().with_responses(responses),
        )
    }))
}

/// Writes a fresh state for `key` starting at `start_offset`, one state epoch above the
/// stored one, which fences the partition leader's copy.
async fn reset_state(
    broker: &Arc<Broker>,
    key: &ShareKey,
    start_offset: i64,
) -> Result<(), ResponseError> {
    let stored = share_state::read(broker, key, ADMIN_LEADER_EPOCH).await?;
    let state_epoch = stored.map_or(0, |s| s.state_epoch.saturating_add(1));
    let snapshot = ShareSnapshot {
        snapshot_epoch: 0,
        state_epoch,
        start_offset,
        state_batches: Vec::new(),
    };
    share_state::write(broker, key, ADMIN_LEADER_EPOCH, &snapshot).await?;
    info!(group = %key.group_id, topic_id = %key.topic_id, partition = key.partition, start_offset, state_epoch, "share-partition start offset altered");
    Ok(())
}

/// Drops this broker's in-memory copies of share-partitions whose state an admin just
/// replaced or deleted: the next fetch loads what is stored now.
fn forget_at_leader(broker: &Broker, keys: &HashSet<ShareKey>) {
    if !keys.is_empty() {
        broker.share.leader.retain(|k| !keys.contains(k));
    }
}

// ---------------------------------------------------------------------------------------
// DeleteShareGroupOffsets

/// A topic whose share-partition states go: (id, partition count), or why not.
type DeleteTarget = Result<(Uuid, i32), ResponseError>;

fn delete_error(e: ResponseError, why: Option<String>) -> ResponseKind {
    ResponseKind::DeleteShareGroupOffsets(
        DeleteShareGroupOffsetsResponse::default()
            .with_error_code(e.code())
            .with_error_message(why.map(text)),
    )
}

pub fn delete_offsets(ctx: &RequestContext, req: DeleteShareGroupOffsetsRequest) -> Reply {
    let md = ctx.broker.metadata();
    let group_id = req.group_id.0.to_string();
    if !super::features::share_groups_enabled(&md) {
        return delete_error(
            ResponseError::UnsupportedVersion,
            Some(SHARE_GROUPS_OFF.into()),
        )
        .into();
    }
    let check = authz::Check::new(ctx);
    if !check.group(Op::Delete, &group_id) {
        return delete_error(ResponseError::GroupAuthorizationFailed, None).into();
    }
    let group = match share_group(&ctx.broker, &md, &group_id) {
        Ok(g) => g,
        Err((e, why)) => return delete_error(e, why).into(),
    };
    if !group.empty {
        return delete_error(
            ResponseError::NonEmptyGroup,
            Some(format!(
                "The group {group_id} is not empty: stop its members before deleting its offsets."
            )),
        )
        .into();
    }
    // Each topic: (its name, and its id and how many partitions' state goes, or the
    // error to answer).
    let plan: Vec<(String, DeleteTarget)> = req
        .topics
        .iter()
        .map(|t| {
            let name = t.topic_name.0.to_string();
            let what = if !check.topic(Op::Read, &name) {
                Err(ResponseError::TopicAuthorizationFailed)
            } else {
                match topic_in(&md, &name) {
                    // Partitions the topic had when the group last looked count too.
                    Some((id, count)) => Ok((
                        id,
                        group
                            .topics_with_state
                            .get(&id)
                            .map_or(count, |(_, stored)| count.max(*stored)),
                    )),
                    None => Err(ResponseError::UnknownTopicOrPartition),
                }
            };
            (name, what)
        })
        .collect();
    let broker = Arc::clone(&ctx.broker);
    Reply::Later(Box::pin(async move {
        let mut responses = Vec::with_capacity(plan.len());
        let mut deleted: HashSet<ShareKey> = HashSet::new();
        for (name, what) in plan {
            let topic = DeleteShareGroupOffsetsResponseTopic::default()
                .with_topic_name(TopicName(text(name.clone())));
            let (id, count) = match what {
                Err(e) => {
                    responses.push(topic.with_error_code(e.code()));
                    continue;
                }
                Ok(t) => t,
            };
            let keys: Vec<ShareKey> = (0..count)
                .map(|partition| ShareKey {
                    group_id: group_id.clone(),
                    topic_id: id,
                    partition,
                })
                .collect();
            let outcome = delete_states(&broker, &keys).await;
            deleted.extend(keys);
            let topic = topic.with_topic_id(id);
            responses.push(match outcome {
                Ok(()) => {
                    info!(group = %group_id, topic = %name, partitions = count, "share group offsets deleted");
                    topic
                }
                Err(e) => topic.with_error_code(e.code()),
            });
        }
        forget_at_leader(&broker, &deleted);
        ResponseKind::DeleteShareGroupOffsets(
            DeleteShareGroupOffsetsResponse::default().with_responses(responses),
        )
    }))
}

/// Deletes the state of each of `keys`, all at once; the first error, if any.
async fn delete_states(broker: &Arc<Broker>, keys: &[ShareKey]) -> Result<(), ResponseError> {
    let outcomes =
        futures::future::join_all(keys.iter().map(|k| share_state::delete(broker, k))).await;
    outcomes.into_iter().collect()
}

/// The topics whose share-partitions may hold state for `group_id`, if it is a share
/// group coordinated here: what [`delete_all_share_state`] needs, taken before the group
/// record goes.
pub fn share_state_topics(
    broker: &Broker,
    md: &ClusterMetadata,
    group_id: &str,
) -> Option<BTreeMap<Uuid, (String, i32)>> {
    let shard = broker.groups.shard_for(md, group_id).ok()?;
    shard
        .share_group_info(group_id)
        .ok()
        .flatten()
        .map(|info| info.topics_with_state)
}

/// Deletes the state of every share-partition of a deleted share group (DeleteGroups):
/// `topics` as [`share_state_topics`] gave them before the group went.
pub async fn delete_all_share_state(
    broker: &Arc<Broker>,
    group_id: &str,
    topics: &BTreeMap<Uuid, (String, i32)>,
) -> Result<(), ResponseError> {
    let md = broker.metadata();
    let keys: Vec<ShareKey> = topics
        .iter()
        .flat_map(|(id, (_, stored))| {
            let now = md
                .topic_by_id(id)
                .map_or(0, |t| i32::try_from(t.partitions.len()).unwrap_or(i32::MAX));
            (0..now.max(*stored)).map(move |partition| ShareKey {
                group_id: group_id.to_string(),
                topic_id: *id,
                partition,
            })
        })
        .collect();
    let outcome = delete_states(broker, &keys).await;
    forget_at_leader(broker, &keys.iter().cloned().collect());
    if outcome.is_ok() && !keys.is_empty() {
        info!(
            group = group_id,
            partitions = keys.len(),
            "deleted share group's share-partition state"
        );
    }
    outcome
}
