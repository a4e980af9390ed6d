//! Log compaction (`cleanup.policy=compact`): keep the latest record of every key.
//!
//! A compaction is planned under the partition lock ([`PartitionLog::plan_compaction`]),
//! run without it ([`CompactionJob::run`]) on closed segments only, which never change
//! except by truncation, and swapped in under the lock again
//! ([`PartitionLog::finish_compaction`]), which gives up if the segments moved meanwhile.
//!
//! As in Kafka, the log has a clean part (compacted before) and a dirty part (written
//! since). A pass indexes the latest offset of every key in the dirty part, then rewrites
//! every closed segment up to the end of the dirty part: a record survives unless a later
//! record of its key exists, and a tombstone (null value) survives until it has been in
//! the clean part for `delete.retention.ms`. Offsets never change: batches keep their
//! base offsets and offset ranges, so a consumer's position stays valid. The active
//! segment, anything above the high watermark, and records younger than
//! `min.compaction.lag.ms` are never touched.
//!
//! Transactions: the records of a transaction that ended with an ABORT marker inside the
//! pass are removed, as Kafka's cleaner removes them (read_committed consumers never see
//! them, read_uncommitted ones stop seeing them). The abort marker itself goes like a
//! tombstone, `delete.retention.ms` after it became clean, unless it is its producer's
//! last batch, which keeps the producer's epoch in the log. Commit markers stay.
//!
//! [`PartitionLog::plan_compaction`]: crate::log::PartitionLog::plan_compaction
//! [`PartitionLog::finish_compaction`]: crate::log::PartitionLog::finish_compaction

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::batch::{BatchHeader, HEADER_SIZE};
use crate::builder::{decode_records, rebuild_batch, DecodedRecord};
use crate::control::ControlType;
use crate::error::StorageError;
use crate::segment::file_name;
use crate::Result;

/// Suffix of a compacted segment being written; removed on open if a crash left it.
pub const CLEANED_SUFFIX: &str = "cleaned";
/// Suffix of a compacted segment ready to replace the segments it covers.
pub const SWAP_SUFFIX: &str = "swap";

/// Bytes one entry of the key index costs, as Kafka counts its dedupe buffer.
const BYTES_PER_KEY: usize = 24;

/// A closed segment as a compaction sees it.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    pub file: Arc<File>,
    pub path: Arc<PathBuf>,
}

/// When the cleaner first made offsets below `end` part of the clean log: tombstones
/// there expire `delete.retention.ms` after `at_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanMark {
    pub end: i64,
    pub at_ms: i64,
}

/// Compaction progress, persisted with the partition's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanerState {
    /// The first offset not yet compacted (Kafka's cleaner checkpoint).
    pub first_dirty: i64,
    pub marks: Vec<CleanMark>,
    /// When the earliest tombstone left in the log may go: a pass is due then even if
    /// nothing new was written.
    #[serde(default)]
    pub next_tombstone_expiry_ms: Option<i64>,
}

impl CleanerState {
    /// When the tombstone at `offset` joined the clean log, if it has.
    fn cleaned_at(&self, offset: i64) -> Option<i64> {
        self.marks.iter().find(|m| offset < m.end).map(|m| m.at_ms)
    }

    /// Records a finished pass and keeps the mark list short: the oldest neighbours merge,
    /// keeping the later time, which can only keep tombstones longer.
    pub fn record_pass(&mut self, end: i64, at_ms: i64) {
        self.first_dirty = self.first_dirty.max(end);
        if self.marks.last().is_none_or(|m| m.end < end) {
            self.marks.push(CleanMark { end, at_ms });
        }
        while self.marks.len() > 16 {
            let first = self.marks.remove(0);
            if let Some(next) = self.marks.first_mut() {
                next.at_ms = next.at_ms.max(first.at_ms);
            }
        }
    }
}

/// Settings of one compaction, from the topic's config.
#[derive(Clone, Debug)]
pub struct CompactionSettings {
    pub delete_retention_ms: i64,
    pub segment_bytes: u64,
    /// `log.cleaner.dedupe.buffer.size`: bounds the key index of one pass.
    pub dedupe_buffer_bytes: usize,
}

/// A planned compaction over closed segments, runnable without the partition lock.
#[derive(Debug)]
pub struct CompactionJob {
    pub dir: PathBuf,
    /// Closed segments from the log start to the end of the dirty part, in order.
    pub segments: Vec<SegmentFile>,
    pub state: CleanerState,
    pub settings: CompactionSettings,
    pub now_ms: i64,
}

/// The result of [`CompactionJob::run`]: new segment files waiting to be swapped in.
#[derive(Debug)]
pub struct CompactionOutput {
    /// Each new segment's base offset, and the old segments it replaces.
    pub groups: Vec<(i64, Vec<i64>)>,
    /// The old segments as the job saw them, to check nothing moved before the swap.
    pub inputs: Vec<(i64, u64)>,
    /// The dirty part this pass compacted ends here.
    pub cleaned_up_to: i64,
    /// When the earliest tombstone this pass kept may be removed.
    pub next_tombstone_expiry_ms: Option<i64>,
    /// Offsets of the abort markers this pass removed. Whoever keeps an index of aborted
    /// transactions must drop theirs in the same step as the swap: a read_committed
    /// client told a producer aborted at some offset skips that producer's batches until
    /// it meets the abort marker, so an entry without its marker would hide the
    /// producer's later, committed records.
    pub removed_abort_markers: Vec<i64>,
    pub stats: CompactionStats,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub next_tombstone_expiry_ms: Option<i64>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_kept: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    pub aborted_records_removed: u64,
    pub abort_markers_removed: u64,
}

/// How the transactions of a job ended, where their markers are inside the job.
#[derive(Debug, Default)]
struct Transactions {
    /// Base offsets of transactional data batches whose transaction was aborted.
    aborted_batches: HashSet<i64>,
    /// Base offsets of abort markers.
    abort_markers: HashSet<i64>,
    /// The abort markers the pass removed.
    removed: Vec<i64>,
}

/// 128 bits of key hash: two SipHashes with different prefixes, so a collision (which
/// would drop a live record) is out of reach.
fn key_hash(key: &[u8]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    0u8.hash(&mut a);
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    1u8.hash(&mut b);
    key.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Reads the batches of a segment file in order.
struct Batches<'a> {
    seg: &'a SegmentFile,
    pos: u64,
}

impl Iterator for Batches<'_> {
    type Item = Result<(BatchHeader, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos + HEADER_SIZE as u64 > self.seg.size {
            return None;
        }
        let mut head = [0u8; HEADER_SIZE];
        let read = |buf: &mut [u8], at: u64| {
            self.seg
                .file
                .read_exact_at(buf, at)
                .map_err(|e| StorageError::io(self.seg.path.as_ref(), e))
        };
        let result = read(&mut head, self.pos).and_then(|()| BatchHeader::parse(&head));
        let header = match result {
            Ok(h) => h,
            Err(e) => {
                self.pos = self.seg.size;
                return Some(Err(e));
            }
        };
        let size = header.total_size();
        if self.pos + size as u64 > self.seg.size {
            self.pos = self.seg.size;
            return Some(Err(StorageError::CorruptBatch(format!(
                "batch at {} of {} runs past the end",
                self.pos,
                self.seg.path.display()
            ))));
        }
        let mut bytes = vec![0u8; size];
        if let Err(e) = read(&mut bytes, self.pos) {
            self.pos = self.seg.size;
            return Some(Err(e));
        }
        self.pos += size as u64;
        Some(Ok((header, bytes)))
    }
}

fn batches(seg: &SegmentFile) -> Batches<'_> {
    Batches { seg, pos: 0 }
}

impl CompactionJob {
    /// Compacts into new files next to the log; `throttle` is told every byte read and
    /// written, and may sleep to keep the cleaner within its I/O budget.
    pub fn run(&self, throttle: &mut dyn FnMut(u64)) -> Result<CompactionOutput> {
        let mut stats = CompactionStats::default();
        let (latest, cleaned_up_to) = self.index_dirty_keys(&mut stats, throttle)?;
        let (last_batch_of_producer, transactional) = self.last_batch_of_each_producer()?;
        let mut txns = if transactional {
            self.transactions(cleaned_up_to, &mut stats, throttle)?
        } else {
            Transactions::default()
        };
        let mut groups = Vec::new();
        let mut group: Vec<&SegmentFile> = Vec::new();
        let mut group_size = 0u64;
        let relevant: Vec<&SegmentFile> = self
            .segments
            .iter()
            .filter(|s| s.base_offset < cleaned_up_to)
            .collect();
        for seg in relevant {
            if !group.is_empty() && group_size + seg.size > self.settings.segment_bytes {
                groups.push(self.write_group(
                    &group,
                    &latest,
                    cleaned_up_to,
                    (&last_batch_of_producer, &mut txns),
                    &mut stats,
                    throttle,
                )?);
                group.clear();
                group_size = 0;
            }
            group_size += seg.size;
            group.push(seg);
        }
        if !group.is_empty() {
            groups.push(self.write_group(
                &group,
                &latest,
                cleaned_up_to,
                (&last_batch_of_producer, &mut txns),
                &mut stats,
                throttle,
            )?);
        }
        let removed_abort_markers = std::mem::take(&mut txns.removed);
        Ok(CompactionOutput {
            groups,
            inputs: self
                .segments
                .iter()
                .map(|s| (s.base_offset, s.size))
                .collect(),
            cleaned_up_to,
            next_tombstone_expiry_ms: stats.next_tombstone_expiry_ms,
            removed_abort_markers,
            stats,
        })
    }

    /// The latest offset of every key in the dirty part. If the index would outgrow the
    /// dedupe buffer, the pass stops at a segment boundary and the rest waits for the next.
    fn index_dirty_keys(
        &self,
        stats: &mut CompactionStats,
        throttle: &mut dyn FnMut(u64),
    ) -> Result<(HashMap<u128, i64>, i64)> {
        let max_keys = (self.settings.dedupe_buffer_bytes / BYTES_PER_KEY).max(1);
        let mut latest: HashMap<u128, i64> = HashMap::new();
        let mut end = self.state.first_dirty;
        for seg in &self.segments {
            if seg.next_offset <= self.state.first_dirty {
                continue;
            }
            if latest.len() >= max_keys && end > self.state.first_dirty {
                break;
            }
            for item in batches(seg) {
                let (header, bytes) = item?;
                stats.bytes_read += bytes.len() as u64;
                throttle(bytes.len() as u64);
                if header.is_control() || header.last_offset() < self.state.first_dirty {
                    continue;
                }
                for r in decode_records(&bytes)? {
                    if r.offset < self.state.first_dirty {
                        continue;
                    }
                    if let Some(k) = &r.key {
                        latest.insert(key_hash(k), r.offset);
                    }
                }
            }
            end = end.max(seg.next_offset);
        }
        Ok((latest, end))
    }

    /// The last batch of each idempotent producer in the job, which must stay (possibly
    /// empty) so the producer's sequence survives a restart; and whether the job holds
    /// any transactional batch.
    fn last_batch_of_each_producer(&self) -> Result<(HashSet<i64>, bool)> {
        let mut last: HashMap<i64, i64> = HashMap::new();
        let mut transactional = false;
        for seg in &self.segments {
            crate::segment::for_each_header_in(&seg.file, &seg.path, seg.size, |h| {
                if h.has_producer_id() {
                    last.insert(h.producer_id, h.base_offset);
                }
                transactional |= h.is_transactional();
            })?;
        }
        Ok((last.into_values().collect(), transactional))
    }

    /// Which transactions ended with an abort inside the part this pass compacts. A
    /// transaction whose marker lies beyond it (or in the active segment) is still open
    /// as far as this pass knows, and its records stay.
    fn transactions(
        &self,
        cleaned_up_to: i64,
        stats: &mut CompactionStats,
        throttle: &mut dyn FnMut(u64),
    ) -> Result<Transactions> {
        let mut open: HashMap<i64, Vec<i64>> = HashMap::new();
        let mut txns = Transactions::default();
        for seg in self
            .segments
            .iter()
            .filter(|s| s.base_offset < cleaned_up_to)
        {
            for item in batches(seg) {
                let (header, bytes) = item?;
                stats.bytes_read += bytes.len() as u64;
                throttle(bytes.len() as u64);
                if !header.is_transactional() || header.base_offset >= cleaned_up_to {
                    continue;
                }
                if !header.is_control() {
                    open.entry(header.producer_id)
                        .or_default()
                        .push(header.base_offset);
                    continue;
                }
                let batches = open.remove(&header.producer_id).unwrap_or_default();
                if crate::control::control_type(&bytes)? == Some(ControlType::Abort) {
                    txns.aborted_batches.extend(batches);
                    txns.abort_markers.insert(header.base_offset);
                }
            }
        }
        Ok(txns)
    }

    /// Whether a tombstone or abort marker at `offset` has been clean for
    /// `delete.retention.ms` (its clock starts when it joins the clean log: now, for a
    /// dirty one). One that stays sets when the next pass is due.
    fn retention_over(&self, offset: i64, stats: &mut CompactionStats) -> bool {
        let cleaned_at = self.state.cleaned_at(offset).unwrap_or(self.now_ms);
        let expires = cleaned_at.saturating_add(self.settings.delete_retention_ms);
        if self.now_ms >= expires {
            return true;
        }
        stats.next_tombstone_expiry_ms = Some(
            stats
                .next_tombstone_expiry_ms
                .map_or(expires, |e| e.min(expires)),
        );
        false
    }

    fn keep(
        &self,
        r: &DecodedRecord,
        latest: &HashMap<u128, i64>,
        stats: &mut CompactionStats,
    ) -> bool {
        let Some(key) = &r.key else {
            // Compacted topics refuse keyless records; any that exist are left alone.
            return true;
        };
        if latest.get(&key_hash(key)).is_some_and(|o| *o > r.offset) {
            return false;
        }
        if r.value.is_none() && self.retention_over(r.offset, stats) {
            stats.tombstones_removed += 1;
            return false;
        }
        true
    }

    #[allow(clippy::too_many_arguments)] // one pass over the inputs; a struct of borrowed buffers would only rename them
    fn write_group(
        &self,
        group: &[&SegmentFile],
        latest: &HashMap<u128, i64>,
        cleaned_up_to: i64,
        (keep_producer_batches, txns): (&HashSet<i64>, &mut Transactions),
        stats: &mut CompactionStats,
        throttle: &mut dyn FnMut(u64),
    ) -> Result<(i64, Vec<i64>)> {
        let base = group[0].base_offset;
        let path = self
            .dir
            .join(format!("{}.{CLEANED_SUFFIX}", file_name(base, "log")));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        let mut out = BufWriter::new(file);
        let write = |out: &mut BufWriter<File>, bytes: &[u8]| {
            out.write_all(bytes).map_err(|e| StorageError::io(&path, e))
        };
        for seg in group {
            for item in batches(seg) {
                let (header, bytes) = item?;
                throttle(bytes.len() as u64);
                if header.base_offset < cleaned_up_to {
                    // An abort marker that is its producer's last batch keeps the
                    // producer's epoch in the log: it stays.
                    if txns.abort_markers.contains(&header.base_offset)
                        && !keep_producer_batches.contains(&header.base_offset)
                        && self.retention_over(header.base_offset, stats)
                    {
                        stats.abort_markers_removed += 1;
                        txns.removed.push(header.base_offset);
                        continue;
                    }
                    if txns.aborted_batches.contains(&header.base_offset) {
                        // Never a producer's last batch: its abort marker comes after it.
                        stats.aborted_records_removed += header.records_count.max(0) as u64;
                        continue;
                    }
                }
                // Other control batches (markers) and anything past this pass's dirty
                // end are copied as they are.
                if header.is_control() || header.base_offset >= cleaned_up_to {
                    stats.bytes_written += bytes.len() as u64;
                    write(&mut out, &bytes)?;
                    continue;
                }
                let records = decode_records(&bytes)?;
                let total = records.len();
                let kept: Vec<DecodedRecord> = records
                    .into_iter()
                    .filter(|r| self.keep(r, latest, stats))
                    .collect();
                stats.records_kept += kept.len() as u64;
                stats.records_removed += (total - kept.len()) as u64;
                if kept.len() == total {
                    stats.bytes_written += bytes.len() as u64;
                    write(&mut out, &bytes)?;
                } else if !kept.is_empty()
                    || (header.has_producer_id()
                        && keep_producer_batches.contains(&header.base_offset))
                {
                    let rebuilt = rebuild_batch(&header, &kept)?;
                    // A codec can, rarely, pack fewer records into more bytes; then the
                    // batch stays as it was (superseded records are only kept longer),
                    // so a pass never writes more than it read.
                    let bytes = if rebuilt.len() <= bytes.len() {
                        rebuilt
                    } else {
                        bytes
                    };
                    stats.bytes_written += bytes.len() as u64;
                    throttle(bytes.len() as u64);
                    write(&mut out, &bytes)?;
                }
            }
        }
        let file = out
            .into_inner()
            .map_err(|e| StorageError::io(&path, e.into_error()))?;
        file.sync_all().map_err(|e| StorageError::io(&path, e))?;
        Ok((base, group.iter().map(|s| s.base_offset).collect()))
    }
}

/// Removes leftovers of a compaction that a crash interrupted, and completes one that had
/// reached the swap: a `.swap` segment replaces every segment it covers.
pub fn recover_interrupted(dir: &Path) -> Result<()> {
    let mut swaps = Vec::new();
    for entry in fs::read_dir(dir)
        .map_err(|e| StorageError::io(dir, e))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(&format!(".{CLEANED_SUFFIX}")) {
            let _ = fs::remove_file(entry.path());
        } else if let Some(stem) = name.strip_suffix(&format!(".log.{SWAP_SUFFIX}")) {
            if let Ok(base) = stem.parse::<i64>() {
                swaps.push(base);
            }
        }
    }
    for base in swaps {
        let swap = dir.join(format!("{}.{SWAP_SUFFIX}", file_name(base, "log")));
        let swap_file = File::open(&swap).map_err(|e| StorageError::io(&swap, e))?;
        let size = swap_file
            .metadata()
            .map_err(|e| StorageError::io(&swap, e))?
            .len();
        let mut next = base;
        crate::segment::for_each_header_in(
            &Arc::new(swap_file),
            &Arc::new(swap.clone()),
            size,
            |h| {
                next = next.max(h.next_offset());
            },
        )?;
        // Old segments the swap covers go; then the swap takes the first one's name.
        for entry in fs::read_dir(dir)
            .map_err(|e| StorageError::io(dir, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".log") else {
                continue;
            };
            if let Ok(b) = stem.parse::<i64>() {
                if b >= base && b < next {
                    crate::segment::Segment::delete_files(dir, b)?;
                }
            }
        }
        let target = dir.join(file_name(base, "log"));
        fs::rename(&swap, &target).map_err(|e| StorageError::io(&swap, e))?;
        crate::checkpoint::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_merge_without_shortening_tombstone_life() {
        let mut s = CleanerState::default();
        for i in 1..=20 {
            s.record_pass(i * 100, i * 1_000);
        }
        assert_eq!(s.marks.len(), 16);
        assert_eq!(s.first_dirty, 2_000);
        // Offset 50 was first cleaned at 1_000; merging may only make that later.
        assert!(s.cleaned_at(50).is_some_and(|t| t >= 1_000));
        assert_eq!(s.cleaned_at(1_950), Some(20_000));
        assert_eq!(s.cleaned_at(2_000), None);
    }
}
