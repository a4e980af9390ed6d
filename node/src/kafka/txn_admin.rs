//! Transaction administration: ListTransactions and DescribeTransactions (answered by
//! the coordinators on this broker) and DescribeProducers (answered by partition
//! leaders), as `kafka-transactions.sh` and Admin clients use them.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    ResponseKind, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;
use crate::time::now_ms;
use crate::txn::state::{TxnMeta, TxnState};

const STATES: [TxnState; 6] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
];

fn txn_id(s: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(s.to_string()))
}

pub fn list(ctx: &RequestContext, req: ListTransactionsRequest) -> ResponseKind {
    let version = ctx.version();
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for f in &req.state_filters {
        match STATES.iter().find(|s| s.kafka_name() == f.as_str()) {
            Some(s) => states.push(*s),
            None => unknown.push(f.clone()),
        }
    }
    let pids: Vec<i64> = req.producer_id_filters.iter().map(|p| p.0).collect();
    let now = now_ms();
    let mut listed = Vec::new();
    // Only the transactional ids the client may describe.
    let check = authz::Check::new(ctx);
    for shard in ctx.broker.txns.shards() {
        if shard.core.check_active().is_err() {
            continue;
        }
        for (id, m) in shard.all() {
            let keep = (states.is_empty() || states.contains(&m.state))
                && (pids.is_empty() || pids.contains(&m.producer_id))
                // v1 (KIP-994): only transactions running longer than this many ms.
                && (version < 1
                    || req.duration_filter < 0
                    || (m.state == TxnState::Ongoing
                        && now.saturating_sub(m.start_ms) >= req.duration_filter));
            if keep && check.transactional_id(Op::Describe, &id) {
                listed.push(
                    list_transactions_response::TransactionState::default()
                        .with_transactional_id(txn_id(&id))
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_transaction_state(StrBytes::from_static_str(m.state.kafka_name())),
                );
            }
        }
    }
    ResponseKind::ListTransactions(
        ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown)
            .with_transaction_states(listed),
    )
}

fn describe_one(
    ctx: &RequestContext,
    id: &str,
) -> describe_transactions_response::TransactionState {
    let out = describe_transactions_response::TransactionState::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_transaction_start_time_ms(-1);
    if !authz::Check::new(ctx).transactional_id(Op::Describe, id) {
        return out.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let md = ctx.broker.metadata();
    let shard = match ctx.broker.txns.shard_for(&md, id) {
        Ok(s) => s,
        Err(e) => return out.with_error_code(e.code()),
    };
    let Some(TxnMeta {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        start_ms,
        ..
    }) = shard.get(id)
    else {
        return out.with_error_code(ResponseError::TransactionalIdNotFound.code());
    };
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic, partition) in partitions {
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == topic => t.partitions.push(partition),
            _ => topics.push(
                TopicData::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    out.with_transaction_state(StrBytes::from_static_str(state.kafka_name()))
        .with_transaction_timeout_ms(timeout_ms)
        .with_transaction_start_time_ms(start_ms)
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_topics(topics)
}

pub fn describe(ctx: &RequestContext, req: DescribeTransactionsRequest) -> ResponseKind {
    let states = req
        .transactional_ids
        .iter()
        .map(|id| describe_one(ctx, id.0.as_str()))
        .collect();
    ResponseKind::DescribeTransactions(
        DescribeTransactionsResponse::default().with_transaction_states(states),
    )
}

pub fn describe_producers(ctx: &RequestContext, req: DescribeProducersRequest) -> ResponseKind {
    let check = authz::Check::new(ctx);
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let readable = check.topic(Op::Read, &name);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|p| {
                    let out = PartitionResponse::default().with_partition_index(*p);
                    if !readable {
                        return out.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(replica) =
                        ctx.broker.replicas.get(&name, *p).filter(|r| r.is_leader())
                    else {
                        let code = if ctx.broker.metadata().partition(&name, *p).is_some() {
                            ResponseError::NotLeaderOrFollower
                        } else {
                            ResponseError::UnknownTopicOrPartition
                        };
                        return out.with_error_code(code.code());
                    };
                    let open = replica.ongoing_transactions();
                    let producers = replica
                        .describe_producers()
                        .into_iter()
                        .map(|s| {
                            let txn_start = open
                                .iter()
                                .find(|(pid, _)| *pid == s.producer_id)
                                .map_or(-1, |(_, first)| *first);
                            ProducerState::default()
                                .with_producer_id(ProducerId(s.producer_id))
                                .with_producer_epoch(i32::from(s.epoch))
                                .with_last_sequence(s.last_sequence)
                                .with_last_timestamp(s.last_timestamp)
                                .with_coordinator_epoch(s.coordinator_epoch)
                                .with_current_txn_start_offset(txn_start)
                        })
                        .collect();
                    out.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::DescribeProducers(DescribeProducersResponse::default().with_topics(topics))
}
