//! Producer-state snapshots: the producer table and transaction index of a partition as
//! of a log offset, written next to the log, so opening a partition reads only the
//! batches after the snapshot instead of every batch header in the log.
//!
//! A snapshot is only a shortcut: one that is missing, unreadable or not within the log
//! (written before a crash lost the tail it covered, or overtaken by retention) is
//! ignored and the state is rebuilt from the whole log. A truncation removes it.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{ProducerStateTable, TxnIndex};

pub const FILE_NAME: &str = "producer-state.snapshot";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    /// Every batch below this offset is reflected.
    offset: i64,
    producers: ProducerStateTable,
    txns: TxnIndex,
}

/// Writes the state as of `offset` (temporary file, then rename). No fsync: after a crash
/// a torn or empty file fails to parse and is ignored, which costs only a full rebuild.
pub fn write(
    dir: &Path,
    offset: i64,
    producers: &ProducerStateTable,
    txns: &TxnIndex,
) -> io::Result<()> {
    let body = serde_json::to_vec(&SnapshotRef {
        version: VERSION,
        offset,
        producers,
        txns,
    })
    .map_err(io::Error::other)?;
    let path = dir.join(FILE_NAME);
    // A name of its own, so no other writer can truncate or rename this one's bytes.
    let tmp = fjord_storage::checkpoint::temp_path(&path);
    let written = fs::write(&tmp, &body).and_then(|()| fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    offset: i64,
    producers: &'a ProducerStateTable,
    txns: &'a TxnIndex,
}

/// The snapshot in `dir`, if there is a readable one: (offset, producers, transactions).
pub fn read(dir: &Path) -> Option<(i64, ProducerStateTable, TxnIndex)> {
    let body = fs::read(dir.join(FILE_NAME)).ok()?;
    let s: Snapshot = serde_json::from_slice(&body).ok()?;
    (s.version == VERSION).then_some((s.offset, s.producers, s.txns))
}

pub fn remove(dir: &Path) {
    let _ = fs::remove_file(dir.join(FILE_NAME));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::BatchMeta;
    use fjord_storage::control::ControlType;

    #[test]
    fn snapshots_round_trip_and_bad_ones_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read(dir.path()).is_none());
        let mut producers = ProducerStateTable::default();
        producers.record(
            7,
            2,
            BatchMeta {
                first_seq: 0,
                last_seq: 4,
                first_offset: 10,
                last_offset: 14,
                timestamp: 99,
            },
        );
        let mut txns = TxnIndex::default();
        txns.on_data(8, 15);
        txns.on_marker(8, ControlType::Abort, 16);
        txns.on_data(9, 17);
        write(dir.path(), 18, &producers, &txns).expect("write");
        let (offset, p, t) = read(dir.path()).expect("read back");
        assert_eq!(offset, 18);
        assert_eq!(p.epoch_of(7), Some(2));
        assert_eq!(t.last_stable_offset(18), 17);
        assert_eq!(t.aborted_between(0, 18).len(), 1);
        fs::write(dir.path().join(FILE_NAME), b"{not json").expect("corrupt it");
        assert!(read(dir.path()).is_none());
        remove(dir.path());
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
