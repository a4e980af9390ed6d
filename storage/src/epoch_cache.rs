//! The leader-epoch cache: for every leader epoch, the first offset written in it.
//!
//! It answers OffsetForLeaderEpoch ("where does epoch E end?"), which lets a follower
//! truncate exactly the records its new leader never had after a leader change.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn from_entries(mut entries: Vec<EpochEntry>) -> Self {
        entries.sort_by_key(|e| e.epoch);
        LeaderEpochCache { entries }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Records that `epoch` starts at `start_offset`. Returns true when the cache changed.
    /// Epochs only grow; an older or equal epoch is ignored.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(last) if last.epoch >= epoch => false,
            _ => {
                self.entries.push(EpochEntry {
                    epoch,
                    start_offset,
                });
                true
            }
        }
    }

    /// The end offset of `requested` epoch: the start of the next higher epoch, or the log
    /// end offset when `requested` is the latest. Returns `(epoch, end_offset)` where epoch
    /// is the largest known epoch `<= requested`, or `(-1, -1)` if there is none.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        let idx = self.entries.partition_point(|e| e.epoch <= requested);
        if idx == 0 {
            return (-1, -1);
        }
        let found = self.entries[idx - 1];
        let end = self
            .entries
            .get(idx)
            .map(|next| next.start_offset)
            .unwrap_or(log_end_offset);
        (found.epoch, end)
    }

    /// Forgets epochs that start at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        before != self.entries.len()
    }

    /// The log start moved to `start_offset`: epochs wholly before it are dropped, and the
    /// epoch covering it now starts there.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covering = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if covering == 0 {
            return false;
        }
        let mut changed = covering > 1;
        self.entries.drain(..covering - 1);
        if self.entries[0].start_offset != start_offset {
            self.entries[0].start_offset = start_offset;
            changed = true;
        }
        changed
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        assert!(c.assign(0, 0));
        assert!(c.assign(2, 10));
        assert!(c.assign(5, 20));
        assert!(!c.assign(4, 30), "epochs only grow");
        c
    }

    #[test]
    fn end_offsets() {
        let c = cache();
        assert_eq!(c.end_offset_for(0, 25), (0, 10));
        assert_eq!(c.end_offset_for(1, 25), (0, 10));
        assert_eq!(c.end_offset_for(2, 25), (2, 20));
        assert_eq!(c.end_offset_for(5, 25), (5, 25));
        assert_eq!(c.end_offset_for(9, 25), (5, 25));
        assert_eq!(LeaderEpochCache::default().end_offset_for(3, 5), (-1, -1));
    }

    #[test]
    fn truncation_both_ends() {
        let mut c = cache();
        c.truncate_from_end(20);
        assert_eq!(c.latest().map(|e| e.epoch), Some(2));
        c.truncate_from_start(12);
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 12
            }]
        );
    }
}
