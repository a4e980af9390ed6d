//! Share groups (KIP-932) on the partition leader: the share-partitions this broker
//! keeps for the partitions it leads (`leader`), the share sessions of the members
//! fetching here (`sessions`), and what a fetch read in offsets (`batches`). The state
//! machines themselves are pure, in `group::share`; the state is stored by the share
//! coordinator (`share_state`). ShareFetch and ShareAcknowledge translate the wire in
//! `kafka::share_fetch`.

pub mod batches;
pub mod leader;
pub mod sessions;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;
use tracing::debug;

use crate::broker::Broker;
use crate::group::share::ShareSnapshot;
use crate::kafka::errors::KafkaError;
use crate::replica::{IsolationLevel, Partition};
use crate::share_state::ShareKey;
use crate::time::now_ms;
pub use leader::{Acquired, FetchOutcome, FetchRequest, Settings, ShareLeader};
pub use sessions::{SessionOutcome, ShareSessions};

/// Kafka's `group.share.max.share.sessions` default.
pub const DEFAULT_MAX_SHARE_SESSIONS: usize = 2_000;

/// A session no request has used for this long belongs to a member that is gone
/// without closing it; its records go back. (Kafka ends such sessions when their
/// connection closes; a lock outlives neither.)
const SESSION_IDLE_MS: i64 = 120_000;

/// A share-partition nobody fetched for this long, with nothing locked, is dropped from
/// memory (its state is stored).
const SHARE_PARTITION_IDLE_MS: i64 = 300_000;

/// How often idle sessions and share-partitions no longer led here are looked for.
const TICK: Duration = Duration::from_secs(1);

/// The share groups' side of this broker as partition leader.
pub struct ShareBroker {
    pub leader: ShareLeader,
    sessions: Mutex<ShareSessions>,
}

impl ShareBroker {
    pub fn new(max_sessions: usize) -> Self {
        ShareBroker {
            leader: ShareLeader::default(),
            sessions: Mutex::new(ShareSessions::new(max_sessions)),
        }
    }

    pub fn sessions(&self) -> MutexGuard<'_, ShareSessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The share coordinator, reached through the broker (locally or over gRPC).
pub struct Coordinator<'a>(pub &'a Arc<Broker>);

impl leader::StateStore for Coordinator<'_> {
    async fn read(
        &self,
        key: &ShareKey,
        leader_epoch: i32,
    ) -> Result<Option<ShareSnapshot>, ResponseError> {
        crate::share_state::read(self.0, key, leader_epoch).await
    }

    async fn write(
        &self,
        key: &ShareKey,
        leader_epoch: i32,
        snapshot: &ShareSnapshot,
    ) -> Result<(), ResponseError> {
        crate::share_state::write(self.0, key, leader_epoch, snapshot).await
    }
}

/// A replica of the partition, read as share consumers read it: up to the high
/// watermark (`share.isolation.level` read_uncommitted, Kafka's default).
pub struct ReplicaLog<'a>(pub &'a Partition);

impl leader::ShareLog for ReplicaLog<'_> {
    fn leading_epoch(&self) -> Option<i32> {
        self.0.is_leader().then(|| self.0.leader_epoch())
    }
    fn log_start_offset(&self) -> i64 {
        self.0.log_start_offset()
    }
    fn readable_end(&self) -> i64 {
        self.0.high_watermark()
    }
    fn read(&self, offset: i64, max_bytes: u64) -> Result<Bytes, ResponseError> {
        self.0
            .read(offset, max_bytes, IsolationLevel::ReadUncommitted, true)
            .map(|r| r.records)
            .map_err(|e| KafkaError::from(&e).code)
    }
    fn offset_for_timestamp(&self, timestamp_ms: i64) -> Option<i64> {
        self.0
            .offset_for_timestamp(timestamp_ms)
            .ok()
            .flatten()
            .map(|(offset, _)| offset)
    }
}

/// Ends idle share sessions (releasing what their members held) and forgets
/// share-partitions of partitions this broker no longer leads.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let idle = broker
            .share
            .sessions()
            .evict_idle(SESSION_IDLE_MS, now_ms());
        for ((group_id, member_id), partitions) in idle {
            debug!(group = %group_id, member = %member_id, "idle share session ended");
            for (topic_id, partition) in partitions {
                let key = ShareKey {
                    group_id: group_id.clone(),
                    topic_id,
                    partition,
                };
                broker.share.leader.release(&key, &member_id).await;
            }
        }
        broker
            .share
            .leader
            .forget_idle(SHARE_PARTITION_IDLE_MS, now_ms());
        let md = broker.metadata();
        broker.share.leader.retain(|key| {
            md.topic_by_id(&key.topic_id)
                .and_then(|t| broker.replicas.get(&t.name, key.partition))
                .is_some_and(|r| r.is_leader())
        });
    }
}
