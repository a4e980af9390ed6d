//! Per-partition transaction state: which producers have a transaction open on this
//! partition and where it began (which bounds the last stable offset), which ended
//! transactions were aborted (what read_committed consumers must skip), and which
//! producers the coordinator confirmed may open one here (KIP-890).
//!
//! Pure: it sees offsets and producer ids, never bytes, so every rule is unit-tested.

use std::collections::HashMap;

use fjord_storage::control::ControlType;

/// An aborted transaction as Fetch reports it: the client drops the producer's batches
/// from `first_offset` up to the abort marker at `last_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TxnIndex {
    /// Open transactions: producer id → offset of its first batch here.
    ongoing: HashMap<i64, i64>,
    /// Ended transactions whose marker may not be replicated yet: (first offset, marker
    /// offset). They hold the last stable offset until the high watermark passes the
    /// marker, so read_committed never sees data whose outcome a failover could undo.
    ending: Vec<(i64, i64)>,
    /// Aborted transactions, in marker order.
    aborted: Vec<AbortedTxn>,
    /// KIP-890 guards: producer id → epoch the coordinator confirmed this partition was
    /// added at. A transactional batch may open a transaction only under a guard, and a
    /// marker removes it, so a late write after the transaction ended cannot hang a new one.
    /// Guards are not kept across restarts: a producer is simply checked again.
    #[serde(skip)]
    verified: HashMap<i64, i16>,
}

impl TxnIndex {
    pub fn is_ongoing(&self, producer_id: i64) -> bool {
        self.ongoing.contains_key(&producer_id)
    }

    /// Open transactions, with the offset each began at.
    pub fn ongoing(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(p, o)| (*p, *o))
    }

    /// Records the coordinator's confirmation that `producer_id` at `epoch` added this
    /// partition to its transaction.
    pub fn verify(&mut self, producer_id: i64, epoch: i16) {
        self.verified.insert(producer_id, epoch);
    }

    /// Whether a transactional batch from `producer_id` at `epoch` may be appended: it
    /// continues an open transaction, or opens one the coordinator confirmed.
    pub fn may_write(&self, producer_id: i64, epoch: i16) -> bool {
        self.is_ongoing(producer_id) || self.verified.get(&producer_id) == Some(&epoch)
    }

    /// A transactional data batch at `base_offset` was appended.
    pub fn on_data(&mut self, producer_id: i64, base_offset: i64) {
        self.ongoing.entry(producer_id).or_insert(base_offset);
        self.verified.remove(&producer_id);
    }

    /// A marker was appended at `offset`. It ends the producer's open transaction here,
    /// if any (a marker for a partition the producer never wrote to ends nothing).
    pub fn on_marker(&mut self, producer_id: i64, kind: ControlType, offset: i64) {
        self.verified.remove(&producer_id);
        let Some(first_offset) = self.ongoing.remove(&producer_id) else {
            return;
        };
        self.ending.push((first_offset, offset));
        if kind == ControlType::Abort {
            self.aborted.push(AbortedTxn {
                producer_id,
                first_offset,
                last_offset: offset,
            });
        }
    }

    /// The last stable offset: the high watermark, held back by the first batch of every
    /// open transaction and of every ended one whose marker is not yet replicated.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let open = self.ongoing.values().copied();
        let ending = self
            .ending
            .iter()
            .filter(|(_, marker)| *marker >= high_watermark)
            .map(|(first, _)| *first);
        open.chain(ending)
            .fold(high_watermark, |lso, first| lso.min(first))
    }

    /// Aborted transactions that overlap `[from, to)`, for a read_committed fetch.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Drops the aborted transactions whose abort marker is no longer in the log (the
    /// cleaner removed it, or a snapshot is older than the log): a read_committed client
    /// told of one would skip the producer's later batches, waiting for a marker that
    /// never comes.
    pub fn retain_aborted(&mut self, mut marker_present: impl FnMut(i64) -> bool) {
        self.aborted.retain(|a| marker_present(a.last_offset));
    }

    /// Forgets what no reader can need: ended transactions below the high watermark, and
    /// aborted ones wholly before the log start.
    pub fn prune(&mut self, high_watermark: i64, log_start_offset: i64) {
        self.ending.retain(|(_, marker)| *marker >= high_watermark);
        self.aborted.retain(|a| a.last_offset >= log_start_offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aborted_transactions_without_their_marker_are_dropped() {
        let mut t = TxnIndex::default();
        for (producer, first, marker) in [(1, 0, 5), (2, 6, 9)] {
            t.on_data(producer, first);
            t.on_marker(producer, ControlType::Abort, marker);
        }
        t.retain_aborted(|marker| marker != 5);
        let left = t.aborted_between(0, 100);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].producer_id, 2);
    }

    #[test]
    fn open_transactions_hold_the_last_stable_offset() {
        let mut t = TxnIndex::default();
        assert_eq!(t.last_stable_offset(10), 10);
        t.on_data(1, 4);
        t.on_data(1, 6);
        t.on_data(2, 8);
        assert_eq!(t.last_stable_offset(10), 4);
        t.on_marker(1, ControlType::Commit, 9);
        // The marker is not yet below the high watermark: still unstable.
        assert_eq!(t.last_stable_offset(9), 4);
        assert_eq!(t.last_stable_offset(10), 8);
        t.on_marker(2, ControlType::Commit, 11);
        assert_eq!(t.last_stable_offset(12), 12);
    }

    #[test]
    fn aborts_are_listed_for_overlapping_reads_until_retention_passes_them() {
        let mut t = TxnIndex::default();
        t.on_data(7, 10);
        t.on_marker(7, ControlType::Abort, 20);
        t.on_data(8, 21);
        t.on_marker(8, ControlType::Commit, 22);
        let aborted = AbortedTxn {
            producer_id: 7,
            first_offset: 10,
            last_offset: 20,
        };
        assert_eq!(t.aborted_between(0, 11), vec![aborted]);
        assert_eq!(t.aborted_between(20, 30), vec![aborted]);
        assert!(t.aborted_between(0, 10).is_empty());
        assert!(t.aborted_between(21, 30).is_empty());
        t.prune(23, 20);
        assert_eq!(t.aborted_between(0, 30), vec![aborted]);
        t.prune(23, 21);
        assert!(t.aborted_between(0, 30).is_empty());
    }

    #[test]
    fn a_transaction_opens_only_under_the_coordinators_guard() {
        let mut t = TxnIndex::default();
        assert!(!t.may_write(5, 0));
        t.verify(5, 0);
        assert!(!t.may_write(5, 1), "another epoch is not covered");
        assert!(t.may_write(5, 0));
        t.on_data(5, 0);
        assert!(t.may_write(5, 0), "an open transaction continues");
        t.on_marker(5, ControlType::Commit, 1);
        assert!(
            !t.may_write(5, 0),
            "a late write after the marker is refused"
        );
        // A marker with no data here ends nothing but still clears a guard.
        t.verify(5, 0);
        t.on_marker(5, ControlType::Abort, 2);
        assert!(!t.may_write(5, 0));
        assert!(t.aborted_between(0, 10).is_empty());
    }
}
