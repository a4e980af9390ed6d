//! Which transactional ids this broker coordinates (one shard per `__transaction_state`
//! partition it leads), and the background work: loading shards, writing the markers
//! of decided transactions, and aborting transactions past their timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_controller::network::ChannelPool;
use fjord_controller::ClusterMetadata;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;
use tracing::{info, warn};

use super::markers;
use super::shard::TxnShard;
use super::state;
use crate::broker::Broker;
use crate::coordinator_shards::{partition_for, CoordinatorShard, ShardCore, ShardMap};
use crate::lease::Lease;
use crate::replica::{Partition, ReplicaManager};
use crate::time::now_ms;

pub const TXN_TOPIC: &str = "__transaction_state";

const TICK: Duration = Duration::from_millis(100);

impl CoordinatorShard for TxnShard {
    fn open(replica: Arc<Partition>) -> Self {
        TxnShard::new(replica)
    }
    fn core(&self) -> &ShardCore {
        &self.core
    }
    fn close(&self) {
        TxnShard::close(self)
    }
}

pub struct TxnCoordinator {
    lease: Arc<Lease>,
    pub(crate) shards: ShardMap<TxnShard>,
    /// Connections to other brokers, for markers and KIP-890 checks.
    pub(crate) pool: ChannelPool,
}

impl TxnCoordinator {
    pub fn new(
        replicas: Arc<ReplicaManager>,
        lease: Arc<Lease>,
        rpc_links: fjord_proto::peer::PeerLinks,
    ) -> Self {
        TxnCoordinator {
            lease,
            shards: ShardMap::new(TXN_TOPIC, replicas),
            pool: ChannelPool::new(rpc_links),
        }
    }

    /// The `__transaction_state` partition of `txn_id`, if the topic exists.
    pub fn partition_of(md: &ClusterMetadata, txn_id: &str) -> Option<i32> {
        md.topics
            .get(TXN_TOPIC)
            .map(|t| partition_for(txn_id, t.partitions.len()))
    }

    /// The shard that coordinates `txn_id`, if this broker does and has loaded it.
    pub fn shard_for(
        &self,
        md: &ClusterMetadata,
        txn_id: &str,
    ) -> Result<Arc<TxnShard>, ResponseError> {
        let partition = Self::partition_of(md, txn_id).ok_or(ResponseError::NotCoordinator)?;
        if !self.lease.is_valid() {
            return Err(ResponseError::NotCoordinator);
        }
        self.shards.active(md, partition)
    }

    /// KIP-890, coordinator side: whether `partition` is in the open transaction of
    /// `txn_id` at (`producer_id`, `epoch`).
    pub fn verify(
        &self,
        md: &ClusterMetadata,
        txn_id: &str,
        producer_id: i64,
        epoch: i16,
        partition: &(String, i32),
    ) -> Result<(), ResponseError> {
        let shard = self.shard_for(md, txn_id)?;
        match shard.get(txn_id) {
            Some(m) => state::verify(&m, producer_id, epoch, partition),
            None => Err(ResponseError::InvalidProducerIdMapping),
        }
    }

    pub fn shards(&self) -> Vec<Arc<TxnShard>> {
        self.shards.all()
    }
}

/// Writes the markers of a decided transaction until every partition has them, then
/// records it complete. One task per transactional id at a time: the task started
/// here, or `None` when one already runs.
pub fn complete_soon(
    broker: &Arc<Broker>,
    shard: Arc<TxnShard>,
    txn_id: String,
) -> Option<tokio::task::JoinHandle<()>> {
    if !shard.claim_completion(&txn_id) {
        return None;
    }
    let broker = Arc::clone(broker);
    Some(tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        while let Some(meta) = shard.get(&txn_id).filter(|m| m.state.is_preparing()) {
            if shard.core.check_active().is_err() {
                break;
            }
            if markers::write_all(&broker, &meta, shard.core.leader_epoch).await {
                let done = shard
                    .update(&txn_id, |cur| {
                        if cur != Some(&meta) {
                            return Ok((None, ()));
                        }
                        Ok((Some(state::complete(&meta, now_ms())), ()))
                    })
                    .await;
                match done {
                    Ok(()) => {
                        info!(txn_id, producer_id = meta.producer_id, outcome = ?meta.state, partitions = meta.partitions.len(), "transaction completed");
                        break;
                    }
                    Err(e) => {
                        warn!(txn_id, error = ?e, "recording a completed transaction failed; retrying")
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        shard.release_completion(&txn_id);
    }))
}

fn abort_expired(broker: &Arc<Broker>, shard: &Arc<TxnShard>, now: i64) {
    for (id, meta) in shard.all() {
        if state::expire(&meta, now).is_none() {
            continue;
        }
        let broker = Arc::clone(broker);
        let shard = Arc::clone(shard);
        tokio::spawn(async move {
            let expired = shard
                .update(&id, |cur| {
                    let next = cur.and_then(|m| state::expire(m, now_ms()));
                    Ok((next, ()))
                })
                .await;
            if expired.is_ok() {
                info!(
                    txn_id = id,
                    producer_id = meta.producer_id,
                    "transaction timed out; aborting"
                );
                let _ = complete_soon(&broker, shard, id);
            }
        });
    }
}

fn forget_idle(shard: &TxnShard, now: i64, expiration_ms: i64) {
    for (id, meta) in shard.all() {
        let idle = matches!(
            meta.state,
            state::TxnState::Empty
                | state::TxnState::CompleteCommit
                | state::TxnState::CompleteAbort
        ) && now.saturating_sub(meta.update_ms) > expiration_ms;
        if idle {
            info!(txn_id = id, "transactional id expired");
            shard.forget(&id);
        }
    }
}

/// Keeps shards in line with leadership, loads new ones, finishes decided transactions
/// and aborts timed-out ones.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_cleanup = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let md = broker.metadata();
        for shard in broker.txns.shards.reconcile(&md) {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                if shard.load().await {
                    // Decisions made before a failover are carried out by the new leader.
                    for (id, meta) in shard.all() {
                        if meta.state.is_preparing() {
                            let _ = complete_soon(&broker, Arc::clone(&shard), id);
                        }
                    }
                }
            });
        }
        let interval = Duration::from_millis(
            broker
                .broker_i64("transaction.abort.timed.out.transaction.cleanup.interval.ms")
                .max(1) as u64,
        );
        if last_cleanup.elapsed() >= interval {
            last_cleanup = Instant::now();
            let now = now_ms();
            let expiration = broker.broker_i64("transactional.id.expiration.ms");
            for shard in broker.txns.shards() {
                if shard.core.check_active().is_ok() {
                    abort_expired(&broker, &shard, now);
                    forget_idle(&shard, now, expiration);
                    for (id, meta) in shard.all() {
                        if meta.state.is_preparing() {
                            let _ = complete_soon(&broker, Arc::clone(&shard), id);
                        }
                    }
                }
            }
        }
    }
    broker.txns.shards.close_all();
}
