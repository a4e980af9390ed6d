//! Idempotent producers: producer ids handed out from controller-allocated blocks, and
//! per-partition sequence state that writes a retried batch only once.

mod ids;
pub mod snapshot;
mod state;
mod txn;

pub use ids::ProducerIdManager;
pub use state::{
    last_seq as last_seq_of, BatchMeta, ProducerError, ProducerStateTable, ProducerSummary,
    SequenceCheck,
};
pub use txn::{AbortedTxn, TxnIndex};
