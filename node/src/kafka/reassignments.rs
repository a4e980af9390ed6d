//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455): what
//! kafka-reassign-partitions.sh and `fjord cluster reassign` drive.

use std::collections::BTreeMap;

use fjord_controller::metadata::Reassignment;
use fjord_controller::{ControllerRequest, ControllerResponse};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::context::RequestContext;
use super::errors::KafkaError;

fn partition_error(index: i32, e: &KafkaError) -> ReassignablePartitionResponse {
    ReassignablePartitionResponse::default()
        .with_partition_index(index)
        .with_error_code(e.code())
        .with_error_message(Some(StrBytes::from_string(e.message.clone())))
}

pub async fn alter(ctx: &RequestContext, req: AlterPartitionReassignmentsRequest) -> ResponseKind {
    if let Err(e) = super::authz::cluster(ctx, super::authz::Op::Alter) {
        return ResponseKind::AlterPartitionReassignments(
            AlterPartitionReassignmentsResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.message))),
        );
    }
    let md = ctx.broker.metadata();
    let mut answers: BTreeMap<String, Vec<ReassignablePartitionResponse>> = BTreeMap::new();
    let mut changes = Vec::new();
    for topic in &req.topics {
        let name = topic.name.0.to_string();
        for p in &topic.partitions {
            let current = md.partition(&name, p.partition_index);
            let refusal = match (current, &p.replicas) {
                (None, _) => Some(KafkaError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("{name}-{} does not exist", p.partition_index),
                )),
                // KIP-860: clients that cannot handle a replication factor change say so.
                (Some(state), Some(target))
                    if !req.allow_replication_factor_change
                        && target.len() != state.original_replicas().len() =>
                {
                    Some(KafkaError::new(
                        ResponseError::InvalidReplicationFactor,
                        format!(
                            "the target has {} replicas and the partition {}",
                            target.len(),
                            state.original_replicas().len()
                        ),
                    ))
                }
                _ => None,
            };
            match refusal {
                Some(e) => answers
                    .entry(name.clone())
                    .or_default()
                    .push(partition_error(p.partition_index, &e)),
                None => changes.push(Reassignment {
                    topic: name.clone(),
                    partition: p.partition_index,
                    target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
                }),
            }
        }
    }
    let mut resp = AlterPartitionReassignmentsResponse::default().with_error_message(None);
    if ctx.version() >= 1 {
        resp.allow_replication_factor_change = req.allow_replication_factor_change;
    }
    if !changes.is_empty() {
        let outcome = ctx
            .broker
            .controller
            .submit(ControllerRequest::AlterReassignments { changes })
            .await;
        match outcome {
            Ok(ControllerResponse::Reassignments(results)) => {
                for (topic, partition, result) in results {
                    let r = match result {
                        Ok(()) => ReassignablePartitionResponse::default()
                            .with_partition_index(partition)
                            .with_error_message(None),
                        Err(e) => partition_error(partition, &KafkaError::from(&e)),
                    };
                    answers.entry(topic).or_default().push(r);
                }
            }
            Ok(other) => {
                resp.error_code = ResponseError::UnknownServerError.code();
                resp.error_message = Some(StrBytes::from_string(format!(
                    "unexpected controller answer {other:?}"
                )));
            }
            Err(e) => {
                let e = KafkaError::from(&e);
                resp.error_code = e.code();
                resp.error_message = Some(StrBytes::from_string(e.message));
            }
        }
    }
    resp.responses = answers
        .into_iter()
        .map(|(name, partitions)| {
            ReassignableTopicResponse::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::AlterPartitionReassignments(resp)
}

pub fn list(ctx: &RequestContext, req: ListPartitionReassignmentsRequest) -> ResponseKind {
    if let Err(e) = super::authz::cluster(ctx, super::authz::Op::Describe) {
        return ResponseKind::ListPartitionReassignments(
            ListPartitionReassignmentsResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(StrBytes::from_string(e.message))),
        );
    }
    let md = ctx.broker.metadata();
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let mut topics = Vec::new();
    for topic in md.topics.values() {
        let filter = match &wanted {
            Some(w) => match w.get(&topic.name) {
                Some(list) => Some(list),
                None => continue,
            },
            None => None,
        };
        let partitions: Vec<OngoingPartitionReassignment> = topic
            .partitions
            .iter()
            .enumerate()
            .filter(|(i, p)| p.is_reassigning() && filter.is_none_or(|f| f.contains(&(*i as i32))))
            .map(|(i, p)| {
                let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
                OngoingPartitionReassignment::default()
                    .with_partition_index(i as i32)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding))
                    .with_removing_replicas(ids(&p.removing))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    ResponseKind::ListPartitionReassignments(
        ListPartitionReassignmentsResponse::default()
            .with_error_message(None)
            .with_topics(topics),
    )
}
