//! Per-partition log settings. Names and defaults follow Kafka's topic configs; the broker
//! resolves topic overrides and broker defaults into one of these.

use crate::batch::TimestampType;

/// `cleanup.policy`: delete old segments, compact by key, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy {
            delete: true,
            compact: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment once it would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once it is this old, even if small.
    pub segment_ms: i64,
    /// `segment.index.bytes`: roll when the offset index reaches this size.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`: bytes of log between two sparse index entries.
    pub index_interval_bytes: u64,
    /// `retention.ms`: delete segments whose newest record is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete old segments while the log is larger; -1 is unlimited.
    pub retention_bytes: i64,
    /// `flush.messages`: fsync after this many appended records.
    pub flush_messages: i64,
    /// `flush.ms`: fsync when the oldest unflushed append is this old.
    pub flush_ms: i64,
    /// `max.message.bytes`: the largest batch a producer may send.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// Fjord's node-wide `fsync.before.ack`: flush every append before it is acknowledged.
    pub fsync_before_ack: bool,
    /// `delete.retention.ms`: how long a tombstone outlives its compaction.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record older than this forces a compaction.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: compact once this share of the log is dirty.
    pub min_cleanable_dirty_ratio: f64,
}

pub const DEFAULT_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: -1,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            message_timestamp_type: TimestampType::CreateTime,
            cleanup_policy: CleanupPolicy::default(),
            fsync_before_ack: false,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}
