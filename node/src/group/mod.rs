//! Consumer groups: the classic group protocol (`state`), KIP-848's consumer protocol
//! (`consumer`) and committed offsets, coordinated by the leader of each
//! `__consumer_offsets` partition and stored in that partition.

pub mod consumer;
pub mod coordinator;
pub mod offsets;
pub mod records;
pub mod shard;
pub mod share;
pub mod state;
pub mod subscription;

#[cfg(test)]
mod state_tests;
#[cfg(test)]
mod test_rng;

pub use coordinator::{partition_for, GroupCoordinator, OFFSETS_TOPIC};
