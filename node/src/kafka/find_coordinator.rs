//! FindCoordinator: which broker coordinates a group or a transactional id. The answer
//! comes from metadata: the leader of the key's `__consumer_offsets` (or
//! `__transaction_state`) partition, which is created on first use.

use std::collections::BTreeMap;

use fjord_controller::{
    ClusterMetadata, ControllerRequest, ControllerResponse, CreateTopicRequest,
};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;
use crate::broker::Broker;
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::share_state::SHARE_STATE_TOPIC;
use crate::txn::TXN_TOPIC;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub async fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> ResponseKind {
    let version = ctx.version();
    let keys: Vec<String> = if version >= 4 {
        req.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![req.key.to_string()]
    };
    let mut found = Vec::with_capacity(keys.len());
    let check = authz::Check::new(ctx);
    for key in keys {
        let answer = match req.key_type {
            KEY_TYPE_GROUP if !check.group(Op::Describe, &key) => {
                let e = authz::group_denied(&key);
                Err((e.code, e.message))
            }
            KEY_TYPE_TRANSACTION if !check.transactional_id(Op::Describe, &key) => {
                let e = authz::transactional_id_denied(&key);
                Err((e.code, e.message))
            }
            KEY_TYPE_GROUP => coordinator_for(ctx, OFFSETS_TOPIC, &key).await,
            KEY_TYPE_TRANSACTION => coordinator_for(ctx, TXN_TOPIC, &key).await,
            other => Err((
                ResponseError::InvalidRequest,
                format!("unknown coordinator key type {other}"),
            )),
        };
        found.push((key, answer));
    }
    let mut response = FindCoordinatorResponse::default().with_error_message(None);
    if version >= 4 {
        response.coordinators = found
            .into_iter()
            .map(|(key, answer)| {
                let mut c = Coordinator::default()
                    .with_error_message(None)
                    .with_key(StrBytes::from_string(key));
                match answer {
                    Ok((node, host, port)) => {
                        c.node_id = BrokerId(node);
                        c.host = StrBytes::from_string(host);
                        c.port = port;
                    }
                    Err((code, message)) => {
                        c.node_id = BrokerId(-1);
                        c.port = -1;
                        c.error_code = code.code();
                        c.error_message = Some(StrBytes::from_string(message));
                    }
                }
                c
            })
            .collect();
    } else if let Some((_, answer)) = found.into_iter().next() {
        match answer {
            Ok((node, host, port)) => {
                response.node_id = BrokerId(node);
                response.host = StrBytes::from_string(host);
                response.port = port;
            }
            Err((code, message)) => {
                response.node_id = BrokerId(-1);
                response.port = -1;
                response.error_code = code.code();
                if version >= 1 {
                    response.error_message = Some(StrBytes::from_string(message));
                }
            }
        }
    }
    ResponseKind::FindCoordinator(response)
}

type Found = Result<(i32, String, i32), (ResponseError, String)>;

/// The leader of `key`'s partition of `topic` (created on first use).
async fn coordinator_for(ctx: &RequestContext, topic_name: &'static str, key: &str) -> Found {
    let mut md = ctx.broker.metadata();
    if !md.topics.contains_key(topic_name) {
        create_internal_topics(ctx, &md, topic_name).await?;
        md = ctx.broker.metadata();
    }
    let unavailable = |why: String| Err((ResponseError::CoordinatorNotAvailable, why));
    let Some(topic) = md.topics.get(topic_name) else {
        return unavailable(format!("{topic_name} is being created"));
    };
    let partition = partition_for(key, topic.partitions.len());
    let leader = topic
        .partitions
        .get(partition as usize)
        .map_or(-1, |p| p.leader);
    // A leader whose process this node saw go (its streams all closed) is about to be
    // fenced: naming it would send the client to a dead address, and clients then wait
    // out their reconnect backoff before they ask again. "Not available" makes them ask
    // again soon, by when the successor leads.
    let endpoint = md
        .brokers
        .get(&leader)
        .filter(|b| !b.fenced)
        .filter(|b| {
            b.id == ctx.broker.node_id || !ctx.broker.controller.broker_detached(b.id, b.epoch)
        })
        .and_then(|b| b.listener(&ctx.listener));
    match endpoint {
        Some(l) => Ok((leader, l.host.clone(), i32::from(l.port))),
        None => unavailable(format!("{topic_name}-{partition} has no available leader")),
    }
}

/// Creates `__consumer_offsets` or `__transaction_state` (see [`create_internal_topic`]).
pub(super) async fn create_internal_topics(
    ctx: &RequestContext,
    md: &ClusterMetadata,
    topic: &str,
) -> Result<(), (ResponseError, String)> {
    create_internal_topic(&ctx.broker, md, topic).await
}

/// Creates `__consumer_offsets`, `__transaction_state` or `__share_group_state` with
/// Kafka's settings: compacted, internal, and replicated as widely as the topic's
/// replication-factor setting allows in this cluster. Returns once every live broker
/// knows it (or has had the time to).
pub(crate) async fn create_internal_topic(
    broker: &Broker,
    md: &ClusterMetadata,
    topic: &str,
) -> Result<(), (ResponseError, String)> {
    let view = broker.view(md);
    let (prefix, min_isr_key) = match topic {
        TXN_TOPIC => (
            "transaction.state.log",
            Some("transaction.state.log.min.isr"),
        ),
        SHARE_STATE_TOPIC => (
            "share.coordinator.state.topic",
            Some("share.coordinator.state.topic.min.isr"),
        ),
        _ => ("offsets.topic", None),
    };
    let partitions = view.broker_i64(&format!("{prefix}.num.partitions")) as i32;
    let wanted_rf = view.broker_i64(&format!("{prefix}.replication.factor"));
    // The cluster's size is at least its voters, even before they have all registered,
    // so a cluster that is still starting does not get a thinly replicated topic; drained
    // brokers take no replicas, so they do not count.
    let voters = broker.config.voters.keys().map(|v| *v as i32);
    let cluster_size = fjord_controller::placement::internal_topic_hosts(md, voters) as i64;
    let rf = wanted_rf.min(cluster_size).max(1) as i16;
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".to_string(), "compact".to_string());
    configs.insert(
        "segment.bytes".to_string(),
        view.broker_i64(&format!("{prefix}.segment.bytes"))
            .to_string(),
    );
    if let Some(key) = min_isr_key {
        let min_isr = view.broker_i64(key).min(i64::from(rf));
        configs.insert("min.insync.replicas".to_string(), min_isr.to_string());
    }
    let request = CreateTopicRequest {
        name: topic.to_string(),
        num_partitions: partitions,
        replication_factor: rf,
        assignments: None,
        configs,
        internal: true,
    };
    let unavailable = |why: String| {
        Err((
            ResponseError::CoordinatorNotAvailable,
            format!("cannot create {topic} yet: {why}"),
        ))
    };
    let outcomes = match broker
        .submit_everywhere(ControllerRequest::CreateTopics {
            topics: vec![request],
            validate_only: false,
        })
        .await
    {
        Ok(ControllerResponse::Topics(outcomes)) => outcomes,
        Ok(other) => return unavailable(format!("unexpected controller answer {other:?}")),
        Err(e) => return unavailable(KafkaError::from(&e).message),
    };
    for outcome in outcomes {
        match outcome.result.map_err(|e| KafkaError::from(&e)) {
            Ok(_) => info!(
                topic,
                partitions,
                replication_factor = rf,
                "created internal topic"
            ),
            Err(e) if e.code == ResponseError::TopicAlreadyExists => {}
            Err(e) => return unavailable(e.message),
        }
    }
    Ok(())
}
