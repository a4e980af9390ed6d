//! Which groups this broker coordinates: one shard per `__consumer_offsets` partition it
//! leads, created (and loaded from the log) when leadership arrives and closed when it
//! leaves. A background task keeps shards in line with leadership and drives group
//! timeouts and offset expiry.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_controller::metadata::acls::{AclOperation, ResourceType};
use fjord_controller::ClusterMetadata;
use kafka_protocol::error::ResponseError;
use tokio::sync::watch;

use super::consumer::{ConsumerGroupConfig, TopicCatalog, TopicInfo};
use super::shard::Shard;
use super::share::{AutoOffsetReset, ShareGroupConfig, SharePartitionConfig};
use super::state::GroupConfig;
use crate::broker::Broker;
use crate::coordinator_shards::{CoordinatorShard, ShardCore, ShardMap};
use crate::lease::Lease;
use crate::replica::ReplicaManager;
use crate::security::authorizer::{Authorizer, Requester};
use crate::time::now_ms;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often group deadlines (rebalance and session timeouts) are checked.
const TICK: Duration = Duration::from_millis(100);

pub use crate::coordinator_shards::partition_for;

pub struct GroupCoordinator {
    lease: Arc<Lease>,
    shards: ShardMap<Shard>,
}

impl CoordinatorShard for Shard {
    fn open(replica: Arc<crate::replica::Partition>) -> Self {
        Shard::new(replica)
    }
    fn core(&self) -> &ShardCore {
        &self.core
    }
    fn close(&self) {
        Shard::close(self)
    }
}

impl GroupCoordinator {
    pub fn new(replicas: Arc<ReplicaManager>, lease: Arc<Lease>) -> Self {
        GroupCoordinator {
            lease,
            shards: ShardMap::new(OFFSETS_TOPIC, replicas),
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
        self.shards.active(md, partition)
    }

    /// The shard of one `__consumer_offsets` partition, loaded or not.
    pub fn shard(&self, partition: i32) -> Option<Arc<Shard>> {
        self.shards.get(partition)
    }

    /// Every shard this broker runs, loaded or not.
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        self.shards.all()
    }

    /// Whether a `__consumer_offsets` partition this broker leads per `md` is still
    /// loading, or has no shard yet.
    pub fn loading(&self, md: &ClusterMetadata) -> bool {
        self.shards.loading(md)
    }

    pub fn close_all(&self) {
        self.shards.close_all();
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

/// KIP-848 settings of `group`: its own group configs (the GROUP config resource), else
/// the broker's `group.consumer.*`.
pub fn consumer_group_config(broker: &Broker, group: &str) -> ConsumerGroupConfig {
    consumer_group_config_in(broker, &broker.metadata(), group)
}

fn consumer_group_config_in(
    broker: &Broker,
    md: &ClusterMetadata,
    group: &str,
) -> ConsumerGroupConfig {
    let view = broker.view(md);
    let own = |name: &str, broker_key: &str| {
        md.group_configs
            .get(group)
            .and_then(|c| c.get(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| view.broker_i64(broker_key))
    };
    ConsumerGroupConfig {
        session_timeout_ms: own(
            "consumer.session.timeout.ms",
            "group.consumer.session.timeout.ms",
        ),
        heartbeat_interval_ms: own(
            "consumer.heartbeat.interval.ms",
            "group.consumer.heartbeat.interval.ms",
        ),
        max_size: usize::try_from(view.broker_i64("group.consumer.max.size")).unwrap_or(usize::MAX),
    }
}

/// Share group settings of `group` (KIP-932): its own `share.*` group configs, else the
/// broker's `group.share.*`.
pub fn share_group_config(broker: &Broker, group: &str) -> ShareGroupConfig {
    share_group_config_in(broker, &broker.metadata(), group)
}

fn share_group_config_in(broker: &Broker, md: &ClusterMetadata, group: &str) -> ShareGroupConfig {
    let view = broker.view(md);
    let own = |name: &str, broker_key: &str| {
        group_config_i64(md, group, name).unwrap_or_else(|| view.broker_i64(broker_key))
    };
    ShareGroupConfig {
        session_timeout_ms: own("share.session.timeout.ms", "group.share.session.timeout.ms"),
        heartbeat_interval_ms: i32::try_from(own(
            "share.heartbeat.interval.ms",
            "group.share.heartbeat.interval.ms",
        ))
        .unwrap_or(i32::MAX),
        max_size: usize::try_from(view.broker_i64("group.share.max.size")).unwrap_or(usize::MAX),
    }
}

/// What the partition leaders need of share group `group` to run its share-partitions:
/// the record lock duration and delivery count limit (the group's own configs, else the
/// broker's), the in-flight window (broker-wide) and where a partition without state
/// starts (`share.auto.offset.reset`, latest unless the group says otherwise;
/// `by_duration:` is left to the caller, which reads the raw group config for it).
pub fn share_partition_settings(
    broker: &Broker,
    group: &str,
) -> (SharePartitionConfig, AutoOffsetReset) {
    let md = broker.metadata();
    let view = broker.view(&md);
    let own = |name: &str, broker_key: &str| {
        group_config_i64(&md, group, name).unwrap_or_else(|| view.broker_i64(broker_key))
    };
    let config = SharePartitionConfig {
        max_record_locks: usize::try_from(
            view.broker_i64("group.share.partition.max.record.locks"),
        )
        .unwrap_or(crate::group::share::DEFAULT_MAX_RECORD_LOCKS),
        delivery_count_limit: i16::try_from(own(
            "share.delivery.count.limit",
            "group.share.delivery.count.limit",
        ))
        .unwrap_or(crate::group::share::DEFAULT_DELIVERY_COUNT_LIMIT),
        record_lock_duration_ms: own(
            "share.record.lock.duration.ms",
            "group.share.record.lock.duration.ms",
        ),
    };
    let reset = md
        .group_configs
        .get(group)
        .and_then(|c| c.get("share.auto.offset.reset"))
        .and_then(|v| AutoOffsetReset::parse(v.trim()))
        .unwrap_or_default();
    (config, reset)
}

/// A numeric group config `name` of `group`, if the group sets one.
fn group_config_i64(md: &ClusterMetadata, group: &str, name: &str) -> Option<i64> {
    md.group_configs
        .get(group)
        .and_then(|c| c.get(name))
        .and_then(|v| v.trim().parse().ok())
}

/// The cluster's topics as consumer group assignors see them, and who may see which.
pub struct MetadataCatalog<'a> {
    pub md: &'a ClusterMetadata,
    pub authorizer: &'a Authorizer,
}

impl TopicCatalog for MetadataCatalog<'_> {
    fn by_name(&self, name: &str) -> Option<TopicInfo> {
        self.md.topics.get(name).map(|t| TopicInfo {
            name: t.name.clone(),
            id: t.id,
            partitions: i32::try_from(t.partitions.len()).unwrap_or(i32::MAX),
        })
    }
    fn visible(&self, principal: &str, host: &str, topic: &str) -> bool {
        let who = Requester {
            principal,
            host: host.trim_start_matches('/'),
        };
        self.authorizer.allows(
            &self.md.acls,
            who,
            AclOperation::Describe,
            ResourceType::Topic,
            topic,
        )
    }
    fn names(&self) -> Vec<String> {
        self.md
            .topics
            .values()
            .filter(|t| !t.internal)
            .map(|t| t.name.clone())
            .collect()
    }
}

/// Keeps shards in line with leadership, loads new ones, and drives timeouts and expiry.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = Instant::now();
    let mut sizes = TopicSizes::default();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        let md = broker.metadata();
        for shard in broker.groups.shards.reconcile(&md) {
            let broker = Arc::clone(&broker);
            tokio::spawn(async move {
                if shard.load(now_ms).await {
                    // Topics may have changed while another broker coordinated these
                    // groups: their subscriptions are resolved against today's catalog.
                    let md = broker.metadata();
                    let catalog = MetadataCatalog {
                        md: &md,
                        authorizer: &broker.security.authorizer,
                    };
                    shard.consumer_topics_changed(&catalog);
                    shard.share_topics_changed(&catalog);
                }
            });
        }
        let now = now_ms();
        let TopicChanges {
            grown: resized,
            any: topics_changed,
        } = sizes.update(&md);
        let catalog = MetadataCatalog {
            md: &md,
            authorizer: &broker.security.authorizer,
        };
        for shard in broker.groups.shards() {
            if !resized.is_empty() {
                shard.topics_resized(&resized, now);
            }
            if topics_changed {
                shard.consumer_topics_changed(&catalog);
                shard.share_topics_changed(&catalog);
            }
            shard.tick(now);
            shard.consumer_tick(&|group| consumer_group_config_in(&broker, &md, group), now);
            shard.share_tick(&|group| share_group_config_in(&broker, &md, group), now);
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

/// Topics (id and partition count) as last seen, to notice topics that gain partitions
/// and any change of the topic catalog.
#[derive(Default)]
struct TopicSizes {
    index: u64,
    topics: HashMap<String, (uuid::Uuid, usize)>,
}

/// What changed in the topic catalog since the last look.
#[derive(Debug, Default, PartialEq, Eq)]
struct TopicChanges {
    /// Topics with more partitions than before (new topics are not counted: no group can
    /// have been assigned them).
    grown: BTreeSet<String>,
    /// Any topic created, deleted, recreated or grown (and the first look).
    any: bool,
}

impl TopicSizes {
    /// Compares `md` with the last look; nothing when no metadata was applied since.
    fn update(&mut self, md: &ClusterMetadata) -> TopicChanges {
        if md.last_applied_index == self.index {
            return TopicChanges::default();
        }
        let first_look = self.index == 0;
        self.index = md.last_applied_index;
        let topics: HashMap<String, (uuid::Uuid, usize)> = md
            .topics
            .iter()
            .map(|(name, t)| (name.clone(), (t.id, t.partitions.len())))
            .collect();
        let mut grown = BTreeSet::new();
        if !first_look {
            for (name, (_, n)) in &topics {
                if self.topics.get(name).is_some_and(|(_, old)| old < n) {
                    grown.insert(name.clone());
                }
            }
        }
        let any = first_look || topics != self.topics;
        self.topics = topics;
        TopicChanges { grown, any }
    }
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

    use fjord_controller::metadata::{PartitionState, TopicState};

    /// The same id for the same name, as a topic keeps its id until recreated.
    fn stable_id(name: &str) -> uuid::Uuid {
        let mut bytes = [0u8; 16];
        for (b, c) in bytes.iter_mut().zip(name.bytes()) {
            *b = c;
        }
        uuid::Uuid::from_bytes(bytes)
    }

    fn md(index: u64, topics: &[(&str, usize)]) -> ClusterMetadata {
        let mut md = ClusterMetadata {
            last_applied_index: index,
            ..ClusterMetadata::default()
        };
        for (name, n) in topics {
            md.topics.insert(
                name.to_string(),
                TopicState {
                    name: name.to_string(),
                    id: stable_id(name),
                    configs: Default::default(),
                    partitions: vec![PartitionState::new(vec![1]); *n],
                    internal: false,
                },
            );
        }
        md
    }

    #[test]
    fn only_topics_that_gain_partitions_count() {
        let mut sizes = TopicSizes::default();
        let first = sizes.update(&md(5, &[("a", 2), ("b", 3)]));
        assert!(first.grown.is_empty());
        assert!(first.any, "the first look counts as a change");
        // Nothing applied since: not even looked at.
        assert_eq!(sizes.update(&md(5, &[("a", 9)])), TopicChanges::default());
        let changes = sizes.update(&md(6, &[("a", 4), ("b", 3), ("new", 8)]));
        assert_eq!(
            changes.grown.into_iter().collect::<Vec<_>>(),
            vec!["a".to_string()]
        );
        assert!(changes.any);
        // Metadata applied, topics unchanged (an ISR change, say).
        assert_eq!(
            sizes.update(&md(7, &[("a", 4), ("b", 3), ("new", 8)])),
            TopicChanges::default()
        );
        // A deleted topic changes the catalog without growing anything.
        let deleted = sizes.update(&md(8, &[("a", 4), ("b", 3)]));
        assert!(deleted.grown.is_empty() && deleted.any);
    }
}
