//! The two cleanup policies of a log: delete (retention by time and size) and compact
//! (planning a cleaner pass and swapping its output in).

use std::fs;

use tracing::info;

use super::PartitionLog;
use crate::checkpoint;
use crate::cleaner::{self, CleanerState, CompactionJob, CompactionOutput, CompactionSettings};
use crate::error::StorageError;
use crate::segment::Segment;
use crate::Result;

impl PartitionLog {
    /// Applies `retention.ms` and `retention.bytes`: deletes whole segments from the
    /// front, never past `max_deletable_offset` (the high watermark). Returns the number
    /// of segments deleted.
    pub fn enforce_retention(&mut self, now_ms: i64, max_deletable_offset: i64) -> Result<usize> {
        if !self.config.cleanup_policy.delete {
            return Ok(0);
        }
        let retention_ms = self.config.retention_ms;
        // Roll an expired active segment so that it can be deleted too, as Kafka does.
        let active = self.active();
        if retention_ms >= 0
            && !active.is_empty()
            && active.next_offset() <= max_deletable_offset
            && segment_expired(active, now_ms, retention_ms)
        {
            self.roll(now_ms)?;
        }
        let mut excess = if self.config.retention_bytes >= 0 {
            self.size_bytes() as i64 - self.config.retention_bytes
        } else {
            0
        };
        let mut doomed = Vec::new();
        let last_base = self.active().base_offset();
        for (base, seg) in &self.segments {
            if *base == last_base || seg.next_offset() > max_deletable_offset {
                break;
            }
            let by_time = retention_ms >= 0 && segment_expired(seg, now_ms, retention_ms);
            let by_size = excess > 0 && seg.size() as i64 <= excess;
            if !(by_time || by_size) {
                break;
            }
            excess -= seg.size() as i64;
            doomed.push(*base);
        }
        for base in &doomed {
            if let Some(seg) = self.segments.remove(base) {
                seg.delete()?;
            }
        }
        if !doomed.is_empty() {
            let first = self.first_segment().base_offset();
            self.log_start_offset = self.log_start_offset.max(first);
            self.epoch_cache.truncate_from_start(self.log_start_offset);
            self.persist_meta()?;
            info!(dir = %self.dir.display(), segments = doomed.len(), log_start_offset = self.log_start_offset, "retention deleted segments");
        }
        Ok(doomed.len())
    }

    /// Compaction progress (the first dirty offset and tombstone clocks).
    pub fn cleaner_state(&self) -> &CleanerState {
        &self.cleaner
    }

    /// Plans a compaction if this log is compacted and enough of it is dirty (or a
    /// tombstone is due to expire). Only closed segments wholly below `max_offset` (the
    /// high watermark) and older than `min.compaction.lag.ms` are included.
    pub fn plan_compaction(
        &self,
        now_ms: i64,
        max_offset: i64,
        dedupe_buffer_bytes: usize,
    ) -> Option<CompactionJob> {
        if !self.config.cleanup_policy.compact {
            return None;
        }
        let active_base = self.active().base_offset();
        let lag_limit = now_ms.saturating_sub(self.config.min_compaction_lag_ms);
        let mut segments = Vec::new();
        for seg in self.segments.values() {
            if seg.base_offset() == active_base
                || seg.next_offset() > max_offset
                || (self.config.min_compaction_lag_ms > 0 && seg.max_timestamp() > lag_limit)
            {
                break;
            }
            segments.push(seg.snapshot());
        }
        let first_dirty = self.cleaner.first_dirty;
        let dirty: Vec<&cleaner::SegmentFile> = segments
            .iter()
            .filter(|s| s.next_offset > first_dirty)
            .collect();
        let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
        let total_bytes: u64 = segments.iter().map(|s| s.size).sum();
        let ratio_due = total_bytes > 0
            && dirty_bytes > 0
            && dirty_bytes as f64 / total_bytes as f64 >= self.config.min_cleanable_dirty_ratio;
        let lag_due = self.config.max_compaction_lag_ms < i64::MAX
            && dirty.iter().any(|s| {
                s.max_timestamp >= 0
                    && now_ms.saturating_sub(s.max_timestamp) >= self.config.max_compaction_lag_ms
            });
        let tombstones_due = self
            .cleaner
            .next_tombstone_expiry_ms
            .is_some_and(|t| now_ms >= t);
        if segments.is_empty() || !(ratio_due || lag_due || tombstones_due) {
            return None;
        }
        Some(CompactionJob {
            dir: self.dir.clone(),
            segments,
            state: self.cleaner.clone(),
            settings: CompactionSettings {
                delete_retention_ms: self.config.delete_retention_ms,
                segment_bytes: self.config.segment_bytes,
                dedupe_buffer_bytes,
            },
            now_ms,
        })
    }

    /// Swaps compacted segments in, unless the segments they replace changed since the
    /// job was planned (a truncation); then the output is discarded and false returned.
    pub fn finish_compaction(&mut self, output: CompactionOutput, now_ms: i64) -> Result<bool> {
        let unchanged = output
            .inputs
            .iter()
            .all(|(base, size)| self.segments.get(base).is_some_and(|s| s.size() == *size))
            && output
                .groups
                .iter()
                .all(|(_, olds)| olds.iter().all(|b| *b != self.active().base_offset()));
        if !unchanged {
            for (base, _) in &output.groups {
                let _ = fs::remove_file(self.dir.join(format!(
                    "{}.{}",
                    crate::segment::file_name(*base, "log"),
                    cleaner::CLEANED_SUFFIX
                )));
            }
            return Ok(false);
        }
        for (base, olds) in &output.groups {
            let log_name = crate::segment::file_name(*base, "log");
            let cleaned = self
                .dir
                .join(format!("{log_name}.{}", cleaner::CLEANED_SUFFIX));
            let swap = self
                .dir
                .join(format!("{log_name}.{}", cleaner::SWAP_SUFFIX));
            // From here a crash is completed by `cleaner::recover_interrupted` on open.
            fs::rename(&cleaned, &swap).map_err(|e| StorageError::io(&cleaned, e))?;
            checkpoint::sync_dir(&self.dir)?;
            for b in olds {
                if let Some(seg) = self.segments.remove(b) {
                    seg.delete()?;
                }
            }
            let target = self.dir.join(&log_name);
            fs::rename(&swap, &target).map_err(|e| StorageError::io(&swap, e))?;
            checkpoint::sync_dir(&self.dir)?;
            let (seg, _) = Segment::recover(&self.dir, *base, self.config.index_interval_bytes)?;
            self.segments.insert(*base, seg);
        }
        self.cleaner.record_pass(output.cleaned_up_to, now_ms);
        self.cleaner.next_tombstone_expiry_ms = output.next_tombstone_expiry_ms;
        self.persist_meta()?;
        Ok(true)
    }
}

fn segment_expired(seg: &Segment, now_ms: i64, retention_ms: i64) -> bool {
    let newest = if seg.max_timestamp() >= 0 {
        seg.max_timestamp()
    } else {
        seg.created_ms().unwrap_or(now_ms)
    };
    now_ms.saturating_sub(newest) > retention_ms
}
