//! DeleteRecords: move a partition's log start offset forward.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, ResponseKind};

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;

pub fn delete_records(ctx: &RequestContext, req: DeleteRecordsRequest) -> ResponseKind {
    let check = authz::Check::new(ctx);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let deletable = check.topic(Op::Delete, &name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    let result = match ctx.broker.replicas.get(&name, p.partition_index) {
                        _ if !deletable => Err(authz::topic_denied(&name)),
                        None => Err(KafkaError::new(
                            ResponseError::UnknownTopicOrPartition,
                            "unknown partition",
                        )),
                        Some(replica) => replica
                            .delete_records_before(p.offset)
                            .map_err(|e| KafkaError::from(&e)),
                    };
                    match result {
                        Ok(low) => r.low_watermark = low,
                        Err(e) => r.error_code = e.code(),
                    }
                    r
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics))
}
