//! Partition replicas hosted by this broker: their logs, leadership, high watermark, and
//! the reconciliation of local state with the metadata image.

pub mod cleaner;
mod error;
mod fetcher;
pub mod isr_sync;
mod leader_state;
mod manager;
mod partition;
mod service;
mod throttle;

pub use fetcher::FetcherManager;
pub use service::ReplicationService;

pub use error::ReplicaError;
pub use manager::{FollowPlan, ReplicaManager};

pub use partition::{Chores, FetchResult, IsolationLevel, LeaderAppend, Partition, Replication};
