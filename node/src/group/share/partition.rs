//! One share-partition: the in-flight window a partition leader keeps for a
//! (share group, topic-partition). The module doc of `share` explains the model.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::{AcknowledgeType, AutoOffsetReset, SharePartitionConfig};

/// Where one in-flight offset stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordState {
    Available,
    /// Locked for `member_id` until `deadline_ms`.
    Acquired {
        member_id: Arc<str>,
        deadline_ms: i64,
    },
    Acknowledged,
    Archived,
}

impl RecordState {
    /// Kafka's ids for record states, which the persisted `DeliveryState` uses (where
    /// `Acquired` is never written).
    pub fn code(&self) -> i8 {
        match self {
            RecordState::Available => 0,
            RecordState::Acquired { .. } => 1,
            RecordState::Acknowledged => 2,
            RecordState::Archived => 4,
        }
    }

    /// Acknowledged or archived: the record is finished and lets the SPSO pass.
    pub fn is_finished(&self) -> bool {
        matches!(self, RecordState::Acknowledged | RecordState::Archived)
    }

    fn held_by(&self, member: &str) -> bool {
        matches!(self, RecordState::Acquired { member_id, .. } if &**member_id == member)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlightRecord {
    pub state: RecordState,
    /// How many times the record was handed out, the one in progress included.
    pub delivery_count: i16,
}

impl InFlightRecord {
    pub(super) fn available(delivery_count: i16) -> Self {
        InFlightRecord {
            state: RecordState::Available,
            delivery_count,
        }
    }
}

/// A run of offsets handed to a member, as ShareFetch's `AcquiredRecords` carries it.
/// The run may include offsets without a record (compacted, transaction markers); the
/// member acknowledges those as GAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcquiredRecords {
    pub first_offset: i64,
    pub last_offset: i64,
    pub delivery_count: i16,
}

/// One `AcknowledgementBatches` entry of ShareAcknowledge (or of ShareFetch): either a
/// single type for the whole range, or one type per offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcknowledgementBatch {
    pub first_offset: i64,
    pub last_offset: i64,
    pub acknowledge_types: Vec<i8>,
}

impl AcknowledgementBatch {
    pub fn new(first_offset: i64, last_offset: i64, ack: AcknowledgeType) -> Self {
        AcknowledgementBatch {
            first_offset,
            last_offset,
            acknowledge_types: vec![ack.code()],
        }
    }

    /// The type for `offset`, already checked to lie in the batch.
    fn type_at(&self, offset: i64, types: &[AcknowledgeType]) -> AcknowledgeType {
        if types.len() == 1 {
            types[0]
        } else {
            types[(offset - self.first_offset) as usize]
        }
    }
}

/// The share-partition state machine. Every offset of the window `[SPSO, SPEO)` has an
/// entry, so the window's width is its memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharePartition {
    pub(super) config: SharePartitionConfig,
    /// The SPSO.
    pub(super) start_offset: i64,
    /// Offsets `start_offset..start_offset + len`; the SPEO is one past the last.
    pub(super) records: VecDeque<InFlightRecord>,
    /// Bumped by an explicit reset of the start offset (AlterShareGroupOffsets), which
    /// fences writes of the state from before it.
    pub(super) state_epoch: i32,
    /// Bumped by every durable change, so two snapshots of one partition with the same
    /// epoch hold the same state and a writer can drop a write it already stored.
    pub(super) snapshot_epoch: i32,
}

impl SharePartition {
    /// A share-partition with no durable state yet: `share.auto.offset.reset` picks
    /// where it starts within the log `[log_start, log_end)`.
    pub fn new(
        config: SharePartitionConfig,
        reset: AutoOffsetReset,
        log_start: i64,
        log_end: i64,
    ) -> Self {
        let start_offset = match reset {
            AutoOffsetReset::Earliest => log_start,
            AutoOffsetReset::Latest => log_end.max(log_start),
        };
        SharePartition {
            config,
            start_offset,
            records: VecDeque::new(),
            state_epoch: 0,
            snapshot_epoch: 0,
        }
    }

    pub fn config(&self) -> &SharePartitionConfig {
        &self.config
    }

    /// A group config change. Records already out keep their delivery in progress even
    /// if the limit dropped below their count (KIP-1240); they are archived when it ends.
    pub fn set_config(&mut self, config: SharePartitionConfig) {
        self.config = config;
    }

    /// The SPSO.
    pub fn start_offset(&self) -> i64 {
        self.start_offset
    }

    /// The SPEO: one past the last offset ever handed out.
    pub fn end_offset(&self) -> i64 {
        self.start_offset + self.records.len() as i64
    }

    pub fn state_epoch(&self) -> i32 {
        self.state_epoch
    }

    pub fn snapshot_epoch(&self) -> i32 {
        self.snapshot_epoch
    }

    /// The width of the in-flight window.
    pub fn in_flight(&self) -> usize {
        self.records.len()
    }

    /// How many offsets are locked.
    pub fn acquired(&self) -> usize {
        self.records
            .iter()
            .filter(|r| matches!(r.state, RecordState::Acquired { .. }))
            .count()
    }

    /// The state of an in-flight offset; `None` outside the window (below the SPSO it
    /// is finished, at or above the SPEO never handed out).
    pub fn record(&self, offset: i64) -> Option<&InFlightRecord> {
        self.index(offset).and_then(|i| self.records.get(i))
    }

    /// The window, offset by offset.
    pub fn records(&self) -> impl Iterator<Item = (i64, &InFlightRecord)> {
        (self.start_offset..).zip(self.records.iter())
    }

    /// Where the next fetch should read the log from: the first available offset, else
    /// the SPEO.
    pub fn next_fetch_offset(&self) -> i64 {
        self.records()
            .find(|(_, r)| r.state == RecordState::Available)
            .map_or_else(|| self.end_offset(), |(o, _)| o)
    }

    /// When the earliest lock runs out, for the caller's timer.
    pub fn next_lock_deadline(&self) -> Option<i64> {
        self.records
            .iter()
            .filter_map(|r| match r.state {
                RecordState::Acquired { deadline_ms, .. } => Some(deadline_ms),
                _ => None,
            })
            .min()
    }

    /// Whether `member_id` holds any lock here.
    pub fn holds_locks(&self, member_id: &str) -> bool {
        self.records.iter().any(|r| r.state.held_by(member_id))
    }

    /// Hands `member_id` up to `max_records` available offsets among those the caller
    /// read from the log (`fetched`, up to the high watermark or the last stable
    /// offset): records to redeliver first, in offset order, then new ones past the
    /// SPEO while the window stays within `max.record.locks`. New offsets are only
    /// taken contiguously from the SPEO, so none is ever skipped. Returns the runs
    /// ShareFetch answers with, and whether the durable state changed (delivery counts
    /// did; persisting them before answering keeps the delivery limit exact across a
    /// failover).
    pub fn acquire(
        &mut self,
        member_id: &str,
        fetched: Range<i64>,
        max_records: usize,
        now_ms: i64,
    ) -> (Vec<AcquiredRecords>, bool) {
        let mut changed = self.expire(now_ms);
        let mut out: Vec<AcquiredRecords> = Vec::new();
        if max_records == 0 || fetched.is_empty() {
            return (out, self.touched(changed));
        }
        let member: Arc<str> = Arc::from(member_id);
        let deadline_ms = now_ms.saturating_add(self.config.record_lock_duration_ms);
        let mut taken = 0usize;
        let from = fetched.start.max(self.start_offset);
        let to = fetched.end.min(self.end_offset());
        let mut offset = from;
        while offset < to && taken < max_records {
            if let Some(r) = self.index(offset).and_then(|i| self.records.get_mut(i)) {
                if r.state == RecordState::Available {
                    r.delivery_count = r.delivery_count.saturating_add(1);
                    r.state = RecordState::Acquired {
                        member_id: member.clone(),
                        deadline_ms,
                    };
                    push_run(&mut out, offset, r.delivery_count);
                    taken += 1;
                }
            }
            offset += 1;
        }
        if fetched.start <= self.end_offset() {
            while self.end_offset() < fetched.end
                && taken < max_records
                && self.records.len() < self.config.max_record_locks
            {
                let offset = self.end_offset();
                self.records.push_back(InFlightRecord {
                    state: RecordState::Acquired {
                        member_id: member.clone(),
                        deadline_ms,
                    },
                    delivery_count: 1,
                });
                push_run(&mut out, offset, 1);
                taken += 1;
            }
        }
        changed |= taken > 0;
        (out, self.touched(changed))
    }

    /// Settles records `member_id` holds. As in Kafka the acknowledgement of a
    /// partition is all or nothing, with one error code: INVALID_REQUEST for malformed
    /// batches (out of order, overlapping, a wrong number of types, an unknown type) or
    /// offsets never handed out; INVALID_RECORD_STATE for an offset that is not locked
    /// by this member (never fetched by it, released, expired, or taken by another).
    /// Offsets below the SPSO are finished already and are skipped. Returns whether the
    /// durable state changed; an ACCEPT must be persisted before it is answered.
    pub fn acknowledge(
        &mut self,
        member_id: &str,
        batches: &[AcknowledgementBatch],
        now_ms: i64,
    ) -> Result<bool, ResponseError> {
        let types = validate_batches(batches)?;
        // A lock that ran out is gone whether or not the timer has fired yet.
        let expired = self.expire(now_ms);
        let end = self.end_offset();
        for batch in batches {
            for offset in batch.first_offset.max(self.start_offset)..=batch.last_offset {
                if offset >= end {
                    self.touched(expired);
                    return Err(ResponseError::InvalidRequest);
                }
                let held = self
                    .record(offset)
                    .is_some_and(|r| r.state.held_by(member_id));
                if !held {
                    self.touched(expired);
                    return Err(ResponseError::InvalidRecordState);
                }
            }
        }
        let limit = self.config.delivery_count_limit;
        let mut changed = expired;
        for (batch, types) in batches.iter().zip(&types) {
            for offset in batch.first_offset.max(self.start_offset)..=batch.last_offset {
                let ack = batch.type_at(offset, types);
                if let Some(r) = self.index(offset).and_then(|i| self.records.get_mut(i)) {
                    r.state = match ack {
                        AcknowledgeType::Accept => RecordState::Acknowledged,
                        AcknowledgeType::Release => after_delivery(r.delivery_count, limit),
                        AcknowledgeType::Reject | AcknowledgeType::Gap => RecordState::Archived,
                    };
                    changed = true;
                }
            }
        }
        self.advance_start();
        Ok(self.touched(changed))
    }

    /// The lock timer: records whose lock ran out at `now_ms` become available again,
    /// or archived once out of deliveries. Returns whether the state changed; it need
    /// not be persisted at once, since a restore of the last snapshot does the same.
    pub fn expire_locks(&mut self, now_ms: i64) -> bool {
        let changed = self.expire(now_ms);
        self.touched(changed)
    }

    /// A member left (or its share session ended): every record it holds goes back, as
    /// if its locks ran out. Like expiry, need not be persisted at once.
    pub fn release_member(&mut self, member_id: &str) -> bool {
        let limit = self.config.delivery_count_limit;
        let mut changed = false;
        for r in self.records.iter_mut() {
            if r.state.held_by(member_id) {
                r.state = after_delivery(r.delivery_count, limit);
                changed = true;
            }
        }
        self.advance_start();
        self.touched(changed)
    }

    /// The log start moved past the SPSO (DeleteRecords, retention): those records are
    /// gone, so they are finished, locked or not; an acknowledgement of them is skipped.
    pub fn advance_log_start(&mut self, log_start: i64) -> bool {
        if log_start <= self.start_offset {
            return false;
        }
        let gone = (log_start - self.start_offset).min(self.records.len() as i64);
        self.records.drain(..gone as usize);
        self.start_offset = log_start;
        self.advance_start();
        self.touched(true)
    }

    /// AlterShareGroupOffsets: start over at `start_offset` (which the caller has
    /// checked against the log), forgetting the window, in a new state epoch; the SPSO
    /// may move backward, to replay. Refused with NON_EMPTY_GROUP while any member
    /// holds a lock here (the coordinator refuses it earlier while the group has members
    /// at all).
    pub fn reset_start_offset(
        &mut self,
        start_offset: i64,
        now_ms: i64,
    ) -> Result<bool, ResponseError> {
        if start_offset < 0 {
            return Err(ResponseError::InvalidRequest);
        }
        self.expire(now_ms);
        if self
            .records
            .iter()
            .any(|r| matches!(r.state, RecordState::Acquired { .. }))
        {
            return Err(ResponseError::NonEmptyGroup);
        }
        self.records.clear();
        self.start_offset = start_offset;
        self.state_epoch = self.state_epoch.wrapping_add(1);
        Ok(self.touched(true))
    }

    fn index(&self, offset: i64) -> Option<usize> {
        (offset >= self.start_offset && offset < self.end_offset())
            .then(|| (offset - self.start_offset) as usize)
    }

    /// Ends every lock that ran out by `now_ms`; whether any did.
    fn expire(&mut self, now_ms: i64) -> bool {
        let limit = self.config.delivery_count_limit;
        let mut changed = false;
        for r in self.records.iter_mut() {
            if matches!(r.state, RecordState::Acquired { deadline_ms, .. } if deadline_ms <= now_ms)
            {
                r.state = after_delivery(r.delivery_count, limit);
                changed = true;
            }
        }
        if changed {
            self.advance_start();
        }
        changed
    }

    /// Moves the SPSO past the finished prefix of the window.
    pub(super) fn advance_start(&mut self) {
        while self.records.front().is_some_and(|r| r.state.is_finished()) {
            self.records.pop_front();
            self.start_offset += 1;
        }
    }

    fn touched(&mut self, changed: bool) -> bool {
        if changed {
            self.snapshot_epoch = self.snapshot_epoch.wrapping_add(1);
        }
        changed
    }
}

/// Where a record goes when a delivery ends without an ACCEPT or REJECT (a RELEASE, an
/// expired lock, a member leaving, a failover).
pub(super) fn after_delivery(delivery_count: i16, limit: i16) -> RecordState {
    if delivery_count >= limit {
        RecordState::Archived
    } else {
        RecordState::Available
    }
}

/// Extends the last run when `offset` continues it with the same delivery count.
fn push_run(out: &mut Vec<AcquiredRecords>, offset: i64, delivery_count: i16) {
    if let Some(last) = out.last_mut() {
        if last.last_offset + 1 == offset && last.delivery_count == delivery_count {
            last.last_offset = offset;
            return;
        }
    }
    out.push(AcquiredRecords {
        first_offset: offset,
        last_offset: offset,
        delivery_count,
    });
}

/// Kafka's checks of acknowledgement batches, before any state is looked at: ascending
/// and disjoint ranges, one type or one per offset, known types.
fn validate_batches(
    batches: &[AcknowledgementBatch],
) -> Result<Vec<Vec<AcknowledgeType>>, ResponseError> {
    let mut previous_last: Option<i64> = None;
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        if b.first_offset < 0 || b.last_offset < b.first_offset {
            return Err(ResponseError::InvalidRequest);
        }
        if previous_last.is_some_and(|last| b.first_offset <= last) {
            return Err(ResponseError::InvalidRequest);
        }
        previous_last = Some(b.last_offset);
        let width = (b.last_offset - b.first_offset).saturating_add(1);
        let n = b.acknowledge_types.len() as i64;
        if n != 1 && n != width {
            return Err(ResponseError::InvalidRequest);
        }
        let types = b
            .acknowledge_types
            .iter()
            .map(|&c| AcknowledgeType::from_code(c).ok_or(ResponseError::InvalidRequest))
            .collect::<Result<Vec<_>, _>>()?;
        out.push(types);
    }
    Ok(out)
}
