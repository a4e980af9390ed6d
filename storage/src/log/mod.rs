//! A partition log: an ordered set of segments with a log start offset, a log end offset,
//! a recovery point and a leader-epoch cache. Its cleanup policies (retention, compaction)
//! are in `cleanup`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{debug, info, warn};

use crate::batch::{self, BatchHeader, TimestampType, ValidatedBatches};
use crate::checkpoint;
use crate::cleaner::{self, CleanerState};
use crate::config::LogConfig;
use crate::epoch_cache::LeaderEpochCache;
use crate::error::StorageError;
use crate::partition_meta::{MetaFile, PartitionMeta, PendingMetaWrite};
use crate::segment::{FileRange, Segment, SegmentRead};
use crate::Result;

pub use crate::segment::FileRange as FetchSlice;

mod cleanup;

const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";

/// What an append wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: i64,
    /// Broker time stamped into the batches when the topic uses LogAppendTime.
    pub log_append_time: Option<i64>,
    pub records: i64,
    pub bytes: usize,
}

#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    recovery_point: i64,
    high_watermark_checkpoint: i64,
    epoch_cache: LeaderEpochCache,
    topic_id: Option<String>,
    unflushed_records: i64,
    first_unflushed_ms: Option<i64>,
    cleaner: CleanerState,
    meta_file: Arc<MetaFile>,
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`. After an unclean stop, every segment from the
    /// recovery point on is scanned and cut at its first invalid byte.
    pub fn open(dir: &Path, config: LogConfig, topic_id: Option<String>) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let meta = PartitionMeta::read(dir)?.unwrap_or_default();
        let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = clean_marker.exists();
        cleaner::recover_interrupted(dir)?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            } else if name.ends_with(checkpoint::TEMP_SUFFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        bases.sort_unstable();

        let mut segments = BTreeMap::new();
        let mut corrupt_at: Option<usize> = None;
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let below_recovery_point = next_base.is_some_and(|n| n <= meta.recovery_point);
            let seg = if clean || below_recovery_point {
                Segment::open_trusted(dir, base, config.index_interval_bytes)?
            } else {
                let (seg, outcome) = Segment::recover(dir, base, config.index_interval_bytes)?;
                if outcome.truncated_bytes > 0 {
                    warn!(
                        dir = %dir.display(),
                        segment = base,
                        valid_bytes = outcome.valid_bytes,
                        truncated_bytes = outcome.truncated_bytes,
                        "recovery truncated a torn or corrupt log tail"
                    );
                    corrupt_at = Some(i);
                }
                seg
            };
            segments.insert(base, seg);
            if corrupt_at.is_some() {
                break;
            }
        }
        if let Some(i) = corrupt_at {
            // Anything after the first corrupt byte follows data we no longer trust.
            for &base in &bases[i + 1..] {
                Segment::delete_files(dir, base)?;
            }
        }
        // Stray index files whose log is gone.
        for entry in fs::read_dir(dir)
            .map_err(|e| StorageError::io(dir, e))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name
                .strip_suffix(".index")
                .or_else(|| name.strip_suffix(".timeindex"));
            if let Some(base) = stem.and_then(|s| s.parse::<i64>().ok()) {
                if !segments.contains_key(&base) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }

        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: meta.log_start_offset,
            recovery_point: meta.recovery_point,
            high_watermark_checkpoint: meta.high_watermark,
            epoch_cache: LeaderEpochCache::from_entries(meta.leader_epochs),
            topic_id: topic_id.or(meta.topic_id),
            unflushed_records: 0,
            first_unflushed_ms: None,
            cleaner: meta.cleaner,
            meta_file: MetaFile::new(dir),
        };
        if log.segments.is_empty() {
            let start = log.log_start_offset.max(0);
            log.segments.insert(start, Segment::create(dir, start)?);
        }
        let first_base = log.first_segment().base_offset();
        log.log_start_offset = log.log_start_offset.max(first_base);
        if log.log_start_offset > log.log_end_offset() {
            // The tail holding the log start was lost: start over empty at the log start.
            let start = log.log_start_offset;
            log.truncate_fully_and_start_at(start)?;
        }
        let leo = log.log_end_offset();
        log.epoch_cache.truncate_from_end(leo);
        log.epoch_cache.truncate_from_start(log.log_start_offset);
        log.high_watermark_checkpoint = log
            .high_watermark_checkpoint
            .clamp(log.log_start_offset, leo);
        for seg in log.segments.values_mut() {
            seg.flush()?;
        }
        log.recovery_point = leo;
        log.persist_meta()?;
        if clean {
            fs::remove_file(&clean_marker).map_err(|e| StorageError::io(&clean_marker, e))?;
            checkpoint::sync_dir(dir)?;
        }
        debug!(dir = %dir.display(), log_start_offset = log.log_start_offset, log_end_offset = leo, clean, "opened partition log");
        Ok(log)
    }

    /// The topic id recorded in a partition directory, without opening the log.
    pub fn stored_topic_id(dir: &Path) -> Result<Option<String>> {
        let meta = PartitionMeta::read(dir)?;
        Ok(meta.and_then(|m| m.topic_id))
    }

    fn persist_meta(&self) -> Result<()> {
        self.prepare_meta_write()?.run()
    }

    fn prepare_meta_write(&self) -> Result<PendingMetaWrite> {
        self.meta_file.prepare(&PartitionMeta {
            topic_id: self.topic_id.clone(),
            log_start_offset: self.log_start_offset,
            recovery_point: self.recovery_point,
            high_watermark: self.high_watermark_checkpoint,
            leader_epochs: self.epoch_cache.entries().to_vec(),
            cleaner: self.cleaner.clone(),
        })
    }

    fn first_segment(&self) -> &Segment {
        self.segments
            .values()
            .next()
            .expect("a log always has at least one segment")
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has at least one segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has at least one segment")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn topic_id(&self) -> Option<&str> {
        self.topic_id.as_deref()
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }
    pub fn high_watermark_checkpoint(&self) -> i64 {
        self.high_watermark_checkpoint
    }
    pub fn epoch_cache(&self) -> &LeaderEpochCache {
        &self.epoch_cache
    }
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epoch_cache.latest().map(|e| e.epoch)
    }
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
    pub fn segment_bases(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// Validates `records` against this log's `max.message.bytes`. Callers on the data
    /// path use [`batch::validate_records`] directly so the CRC pass runs without the lock.
    pub fn validate<'a>(&self, records: &'a [u8]) -> Result<ValidatedBatches<'a>> {
        batch::validate_records(records, self.config.max_message_bytes)
    }

    /// Appends producer batches: assigns offsets from the log end, stamps the leader epoch
    /// (and LogAppendTime if configured) and writes them, then applies the flush policy.
    /// The request buffer is not copied: stamped headers and the untouched batch bodies
    /// go to the file in one vectored write. Either every batch is appended or none is.
    pub fn append_as_leader(
        &mut self,
        records: &ValidatedBatches<'_>,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let first_offset = self.log_end_offset();
        let append_time = match self.config.message_timestamp_type {
            TimestampType::LogAppendTime => Some(now_ms),
            TimestampType::CreateTime => None,
        };
        let mut info = AppendInfo {
            first_offset,
            last_offset: first_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            log_append_time: append_time,
            records: 0,
            bytes: records.bytes().len(),
        };
        let bytes = records.bytes();
        let mut next = first_offset;
        let mut heads = Vec::with_capacity(records.batches().len());
        let mut stored = Vec::with_capacity(records.batches().len());
        for (pos, h) in records.batches() {
            let batch = &bytes[*pos..*pos + h.total_size()];
            let head =
                batch::stamped_header(batch, h.max_timestamp, next, leader_epoch, append_time);
            let stamped = BatchHeader::parse(&head)?;
            if stamped.max_timestamp > info.max_timestamp {
                info.max_timestamp = stamped.max_timestamp;
                info.offset_of_max_timestamp = stamped.last_offset();
            }
            info.records += i64::from(stamped.records_count);
            info.last_offset = stamped.last_offset();
            next = stamped.next_offset();
            heads.push(head);
            stored.push((*pos as u64, stamped));
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * heads.len());
        for ((pos, h), head) in records.batches().iter().zip(&heads) {
            parts.push(head);
            parts.push(&bytes[pos + batch::HEADER_SIZE..pos + h.total_size()]);
        }
        self.append_parts(
            &parts,
            bytes.len() as u64,
            &stored,
            info.last_offset,
            now_ms,
        )?;
        if self.epoch_cache.assign(leader_epoch, first_offset) {
            self.persist_meta()?;
        }
        self.apply_flush_policy(info.records, now_ms)?;
        Ok(info)
    }

    /// Appends batches copied from the leader, keeping their offsets and epochs.
    pub fn append_as_follower(
        &mut self,
        records: &ValidatedBatches<'_>,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let headers = records.batches();
        let mut expected = self.log_end_offset();
        let mut info = AppendInfo {
            first_offset: headers[0].1.base_offset,
            last_offset: expected - 1,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            log_append_time: None,
            records: 0,
            bytes: records.bytes().len(),
        };
        for (_, h) in headers {
            if h.base_offset < expected {
                return Err(StorageError::NonContiguousAppend {
                    expected,
                    got: h.base_offset,
                });
            }
            expected = h.next_offset();
            info.last_offset = h.last_offset();
            info.records += i64::from(h.records_count);
            if h.max_timestamp > info.max_timestamp {
                info.max_timestamp = h.max_timestamp;
                info.offset_of_max_timestamp = h.last_offset();
            }
        }
        let positioned: Vec<(u64, BatchHeader)> =
            headers.iter().map(|(p, h)| (*p as u64, *h)).collect();
        let bytes = records.bytes();
        self.append_parts(
            &[bytes],
            bytes.len() as u64,
            &positioned,
            info.last_offset,
            now_ms,
        )?;
        let mut changed = false;
        for (_, h) in headers {
            changed |= self
                .epoch_cache
                .assign(h.partition_leader_epoch, h.base_offset);
        }
        if changed {
            self.persist_meta()?;
        }
        self.apply_flush_policy(info.records, now_ms)?;
        Ok(info)
    }

    fn append_parts(
        &mut self,
        parts: &[&[u8]],
        total: u64,
        headers: &[(u64, BatchHeader)],
        last_offset: i64,
        now_ms: i64,
    ) -> Result<()> {
        if self.should_roll(total, last_offset, now_ms) {
            self.roll(now_ms)?;
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut()
            .append(parts, total, headers, interval, now_ms)
    }

    fn should_roll(&self, incoming: u64, last_offset: i64, now_ms: i64) -> bool {
        let seg = self.active();
        if seg.is_empty() {
            return false;
        }
        let too_big =
            seg.size() + incoming > self.config.segment_bytes.min(u64::from(u32::MAX >> 1));
        let too_old = seg
            .created_ms()
            .is_some_and(|c| now_ms - c >= self.config.segment_ms);
        let index_full = seg.index_size_bytes() + 8 > self.config.segment_index_bytes;
        let offset_overflow = last_offset - seg.base_offset() > i64::from(i32::MAX);
        too_big || too_old || index_full || offset_overflow
    }

    /// Seals and flushes the active segment and starts a new one at the log end.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        let leo = self.log_end_offset();
        if self.active().is_empty() {
            return Ok(());
        }
        let seg = self.active_mut();
        seg.seal();
        seg.flush()?;
        self.segments.insert(leo, Segment::create(&self.dir, leo)?);
        self.recovery_point = self.recovery_point.max(leo);
        self.unflushed_records = 0;
        self.first_unflushed_ms = None;
        self.persist_meta()?;
        debug!(dir = %self.dir.display(), base_offset = leo, now_ms, "rolled segment");
        Ok(())
    }

    fn apply_flush_policy(&mut self, records: i64, now_ms: i64) -> Result<()> {
        self.unflushed_records += records;
        self.first_unflushed_ms.get_or_insert(now_ms);
        if self.config.fsync_before_ack || self.unflushed_records >= self.config.flush_messages {
            self.flush()?;
        } else {
            self.maybe_flush(now_ms)?;
        }
        Ok(())
    }

    /// Flushes when `flush.ms` has passed since the oldest unflushed append.
    pub fn maybe_flush(&mut self, now_ms: i64) -> Result<bool> {
        match self.first_unflushed_ms {
            Some(first) if now_ms.saturating_sub(first) >= self.config.flush_ms => {
                self.flush()?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// fsyncs every segment with unflushed bytes and moves the recovery point to the end.
    pub fn flush(&mut self) -> Result<()> {
        let rp = self.recovery_point;
        for (_, seg) in self.segments.range_mut(..=self.log_end_offset()) {
            if seg.next_offset() > rp || seg.is_empty() {
                seg.flush()?;
            }
        }
        self.recovery_point = self.log_end_offset();
        self.unflushed_records = 0;
        self.first_unflushed_ms = None;
        Ok(())
    }

    /// Plans a read from `offset`: whole batches from a single segment, at most `max_bytes`
    /// (but at least one batch when `min_one`), none reaching `max_offset` (the high
    /// watermark for consumers). `Ok(None)` means nothing is readable yet.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: u64,
        max_offset: i64,
        min_one: bool,
    ) -> Result<Option<FileRange>> {
        let leo = self.log_end_offset();
        if offset < self.log_start_offset || offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        let limit = max_offset.min(leo);
        if offset >= limit {
            return Ok(None);
        }
        let start_base = self
            .segments
            .range(..=offset)
            .next_back()
            .map(|(b, _)| *b)
            .unwrap_or(self.first_segment().base_offset());
        for (_, seg) in self.segments.range(start_base..) {
            if seg.base_offset() >= limit {
                break;
            }
            match seg.read(offset, max_bytes, limit, min_one)? {
                SegmentRead::Range(range) => return Ok(Some(range)),
                // Answering from a later segment instead would skip that batch.
                SegmentRead::Stopped => return Ok(None),
                // Compaction can leave a segment ending before its successor's base:
                // the next segment answers.
                SegmentRead::NothingHere => {}
            }
        }
        Ok(None)
    }

    /// Removes every record at or after `offset` (follower truncation after a leader
    /// change). Returns true if anything was removed.
    pub fn truncate_to(&mut self, offset: i64) -> Result<bool> {
        let leo = self.log_end_offset();
        if offset >= leo {
            // Nothing to remove, but an epoch this replica started as leader without
            // writing to it still sits at the log end. Left there, it would be the epoch
            // every fetch names, which the new leader never had: the follower would be
            // told to truncate to where it already ends, forever.
            if self.epoch_cache.truncate_from_end(leo) {
                self.persist_meta()?;
            }
            return Ok(false);
        }
        if offset <= self.log_start_offset {
            self.truncate_fully_and_start_at(offset.max(self.log_start_offset))?;
            return Ok(true);
        }
        let doomed: Vec<i64> = self.segments.range(offset..).map(|(b, _)| *b).collect();
        for base in doomed {
            if self.segments.len() == 1 {
                break;
            }
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete()?;
            }
        }
        self.active_mut().truncate_to(offset)?;
        if self.active().next_offset() > offset {
            return Err(StorageError::CorruptBatch(format!(
                "truncation to {offset} left the log ending at {}",
                self.active().next_offset()
            )));
        }
        // The cut falls on a batch boundary, which may be below `offset`.
        let end = self.log_end_offset();
        self.epoch_cache.truncate_from_end(end);
        self.recovery_point = self.recovery_point.min(end);
        self.high_watermark_checkpoint = self.high_watermark_checkpoint.min(end);
        self.persist_meta()?;
        info!(dir = %self.dir.display(), offset, "truncated log");
        Ok(true)
    }

    /// Deletes everything and restarts the log empty at `offset`.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        let all: Vec<i64> = self.segments.keys().copied().collect();
        for base in all {
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete()?;
            }
        }
        self.segments
            .insert(offset, Segment::create(&self.dir, offset)?);
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.high_watermark_checkpoint = offset;
        self.epoch_cache.clear();
        self.persist_meta()
    }

    /// Advances the log start offset (DeleteRecords, or a follower following its leader's
    /// log start) and deletes the segments that fall wholly before it.
    pub fn advance_log_start_offset(&mut self, offset: i64) -> Result<bool> {
        if offset <= self.log_start_offset {
            return Ok(false);
        }
        let leo = self.log_end_offset();
        if offset > leo {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        self.log_start_offset = offset;
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for pair in bases.windows(2) {
            if pair[1] <= offset {
                if let Some(seg) = self.segments.remove(&pair[0]) {
                    seg.delete()?;
                }
            }
        }
        self.epoch_cache.truncate_from_start(offset);
        self.persist_meta()?;
        Ok(true)
    }

    /// Calls `f` with the header of every batch from the log start on, in offset order
    /// (used to rebuild producer state).
    pub fn for_each_batch_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        let start = self.log_start_offset;
        for seg in self.segments.values() {
            seg.for_each_header(|h| {
                if h.last_offset() >= start {
                    f(h)
                }
            })?;
        }
        Ok(())
    }

    /// Like [`PartitionLog::for_each_batch_header`], for the batches at or after `from`,
    /// with each transaction marker (used to rebuild transaction state, in full or after
    /// a snapshot).
    pub fn for_each_batch_and_marker(
        &self,
        from: i64,
        mut f: impl FnMut(&BatchHeader, Option<crate::control::Marker>),
    ) -> Result<()> {
        let start = self.log_start_offset;
        let first_segment = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        for seg in self.segments.range(first_segment..).map(|(_, s)| s) {
            seg.for_each_header_and_marker(|h, marker| {
                if h.last_offset() >= start && h.base_offset >= from {
                    f(h, marker)
                }
            })?;
        }
        Ok(())
    }

    /// First offset whose timestamp is `>= ts`, with that timestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        for seg in self.segments.values() {
            if seg.max_timestamp() < ts {
                continue;
            }
            if let Some(found) = seg.find_by_timestamp(ts, self.log_start_offset)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The largest timestamp in the log and the offset of the first record holding it
    /// (ListOffsets MAX_TIMESTAMP). Segments track it per batch (the batch's last
    /// offset); the record is found by reading that batch, as Kafka does since
    /// KAFKA-16310: a batch of records 0..=2 whose largest timestamp is on record 1
    /// answers 1, not 2.
    pub fn max_timestamp_and_offset(&self) -> Result<Option<(i64, i64)>> {
        let Some((timestamp, batch_last)) = self
            .segments
            .values()
            .filter(|s| s.max_timestamp() >= 0)
            .map(|s| (s.max_timestamp(), s.offset_of_max_timestamp()))
            .fold(None, |acc: Option<(i64, i64)>, cur| match acc {
                Some(a) if a.0 >= cur.0 => Some(a),
                _ => Some(cur),
            })
        else {
            return Ok(None);
        };
        let Some(range) = self.read(batch_last, 1, self.log_end_offset(), true)? else {
            return Ok(Some((timestamp, batch_last)));
        };
        let bytes = range.read()?;
        let Some(item) = batch::BatchIter::new(&bytes).next() else {
            return Ok(Some((timestamp, batch_last)));
        };
        let (batch_range, header) = item?;
        if header.base_offset > batch_last || header.last_offset() < batch_last {
            return Ok(Some((timestamp, batch_last)));
        }
        // Under LogAppendTime every record carries the batch's time: its first record.
        if header.timestamp_type() == TimestampType::LogAppendTime {
            return Ok(Some((timestamp, header.base_offset)));
        }
        let offset = crate::builder::decode_records(&bytes[batch_range])?
            .iter()
            .find(|r| r.timestamp == timestamp)
            .map_or(batch_last, |r| r.offset);
        Ok(Some((timestamp, offset)))
    }

    /// `(epoch, end_offset)` for OffsetForLeaderEpoch.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epoch_cache
            .end_offset_for(epoch, self.log_end_offset())
    }

    /// Records a leader epoch starting at the current log end (on becoming leader).
    pub fn assign_epoch_start(&mut self, epoch: i32) -> Result<()> {
        let leo = self.log_end_offset();
        if self.epoch_cache.assign(epoch, leo) {
            self.persist_meta()?;
        }
        Ok(())
    }

    /// Remembers the high watermark so a restart does not expose less than was committed.
    pub fn checkpoint_high_watermark(&mut self, hw: i64) -> Result<()> {
        match self.prepare_high_watermark_checkpoint(hw)? {
            Some(write) => write.run(),
            None => Ok(()),
        }
    }

    /// The meta write recording `hw`, if it moved, to run once the log is no longer held:
    /// its fsync must not stall appends to this partition.
    pub fn prepare_high_watermark_checkpoint(
        &mut self,
        hw: i64,
    ) -> Result<Option<PendingMetaWrite>> {
        if hw == self.high_watermark_checkpoint {
            return Ok(None);
        }
        self.high_watermark_checkpoint = hw;
        self.prepare_meta_write().map(Some)
    }

    /// Flushes everything and leaves a marker so the next open can skip recovery.
    pub fn close(mut self) -> Result<()> {
        self.flush()?;
        self.persist_meta()?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        fs::write(&marker, b"").map_err(|e| StorageError::io(&marker, e))?;
        checkpoint::sync_dir(&self.dir)
    }

    /// Deletes the log's directory and everything in it.
    pub fn delete(self) -> Result<()> {
        self.meta_file.retire();
        let dir = self.dir.clone();
        drop(self);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(dir, e)),
        }
    }
}
