//! Small metadata files written atomically: write a temporary file, fsync it, rename it
//! over the old one, fsync the directory. A crash leaves either the old or the new file.
//!
//! Every write gets a temporary file of its own ([`temp_path`]): two writers of one file
//! (a checkpoint racing a close, say) must never truncate or rename each other's half
//! written bytes. The last rename wins, and each rename installs one whole file.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{de::DeserializeOwned, Serialize};

use crate::error::StorageError;
use crate::Result;

/// The suffix of every temporary file; a log's open removes files ending in it, which
/// only a crash mid-write leaves behind.
pub const TEMP_SUFFIX: &str = ".tmp";

/// A temporary name next to `path` that no other write in this process uses:
/// `<name>.<pid>.<sequence>.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        "{name}.{}.{sequence}{TEMP_SUFFIX}",
        std::process::id()
    ))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })()
    .map_err(|e| StorageError::io(&tmp, e))
    .and_then(|()| fs::rename(&tmp, path).map_err(|e| StorageError::io(path, e)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(dir, e))
}

/// The JSON bytes of a checkpoint bound for `path`, for [`write_atomic`].
pub fn to_json<T: Serialize>(path: &Path, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| StorageError::io(path, std::io::Error::other(e)))
}

/// Reads a JSON checkpoint. A missing file is `Ok(None)`; an unreadable one is an error,
/// because silently starting from defaults could resurrect deleted data.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::io(path, std::io::Error::other(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several threads replacing one file at once: every write succeeds, and the file
    /// always holds one whole write, never a mix or a truncated one.
    #[test]
    fn concurrent_atomic_writes_to_one_file_all_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("partition.meta");
        let threads = 8;
        let rounds = 200;
        let contents: Vec<Vec<u8>> = (0..threads)
            .map(|t| vec![b'a' + t as u8; 4096 + 512 * t])
            .collect();
        std::thread::scope(|s| {
            for body in &contents {
                let path = &path;
                s.spawn(move || {
                    for round in 0..rounds {
                        write_atomic(path, body)
                            .unwrap_or_else(|e| panic!("write {round} failed: {e}"));
                        let now = fs::read(path).expect("read back");
                        assert!(
                            contents_one_of(&now, threads),
                            "the file holds a torn write ({} bytes)",
                            now.len()
                        );
                    }
                });
            }
        });
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "partition.meta")
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    fn contents_one_of(bytes: &[u8], threads: usize) -> bool {
        (0..threads)
            .any(|t| bytes.len() == 4096 + 512 * t && bytes.iter().all(|&b| b == b'a' + t as u8))
    }
}
