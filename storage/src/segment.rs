//! One segment of a partition log: `<base>.log`, `<base>.index`, `<base>.timeindex`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, IoSlice, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use crate::error::StorageError;
use crate::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::writeback;
use crate::Result;

/// A byte range of a segment file that holds whole batches, read outside the log lock.
#[derive(Clone, Debug)]
pub struct FileRange {
    pub file: Arc<File>,
    pub path: Arc<PathBuf>,
    pub position: u64,
    pub len: u64,
}

impl FileRange {
    /// The range's bytes in a reused buffer, for answers to fetches (see `read_pool`).
    pub fn read_shared(&self) -> Result<bytes::Bytes> {
        let len = usize::try_from(self.len).map_err(|_| {
            StorageError::io(
                self.path.as_ref(),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "range too large"),
            )
        })?;
        crate::read_pool::read_at(&self.file, self.position, len)
            .map_err(|e| StorageError::io(self.path.as_ref(), e))
    }

    pub fn read(&self) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; self.len as usize];
        self.file
            .read_exact_at(&mut buf, self.position)
            .map_err(|e| StorageError::io(self.path.as_ref(), e))?;
        Ok(buf)
    }
}

/// Batch headers of a segment file from a byte position to the segment's end, in order,
/// each with its position. Reads 61 bytes per batch, never the bodies.
struct Headers {
    file: Arc<File>,
    path: Arc<PathBuf>,
    pos: u64,
    end: u64,
}

impl Iterator for Headers {
    type Item = Result<(u64, BatchHeader)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos + HEADER_SIZE as u64 > self.end {
            return None;
        }
        let mut head = [0u8; HEADER_SIZE];
        let parsed = self
            .file
            .read_exact_at(&mut head, self.pos)
            .map_err(|e| StorageError::io(self.path.as_ref(), e))
            .and_then(|()| BatchHeader::parse(&head));
        match parsed {
            Ok(h) => {
                let at = self.pos;
                self.pos += h.total_size() as u64;
                Some(Ok((at, h)))
            }
            Err(e) => {
                self.pos = self.end;
                Some(Err(e))
            }
        }
    }
}

/// Calls `f` with every batch header of the first `size` bytes of a segment file.
pub fn for_each_header_in(
    file: &Arc<File>,
    path: &Arc<PathBuf>,
    size: u64,
    mut f: impl FnMut(&BatchHeader),
) -> Result<()> {
    let headers = Headers {
        file: Arc::clone(file),
        path: Arc::clone(path),
        pos: 0,
        end: size,
    };
    for item in headers {
        f(&item?.1);
    }
    Ok(())
}

pub fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    log_path: Arc<PathBuf>,
    file: Arc<File>,
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index: u64,
    next_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    /// Wall-clock time of the first append, which `segment.ms` counts from.
    created_ms: Option<i64>,
    unflushed: bool,
    /// Bytes before this position have had their writeback started.
    written_back: u64,
}

/// What a segment read found.
#[derive(Debug)]
pub enum SegmentRead {
    Range(FileRange),
    /// A batch here holds the offset, but it does not fit the limits.
    Stopped,
    /// No batch here holds the offset or any later one.
    NothingHere,
}

/// What recovering a segment found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOutcome {
    pub valid_bytes: u64,
    pub truncated_bytes: u64,
    pub batches: u64,
}

impl Segment {
    fn open_file(path: &Path, create: bool) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(create)
            .open(path)
            .map_err(|e| StorageError::io(path, e))
    }

    fn empty(dir: &Path, base_offset: i64, file: File) -> Self {
        Segment {
            base_offset,
            log_path: Arc::new(dir.join(file_name(base_offset, "log"))),
            file: Arc::new(file),
            size: 0,
            offset_index: OffsetIndex::new_empty(dir.join(file_name(base_offset, "index"))),
            time_index: TimeIndex::new_empty(dir.join(file_name(base_offset, "timeindex"))),
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            created_ms: None,
            unflushed: false,
            written_back: 0,
        }
    }

    /// Creates a new, empty segment (truncating any leftover file of the same name).
    pub fn create(dir: &Path, base_offset: i64) -> Result<Self> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = Self::open_file(&path, true)?;
        file.set_len(0).map_err(|e| StorageError::io(&path, e))?;
        for ext in ["index", "timeindex"] {
            let p = dir.join(file_name(base_offset, ext));
            if p.exists() {
                fs::remove_file(&p).map_err(|e| StorageError::io(&p, e))?;
            }
        }
        Ok(Self::empty(dir, base_offset, file))
    }

    /// Opens a segment that was flushed before the last stop: indexes are loaded from
    /// disk (or rebuilt if unusable) and only batch headers after the last index entry are
    /// read to find the end offset and max timestamp.
    pub fn open_trusted(dir: &Path, base_offset: i64, index_interval: u64) -> Result<Self> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = Self::open_file(&path, false)?;
        let size = file
            .metadata()
            .map_err(|e| StorageError::io(&path, e))?
            .len();
        let mut seg = Self::empty(dir, base_offset, file);
        seg.size = size;
        let offset_index = OffsetIndex::load(seg.offset_index.path().to_path_buf());
        let time_index = TimeIndex::load(seg.time_index.path().to_path_buf());
        match (offset_index, time_index) {
            (Some(oi), Some(ti)) if oi.last().is_none_or(|e| u64::from(e.position) < size) => {
                seg.offset_index = oi;
                seg.time_index = ti;
                if let Some(t) = seg.time_index.last().copied() {
                    seg.max_timestamp = t.timestamp;
                    seg.offset_of_max_timestamp = base_offset + i64::from(t.relative_offset);
                }
                let start = seg
                    .offset_index
                    .last()
                    .map(|e| u64::from(e.position))
                    .unwrap_or(0);
                seg.scan_headers_from(start, |_, _| {})?;
                seg.created_ms = if size > 0 {
                    Some(file_mtime_ms(&path))
                } else {
                    None
                };
                Ok(seg)
            }
            _ => {
                let (seg, _) = Self::recover(dir, base_offset, index_interval)?;
                Ok(seg)
            }
        }
    }

    /// Opens a segment after an unclean stop: every batch is read and CRC-checked, the
    /// file is cut at the first invalid byte, and both indexes are rebuilt.
    pub fn recover(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
    ) -> Result<(Self, RecoveryOutcome)> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = Self::open_file(&path, true)?;
        let file_len = file
            .metadata()
            .map_err(|e| StorageError::io(&path, e))?
            .len();
        let mut seg = Self::empty(dir, base_offset, file);
        seg.offset_index.clear();
        seg.time_index.clear();
        let file_for_scan = Arc::clone(&seg.file);
        let mut reader = BufReader::with_capacity(1 << 20, &*file_for_scan);
        let mut pos: u64 = 0;
        let mut batches = 0u64;
        let mut buf = Vec::new();
        loop {
            let mut head = [0u8; LOG_OVERHEAD];
            if read_full(&mut reader, &mut head).map_err(|e| StorageError::io(&path, e))?
                < LOG_OVERHEAD
            {
                break;
            }
            let len = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
            if len < (HEADER_SIZE - LOG_OVERHEAD) as i32
                || pos + LOG_OVERHEAD as u64 + len as u64 > file_len
            {
                break;
            }
            buf.clear();
            buf.extend_from_slice(&head);
            buf.resize(LOG_OVERHEAD + len as usize, 0);
            if read_full(&mut reader, &mut buf[LOG_OVERHEAD..])
                .map_err(|e| StorageError::io(&path, e))?
                < len as usize
            {
                break;
            }
            let header = match batch::validate(&buf) {
                Ok(h) => h,
                Err(_) => break,
            };
            if header.base_offset < seg.next_offset
                || header.last_offset() - base_offset > i64::from(u32::MAX >> 1)
            {
                break;
            }
            seg.index_batch(&header, pos, index_interval);
            pos += buf.len() as u64;
            batches += 1;
        }
        let truncated = file_len - pos;
        if truncated > 0 {
            seg.file
                .set_len(pos)
                .map_err(|e| StorageError::io(&path, e))?;
        }
        seg.size = pos;
        seg.unflushed = true;
        seg.created_ms = if pos > 0 {
            Some(file_mtime_ms(&path))
        } else {
            None
        };
        Ok((
            seg,
            RecoveryOutcome {
                valid_bytes: pos,
                truncated_bytes: truncated,
                batches,
            },
        ))
    }

    /// Reads batch headers from `start` to the end of the file, updating end offset and
    /// max timestamp, calling `f(position, header)` for each.
    fn scan_headers_from(
        &mut self,
        start: u64,
        mut f: impl FnMut(u64, &BatchHeader),
    ) -> Result<()> {
        for item in self.headers_from(start) {
            let (pos, h) = item?;
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.offset_of_max_timestamp = h.last_offset();
            }
            self.next_offset = h.next_offset();
            f(pos, &h);
        }
        Ok(())
    }

    fn headers_from(&self, pos: u64) -> Headers {
        Headers {
            file: Arc::clone(&self.file),
            path: Arc::clone(&self.log_path),
            pos,
            end: self.size,
        }
    }

    fn index_batch(&mut self, h: &BatchHeader, position: u64, index_interval: u64) {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
        if self.bytes_since_index >= index_interval || self.offset_index.entries().is_empty() {
            self.offset_index.push(OffsetEntry {
                relative_offset: (h.base_offset - self.base_offset) as u32,
                position: position as u32,
            });
            self.push_time_entry();
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_size() as u64;
        self.next_offset = h.next_offset();
        self.size = position + h.total_size() as u64;
    }

    fn push_time_entry(&mut self) {
        if self.max_timestamp < 0 {
            return;
        }
        let rel = (self.offset_of_max_timestamp - self.base_offset) as u32;
        match self.time_index.last() {
            Some(last) if last.timestamp >= self.max_timestamp || last.relative_offset >= rel => {}
            _ => self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                relative_offset: rel,
            }),
        }
    }

    /// Appends whole batches whose offsets are already final, given as consecutive byte
    /// slices (`total` bytes in all) written with one vectored write where possible.
    /// `headers` holds each batch's position relative to the start of the appended bytes.
    pub fn append(
        &mut self,
        parts: &[&[u8]],
        total: u64,
        headers: &[(u64, BatchHeader)],
        index_interval: u64,
        now_ms: i64,
    ) -> Result<()> {
        if let Err(e) = write_all_vectored(&self.file, parts) {
            // A partial write must not stay in the file: later appends would land after
            // garbage. Cut back to the last whole batch before reporting the failure.
            let _ = self.file.set_len(self.size);
            return Err(StorageError::io(self.log_path.as_ref(), e));
        }
        let start = self.size;
        for (rel_pos, h) in headers {
            self.index_batch(h, start + rel_pos, index_interval);
        }
        self.size = start + total;
        self.created_ms.get_or_insert(now_ms);
        self.unflushed = true;
        if self.size - self.written_back >= writeback::CHUNK {
            writeback::start(&self.file, self.written_back, self.size - self.written_back);
            self.written_back = self.size;
        }
        Ok(())
    }

    /// Byte position of the first batch whose last offset is `>= offset`, with that
    /// batch's header; `None` if the segment holds no such batch.
    pub fn locate(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let rel = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let start = self
            .offset_index
            .floor_by(rel, |e| e.relative_offset)
            .map(|e| u64::from(e.position))
            .unwrap_or(0);
        for item in self.headers_from(start) {
            let (pos, h) = item?;
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
        }
        Ok(None)
    }

    /// Plans a read of whole batches starting at the batch holding `offset`, stopping
    /// before `max_bytes` would be exceeded (but always including the first batch when
    /// `min_one` is set) and before any batch that reaches `max_offset` (exclusive).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: u64,
        max_offset: i64,
        min_one: bool,
    ) -> Result<SegmentRead> {
        let Some((start, first)) = self.locate(offset)? else {
            return Ok(SegmentRead::NothingHere);
        };
        let mut end = start;
        let mut head = [0u8; HEADER_SIZE];
        let mut h = first;
        loop {
            if h.last_offset() >= max_offset {
                break;
            }
            let next_end = end + h.total_size() as u64;
            if next_end - start > max_bytes && !(min_one && end == start) {
                break;
            }
            end = next_end;
            if end + HEADER_SIZE as u64 > self.size {
                break;
            }
            self.file
                .read_exact_at(&mut head, end)
                .map_err(|e| StorageError::io(self.log_path.as_ref(), e))?;
            h = BatchHeader::parse(&head)?;
        }
        if end == start {
            return Ok(SegmentRead::Stopped);
        }
        Ok(SegmentRead::Range(FileRange {
            file: Arc::clone(&self.file),
            path: Arc::clone(&self.log_path),
            position: start,
            len: end - start,
        }))
    }

    /// Removes every batch holding an offset `>= offset`, including a batch that straddles
    /// it, so the segment then ends at or before `offset`. Returns the bytes removed.
    pub fn truncate_to(&mut self, offset: i64) -> Result<u64> {
        let cut = match self.locate(offset)? {
            Some((pos, _)) => pos,
            None => return Ok(0),
        };
        let removed = self.size - cut;
        if removed == 0 {
            return Ok(0);
        }
        self.file
            .set_len(cut)
            .map_err(|e| StorageError::io(self.log_path.as_ref(), e))?;
        self.size = cut;
        self.written_back = self.written_back.min(cut);
        let rel = (offset - self.base_offset).max(0) as u32;
        self.offset_index
            .truncate_where(|e| e.relative_offset < rel && u64::from(e.position) < cut);
        self.time_index.truncate_where(|e| e.relative_offset < rel);
        self.next_offset = self.base_offset;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        if let Some(t) = self.time_index.last().copied() {
            self.max_timestamp = t.timestamp;
            self.offset_of_max_timestamp = self.base_offset + i64::from(t.relative_offset);
        }
        let start = self
            .offset_index
            .last()
            .map(|e| u64::from(e.position))
            .unwrap_or(0);
        let mut last_pos = start;
        self.scan_headers_from(start, |p, _| last_pos = p)?;
        self.bytes_since_index = self.size - last_pos.min(self.size);
        if self.size == 0 {
            self.created_ms = None;
        }
        self.unflushed = true;
        Ok(removed)
    }

    /// First batch whose max timestamp is `>= ts`, as `(offset, timestamp)` of its first
    /// qualifying record when the batch is readable, else of the batch itself.
    pub fn find_by_timestamp(&self, ts: i64, from_offset: i64) -> Result<Option<(i64, i64)>> {
        let start_rel = self
            .time_index
            .floor_by(ts.saturating_sub(1), |e| e.timestamp)
            .map(|e| e.relative_offset)
            .unwrap_or(0);
        let start_offset = (self.base_offset + i64::from(start_rel)).max(from_offset);
        let Some((start, _)) = self.locate(start_offset)? else {
            return Ok(None);
        };
        for item in self.headers_from(start) {
            let (pos, h) = item?;
            if h.max_timestamp >= ts && h.last_offset() >= from_offset {
                let range = FileRange {
                    file: Arc::clone(&self.file),
                    path: Arc::clone(&self.log_path),
                    position: pos,
                    len: h.total_size() as u64,
                };
                let exact = range.read().ok().and_then(|b| {
                    crate::builder::decode_records(&b).ok().and_then(|recs| {
                        recs.into_iter()
                            .find(|r| r.timestamp >= ts && r.offset >= from_offset)
                            .map(|r| (r.offset, r.timestamp))
                    })
                });
                return Ok(Some(
                    exact.unwrap_or((h.base_offset.max(from_offset), h.max_timestamp)),
                ));
            }
        }
        Ok(None)
    }

    /// Calls `f` with the header of every batch in the segment, in order.
    /// The segment as an immutable file, for work done outside the partition lock.
    pub fn snapshot(&self) -> crate::cleaner::SegmentFile {
        crate::cleaner::SegmentFile {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            size: self.size,
            max_timestamp: self.max_timestamp,
            file: Arc::clone(&self.file),
            path: Arc::clone(&self.log_path),
        }
    }

    /// Like [`Segment::for_each_header`], with each transaction marker (read from the
    /// file; markers are a few dozen bytes).
    pub fn for_each_header_and_marker(
        &self,
        mut f: impl FnMut(&BatchHeader, Option<crate::control::Marker>),
    ) -> Result<()> {
        for item in self.headers_from(0) {
            let (pos, h) = item?;
            let kind = if h.is_control() {
                let mut buf = vec![0u8; h.total_size()];
                self.file
                    .read_exact_at(&mut buf, pos)
                    .map_err(|e| StorageError::io(self.log_path.as_ref(), e))?;
                crate::control::marker(&buf)?
            } else {
                None
            };
            f(&h, kind);
        }
        Ok(())
    }

    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        for item in self.headers_from(0) {
            f(&item?.1);
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<()> {
        if self.unflushed {
            self.file
                .sync_data()
                .map_err(|e| StorageError::io(self.log_path.as_ref(), e))?;
            self.unflushed = false;
        }
        self.offset_index.flush()?;
        self.time_index.flush()
    }

    /// Adds the closing time-index entry so the segment's max timestamp is indexed.
    pub fn seal(&mut self) {
        self.push_time_entry();
    }

    pub fn delete(self) -> Result<()> {
        let dir = self
            .log_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Self::delete_files(&dir, self.base_offset)
    }

    /// Removes a segment's files by name, whether or not it was ever opened.
    pub fn delete_files(dir: &Path, base_offset: i64) -> Result<()> {
        for ext in ["log", "index", "timeindex"] {
            let p = dir.join(file_name(base_offset, ext));
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(p, e)),
            }
        }
        Ok(())
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }
    pub fn created_ms(&self) -> Option<i64> {
        self.created_ms
    }
    pub fn index_size_bytes(&self) -> u64 {
        self.offset_index.size_bytes()
    }
}

fn write_all_vectored(mut file: &File, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, 0);
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn file_mtime_ms(path: &Path) -> i64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
