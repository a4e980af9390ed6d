//! The Kafka v2 RecordBatch header: parsing, validation and the few in-place edits the
//! broker is allowed to make (base offset, leader epoch, LogAppendTime).
//!
//! Layout (big-endian), offsets from the start of the batch:
//! ```text
//!  0 baseOffset i64        8 batchLength i32      12 partitionLeaderEpoch i32
//! 16 magic i8             17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16       23 lastOffsetDelta i32  27 baseTimestamp i64
//! 35 maxTimestamp i64     43 producerId i64       51 producerEpoch i16
//! 53 baseSequence i32     57 recordsCount i32     61 records...
//! ```

use crate::error::StorageError;
use crate::Result;

/// Bytes before `batchLength` counts: base offset (8) and the length itself (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed v2 batch header.
pub const HEADER_SIZE: usize = 61;
/// The only batch format Fjord stores.
pub const MAGIC_V2: i8 = 2;
/// Sentinel for "no producer id / epoch / sequence", as Kafka uses.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;
/// Sentinel for "no leader epoch".
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORDS_COUNT: usize = 57;

pub const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Compression codec named by the low three attribute bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec's bits in a batch's attributes.
    pub fn attribute_bits(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec a topic's `compression.type` names; `None` for `producer` (keep the
    /// producer's) and anything unknown.
    pub fn from_topic_config(name: &str) -> Option<Self> {
        match name {
            "uncompressed" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "snappy" => Some(Compression::Snappy),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            _ => None,
        }
    }

    pub(crate) fn from_attributes(attributes: i16) -> Result<Self> {
        match attributes & COMPRESSION_MASK {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            other => Err(StorageError::CorruptBatch(format!(
                "unknown compression codec {other}"
            ))),
        }
    }
}

/// Whether record timestamps were set by the producer or stamped by the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// The decoded fixed header of one v2 RecordBatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

impl BatchHeader {
    /// Parses the fixed header. Only checks that enough bytes are present and that the
    /// magic byte is v2; use [`validate`] to check the length and CRC as well.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() < HEADER_SIZE {
            return Err(StorageError::CorruptBatch(format!(
                "batch header needs {HEADER_SIZE} bytes, got {}",
                buf.len()
            )));
        }
        let magic = buf[OFF_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(StorageError::UnsupportedMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, OFF_BASE_OFFSET),
            batch_length: be_i32(buf, OFF_LENGTH),
            partition_leader_epoch: be_i32(buf, OFF_LEADER_EPOCH),
            magic,
            crc: u32::from_be_bytes([
                buf[OFF_CRC],
                buf[OFF_CRC + 1],
                buf[OFF_CRC + 2],
                buf[OFF_CRC + 3],
            ]),
            attributes: be_i16(buf, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(buf, OFF_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, OFF_BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, OFF_MAX_TIMESTAMP),
            producer_id: be_i64(buf, OFF_PRODUCER_ID),
            producer_epoch: be_i16(buf, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(buf, OFF_BASE_SEQUENCE),
            records_count: be_i32(buf, OFF_RECORDS_COUNT),
        })
    }

    /// Size of the whole batch on disk, including the 12-byte log overhead.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn compression(&self) -> Result<Compression> {
        Compression::from_attributes(self.attributes)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// CRC-32C over the part of the batch the checksum covers (attributes to the end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// Validates one complete batch: header, declared length equal to the slice, CRC, and
/// sane counts. Returns the parsed header.
pub fn validate(batch: &[u8]) -> Result<BatchHeader> {
    let header = BatchHeader::parse(batch)?;
    if header.batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
        return Err(StorageError::CorruptBatch(format!(
            "batch length {} is shorter than the header",
            header.batch_length
        )));
    }
    if header.total_size() != batch.len() {
        return Err(StorageError::CorruptBatch(format!(
            "batch declares {} bytes but {} are present",
            header.total_size(),
            batch.len()
        )));
    }
    let actual = compute_crc(batch);
    if actual != header.crc {
        return Err(StorageError::CorruptBatch(format!(
            "CRC mismatch: stored {:#010x}, computed {actual:#010x}",
            header.crc
        )));
    }
    header.compression()?;
    if header.last_offset_delta < 0 || header.records_count < 0 {
        return Err(StorageError::CorruptBatch(format!(
            "negative last offset delta {} or record count {}",
            header.last_offset_delta, header.records_count
        )));
    }
    Ok(header)
}

/// Record batches that passed [`validate_records`]. Appending requires one, so bytes that
/// skipped validation can never reach a segment. Validation (the CRC pass) runs on the
/// caller's thread, outside any partition lock.
#[derive(Debug)]
pub struct ValidatedBatches<'a> {
    bytes: &'a [u8],
    batches: Vec<(usize, BatchHeader)>,
}

impl<'a> ValidatedBatches<'a> {
    /// One batch filling `bytes`, with its header as validated (which may correct the
    /// max timestamp the producer wrote; see [`stamped_header`]).
    pub(crate) fn single(bytes: &'a [u8], header: BatchHeader) -> Self {
        ValidatedBatches {
            bytes,
            batches: vec![(0, header)],
        }
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// `(byte position, header)` of each batch.
    pub fn batches(&self) -> &[(usize, BatchHeader)] {
        &self.batches
    }

    pub fn record_count(&self) -> i64 {
        self.batches
            .iter()
            .map(|(_, h)| i64::from(h.records_count))
            .sum()
    }
}

/// Validates a record set as sent by a producer or a leader: one or more whole v2
/// batches, each with a correct length and CRC, none larger than `max_batch_bytes`.
pub fn validate_records(bytes: &[u8], max_batch_bytes: usize) -> Result<ValidatedBatches<'_>> {
    let mut batches = Vec::new();
    for item in BatchIter::new(bytes) {
        let (range, _) = item?;
        if range.len() > max_batch_bytes {
            return Err(StorageError::BatchTooLarge {
                size: range.len(),
                limit: max_batch_bytes,
            });
        }
        let header = validate(&bytes[range.clone()])?;
        batches.push((range.start, header));
    }
    if batches.is_empty() {
        return Err(StorageError::CorruptBatch("empty record set".into()));
    }
    Ok(ValidatedBatches { bytes, batches })
}

/// The first `HEADER_SIZE` bytes of `batch` rewritten as the leader stores them: new base
/// offset and leader epoch and, for LogAppendTime, the stamped time. `max_timestamp` is
/// the one validation computed from the records; when it differs from what the producer
/// wrote it replaces it. Either edit recomputes the CRC.
pub fn stamped_header(
    batch: &[u8],
    max_timestamp: i64,
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> [u8; HEADER_SIZE] {
    let mut head = [0u8; HEADER_SIZE];
    head.copy_from_slice(&batch[..HEADER_SIZE]);
    set_base_offset(&mut head, base_offset);
    set_partition_leader_epoch(&mut head, leader_epoch);
    let new_max = match log_append_time {
        Some(now_ms) => {
            let attributes = be_i16(&head, OFF_ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
            head[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
            Some(now_ms)
        }
        None => (be_i64(&head, OFF_MAX_TIMESTAMP) != max_timestamp).then_some(max_timestamp),
    };
    if let Some(ts) = new_max {
        head[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&ts.to_be_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&head[OFF_ATTRIBUTES..]),
            &batch[HEADER_SIZE..],
        );
        head[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
    head
}

/// Splits a buffer of concatenated batches, yielding each batch's byte range and header.
/// Stops with an error at the first incomplete or malformed header; CRCs are not checked
/// here (see [`validate`]).
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter { buf, pos: 0 }
    }

    /// Byte position of the next batch, i.e. the length of the cleanly parsed prefix.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(std::ops::Range<usize>, BatchHeader)>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        if rest.is_empty() {
            return None;
        }
        if rest.len() < HEADER_SIZE {
            return Some(Err(StorageError::CorruptBatch(format!(
                "{} trailing bytes do not hold a batch header",
                rest.len()
            ))));
        }
        let header = match BatchHeader::parse(rest) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        if header.batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32
            || header.total_size() > rest.len()
        {
            return Some(Err(StorageError::CorruptBatch(format!(
                "batch at byte {} declares length {} with {} bytes left",
                self.pos,
                header.batch_length,
                rest.len()
            ))));
        }
        let range = self.pos..self.pos + header.total_size();
        self.pos = range.end;
        Some(Ok((range, header)))
    }
}

/// Overwrites the base offset. It sits outside the CRC, so the checksum stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrites the partition leader epoch, also outside the CRC.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with the given broker time and recomputes the CRC,
/// because both the attributes and the max timestamp are covered by it.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, OFF_ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{BatchBuilder, Record};

    fn sample() -> Vec<u8> {
        let mut b = BatchBuilder::new(0, 1_000);
        b.push(Record::new(Some(b"k".to_vec()), Some(b"v".to_vec())));
        b.push(Record::new(None, Some(b"second".to_vec())));
        b.build()
    }

    #[test]
    fn parses_and_validates_a_built_batch() {
        let batch = sample();
        let h = validate(&batch).expect("valid");
        assert_eq!(h.records_count, 2);
        assert_eq!(h.last_offset_delta, 1);
        assert_eq!(h.compression().expect("codec"), Compression::None);
        assert_eq!(h.total_size(), batch.len());
    }

    #[test]
    fn detects_a_flipped_bit() {
        let mut batch = sample();
        let last = batch.len() - 1;
        batch[last] ^= 1;
        assert!(matches!(
            validate(&batch),
            Err(StorageError::CorruptBatch(_))
        ));
    }

    #[test]
    fn rejects_old_magic() {
        let mut batch = sample();
        batch[OFF_MAGIC] = 1;
        assert!(matches!(
            validate(&batch),
            Err(StorageError::UnsupportedMagic(1))
        ));
    }

    #[test]
    fn base_offset_and_epoch_edits_keep_the_crc() {
        let mut batch = sample();
        set_base_offset(&mut batch, 42);
        set_partition_leader_epoch(&mut batch, 7);
        let h = validate(&batch).expect("still valid");
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.partition_leader_epoch, 7);
    }

    #[test]
    fn log_append_time_recomputes_the_crc() {
        let mut batch = sample();
        set_log_append_time(&mut batch, 99);
        let h = validate(&batch).expect("still valid");
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn stamped_header_matches_in_place_edits() {
        let batch = sample();
        let mut edited = batch.clone();
        set_base_offset(&mut edited, 9);
        set_partition_leader_epoch(&mut edited, 3);
        set_log_append_time(&mut edited, 1234);
        let max = validate(&batch).expect("valid").max_timestamp;
        let head = stamped_header(&batch, max, 9, 3, Some(1234));
        assert_eq!(&head[..], &edited[..HEADER_SIZE]);
        let head = stamped_header(&batch, max, 9, 3, None);
        let mut stored = head.to_vec();
        stored.extend_from_slice(&batch[HEADER_SIZE..]);
        assert_eq!(validate(&stored).expect("valid").base_offset, 9);
    }

    #[test]
    fn iter_stops_at_a_torn_tail() {
        let mut buf = sample();
        buf.extend_from_slice(&sample());
        let torn = buf.len() - 5;
        let mut it = BatchIter::new(&buf[..torn]);
        assert!(it.next().expect("first").is_ok());
        assert!(it.next().expect("second").is_err());
    }
}
