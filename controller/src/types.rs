//! openraft type configuration for the metadata quorum.

use crate::metadata::{CommandOutcome, MetadataCommand};

openraft::declare_raft_types!(
    /// Raft types of the Fjord metadata log: entries are metadata commands, node ids are
    /// broker ids, and a node is known by its gRPC address.
    pub TypeConfig:
        D = MetadataCommand,
        R = CommandOutcome,
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig, crate::store::StateMachineStore>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, Vec<u8>>;
