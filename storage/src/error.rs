use std::io;
use std::path::PathBuf;

/// Everything that can go wrong inside the log engine.
///
/// The broker maps these onto Kafka error codes at the protocol edge; the variants are
/// chosen so that mapping is one-to-one where Kafka has a matching code.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A batch a client may not write, or whose records are malformed where no single
    /// record can be blamed (Kafka's INVALID_RECORD).
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// Records that break the batch's or the topic's rules, by index in the batch
    /// (KIP-467). The whole batch is refused.
    #[error("{} of the batch's records are invalid; the first: {}", errors.len(), errors.first().map_or("", |e| e.message.as_str()))]
    RecordErrors {
        kind: RecordErrorKind,
        errors: Vec<RecordError>,
    },
    #[error("unsupported record batch magic {0} (only v2 is accepted)")]
    UnsupportedMagic(i8),
    #[error("record batch of {size} bytes exceeds max.message.bytes {limit}")]
    BatchTooLarge { size: usize, limit: usize },
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("follower batch at offset {got} does not continue the log at {expected}")]
    NonContiguousAppend { expected: i64, got: i64 },
    #[error("invalid configuration {key}={value}: {reason}")]
    InvalidConfig {
        key: String,
        value: String,
        reason: String,
    },
    #[error("log is closed")]
    Closed,
}

/// Which Kafka error a batch with [`StorageError::RecordErrors`] gets: INVALID_TIMESTAMP
/// if any record's timestamp is out of range, as Kafka answers, else INVALID_RECORD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordErrorKind {
    InvalidRecord,
    InvalidTimestamp,
}

/// One refused record: its index in the batch and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

impl StorageError {
    /// Wraps an I/O error with the path it happened on, so logs say which file failed.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }
}
