//! Which share-partitions' state this broker stores (one shard per `__share_group_state`
//! partition it leads), and the background task that keeps shards in line with
//! leadership.

use std::sync::Arc;
use std::time::Duration;

use fjord_controller::network::ChannelPool;
use fjord_controller::ClusterMetadata;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;

use super::shard::ShareStateShard;
use super::{ShareKey, SHARE_STATE_TOPIC};
use crate::broker::Broker;
use crate::coordinator_shards::{partition_for, CoordinatorShard, ShardCore, ShardMap};
use crate::lease::Lease;
use crate::replica::{Partition, ReplicaManager};

const TICK: Duration = Duration::from_millis(100);

impl CoordinatorShard for ShareStateShard {
    fn open(replica: Arc<Partition>) -> Self {
        ShareStateShard::new(replica)
    }
    fn core(&self) -> &ShardCore {
        &self.core
    }
    fn close(&self) {
        ShareStateShard::close(self)
    }
}

pub struct ShareStateCoordinator {
    lease: Arc<Lease>,
    pub(crate) shards: ShardMap<ShareStateShard>,
    /// Connections to the share coordinators on other brokers.
    pub(crate) pool: ChannelPool,
}

impl ShareStateCoordinator {
    pub fn new(
        replicas: Arc<ReplicaManager>,
        lease: Arc<Lease>,
        rpc_links: fjord_proto::peer::PeerLinks,
    ) -> Self {
        ShareStateCoordinator {
            lease,
            shards: ShardMap::new(SHARE_STATE_TOPIC, replicas),
            pool: ChannelPool::new(rpc_links),
        }
    }

    /// The `__share_group_state` partition of `key`, if the topic exists.
    pub fn partition_of(md: &ClusterMetadata, key: &ShareKey) -> Option<i32> {
        md.topics
            .get(SHARE_STATE_TOPIC)
            .map(|t| partition_for(&key.coordinator_key(), t.partitions.len()))
    }

    /// The shard that stores `key`, if this broker does and has loaded it.
    pub fn shard_for(
        &self,
        md: &ClusterMetadata,
        key: &ShareKey,
    ) -> Result<Arc<ShareStateShard>, ResponseError> {
        let partition = Self::partition_of(md, key).ok_or(ResponseError::NotCoordinator)?;
        // Without a lease this broker may be a zombie whose partition moved while it was
        // frozen: its table may miss writes the new coordinator has accepted.
        if !self.lease.is_valid() {
            return Err(ResponseError::NotCoordinator);
        }
        self.shards.active(md, partition)
    }

    pub fn shards(&self) -> Vec<Arc<ShareStateShard>> {
        self.shards.all()
    }
}

/// Keeps shards in line with leadership and loads new ones.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let md = broker.metadata();
        for shard in broker.share_state.shards.reconcile(&md) {
            tokio::spawn(async move {
                shard.load().await;
            });
        }
    }
    broker.share_state.shards.close_all();
}
