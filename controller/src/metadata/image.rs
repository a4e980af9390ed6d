use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::acls::AclBinding;
use super::command::{BrokerRegistration, Listener};
use super::quotas::ClientQuota;

/// A registered broker as the controller sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    pub id: i32,
    /// Bumped on every registration, so a restarted broker is distinguishable.
    pub epoch: i64,
    pub incarnation_id: Uuid,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    pub rpc_address: String,
    pub fenced: bool,
    /// Fenced by its own controlled shutdown and not yet gone. Like a Kafka broker in
    /// controlled shutdown it stays listed to clients (Metadata) while it stops, so that
    /// requests a client already queued at it are answered NOT_LEADER_OR_FOLLOWER
    /// rather than dropped with a connection the client closes because its broker
    /// vanished. It leads nothing and is in no ISR.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
}

impl BrokerState {
    pub fn from_registration(reg: &BrokerRegistration, epoch: i64) -> Self {
        BrokerState {
            id: reg.broker_id,
            epoch,
            incarnation_id: reg.incarnation_id,
            listeners: reg.listeners.clone(),
            rack: reg.rack.clone(),
            rpc_address: reg.rpc_address.clone(),
            fenced: false,
            stopping: false,
        }
    }

    /// Whether clients are told of this broker (Metadata): unfenced, or still stopping.
    pub fn is_listed(&self) -> bool {
        !self.fenced || self.stopping
    }

    /// The listener a client connected through, matched by listener name.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// Replica placement and leadership of one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1 when no replica can lead.
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped on every change of replicas, ISR or leader (Kafka's partition epoch).
    pub partition_epoch: i32,
    /// During a reassignment (KIP-455): replicas being added, which catch up outside the
    /// ISR, and replicas to remove once every target replica is in sync. `replicas` holds
    /// both the target and the leaving ones meanwhile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl PartitionState {
    pub fn new(replicas: Vec<i32>) -> Self {
        let leader = replicas.first().copied().unwrap_or(-1);
        PartitionState {
            isr: replicas.clone(),
            replicas,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replica set a reassignment is heading for (the current one when none runs).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }

    /// The replica set before the running reassignment (the current one when none runs).
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding.contains(r))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicState {
    pub name: String,
    pub id: Uuid,
    /// Topic-level config overrides only; defaults are resolved by the broker.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionState>,
    pub internal: bool,
}

/// The whole metadata image, as applied from the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerState>,
    pub topics: BTreeMap<String, TopicState>,
    /// Cluster-wide dynamic broker config (Kafka's default broker resource, name "").
    pub cluster_configs: BTreeMap<String, String>,
    /// Per-broker dynamic config overrides.
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// Index of the last applied log entry, for staleness checks and /v1/cluster.
    pub last_applied_index: u64,
    /// The first producer id not yet handed out.
    #[serde(default)]
    pub next_producer_id: i64,
    /// Client quotas by entity key (`QuotaEntity::key`).
    #[serde(default)]
    pub client_quotas: BTreeMap<String, ClientQuota>,
    /// SCRAM credentials by user, then by mechanism name (`SCRAM-SHA-256`, ...).
    #[serde(default)]
    pub scram_credentials: BTreeMap<String, BTreeMap<String, ScramCredential>>,
    /// Every ACL.
    #[serde(default)]
    pub acls: BTreeSet<AclBinding>,
    /// Brokers drained by an operator (`fjord cluster drain`): they take no new replica
    /// and lead nothing another in-sync replica can lead, until undrained. Kept by id, so
    /// a drained broker stays drained across restarts and re-registrations.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub drained_brokers: BTreeSet<i32>,
    /// Group config overrides (resource type GROUP) by group id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Feature levels set by UpdateFeatures (KIP-584); unset ones run their defaults
    /// (`features::SUPPORTED`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_levels: BTreeMap<String, i16>,
    /// The log index of the last feature change (ApiVersions' finalized_features_epoch);
    /// 0 while every feature runs its default.
    #[serde(default)]
    pub features_epoch: i64,
}

/// What the cluster keeps of a SCRAM password (RFC 5802): enough to check a client's
/// proof, not to make one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

impl ClusterMetadata {
    /// Whether `broker` is registered and not fenced.
    pub fn is_live(&self, broker: i32) -> bool {
        self.brokers.get(&broker).is_some_and(|b| !b.fenced)
    }

    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicState> {
        self.topics.values().find(|t| &t.id == id)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        let idx = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.partitions.get(idx)
    }

    /// Registered, unfenced brokers. Those that may take new replicas are fewer:
    /// [`crate::placement::candidates`].
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerState> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether an operator drained `broker` (see [`ClusterMetadata::drained_brokers`]).
    pub fn is_drained(&self, broker: i32) -> bool {
        self.drained_brokers.contains(&broker)
    }
}
