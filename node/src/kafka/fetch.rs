//! Fetch for consumers: whole batches up to the high watermark (or last stable offset),
//! with long-polling woken by high-watermark changes, never by a sleep loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_controller::ClusterMetadata;
use futures::future::select_all;
use futures::FutureExt;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, ProducerId, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::dispatch::Reply;
use super::errors::{count_error, KafkaError};
use crate::broker::Broker;
use crate::memory::ResponseBudget;
use crate::replica::{IsolationLevel, Partition};

/// One requested partition, resolved against this broker's state.
struct Target {
    topic_slot: usize,
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: i32,
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
    replica: Result<Arc<Partition>, KafkaError>,
    /// KIP-392: a replica in the client's rack to read from instead of this leader.
    preferred_read_replica: Option<i32>,
}

struct Plan {
    topics: Vec<(String, Uuid)>,
    targets: Vec<Target>,
    max_bytes: u64,
    /// Node-wide budget of fetched bytes not yet written (`queued.max.response.bytes`).
    budget: Arc<ResponseBudget>,
    min_bytes: u64,
    isolation: IsolationLevel,
}

pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> Reply {
    if req.session_epoch > 0 {
        // Fjord answers every fetch in full and hands out no sessions (KIP-227: session
        // id 0), so an incremental fetch names a session that does not exist: tell the
        // client to start over. Epoch 0 or -1 asks for a full fetch, which is served
        // whatever session id comes with it, as Kafka does (it closes that session).
        return ResponseKind::Fetch(
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code()),
        )
        .into();
    }
    let plan = plan(ctx, &req);
    let fetcher = Fetcher {
        broker: Arc::clone(&ctx.broker),
        user: Arc::clone(&ctx.principal),
        client_id: ctx.client_id.clone(),
    };
    // Watching starts before the first read: a high watermark that moves between the
    // read and the watch would otherwise go unseen, and the fetch would sleep through it.
    let watchers = watch_all(&plan);
    let (response, bytes, errors) = read(&plan);
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    if bytes >= plan.min_bytes || errors || max_wait.is_zero() || plan.targets.is_empty() {
        return fetcher.answer(response).into();
    }
    Reply::Later(Box::pin(async move {
        fetcher.answer(long_poll(plan, watchers, max_wait).await)
    }))
}

/// Who is fetching, for the consumer byte-rate quota (`consumer_byte_rate`).
struct Fetcher {
    broker: Arc<Broker>,
    user: Arc<str>,
    client_id: String,
}

impl Fetcher {
    /// A client over its quota gets the answer without records and a throttle time, as
    /// Kafka answers: the data it would exceed the quota with is not sent.
    fn answer(&self, mut response: FetchResponse) -> ResponseKind {
        let bytes: u64 = response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.records.as_ref().map_or(0, |r| r.len() as u64))
            .sum();
        let client = crate::quota::Client {
            user: &self.user,
            client_id: &self.client_id,
        };
        let throttle = crate::quota::fetch_throttle(&self.broker, client, bytes);
        if throttle > 0 {
            for p in response
                .responses
                .iter_mut()
                .flat_map(|t| t.partitions.iter_mut())
            {
                if p.records.as_ref().is_some_and(|r| !r.is_empty()) {
                    p.records = Some(Bytes::new());
                }
            }
            response.throttle_time_ms = throttle.min(i32::MAX as u64) as i32;
        }
        ResponseKind::Fetch(response)
    }
}

fn watch_all(plan: &Plan) -> Vec<tokio::sync::watch::Receiver<i64>> {
    plan.targets
        .iter()
        .filter_map(|t| t.replica.as_ref().ok().map(|r| r.subscribe()))
        .collect()
}

/// Name Kafka gives its rack-aware selector; setting `replica.selector.class` to it
/// turns on KIP-392 fetch-from-follower.
const RACK_AWARE_SELECTOR: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// An in-sync, live replica in the client's rack, when this leader is not in it.
fn preferred_replica(
    md: &ClusterMetadata,
    topic: &str,
    partition: i32,
    client_rack: &str,
    me: i32,
) -> Option<i32> {
    let state = md.partition(topic, partition)?;
    let rack_of = |id: i32| {
        md.brokers
            .get(&id)
            .filter(|b| !b.fenced)
            .and_then(|b| b.rack.clone())
    };
    if rack_of(me).as_deref() == Some(client_rack) {
        return None;
    }
    state
        .isr
        .iter()
        .copied()
        .find(|id| *id != me && rack_of(*id).as_deref() == Some(client_rack))
}

fn plan(ctx: &RequestContext, req: &FetchRequest) -> Plan {
    let version = ctx.version();
    let md = ctx.broker.metadata();
    let rack_aware = version >= 11
        && !req.rack_id.is_empty()
        && ctx.broker.view(&md).broker_value("replica.selector.class") == RACK_AWARE_SELECTOR;
    let mut topics = Vec::new();
    let mut targets = Vec::new();
    let check = authz::Check::new(ctx);
    for t in &req.topics {
        let name = if version >= 13 {
            md.topic_by_id(&t.topic_id).map(|x| x.name.clone())
        } else {
            Some(t.topic.0.to_string())
        };
        let slot = topics.len();
        topics.push((name.clone().unwrap_or_default(), t.topic_id));
        let readable = name.as_deref().is_none_or(|n| check.topic(Op::Read, n));
        for p in &t.partitions {
            let replica = match &name {
                None => Err(KafkaError::new(
                    ResponseError::UnknownTopicId,
                    "unknown topic id",
                )),
                Some(n) if !readable => Err(authz::topic_denied(n)),
                Some(n) => match ctx.broker.replicas.get(n, p.partition) {
                    Some(r) if r.is_leader() => Ok(r),
                    // KIP-392: consumers may read from a follower, up to its high watermark.
                    Some(r) if version >= 11 && r.leader_id() >= 0 => Ok(r),
                    Some(_) => Err(KafkaError::new(
                        ResponseError::NotLeaderOrFollower,
                        "not the leader",
                    )),
                    None if md.partition(n, p.partition).is_some() => Err(KafkaError::new(
                        ResponseError::NotLeaderOrFollower,
                        "not a replica of this partition",
                    )),
                    None => Err(KafkaError::new(
                        ResponseError::UnknownTopicOrPartition,
                        "unknown topic or partition",
                    )),
                },
            };
            let preferred_read_replica = match (&name, &replica) {
                (Some(n), Ok(r)) if rack_aware && r.is_leader() => {
                    preferred_replica(&md, n, p.partition, &req.rack_id, ctx.broker.node_id)
                }
                _ => None,
            };
            targets.push(Target {
                topic_slot: slot,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: p.last_fetched_epoch,
                replica,
                preferred_read_replica,
            });
        }
    }
    Plan {
        topics,
        targets,
        // The broker's fetch.max.bytes caps what one answer holds (at least one batch is
        // still returned), which bounds a connection's memory whatever the client asks.
        max_bytes: if req.max_bytes > 0 {
            req.max_bytes as u64
        } else {
            u64::from(u32::MAX)
        }
        .min(ctx.broker.broker_i64("fetch.max.bytes").max(1024) as u64),
        budget: Arc::clone(&ctx.broker.response_budget),
        min_bytes: req.min_bytes.max(0) as u64,
        isolation: if req.isolation_level == 1 {
            IsolationLevel::ReadCommitted
        } else {
            IsolationLevel::ReadUncommitted
        },
    }
}

fn error_data(partition: i32, e: &KafkaError) -> PartitionData {
    count_error("Fetch", e.code);
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(e.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()))
}

/// Reads every target once. Returns the response, the record bytes in it, and whether
/// any partition failed (errors are answered at once, without waiting).
fn read(plan: &Plan) -> (FetchResponse, u64, bool) {
    let mut per_topic: Vec<Vec<PartitionData>> = vec![Vec::new(); plan.topics.len()];
    let mut total: u64 = 0;
    // Answers not yet written hold memory until their clients read them; this one may
    // take its share of what the node-wide budget has left, and only its first batch
    // once that is spent, so unread answers cannot starve everyone else.
    let mut reservation = plan.budget.reserve(plan.max_bytes);
    let budget = reservation.granted();
    let max_bytes = budget;
    let mut errors = false;
    for t in &plan.targets {
        let data = match &t.replica {
            Err(e) => {
                errors = true;
                error_data(t.partition, e)
            }
            Ok(replica) if t.preferred_read_replica.is_some() => PartitionData::default()
                .with_partition_index(t.partition)
                .with_high_watermark(replica.high_watermark())
                .with_last_stable_offset(replica.last_stable_offset())
                .with_log_start_offset(replica.log_start_offset())
                .with_preferred_read_replica(BrokerId(t.preferred_read_replica.unwrap_or(-1)))
                .with_records(Some(Bytes::new())),
            Ok(replica) => {
                let remaining = max_bytes.saturating_sub(total);
                let first = total == 0;
                match read_partition(replica, t, remaining, plan.isolation, first) {
                    Ok(mut d) => {
                        d.records = d.records.map(|r| reservation.charge(r));
                        let bytes = d.records.as_ref().map(|r| r.len() as u64).unwrap_or(0);
                        if bytes > 0 {
                            metrics::counter!("fjord_fetched_bytes_total", "topic" => replica.tp.topic.clone())
                                .increment(bytes);
                        }
                        total += bytes;
                        d
                    }
                    Err(e) => {
                        errors = true;
                        error_data(t.partition, &e)
                    }
                }
            }
        };
        per_topic[t.topic_slot].push(data);
    }
    let responses = plan
        .topics
        .iter()
        .zip(per_topic)
        .map(|((name, id), partitions)| {
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_string(name.clone())))
                .with_topic_id(*id)
                .with_partitions(partitions)
        })
        .collect();
    (
        FetchResponse::default().with_responses(responses),
        total,
        errors,
    )
}

fn read_partition(
    replica: &Partition,
    t: &Target,
    remaining: u64,
    isolation: IsolationLevel,
    first: bool,
) -> Result<PartitionData, KafkaError> {
    replica
        .check_leader_epoch(t.current_leader_epoch)
        .map_err(|e| KafkaError::from(&e))?;
    let mut data = PartitionData::default().with_partition_index(t.partition);
    if t.last_fetched_epoch >= 0 {
        // The fetcher's log may have diverged from ours after a leader change: tell it
        // where its last epoch ends here so it can truncate exactly.
        let (epoch, end) = replica
            .end_offset_for_epoch(t.last_fetched_epoch)
            .map_err(|e| KafkaError::from(&e))?;
        if epoch != t.last_fetched_epoch || end < t.fetch_offset {
            data.diverging_epoch = EpochEndOffset::default()
                .with_epoch(epoch)
                .with_end_offset(end);
            data.high_watermark = replica.high_watermark();
            data.last_stable_offset = replica.last_stable_offset();
            data.log_start_offset = replica.log_start_offset();
            data.records = Some(Bytes::new());
            return Ok(data);
        }
    }
    let limit = (t.partition_max_bytes.max(0) as u64).min(remaining);
    let result = replica
        .read(t.fetch_offset, limit, isolation, first)
        .map_err(|e| KafkaError::from(&e))?;
    data.high_watermark = result.high_watermark;
    data.last_stable_offset = result.last_stable_offset;
    data.log_start_offset = result.log_start_offset;
    if isolation == IsolationLevel::ReadCommitted {
        data.aborted_transactions = Some(
            result
                .aborted
                .iter()
                .map(|a| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(a.producer_id))
                        .with_first_offset(a.first_offset)
                })
                .collect(),
        );
    }
    data.records = Some(result.records);
    Ok(data)
}

/// Waits for data: re-reads whenever a fetched partition's high watermark moves, until
/// `min_bytes` are available or `max_wait` has passed.
async fn long_poll(
    plan: Plan,
    mut watchers: Vec<tokio::sync::watch::Receiver<i64>>,
    max_wait: Duration,
) -> FetchResponse {
    let deadline = Instant::now() + max_wait;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || watchers.is_empty() {
            break;
        }
        let changed = select_all(watchers.iter_mut().map(|w| w.changed().boxed()));
        match tokio::time::timeout(remaining, changed).await {
            Err(_) => break,
            Ok((Err(_), _, _)) => break, // the partition went away; answer with what we have
            Ok((Ok(()), _, _)) => {
                let (response, bytes, errors) = read(&plan);
                if bytes >= plan.min_bytes || errors {
                    return response;
                }
            }
        }
    }
    read(&plan).0
}
