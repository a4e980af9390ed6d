//! Rebuilding a shard's groups and offsets from its partition when leadership arrives.

use std::time::Duration;

use tracing::{debug, info, warn};

use super::commits::{resolve_marker, PendingTxnOffset};
use super::{Shard, ShardStatus, Tables};
use crate::group::offsets::CommittedOffset;
use crate::group::records::{decode_entries, Entry};
use crate::group::state::Group;
use crate::replica::IsolationLevel;

impl Shard {
    /// Reads the partition from its start and rebuilds groups and offsets, then starts
    /// answering. Returns false if leadership moved away meanwhile.
    pub async fn load(&self, now_ms: impl Fn() -> i64) -> bool {
        let started = std::time::Instant::now();
        let target = self.replica.log_end_offset();
        // Everything this leader has is what the group must see, but it may read only what
        // is replicated: wait for the followers in the ISR to confirm it.
        let mut hw = self.replica.subscribe();
        loop {
            if !self.owns_partition() || self.status() == ShardStatus::Closed {
                return false;
            }
            if *hw.borrow_and_update() >= target {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), hw.changed()).await;
        }
        let mut position = self.replica.log_start_offset();
        let mut loaded = 0usize;
        let mut skipped = 0usize;
        let mut tables = Tables::default();
        let now = now_ms();
        while position < target {
            if !self.owns_partition() {
                return false;
            }
            let read = self
                .replica
                .read(position, 4 << 20, IsolationLevel::ReadUncommitted, true);
            let bytes = match read {
                Ok(r) => r.records,
                Err(e) => {
                    warn!(partition = self.partition, error = %e, "reading group metadata failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let decoded = decode_entries(&bytes);
            let Some(next) = decoded.next_offset else {
                break;
            };
            loaded += decoded.entries.len();
            skipped += decoded.skipped;
            for (offset, entry) in decoded.entries {
                apply_entry(&mut tables, offset, entry, now);
            }
            position = next;
        }
        {
            let mut t = self.lock();
            if self.status() == ShardStatus::Closed {
                return false;
            }
            t.groups = tables.groups;
            t.offsets = tables.offsets;
            t.pending_txn = tables.pending_txn;
        }
        self.status.send_replace(ShardStatus::Active);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if loaded > 0 || skipped > 0 {
            info!(
                partition = self.partition,
                epoch = self.leader_epoch,
                records = loaded,
                skipped,
                elapsed_ms,
                "group coordinator loaded"
            );
        } else {
            debug!(
                partition = self.partition,
                epoch = self.leader_epoch,
                elapsed_ms,
                "group coordinator loaded (empty)"
            );
        }
        true
    }
}

fn apply_entry(t: &mut Tables, log_offset: i64, entry: Entry, now_ms: i64) {
    match entry {
        Entry::Offset {
            group,
            topic,
            partition,
            value,
            producer_id,
        } => {
            let value = value.map(|v| CommittedOffset {
                offset: v.offset,
                leader_epoch: v.leader_epoch,
                metadata: v.metadata,
                commit_timestamp_ms: v.commit_timestamp_ms,
                log_offset,
            });
            match producer_id {
                Some(pid) => t
                    .pending_txn
                    .entry(pid)
                    .or_default()
                    .push(PendingTxnOffset {
                        group,
                        topic,
                        partition,
                        log_offset,
                        value,
                    }),
                None => t
                    .offsets
                    .apply(&group, &topic, partition, log_offset, value),
            }
        }
        Entry::Marker {
            producer_id,
            commit,
        } => resolve_marker(t, producer_id, commit),
        Entry::Group { group, value } => match value {
            Some(snapshot) => {
                t.groups.insert(group, Group::restore(&snapshot, now_ms));
            }
            None => {
                t.groups.remove(&group);
            }
        },
    }
}
