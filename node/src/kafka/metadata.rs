//! Metadata: brokers (as seen through the client's listener), topics, partitions and
//! leaders, with topic auto-creation.

use fjord_controller::metadata::{PartitionState, TopicState};
use fjord_controller::{ClusterMetadata, CreateTopicRequest};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use uuid::Uuid;

use fjord_controller::metadata::acls::ResourceType;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;
use super::topics::{create_via_controller, validate_new_name};

enum Wanted {
    Name(String),
    Id(Uuid),
}

pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> ResponseKind {
    let version = ctx.version();
    let wanted: Option<Vec<Wanted>> = match &req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.iter()
                .map(|x| match &x.name {
                    Some(n) => Wanted::Name(n.0.to_string()),
                    None => Wanted::Id(x.topic_id),
                })
                .collect(),
        ),
    };

    let mut md = ctx.broker.metadata();
    let check = authz::Check::new(ctx);
    let mut auto_create_errors: BTreeMap<String, KafkaError> = BTreeMap::new();
    if let Some(list) = &wanted {
        let allowed = (version < 4 || req.allow_auto_topic_creation)
            && ctx.broker.broker_bool("auto.create.topics.enable");
        let may_create_any = check.cluster(Op::Create);
        // Auto-creation needs CREATE on the cluster or on the topic, as in Kafka; a
        // topic it would create without that is answered TOPIC_AUTHORIZATION_FAILED.
        let (missing, unauthorized): (Vec<&String>, Vec<&String>) = list
            .iter()
            .filter_map(|w| match w {
                Wanted::Name(n) if !md.topics.contains_key(n) => Some(n),
                _ => None,
            })
            .partition(|n| may_create_any || check.topic(Op::Create, n));
        if allowed {
            for name in unauthorized {
                auto_create_errors.insert(
                    name.clone(),
                    KafkaError::new(
                        ResponseError::TopicAuthorizationFailed,
                        "not authorized to create the topic",
                    ),
                );
            }
        }
        if allowed && !missing.is_empty() {
            let view = ctx.broker.view(&md);
            let partitions = view.broker_i64("num.partitions") as i32;
            let rf = view.broker_i64("default.replication.factor") as i16;
            let mut creates = Vec::new();
            for name in missing {
                match validate_new_name(name, md.topics.keys()) {
                    Ok(()) => creates.push(CreateTopicRequest {
                        name: name.clone(),
                        num_partitions: partitions,
                        replication_factor: rf,
                        assignments: None,
                        configs: BTreeMap::new(),
                        internal: false,
                    }),
                    Err(e) => {
                        auto_create_errors.insert(name.clone(), e);
                    }
                }
            }
            for (name, result) in create_via_controller(ctx, creates, false).await {
                match result {
                    Ok(_) => {}
                    // Another client won the race: fine, it exists now.
                    Err(e) if e.code == ResponseError::TopicAlreadyExists => {}
                    Err(e) => {
                        auto_create_errors.insert(name, e);
                    }
                }
            }
            md = ctx.broker.metadata();
        }
    }

    let include_ops = req.include_topic_authorized_operations && version >= 8;
    let ops = |t: &TopicState| include_ops.then(|| check.operations(ResourceType::Topic, &t.name));
    let topics: Vec<MetadataResponseTopic> = match wanted {
        // Every topic the client may describe; the others are not mentioned.
        None => md
            .topics
            .values()
            .filter(|t| check.topic(Op::Describe, &t.name))
            .map(|t| topic_entry(&md, t, ops(t)))
            .collect(),
        Some(list) => list
            .into_iter()
            .map(|w| match w {
                Wanted::Name(n) if !check.topic(Op::Describe, &n) => {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(n))))
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                }
                Wanted::Name(n) => match md.topics.get(&n) {
                    Some(t) => topic_entry(&md, t, ops(t)),
                    None => {
                        let e = auto_create_errors.remove(&n).map(|e| e.code).unwrap_or(
                            if crate::topic_names::validate(&n).is_err() {
                                ResponseError::InvalidTopicException
                            } else {
                                ResponseError::UnknownTopicOrPartition
                            },
                        );
                        MetadataResponseTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n))))
                            .with_error_code(e.code())
                    }
                },
                Wanted::Id(id) => match md.topic_by_id(&id) {
                    // An id the client may not describe is answered as unknown, so ids
                    // do not reveal which topics exist.
                    Some(t) if check.topic(Op::Describe, &t.name) => topic_entry(&md, t, ops(t)),
                    _ => MetadataResponseTopic::default()
                        .with_topic_id(id)
                        .with_error_code(ResponseError::UnknownTopicId.code()),
                },
            })
            .collect(),
    };

    let mut resp = MetadataResponse::default()
        .with_brokers(brokers(&md, &ctx.listener))
        .with_cluster_id(md.cluster_id.clone().map(StrBytes::from_string))
        .with_controller_id(BrokerId(ctx.broker.controller_id_for_clients(&md)))
        .with_topics(topics);
    if req.include_cluster_authorized_operations && (8..=10).contains(&version) {
        resp.cluster_authorized_operations =
            check.operations(ResourceType::Cluster, authz::CLUSTER_NAME);
    }
    ResponseKind::Metadata(resp)
}

fn brokers(md: &ClusterMetadata, listener: &str) -> Vec<MetadataResponseBroker> {
    md.brokers
        .values()
        .filter(|b| b.is_listed())
        .filter_map(|b| {
            let l = b.listener(listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(l.host.clone()))
                    .with_port(i32::from(l.port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect()
}

/// A partition as clients are told of it: a leader only if that broker is live, and
/// the replicas on fenced or unknown brokers as offline.
pub(super) struct PartitionView {
    pub error_code: i16,
    pub leader: i32,
    pub offline: Vec<BrokerId>,
}

pub(super) fn partition_view(md: &ClusterMetadata, p: &PartitionState) -> PartitionView {
    let leader_ok = p.leader >= 0 && md.is_live(p.leader);
    PartitionView {
        error_code: if leader_ok {
            0
        } else {
            ResponseError::LeaderNotAvailable.code()
        },
        leader: if leader_ok { p.leader } else { -1 },
        offline: p
            .replicas
            .iter()
            .filter(|r| !md.is_live(**r))
            .copied()
            .map(BrokerId)
            .collect(),
    }
}

/// One topic's entry; `ops` is its authorized-operations bitfield when asked for.
fn topic_entry(md: &ClusterMetadata, t: &TopicState, ops: Option<i32>) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let view = partition_view(md, p);
            MetadataResponsePartition::default()
                .with_error_code(view.error_code)
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(view.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
                .with_offline_replicas(view.offline)
        })
        .collect();
    let mut entry = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_topic_id(t.id)
        .with_is_internal(t.internal)
        .with_partitions(partitions);
    if let Some(ops) = ops {
        entry.topic_authorized_operations = ops;
    }
    entry
}
