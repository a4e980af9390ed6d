//! The on-disk layout of a node's partition logs: one directory per partition under
//! `<data-dir>/logs`, named `<topic>-<partition>` as Kafka does.

use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::config::LogConfig;
use crate::error::StorageError;
use crate::log::PartitionLog;
use crate::Result;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses `<topic>-<partition>`; topic names may themselves contain dashes.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok()?;
        if topic.is_empty() || partition < 0 {
            return None;
        }
        Some(TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Owns the log directory. Holds an exclusive lock on it for the life of the process so
/// two nodes can never write the same logs.
#[derive(Debug)]
pub struct LogManager {
    logs_dir: PathBuf,
    _lock: File,
}

impl LogManager {
    pub fn open(data_dir: &Path) -> Result<Self> {
        let logs_dir = data_dir.join("logs");
        fs::create_dir_all(&logs_dir).map_err(|e| StorageError::io(&logs_dir, e))?;
        let lock_path = data_dir.join(".lock");
        let lock = File::create(&lock_path).map_err(|e| StorageError::io(&lock_path, e))?;
        lock.try_lock().map_err(|e| {
            StorageError::io(
                &lock_path,
                std::io::Error::other(format!("data directory is in use by another process ({e})")),
            )
        })?;
        Ok(LogManager {
            logs_dir,
            _lock: lock,
        })
    }

    pub fn partition_dir(&self, tp: &TopicPartition) -> PathBuf {
        self.logs_dir.join(tp.dir_name())
    }

    /// Partitions that have a directory on disk, whatever their state.
    pub fn existing_partitions(&self) -> Result<Vec<TopicPartition>> {
        let mut out = Vec::new();
        for entry in
            fs::read_dir(&self.logs_dir).map_err(|e| StorageError::io(&self.logs_dir, e))?
        {
            let entry = entry.map_err(|e| StorageError::io(&self.logs_dir, e))?;
            if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            if let Some(tp) = TopicPartition::from_dir_name(&entry.file_name().to_string_lossy()) {
                out.push(tp);
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn open_log(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        topic_id: Option<String>,
    ) -> Result<PartitionLog> {
        PartitionLog::open(&self.partition_dir(tp), config, topic_id)
    }

    /// Removes a partition directory that has no open log (a stale leftover).
    pub fn remove_partition_dir(&self, tp: &TopicPartition) -> Result<()> {
        let dir = self.partition_dir(tp);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_names_round_trip_with_dashes() {
        let tp = TopicPartition::new("my-topic.v2", 11);
        assert_eq!(TopicPartition::from_dir_name(&tp.dir_name()), Some(tp));
        assert_eq!(TopicPartition::from_dir_name("nodash"), None);
    }

    #[test]
    fn second_manager_on_same_dir_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let _a = LogManager::open(dir.path()).expect("first");
        assert!(LogManager::open(dir.path()).is_err());
    }
}
