//! The share coordinator of one `__share_group_state` partition, while this broker leads
//! it: the stored state of every share-partition whose key hashes there, loaded from the
//! log when leadership arrives.
//!
//! # Concurrent requests for one share-partition
//!
//! The table holds, per share-partition, the state last *appended* and that record's
//! offset, as Kafka's coordinator runtime does: each request decides against it, appends
//! and updates it in one critical section (so the log's order is the order decisions
//! were made in), and is answered only once that offset is replicated. A read waits for
//! the offset of the state it returns, so it never answers with state a failover could
//! lose; a stale write waits for the newer state that subsumes it. No request holds a
//! lock while it waits, so writes to one share-partition pipeline instead of queueing.
//!
//! If an append is not replicated in time the table still holds it: it is in this
//! leader's log and is lost only if leadership moves, which closes this shard and the
//! next leader reloads from its own log. The writer is told to retry meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fjord_storage::batch::validate_records;
use fjord_storage::builder::BatchBuilder;
use fjord_storage::StorageError;
use kafka_protocol::error::ResponseError;
use tracing::{debug, info, warn};

use super::records;
use super::ShareKey;
use crate::coordinator_shards::{ShardCore, ShardStatus};
use crate::group::share::ShareSnapshot;
use crate::replica::{Partition, ReplicaError, Replication};
use crate::time::now_ms;

/// How long a state write waits for its replicas (as offset and transaction writes).
const PERSIST_TIMEOUT: Duration = Duration::from_secs(5);

/// The leader epoch of an admin read or write (describe, AlterShareGroupOffsets): no
/// leader fencing, and nothing recorded about leaders.
pub const ADMIN_LEADER_EPOCH: i32 = -1;

/// What is stored per share-partition: its snapshot and the highest leader epoch of a
/// partition leader that read or wrote it (older leaders are fenced).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stored {
    pub leader_epoch: i32,
    pub snapshot: ShareSnapshot,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteDecision {
    /// Append this as the new stored state.
    Append(Stored),
    /// The stored snapshot is this one or newer, at the same epochs: nothing to append.
    Stale,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadDecision {
    /// Answer with what is stored (possibly nothing).
    Answer,
    /// A newer leader: record its epoch (this, appended), then answer.
    Record(Stored),
}

/// Whether `a` is a later snapshot epoch than `b`. Snapshot epochs wrap at i32::MAX, so
/// "later" is the shorter way round.
fn snapshot_is_newer(a: i32, b: i32) -> bool {
    a.wrapping_sub(b) > 0
}

/// Fencing of a write of `snapshot` by a leader at `leader_epoch` against the stored
/// state. A write with a newer state epoch (an admin reset) or leader epoch always
/// replaces the stored one, whatever its snapshot epoch: the new leader's or the
/// admin's counter starts afresh.
pub fn decide_write(
    stored: Option<&Stored>,
    leader_epoch: i32,
    snapshot: &ShareSnapshot,
) -> Result<WriteDecision, ResponseError> {
    let Some(stored) = stored else {
        return Ok(WriteDecision::Append(Stored {
            leader_epoch,
            snapshot: snapshot.clone(),
        }));
    };
    if snapshot.state_epoch < stored.snapshot.state_epoch {
        return Err(ResponseError::FencedStateEpoch);
    }
    let admin = leader_epoch == ADMIN_LEADER_EPOCH;
    if !admin && leader_epoch < stored.leader_epoch {
        return Err(ResponseError::FencedLeaderEpoch);
    }
    let same_epochs = snapshot.state_epoch == stored.snapshot.state_epoch
        && (admin || leader_epoch == stored.leader_epoch);
    if same_epochs && !snapshot_is_newer(snapshot.snapshot_epoch, stored.snapshot.snapshot_epoch) {
        return Ok(WriteDecision::Stale);
    }
    Ok(WriteDecision::Append(Stored {
        leader_epoch: if admin {
            stored.leader_epoch
        } else {
            leader_epoch
        },
        snapshot: snapshot.clone(),
    }))
}

/// Fencing of a read by a leader at `leader_epoch`. Nothing stored records nothing: the
/// leader initializes the share-partition with its first write, which then fences
/// older leaders.
pub fn decide_read(
    stored: Option<&Stored>,
    leader_epoch: i32,
) -> Result<ReadDecision, ResponseError> {
    match stored {
        None => Ok(ReadDecision::Answer),
        Some(_) if leader_epoch == ADMIN_LEADER_EPOCH => Ok(ReadDecision::Answer),
        Some(s) if leader_epoch < s.leader_epoch => Err(ResponseError::FencedLeaderEpoch),
        Some(s) if leader_epoch > s.leader_epoch => Ok(ReadDecision::Record(Stored {
            leader_epoch,
            snapshot: s.snapshot.clone(),
        })),
        Some(_) => Ok(ReadDecision::Answer),
    }
}

struct Entry {
    /// `None`: a tombstone appended, kept until it is replicated so that reads wait
    /// for it.
    stored: Option<Stored>,
    /// The offset of the record that wrote it: answers wait until it is replicated.
    offset: i64,
}

pub struct ShareStateShard {
    pub core: ShardCore,
    entries: Mutex<HashMap<ShareKey, Entry>>,
}

impl ShareStateShard {
    pub fn new(replica: Arc<Partition>) -> Self {
        ShareStateShard {
            core: ShardCore::new(replica),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ShareKey, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the partition from its start (once everything on this leader is
    /// replicated) and starts answering. Returns false if leadership moved meanwhile.
    pub async fn load(&self) -> bool {
        let mut entries: HashMap<ShareKey, Entry> = HashMap::new();
        let mut skipped = 0;
        let replayed = self.core.replay("share-group state", |bytes| {
            let decoded = records::decode(bytes);
            let next = decoded.next_offset?;
            skipped += decoded.skipped;
            for (key, stored, offset) in decoded.entries {
                match stored {
                    Some(stored) => entries.insert(
                        key,
                        Entry {
                            stored: Some(stored),
                            offset,
                        },
                    ),
                    None => entries.remove(&key),
                };
            }
            Some(next)
        });
        if !replayed.await {
            return false;
        }
        let keys = entries.len();
        {
            let mut table = self.lock();
            if self.core.status() == ShardStatus::Closed {
                return false;
            }
            *table = entries;
        }
        self.core.set_status(ShardStatus::Active);
        info!(
            partition = self.core.partition,
            epoch = self.core.leader_epoch,
            keys,
            skipped,
            "share coordinator loaded"
        );
        true
    }

    pub fn close(&self) {
        self.core.set_status(ShardStatus::Closed);
        self.lock().clear();
    }

    /// The stored snapshot of `key`, fenced and recorded per [`decide_read`].
    pub async fn read(
        &self,
        key: &ShareKey,
        leader_epoch: i32,
    ) -> Result<Option<ShareSnapshot>, ResponseError> {
        let (answer, offset) = {
            self.core.check_active()?;
            let mut entries = self.lock();
            let current = entries.get(key);
            let stored = current.and_then(|e| e.stored.as_ref());
            match decide_read(stored, leader_epoch)? {
                ReadDecision::Answer => (
                    stored.map(|s| s.snapshot.clone()),
                    current.map(|e| e.offset),
                ),
                ReadDecision::Record(next) => {
                    let offset = self.append(key, Some(&next))?;
                    debug!(?key, leader_epoch, "share-partition leader epoch recorded");
                    let answer = Some(next.snapshot.clone());
                    entries.insert(
                        key.clone(),
                        Entry {
                            stored: Some(next),
                            offset,
                        },
                    );
                    (answer, Some(offset))
                }
            }
        };
        if let Some(offset) = offset {
            self.await_replicated(offset).await?;
        }
        Ok(answer)
    }

    /// Stores `snapshot` as the state of `key`, fenced per [`decide_write`]; returns once
    /// it (or a newer state that subsumes it) is replicated.
    pub async fn write(
        &self,
        key: &ShareKey,
        leader_epoch: i32,
        snapshot: &ShareSnapshot,
    ) -> Result<(), ResponseError> {
        let offset = {
            self.core.check_active()?;
            let mut entries = self.lock();
            let current = entries.get(key);
            match decide_write(
                current.and_then(|e| e.stored.as_ref()),
                leader_epoch,
                snapshot,
            )? {
                WriteDecision::Stale => current.map(|e| e.offset),
                WriteDecision::Append(next) => {
                    let offset = self.append(key, Some(&next))?;
                    entries.insert(
                        key.clone(),
                        Entry {
                            stored: Some(next),
                            offset,
                        },
                    );
                    Some(offset)
                }
            }
        };
        if let Some(offset) = offset {
            self.await_replicated(offset).await?;
        }
        debug!(
            ?key,
            leader_epoch,
            state_epoch = snapshot.state_epoch,
            snapshot_epoch = snapshot.snapshot_epoch,
            start_offset = snapshot.start_offset,
            "share-partition state written"
        );
        Ok(())
    }

    /// Deletes the state of `key` (a tombstone); returns once that is replicated.
    pub async fn delete(&self, key: &ShareKey) -> Result<(), ResponseError> {
        let offset = {
            self.core.check_active()?;
            let mut entries = self.lock();
            match entries.get(key) {
                None => return Ok(()),
                Some(Entry {
                    stored: None,
                    offset,
                }) => *offset,
                Some(_) => {
                    let offset = self.append(key, None)?;
                    entries.insert(
                        key.clone(),
                        Entry {
                            stored: None,
                            offset,
                        },
                    );
                    offset
                }
            }
        };
        self.await_replicated(offset).await?;
        let mut entries = self.lock();
        // Forgotten only if nothing was written for it since.
        if entries
            .get(key)
            .is_some_and(|e| e.stored.is_none() && e.offset == offset)
        {
            entries.remove(key);
        }
        debug!(?key, "share-partition state deleted");
        Ok(())
    }

    async fn await_replicated(&self, offset: i64) -> Result<(), ResponseError> {
        let outcome = self
            .core
            .replica
            .await_replication(offset + 1, self.core.leader_epoch, PERSIST_TIMEOUT)
            .await;
        match outcome {
            Replication::Replicated => Ok(()),
            Replication::TimedOut => Err(ResponseError::CoordinatorNotAvailable),
            Replication::LeadershipLost => Err(ResponseError::NotCoordinator),
        }
    }

    fn append(&self, key: &ShareKey, stored: Option<&Stored>) -> Result<i64, ResponseError> {
        if !self.core.owns_partition() {
            return Err(ResponseError::NotCoordinator);
        }
        let now = now_ms();
        let mut builder = BatchBuilder::new(0, now);
        builder.push(records::record(key, stored));
        let bytes = builder.build();
        let validated = validate_records(&bytes, self.core.replica.max_message_bytes()).map_err(
            |e| match e {
                StorageError::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
                _ => ResponseError::UnknownServerError,
            },
        )?;
        match self.core.replica.append_as_leader(&validated, now) {
            Ok(appended) => Ok(appended.info.last_offset),
            Err(ReplicaError::NotLeaderOrFollower) => Err(ResponseError::NotCoordinator),
            Err(e) => {
                warn!(partition = self.core.partition, error = %e, "writing share-group state failed");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use fjord_controller::metadata::{PartitionState, TopicState};
    use fjord_controller::ClusterMetadata;

    use crate::replica::ReplicaManager;
    use crate::share_state::SHARE_STATE_TOPIC;

    fn snapshot(state_epoch: i32, snapshot_epoch: i32) -> ShareSnapshot {
        ShareSnapshot {
            snapshot_epoch,
            state_epoch,
            start_offset: 10,
            state_batches: Vec::new(),
        }
    }

    fn stored(leader_epoch: i32, state_epoch: i32, snapshot_epoch: i32) -> Stored {
        Stored {
            leader_epoch,
            snapshot: snapshot(state_epoch, snapshot_epoch),
        }
    }

    fn append(leader_epoch: i32, state_epoch: i32, snapshot_epoch: i32) -> WriteDecision {
        WriteDecision::Append(stored(leader_epoch, state_epoch, snapshot_epoch))
    }

    #[test]
    fn the_first_write_is_stored_at_its_epochs() {
        assert_eq!(decide_write(None, 3, &snapshot(0, 0)), Ok(append(3, 0, 0)));
        assert_eq!(
            decide_write(None, ADMIN_LEADER_EPOCH, &snapshot(1, 0)),
            Ok(append(ADMIN_LEADER_EPOCH, 1, 0))
        );
    }

    #[test]
    fn writes_at_the_stored_epochs_need_a_newer_snapshot() {
        let s = stored(5, 2, 7);
        assert_eq!(
            decide_write(Some(&s), 5, &snapshot(2, 8)),
            Ok(append(5, 2, 8))
        );
        assert_eq!(
            decide_write(Some(&s), 5, &snapshot(2, 7)),
            Ok(WriteDecision::Stale)
        );
        assert_eq!(
            decide_write(Some(&s), 5, &snapshot(2, 6)),
            Ok(WriteDecision::Stale)
        );
    }

    #[test]
    fn snapshot_epochs_compare_across_the_wrap() {
        let s = stored(5, 2, i32::MAX);
        assert_eq!(
            decide_write(Some(&s), 5, &snapshot(2, i32::MIN)),
            Ok(append(5, 2, i32::MIN))
        );
        let wrapped = stored(5, 2, i32::MIN + 1);
        assert_eq!(
            decide_write(Some(&wrapped), 5, &snapshot(2, i32::MAX)),
            Ok(WriteDecision::Stale)
        );
    }

    #[test]
    fn older_epochs_are_fenced() {
        let s = stored(5, 2, 7);
        assert_eq!(
            decide_write(Some(&s), 5, &snapshot(1, 100)),
            Err(ResponseError::FencedStateEpoch)
        );
        assert_eq!(
            decide_write(Some(&s), 4, &snapshot(2, 100)),
            Err(ResponseError::FencedLeaderEpoch)
        );
        // The state epoch is checked first: an admin reset fences every older writer.
        assert_eq!(
            decide_write(Some(&s), 4, &snapshot(1, 100)),
            Err(ResponseError::FencedStateEpoch)
        );
        assert_eq!(
            decide_write(Some(&s), ADMIN_LEADER_EPOCH, &snapshot(1, 100)),
            Err(ResponseError::FencedStateEpoch)
        );
    }

    #[test]
    fn a_newer_leader_or_state_epoch_replaces_whatever_its_snapshot_epoch() {
        let s = stored(5, 2, 7);
        assert_eq!(
            decide_write(Some(&s), 6, &snapshot(2, 0)),
            Ok(append(6, 2, 0))
        );
        assert_eq!(
            decide_write(Some(&s), 5, &snapshot(3, 0)),
            Ok(append(5, 3, 0))
        );
    }

    #[test]
    fn admin_writes_skip_leader_fencing_and_keep_the_leader_epoch() {
        let s = stored(5, 2, 7);
        assert_eq!(
            decide_write(Some(&s), ADMIN_LEADER_EPOCH, &snapshot(3, 0)),
            Ok(append(5, 3, 0))
        );
        assert_eq!(
            decide_write(Some(&s), ADMIN_LEADER_EPOCH, &snapshot(2, 8)),
            Ok(append(5, 2, 8))
        );
        assert_eq!(
            decide_write(Some(&s), ADMIN_LEADER_EPOCH, &snapshot(2, 7)),
            Ok(WriteDecision::Stale)
        );
    }

    #[test]
    fn reads_fence_older_leaders_and_record_newer_ones() {
        let s = stored(5, 2, 7);
        assert_eq!(decide_read(None, 9), Ok(ReadDecision::Answer));
        assert_eq!(decide_read(Some(&s), 5), Ok(ReadDecision::Answer));
        assert_eq!(
            decide_read(Some(&s), ADMIN_LEADER_EPOCH),
            Ok(ReadDecision::Answer)
        );
        assert_eq!(
            decide_read(Some(&s), 4),
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            decide_read(Some(&s), 6),
            Ok(ReadDecision::Record(stored(6, 2, 7)))
        );
    }

    /// A `__share_group_state` partition this broker (1) leads alone, so every append
    /// is replicated at once.
    fn led_partition(dir: &std::path::Path) -> (ReplicaManager, Arc<Partition>) {
        let replicas = ReplicaManager::open(1, dir, BTreeMap::new()).expect("replicas");
        let mut md = ClusterMetadata::default();
        md.topics.insert(
            SHARE_STATE_TOPIC.to_string(),
            TopicState {
                name: SHARE_STATE_TOPIC.to_string(),
                id: uuid::Uuid::from_u128(7),
                configs: Default::default(),
                partitions: vec![PartitionState::new(vec![1])],
                internal: true,
            },
        );
        replicas.apply_metadata(&md);
        let replica = replicas.get(SHARE_STATE_TOPIC, 0).expect("replica");
        assert!(replica.is_leader());
        (replicas, replica)
    }

    fn key(partition: i32) -> ShareKey {
        ShareKey {
            group_id: "g".to_string(),
            topic_id: uuid::Uuid::from_u128(9),
            partition,
        }
    }

    #[tokio::test]
    async fn state_is_fenced_stored_and_reloaded_from_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_replicas, replica) = led_partition(dir.path());
        let shard = ShareStateShard::new(Arc::clone(&replica));
        assert_eq!(
            shard.read(&key(0), 1).await,
            Err(ResponseError::CoordinatorLoadInProgress)
        );
        assert!(shard.load().await);
        assert_eq!(shard.read(&key(0), 1).await, Ok(None));

        shard
            .write(&key(0), 1, &snapshot(0, 1))
            .await
            .expect("write");
        shard
            .write(&key(1), 3, &snapshot(0, 1))
            .await
            .expect("write");
        let end = replica.log_end_offset();
        // Stale: answered, not appended.
        shard
            .write(&key(0), 1, &snapshot(0, 1))
            .await
            .expect("stale");
        assert_eq!(replica.log_end_offset(), end);
        // A newer leader's read records its epoch; the older leader is fenced from then on.
        assert_eq!(shard.read(&key(0), 2).await, Ok(Some(snapshot(0, 1))));
        assert_eq!(replica.log_end_offset(), end + 1);
        assert_eq!(
            shard.write(&key(0), 1, &snapshot(0, 2)).await,
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(
            shard.read(&key(0), 1).await,
            Err(ResponseError::FencedLeaderEpoch)
        );
        shard
            .write(&key(0), 2, &snapshot(0, 5))
            .await
            .expect("write");
        shard.delete(&key(1)).await.expect("delete");
        shard.delete(&key(1)).await.expect("absent");
        assert_eq!(shard.read(&key(1), 3).await, Ok(None));

        // A new shard (a new leadership) sees exactly what was replicated.
        shard.close();
        let reloaded = ShareStateShard::new(Arc::clone(&replica));
        assert!(reloaded.load().await);
        assert_eq!(reloaded.read(&key(0), -1).await, Ok(Some(snapshot(0, 5))));
        assert_eq!(
            reloaded.write(&key(0), 1, &snapshot(0, 9)).await,
            Err(ResponseError::FencedLeaderEpoch)
        );
        assert_eq!(reloaded.read(&key(1), -1).await, Ok(None));
        assert_eq!(
            shard.read(&key(0), 2).await,
            Err(ResponseError::NotCoordinator)
        );
    }
}
