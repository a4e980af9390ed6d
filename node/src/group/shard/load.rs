//! Rebuilding a shard's groups and offsets from its partition when leadership arrives.

use tracing::{debug, info};

use super::commits::{apply_offset, resolve_marker, PendingTxnOffset};
use super::{Shard, ShardStatus, Tables};
use crate::group::offsets::CommittedOffset;
use crate::group::records::{decode_entries, Entry, StoredGroup};
use crate::group::state::Group;

impl Shard {
    /// Reads the partition from its start and rebuilds groups and offsets, then starts
    /// answering. Returns false if leadership moved away meanwhile.
    pub async fn load(&self, now_ms: impl Fn() -> i64) -> bool {
        let started = std::time::Instant::now();
        let mut loaded = 0usize;
        let mut skipped = 0usize;
        let mut tables = Tables::default();
        // Member deadlines restart from when reading begins, not from before the wait
        // for replication that precedes it.
        let mut now = None;
        let replayed = self.core.replay("group metadata", |bytes| {
            let now = *now.get_or_insert_with(&now_ms);
            let decoded = decode_entries(bytes);
            let next = decoded.next_offset?;
            loaded += decoded.entries.len();
            skipped += decoded.skipped;
            for (offset, entry) in decoded.entries {
                apply_entry(&mut tables, offset, entry, now);
            }
            Some(next)
        });
        if !replayed.await {
            return false;
        }
        {
            let mut t = self.lock();
            if self.core.status() == ShardStatus::Closed {
                return false;
            }
            t.groups = tables.groups;
            t.consumer = tables.consumer;
            t.share = tables.share;
            t.offsets = tables.offsets;
            t.pending_txn = tables.pending_txn;
        }
        self.core.set_status(ShardStatus::Active);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if loaded > 0 || skipped > 0 {
            info!(
                partition = self.core.partition,
                epoch = self.core.leader_epoch,
                records = loaded,
                skipped,
                elapsed_ms,
                "group coordinator loaded"
            );
        } else {
            debug!(
                partition = self.core.partition,
                epoch = self.core.leader_epoch,
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
            let offset = PendingTxnOffset {
                group,
                topic,
                partition,
                log_offset,
                value,
            };
            apply_offset(t, producer_id, offset);
        }
        Entry::Marker {
            producer_id,
            commit,
        } => resolve_marker(t, producer_id, commit),
        Entry::Group { group, value } => match value {
            Some(StoredGroup::Classic(snapshot)) => {
                t.consumer.remove(&group);
                t.share.remove(&group);
                t.groups.insert(group, Group::restore(&snapshot, now_ms));
            }
            Some(StoredGroup::Consumer(g)) => {
                t.groups.remove(&group);
                t.share.remove(&group);
                t.consumer.insert(group, g.restore(now_ms));
            }
            Some(StoredGroup::Share(g)) => {
                t.groups.remove(&group);
                t.consumer.remove(&group);
                t.share.insert(group, g.restore(now_ms));
            }
            None => {
                t.groups.remove(&group);
                t.consumer.remove(&group);
                t.share.remove(&group);
            }
        },
    }
}
