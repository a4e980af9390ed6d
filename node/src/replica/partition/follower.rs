//! Following a partition: appending the leader's batches and truncating on divergence.

use std::sync::atomic::Ordering;

use fjord_storage::batch::ValidatedBatches;
use tracing::info;

use super::{batch_meta, Partition};
use crate::replica::ReplicaError;

impl Partition {
    /// Follows `leader` at `epoch`. Nothing is truncated here: the first fetch carries
    /// the last epoch this log has, and the leader answers with where it diverges.
    pub fn become_follower(&self, leader: i32, epoch: i32) {
        self.leader_epoch.store(epoch, Ordering::Release);
        self.leader_id.store(leader, Ordering::Release);
        let was_leader = self.is_leader.swap(false, Ordering::AcqRel);
        *self.leader_state.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Wake writes waiting for replication: they must fail now, not be answered by a
        // high watermark this replica learns from the new leader.
        self.hw_tx.send_modify(|_| {});
        if was_leader {
            info!(partition = %self.tp, epoch, leader, "became follower");
        }
    }

    pub fn leader_id(&self) -> i32 {
        self.leader_id.load(Ordering::Acquire)
    }

    /// `(log end offset, epoch of the last batch)`: where the next fetch starts.
    pub fn fetch_position(&self) -> Result<(i64, i32), ReplicaError> {
        self.with_log(|log| Ok((log.log_end_offset(), log.latest_epoch().unwrap_or(-1))))
    }

    /// Appends batches fetched from the leader, keeping their offsets and epochs, and
    /// records producer state so idempotence holds if this replica becomes leader.
    pub fn append_as_follower(
        &self,
        records: &ValidatedBatches<'_>,
        now_ms: i64,
    ) -> Result<(), ReplicaError> {
        self.with_locked(|l| {
            l.log.append_as_follower(records, now_ms)?;
            for (_, h) in records.batches() {
                if h.has_producer_id() && !h.is_control() {
                    l.producers
                        .record(h.producer_id, h.producer_epoch, batch_meta(h));
                }
            }
            self.log_end_offset
                .store(l.log.log_end_offset(), Ordering::Release);
            Ok(())
        })?;
        self.leo_tx.send_replace(self.log_end_offset());
        Ok(())
    }

    /// Removes everything at and after `offset` (a divergent suffix).
    pub fn truncate_to(&self, offset: i64) -> Result<(), ReplicaError> {
        self.with_locked(|l| {
            if l.log.truncate_to(offset)? {
                l.producers.truncate_to(offset);
                info!(partition = %self.tp, offset, "truncated divergent log suffix");
            }
            self.log_end_offset
                .store(l.log.log_end_offset(), Ordering::Release);
            Ok(())
        })?;
        // A follower's high watermark can never exceed what it holds.
        self.high_watermark
            .fetch_min(self.log_end_offset(), Ordering::AcqRel);
        Ok(())
    }

    /// The leader no longer has our fetch offset (its log start moved past it): start
    /// over empty at the leader's log start.
    pub fn restart_at(&self, offset: i64) -> Result<(), ReplicaError> {
        self.with_locked(|l| {
            l.log.truncate_fully_and_start_at(offset)?;
            l.producers = Default::default();
            self.log_end_offset.store(offset, Ordering::Release);
            self.log_start_offset.store(offset, Ordering::Release);
            Ok(())
        })?;
        self.high_watermark.store(offset, Ordering::Release);
        info!(partition = %self.tp, offset, "follower log restarted at the leader's log start");
        Ok(())
    }

    /// Takes the leader's high watermark, bounded by what this replica holds, and
    /// follows its log start offset forward.
    pub fn follow_leader_offsets(
        &self,
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<(), ReplicaError> {
        let hw = leader_high_watermark.min(self.log_end_offset());
        let prev = self.high_watermark.fetch_max(hw, Ordering::AcqRel);
        if hw > prev {
            self.hw_tx.send_replace(hw);
        }
        if leader_log_start > self.log_start_offset() && leader_log_start <= self.log_end_offset() {
            self.with_log(|log| {
                log.advance_log_start_offset(leader_log_start)?;
                self.log_start_offset
                    .store(log.log_start_offset(), Ordering::Release);
                Ok(())
            })?;
        }
        Ok(())
    }
}
