//! Coordinators that live on the leaders of an internal topic's partitions (groups on
//! `__consumer_offsets`, transactions on `__transaction_state`): one shard per partition
//! this broker leads, opened when leadership arrives and closed when it leaves.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use fjord_controller::ClusterMetadata;
use tracing::info;

use crate::replica::{Partition, ReplicaManager};

pub trait CoordinatorShard: Send + Sync + 'static {
    fn open(replica: Arc<Partition>) -> Self;
    fn partition(&self) -> i32;
    fn leader_epoch(&self) -> i32;
    fn owns_partition(&self) -> bool;
    fn close(&self);
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
                    if s.leader_epoch() == r.leader_epoch() && s.owns_partition() => {}
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
            let partitions: Vec<i32> = fresh.iter().map(|s| s.partition()).collect();
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
