//! Metadata writes as clients ask for them. A node that is not the active controller
//! forwards these over gRPC; the active controller makes its decisions (ids, placement)
//! and turns each into a [`MetadataCommand`](crate::metadata::MetadataCommand).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metadata::acls::{AclBinding, AclFilter};
use crate::metadata::features::FeatureUpdate;
use crate::metadata::quotas::QuotaChange;
use crate::metadata::{
    BrokerRegistration, ConfigOp, ConfigResource, MetadataError, Reassignment, ScramUpsert,
    TopicOutcome,
};

/// A topic to create. Defaults (`num.partitions`, `default.replication.factor`) are
/// resolved by the receiving broker, which knows its own config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicRequest {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Explicit replica lists, which override the two counts above.
    pub assignments: Option<Vec<Vec<i32>>>,
    pub configs: BTreeMap<String, String>,
    pub internal: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    RegisterBroker(BrokerRegistration),
    CreateTopics {
        topics: Vec<CreateTopicRequest>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topic: String,
        /// The new total partition count.
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    },
    AlterConfigs {
        resource: ConfigResource,
        ops: Vec<ConfigOp>,
        replace: bool,
        validate_only: bool,
    },
    AllocateProducerIds {
        broker_id: i32,
        count: i64,
    },
    /// Broker liveness; held in the active controller's memory, never written to the log.
    Heartbeat {
        broker_id: i32,
        broker_epoch: i64,
    },
    /// The broker is stopping: fence it now rather than after its session times out.
    ControlledShutdown {
        broker_id: i32,
        broker_epoch: i64,
    },
    /// `fjord cluster drain`: the broker takes no new replica and its leaderships move
    /// off, until [`UndrainBroker`](Self::UndrainBroker). Refused for an unknown broker.
    DrainBroker {
        broker_id: i32,
    },
    UndrainBroker {
        broker_id: i32,
    },
    /// A node outside the voter set joins the metadata quorum as a learner.
    AddLearner {
        node_id: u64,
        rpc_address: String,
    },
    /// Promotes a learner to voter (`force` allows an even number of voters).
    AddVoter {
        node_id: u64,
        force: bool,
    },
    /// Demotes a voter to learner (`force` allows an even number of voters).
    RemoveVoter {
        node_id: u64,
        force: bool,
    },
    /// The active controller's view of the quorum.
    DescribeQuorum,
    /// A partition leader changes its ISR (Kafka's AlterPartition).
    AlterPartition {
        topic: String,
        partition: i32,
        leader_id: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
    /// ElectLeaders: preferred (`unclean` false) or unclean elections, for the given
    /// partitions or all of them.
    ElectLeaders {
        partitions: Option<Vec<(String, i32)>>,
        unclean: bool,
    },
    /// AlterPartitionReassignments: start, replace or cancel (`target: None`).
    AlterReassignments {
        changes: Vec<Reassignment>,
    },
    /// AlterClientQuotas (KIP-546).
    AlterClientQuotas {
        changes: Vec<QuotaChange>,
        validate_only: bool,
    },
    /// AlterUserScramCredentials, already validated by the receiving broker.
    AlterScramCredentials {
        upserts: Vec<ScramUpsert>,
        deletions: Vec<(String, String)>,
    },
    CreateAcls {
        acls: Vec<AclBinding>,
    },
    DeleteAcls {
        filters: Vec<AclFilter>,
    },
    /// UpdateFeatures (KIP-584), checked against the finalized levels by the active
    /// controller.
    UpdateFeatures {
        updates: Vec<FeatureUpdate>,
        validate_only: bool,
    },
}

/// One node of the metadata quorum as the active controller sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumNode {
    pub node_id: u64,
    pub rpc_address: String,
    pub voter: bool,
    /// Last log index known to be replicated to this node.
    pub matched_index: Option<u64>,
    /// Entries this node is behind the leader's log.
    pub lag: Option<u64>,
    /// Milliseconds since this node last acknowledged the leader (0 for the leader).
    #[serde(default)]
    pub last_ack_ms_ago: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub leader: u64,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub nodes: Vec<QuorumNode>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerResponse {
    Done,
    BrokerRegistered {
        broker_epoch: i64,
    },
    Topics(Vec<TopicOutcome>),
    ProducerIds {
        start: i64,
        count: i64,
    },
    /// `metadata_index`: the controller's applied metadata index when it answered. A
    /// broker that has applied that much knows every leadership change made before its
    /// heartbeat arrived, which is what its lease (`node/src/lease.rs`) stands on.
    Heartbeat {
        fenced: bool,
        metadata_index: u64,
    },
    Quorum(QuorumStatus),
    PartitionChanged {
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    Elections(Vec<(String, i32, Result<i32, MetadataError>)>),
    Reassignments(Vec<(String, i32, Result<(), MetadataError>)>),
    AclsDeleted(Vec<Vec<AclBinding>>),
}

/// Convenience for callers that only care whether a single-outcome request worked.
impl ControllerResponse {
    pub fn single_topic(self) -> Result<(), MetadataError> {
        match self {
            ControllerResponse::Topics(mut v) if v.len() == 1 => v.remove(0).result.map(|_| ()),
            _ => Ok(()),
        }
    }
}
