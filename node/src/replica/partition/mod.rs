use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use fjord_storage::batch::ValidatedBatches;
use fjord_storage::blocking;
use fjord_storage::{
    AppendInfo, LogConfig, PartitionLog, PendingMetaWrite, StorageError, TopicPartition,
};
use tokio::sync::watch;
use tracing::warn;
use uuid::Uuid;

mod follower;
mod leader;
#[cfg(test)]
mod txn_tests;

pub use follower::FollowerTerm;
pub use leader::{ReplicaSet, Replication};

use super::leader_state::LeaderState;
use super::ReplicaError;

use crate::producer::snapshot;
use crate::producer::{
    AbortedTxn, BatchMeta, ProducerStateTable, ProducerSummary, SequenceCheck, TxnIndex,
};
use fjord_storage::control::{marker_batch, ControlType, Marker};

/// What the partition lock guards: the log and the producer and transaction state
/// derived from it, which must change together.
struct Locked {
    log: PartitionLog,
    producers: ProducerStateTable,
    txns: TxnIndex,
    /// The log end offset of the last producer-state snapshot (-1: none usable).
    snapshot_offset: i64,
    snapshot_ms: i64,
}

/// How often, at most, a partition whose log moved writes a producer-state snapshot.
const SNAPSHOT_INTERVAL_MS: i64 = 30_000;

/// What one housekeeping pass does.
#[derive(Clone, Copy, Debug)]
pub struct Chores {
    pub now_ms: i64,
    /// `log.retention.check.interval.ms` has passed since retention was last enforced.
    pub retention_due: bool,
    /// `replica.high.watermark.checkpoint.interval.ms` has passed since the last
    /// checkpoint. Each one is an fsync per partition, which on a shared disk lands in
    /// every producer's tail latency, so it is not done on every pass (as in Kafka).
    pub checkpoint_due: bool,
    pub producer_expiration_ms: i64,
}

fn batch_meta(h: &fjord_storage::BatchHeader) -> BatchMeta {
    BatchMeta {
        first_seq: h.base_sequence,
        last_seq: crate::producer::last_seq_of(h.base_sequence, h.records_count),
        first_offset: h.base_offset,
        last_offset: h.last_offset(),
        timestamp: h.max_timestamp,
    }
}

/// Applies one appended batch to the producer and transaction state. `marker` is the
/// kind of a control batch (read from its record).
fn track_batch(
    producers: &mut ProducerStateTable,
    txns: &mut TxnIndex,
    h: &fjord_storage::BatchHeader,
    marker: Option<Marker>,
) {
    if !h.has_producer_id() {
        return;
    }
    if h.is_control() {
        producers.record_marker(
            h.producer_id,
            h.producer_epoch,
            h.max_timestamp,
            marker.map(|m| m.coordinator_epoch),
        );
        if let Some(m) = marker {
            txns.on_marker(h.producer_id, m.kind, h.base_offset);
        }
        return;
    }
    if h.base_sequence >= 0 {
        producers.record(h.producer_id, h.producer_epoch, batch_meta(h));
    } else {
        producers.record_marker(h.producer_id, h.producer_epoch, h.max_timestamp, None);
    }
    if h.is_transactional() {
        txns.on_data(h.producer_id, h.base_offset);
    }
}

/// Rebuilds producer and transaction state by reading every batch header in the log
/// (and the record of each transaction marker).
fn rebuild_state(log: &PartitionLog) -> (ProducerStateTable, TxnIndex) {
    replay(
        log,
        log.log_start_offset(),
        ProducerStateTable::default(),
        TxnIndex::default(),
    )
}

/// Applies the batches from `from` on to the given state.
fn replay(
    log: &PartitionLog,
    from: i64,
    mut producers: ProducerStateTable,
    mut txns: TxnIndex,
) -> (ProducerStateTable, TxnIndex) {
    let result = log.for_each_batch_and_marker(from, |h, marker| {
        track_batch(&mut producers, &mut txns, h, marker);
    });
    if let Err(e) = result {
        warn!(dir = %log.dir().display(), error = %e, "could not rebuild producer state");
    }
    (producers, txns)
}

/// The state when a log opens: from its snapshot and the batches after it when the
/// snapshot is usable, else from the whole log.
fn load_state(log: &PartitionLog) -> (ProducerStateTable, TxnIndex, i64) {
    match snapshot::read(log.dir()) {
        Some((offset, producers, txns))
            if (log.log_start_offset()..=log.log_end_offset()).contains(&offset) =>
        {
            let (p, mut t) = replay(log, offset, producers, txns);
            // The snapshot may predate a compaction that removed abort markers.
            t.retain_aborted(|marker| abort_marker_at(log, marker));
            (p, t, offset)
        }
        _ => {
            // An unusable snapshot must not be taken up later, when the log has grown
            // past its offset again with other batches.
            snapshot::remove(log.dir());
            let (p, t) = rebuild_state(log);
            (p, t, -1)
        }
    }
}

/// Whether the log still holds a control batch at `offset` (an abort marker the index
/// names). Unreadable counts as present: dropping a live entry would expose aborted data.
fn abort_marker_at(log: &PartitionLog, offset: i64) -> bool {
    let range = match log.read(offset, 1, i64::MAX, true) {
        Ok(Some(range)) => range,
        Ok(None) => return false,
        Err(_) => return true,
    };
    let Ok(bytes) = range.read() else {
        return true;
    };
    match fjord_storage::batch::BatchIter::new(&bytes).next() {
        Some(Ok((_, h))) => h.base_offset <= offset && offset < h.next_offset() && h.is_control(),
        Some(Err(_)) => true,
        None => false,
    }
}

/// Writes the producer-state snapshot as of the log end. A failure only costs a longer
/// rebuild at the next open.
fn write_snapshot(locked: &mut Locked, now_ms: i64) {
    let offset = locked.log.log_end_offset();
    match snapshot::write(locked.log.dir(), offset, &locked.producers, &locked.txns) {
        Ok(()) => {
            locked.snapshot_offset = offset;
            locked.snapshot_ms = now_ms;
        }
        Err(e) => {
            warn!(dir = %locked.log.dir().display(), error = %e, "writing the producer-state snapshot failed")
        }
    }
}

/// The transaction marker of each control batch among `records`, in batch order (None
/// for data).
fn markers_of(records: &ValidatedBatches<'_>) -> Vec<Option<Marker>> {
    records
        .batches()
        .iter()
        .map(|(position, h)| {
            if !h.is_control() {
                return None;
            }
            let bytes = &records.bytes()[*position..*position + h.total_size()];
            fjord_storage::control::marker(bytes).ok().flatten()
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsolationLevel {
    ReadUncommitted,
    ReadCommitted,
}

/// The answer to a read.
#[derive(Debug)]
pub struct FetchResult {
    /// Whole batches, possibly empty (never absent: librdkafka rejects a null record set).
    pub records: Bytes,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// For read_committed: aborted transactions overlapping the records returned.
    pub aborted: Vec<AbortedTxn>,
}

/// A leader's append: where it landed, and the leader epoch it was written under (what
/// [`Partition::await_replication`] needs to tell this leadership from a later one).
#[derive(Debug)]
pub struct LeaderAppend {
    pub info: AppendInfo,
    pub leader_epoch: i32,
}

/// One partition replica on this broker.
///
/// The log sits behind a mutex that is held only to append or to plan a read; the bytes
/// of a read are copied from the segment file after the lock is released. Offsets that
/// readers poll are mirrored in atomics so a fetch can decide "nothing new" without the
/// lock.
pub struct Partition {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    log: Mutex<Option<Locked>>,
    is_leader: AtomicBool,
    leader_epoch: AtomicI32,
    high_watermark: AtomicI64,
    log_end_offset: AtomicI64,
    log_start_offset: AtomicI64,
    max_message_bytes: AtomicI64,
    timestamp_bounds: Mutex<(i64, i64)>,
    /// Bumped with the high watermark; long-polling fetches wait on it.
    hw_tx: watch::Sender<i64>,
    /// Bumped with the log end offset; long-polling follower fetches wait on it.
    leo_tx: watch::Sender<i64>,
    /// The leader this replica follows (-1 when it leads or there is none).
    leader_id: AtomicI32,
    /// Follower positions and the ISR, while this replica leads.
    leader_state: Mutex<Option<LeaderState>>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("tp", &self.tp)
            .field("leader_epoch", &self.leader_epoch())
            .field("high_watermark", &self.high_watermark())
            .finish()
    }
}

impl Partition {
    pub fn new(tp: TopicPartition, topic_id: Uuid, log: PartitionLog) -> Self {
        let leo = log.log_end_offset();
        let lso = log.log_start_offset();
        let hw = log.high_watermark_checkpoint().clamp(lso, leo);
        let max = log.config().max_message_bytes as i64;
        let (producers, txns, snapshot_offset) = load_state(&log);
        Partition {
            tp,
            topic_id,
            log: Mutex::new(Some(Locked {
                producers,
                txns,
                log,
                snapshot_offset,
                snapshot_ms: 0,
            })),
            is_leader: AtomicBool::new(false),
            leader_epoch: AtomicI32::new(-1),
            high_watermark: AtomicI64::new(hw),
            log_end_offset: AtomicI64::new(leo),
            log_start_offset: AtomicI64::new(lso),
            max_message_bytes: AtomicI64::new(max),
            timestamp_bounds: Mutex::new((i64::MAX, i64::MAX)),
            hw_tx: watch::channel(hw).0,
            leo_tx: watch::channel(leo).0,
            leader_id: AtomicI32::new(-1),
            leader_state: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Locked>> {
        // A panic while holding the lock cannot leave the log half-written (appends are
        // all-or-nothing), so a poisoned lock is still safe to use.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the log under the partition lock. Both may block on the disk (the
    /// lock because another call holds it while writing), so this is a disk call.
    fn with_locked<T>(
        &self,
        f: impl FnOnce(&mut Locked) -> Result<T, ReplicaError>,
    ) -> Result<T, ReplicaError> {
        blocking::call(|| {
            let mut guard = self.lock();
            match guard.as_mut() {
                Some(locked) => f(locked),
                None => Err(ReplicaError::UnknownTopicOrPartition),
            }
        })
    }

    fn with_log<T>(
        &self,
        f: impl FnOnce(&mut PartitionLog) -> Result<T, ReplicaError>,
    ) -> Result<T, ReplicaError> {
        self.with_locked(|l| f(&mut l.log))
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }
    /// Bytes of segment files on disk (DescribeLogDirs).
    pub fn size_bytes(&self) -> u64 {
        self.with_log(|l| Ok(l.size_bytes())).unwrap_or(0)
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }
    /// The high watermark, held back by the first batch of every transaction whose
    /// outcome is not yet decided and replicated.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.with_locked(|l| Ok(l.txns.last_stable_offset(hw)))
            .unwrap_or(hw)
    }

    /// KIP-890: the coordinator confirmed that `producer_id` at `epoch` added this
    /// partition to its transaction, so its first transactional batch may be written.
    pub fn verify_transaction(&self, producer_id: i64, epoch: i16) -> Result<(), ReplicaError> {
        self.with_locked(|l| {
            l.txns.verify(producer_id, epoch);
            Ok(())
        })
    }

    /// Whether `producer_id` may write transactional batches here without asking the
    /// coordinator first.
    pub fn transaction_open_or_verified(&self, producer_id: i64, epoch: i16) -> bool {
        self.with_locked(|l| Ok(l.txns.may_write(producer_id, epoch)))
            .unwrap_or(false)
    }

    /// Open transactions here: (producer id, first offset).
    pub fn ongoing_transactions(&self) -> Vec<(i64, i64)> {
        self.with_locked(|l| Ok(l.txns.ongoing().collect()))
            .unwrap_or_default()
    }

    /// Every producer this partition remembers (DescribeProducers).
    pub fn describe_producers(&self) -> Vec<ProducerSummary> {
        self.with_locked(|l| Ok(l.producers.describe()))
            .unwrap_or_default()
    }
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.load(Ordering::Relaxed).max(0) as usize
    }
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// Applies new topic settings.
    pub fn update_config(&self, config: LogConfig, timestamp_bounds: (i64, i64)) {
        self.max_message_bytes
            .store(config.max_message_bytes as i64, Ordering::Relaxed);
        *self
            .timestamp_bounds
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = timestamp_bounds;
        let _ = self.with_log(|log| {
            log.set_config(config);
            Ok(())
        });
    }

    /// Moves the high watermark forward (never back) and wakes waiting fetches.
    pub(super) fn advance_high_watermark(&self, hw: i64) {
        let prev = self.high_watermark.fetch_max(hw, Ordering::AcqRel);
        if hw > prev {
            self.hw_tx.send_replace(hw);
        }
    }

    /// The window producers' CreateTime timestamps must fall in
    /// (`message.timestamp.before/after.max.ms`), or `None` when both are unbounded.
    pub fn timestamp_window(&self, now_ms: i64) -> Option<fjord_storage::TimestampWindow> {
        let (before_ms, after_ms) = *self
            .timestamp_bounds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (before_ms != i64::MAX || after_ms != i64::MAX).then_some(fjord_storage::TimestampWindow {
            now_ms,
            before_ms,
            after_ms,
        })
    }

    /// Appends producer batches on the leader. `single_replica_isr` tells whether the high
    /// watermark may move with the log end at once.
    pub fn append_as_leader(
        &self,
        records: &ValidatedBatches<'_>,
        now_ms: i64,
    ) -> Result<LeaderAppend, ReplicaError> {
        if !self.is_leader() {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        let appended = self.with_locked(|l| {
            if !self.is_leader() {
                return Err(ReplicaError::NotLeaderOrFollower);
            }
            let leader_epoch = self.leader_epoch();
            // Idempotence: the sequence check and the append happen under one lock, so
            // concurrent retries of one batch cannot both be written.
            let mut duplicate = None;
            for (_, h) in records.batches() {
                // Coordinator-written batches (transactional offset commits) carry no
                // sequence: there is nothing to deduplicate.
                if !h.has_producer_id() || h.base_sequence < 0 {
                    continue;
                }
                let meta = batch_meta(h);
                match l.producers.check(
                    h.producer_id,
                    h.producer_epoch,
                    meta.first_seq,
                    meta.last_seq,
                )? {
                    SequenceCheck::Append => {}
                    SequenceCheck::Duplicate {
                        first_offset,
                        last_offset,
                    } => {
                        if records.batches().len() != 1 {
                            return Err(ReplicaError::Producer(
                                crate::producer::ProducerError::OutOfOrderSequence {
                                    expected: meta.last_seq,
                                    got: meta.first_seq,
                                },
                            ));
                        }
                        duplicate = Some((first_offset, last_offset));
                    }
                }
            }
            for (_, h) in records.batches() {
                if h.is_transactional() && !l.txns.may_write(h.producer_id, h.producer_epoch) {
                    return Err(ReplicaError::TransactionNotVerified(h.producer_id));
                }
            }
            if let Some((first_offset, last_offset)) = duplicate {
                let info = AppendInfo {
                    first_offset,
                    last_offset,
                    max_timestamp: -1,
                    offset_of_max_timestamp: -1,
                    log_append_time: None,
                    records: 0,
                    bytes: 0,
                };
                return Ok(LeaderAppend { info, leader_epoch });
            }
            let info = l.log.append_as_leader(records, leader_epoch, now_ms)?;
            let mut next = info.first_offset;
            for (_, h) in records.batches() {
                let mut placed = *h;
                placed.base_offset = next;
                track_batch(&mut l.producers, &mut l.txns, &placed, None);
                next += i64::from(h.last_offset_delta) + 1;
            }
            self.log_end_offset
                .store(l.log.log_end_offset(), Ordering::Release);
            Ok(LeaderAppend { info, leader_epoch })
        })?;
        self.leo_tx.send_replace(self.log_end_offset());
        self.maybe_advance_high_watermark();
        Ok(appended)
    }

    /// Writes a transaction marker for `producer_id` (the coordinator's WriteTxnMarkers).
    /// A marker from an older epoch than this partition knows is refused: the producer
    /// was fenced and a newer coordinator decision already ended its transaction. So is
    /// one from an older coordinator than the last marker's (see `check_marker`).
    pub fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        kind: ControlType,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<LeaderAppend, ReplicaError> {
        let batch = marker_batch(producer_id, producer_epoch, kind, coordinator_epoch, now_ms);
        let validated = fjord_storage::batch::validate_records(&batch, usize::MAX)?;
        let appended = self.with_locked(|l| {
            if !self.is_leader() {
                return Err(ReplicaError::NotLeaderOrFollower);
            }
            l.producers
                .check_marker(producer_id, producer_epoch, coordinator_epoch)?;
            let leader_epoch = self.leader_epoch();
            let info = l.log.append_as_leader(&validated, leader_epoch, now_ms)?;
            // The same bookkeeping as a marker replicated to a follower.
            if let Some((_, h)) = validated.batches().first() {
                let mut placed = *h;
                placed.base_offset = info.first_offset;
                let marker = Marker {
                    kind,
                    coordinator_epoch,
                };
                track_batch(&mut l.producers, &mut l.txns, &placed, Some(marker));
            }
            self.log_end_offset
                .store(l.log.log_end_offset(), Ordering::Release);
            Ok(LeaderAppend { info, leader_epoch })
        })?;
        self.leo_tx.send_replace(self.log_end_offset());
        self.maybe_advance_high_watermark();
        Ok(appended)
    }

    /// Reads whole batches from `offset`, up to the high watermark (or the last stable
    /// offset for read_committed).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: u64,
        isolation: IsolationLevel,
        min_one: bool,
    ) -> Result<FetchResult, ReplicaError> {
        let hw = self.high_watermark();
        let mut lso = hw;
        let mut aborted = Vec::new();
        let range = self.with_locked(|l| {
            lso = l.txns.last_stable_offset(hw);
            let limit = match isolation {
                IsolationLevel::ReadUncommitted => hw,
                IsolationLevel::ReadCommitted => {
                    aborted = l.txns.aborted_between(offset, lso);
                    lso
                }
            };
            let log = &mut l.log;
            // Between the high watermark and the log end is not an error: the data is
            // there but not yet committed, so the answer is simply empty.
            // A follower behind the consumer (KIP-392 reads) has not got the offset yet:
            // retriable, unlike a real out-of-range offset.
            if offset > log.log_end_offset() && !self.is_leader() {
                return Err(ReplicaError::OffsetNotAvailable(offset));
            }
            if offset < log.log_start_offset() || offset > log.log_end_offset() {
                return Err(ReplicaError::OffsetOutOfRange {
                    offset,
                    log_start_offset: log.log_start_offset(),
                    high_watermark: hw,
                });
            }
            Ok(log.read(offset, max_bytes, limit, min_one)?)
        })?;
        let records = match range {
            Some(r) => blocking::call(|| r.read_shared())?,
            None => Bytes::new(),
        };
        Ok(FetchResult {
            records,
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: self.log_start_offset(),
            aborted,
        })
    }

    /// A compaction of this replica's log, if one is due (see `fjord_storage::cleaner`).
    pub fn plan_compaction(
        &self,
        now_ms: i64,
        dedupe_buffer_bytes: usize,
    ) -> Option<fjord_storage::cleaner::CompactionJob> {
        let hw = self.high_watermark();
        self.with_log(|log| Ok(log.plan_compaction(now_ms, hw, dedupe_buffer_bytes)))
            .ok()
            .flatten()
    }

    /// Swaps a finished compaction in; false if the log moved underneath it.
    pub fn finish_compaction(
        &self,
        output: fjord_storage::cleaner::CompactionOutput,
        now_ms: i64,
    ) -> Result<bool, ReplicaError> {
        let removed: std::collections::HashSet<i64> =
            output.removed_abort_markers.iter().copied().collect();
        // One step under the lock: no fetch may see the index entry of an abort marker
        // that is gone (see `CompactionOutput::removed_abort_markers`).
        self.with_locked(|l| {
            let swapped = l.log.finish_compaction(output, now_ms)?;
            if swapped && !removed.is_empty() {
                l.txns.retain_aborted(|marker| !removed.contains(&marker));
            }
            Ok(swapped)
        })
    }

    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, ReplicaError> {
        let hw = self.high_watermark();
        let found = self.with_log(|log| Ok(log.offset_for_timestamp(ts)?))?;
        Ok(found.filter(|(offset, _)| *offset < hw))
    }

    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, ReplicaError> {
        let hw = self.high_watermark();
        let found = self.with_log(|log| Ok(log.max_timestamp_and_offset()?))?;
        Ok(found.filter(|(_, offset)| *offset < hw))
    }

    pub fn end_offset_for_epoch(&self, epoch: i32) -> Result<(i32, i64), ReplicaError> {
        self.with_log(|log| Ok(log.end_offset_for_epoch(epoch)))
    }

    /// The leader epoch under which `offset` was written (the latest epoch starting at
    /// or before it), or -1 when unknown.
    pub fn epoch_for_offset(&self, offset: i64) -> i32 {
        self.with_log(|log| {
            Ok(log
                .epoch_cache()
                .entries()
                .iter()
                .rev()
                .find(|e| e.start_offset <= offset)
                .map(|e| e.epoch)
                .unwrap_or(-1))
        })
        .unwrap_or(-1)
    }

    /// Checks a client's view of the leader epoch: older is fenced, newer is unknown here.
    pub fn check_leader_epoch(&self, requested: i32) -> Result<(), ReplicaError> {
        let current = self.leader_epoch();
        if requested < 0 || requested == current {
            Ok(())
        } else if requested < current {
            Err(ReplicaError::FencedLeaderEpoch {
                request: requested,
                current,
            })
        } else {
            Err(ReplicaError::UnknownLeaderEpoch {
                request: requested,
                current,
            })
        }
    }

    /// DeleteRecords: moves the log start offset to `offset` (at most the high watermark).
    /// Returns the new low watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, ReplicaError> {
        if !self.is_leader() {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        self.with_log(|log| {
            if target < 0 || target > hw {
                return Err(ReplicaError::OffsetOutOfRange {
                    offset: target,
                    log_start_offset: log.log_start_offset(),
                    high_watermark: hw,
                });
            }
            log.advance_log_start_offset(target)?;
            self.log_start_offset
                .store(log.log_start_offset(), Ordering::Release);
            Ok(log.log_start_offset())
        })
    }

    /// Periodic housekeeping: retention, time-based flush and the high-watermark
    /// checkpoint. Errors are logged, not returned: one bad disk must not stop the others.
    pub fn housekeeping(&self, chores: &Chores) {
        let now_ms = chores.now_ms;
        let hw = self.high_watermark();
        let result: Result<(), StorageError> = (|| {
            let mut guard = self.lock();
            let Some(locked) = guard.as_mut() else {
                return Ok(None);
            };
            locked
                .producers
                .expire(now_ms, chores.producer_expiration_ms);
            locked.txns.prune(hw, locked.log.log_start_offset());
            if locked.log.log_end_offset() != locked.snapshot_offset
                && now_ms - locked.snapshot_ms >= SNAPSHOT_INTERVAL_MS
            {
                write_snapshot(locked, now_ms);
            }
            let log = &mut locked.log;
            if chores.retention_due {
                log.enforce_retention(now_ms, hw)?;
                self.log_start_offset
                    .store(log.log_start_offset(), Ordering::Release);
            }
            log.maybe_flush(now_ms)?;
            if !chores.checkpoint_due {
                return Ok(None);
            }
            log.prepare_high_watermark_checkpoint(hw)
        })()
        // The checkpoint's fsync runs after the lock is released, so appends go on.
        .and_then(|pending| pending.map_or(Ok(()), PendingMetaWrite::run));
        if let Err(e) = result {
            warn!(partition = %self.tp, error = %e, "partition housekeeping failed");
        }
    }

    /// Flushes and closes the log (clean shutdown). Later calls see an unknown partition.
    pub fn close(&self) {
        let hw = self.high_watermark();
        blocking::call(|| {
            let Some(mut locked) = self.lock().take() else {
                return;
            };
            if locked.log.log_end_offset() != locked.snapshot_offset {
                write_snapshot(&mut locked, 0);
            }
            let mut log = locked.log;
            let result = log.checkpoint_high_watermark(hw).and_then(|()| log.close());
            if let Err(e) = result {
                warn!(partition = %self.tp, error = %e, "closing log failed");
            }
        });
    }

    /// Closes the log and deletes its directory.
    pub fn delete(&self) {
        self.is_leader.store(false, Ordering::Release);
        self.hw_tx.send_modify(|_| {});
        blocking::call(|| {
            if let Some(Locked { log, .. }) = self.lock().take() {
                if let Err(e) = log.delete() {
                    warn!(partition = %self.tp, error = %e, "deleting log failed");
                }
            }
        });
    }
}
