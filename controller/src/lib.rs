//! The Fjord metadata quorum: every node runs an openraft group whose log is the cluster
//! metadata (Kafka's KRaft idea, without ZooKeeper).
//!
//! - [`metadata`]: the image ([`ClusterMetadata`]) and the pure, deterministic apply step.
//! - [`placement`]: where replicas of new partitions go.
//! - [`store`]: the Raft log (on the storage crate's segment engine) and sled state.
//! - [`network`]: the tonic transport, and forwarding of writes to the active controller.
//! - [`Controller`]: the handle the broker uses.

pub mod attachments;
pub mod auto_balance;
pub mod balance;
mod controller;
pub mod decisions;
pub mod error;
pub mod internal_topics;
pub mod limits;
pub mod metadata;
pub mod network;
pub mod placement;
pub mod requests;
pub mod store;
pub mod types;

pub use controller::{parse_voters, Controller, ControllerConfig, RaftStats};
pub use error::ControllerError;
pub use metadata::ClusterMetadata;
pub use requests::{
    ControllerRequest, ControllerResponse, CreateTopicRequest, QuorumNode, QuorumStatus,
};
