use serde::{Deserialize, Serialize};

use crate::metadata::MetadataError;

/// Errors of the controller crate. The broker maps them to Kafka error codes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ControllerError {
    /// This node is not the active controller; `leader` is the one it knows of.
    #[error("not the active controller (leader: {leader:?})")]
    NotController { leader: Option<u64> },
    /// No controller could be reached before the deadline (election in progress,
    /// quorum lost).
    #[error("no active controller is available: {0}")]
    Unavailable(String),
    #[error("timed out waiting for the metadata quorum")]
    Timeout,
    /// The write may or may not have been applied (the leader changed, or its answer was
    /// lost). Not retried internally, since that could apply it twice.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("controller storage failed: {0}")]
    Storage(String),
    #[error("controller stopped: {0}")]
    Fatal(String),
}
