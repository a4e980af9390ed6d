//! Following a partition: appending the leader's batches and truncating on divergence.

use std::sync::atomic::Ordering;

use fjord_storage::batch::ValidatedBatches;
use tracing::{debug, info};

use super::{markers_of, rebuild_state, track_batch, Partition};
use crate::producer::snapshot;

/// The leadership a follower fetch was sent under: the leader's id and epoch. Its answer
/// may change this replica only while that leadership lasts. A late answer from a deposed
/// leader, applied after this replica was elected or moved on, would put records (or a
/// truncation) of the old epoch after the start of the new one, and every follower would
/// then be told to truncate there again and again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerTerm {
    pub leader: i32,
    pub epoch: i32,
}
use crate::replica::ReplicaError;

impl Partition {
    /// Follows `leader` at `epoch`. Nothing is truncated here: the first fetch carries
    /// the last epoch this log has, and the leader answers with where it diverges.
    /// Whether this replica led until now (the caller logs the change).
    pub fn become_follower(&self, leader: i32, epoch: i32) -> bool {
        // Under the log lock, for the same reason as in `become_leader`. A deleted
        // partition has no log left to protect, so the flags are set regardless.
        let was_leader = fjord_storage::blocking::call(|| {
            let _guard = self.lock();
            self.leader_epoch.store(epoch, Ordering::Release);
            self.leader_id.store(leader, Ordering::Release);
            self.is_leader.swap(false, Ordering::AcqRel)
        });
        *self.leader_state.lock().unwrap_or_else(|p| p.into_inner()) = None;
        // Wake writes waiting for replication: they must fail now, not be answered by a
        // high watermark this replica learns from the new leader.
        self.hw_tx.send_modify(|_| {});
        if was_leader {
            debug!(partition = %self.tp, epoch, leader, "became follower");
        }
        was_leader
    }

    pub fn leader_id(&self) -> i32 {
        self.leader_id.load(Ordering::Acquire)
    }

    /// `(log end offset, epoch of the last batch)`: where the next fetch starts.
    pub fn fetch_position(&self) -> Result<(i64, i32), ReplicaError> {
        self.with_log(|log| Ok((log.log_end_offset(), log.latest_epoch().unwrap_or(-1))))
    }

    /// Whether this replica still follows as it did when a fetch was sent. Checked under
    /// the log lock, which leadership changes also take.
    fn still_following(&self, term: FollowerTerm) -> Result<(), ReplicaError> {
        if self.is_leader() || self.leader_id() != term.leader || self.leader_epoch() != term.epoch
        {
            return Err(ReplicaError::StaleFetch);
        }
        Ok(())
    }

    /// Appends batches fetched from the leader, keeping their offsets and epochs, and
    /// records producer state so idempotence holds if this replica becomes leader.
    pub fn append_as_follower(
        &self,
        term: FollowerTerm,
        records: &ValidatedBatches<'_>,
        now_ms: i64,
    ) -> Result<(), ReplicaError> {
        self.with_locked(|l| {
            self.still_following(term)?;
            l.log.append_as_follower(records, now_ms)?;
            for ((_, h), marker) in records.batches().iter().zip(markers_of(records)) {
                track_batch(&mut l.producers, &mut l.txns, h, marker);
            }
            self.log_end_offset
                .store(l.log.log_end_offset(), Ordering::Release);
            Ok(())
        })?;
        self.leo_tx.send_replace(self.log_end_offset());
        Ok(())
    }

    /// Removes everything at and after `offset` (a divergent suffix).
    pub fn truncate_to(&self, term: FollowerTerm, offset: i64) -> Result<(), ReplicaError> {
        self.with_locked(|l| {
            self.still_following(term)?;
            if l.log.truncate_to(offset)? {
                l.producers.truncate_to(offset);
                // A removed marker reopens its transaction: rebuild from what is left.
                l.txns = rebuild_state(&l.log).1;
                // A snapshot past the cut describes batches that are gone.
                snapshot::remove(l.log.dir());
                l.snapshot_offset = -1;
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
    pub fn restart_at(&self, term: FollowerTerm, offset: i64) -> Result<(), ReplicaError> {
        self.with_locked(|l| {
            self.still_following(term)?;
            l.log.truncate_fully_and_start_at(offset)?;
            l.producers = Default::default();
            l.txns = Default::default();
            snapshot::remove(l.log.dir());
            l.snapshot_offset = -1;
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
        term: FollowerTerm,
        leader_high_watermark: i64,
        leader_log_start: i64,
    ) -> Result<(), ReplicaError> {
        let hw = self.with_log(|log| {
            self.still_following(term)?;
            let hw = leader_high_watermark.min(log.log_end_offset());
            if leader_log_start > log.log_start_offset() && leader_log_start <= log.log_end_offset()
            {
                log.advance_log_start_offset(leader_log_start)?;
                self.log_start_offset
                    .store(log.log_start_offset(), Ordering::Release);
            }
            Ok(hw)
        })?;
        let prev = self.high_watermark.fetch_max(hw, Ordering::AcqRel);
        if hw > prev {
            self.hw_tx.send_replace(hw);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fjord_storage::{
        validate_records, BatchBuilder, LogConfig, PartitionLog, Record, TopicPartition,
    };

    use super::*;
    use crate::replica::partition::ReplicaSet;

    fn batch(base_offset: i64, epoch: i32) -> Vec<u8> {
        let mut b = BatchBuilder::new(base_offset, 0).leader_epoch(epoch);
        b.push(Record::new(None, Some(b"v".to_vec())));
        b.build()
    }

    fn follower_at(dir: &std::path::Path, leader: i32, epoch: i32) -> Partition {
        let log = PartitionLog::open(dir, LogConfig::default(), None).expect("open");
        let p = Partition::new(TopicPartition::new("t", 0), uuid::Uuid::nil(), log);
        p.become_follower(leader, epoch);
        p
    }

    #[test]
    fn an_answer_from_a_deposed_leader_changes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = follower_at(dir.path(), 2, 1);
        let old = FollowerTerm {
            leader: 2,
            epoch: 1,
        };
        let first = batch(0, 1);
        let records = validate_records(&first, usize::MAX).expect("valid");
        p.append_as_follower(old, &records, 0).expect("append");
        // Elected at epoch 2 while a fetch to the old leader was still out.
        let set = ReplicaSet {
            replicas: &[1, 2],
            isr: &[1, 2],
            partition_epoch: 3,
        };
        p.become_leader(1, 2, set, 0).expect("lead");
        let late = batch(1, 1);
        let records = validate_records(&late, usize::MAX).expect("valid");
        assert!(matches!(
            p.append_as_follower(old, &records, 0),
            Err(ReplicaError::StaleFetch)
        ));
        assert!(matches!(
            p.truncate_to(old, 0),
            Err(ReplicaError::StaleFetch)
        ));
        assert!(matches!(
            p.follow_leader_offsets(old, 1, 0),
            Err(ReplicaError::StaleFetch)
        ));
        assert_eq!(
            p.log_end_offset(),
            1,
            "the new epoch starts where election found the log"
        );
        assert_eq!(p.end_offset_for_epoch(1).expect("epochs"), (1, 1));
    }

    #[test]
    fn an_answer_from_the_previous_epoch_of_the_same_leader_is_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = follower_at(dir.path(), 2, 1);
        p.become_follower(2, 4);
        let late = batch(0, 1);
        let records = validate_records(&late, usize::MAX).expect("valid");
        let old = FollowerTerm {
            leader: 2,
            epoch: 1,
        };
        assert!(matches!(
            p.append_as_follower(old, &records, 0),
            Err(ReplicaError::StaleFetch)
        ));
        let current = FollowerTerm {
            leader: 2,
            epoch: 4,
        };
        p.append_as_follower(current, &records, 0)
            .expect("the current leadership's answer applies");
        assert_eq!(p.log_end_offset(), 1);
    }
}
