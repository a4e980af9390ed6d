//! The partition's meta file (`partition.meta`): durable facts that are not in the
//! segments themselves. It is written atomically (temporary file, fsync, rename, directory
//! fsync). Under a heavy write load that fsync can take hundreds of milliseconds, so the
//! frequent writer, the periodic high-watermark checkpoint, prepares its write under the
//! partition lock and performs it after the lock is released. Every prepared write carries
//! a version taken while the log was exclusively held; a write never replaces one with a
//! newer version, so a checkpoint that lands late cannot undo a truncation or a roll.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::cleaner::CleanerState;
use crate::epoch_cache::EpochEntry;
use crate::Result;

pub const META_FILE: &str = "partition.meta";

/// Durable per-partition facts that are not in the segments themselves.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PartitionMeta {
    pub topic_id: Option<String>,
    pub log_start_offset: i64,
    pub recovery_point: i64,
    #[serde(default)]
    pub high_watermark: i64,
    pub leader_epochs: Vec<EpochEntry>,
    #[serde(default)]
    pub cleaner: CleanerState,
}

impl PartitionMeta {
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        checkpoint::read_json(&dir.join(META_FILE))
    }
}

#[derive(Debug)]
pub(crate) struct MetaFile {
    path: PathBuf,
    /// The version the next prepared write gets.
    next_version: AtomicU64,
    /// The newest version on disk; held while writing so writes do not interleave.
    written: Mutex<u64>,
}

impl MetaFile {
    pub fn new(dir: &Path) -> Arc<Self> {
        Arc::new(Self {
            path: dir.join(META_FILE),
            next_version: AtomicU64::new(1),
            written: Mutex::new(0),
        })
    }

    /// Serializes `meta` and stamps it with the next version. The caller holds the log
    /// exclusively, so versions follow the order of the changes they describe.
    pub fn prepare(self: &Arc<Self>, meta: &PartitionMeta) -> Result<PendingMetaWrite> {
        let bytes = checkpoint::to_json(&self.path, meta)?;
        Ok(PendingMetaWrite {
            file: Arc::clone(self),
            version: self.next_version.fetch_add(1, Ordering::Relaxed),
            bytes,
        })
    }

    /// No later write lands: the log is being deleted, and a checkpoint prepared before
    /// must not put a stale meta file into a directory of the same name opened afterwards.
    pub fn retire(&self) {
        *self.written.lock().unwrap_or_else(PoisonError::into_inner) = u64::MAX;
    }

    fn write(&self, version: u64, bytes: &[u8]) -> Result<()> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if version <= *written {
            return Ok(());
        }
        checkpoint::write_atomic(&self.path, bytes)?;
        *written = version;
        Ok(())
    }
}

/// A meta-file write prepared under the partition lock, to be performed after it.
#[derive(Debug)]
#[must_use = "a prepared meta write does nothing until it is run"]
pub struct PendingMetaWrite {
    file: Arc<MetaFile>,
    version: u64,
    bytes: Vec<u8>,
}

impl PendingMetaWrite {
    pub fn run(self) -> Result<()> {
        self.file.write(self.version, &self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(recovery_point: i64) -> PartitionMeta {
        PartitionMeta {
            recovery_point,
            ..PartitionMeta::default()
        }
    }

    #[test]
    fn a_late_write_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = MetaFile::new(dir.path());
        let older = file.prepare(&meta(1)).expect("prepare");
        let newer = file.prepare(&meta(2)).expect("prepare");
        newer.run().expect("write newer");
        older.run().expect("late write is skipped, not an error");
        let on_disk = PartitionMeta::read(dir.path())
            .expect("read")
            .expect("present");
        assert_eq!(on_disk.recovery_point, 2);
        let newest = file.prepare(&meta(3)).expect("prepare");
        newest.run().expect("write");
        let on_disk = PartitionMeta::read(dir.path())
            .expect("read")
            .expect("present");
        assert_eq!(on_disk.recovery_point, 3);
    }

    #[test]
    fn a_retired_file_takes_no_more_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = MetaFile::new(dir.path());
        let late = file.prepare(&meta(1)).expect("prepare");
        file.retire();
        late.run().expect("a write after retirement is skipped");
        assert!(PartitionMeta::read(dir.path()).expect("read").is_none());
    }
}
