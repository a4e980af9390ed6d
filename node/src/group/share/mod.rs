//! Share groups of KIP-932 ("queues for Kafka") as pure state machines: the
//! share-partition a partition leader keeps per (group, topic-partition), the simple
//! assignor, and the ShareGroupHeartbeat membership the group coordinator keeps.
//!
//! # The share-partition
//!
//! Members of a share group consume the same partitions together, so progress is not
//! one committed offset but a window of records in flight. The share-partition start
//! offset (SPSO) is the first offset not yet finished; everything below it is done. The
//! share-partition end offset (SPEO) is one past the last offset ever handed out; above
//! it lie records nobody has seen. Between them each offset is in one of four states:
//!
//! - `Available`: may be handed out (again). Its delivery count says how often it was.
//! - `Acquired`: handed to one member, locked until `group.share.record.lock.duration.ms`
//!   passes. Only that member may acknowledge it.
//! - `Acknowledged`: the member ACCEPTed it. Never handed out again.
//! - `Archived`: REJECTed, a GAP (no record at that offset), out of delivery attempts
//!   (`group.share.delivery.count.limit`), or below the log start. Never handed out again.
//!
//! The SPSO moves past the finished prefix; the window is at most
//! `group.share.partition.max.record.locks` offsets wide, so its memory is bounded and
//! a slow record at the SPSO holds back new fetches rather than letting state pile up.
//!
//! # What is durable, and why acquired records persist as available
//!
//! A share-partition's durable state (Kafka's `__share_group_state` snapshot) is the
//! SPSO, the state epoch and, for the window, runs of (state, delivery count). A lock
//! is not durable: it belongs to a leader's memory and to a member's session, and both
//! are gone after a failover. So an acquired record is written as `Available` with its
//! delivery count already counting the delivery in progress. A new leader then hands
//! it out again (at-least-once), while a record whose ACCEPT was written is
//! `Acknowledged` and is never redelivered. A restored `Available` record whose count
//! has reached the limit is archived, exactly as if its lock had expired; that keeps
//! delivery counts within the limit across failovers, as long as the acquisition was
//! written before the records were sent.
//!
//! No I/O: time and log offsets are arguments, and each call says whether the durable
//! state changed so the caller persists it. The share-partition is in `partition`, its
//! snapshots in `snapshot`, the assignor in `assignor`, membership in `group`.

pub mod assignor;
pub mod group;
pub mod partition;
pub mod snapshot;

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod tests;

pub use group::{
    ShareGroup, ShareGroupConfig, ShareGroupState, ShareHeartbeat, ShareHeartbeatAnswer,
    ShareMember,
};
pub use partition::{
    AcknowledgementBatch, AcquiredRecords, InFlightRecord, RecordState, SharePartition,
};
pub use snapshot::{ShareSnapshot, SnapshotError, StateBatch};

/// `group.share.partition.max.record.locks`: the widest the in-flight window may grow.
pub const DEFAULT_MAX_RECORD_LOCKS: usize = 2_000;
/// `group.share.delivery.count.limit`: deliveries before a record is archived.
pub const DEFAULT_DELIVERY_COUNT_LIMIT: i16 = 5;
/// `group.share.record.lock.duration.ms`: how long a member holds what it fetched.
pub const DEFAULT_RECORD_LOCK_DURATION_MS: i64 = 30_000;

/// The settings a share-partition obeys (broker defaults, or the group's
/// `share.*` overrides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharePartitionConfig {
    pub max_record_locks: usize,
    pub delivery_count_limit: i16,
    pub record_lock_duration_ms: i64,
}

impl Default for SharePartitionConfig {
    fn default() -> Self {
        SharePartitionConfig {
            max_record_locks: DEFAULT_MAX_RECORD_LOCKS,
            delivery_count_limit: DEFAULT_DELIVERY_COUNT_LIMIT,
            record_lock_duration_ms: DEFAULT_RECORD_LOCK_DURATION_MS,
        }
    }
}

/// `share.auto.offset.reset`: where a share-partition with no state starts.
/// (`by_duration:<ISO-8601>` needs a time index lookup by the caller, which then starts
/// the partition at the offset it found.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AutoOffsetReset {
    Earliest,
    /// Kafka's default: a new share group sees only records produced after it.
    #[default]
    Latest,
}

impl AutoOffsetReset {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "earliest" => Some(AutoOffsetReset::Earliest),
            "latest" => Some(AutoOffsetReset::Latest),
            _ => None,
        }
    }
}

/// How a member settles a record (ShareAcknowledge's and ShareFetch's
/// `AcknowledgeTypes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcknowledgeType {
    /// No record at this offset (compacted away, or a transaction marker).
    Gap,
    /// Processed: never deliver again.
    Accept,
    /// Not processed: deliver again, to anyone.
    Release,
    /// Unprocessable: never deliver again.
    Reject,
}

impl AcknowledgeType {
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            0 => Some(AcknowledgeType::Gap),
            1 => Some(AcknowledgeType::Accept),
            2 => Some(AcknowledgeType::Release),
            3 => Some(AcknowledgeType::Reject),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            AcknowledgeType::Gap => 0,
            AcknowledgeType::Accept => 1,
            AcknowledgeType::Release => 2,
            AcknowledgeType::Reject => 3,
        }
    }
}
