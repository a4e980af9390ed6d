//! The Fjord partition log engine.
//!
//! A partition is a directory of segments. Each segment is a log file of Kafka v2
//! RecordBatches stored byte-for-byte as the producer sent them (apart from the stamped base
//! offset and leader epoch), a sparse offset index and a time index. This crate knows nothing
//! about networking: the broker hands it validated bytes and asks for byte ranges back.

pub mod batch;
pub mod blocking;
pub mod builder;
pub mod checkpoint;
pub mod cleaner;
pub mod compression;
pub mod config;
pub mod control;
pub mod epoch_cache;
pub mod error;
pub mod index;
pub mod log;
pub mod manager;
mod partition_meta;
mod read_pool;
pub mod segment;
pub mod validate;
mod writeback;

pub use batch::{validate_records, BatchHeader, Compression, TimestampType, ValidatedBatches};
pub use builder::{BatchBuilder, Record};
pub use config::{CleanupPolicy, LogConfig};
pub use error::{RecordError, RecordErrorKind, StorageError};
pub use log::{AppendInfo, FetchSlice, PartitionLog};
pub use manager::{LogManager, TopicPartition};
pub use partition_meta::PendingMetaWrite;
pub use validate::{validate_produce, ProduceRules, TimestampWindow};

/// Result alias for storage operations.
pub type Result<T> = std::result::Result<T, StorageError>;
