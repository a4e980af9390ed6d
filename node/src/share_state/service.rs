//! The gRPC side of the share coordinator: partition leaders on other brokers read,
//! write and delete share-partition state here, and the proto forms of keys and
//! snapshots both sides use.

use std::sync::{Arc, OnceLock};

use fjord_proto::v1::share_state_server::{ShareState, ShareStateServer};
use fjord_proto::v1::{
    DeleteShareStateRequest, DeleteShareStateResponse, ReadShareStateRequest,
    ReadShareStateResponse, SharePartitionKey, ShareStateBatch, ShareStateSnapshot,
    WriteShareStateRequest, WriteShareStateResponse,
};
use kafka_protocol::error::ResponseError;
use tonic::{Request, Response, Status};

use super::ShareKey;
use crate::broker::Broker;
use crate::group::share::{ShareSnapshot, StateBatch};

/// The broker is made after the RPC server starts (the controller needs the server
/// first), so it is filled in later; until then calls are refused as unavailable.
#[derive(Clone, Default)]
pub struct ShareStateService {
    broker: Arc<OnceLock<Arc<Broker>>>,
}

impl ShareStateService {
    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.broker.set(broker);
    }

    pub fn into_server(self) -> ShareStateServer<Self> {
        ShareStateServer::new(self)
    }

    fn broker(&self) -> Result<&Arc<Broker>, Status> {
        self.broker
            .get()
            .ok_or_else(|| Status::unavailable("broker is starting"))
    }
}

fn error_code(result: &Result<impl Sized, ResponseError>) -> i32 {
    i32::from(result.as_ref().err().map_or(0, |e| e.code()))
}

#[tonic::async_trait]
impl ShareState for ShareStateService {
    async fn read(
        &self,
        request: Request<ReadShareStateRequest>,
    ) -> Result<Response<ReadShareStateResponse>, Status> {
        let broker = self.broker()?;
        crate::security::check_peer(&request, None, &broker.metadata(), "ReadShareState")?;
        let r = request.into_inner();
        let key = key_from_proto(r.key).map_err(Status::invalid_argument)?;
        let result = match broker.share_state.shard_for(&broker.metadata(), &key) {
            Ok(shard) => shard.read(&key, r.leader_epoch).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(ReadShareStateResponse {
            error_code: error_code(&result),
            snapshot: result.ok().flatten().as_ref().map(snapshot_to_proto),
        }))
    }

    async fn write(
        &self,
        request: Request<WriteShareStateRequest>,
    ) -> Result<Response<WriteShareStateResponse>, Status> {
        let broker = self.broker()?;
        crate::security::check_peer(&request, None, &broker.metadata(), "WriteShareState")?;
        let r = request.into_inner();
        let key = key_from_proto(r.key).map_err(Status::invalid_argument)?;
        let snapshot = r
            .snapshot
            .ok_or("snapshot missing".to_string())
            .and_then(snapshot_from_proto)
            .map_err(Status::invalid_argument)?;
        let result = match broker.share_state.shard_for(&broker.metadata(), &key) {
            Ok(shard) => shard.write(&key, r.leader_epoch, &snapshot).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(WriteShareStateResponse {
            error_code: error_code(&result),
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteShareStateRequest>,
    ) -> Result<Response<DeleteShareStateResponse>, Status> {
        let broker = self.broker()?;
        crate::security::check_peer(&request, None, &broker.metadata(), "DeleteShareState")?;
        let key = key_from_proto(request.into_inner().key).map_err(Status::invalid_argument)?;
        let result = match broker.share_state.shard_for(&broker.metadata(), &key) {
            Ok(shard) => shard.delete(&key).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(DeleteShareStateResponse {
            error_code: error_code(&result),
        }))
    }
}

pub fn key_to_proto(key: &ShareKey) -> SharePartitionKey {
    SharePartitionKey {
        group_id: key.group_id.clone(),
        topic_id: key.topic_id.as_bytes().to_vec().into(),
        partition: key.partition,
    }
}

pub fn key_from_proto(key: Option<SharePartitionKey>) -> Result<ShareKey, String> {
    let key = key.ok_or("share-partition key missing")?;
    let topic_id = uuid::Uuid::from_slice(&key.topic_id)
        .map_err(|_| format!("topic id of {} bytes, not 16", key.topic_id.len()))?;
    Ok(ShareKey {
        group_id: key.group_id,
        topic_id,
        partition: key.partition,
    })
}

pub fn snapshot_to_proto(snapshot: &ShareSnapshot) -> ShareStateSnapshot {
    ShareStateSnapshot {
        snapshot_epoch: snapshot.snapshot_epoch,
        state_epoch: snapshot.state_epoch,
        start_offset: snapshot.start_offset,
        state_batches: snapshot
            .state_batches
            .iter()
            .map(|b| ShareStateBatch {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
                delivery_state: i32::from(b.delivery_state),
                delivery_count: i32::from(b.delivery_count),
            })
            .collect(),
    }
}

/// The snapshot of a peer's message. Its batches are checked only for the widths of
/// their fields; whether they make sense is for the leader that restores them.
pub fn snapshot_from_proto(snapshot: ShareStateSnapshot) -> Result<ShareSnapshot, String> {
    let state_batches = snapshot
        .state_batches
        .into_iter()
        .map(|b| {
            Ok(StateBatch {
                first_offset: b.first_offset,
                last_offset: b.last_offset,
                delivery_state: i8::try_from(b.delivery_state)
                    .map_err(|_| format!("delivery state {} out of range", b.delivery_state))?,
                delivery_count: i16::try_from(b.delivery_count)
                    .map_err(|_| format!("delivery count {} out of range", b.delivery_count))?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(ShareSnapshot {
        snapshot_epoch: snapshot.snapshot_epoch,
        state_epoch: snapshot.state_epoch,
        start_offset: snapshot.start_offset,
        state_batches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_snapshots_survive_the_proto() {
        let key = ShareKey {
            group_id: "g".to_string(),
            topic_id: uuid::Uuid::from_u128(42),
            partition: 3,
        };
        assert_eq!(key_from_proto(Some(key_to_proto(&key))), Ok(key));
        let snapshot = ShareSnapshot {
            snapshot_epoch: -5,
            state_epoch: 1,
            start_offset: 7,
            state_batches: vec![StateBatch {
                first_offset: 7,
                last_offset: 9,
                delivery_state: 4,
                delivery_count: 3,
            }],
        };
        assert_eq!(
            snapshot_from_proto(snapshot_to_proto(&snapshot)),
            Ok(snapshot)
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        let mut key = key_to_proto(&ShareKey {
            group_id: "g".to_string(),
            topic_id: uuid::Uuid::nil(),
            partition: 0,
        });
        key.topic_id = vec![1, 2, 3].into();
        assert!(key_from_proto(Some(key)).is_err());
        assert!(key_from_proto(None).is_err());
        let bad = ShareStateSnapshot {
            state_batches: vec![ShareStateBatch {
                delivery_state: 300,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(snapshot_from_proto(bad).is_err());
    }
}
