//! Leading a partition: follower positions, the high watermark and ISR changes.

use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tracing::debug;

use super::{LeaderState, Partition};
use crate::replica::{FetchResult, ReplicaError};

/// The partition's view of its replica set, from the metadata image.
#[derive(Clone, Debug)]
pub struct ReplicaSet<'a> {
    pub replicas: &'a [i32],
    pub isr: &'a [i32],
    pub partition_epoch: i32,
}

/// How waiting for a leader's append to reach the high watermark ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replication {
    /// The high watermark passed the append while this replica still led at its epoch.
    Replicated,
    /// This replica stopped leading at the append's epoch: the write may have been
    /// truncated, and a high watermark learned as a follower says nothing about it.
    LeadershipLost,
    TimedOut,
}

/// An ISR change a leader wants the controller to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

impl Partition {
    fn leader_state(&self) -> MutexGuard<'_, Option<LeaderState>> {
        self.leader_state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes (or keeps) leadership at `epoch` with this replica set; whether it took it
    /// now (the caller logs the change). Followers start unknown, so the high watermark
    /// only moves once every in-sync follower has fetched.
    pub fn become_leader(
        &self,
        node_id: i32,
        epoch: i32,
        set: ReplicaSet<'_>,
        now_ms: i64,
    ) -> Result<bool, ReplicaError> {
        let taking_over = self.leader_epoch() != epoch || !self.is_leader();
        if taking_over {
            // Under the log lock: a fetch answer from the previous leader checks these
            // flags under the same lock, so none of it lands after the new epoch starts.
            self.with_log(|log| {
                log.assign_epoch_start(epoch)?;
                *self.leader_state() = Some(LeaderState::new(
                    node_id,
                    set.replicas,
                    set.isr,
                    set.partition_epoch,
                    log.log_end_offset(),
                    now_ms,
                ));
                self.leader_epoch.store(epoch, Ordering::Release);
                self.leader_id.store(node_id, Ordering::Release);
                self.is_leader.store(true, Ordering::Release);
                Ok(())
            })?;
            debug!(partition = %self.tp, epoch, isr = ?set.isr, "became leader");
        } else if let Some(state) = self.leader_state().as_mut() {
            state.update_from_metadata(set.replicas, set.isr, set.partition_epoch, now_ms);
        }
        self.maybe_advance_high_watermark();
        Ok(taking_over)
    }

    /// Recomputes the high watermark from the ISR's log end offsets.
    pub fn maybe_advance_high_watermark(&self) {
        let leo = self.log_end_offset();
        let hw = match self.leader_state().as_ref() {
            Some(state) => state.high_watermark(leo),
            None => return,
        };
        if hw >= 0 {
            self.advance_high_watermark(hw.min(leo));
        }
    }

    /// Waits until the high watermark reaches `target` for an append made as leader at
    /// `epoch`. Losing leadership ends the wait at once: after it, this replica may truncate
    /// the append and later learn a high watermark past it from the new leader's log, so
    /// the high watermark alone would acknowledge a write that no longer exists.
    pub async fn await_replication(
        &self,
        target: i64,
        epoch: i32,
        timeout: Duration,
    ) -> Replication {
        let leading = || self.is_leader() && self.leader_epoch() == epoch;
        let mut rx = self.subscribe();
        // Reduced to `()` at once: `wait_for` returns a read guard on the watch, and
        // holding it while a caller takes partition locks could deadlock with an append.
        let _ = tokio::time::timeout(timeout, async {
            let _ = rx.wait_for(|hw| *hw >= target || !leading()).await;
        })
        .await;
        // The order matters: a follower stores its new epoch before it moves the high
        // watermark, so an unchanged epoch read after the high watermark proves that
        // value was this leader's.
        let hw = self.high_watermark();
        if !leading() {
            Replication::LeadershipLost
        } else if hw >= target {
            Replication::Replicated
        } else {
            Replication::TimedOut
        }
    }

    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.leo_tx.subscribe()
    }

    /// The current ISR, as this leader knows it.
    pub fn isr(&self) -> Vec<i32> {
        self.leader_state()
            .as_ref()
            .map(|s| s.isr().to_vec())
            .unwrap_or_default()
    }

    /// A follower fetched from `fetch_offset` (its log end offset).
    pub fn record_follower_fetch(
        &self,
        follower: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<(), ReplicaError> {
        {
            let mut guard = self.leader_state();
            let state = guard.as_mut().ok_or(ReplicaError::NotLeaderOrFollower)?;
            if !state.is_replica(follower) {
                return Err(ReplicaError::NotReplica(follower));
            }
            state.on_fetch(follower, fetch_offset, self.log_end_offset(), now_ms);
        }
        self.maybe_advance_high_watermark();
        Ok(())
    }

    /// Whole batches from `offset` up to the log end (followers read past the high
    /// watermark; that is how it advances).
    pub fn read_for_follower(
        &self,
        offset: i64,
        max_bytes: u64,
        min_one_batch: bool,
    ) -> Result<FetchResult, ReplicaError> {
        let range =
            self.with_log(|log| Ok(log.read(offset, max_bytes, i64::MAX, min_one_batch)?))?;
        let records = match range {
            Some(r) => r.read_shared()?,
            None => Bytes::new(),
        };
        Ok(FetchResult {
            records,
            high_watermark: self.high_watermark(),
            last_stable_offset: self.last_stable_offset(),
            log_start_offset: self.log_start_offset(),
            aborted: Vec::new(),
        })
    }

    /// The ISR change to request now, if any; it is marked in flight until
    /// [`isr_change_done`](Self::isr_change_done).
    pub fn take_isr_change(&self, now_ms: i64, lag_ms: i64) -> Option<IsrChange> {
        if !self.is_leader() {
            return None;
        }
        let hw = self.high_watermark();
        let mut guard = self.leader_state();
        let state = guard.as_mut()?;
        let new_isr = state.desired_isr(hw, now_ms, lag_ms)?;
        state.set_pending(Some(new_isr.clone()));
        Some(IsrChange {
            leader_epoch: self.leader_epoch(),
            partition_epoch: state.partition_epoch(),
            new_isr,
        })
    }

    /// The controller answered an ISR change: `Some` with the committed ISR, or `None`
    /// when it was refused (the metadata image brings the current state).
    pub fn isr_change_done(&self, committed: Option<(Vec<i32>, i32)>) {
        if let Some(state) = self.leader_state().as_mut() {
            match committed {
                Some((isr, partition_epoch)) => state.committed(isr, partition_epoch),
                None => state.refused(),
            }
        }
        self.maybe_advance_high_watermark();
    }

    /// Follower log end offsets as the leader last saw them.
    pub fn follower_positions(&self) -> Vec<(i32, i64)> {
        self.leader_state()
            .as_ref()
            .map(|s| s.follower_ends())
            .unwrap_or_default()
    }
}
