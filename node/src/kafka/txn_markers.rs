//! WriteTxnMarkers from clients: Kafka's Admin.abortTransaction (kafka-transactions.sh
//! abort) ends a hanging transaction by sending the partition leader an ABORT marker for
//! the producer. Fjord's coordinators write their markers in process or over gRPC, so
//! only admins send this API; it takes the coordinators' own path to the log.

use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{ResponseKind, WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use super::authz::{self, Op};
use super::context::RequestContext;
use crate::txn::markers::{write_strict, MarkerRequest};

pub async fn write(ctx: &RequestContext, req: WriteTxnMarkersRequest) -> ResponseKind {
    // Kafka asks CLUSTER_ACTION on the cluster: the right its brokers hold.
    let allowed = authz::Check::new(ctx).cluster(Op::ClusterAction);
    let results = req.markers.into_iter().map(|marker| async move {
        let partitions: Vec<(String, i32)> = marker
            .topics
            .iter()
            .flat_map(|t| {
                let name = t.name.0.to_string();
                t.partition_indexes.iter().map(move |p| (name.clone(), *p))
            })
            .collect();
        let codes = if allowed {
            let request = MarkerRequest {
                producer_id: marker.producer_id.0,
                producer_epoch: marker.producer_epoch,
                commit: marker.transaction_result,
                coordinator_epoch: marker.coordinator_epoch,
                partitions,
            };
            write_strict(&ctx.broker, request).await
        } else {
            let denied = ResponseError::ClusterAuthorizationFailed.code();
            partitions.into_iter().map(|tp| (tp, denied)).collect()
        };
        // Topics in the order asked, each with its partitions' codes.
        let mut codes = codes.into_iter();
        let topics = marker
            .topics
            .into_iter()
            .map(|t| {
                let partitions = codes
                    .by_ref()
                    .take(t.partition_indexes.len())
                    .map(|((_, partition), code)| {
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(partition)
                            .with_error_code(code)
                    })
                    .collect();
                WritableTxnMarkerTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        WritableTxnMarkerResult::default()
            .with_producer_id(marker.producer_id)
            .with_topics(topics)
    });
    ResponseKind::WriteTxnMarkers(
        WriteTxnMarkersResponse::default().with_markers(join_all(results).await),
    )
}
