//! Transactions: the coordinator of each transactional id (on the leader of its
//! `__transaction_state` partition), the markers that end transactions on data
//! partitions, and the KIP-890 checks partition leaders ask of coordinators.

pub mod coordinator;
pub mod markers;
pub mod records;
pub mod service;
pub mod shard;
pub mod state;

pub use coordinator::{TxnCoordinator, TXN_TOPIC};
