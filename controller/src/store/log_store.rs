use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use fjord_storage::batch::{validate_records, BatchIter};
use fjord_storage::blocking::{call, off_workers};
use fjord_storage::builder::{decode_records, BatchBuilder, Record};
use fjord_storage::{LogConfig, PartitionLog};
use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::RaftLogReader;
use tracing::warn;

use crate::types::{Entry, LogId, TypeConfig, Vote};

const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log on the segment engine, plus vote/committed/last-purged in sled.
#[derive(Clone)]
pub struct RaftLogStore {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    log: PartitionLog,
    state: sled::Tree,
    last_log_id: Option<LogId>,
    last_purged: Option<LogId>,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl RaftLogStore {
    pub fn open(log_dir: &Path, state: sled::Tree) -> io::Result<Self> {
        let config = LogConfig {
            segment_bytes: 8 * 1024 * 1024,
            max_message_bytes: usize::MAX,
            // Raft may acknowledge an entry only once it is durable.
            fsync_before_ack: true,
            retention_ms: -1,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(log_dir, config, None).map_err(io_err)?;
        let last_purged: Option<LogId> = read_json(&state, KEY_LAST_PURGED)?;
        let mut inner = Inner {
            log,
            state,
            last_log_id: None,
            last_purged,
        };
        inner.last_log_id = inner.read_last_entry_id()?;
        Ok(RaftLogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// Makes the stored positions agree with what survived on disk. Opening the log cut
    /// any damaged tail (at the first batch that fails its checks), so the committed id
    /// may point past the log's end, and the last snapshot may cover entries the log no
    /// longer holds. Raft would then ask for entries that are gone and refuse to start.
    /// Instead: a snapshot beyond the log becomes the log's start (everything up to it is
    /// in the snapshot), and the committed id comes back to the last entry kept; the
    /// leader sends the rest, as to any follower that is behind.
    pub fn reconcile(&self, snapshot_last: Option<LogId>) -> io::Result<()> {
        let mut inner = self.lock()?;
        if let Some(snap) = snapshot_last {
            if inner.last_log_id.is_none_or(|l| l.index() < snap.index()) {
                warn!(
                    log_end = ?inner.last_log_id.map(|l| l.index()),
                    snapshot = snap.index(),
                    "the metadata log ends before the last snapshot (its tail was damaged and cut); starting the log after the snapshot"
                );
                inner
                    .log
                    .truncate_fully_and_start_at(snap.index() as i64 + 1)
                    .map_err(io_err)?;
                write_json(&inner.state, KEY_LAST_PURGED, &snap)?;
                inner.last_purged = Some(snap);
                inner.last_log_id = Some(snap);
            }
        }
        let committed = read_json::<Option<LogId>>(&inner.state, KEY_COMMITTED)?.flatten();
        if let Some(c) = committed {
            if inner.last_log_id.is_none_or(|l| l.index() < c.index()) {
                warn!(
                    committed = c.index(),
                    log_end = ?inner.last_log_id.map(|l| l.index()),
                    "the metadata log lost committed entries (its tail was damaged and cut); the leader will send them again"
                );
                write_json(&inner.state, KEY_COMMITTED, &inner.last_log_id)?;
            }
        }
        inner.state.flush().map_err(io_err)?;
        Ok(())
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| io::Error::other("raft log store lock poisoned"))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
) -> io::Result<Option<T>> {
    match tree.get(key).map_err(io_err)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io_err),
    }
}

fn write_json<T: serde::Serialize>(tree: &sled::Tree, key: &[u8], value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io_err)?;
    tree.insert(key, bytes).map_err(io_err)?;
    Ok(())
}

impl Inner {
    fn entries(&self, start: u64, end: Option<u64>) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut offset = (start as i64).max(self.log.log_start_offset());
        let leo = self.log.log_end_offset();
        let end = end.map(|e| e as i64).unwrap_or(leo).min(leo);
        while offset < end {
            let Some(range) = self.log.read(offset, 1 << 20, end, true).map_err(io_err)? else {
                break;
            };
            let bytes = range.read().map_err(io_err)?;
            for item in BatchIter::new(&bytes) {
                let (r, h) = item.map_err(io_err)?;
                offset = h.next_offset();
                for rec in decode_records(&bytes[r]).map_err(io_err)? {
                    if (rec.offset as u64) < start || rec.offset >= end {
                        continue;
                    }
                    let value = rec.value.unwrap_or_default();
                    let entry: Entry = serde_json::from_slice(&value).map_err(io_err)?;
                    out.push(entry);
                }
            }
        }
        Ok(out)
    }

    fn read_last_entry_id(&self) -> io::Result<Option<LogId>> {
        let leo = self.log.log_end_offset();
        if leo <= self.log.log_start_offset() {
            return Ok(self.last_purged);
        }
        let last = self.entries((leo - 1) as u64, None)?;
        Ok(last.last().map(|e| e.log_id()).or(self.last_purged))
    }
}

impl RaftLogReader<TypeConfig> for RaftLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Some(e + 1),
            Bound::Excluded(e) => Some(*e),
            Bound::Unbounded => None,
        };
        call(|| self.lock()?.entries(start, end))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        read_json(&self.lock()?.state, KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for RaftLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = self.lock()?;
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: inner.last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        off_workers(|| {
            let inner = self.lock()?;
            write_json(&inner.state, KEY_VOTE, vote)?;
            // A vote must survive a crash, or a node could vote twice in one term.
            inner.state.flush().map_err(io_err)?;
            Ok(())
        })
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not flushed here: a stale committed id only means re-applying a little more of
        // the log after a crash; sled flushes on its own schedule.
        write_json(&self.lock()?.state, KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(read_json::<Option<LogId>>(&self.lock()?.state, KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let result = off_workers(|| {
            let mut inner = self.lock()?;
            let mut buf = Vec::new();
            let mut last = None;
            for entry in entries {
                let index = entry.index();
                let json = serde_json::to_vec(&entry).map_err(io_err)?;
                let mut b = BatchBuilder::new(index as i64, now_ms());
                b.push(Record::new(None, Some(json)));
                buf.extend_from_slice(&b.build());
                last = Some(entry.log_id());
            }
            if buf.is_empty() {
                return Ok(());
            }
            let validated = validate_records(&buf, usize::MAX).map_err(io_err)?;
            // fsync_before_ack makes this durable before it returns.
            inner
                .log
                .append_as_follower(&validated, now_ms())
                .map_err(io_err)?;
            inner.last_log_id = last;
            Ok(())
        });
        let reported = result
            .as_ref()
            .map(|_| ())
            .map_err(|e: &io::Error| io::Error::other(e.to_string()));
        callback.io_completed(reported);
        result
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        call(|| {
            let mut inner = self.lock()?;
            let keep_until = last_log_id
                .as_ref()
                .map(|l| l.index() as i64 + 1)
                .unwrap_or(0);
            let start = inner.log.log_start_offset();
            if keep_until <= start {
                inner
                    .log
                    .truncate_fully_and_start_at(start)
                    .map_err(io_err)?;
            } else {
                inner.log.truncate_to(keep_until).map_err(io_err)?;
            }
            inner.last_log_id = inner.read_last_entry_id()?;
            Ok(())
        })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        off_workers(|| {
            let mut inner = self.lock()?;
            write_json(&inner.state, KEY_LAST_PURGED, &log_id)?;
            inner.state.flush().map_err(io_err)?;
            let new_start = log_id.index() as i64 + 1;
            if new_start > inner.log.log_end_offset() {
                inner
                    .log
                    .truncate_fully_and_start_at(new_start)
                    .map_err(io_err)?;
            } else {
                inner
                    .log
                    .advance_log_start_offset(new_start)
                    .map_err(io_err)?;
            }
            inner.last_purged = Some(log_id);
            if inner
                .last_log_id
                .as_ref()
                .is_none_or(|l| l.index() < log_id.index())
            {
                inner.last_log_id = Some(log_id);
            }
            Ok(())
        })
    }
}
