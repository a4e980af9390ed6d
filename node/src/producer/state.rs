//! Per-partition producer state: each producer's epoch and its last five batches.
//!
//! Pure: it sees batch coordinates, not bytes or files, so every rule is unit-tested.

use std::collections::{HashMap, VecDeque};

/// Kafka keeps the metadata of the last five batches per producer, matching the client's
/// `max.in.flight.requests.per.connection <= 5` requirement for idempotence.
pub const BATCHES_PER_PRODUCER: usize = 5;

/// Where one producer batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    last_timestamp: i64,
    /// The coordinator epoch of the producer's last marker here (-1: none yet). Snapshots
    /// written before it was kept read as -1, which fences nothing.
    #[serde(default = "no_coordinator_epoch")]
    coordinator_epoch: i32,
}

fn no_coordinator_epoch() -> i32 {
    -1
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            last_timestamp: 0,
            coordinator_epoch: no_coordinator_epoch(),
        }
    }
}

/// One producer as DescribeProducers reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// A new batch in sequence: append it.
    Append,
    /// A retry of a batch already written: answer with its original offsets.
    Duplicate { first_offset: i64, last_offset: i64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("producer epoch {got} is older than the current {current}")]
    InvalidProducerEpoch { current: i16, got: i16 },
    #[error("out of order sequence number: expected {expected}, got {got}")]
    OutOfOrderSequence { expected: i32, got: i32 },
    #[error("coordinator epoch {got} is older than the {current} of the last marker")]
    CoordinatorFenced { current: i32, got: i32 },
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

/// The last sequence of a batch of `count` records starting at `first`, wrapping at
/// `i32::MAX` as Kafka's sequences do.
pub fn last_seq(first: i32, count: i32) -> i32 {
    let last = i64::from(first) + i64::from(count.max(1)) - 1;
    (last % (i64::from(i32::MAX) + 1)) as i32
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProducerStateTable {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Decides what to do with a batch from `pid` at `epoch` holding sequences
    /// `first_seq..=last_seq`.
    pub fn check(
        &self,
        pid: i64,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Result<SequenceCheck, ProducerError> {
        let Some(entry) = self.producers.get(&pid) else {
            // A producer we have no state for (new, or its state expired): accept it.
            return Ok(SequenceCheck::Append);
        };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                current: entry.epoch,
                got: epoch,
            });
        }
        if epoch > entry.epoch {
            // A bumped epoch restarts the sequence at zero (KIP-360).
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(ProducerError::OutOfOrderSequence {
                    expected: 0,
                    got: first_seq,
                })
            };
        }
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate {
                first_offset: dup.first_offset,
                last_offset: dup.last_offset,
            });
        }
        let expected = entry
            .batches
            .back()
            .map(|b| next_seq(b.last_seq))
            .unwrap_or(first_seq);
        if first_seq == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(ProducerError::OutOfOrderSequence {
                expected,
                got: first_seq,
            })
        }
    }

    /// Records an appended batch (also used to rebuild state from the log).
    pub fn record(&mut self, pid: i64, epoch: i16, batch: BatchMeta) {
        let entry = self.producers.entry(pid).or_default();
        if epoch != entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry.last_timestamp = entry.last_timestamp.max(batch.timestamp);
    }

    /// Whether a marker from `pid` at `epoch`, written by a coordinator at
    /// `coordinator_epoch`, may be appended: Kafka refuses one from an older producer
    /// epoch (the transaction was already ended under a newer one) and one from an older
    /// coordinator than the last marker's (a coordinator that lost its partition).
    pub fn check_marker(
        &self,
        pid: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), ProducerError> {
        let Some(entry) = self.producers.get(&pid) else {
            return Ok(());
        };
        if epoch < entry.epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                current: entry.epoch,
                got: epoch,
            });
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(ProducerError::CoordinatorFenced {
                current: entry.coordinator_epoch,
                got: coordinator_epoch,
            });
        }
        Ok(())
    }

    /// A transaction marker from `pid` at `epoch` (with its coordinator's epoch, when the
    /// batch is a transaction marker). A coordinator that aborts a timed-out transaction
    /// bumps the epoch to fence its producer, so a newer epoch replaces the old one (and
    /// its sequences).
    pub fn record_marker(
        &mut self,
        pid: i64,
        epoch: i16,
        timestamp: i64,
        coordinator_epoch: Option<i32>,
    ) {
        let entry = self.producers.entry(pid).or_default();
        if epoch > entry.epoch {
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = entry.last_timestamp.max(timestamp);
        if let Some(c) = coordinator_epoch {
            entry.coordinator_epoch = c;
        }
    }

    /// The epoch this partition knows for `pid`, if any.
    pub fn epoch_of(&self, pid: i64) -> Option<i16> {
        self.producers.get(&pid).map(|e| e.epoch)
    }

    /// Every producer with its epoch, last sequence, last offset and last timestamp
    /// (DescribeProducers).
    pub fn describe(&self) -> Vec<ProducerSummary> {
        self.producers
            .iter()
            .map(|(pid, e)| ProducerSummary {
                producer_id: *pid,
                epoch: e.epoch,
                last_sequence: e.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
            })
            .collect()
    }

    /// Forgets producers idle for longer than `producer.id.expiration.ms`.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, e| now_ms.saturating_sub(e.last_timestamp) <= expiration_ms);
        before - self.producers.len()
    }

    /// Forgets everything at or after `offset` (the log was truncated there).
    pub fn truncate_to(&mut self, offset: i64) {
        for e in self.producers.values_mut() {
            e.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first_seq: i32, n: i32, first_offset: i64) -> BatchMeta {
        BatchMeta {
            first_seq,
            last_seq: last_seq(first_seq, n),
            first_offset,
            last_offset: first_offset + i64::from(n) - 1,
            timestamp: 0,
        }
    }

    #[test]
    fn in_order_duplicate_and_gap() {
        let mut t = ProducerStateTable::default();
        assert_eq!(t.check(7, 0, 0, 9), Ok(SequenceCheck::Append));
        t.record(7, 0, meta(0, 10, 100));
        assert_eq!(t.check(7, 0, 10, 19), Ok(SequenceCheck::Append));
        t.record(7, 0, meta(10, 10, 110));
        assert_eq!(
            t.check(7, 0, 0, 9),
            Ok(SequenceCheck::Duplicate {
                first_offset: 100,
                last_offset: 109
            })
        );
        assert_eq!(
            t.check(7, 0, 25, 30),
            Err(ProducerError::OutOfOrderSequence {
                expected: 20,
                got: 25
            })
        );
    }

    #[test]
    fn epochs_fence_and_restart_sequences() {
        let mut t = ProducerStateTable::default();
        t.record(1, 3, meta(0, 5, 0));
        assert!(matches!(
            t.check(1, 2, 5, 5),
            Err(ProducerError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(t.check(1, 4, 0, 0), Ok(SequenceCheck::Append));
        assert!(t.check(1, 4, 7, 7).is_err());
    }

    #[test]
    fn markers_from_older_epochs_or_coordinators_are_refused() {
        let mut t = ProducerStateTable::default();
        assert_eq!(t.check_marker(1, 0, -1), Ok(()), "an unknown producer");
        t.record(1, 2, meta(0, 1, 0));
        assert_eq!(t.describe()[0].coordinator_epoch, -1, "no marker yet");
        assert_eq!(t.check_marker(1, 2, -1), Ok(()));
        t.record_marker(1, 2, 10, Some(5));
        assert_eq!(t.describe()[0].coordinator_epoch, 5);
        assert!(matches!(
            t.check_marker(1, 1, 9),
            Err(ProducerError::InvalidProducerEpoch { .. })
        ));
        assert_eq!(
            t.check_marker(1, 2, 4),
            Err(ProducerError::CoordinatorFenced { current: 5, got: 4 })
        );
        assert_eq!(t.check_marker(1, 3, 5), Ok(()));
        // A data batch without a marker leaves the coordinator epoch as it was.
        t.record_marker(1, 2, 20, None);
        assert_eq!(t.describe()[0].coordinator_epoch, 5);
    }

    #[test]
    fn snapshots_without_coordinator_epochs_read_as_none() {
        let old = r#"{"producers":{"7":{"epoch":1,"batches":[],"last_timestamp":3}}}"#;
        let t: ProducerStateTable = serde_json::from_str(old).expect("parses");
        assert_eq!(t.describe()[0].coordinator_epoch, -1);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut t = ProducerStateTable::default();
        for i in 0..7 {
            t.record(1, 0, meta(i, 1, i64::from(i)));
        }
        assert!(t.check(1, 0, 0, 0).is_err(), "too old to be recognised");
        assert!(matches!(
            t.check(1, 0, 3, 3),
            Ok(SequenceCheck::Duplicate { .. })
        ));
    }

    #[test]
    fn sequences_wrap_at_int_max() {
        assert_eq!(last_seq(i32::MAX, 2), 0);
        let mut t = ProducerStateTable::default();
        t.record(1, 0, meta(i32::MAX - 1, 2, 0));
        assert_eq!(t.check(1, 0, 0, 4), Ok(SequenceCheck::Append));
    }

    #[test]
    fn truncation_and_expiry() {
        let mut t = ProducerStateTable::default();
        t.record(1, 0, meta(0, 5, 0));
        t.record(
            2,
            0,
            BatchMeta {
                timestamp: 1_000,
                ..meta(0, 5, 5)
            },
        );
        t.truncate_to(5);
        assert_eq!(t.len(), 1);
        assert_eq!(t.expire(10_000, 5_000), 1);
        assert!(t.is_empty());
    }
}
