//! The cluster metadata image and the commands that change it.
//!
//! Everything here is pure: applying a command is a deterministic function of the image
//! and the command, so every node (voter or learner) that applies the same log ends up
//! with the same image.

pub mod acls;
mod apply;
mod command;
pub mod features;
mod image;
pub mod quotas;
pub mod reassign;

pub use apply::{apply_command, check_alter_partition};
pub use command::{
    BrokerRegistration, CommandOutcome, ConfigOp, ConfigResource, Election, Listener,
    MetadataCommand, MetadataError, NewTopicSpec, Reassignment, ScramUpsert, TopicOutcome,
};
pub use image::{BrokerState, ClusterMetadata, PartitionState, ScramCredential, TopicState};
