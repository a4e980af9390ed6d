//! The transactional APIs: InitProducerId with a transactional id, AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn (served by the transaction coordinator) and TxnOffsetCommit
//! (served by the group coordinator, after a KIP-890 check with the transaction's).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, ResponseKind, TopicName, TransactionalId,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::dispatch::Reply;
use super::errors::KafkaError;
use super::find_coordinator::create_internal_topics;
use crate::group::shard::OffsetCommit;
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::time::now_ms;
use crate::txn::coordinator::complete_soon;
use crate::txn::service::verify_with_coordinator;
use crate::txn::state::{self, EndStep, InitStep};

/// How long EndTxn waits for the transaction's markers before answering anyway.
const MARKERS_WAIT: Duration = Duration::from_secs(5);

/// PRODUCER_FENCED as a client of `version` understands it: versions before
/// `first_version` only know INVALID_PRODUCER_EPOCH, which they handle the same way.
pub fn fenced_for_version(code: i16, version: i16, first_version: i16) -> i16 {
    if code == ResponseError::ProducerFenced.code() && version < first_version {
        ResponseError::InvalidProducerEpoch.code()
    } else {
        code
    }
}

/// InitProducerId for a transactional producer: a producer id and a bumped epoch that
/// fences every older producer with the same transactional id.
pub async fn init_transactional(
    ctx: &RequestContext,
    txn_id: &str,
    req: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let max_timeout = ctx.broker.broker_i64("transaction.max.timeout.ms");
    if req.transaction_timeout_ms <= 0 || i64::from(req.transaction_timeout_ms) > max_timeout {
        resp.error_code = ResponseError::InvalidTransactionTimeout.code();
        return resp;
    }
    let md = ctx.broker.metadata();
    let shard = match ctx.broker.txns.shard_for(&md, txn_id) {
        Ok(s) => s,
        Err(e) => {
            resp.error_code = e.code();
            return resp;
        }
    };
    let needs_fresh_id = shard
        .get(txn_id)
        .is_none_or(|m| m.producer_epoch >= i16::MAX - 1);
    let fresh_id = if needs_fresh_id {
        match ctx.broker.producer_ids.next_id().await {
            Ok(id) => id,
            Err(e) => {
                resp.error_code = KafkaError::from(&e).code();
                return resp;
            }
        }
    } else {
        -1
    };
    let expected = (req.producer_id.0 >= 0).then_some((req.producer_id.0, req.producer_epoch));
    let timeout = req.transaction_timeout_ms;
    let outcome = shard
        .update(txn_id, |cur| {
            // The id expired (or its epochs ran out) since it was looked at: no fresh
            // producer id is at hand, so the client asks again.
            if fresh_id < 0 && cur.is_none_or(|m| m.producer_epoch >= i16::MAX - 1) {
                return Err(ResponseError::ConcurrentTransactions);
            }
            match state::init(cur, fresh_id, timeout, expected, now_ms())? {
                InitStep::Ready(m) => {
                    let answer = Ok((m.producer_id, m.producer_epoch));
                    Ok((Some(m), answer))
                }
                InitStep::AbortFirst(m) => {
                    Ok((Some(m), Err(ResponseError::ConcurrentTransactions)))
                }
            }
        })
        .await;
    match outcome.and_then(|answer| answer) {
        Ok((pid, epoch)) => {
            resp.producer_id = ProducerId(pid);
            resp.producer_epoch = epoch;
        }
        Err(e) => {
            if e == ResponseError::ConcurrentTransactions {
                // The older producer's open transaction is being aborted now.
                let _ = complete_soon(&ctx.broker, shard, txn_id.to_string());
            }
            resp.error_code = fenced_for_version(e.code(), ctx.version(), 4);
        }
    }
    resp
}

/// Adds partitions to a transaction; one error for all of them (Kafka answers per
/// partition, but the coordinator's decision covers the whole request).
async fn add_to_txn(
    ctx: &RequestContext,
    txn_id: &str,
    producer_id: i64,
    epoch: i16,
    partitions: Vec<(String, i32)>,
) -> Result<(), ResponseError> {
    let md = ctx.broker.metadata();
    let shard = ctx.broker.txns.shard_for(&md, txn_id)?;
    shard
        .update(txn_id, |cur| {
            let m = cur.ok_or(ResponseError::InvalidProducerIdMapping)?;
            Ok((
                state::add_partitions(m, producer_id, epoch, &partitions, now_ms())?,
                (),
            ))
        })
        .await
}

pub async fn add_partitions(ctx: &RequestContext, req: AddPartitionsToTxnRequest) -> ResponseKind {
    let version = ctx.version();
    let md = ctx.broker.metadata();
    // v4+ batches transactions (broker to broker in Kafka); v0-3 carry one.
    let txns: Vec<_> = if version >= 4 {
        req.transactions
            .into_iter()
            .map(|t| {
                (
                    t.transactional_id,
                    t.producer_id.0,
                    t.producer_epoch,
                    t.topics,
                    t.verify_only,
                )
            })
            .collect()
    } else {
        vec![(
            req.v3_and_below_transactional_id,
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
            req.v3_and_below_topics,
            false,
        )]
    };
    let mut results = Vec::with_capacity(txns.len());
    let check = authz::Check::new(ctx);
    for (txn_id, pid, epoch, topics, verify_only) in txns {
        let wanted: Vec<(String, i32)> = topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
            .collect();
        // Partitions that cannot be added, and why; the others are then not attempted.
        // Internal topics are written by their coordinators only.
        let refused: Vec<((String, i32), ResponseError)> = wanted
            .iter()
            .filter_map(|(t, p)| {
                let why = if !check.topic(Op::Write, t) {
                    ResponseError::TopicAuthorizationFailed
                } else if md.partition(t, *p).is_none()
                    || md.topics.get(t).is_some_and(|t| t.internal)
                {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    return None;
                };
                Some(((t.clone(), *p), why))
            })
            .collect();
        let txn_allowed = check.transactional_id(Op::Write, &txn_id);
        let common: Option<ResponseError> = if !txn_allowed {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        } else if !refused.is_empty() {
            None
        } else if verify_only {
            let shard = ctx.broker.txns.shard_for(&md, &txn_id);
            shard
                .and_then(|s| match s.get(&txn_id) {
                    Some(m) => wanted
                        .iter()
                        .try_for_each(|tp| state::verify(&m, pid, epoch, tp)),
                    None => Err(ResponseError::InvalidProducerIdMapping),
                })
                .err()
        } else {
            add_to_txn(ctx, &txn_id, pid, epoch, wanted.clone())
                .await
                .err()
        };
        let ok = |tp: &(String, i32)| -> i16 {
            if refused.is_empty() || !txn_allowed {
                common.map_or(0, |e| fenced_for_version(e.code(), version, 2))
            } else if let Some((_, why)) = refused.iter().find(|(r, _)| r == tp) {
                why.code()
            } else {
                ResponseError::OperationNotAttempted.code()
            }
        };
        let topic_results: Vec<AddPartitionsToTxnTopicResult> = topics
            .iter()
            .map(|t| {
                let name = t.name.0.to_string();
                AddPartitionsToTxnTopicResult::default()
                    .with_name(t.name.clone())
                    .with_results_by_partition(
                        t.partitions
                            .iter()
                            .map(|p| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(*p)
                                    .with_partition_error_code(ok(&(name.clone(), *p)))
                            })
                            .collect(),
                    )
            })
            .collect();
        results.push((txn_id, topic_results));
    }
    let mut resp = AddPartitionsToTxnResponse::default();
    if version >= 4 {
        resp.results_by_transaction = results
            .into_iter()
            .map(|(id, topics)| {
                AddPartitionsToTxnResult::default()
                    .with_transactional_id(id)
                    .with_topic_results(topics)
            })
            .collect();
    } else if let Some((_, topics)) = results.into_iter().next() {
        resp.results_by_topic_v3_and_below = topics;
    }
    ResponseKind::AddPartitionsToTxn(resp)
}

pub async fn add_offsets(ctx: &RequestContext, req: AddOffsetsToTxnRequest) -> ResponseKind {
    let check = authz::Check::new(ctx);
    let denied = if !check.transactional_id(Op::Write, &req.transactional_id.0) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !check.group(Op::Read, &req.group_id.0) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    if let Some(e) = denied {
        return ResponseKind::AddOffsetsToTxn(
            AddOffsetsToTxnResponse::default().with_error_code(e.code()),
        );
    }
    let mut md = ctx.broker.metadata();
    if !md.topics.contains_key(OFFSETS_TOPIC) {
        if let Err((code, _)) = create_internal_topics(ctx, &md, OFFSETS_TOPIC).await {
            return ResponseKind::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(code.code()),
            );
        }
        md = ctx.broker.metadata();
    }
    let code = match md.topics.get(OFFSETS_TOPIC) {
        None => ResponseError::CoordinatorNotAvailable.code(),
        Some(t) => {
            let partition = partition_for(&req.group_id.0, t.partitions.len());
            let added = add_to_txn(
                ctx,
                &req.transactional_id.0,
                req.producer_id.0,
                req.producer_epoch,
                vec![(OFFSETS_TOPIC.to_string(), partition)],
            )
            .await;
            added
                .err()
                .map_or(0, |e| fenced_for_version(e.code(), ctx.version(), 2))
        }
    };
    ResponseKind::AddOffsetsToTxn(AddOffsetsToTxnResponse::default().with_error_code(code))
}

pub async fn end(ctx: &RequestContext, req: EndTxnRequest) -> ResponseKind {
    let txn_id = req.transactional_id.0.to_string();
    if !authz::Check::new(ctx).transactional_id(Op::Write, &txn_id) {
        return ResponseKind::EndTxn(
            EndTxnResponse::default()
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
        );
    }
    let md = ctx.broker.metadata();
    let result = match ctx.broker.txns.shard_for(&md, &txn_id) {
        Err(e) => Err(e),
        Ok(shard) => {
            let decided = shard
                .update(&txn_id, |cur| {
                    let m = cur.ok_or(ResponseError::InvalidProducerIdMapping)?;
                    match state::end(
                        m,
                        req.producer_id.0,
                        req.producer_epoch,
                        req.committed,
                        now_ms(),
                    )? {
                        EndStep::Prepare(next) => Ok((Some(next), ())),
                        EndStep::AlreadyDone => Ok((None, ())),
                    }
                })
                .await;
            if decided.is_ok() {
                // Answer once the markers are written, within a bound: a consumer that
                // reads its committed offsets right after commit_transaction() then
                // finds them stable instead of UNSTABLE_OFFSET_COMMIT. The outcome is
                // decided either way; past the bound the markers follow on their own.
                if let Some(task) = complete_soon(&ctx.broker, Arc::clone(&shard), txn_id.clone()) {
                    let _ = tokio::time::timeout(MARKERS_WAIT, task).await;
                }
            }
            decided
        }
    };
    let code = result
        .err()
        .map_or(0, |e| fenced_for_version(e.code(), ctx.version(), 2));
    ResponseKind::EndTxn(EndTxnResponse::default().with_error_code(code))
}

pub fn txn_offset_commit(ctx: &RequestContext, req: TxnOffsetCommitRequest) -> Reply {
    let version = ctx.version();
    let broker = Arc::clone(&ctx.broker);
    // WRITE on the transactional id and READ on the group, or nothing is committed;
    // READ on each topic, or its partitions are refused.
    let check = authz::Check::new(ctx);
    let denied = if !check.transactional_id(Op::Write, &req.transactional_id.0) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !check.group(Op::Read, &req.group_id.0) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    let unreadable: Vec<String> = req
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|t| !check.topic(Op::Read, t))
        .collect();
    let timeout =
        Duration::from_millis(broker.broker_i64("offsets.commit.timeout.ms").max(1) as u64);
    Reply::Later(Box::pin(async move {
        let md = broker.metadata();
        let group_id = req.group_id.0.to_string();
        let TransactionalId(txn_id) = &req.transactional_id;
        let mut offsets = Vec::new();
        let mut unknown = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                let topic = t.name.0.to_string();
                if unreadable.contains(&topic) {
                    continue;
                }
                if md.partition(&topic, p.partition_index).is_none() {
                    unknown.push((topic, p.partition_index));
                    continue;
                }
                offsets.push(OffsetCommit {
                    topic,
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 2 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            }
        }
        let result: Result<(), ResponseError> = async {
            if let Some(e) = denied {
                return Err(e);
            }
            let shard = broker.groups.shard_for(&md, &group_id)?;
            let offsets_partition = (OFFSETS_TOPIC.to_string(), shard.core.partition);
            let replica = broker
                .replicas
                .get(OFFSETS_TOPIC, shard.core.partition)
                .ok_or(ResponseError::NotCoordinator)?;
            if !replica.transaction_open_or_verified(req.producer_id.0, req.producer_epoch) {
                verify_with_coordinator(
                    &broker,
                    txn_id,
                    req.producer_id.0,
                    req.producer_epoch,
                    &offsets_partition,
                )
                .await?;
                replica
                    .verify_transaction(req.producer_id.0, req.producer_epoch)
                    .map_err(|_| ResponseError::NotCoordinator)?;
            }
            if offsets.is_empty() {
                return Ok(());
            }
            let instance = if version >= 3 {
                req.group_instance_id.as_ref().map(|s| s.to_string())
            } else {
                None
            };
            let (member, generation) = if version >= 3 {
                (req.member_id.to_string(), req.generation_id)
            } else {
                (String::new(), -1)
            };
            let ticket = shard.txn_commit(
                &group_id,
                req.producer_id.0,
                req.producer_epoch,
                &member,
                instance.as_deref(),
                generation,
                offsets,
                now_ms(),
            )?;
            shard.complete_commit(ticket, timeout).await
        }
        .await;
        let code = result.err().map_or(0, |e| e.code());
        let topics = req
            .topics
            .iter()
            .map(|t| {
                let name = t.name.0.to_string();
                TxnOffsetCommitResponseTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let e = if denied.is_some() {
                                    code
                                } else if unreadable.contains(&name) {
                                    ResponseError::TopicAuthorizationFailed.code()
                                } else if unknown.contains(&(name.clone(), p.partition_index)) {
                                    ResponseError::UnknownTopicOrPartition.code()
                                } else {
                                    code
                                };
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(e)
                            })
                            .collect(),
                    )
            })
            .collect();
        ResponseKind::TxnOffsetCommit(TxnOffsetCommitResponse::default().with_topics(topics))
    }))
}
