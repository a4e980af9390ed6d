//! OffsetForLeaderEpoch: where a given leader epoch ends in this replica's log.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ResponseKind,
};

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;

pub fn handle(ctx: &RequestContext, req: OffsetForLeaderEpochRequest) -> ResponseKind {
    let from_consumer = req.replica_id.0 < 0;
    let check = authz::Check::new(ctx);
    // A replica's request needs CLUSTER_ACTION, a consumer's DESCRIBE on the topic.
    let replica_allowed = from_consumer || check.cluster(Op::ClusterAction);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let allowed = if from_consumer {
                check.topic(Op::Describe, &name)
            } else {
                replica_allowed
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let result = match ctx.broker.replicas.get(&name, p.partition) {
                        _ if !allowed && from_consumer => Err(authz::topic_denied(&name)),
                        _ if !allowed => Err(authz::cluster_denied()),
                        None => Err(KafkaError::new(
                            ResponseError::UnknownTopicOrPartition,
                            "unknown partition",
                        )),
                        Some(replica) if from_consumer && !replica.is_leader() => Err(
                            KafkaError::new(ResponseError::NotLeaderOrFollower, "not the leader"),
                        ),
                        Some(replica) => replica
                            .check_leader_epoch(p.current_leader_epoch)
                            .and_then(|()| replica.end_offset_for_epoch(p.leader_epoch))
                            .map_err(|e| KafkaError::from(&e)),
                    };
                    match result {
                        Ok((epoch, end)) => {
                            r.leader_epoch = epoch;
                            r.end_offset = end;
                        }
                        Err(e) => r.error_code = e.code(),
                    }
                    r
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::OffsetForLeaderEpoch(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
