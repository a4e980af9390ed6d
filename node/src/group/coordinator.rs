//! Which groups this broker coordinates: one shard per `__consumer_offsets` partition it
//! leads, created (and loaded from the log) when leadership arrives and closed when it
//! leaves. A background task keeps shards in line with leadership and drives group
//! timeouts and offset expiry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fjord_controller::ClusterMetadata;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;
use tracing::info;

use super::shard::Shard;
use super::state::GroupConfig;
use crate::broker::Broker;
use crate::lease::Lease;
use crate::replica::ReplicaManager;
use crate::time::now_ms;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often group deadlines (rebalance and session timeouts) are checked.
const TICK: Duration = Duration::from_millis(100);

/// Kafka's `partitionFor`: Java's `String.hashCode` of the group id, made non-negative,
/// modulo the partition count. Matching it keeps group placement identical to Kafka's.
pub fn partition_for(group_id: &str, partitions: usize) -> i32 {
    let mut h: i32 = 0;
    for unit in group_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let non_negative = if h == i32::MIN { 0 } else { h.abs() };
    (non_negative as i64 % partitions.max(1) as i64) as i32
}

pub struct GroupCoordinator {
    replicas: Arc<ReplicaManager>,
    lease: Arc<Lease>,
    shards: RwLock<HashMap<i32, Arc<Shard>>>,
}

impl GroupCoordinator {
    pub fn new(replicas: Arc<ReplicaManager>, lease: Arc<Lease>) -> Self {
        GroupCoordinator {
            replicas,
            lease,
            shards: RwLock::new(HashMap::new()),
        }
    }

    /// The shard that coordinates `group_id`, if this broker does and has loaded it.
    pub fn shard_for(
        &self,
        md: &ClusterMetadata,
        group_id: &str,
    ) -> Result<Arc<Shard>, ResponseError> {
        let topic = md
            .topics
            .get(OFFSETS_TOPIC)
            .ok_or(ResponseError::NotCoordinator)?;
        let partition = partition_for(group_id, topic.partitions.len());
        // Without a lease this broker may be a zombie whose partition moved while it was
        // frozen: answering from memory would hand out offsets and generations the new
        // coordinator has since replaced.
        if !self.lease.is_valid() {
            return Err(ResponseError::NotCoordinator);
        }
        let shard = self
            .shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .cloned()
            .ok_or(ResponseError::NotCoordinator)?;
        shard.check_active()?;
        Ok(shard)
    }

    /// Every shard this broker runs, loaded or not.
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        self.shards
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Opens a shard for each offsets partition this broker newly leads (returned, to be
    /// loaded) and closes those it no longer leads.
    fn reconcile(&self, md: &ClusterMetadata) -> Vec<Arc<Shard>> {
        let count = md
            .topics
            .get(OFFSETS_TOPIC)
            .map_or(0, |t| t.partitions.len());
        let mut shards = self.shards.write().unwrap_or_else(|e| e.into_inner());
        let mut fresh: Vec<Arc<Shard>> = Vec::new();
        let mut lost = Vec::new();
        for p in 0..count as i32 {
            let replica = self
                .replicas
                .get(OFFSETS_TOPIC, p)
                .filter(|r| r.is_leader());
            let current = shards.get(&p);
            match (replica, current) {
                (Some(r), Some(s)) if s.leader_epoch == r.leader_epoch() && s.owns_partition() => {}
                (Some(r), _) => {
                    if let Some(old) = shards.remove(&p) {
                        old.close();
                    }
                    let shard = Arc::new(Shard::new(r));
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
            let partitions: Vec<i32> = fresh.iter().map(|s| s.partition).collect();
            info!(
                ?partitions,
                "became group coordinator for {OFFSETS_TOPIC} partitions; loading"
            );
        }
        if !lost.is_empty() {
            info!(partitions = ?lost, "no longer group coordinator for {OFFSETS_TOPIC} partitions");
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

/// Group-wide settings from the broker config.
pub fn group_config(broker: &Broker) -> GroupConfig {
    let md = broker.metadata();
    let view = broker.view(&md);
    GroupConfig {
        min_session_timeout_ms: view.broker_i64("group.min.session.timeout.ms"),
        max_session_timeout_ms: view.broker_i64("group.max.session.timeout.ms"),
        initial_rebalance_delay_ms: view.broker_i64("group.initial.rebalance.delay.ms"),
        max_size: usize::try_from(view.broker_i64("group.max.size")).unwrap_or(usize::MAX),
    }
}

/// Keeps shards in line with leadership, loads new ones, and drives timeouts and expiry.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let md = broker.metadata();
        for shard in broker.groups.reconcile(&md) {
            tokio::spawn(async move {
                shard.load(now_ms).await;
            });
        }
        let now = now_ms();
        for shard in broker.groups.shards() {
            shard.tick(now);
        }
        let interval = Duration::from_millis(
            broker
                .broker_i64("offsets.retention.check.interval.ms")
                .max(1) as u64,
        );
        if last_expiry.elapsed() >= interval {
            last_expiry = Instant::now();
            let retention_ms = broker
                .broker_i64("offsets.retention.minutes")
                .saturating_mul(60_000);
            for shard in broker.groups.shards() {
                shard.expire_offsets(retention_ms, now);
            }
        }
    }
    broker.groups.close_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_for_matches_kafka() {
        // Java: Utils.abs(groupId.hashCode()) % 50, with hashCode over UTF-16 units.
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("console-consumer-12345", 50), 6);
        assert_eq!(partition_for("grüße", 50), 23);
        assert_eq!(partition_for("😀group", 50), 32);
        // The one string whose hash is i32::MIN: Kafka's abs maps it to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("", 50), 0);
    }
}
