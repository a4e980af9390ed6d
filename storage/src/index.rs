//! Sparse offset and time indexes of one segment.
//!
//! Both live in memory and are appended to their files on flush. A file is trusted at
//! open only when the segment was flushed; otherwise recovery rebuilds it from the log,
//! so a torn index write can never point into garbage.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::StorageError;
use crate::Result;

/// One fixed-size index entry.
pub trait IndexEntry: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(buf: &[u8]) -> Self;
    fn relative_offset(&self) -> u32;
}

/// Offset index entry: offset relative to the segment base, byte position in the log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(buf: &[u8]) -> Self {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]),
            position: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        }
    }
    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

/// Time index entry: the largest timestamp seen up to the batch ending at this offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }
    fn decode(buf: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&buf[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            relative_offset: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        }
    }
    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }
}

/// An append-only index of `E` entries backed by one file.
#[derive(Debug)]
pub struct Index<E: IndexEntry> {
    path: PathBuf,
    entries: Vec<E>,
    /// How many leading entries are known to be in the file.
    persisted: usize,
    /// The file no longer matches a prefix of `entries` and must be rewritten.
    dirty_file: bool,
}

impl<E: IndexEntry> Index<E> {
    pub fn new_empty(path: PathBuf) -> Self {
        Index {
            path,
            entries: Vec::new(),
            persisted: 0,
            dirty_file: true,
        }
    }

    /// Loads the index file. Returns `None` when it is missing or malformed, which tells
    /// the caller to rebuild it from the log.
    pub fn load(path: PathBuf) -> Option<Self> {
        let mut buf = Vec::new();
        File::open(&path).ok()?.read_to_end(&mut buf).ok()?;
        if buf.len() % E::SIZE != 0 {
            return None;
        }
        let entries: Vec<E> = buf.chunks_exact(E::SIZE).map(E::decode).collect();
        let monotonic = entries
            .windows(2)
            .all(|w| w[0].relative_offset() < w[1].relative_offset());
        if !monotonic {
            return None;
        }
        let persisted = entries.len();
        Some(Index {
            path,
            entries,
            persisted,
            dirty_file: false,
        })
    }

    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    pub fn push(&mut self, entry: E) {
        self.entries.push(entry);
    }

    pub fn size_bytes(&self) -> u64 {
        (self.entries.len() * E::SIZE) as u64
    }

    /// Drops every entry for which `keep` is false, from the first such entry on.
    pub fn truncate_where(&mut self, keep: impl Fn(&E) -> bool) {
        let cut = self.entries.iter().position(|e| !keep(e));
        if let Some(cut) = cut {
            self.entries.truncate(cut);
            if cut < self.persisted {
                self.persisted = cut;
                self.dirty_file = true;
            }
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.persisted = 0;
        self.dirty_file = true;
    }

    /// Writes unpersisted entries (or the whole index after a truncation) and fsyncs.
    pub fn flush(&mut self) -> Result<()> {
        if !self.dirty_file && self.persisted == self.entries.len() {
            return Ok(());
        }
        let io = |e| StorageError::io(&self.path, e);
        let (mut file, from) = if self.dirty_file {
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&self.path)
                .map_err(io)?;
            (f, 0)
        } else {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io)?;
            (f, self.persisted)
        };
        let mut buf = Vec::with_capacity((self.entries.len() - from) * E::SIZE);
        for e in &self.entries[from..] {
            e.encode(&mut buf);
        }
        file.write_all(&buf).map_err(io)?;
        file.sync_data().map_err(io)?;
        self.persisted = self.entries.len();
        self.dirty_file = false;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Index of the last entry whose key is `<= target` by `key`, if any.
    pub fn floor_by<K: Ord>(&self, target: K, key: impl Fn(&E) -> K) -> Option<&E> {
        let n = self.entries.partition_point(|e| key(e) <= target);
        n.checked_sub(1).map(|i| &self.entries[i])
    }
}

pub type OffsetIndex = Index<OffsetEntry>;
pub type TimeIndex = Index<TimeEntry>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_lookup_and_truncation() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut idx = OffsetIndex::new_empty(dir.path().join("x.index"));
        for i in 0..10u32 {
            idx.push(OffsetEntry {
                relative_offset: i * 10,
                position: i * 100,
            });
        }
        assert_eq!(
            idx.floor_by(25, |e| e.relative_offset).map(|e| e.position),
            Some(200)
        );
        assert_eq!(
            idx.floor_by(0, |e| e.relative_offset).map(|e| e.position),
            Some(0)
        );
        idx.flush().expect("flush");
        idx.truncate_where(|e| e.relative_offset < 50);
        assert_eq!(idx.entries().len(), 5);
        idx.flush().expect("flush");
        let loaded = OffsetIndex::load(dir.path().join("x.index")).expect("load");
        assert_eq!(loaded.entries(), idx.entries());
    }

    #[test]
    fn malformed_file_is_rejected() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("bad.index");
        std::fs::write(&p, [1u8, 2, 3]).expect("write");
        assert!(OffsetIndex::load(p).is_none());
    }
}
