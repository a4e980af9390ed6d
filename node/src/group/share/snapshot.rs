//! The durable state of a share-partition, as Kafka's share coordinator keeps it in
//! `__share_group_state` (`ShareSnapshotValue`) and as ReadShareGroupState /
//! WriteShareGroupState carry it: the SPSO, epochs, and runs of in-flight offsets with
//! their delivery state and count.

use std::collections::VecDeque;

use super::partition::{after_delivery, InFlightRecord, RecordState, SharePartition};
use super::SharePartitionConfig;

/// Kafka's `DeliveryState` codes in state batches.
pub const DELIVERY_STATE_AVAILABLE: i8 = 0;
/// Never written (a lock is not durable), but accepted on read as `Available`.
pub const DELIVERY_STATE_ACQUIRED: i8 = 1;
pub const DELIVERY_STATE_ACKNOWLEDGED: i8 = 2;
pub const DELIVERY_STATE_ARCHIVED: i8 = 4;

/// The widest window a snapshot may restore: far above any record-lock limit, it
/// bounds what one corrupt or foreign snapshot can make a leader allocate.
pub const MAX_RESTORED_WINDOW: i64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateBatch {
    pub first_offset: i64,
    pub last_offset: i64,
    pub delivery_state: i8,
    pub delivery_count: i16,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShareSnapshot {
    pub snapshot_epoch: i32,
    pub state_epoch: i32,
    /// The SPSO; Kafka writes -1 for a share-partition not initialized yet.
    pub start_offset: i64,
    /// Ascending, disjoint runs at or above `start_offset`. Offsets of the window no run
    /// covers were never finished and restore as available, not yet delivered.
    pub state_batches: Vec<StateBatch>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("share-partition state is not initialized (start offset {0})")]
    Uninitialized(i64),
    #[error("state batch {first}-{last} is empty, out of order or overlaps the one before")]
    BatchOrder { first: i64, last: i64 },
    #[error("state batch {first}-{last} has unknown delivery state {state}")]
    UnknownDeliveryState { first: i64, last: i64, state: i8 },
    #[error("state batch {first}-{last} has negative delivery count {count}")]
    NegativeDeliveryCount { first: i64, last: i64, count: i16 },
    #[error("in-flight window of {0} offsets is wider than {MAX_RESTORED_WINDOW}")]
    WindowTooWide(i64),
}

impl SharePartition {
    /// The durable state. A locked record is written as available with its delivery
    /// count (which already counts the delivery in progress): a lock does not survive a
    /// failover, so the new leader delivers it again, and the restore archives it if
    /// that delivery was its last.
    pub fn snapshot(&self) -> ShareSnapshot {
        let mut batches: Vec<StateBatch> = Vec::new();
        for (offset, r) in self.records() {
            let state = match r.state {
                RecordState::Available | RecordState::Acquired { .. } => DELIVERY_STATE_AVAILABLE,
                RecordState::Acknowledged => DELIVERY_STATE_ACKNOWLEDGED,
                RecordState::Archived => DELIVERY_STATE_ARCHIVED,
            };
            match batches.last_mut() {
                Some(b)
                    if b.last_offset + 1 == offset
                        && b.delivery_state == state
                        && b.delivery_count == r.delivery_count =>
                {
                    b.last_offset = offset;
                }
                _ => batches.push(StateBatch {
                    first_offset: offset,
                    last_offset: offset,
                    delivery_state: state,
                    delivery_count: r.delivery_count,
                }),
            }
        }
        ShareSnapshot {
            snapshot_epoch: self.snapshot_epoch,
            state_epoch: self.state_epoch,
            start_offset: self.start_offset,
            state_batches: batches,
        }
    }

    /// A share-partition as a new leader loads it. No record is locked; an available
    /// record out of deliveries is archived, as its lock would have been on expiry. Runs
    /// reaching below the SPSO are cut there, since what lies below is finished.
    pub fn from_snapshot(
        snapshot: &ShareSnapshot,
        config: SharePartitionConfig,
    ) -> Result<SharePartition, SnapshotError> {
        let start = snapshot.start_offset;
        if start < 0 {
            return Err(SnapshotError::Uninitialized(start));
        }
        let mut previous_last: Option<i64> = None;
        for b in &snapshot.state_batches {
            let (first, last) = (b.first_offset, b.last_offset);
            if last < first || previous_last.is_some_and(|p| first <= p) {
                return Err(SnapshotError::BatchOrder { first, last });
            }
            previous_last = Some(last);
            if !matches!(
                b.delivery_state,
                DELIVERY_STATE_AVAILABLE
                    | DELIVERY_STATE_ACQUIRED
                    | DELIVERY_STATE_ACKNOWLEDGED
                    | DELIVERY_STATE_ARCHIVED
            ) {
                return Err(SnapshotError::UnknownDeliveryState {
                    first,
                    last,
                    state: b.delivery_state,
                });
            }
            if b.delivery_count < 0 {
                return Err(SnapshotError::NegativeDeliveryCount {
                    first,
                    last,
                    count: b.delivery_count,
                });
            }
        }
        let end = previous_last.map_or(start, |last| last.saturating_add(1).max(start));
        let width = end - start;
        if width > MAX_RESTORED_WINDOW {
            return Err(SnapshotError::WindowTooWide(width));
        }
        let limit = config.delivery_count_limit;
        let mut records: VecDeque<InFlightRecord> =
            (0..width).map(|_| InFlightRecord::available(0)).collect();
        for b in &snapshot.state_batches {
            let state = match b.delivery_state {
                DELIVERY_STATE_ACKNOWLEDGED => RecordState::Acknowledged,
                DELIVERY_STATE_ARCHIVED => RecordState::Archived,
                _ => after_delivery(b.delivery_count, limit),
            };
            for offset in b.first_offset.max(start)..=b.last_offset {
                if let Some(r) = records.get_mut((offset - start) as usize) {
                    *r = InFlightRecord {
                        state: state.clone(),
                        delivery_count: b.delivery_count,
                    };
                }
            }
        }
        let mut partition = SharePartition {
            config,
            start_offset: start,
            records,
            state_epoch: snapshot.state_epoch,
            snapshot_epoch: snapshot.snapshot_epoch,
        };
        partition.advance_start();
        Ok(partition)
    }
}
