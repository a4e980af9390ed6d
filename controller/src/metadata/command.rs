use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::acls::{AclBinding, AclFilter};
use super::image::ScramCredential;
use super::quotas::QuotaChange;

/// A Kafka listener a broker advertises to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security_protocol: String,
}

/// What a broker sends when it (re)starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    /// Kept by the node's data directory across restarts (random for a new one): tells a
    /// restart of the same node from a second live process claiming its id.
    pub incarnation_id: Uuid,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    /// host:port of the node's gRPC listener (replication, forwarding).
    pub rpc_address: String,
}

/// A topic to create, with every decision already made by the active controller so that
/// applying it is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopicSpec {
    pub name: String,
    pub id: Uuid,
    /// Replica list of each partition, in partition order; the first replica leads.
    pub assignments: Vec<Vec<i32>>,
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
}

/// The object a config change applies to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// `None` is the cluster-wide default broker resource (Kafka's empty name).
    Broker(Option<i32>),
    /// A group's own settings (KIP-848's GROUP resource), which may be set before the
    /// group exists.
    Group(String),
}

/// One config change. List appends and subtracts are resolved to `Set` at the edge,
/// where defaults are known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConfigOp {
    Set { key: String, value: String },
    Delete { key: String },
}

/// An entry of the metadata log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataCommand {
    /// Written once by the node that bootstraps the cluster; later copies are ignored.
    InitializeCluster {
        cluster_id: String,
    },
    RegisterBroker(BrokerRegistration),
    /// The broker missed its session (or asked to shut down): stop routing to it and move
    /// the leadership of its partitions. Ignored unless `epoch` is still its epoch.
    FenceBroker {
        broker_id: i32,
        epoch: i64,
    },
    /// The broker asked to shut down: fenced as by [`MetadataCommand::FenceBroker`], but
    /// still listed to clients until a `FenceBroker` for the same epoch (its process is
    /// gone, or its session ran out). Ignored unless `epoch` is still its epoch.
    ControlledShutdown {
        broker_id: i32,
        epoch: i64,
    },
    /// The fenced broker is heartbeating again under the same registration.
    UnfenceBroker {
        broker_id: i32,
        epoch: i64,
    },
    /// An operator drains the broker: it takes no new replica, and its leaderships move
    /// to other in-sync replicas. Refused for a broker that is not registered.
    DrainBroker {
        broker_id: i32,
    },
    /// The drained broker may take replicas and lead again.
    UndrainBroker {
        broker_id: i32,
    },
    CreateTopics {
        topics: Vec<NewTopicSpec>,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topic: String,
        /// Replica lists of the new partitions only.
        new_assignments: Vec<Vec<i32>>,
    },
    AlterConfigs {
        resource: ConfigResource,
        ops: Vec<ConfigOp>,
        /// Replace all existing overrides (legacy AlterConfigs) rather than edit them.
        replace: bool,
    },
    /// Hands a block of producer ids to a broker (KIP-730), so ids are unique
    /// cluster-wide and never reused across controller failover.
    AllocateProducerIds {
        broker_id: i32,
        count: i64,
    },
    /// A partition leader changes its ISR (Kafka's AlterPartition). Applied only if the
    /// leader and partition epochs are still current.
    AlterPartition {
        topic: String,
        partition: i32,
        leader_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
    /// Leader elections decided by the active controller (preferred-leader rebalancing,
    /// ElectLeaders). Each applies only if the partition is still at `leader_epoch`.
    ElectLeaders {
        elections: Vec<Election>,
    },
    /// Starts, replaces or cancels partition reassignments (KIP-455).
    AlterReassignments {
        changes: Vec<Reassignment>,
    },
    /// Sets or removes client quotas (KIP-546's AlterClientQuotas), validated first.
    AlterClientQuotas {
        changes: Vec<QuotaChange>,
    },
    /// Sets and deletes SCRAM credentials (AlterUserScramCredentials), validated first.
    AlterScramCredentials {
        upserts: Vec<ScramUpsert>,
        /// `(user, mechanism)`; deleting one that does not exist changes nothing.
        deletions: Vec<(String, String)>,
    },
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    /// Deletes every ACL each filter matches; the outcome lists them per filter.
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
    /// Sets finalized feature levels (UpdateFeatures), validated by the active controller
    /// (`features::validate`); 0 turns a feature off.
    UpdateFeatures {
        levels: BTreeMap<String, i16>,
    },
}

/// One credential to set: `user`'s for `mechanism` (`SCRAM-SHA-256` or `SCRAM-SHA-512`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramUpsert {
    pub user: String,
    pub mechanism: String,
    pub credential: ScramCredential,
}

/// One partition's reassignment: `target` replicas, or `None` to cancel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reassignment {
    pub topic: String,
    pub partition: i32,
    pub target: Option<Vec<i32>>,
}

/// One leader election: move `topic`-`partition` from `leader_epoch` to `new_leader`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Election {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub new_leader: i32,
}

/// Why a metadata change was refused. Each maps to one Kafka error code at the edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetadataError {
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    #[error("the cluster has not been initialized yet")]
    NotInitialized,
    #[error("{0}")]
    Unavailable(String),
    #[error("broker {0} registered again since; this registration is stale")]
    StaleBrokerEpoch(i32),
    #[error("broker {0} is registered by another live process")]
    DuplicateBrokerRegistration(i32),
    #[error("{0}")]
    InvalidVoterChange(String),
    #[error("leader epoch {0} is not current")]
    FencedLeaderEpoch(i32),
    #[error("partition epoch {0} is not current")]
    InvalidUpdateVersion(i32),
    #[error("{0}")]
    IneligibleReplica(String),
    #[error("the preferred replica already leads")]
    ElectionNotNeeded,
    #[error("{0}")]
    PreferredLeaderNotAvailable(String),
    #[error("no reassignment is in progress for this partition")]
    NoReassignmentInProgress,
    /// The request breaks a limit of the cluster (Kafka's POLICY_VIOLATION).
    #[error("{0}")]
    PolicyViolation(String),
    /// An UpdateFeatures level that is unsupported or may not be reached from the
    /// current one (Kafka's INVALID_UPDATE_VERSION).
    #[error("{0}")]
    InvalidFeatureUpdate(String),
}

/// The per-topic result of a batched topic command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicOutcome {
    pub name: String,
    pub result: Result<Uuid, MetadataError>,
}

/// What applying a command produced, returned to the writer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandOutcome {
    Done,
    ClusterInitialized {
        cluster_id: String,
    },
    BrokerRegistered {
        broker_epoch: i64,
    },
    Topics(Vec<TopicOutcome>),
    ProducerIds {
        start: i64,
        count: i64,
    },
    PartitionChanged {
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    Elections(Vec<(String, i32, Result<i32, MetadataError>)>),
    Reassignments(Vec<(String, i32, Result<(), MetadataError>)>),
    /// The ACLs each DeleteAcls filter removed.
    AclsDeleted(Vec<Vec<AclBinding>>),
    Failed(MetadataError),
}

impl std::fmt::Display for MetadataCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetadataCommand::InitializeCluster { cluster_id } => {
                write!(f, "InitializeCluster({cluster_id})")
            }
            MetadataCommand::RegisterBroker(r) => write!(f, "RegisterBroker({})", r.broker_id),
            MetadataCommand::FenceBroker { broker_id, epoch } => {
                write!(f, "FenceBroker({broker_id}, epoch {epoch})")
            }
            MetadataCommand::ControlledShutdown { broker_id, epoch } => {
                write!(f, "ControlledShutdown({broker_id}, epoch {epoch})")
            }
            MetadataCommand::UnfenceBroker { broker_id, epoch } => {
                write!(f, "UnfenceBroker({broker_id}, epoch {epoch})")
            }
            MetadataCommand::DrainBroker { broker_id } => write!(f, "DrainBroker({broker_id})"),
            MetadataCommand::UndrainBroker { broker_id } => {
                write!(f, "UndrainBroker({broker_id})")
            }
            MetadataCommand::CreateTopics { topics } => {
                let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
                write!(f, "CreateTopics({})", names.join(","))
            }
            MetadataCommand::DeleteTopics { names } => {
                write!(f, "DeleteTopics({})", names.join(","))
            }
            MetadataCommand::CreatePartitions {
                topic,
                new_assignments,
            } => {
                write!(f, "CreatePartitions({topic}+{})", new_assignments.len())
            }
            MetadataCommand::AlterConfigs { resource, ops, .. } => {
                write!(f, "AlterConfigs({resource:?}, {} ops)", ops.len())
            }
            MetadataCommand::AlterPartition {
                topic,
                partition,
                new_isr,
                ..
            } => {
                write!(f, "AlterPartition({topic}-{partition}, isr {new_isr:?})")
            }
            MetadataCommand::ElectLeaders { elections } => {
                write!(f, "ElectLeaders({} partitions)", elections.len())
            }
            MetadataCommand::AlterReassignments { changes } => {
                write!(f, "AlterReassignments({} partitions)", changes.len())
            }

            MetadataCommand::AllocateProducerIds { broker_id, count } => {
                write!(f, "AllocateProducerIds(broker {broker_id}, {count})")
            }
            MetadataCommand::AlterClientQuotas { changes } => {
                write!(f, "AlterClientQuotas({} entities)", changes.len())
            }
            MetadataCommand::AlterScramCredentials { upserts, deletions } => {
                write!(
                    f,
                    "AlterScramCredentials({} set, {} deleted)",
                    upserts.len(),
                    deletions.len()
                )
            }
            MetadataCommand::CreateAcls { acls } => write!(f, "CreateAcls({})", acls.len()),
            MetadataCommand::DeleteAcls { filters } => {
                write!(f, "DeleteAcls({} filters)", filters.len())
            }
            MetadataCommand::UpdateFeatures { levels } => write!(f, "UpdateFeatures({levels:?})"),
        }
    }
}
