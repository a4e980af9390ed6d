//! The share coordinator of KIP-932 share groups: the durable state of each
//! share-partition (its SPSO, state epoch and in-flight runs, a [`ShareSnapshot`]) in
//! the compacted internal topic `__share_group_state`, kept by the leader of the key's
//! partition of it, and the calls partition leaders use to read, write and delete it
//! (Kafka's ReadShareGroupState / WriteShareGroupState / DeleteShareGroupState).
//!
//! The calls find the coordinator themselves (here, or another broker over gRPC) and
//! retry for a few seconds while it moves, so a coordinator failover shows to callers
//! only as a slower answer.
//!
//! Fencing: the coordinator records the highest leader epoch of the partition leader
//! that read or wrote each share-partition, and refuses older leaders
//! (FENCED_LEADER_EPOCH); a write with an older state epoch than stored (the state was
//! reset by an admin since) gets FENCED_STATE_EPOCH. See [`shard::decide_write`].

pub mod coordinator;
pub mod records;
pub mod service;
pub mod shard;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fjord_proto::v1::share_state_client::ShareStateClient;
use fjord_proto::v1::{DeleteShareStateRequest, ReadShareStateRequest, WriteShareStateRequest};
use kafka_protocol::error::ResponseError;
use tracing::debug;

pub use coordinator::ShareStateCoordinator;
pub use shard::{decide_write, Stored, WriteDecision, ADMIN_LEADER_EPOCH};

use crate::broker::Broker;
use crate::group::share::ShareSnapshot;

pub const SHARE_STATE_TOPIC: &str = "__share_group_state";

/// How long a call keeps retrying while the coordinator is unknown, moving or loading.
const RETRY_FOR: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_millis(400);
/// A remote call's limit: the coordinator's own replication wait, plus the network.
const RPC_TIMEOUT: Duration = Duration::from_secs(7);

/// Which share-partition: Kafka's SharePartitionKey.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareKey {
    pub group_id: String,
    pub topic_id: uuid::Uuid,
    pub partition: i32,
}

impl ShareKey {
    /// "group:topicId:partition", what Kafka hashes to pick the __share_group_state
    /// partition. The topic id is written as Kafka's `Uuid.toString` writes it
    /// (URL-safe base64 without padding), so placement matches Kafka's.
    pub fn coordinator_key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.group_id,
            URL_SAFE_NO_PAD.encode(self.topic_id.as_bytes()),
            self.partition
        )
    }
}

/// Reads the stored state of `key` for a partition leader at `leader_epoch`. Ok(None) if
/// nothing is stored (or it was deleted). Fences: if a higher leader epoch was already
/// recorded, Err(FencedLeaderEpoch); if `leader_epoch` is higher than the stored one, the
/// new epoch is written (and replicated) before answering, so from then on writes from
/// older leaders are refused. `leader_epoch` -1 means an admin read: no fencing, nothing
/// written.
pub async fn read(
    broker: &Arc<Broker>,
    key: &ShareKey,
    leader_epoch: i32,
) -> Result<Option<ShareSnapshot>, ResponseError> {
    with_retries(broker, key, Op::Read { leader_epoch }).await
}

/// Stores `snapshot` (the whole state of the share-partition) and returns once
/// replicated. Errors: FencedStateEpoch if `snapshot.state_epoch` is below the stored
/// one; FencedLeaderEpoch if `leader_epoch` is below the stored one (-1, an admin
/// write, skips leader fencing). A write at the stored epochs whose snapshot epoch is
/// not newer is stale: not appended, but answered only once the newer stored snapshot,
/// which subsumes it, is replicated.
pub async fn write(
    broker: &Arc<Broker>,
    key: &ShareKey,
    leader_epoch: i32,
    snapshot: &ShareSnapshot,
) -> Result<(), ResponseError> {
    with_retries(
        broker,
        key,
        Op::Write {
            leader_epoch,
            snapshot,
        },
    )
    .await
    .map(|_| ())
}

/// Removes the state (a tombstone), for DeleteShareGroupOffsets / DeleteGroups. Ok if
/// absent.
pub async fn delete(broker: &Arc<Broker>, key: &ShareKey) -> Result<(), ResponseError> {
    with_retries(broker, key, Op::Delete).await.map(|_| ())
}

#[derive(Clone, Copy, Debug)]
enum Op<'a> {
    Read {
        leader_epoch: i32,
    },
    Write {
        leader_epoch: i32,
        snapshot: &'a ShareSnapshot,
    },
    Delete,
}

/// Errors that mean "the coordinator is elsewhere or not ready yet": asked again after a
/// backoff, with fresh metadata.
fn retriable(e: &ResponseError) -> bool {
    matches!(
        e,
        ResponseError::NotCoordinator
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::CoordinatorNotAvailable
    )
}

async fn with_retries(
    broker: &Arc<Broker>,
    key: &ShareKey,
    op: Op<'_>,
) -> Result<Option<ShareSnapshot>, ResponseError> {
    let give_up = Instant::now() + RETRY_FOR;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match attempt(broker, key, op).await {
            Err(e) if retriable(&e) && Instant::now() + backoff < give_up => {
                debug!(?key, error = ?e, ?backoff, "share coordinator not reachable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            outcome => return outcome,
        }
    }
}

/// One try at the coordinator the current metadata names.
async fn attempt(
    broker: &Arc<Broker>,
    key: &ShareKey,
    op: Op<'_>,
) -> Result<Option<ShareSnapshot>, ResponseError> {
    let mut md = broker.metadata();
    if !md.topics.contains_key(SHARE_STATE_TOPIC) {
        crate::kafka::find_coordinator::create_internal_topic(broker, &md, SHARE_STATE_TOPIC)
            .await
            .map_err(|(e, why)| {
                debug!(%why, "no {SHARE_STATE_TOPIC} yet");
                e
            })?;
        md = broker.metadata();
    }
    let partition = ShareStateCoordinator::partition_of(&md, key)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let leader = md
        .partition(SHARE_STATE_TOPIC, partition)
        .map_or(-1, |p| p.leader);
    if leader < 0 {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if leader == broker.node_id {
        let shard = broker.share_state.shard_for(&md, key)?;
        return match op {
            Op::Read { leader_epoch } => shard.read(key, leader_epoch).await,
            Op::Write {
                leader_epoch,
                snapshot,
            } => shard
                .write(key, leader_epoch, snapshot)
                .await
                .map(|()| None),
            Op::Delete => shard.delete(key).await.map(|()| None),
        };
    }
    let address = md
        .brokers
        .get(&leader)
        .map(|b| b.rpc_address.clone())
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    remote(broker, &address, key, op).await
}

/// Asks the coordinator on another broker. A transport failure or timeout counts as
/// COORDINATOR_NOT_AVAILABLE, so the caller retries.
async fn remote(
    broker: &Broker,
    address: &str,
    key: &ShareKey,
    op: Op<'_>,
) -> Result<Option<ShareSnapshot>, ResponseError> {
    let channel = broker
        .share_state
        .pool
        .channel(address)
        .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
    let mut client = ShareStateClient::new(channel);
    let proto_key = Some(service::key_to_proto(key));
    let call = async {
        match op {
            Op::Read { leader_epoch } => client
                .read(ReadShareStateRequest {
                    key: proto_key,
                    leader_epoch,
                })
                .await
                .map(|r| {
                    let r = r.into_inner();
                    (r.error_code, r.snapshot)
                }),
            Op::Write {
                leader_epoch,
                snapshot,
            } => client
                .write(WriteShareStateRequest {
                    key: proto_key,
                    leader_epoch,
                    snapshot: Some(service::snapshot_to_proto(snapshot)),
                })
                .await
                .map(|r| (r.into_inner().error_code, None)),
            Op::Delete => client
                .delete(DeleteShareStateRequest { key: proto_key })
                .await
                .map(|r| (r.into_inner().error_code, None)),
        }
    };
    let (code, snapshot) = match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(status)) => {
            debug!(%address, %status, "share coordinator call failed");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        Err(_) => {
            debug!(%address, "share coordinator call timed out");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
    };
    if code != 0 {
        return Err(i16::try_from(code)
            .ok()
            .and_then(ResponseError::try_from_code)
            .unwrap_or(ResponseError::UnknownServerError));
    }
    snapshot
        .map(service::snapshot_from_proto)
        .transpose()
        .map_err(|why| {
            debug!(%address, %why, "share coordinator sent a malformed snapshot");
            ResponseError::UnknownServerError
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_keys_write_topic_ids_as_kafka_does() {
        let key = ShareKey {
            group_id: "g".to_string(),
            topic_id: uuid::Uuid::nil(),
            partition: 7,
        };
        assert_eq!(key.coordinator_key(), "g:AAAAAAAAAAAAAAAAAAAAAA:7");
        let key = ShareKey {
            topic_id: uuid::Uuid::from_u128(u128::MAX),
            ..key
        };
        assert_eq!(key.coordinator_key(), "g:_____________________w:7");
    }
}
