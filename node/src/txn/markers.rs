//! Transaction markers: the coordinator ends a transaction by writing a COMMIT or ABORT
//! control batch to every partition in it, through each partition's leader (locally, or
//! over gRPC on another broker). A marker counts as written once it is replicated.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_proto::v1::transactions_client::TransactionsClient;
use fjord_proto::v1::{TxnPartition, WriteTxnMarkersRequest};
use fjord_storage::control::ControlType;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use tracing::debug;

use super::state::{TxnMeta, TxnState};
use crate::broker::Broker;
use crate::group::OFFSETS_TOPIC;
use crate::kafka::errors::KafkaError;
use crate::replica::Replication;
use crate::time::now_ms;

/// How long a marker waits for its partition's in-sync replicas.
const REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);

/// One marker request: which producer's transaction ends, how, on which partitions.
#[derive(Clone, Debug)]
pub struct MarkerRequest {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
}

/// Writes the markers of `meta`'s decided transaction everywhere. True once every
/// partition has its marker (or no longer exists).
pub async fn write_all(broker: &Arc<Broker>, meta: &TxnMeta, coordinator_epoch: i32) -> bool {
    let md = broker.metadata();
    let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    for (topic, partition) in &meta.partitions {
        match md.partition(topic, *partition) {
            // A deleted partition has no transaction left to end.
            None => {}
            Some(p) if p.leader < 0 => return false,
            Some(p) => by_leader
                .entry(p.leader)
                .or_default()
                .push((topic.clone(), *partition)),
        }
    }
    let commit = meta.state == TxnState::PrepareCommit;
    let calls = by_leader.into_iter().map(|(leader, partitions)| {
        let request = MarkerRequest {
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            commit,
            coordinator_epoch,
            partitions,
        };
        let address = md.brokers.get(&leader).map(|b| b.rpc_address.clone());
        async move {
            if leader == broker.node_id {
                return write_local(broker, request)
                    .await
                    .iter()
                    .all(|(_, c)| *c == 0);
            }
            let Some(address) = address else {
                return false;
            };
            write_remote(broker, &address, request).await
        }
    });
    join_all(calls).await.into_iter().all(|ok| ok)
}

async fn write_remote(broker: &Broker, address: &str, request: MarkerRequest) -> bool {
    let Ok(channel) = broker.txns.pool.channel(address) else {
        return false;
    };
    let mut client = TransactionsClient::new(channel);
    let body = WriteTxnMarkersRequest {
        producer_id: request.producer_id,
        producer_epoch: i32::from(request.producer_epoch),
        commit: request.commit,
        coordinator_epoch: request.coordinator_epoch,
        partitions: request
            .partitions
            .iter()
            .map(|(topic, partition)| TxnPartition {
                topic: topic.clone(),
                partition: *partition,
            })
            .collect(),
    };
    let call = client.write_markers(body);
    match tokio::time::timeout(REPLICATION_TIMEOUT + Duration::from_secs(5), call).await {
        Ok(Ok(resp)) => resp.into_inner().results.iter().all(|r| r.error_code == 0),
        Ok(Err(status)) => {
            debug!(%address, %status, "writing transaction markers failed");
            false
        }
        Err(_) => false,
    }
}

/// Writes the coordinator's markers on partitions this broker leads: one Kafka error
/// code per partition, 0 where the transaction needs nothing more written.
pub async fn write_local(broker: &Broker, request: MarkerRequest) -> Vec<((String, i32), i16)> {
    write_strict(broker, request)
        .await
        .into_iter()
        .map(|(tp, code)| {
            let done = match ResponseError::try_from_code(code) {
                // A deleted partition has no transaction left to end.
                Some(ResponseError::UnknownTopicOrPartition) => true,
                // A newer epoch already wrote here: a later decision superseded this one.
                Some(ResponseError::InvalidProducerEpoch) => true,
                _ => code == 0,
            };
            (tp, if done { 0 } else { code })
        })
        .collect()
}

/// Writes markers on partitions this broker leads with Kafka's error code per partition,
/// as a client's WriteTxnMarkers is answered: UNKNOWN_TOPIC_OR_PARTITION,
/// NOT_LEADER_OR_FOLLOWER, INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED, ...
pub async fn write_strict(broker: &Broker, request: MarkerRequest) -> Vec<((String, i32), i16)> {
    let kind = if request.commit {
        ControlType::Commit
    } else {
        ControlType::Abort
    };
    let writes = request
        .partitions
        .into_iter()
        .map(|(topic, partition)| async move {
            let result = write_one(
                broker,
                &topic,
                partition,
                request.producer_id,
                request.producer_epoch,
                kind,
                request.coordinator_epoch,
            )
            .await;
            let code = match result {
                Ok(()) => 0,
                Err(e) => {
                    debug!(topic, partition, error = ?e, "transaction marker not written");
                    e.code()
                }
            };
            ((topic, partition), code)
        });
    join_all(writes).await
}

async fn write_one(
    broker: &Broker,
    topic: &str,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    kind: ControlType,
    coordinator_epoch: i32,
) -> Result<(), ResponseError> {
    if broker.metadata().partition(topic, partition).is_none() {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    if topic == OFFSETS_TOPIC {
        let shard = broker
            .groups
            .shard(partition)
            .ok_or(ResponseError::NotLeaderOrFollower)?;
        return shard
            .write_marker(producer_id, producer_epoch, kind, coordinator_epoch)
            .await;
    }
    let replica = broker
        .replicas
        .get(topic, partition)
        .filter(|r| r.is_leader())
        .ok_or(ResponseError::NotLeaderOrFollower)?;
    let appended = replica
        .write_marker(
            producer_id,
            producer_epoch,
            kind,
            coordinator_epoch,
            now_ms(),
        )
        .map_err(|e| KafkaError::from(&e).code)?;
    match replica
        .await_replication(
            appended.info.last_offset + 1,
            appended.leader_epoch,
            REPLICATION_TIMEOUT,
        )
        .await
    {
        Replication::Replicated => Ok(()),
        Replication::LeadershipLost => Err(ResponseError::NotLeaderOrFollower),
        Replication::TimedOut => Err(ResponseError::RequestTimedOut),
    }
}
