//! ElectLeaders: preferred (type 0) or unclean (type 1) leader elections on request.

use std::collections::BTreeMap;

use fjord_controller::{ControllerRequest, ControllerResponse};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    ElectLeadersRequest, ElectLeadersResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::context::RequestContext;
use super::errors::KafkaError;

pub async fn elect_leaders(ctx: &RequestContext, req: ElectLeadersRequest) -> ResponseKind {
    let mut resp = ElectLeadersResponse::default();
    if super::authz::cluster(ctx, super::authz::Op::Alter).is_err() {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return ResponseKind::ElectLeaders(resp);
    }
    if !matches!(req.election_type, 0 | 1) {
        if ctx.version() >= 1 {
            resp.error_code = ResponseError::InvalidRequest.code();
        }
        return ResponseKind::ElectLeaders(resp);
    }
    let partitions: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic.0.to_string(), *p))
            })
            .collect()
    });
    let outcome = ctx
        .broker
        .controller
        .submit(ControllerRequest::ElectLeaders {
            partitions: partitions.clone(),
            unclean: req.election_type == 1,
        })
        .await;
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    match outcome {
        Ok(ControllerResponse::Elections(results)) => {
            for (topic, partition, result) in results {
                let mut r = PartitionResult::default().with_partition_id(partition);
                if let Err(e) = result {
                    let e = KafkaError::from(&e);
                    r.error_code = e.code();
                    r.error_message = Some(StrBytes::from_string(e.message));
                }
                by_topic.entry(topic).or_default().push(r);
            }
            // Partitions asked for but neither elected nor refused (unclean elections skip
            // partitions that have a leader): nothing was needed.
            for (topic, partition) in partitions.into_iter().flatten() {
                let list = by_topic.entry(topic).or_default();
                if !list.iter().any(|r| r.partition_id == partition) {
                    list.push(
                        PartitionResult::default()
                            .with_partition_id(partition)
                            .with_error_code(ResponseError::ElectionNotNeeded.code()),
                    );
                }
            }
        }
        Ok(_) | Err(_) => {
            let e = match outcome {
                Err(e) => KafkaError::from(&e),
                Ok(other) => KafkaError::new(
                    ResponseError::UnknownServerError,
                    format!("unexpected answer {other:?}"),
                ),
            };
            if ctx.version() >= 1 {
                resp.error_code = e.code();
            }
            for (topic, partition) in partitions.into_iter().flatten() {
                by_topic.entry(topic).or_default().push(
                    PartitionResult::default()
                        .with_partition_id(partition)
                        .with_error_code(e.code())
                        .with_error_message(Some(StrBytes::from_string(e.message.clone()))),
                );
            }
        }
    }
    resp.replica_election_results = by_topic
        .into_iter()
        .map(|(topic, partition_result)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(StrBytes::from_string(topic)))
                .with_partition_result(partition_result)
        })
        .collect();
    ResponseKind::ElectLeaders(resp)
}
