//! OffsetCommit, OffsetFetch and OffsetDelete, served by the group's coordinator shard.
//! A commit is answered only after its record is replicated to the offsets topic's ISR.

use std::collections::BTreeMap;
use std::time::Duration;

use fjord_controller::ClusterMetadata;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::dispatch::Reply;
use crate::group::offsets::CommittedOffset;
use crate::group::shard::{OffsetCommit, TopicOffsets};
use crate::group::subscription::subscribed_topics;
use crate::time::now_ms;

/// Per topic, each partition with its error; `None` is decided by the commit itself.
type Answers = Vec<(String, Vec<(i32, Option<ResponseError>)>)>;

fn partition_exists(md: &ClusterMetadata, topic: &str, partition: i32) -> bool {
    md.partition(topic, partition).is_some()
}

pub fn commit(ctx: &RequestContext, req: OffsetCommitRequest) -> Reply {
    let version = ctx.version();
    let md = ctx.broker.metadata();
    let group_id = req.group_id.0.to_string();
    let max_metadata = ctx.broker.broker_i64("offset.metadata.max.bytes").max(0) as usize;
    let timeout =
        Duration::from_millis(ctx.broker.broker_i64("offsets.commit.timeout.ms").max(1) as u64);

    // Per-partition answers; `None` means "decided by the commit itself".
    let mut answers: Answers = Vec::new();
    let mut to_commit = Vec::new();
    let check = authz::Check::new(ctx);
    let group_readable = check.group(Op::Read, &group_id);
    for topic in &req.topics {
        let name = topic.name.0.to_string();
        let topic_readable = check.topic(Op::Read, &name);
        let mut parts = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string());
            let problem = if !group_readable {
                Some(ResponseError::GroupAuthorizationFailed)
            } else if !topic_readable {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if !partition_exists(&md, &name, p.partition_index) {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.as_ref().is_some_and(|m| m.len() > max_metadata) {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                to_commit.push(OffsetCommit {
                    topic: name.clone(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata,
                });
                None
            };
            parts.push((p.partition_index, problem));
        }
        answers.push((name, parts));
    }

    let instance = if version >= 7 {
        req.group_instance_id.as_ref().map(|s| s.to_string())
    } else {
        None
    };
    let ticket = if to_commit.is_empty() {
        Ok(None)
    } else {
        ctx.broker
            .groups
            .shard_for(&md, &group_id)
            .and_then(|shard| {
                shard
                    .commit(
                        &group_id,
                        &req.member_id,
                        instance.as_deref(),
                        req.generation_id_or_member_epoch,
                        to_commit,
                        now_ms(),
                    )
                    .map(|t| Some((shard, t)))
            })
    };
    match ticket {
        Err(e) => commit_response(answers, Some(e)).into(),
        Ok(None) => commit_response(answers, None).into(),
        Ok(Some((shard, ticket))) => Reply::Later(Box::pin(async move {
            let outcome = shard.complete_commit(ticket, timeout).await;
            commit_response(answers, outcome.err())
        })),
    }
}

fn commit_response(answers: Answers, commit_error: Option<ResponseError>) -> ResponseKind {
    let topics = answers
        .into_iter()
        .map(|(name, parts)| {
            OffsetCommitResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(index, problem)| {
                            let code = problem.or(commit_error).map_or(0, |e| e.code());
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(topics))
}

type Fetched = Result<TopicOffsets, ResponseError>;

fn fetch_group(
    ctx: &RequestContext,
    md: &ClusterMetadata,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
    member: Option<(&str, i32)>,
) -> Fetched {
    let check = authz::Check::new(ctx);
    if !check.group(Op::Describe, group_id) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    let all_topics = topics.is_none();
    let shard = ctx.broker.groups.shard_for(md, group_id)?;
    if let Some((member_id, epoch)) = member {
        // OffsetFetch v9 from a KIP-848 member: fenced like its commits.
        shard.check_fetching_member(group_id, member_id, epoch)?;
    }
    if require_stable && shard.has_pending_txn_offsets(group_id) {
        // The client retries until the transaction holding a commit has ended.
        return Err(ResponseError::UnstableOffsetCommit);
    }
    let mut found = shard.fetch_offsets(group_id, topics)?;
    // Topics the client may not describe: left out of "all offsets", and answered
    // without an offset where asked for by name.
    found.retain_mut(|(name, parts)| {
        if check.topic(Op::Describe, name) {
            return true;
        }
        parts.iter_mut().for_each(|(_, c)| *c = None);
        !all_topics
    });
    Ok(found)
}

pub fn fetch(ctx: &RequestContext, req: OffsetFetchRequest) -> ResponseKind {
    let version = ctx.version();
    let md = ctx.broker.metadata();
    let check = authz::Check::new(ctx);
    let topic_error = |name: &str| {
        if check.topic(Op::Describe, name) {
            0
        } else {
            ResponseError::TopicAuthorizationFailed.code()
        }
    };
    if version >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let mut out = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                let member = g
                    .member_id
                    .as_deref()
                    .filter(|m| version >= 9 && !m.is_empty())
                    .map(|m| (m, g.member_epoch));
                match fetch_group(ctx, &md, &g.group_id.0, wanted, req.require_stable, member) {
                    Err(e) => out.error_code = e.code(),
                    Ok(found) => {
                        out.topics = found
                            .into_iter()
                            .map(|(name, parts)| {
                                let error = topic_error(&name);
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(name)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(index, c)| {
                                                let (offset, epoch, metadata) = fetched(c);
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(index)
                                                    .with_committed_offset(offset)
                                                    .with_committed_leader_epoch(epoch)
                                                    .with_metadata(Some(metadata))
                                                    .with_error_code(error)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect();
                    }
                }
                out
            })
            .collect();
        return ResponseKind::OffsetFetch(OffsetFetchResponse::default().with_groups(groups));
    }

    // v1-7: one group. A null topic list (v2+) means all of its offsets.
    let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let mut resp = OffsetFetchResponse::default();
    let result = fetch_group(
        ctx,
        &md,
        &req.group_id.0,
        wanted.clone(),
        version >= 7 && req.require_stable,
        None,
    );
    let (found, error) = match result {
        Ok(f) => (f, None),
        Err(e) => (
            wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, None)).collect()))
                .collect(),
            Some(e),
        ),
    };
    if let Some(e) = error {
        if version >= 2 {
            resp.error_code = e.code();
        }
    }
    resp.topics = found
        .into_iter()
        .map(|(name, parts)| {
            let topic_error = topic_error(&name);
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(index, c)| {
                            let (offset, epoch, metadata) = fetched(c);
                            let mut p = OffsetFetchResponsePartition::default()
                                .with_partition_index(index)
                                .with_committed_offset(offset)
                                .with_metadata(Some(metadata));
                            if version >= 5 {
                                p.committed_leader_epoch = epoch;
                            }
                            // v1 has no group-level error: each partition carries it.
                            p.error_code = if version < 2 {
                                error.map_or(topic_error, |e| e.code())
                            } else {
                                topic_error
                            };
                            p
                        })
                        .collect(),
                )
        })
        .collect();
    ResponseKind::OffsetFetch(resp)
}

/// Kafka's answer for a partition: the commit, or offset -1 with empty metadata.
fn fetched(c: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match c {
        Some(c) => (
            c.offset,
            c.leader_epoch,
            StrBytes::from_string(c.metadata.unwrap_or_default()),
        ),
        None => (-1, -1, StrBytes::default()),
    }
}

pub fn delete(ctx: &RequestContext, req: OffsetDeleteRequest) -> Reply {
    let md = ctx.broker.metadata();
    let group_id = req.group_id.0.to_string();
    let timeout =
        Duration::from_millis(ctx.broker.broker_i64("offsets.commit.timeout.ms").max(1) as u64);
    let mut unknown: BTreeMap<(String, i32), ResponseError> = BTreeMap::new();
    let mut partitions = Vec::new();
    let check = authz::Check::new(ctx);
    if !check.group(Op::Delete, &group_id) {
        return delete_response(
            &req,
            Some(ResponseError::GroupAuthorizationFailed),
            &unknown,
        )
        .into();
    }
    for t in &req.topics {
        let readable = check.topic(Op::Read, &t.name.0);
        for p in &t.partitions {
            let key = (t.name.0.to_string(), p.partition_index);
            if !readable {
                unknown.insert(key, ResponseError::TopicAuthorizationFailed);
            } else if partition_exists(&md, &key.0, key.1) {
                partitions.push(key);
            } else {
                unknown.insert(key, ResponseError::UnknownTopicOrPartition);
            }
        }
    }
    let shard = match ctx.broker.groups.shard_for(&md, &group_id) {
        Ok(s) => s,
        Err(e) => return delete_response(&req, Some(e), &BTreeMap::new()).into(),
    };
    let subscribed = |d: &crate::group::shard::GroupDescription, topic: &str| {
        d.members.iter().any(|(_, metadata)| {
            // Unreadable metadata: assume the topic is in use rather than delete offsets
            // a live consumer relies on.
            subscribed_topics(metadata).is_none_or(|ts| ts.iter().any(|t| t == topic))
        })
    };
    match shard.delete_offsets(&group_id, partitions, subscribed, now_ms()) {
        Err(e) => delete_response(&req, Some(e), &BTreeMap::new()).into(),
        Ok((results, ticket)) => {
            let mut errors = unknown;
            for (key, r) in results {
                if let Err(e) = r {
                    errors.insert(key, e);
                }
            }
            match ticket {
                None => delete_response(&req, None, &errors).into(),
                Some(ticket) => Reply::Later(Box::pin(async move {
                    let group_error = shard.complete_commit(ticket, timeout).await.err();
                    delete_response(&req, group_error, &errors)
                })),
            }
        }
    }
}

fn delete_response(
    req: &OffsetDeleteRequest,
    group_error: Option<ResponseError>,
    errors: &BTreeMap<(String, i32), ResponseError>,
) -> ResponseKind {
    let mut resp = OffsetDeleteResponse::default();
    if let Some(e) = group_error {
        resp.error_code = e.code();
        return ResponseKind::OffsetDelete(resp);
    }
    resp.topics = req
        .topics
        .iter()
        .map(|t| {
            OffsetDeleteResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let code = errors
                                .get(&(t.name.0.to_string(), p.partition_index))
                                .map_or(0, |e| e.code());
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    ResponseKind::OffsetDelete(resp)
}
