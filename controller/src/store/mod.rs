//! Durable Raft state.
//!
//! The Raft log lives in the storage crate's segment engine (`<data>/controller/raft-log`),
//! one record batch per entry with the entry index as its offset, so purging deletes whole
//! segment files and disk use stays bounded. sled keeps the vote, the committed log id and
//! the latest state-machine snapshot (`<data>/controller/state`). See docs/architecture.md
//! for why the log is not in sled.

mod log_store;
mod state_machine;

pub use log_store::RaftLogStore;
pub use state_machine::StateMachineStore;
