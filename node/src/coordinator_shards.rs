//! Coordinators that live on the leaders of an internal topic's partitions (groups on
//! `__consumer_offsets`, transactions on `__transaction_state`): one shard per partition
//! this broker leads, opened when leadership arrives and closed when it leaves.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use fjord_controller::ClusterMetadata;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::replica::{IsolationLevel, Partition, ReplicaManager};

pub trait CoordinatorShard: Send + Sync + 'static {
    fn open(replica: Arc<Partition>) -> Self;
    fn core(&self) -> &ShardCore;
    fn close(&self);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardStatus {
    Loading,
    Active,
    Closed,
}

/// What every coordinator shard has: the partition it was made for, the leader epoch it
/// was made at, and whether it is loading, answering or closed.
pub struct ShardCore {
    pub partition: i32,
    /// The partition's leader epoch when the shard was made (the coordinator epoch).
    pub leader_epoch: i32,
    pub replica: Arc<Partition>,
    status: watch::Sender<ShardStatus>,
}

impl ShardCore {
    pub fn new(replica: Arc<Partition>) -> Self {
        ShardCore {
            partition: replica.tp.partition,
            leader_epoch: replica.leader_epoch(),
            replica,
            status: watch::Sender::new(ShardStatus::Loading),
        }
    }

    pub fn status(&self) -> ShardStatus {
        *self.status.borrow()
    }

    pub fn set_status(&self, status: ShardStatus) {
        self.status.send_replace(status);
    }

    pub fn subscribe(&self) -> watch::Receiver<ShardStatus> {
        self.status.subscribe()
    }

    /// Still the leader at the epoch this shard was made for.
    pub fn owns_partition(&self) -> bool {
        self.replica.is_leader() && self.replica.leader_epoch() == self.leader_epoch
    }

    pub fn check_active(&self) -> Result<(), ResponseError> {
        match self.status() {
            ShardStatus::Loading => Err(ResponseError::CoordinatorLoadInProgress),
            ShardStatus::Closed => Err(ResponseError::NotCoordinator),
            ShardStatus::Active if !self.owns_partition() => Err(ResponseError::NotCoordinator),
            ShardStatus::Active => Ok(()),
        }
    }

    /// Reads the partition from its start to the log end it has now, once all of that
    /// is replicated (what this leader has is what the coordinator must see, but only
    /// replicated records may be read). `apply` takes each chunk read and returns the
    /// offset after it, or `None` when nothing more can be decoded. Returns false if
    /// leadership moved away or the shard closed meanwhile.
    pub async fn replay(&self, what: &str, mut apply: impl FnMut(&[u8]) -> Option<i64>) -> bool {
        let target = self.replica.log_end_offset();
        let mut hw = self.replica.subscribe();
        loop {
            if !self.owns_partition() || self.status() == ShardStatus::Closed {
                return false;
            }
            if *hw.borrow_and_update() >= target {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), hw.changed()).await;
        }
        let mut position = self.replica.log_start_offset();
        while position < target {
            if !self.owns_partition() {
                return false;
            }
            let read = self
                .replica
                .read(position, 4 << 20, IsolationLevel::ReadUncommitted, true);
            match read {
                Ok(r) => match apply(&r.records) {
                    Some(next) => position = next,
                    None => break,
                },
                Err(e) => {
                    warn!(partition = self.partition, error = %e, "reading {what} failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        true
    }
}

pub struct ShardMap<S> {
    topic: &'static str,
    replicas: Arc<ReplicaManager>,
    shards: RwLock<HashMap<i32, Arc<S>>>,
}

impl<S: CoordinatorShard> ShardMap<S> {
    pub fn new(topic: &'static str, replicas: Arc<ReplicaManager>) -> Self {
        ShardMap {
            topic,
            replicas,
            shards: RwLock::new(HashMap::new()),
        }
    }

    pub fn get(&self, partition: i32) -> Option<Arc<S>> {
        self.shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .cloned()
    }

    /// The shard of `partition` if it is loaded and answering. Otherwise Kafka's answer:
    /// COORDINATOR_LOAD_IN_PROGRESS while this broker leads the partition in `md` (its
    /// shard is loading, or not made yet because the replica manager or the coordinator's
    /// task has not caught up with the leadership), which clients retry here after a
    /// backoff; NOT_COORDINATOR when it does not lead it, which sends them back to
    /// FindCoordinator.
    pub fn active(&self, md: &ClusterMetadata, partition: i32) -> Result<Arc<S>, ResponseError> {
        let Some(shard) = self.get(partition) else {
            return Err(not_loaded(self.leads(md, partition)));
        };
        match shard.core().check_active() {
            Ok(()) => Ok(shard),
            // Closed, or made for an earlier leadership: a new one is on its way if this
            // broker leads again.
            Err(ResponseError::NotCoordinator) => Err(not_loaded(self.leads(md, partition))),
            Err(e) => Err(e),
        }
    }

    /// Whether some partition `md` names this broker the leader of is not answered yet:
    /// its shard is loading, or not made yet. A list of everything this coordinator
    /// holds (ListGroups) is incomplete until none is.
    pub fn loading(&self, md: &ClusterMetadata) -> bool {
        let count = md.topics.get(self.topic).map_or(0, |t| t.partitions.len());
        (0..count as i32).any(|p| {
            self.leads(md, p)
                && self.active(md, p).err() == Some(ResponseError::CoordinatorLoadInProgress)
        })
    }

    /// Whether `md` names this broker the leader of `partition`.
    fn leads(&self, md: &ClusterMetadata, partition: i32) -> bool {
        md.partition(self.topic, partition)
            .is_some_and(|p| p.leader == self.replicas.node_id())
    }

    /// Every shard this broker runs, loaded or not.
    pub fn all(&self) -> Vec<Arc<S>> {
        self.shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Opens a shard for each partition this broker newly leads (returned, to be loaded)
    /// and closes those it no longer leads.
    pub fn reconcile(&self, md: &ClusterMetadata) -> Vec<Arc<S>> {
        let count = md.topics.get(self.topic).map_or(0, |t| t.partitions.len());
        let mut shards = self.shards.write().unwrap_or_else(|e| e.into_inner());
        let mut fresh: Vec<Arc<S>> = Vec::new();
        let mut lost = Vec::new();
        for p in 0..count as i32 {
            let replica = self.replicas.get(self.topic, p).filter(|r| r.is_leader());
            let current = shards.get(&p);
            match (replica, current) {
                (Some(r), Some(s))
                    if s.core().leader_epoch == r.leader_epoch() && s.core().owns_partition() => {}
                (Some(r), _) => {
                    if let Some(old) = shards.remove(&p) {
                        old.close();
                    }
                    let shard = Arc::new(S::open(r));
                    shards.insert(p, Arc::clone(&shard));
                    fresh.push(shard);
                }
                (None, Some(_)) => {
                    if let Some(old) = shards.remove(&p) {
                        lost.push(p);
                        old.close();
                    }
                }
                (None, None) => {}
            }
        }
        shards.retain(|p, s| {
            let keep = (*p as usize) < count;
            if !keep {
                s.close();
            }
            keep
        });
        if !fresh.is_empty() {
            let partitions: Vec<i32> = fresh.iter().map(|s| s.core().partition).collect();
            info!(
                topic = self.topic,
                ?partitions,
                "became coordinator; loading"
            );
        }
        if !lost.is_empty() {
            info!(topic = self.topic, partitions = ?lost, "no longer coordinator");
        }
        fresh
    }

    pub fn close_all(&self) {
        let mut shards = self.shards.write().unwrap_or_else(|e| e.into_inner());
        for (_, s) in shards.drain() {
            s.close();
        }
    }
}

/// The answer for a partition without an answering shard: "loading" to the broker that
/// leads it (per its metadata), "not coordinator" to any other.
fn not_loaded(leads: bool) -> ResponseError {
    if leads {
        ResponseError::CoordinatorLoadInProgress
    } else {
        ResponseError::NotCoordinator
    }
}

/// Kafka's `partitionFor`: Java's `String.hashCode` of the key (a group or transactional
/// id), made non-negative, modulo the partition count. Matching it keeps placement
/// identical to Kafka's.
pub fn partition_for(key: &str, partitions: usize) -> i32 {
    let mut h: i32 = 0;
    for unit in key.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let non_negative = if h == i32::MIN { 0 } else { h.abs() };
    (non_negative as i64 % partitions.max(1) as i64) as i32
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fjord_controller::metadata::{PartitionState, TopicState};

    use super::*;
    use crate::group::shard::Shard;
    use crate::group::OFFSETS_TOPIC;

    fn offsets_led_by(leader: i32) -> ClusterMetadata {
        let mut md = ClusterMetadata::default();
        let mut partition = PartitionState::new(vec![1, 2]);
        partition.leader = leader;
        md.topics.insert(
            OFFSETS_TOPIC.to_string(),
            TopicState {
                name: OFFSETS_TOPIC.to_string(),
                id: uuid::Uuid::from_u128(1),
                configs: Default::default(),
                partitions: vec![partition; 2],
                internal: true,
            },
        );
        md
    }

    /// The metadata names this broker the leader, but no shard exists yet (the replica
    /// manager or the coordinator's task has not caught up): "loading", which clients
    /// retry here. Another broker's partition stays "not coordinator".
    #[test]
    fn a_led_partition_without_its_shard_is_loading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let replicas =
            Arc::new(ReplicaManager::open(1, dir.path(), BTreeMap::new()).expect("replicas"));
        let shards: ShardMap<Shard> = ShardMap::new(OFFSETS_TOPIC, replicas);
        let error = |md: &ClusterMetadata, p| shards.active(md, p).err();
        assert_eq!(
            error(&offsets_led_by(1), 0),
            Some(ResponseError::CoordinatorLoadInProgress)
        );
        assert_eq!(
            error(&offsets_led_by(2), 0),
            Some(ResponseError::NotCoordinator)
        );
        // A partition the topic does not have.
        assert_eq!(
            error(&offsets_led_by(1), 7),
            Some(ResponseError::NotCoordinator)
        );
        assert_eq!(
            error(&ClusterMetadata::default(), 0),
            Some(ResponseError::NotCoordinator)
        );
        // ListGroups must not call the list complete while a led partition has no shard.
        assert!(shards.loading(&offsets_led_by(1)));
        assert!(!shards.loading(&offsets_led_by(2)));
        assert!(!shards.loading(&ClusterMetadata::default()));
    }
}
