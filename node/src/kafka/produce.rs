//! Produce: validate each record batch (outside the partition lock), append it on the
//! leader, and answer per `acks`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_controller::ClusterMetadata;
use fjord_storage::batch::validate_records;
use fjord_storage::validate::{recompress, MAX_INFLATED_BATCH_BYTES};
use fjord_storage::{validate_produce, Compression, ProduceRules, RecordError, StorageError};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::dispatch::Reply;
use super::errors::{count_error, storage_error, KafkaError};
use crate::lease::Lease;
use crate::replica::{LeaderAppend, Partition, Replication};
use crate::time::now_ms;
use crate::txn::service::verify_with_coordinator;

fn err(code: ResponseError, msg: impl Into<String>) -> KafkaError {
    KafkaError::new(code, msg)
}

fn refuse(code: ResponseError, msg: impl Into<String>) -> ProduceError {
    err(code, msg).into()
}

/// A refused partition: its error and, for records that broke a rule, which ones by
/// index in the batch (KIP-467), so a client fails only those and retries the rest.
struct ProduceError {
    error: KafkaError,
    records: Vec<RecordError>,
}

impl From<KafkaError> for ProduceError {
    fn from(error: KafkaError) -> Self {
        ProduceError {
            error,
            records: Vec::new(),
        }
    }
}

impl From<&StorageError> for ProduceError {
    fn from(e: &StorageError) -> Self {
        let records = match e {
            StorageError::RecordErrors { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        ProduceError {
            error: KafkaError::new(storage_error(e), e.to_string()),
            records,
        }
    }
}

/// An appended partition that must reach `target` before acks=all is answered.
struct AwaitReplication {
    topic: usize,
    partition: usize,
    replica: Arc<Partition>,
    target: i64,
    leader_epoch: i32,
    min_isr: usize,
}

pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> Reply {
    let version = ctx.version();
    let acks = req.acks;
    let md = ctx.broker.metadata();
    let mut waits = Vec::new();
    let mut first_error: Option<String> = None;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let check = authz::Check::new(ctx);
    // A transactional producer needs WRITE on its transactional id, or nothing it sent
    // is written (Kafka fails every partition).
    let txn_denied = req
        .transactional_id
        .as_ref()
        .filter(|id| !check.transactional_id(Op::Write, id.0.as_str()))
        .map(|id| authz::transactional_id_denied(id.0.as_str()));
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let (name, topic_state) = if version >= 13 {
            match md.topic_by_id(&topic.topic_id) {
                Some(t) => (t.name.clone(), Some(t)),
                None => (String::new(), None),
            }
        } else {
            let n = topic.name.0.to_string();
            let t = md.topics.get(&n);
            (n, t)
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, p) in topic.partition_data.into_iter().enumerate() {
            let mut resp = PartitionProduceResponse::default().with_index(p.index);
            let result: Result<_, ProduceError> = if let Some(e) = &txn_denied {
                Err(ProduceError::from(e.clone()))
            } else if !check.topic(Op::Write, &name) {
                Err(ProduceError::from(authz::topic_denied(&name)))
            } else if !matches!(acks, -1..=1) {
                Err(ProduceError::from(err(
                    ResponseError::InvalidRequiredAcks,
                    format!("acks must be -1, 0 or 1, got {acks}"),
                )))
            } else if topic_state.is_none() {
                Err(ProduceError::from(err(
                    if version >= 13 {
                        ResponseError::UnknownTopicId
                    } else {
                        ResponseError::UnknownTopicOrPartition
                    },
                    format!("topic {name} does not exist"),
                )))
            } else if let Err(e) = verify_transaction(
                ctx,
                req.transactional_id.as_ref().map(|t| t.0.as_str()),
                &name,
                p.index,
                p.records.as_deref().unwrap_or_default(),
            )
            .await
            {
                Err(ProduceError::from(e))
            } else {
                append_one(
                    ctx,
                    &md,
                    &name,
                    p.index,
                    p.records.as_deref().unwrap_or_default(),
                    acks,
                )
            };
            match result {
                Ok((replica, LeaderAppend { info, leader_epoch }, min_isr)) => {
                    resp.base_offset = info.first_offset;
                    resp.log_append_time_ms = info.log_append_time.unwrap_or(-1);
                    resp.log_start_offset = replica.log_start_offset();
                    // High watermark first, then leadership (see `await_replication`).
                    let replicated = replica.high_watermark() > info.last_offset
                        && replica.is_leader()
                        && replica.leader_epoch() == leader_epoch;
                    if acks == -1 && !replicated {
                        waits.push(AwaitReplication {
                            topic: ti,
                            partition: pi,
                            replica,
                            target: info.last_offset + 1,
                            leader_epoch,
                            min_isr,
                        });
                    }
                }
                Err(ProduceError { error: e, records }) => {
                    // Per-request detail, e.g. which sequence a refused batch carried.
                    tracing::debug!(
                        partition = %format_args!("{name}-{}", p.index),
                        error = ?e.code,
                        message = %e.message,
                        "produce refused"
                    );
                    first_error.get_or_insert_with(|| format!("{name}-{}: {}", p.index, e.message));
                    count_error("Produce", e.code);
                    resp.error_code = e.code();
                    if version >= 8 {
                        resp.record_errors = records
                            .into_iter()
                            .map(|r| {
                                BatchIndexAndErrorMessage::default()
                                    .with_batch_index(r.batch_index)
                                    .with_batch_index_error_message(Some(StrBytes::from_string(
                                        r.message,
                                    )))
                            })
                            .collect();
                        resp.error_message = Some(StrBytes::from_string(e.message));
                    }
                }
            }
            partitions.push(resp);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        // Kafka's contract for acks=0: no response, and a failed write closes the
        // connection so the producer notices.
        return match first_error {
            Some(e) => Reply::Close(format!("acks=0 produce failed: {e}")),
            None => Reply::Nothing,
        };
    }
    let response = ProduceResponse::default().with_responses(responses);
    if waits.is_empty() {
        return ResponseKind::Produce(response).into();
    }
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let lease = Arc::clone(&ctx.broker.lease);
    Reply::Later(Box::pin(await_replication(response, waits, timeout, lease)))
}

/// KIP-890: before the first transactional batch of a producer is written to a
/// partition, the producer's transaction coordinator must confirm that the partition is
/// in its open transaction. Without this, a write that arrives after its transaction
/// ended would open a transaction no coordinator knows of, holding the last stable
/// offset forever.
async fn verify_transaction(
    ctx: &RequestContext,
    txn_id: Option<&str>,
    topic: &str,
    partition: i32,
    records: &[u8],
) -> Result<(), KafkaError> {
    let Ok(header) = fjord_storage::BatchHeader::parse(records) else {
        return Ok(()); // append_one rejects it with the precise reason
    };
    if !header.is_transactional() || header.is_control() {
        return Ok(());
    }
    let Some(replica) = ctx.broker.replicas.get(topic, partition) else {
        return Ok(()); // append_one answers NOT_LEADER_OR_FOLLOWER
    };
    let (pid, epoch) = (header.producer_id, header.producer_epoch);
    if replica.transaction_open_or_verified(pid, epoch) {
        return Ok(());
    }
    let txn_id = txn_id.ok_or_else(|| {
        err(
            ResponseError::InvalidTxnState,
            "transactional batch without a transactional id",
        )
    })?;
    let tp = (topic.to_string(), partition);
    match verify_with_coordinator(&ctx.broker, txn_id, pid, epoch, &tp).await {
        Ok(()) => replica
            .verify_transaction(pid, epoch)
            .map_err(|e| KafkaError::from(&e)),
        // Kafka's mapping for produce: a coordinator that cannot answer now is a
        // retriable NOT_ENOUGH_REPLICAS; a fenced producer is told so.
        Err(
            ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::ConcurrentTransactions,
        ) => Err(err(
            ResponseError::NotEnoughReplicas,
            "the transaction coordinator could not confirm the partition yet",
        )),
        Err(ResponseError::ProducerFenced) => Err(err(
            ResponseError::InvalidProducerEpoch,
            "the producer was fenced by a newer one with its transactional id",
        )),
        Err(code) => Err(err(
            code,
            format!("{topic}-{partition} is not in the producer's open transaction"),
        )),
    }
}

fn append_one(
    ctx: &RequestContext,
    md: &ClusterMetadata,
    topic: &str,
    partition: i32,
    records: &[u8],
    acks: i16,
) -> Result<(Arc<Partition>, LeaderAppend, usize), ProduceError> {
    if md.topics.get(topic).is_some_and(|t| t.internal) {
        // Internal topics are written by their coordinators only; a stray client record
        // could corrupt group state.
        return Err(refuse(
            ResponseError::InvalidTopicException,
            format!("cannot append to internal topic {topic}"),
        ));
    }
    let state = md.partition(topic, partition).ok_or_else(|| {
        err(
            ResponseError::UnknownTopicOrPartition,
            format!("{topic}-{partition} does not exist"),
        )
    })?;
    let replica = ctx
        .broker
        .replicas
        .get(topic, partition)
        .filter(|r| r.is_leader())
        .ok_or_else(|| {
            err(
                ResponseError::NotLeaderOrFollower,
                format!(
                    "broker {} does not lead {topic}-{partition}",
                    ctx.broker.node_id
                ),
            )
        })?;
    let topic_configs = md
        .topics
        .get(topic)
        .map(|t| t.configs.clone())
        .unwrap_or_default();
    let min_isr: usize = ctx
        .broker
        .view(md)
        .topic_value("min.insync.replicas", &topic_configs)
        .parse()
        .unwrap_or(1);
    // The leader's own ISR: it learns of a shrink it asked for as soon as the controller
    // answers, before the metadata image reaches this broker.
    let isr = match replica.isr() {
        own if own.is_empty() => state.isr.clone(),
        own => own,
    };
    if acks == -1 && isr.len() < min_isr {
        return Err(refuse(
            ResponseError::NotEnoughReplicas,
            format!("ISR {isr:?} is smaller than min.insync.replicas={min_isr}"),
        ));
    }
    let view = ctx.broker.view(md);
    let compacted = view
        .topic_value("cleanup.policy", &topic_configs)
        .split(',')
        .any(|p| p.trim() == "compact");
    let now = now_ms();
    let rules = ProduceRules {
        max_batch_bytes: replica.max_message_bytes(),
        // Compaction keeps the latest record per key, so every record needs one.
        require_keys: compacted,
        timestamps: replica.timestamp_window(now),
        max_inflated_bytes: MAX_INFLATED_BATCH_BYTES,
    };
    let mut validated = validate_produce(records, &rules).map_err(|e| ProduceError::from(&e))?;
    // A topic whose compression.type names a codec stores every batch with it.
    let recompressed;
    if let Some(target) =
        Compression::from_topic_config(&view.topic_value("compression.type", &topic_configs))
    {
        let (_, header) = validated.batches()[0];
        if header.compression().map_err(|e| ProduceError::from(&e))? != target {
            let level = compression_level(&view, &topic_configs, target);
            recompressed = recompress(records, &header, target, level, MAX_INFLATED_BATCH_BYTES)
                .map_err(|e| ProduceError::from(&e))?;
            validated = validate_records(&recompressed, rules.max_batch_bytes)
                .map_err(|e| ProduceError::from(&e))?;
        }
    }
    let appended = replica
        .append_as_leader(&validated, now)
        .map_err(|e| KafkaError::from(&e))?;
    let topic_label = replica.tp.topic.clone();
    metrics::counter!("fjord_produced_bytes_total", "topic" => topic_label.clone())
        .increment(records.len() as u64);
    metrics::counter!("fjord_produced_records_total", "topic" => topic_label)
        .increment(appended.info.records.max(0) as u64);
    Ok((replica, appended, min_isr))
}

/// The topic's level for broker-side compression with `codec` (`None`: the codec's own
/// default).
fn compression_level(
    view: &crate::config::ConfigView<'_>,
    topic_configs: &std::collections::BTreeMap<String, String>,
    codec: Compression,
) -> Option<i32> {
    let key = match codec {
        Compression::Gzip => "compression.gzip.level",
        Compression::Lz4 => "compression.lz4.level",
        Compression::Zstd => "compression.zstd.level",
        Compression::None | Compression::Snappy => return None,
    };
    view.topic_value(key, topic_configs)
        .trim()
        .parse()
        .ok()
        .filter(|l| *l != -1)
}

/// Waits for each appended partition to be replicated. A broker whose lease runs out
/// meanwhile (cut off from the controller, so probably deposed) stops waiting and answers
/// NOT_LEADER_OR_FOLLOWER: the client moves to the new leader at once instead of after
/// its request timeout, and retries the batch there (idempotence dedupes it).
async fn await_replication(
    mut response: ProduceResponse,
    waits: Vec<AwaitReplication>,
    timeout: Duration,
    lease: Arc<Lease>,
) -> ResponseKind {
    let deadline = Instant::now() + timeout;
    for w in waits {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome = tokio::select! {
            biased;
            o = w.replica.await_replication(w.target, w.leader_epoch, remaining) => o,
            () = lease.expired() => Replication::LeadershipLost,
        };
        let p = &mut response.responses[w.topic].partition_responses[w.partition];
        let (code, message) = match outcome {
            Replication::Replicated if w.replica.isr().len() >= w.min_isr => continue,
            // Replicated, but the ISR shrank below min.insync.replicas meanwhile.
            Replication::Replicated => (
                ResponseError::NotEnoughReplicasAfterAppend,
                "the ISR shrank below min.insync.replicas while the write was replicated",
            ),
            // Kafka's answer too: the write's fate is unknown, and the client retries
            // against the new leader.
            Replication::LeadershipLost => (
                ResponseError::NotLeaderOrFollower,
                "leadership moved (or this broker lost the controller) before the in-sync replicas acknowledged the write",
            ),
            Replication::TimedOut => (
                ResponseError::RequestTimedOut,
                "timed out waiting for the in-sync replicas to acknowledge the write",
            ),
        };
        tracing::debug!(partition = %w.replica.tp, error = ?code, message, "produce not acknowledged");
        count_error("Produce", code);
        p.error_code = code.code();
        p.error_message = Some(StrBytes::from_static_str(message));
    }
    ResponseKind::Produce(response)
}
