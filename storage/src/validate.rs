//! What a leader checks in the records a producer sent before they may reach a segment,
//! as Kafka's LogValidator does: one v2 batch, its length and CRC, counts and offset
//! deltas that agree, and every record well formed (varints, lengths, headers), inside
//! compressed batches too. Topic rules are checked per record (keys on compacted topics,
//! the timestamp window), and records that break them are reported by index (KIP-467).
//!
//! Compressed batches are inflated as a stream through a fixed buffer (64 KiB, kept per
//! thread) and never held whole: key, value and header bytes are skipped, not copied. A
//! batch costs its request bytes, that buffer, and the codec's bounded state (see
//! `compression`).
//!
//! Most records are read by a fast path that takes only well-formed records lying whole
//! in the bytes at hand and passing every check, in one pass over their varints; any
//! other record is read again a byte at a time, which finds and reports what is wrong.

use crate::batch::{self, BatchHeader, Compression, TimestampType, ValidatedBatches};
use crate::error::{RecordError, RecordErrorKind, StorageError};
use crate::Result;

mod fast_path;
mod input;

use fast_path::read_record_fast;
use input::{Input, SliceInput, Stop, StreamInput};

/// Kafka's "no timestamp".
const NO_TIMESTAMP: i64 = -1;
/// Record errors listed in one answer; past this the batch still fails, and clients mark
/// the unlisted records as failed because of another record.
const MAX_RECORD_ERRORS: usize = 1000;

/// What a topic demands of produced records.
#[derive(Clone, Debug)]
pub struct ProduceRules {
    /// `max.message.bytes`: the largest batch, as sent (compressed).
    pub max_batch_bytes: usize,
    /// Compacted topics need a key on every record.
    pub require_keys: bool,
    /// CreateTime records must lie in this window (`message.timestamp.before/after.max.ms`).
    pub timestamps: Option<TimestampWindow>,
    /// The most a compressed batch may inflate to. Time, not memory: inflating is
    /// streamed, but a small batch that inflates to gigabytes would still cost seconds.
    pub max_inflated_bytes: usize,
}

/// Accepted record timestamps: `[now - before, now + after]`.
#[derive(Clone, Copy, Debug)]
pub struct TimestampWindow {
    pub now_ms: i64,
    pub before_ms: i64,
    pub after_ms: i64,
}

impl TimestampWindow {
    fn admits(&self, ts: i64) -> bool {
        ts >= self.now_ms.saturating_sub(self.before_ms)
            && ts <= self.now_ms.saturating_add(self.after_ms)
    }
}

/// Default bound of [`ProduceRules::max_inflated_bytes`].
pub const MAX_INFLATED_BATCH_BYTES: usize = 64 << 20;

/// Validates the records of one partition of a Produce request.
pub fn validate_produce<'a>(bytes: &'a [u8], rules: &ProduceRules) -> Result<ValidatedBatches<'a>> {
    let mut iter = batch::BatchIter::new(bytes);
    let range = match iter.next() {
        None => return Err(StorageError::CorruptBatch("empty record set".into())),
        Some(item) => item?.0,
    };
    if range.len() > rules.max_batch_bytes {
        return Err(StorageError::BatchTooLarge {
            size: range.len(),
            limit: rules.max_batch_bytes,
        });
    }
    if iter.position() < bytes.len() {
        // Kafka: a v2 produce carries one batch per partition.
        return Err(StorageError::InvalidRecord(
            "a produce request carries one record batch per partition".into(),
        ));
    }
    let raw = &bytes[range];
    let mut header = batch::validate(raw)?;
    check_header(&header)?;
    let computed_max = scan_records(raw, &header, rules)?;
    if header.timestamp_type() == TimestampType::CreateTime {
        // The stored max timestamp is the records' own, whatever the producer wrote
        // there: the time index and ListOffsets depend on it.
        header.max_timestamp = computed_max;
    }
    Ok(ValidatedBatches::single(bytes, header))
}

/// Rewrites a validated batch with its records compressed by `target` (Kafka's
/// `compression.type` naming a codec): same offsets, timestamps and producer fields,
/// a new length and CRC. The records are inflated whole (validation bounded them to
/// `max_inflated` bytes) and compressed again.
pub fn recompress(
    raw: &[u8],
    header: &BatchHeader,
    target: Compression,
    level: Option<i32>,
    max_inflated: usize,
) -> Result<Vec<u8>> {
    let body = &raw[batch::HEADER_SIZE..header.total_size().min(raw.len())];
    let source = header.compression()?;
    let inflated;
    let plain: &[u8] = if source == Compression::None {
        body
    } else {
        inflated = crate::compression::decompress(source, body, max_inflated)?;
        &inflated
    };
    let packed = crate::compression::compress(target, plain, level)?;
    let mut out = Vec::with_capacity(batch::HEADER_SIZE + packed.len());
    out.extend_from_slice(&raw[..batch::HEADER_SIZE]);
    out.extend_from_slice(&packed);
    let length = (out.len() - batch::LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&length.to_be_bytes());
    let attributes = (header.attributes & !batch::COMPRESSION_MASK) | target.attribute_bits();
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[35..43].copy_from_slice(&header.max_timestamp.to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn check_header(h: &BatchHeader) -> Result<()> {
    let invalid = |m: String| Err(StorageError::InvalidRecord(m));
    if h.records_count <= 0 {
        return invalid(format!("invalid record count {}", h.records_count));
    }
    if i64::from(h.last_offset_delta) + 1 != i64::from(h.records_count) {
        return invalid(format!(
            "last offset delta {} does not match the record count {}",
            h.last_offset_delta, h.records_count
        ));
    }
    if h.is_control() {
        return invalid("control batches are written by transaction coordinators only".into());
    }
    if h.has_producer_id() && h.base_sequence < 0 {
        return invalid(format!(
            "invalid sequence number {} in a batch of producer id {}",
            h.base_sequence, h.producer_id
        ));
    }
    if h.is_transactional() && !h.has_producer_id() {
        return invalid("a transactional batch needs a producer id".into());
    }
    Ok(())
}

/// Walks every record of a validated batch. Returns the largest record timestamp.
fn scan_records(raw: &[u8], h: &BatchHeader, rules: &ProduceRules) -> Result<i64> {
    let body = &raw[batch::HEADER_SIZE..];
    let codec = h.compression()?;
    let mut check = RecordChecks::new(h, rules);
    if codec == Compression::None {
        let mut input = SliceInput { buf: body, pos: 0 };
        check.run(&mut input)?;
        if !check.errors.is_empty() {
            return check.finish();
        }
        if input.pos < body.len() {
            return Err(trailing(body.len() - input.pos, h.records_count));
        }
    } else {
        let reader = crate::compression::reader(codec, body, rules.max_inflated_bytes)?;
        let mut input = StreamInput::new(reader, rules.max_inflated_bytes);
        check.run(&mut input)?;
        if !check.errors.is_empty() {
            return check.finish();
        }
        match input.next_byte() {
            Err(Stop::End) => {}
            Ok(_) => return Err(trailing(1, h.records_count)),
            Err(stop) => return Err(stop.into_error()),
        }
    }
    check.finish()
}

fn trailing(bytes: usize, count: i32) -> StorageError {
    StorageError::InvalidRecord(format!(
        "{bytes} or more bytes follow the last of the {count} records the batch declares"
    ))
}

/// Why a record could not be read.
enum Bad {
    /// The record is malformed (why).
    Malformed(String),
    /// The codec failed (its message).
    Codec(String),
    /// More than the inflation limit.
    TooLarge(usize),
}

impl Bad {
    fn from_stop(stop: Stop, what: &str) -> Bad {
        match stop {
            Stop::End => Bad::Malformed(format!("{what} runs past the end of the records")),
            Stop::Codec(m) => Bad::Codec(m),
            Stop::TooLarge(l) => Bad::TooLarge(l),
        }
    }
}

/// A varint as Kafka writes it: zigzag, at most `max_bytes` long, fitting `bits`.
#[inline]
fn varint(input: &mut impl Input, max_bytes: u32, bits: u32) -> std::result::Result<i64, Bad> {
    let mut z: u64 = 0;
    for i in 0..max_bytes {
        let b = input
            .next_byte()
            .map_err(|stop| Bad::from_stop(stop, "a varint"))?;
        z |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if bits < 64 && z >> bits != 0 {
                return Err(Bad::Malformed(format!("a varint does not fit {bits} bits")));
            }
            return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    Err(Bad::Malformed(format!(
        "a varint is longer than {max_bytes} bytes"
    )))
}

fn varint32(input: &mut impl Input) -> std::result::Result<i64, Bad> {
    varint(input, 5, 32)
}

fn varint64(input: &mut impl Input) -> std::result::Result<i64, Bad> {
    varint(input, 10, 64)
}

fn skip(input: &mut impl Input, n: i64, what: &str) -> std::result::Result<(), Bad> {
    let n = usize::try_from(n).map_err(|_| Bad::Malformed(format!("invalid {what} length {n}")))?;
    input.skip(n).map_err(|stop| Bad::from_stop(stop, what))
}

/// One record's fields that the checks look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordFields {
    timestamp_delta: i64,
    offset_delta: i64,
    has_key: bool,
}

/// Reads one record; `Err` is why it is malformed.
#[inline]
fn read_record(input: &mut impl Input) -> std::result::Result<RecordFields, Bad> {
    if let Some((fields, size)) = read_record_fast(input.peek()) {
        input.advance(size);
        return Ok(fields);
    }
    read_record_slow(input)
}

/// Reads one record a byte at a time from wherever it lies (across codec buffers too);
/// `Err` is why it is malformed.
fn read_record_slow(input: &mut impl Input) -> std::result::Result<RecordFields, Bad> {
    let malformed = |m: String| Err(Bad::Malformed(m));
    let len = varint32(input)?;
    if len < 0 {
        return malformed(format!("invalid record length {len}"));
    }
    let start = input.position();
    input
        .next_byte()
        .map_err(|stop| Bad::from_stop(stop, "the record's attributes"))?;
    let timestamp_delta = varint64(input)?;
    let offset_delta = varint32(input)?;
    let key_len = varint32(input)?;
    if key_len < -1 {
        return malformed(format!("invalid key length {key_len}"));
    }
    if key_len > 0 {
        skip(input, key_len, "key")?;
    }
    let value_len = varint32(input)?;
    if value_len < -1 {
        return malformed(format!("invalid value length {value_len}"));
    }
    if value_len > 0 {
        skip(input, value_len, "value")?;
    }
    let headers = varint32(input)?;
    if headers < 0 {
        return malformed(format!("invalid header count {headers}"));
    }
    for _ in 0..headers {
        let key = varint32(input)?;
        if key < 0 {
            return malformed(format!("invalid header key length {key}"));
        }
        skip(input, key, "header key")?;
        let value = varint32(input)?;
        if value < -1 {
            return malformed(format!("invalid header value length {value}"));
        }
        if value > 0 {
            skip(input, value, "header value")?;
        }
        if input.position() - start > len as u64 {
            break; // reported below; stops a huge header count early
        }
    }
    let read = input.position() - start;
    if read != len as u64 {
        return malformed(format!(
            "the record declares {len} bytes but its fields take {read}"
        ));
    }
    Ok(RecordFields {
        timestamp_delta,
        offset_delta,
        has_key: key_len >= 0,
    })
}

/// The per-record checks of one batch, and the errors found.
struct RecordChecks<'r> {
    header: BatchHeader,
    rules: &'r ProduceRules,
    errors: Vec<RecordError>,
    timestamp_error: bool,
    max_timestamp: i64,
}

impl<'r> RecordChecks<'r> {
    fn new(header: &BatchHeader, rules: &'r ProduceRules) -> Self {
        RecordChecks {
            header: *header,
            rules,
            errors: Vec::new(),
            timestamp_error: false,
            max_timestamp: NO_TIMESTAMP,
        }
    }

    fn fail(&mut self, index: i32, message: String) {
        if self.errors.len() < MAX_RECORD_ERRORS {
            self.errors.push(RecordError {
                batch_index: index,
                message,
            });
        }
    }

    fn run(&mut self, input: &mut impl Input) -> Result<()> {
        let log_append_time = self.header.timestamp_type() == TimestampType::LogAppendTime;
        let count = self.header.records_count;
        let mut index = 0;
        while index < count {
            if !log_append_time {
                index = self.run_passing(input, index);
                if index == count {
                    break;
                }
            }
            if !self.check_one(input, index, log_append_time)? {
                break;
            }
            index += 1;
        }
        Ok(())
    }

    /// Checks the records from `index` on that lie whole in the bytes at hand and pass
    /// every check, in a tight loop, and returns the index of the first one it leaves
    /// to [`RecordChecks::check_one`]: one that fails a check or is malformed (to be
    /// reported), or that runs past the bytes at hand. The same checks, so the same
    /// records pass: offset delta, key, timestamp window. The max timestamp is taken
    /// over the timestamp deltas, as `base + delta` (saturating) grows with the delta.
    fn run_passing(&mut self, input: &mut impl Input, mut index: i32) -> i32 {
        let buf = input.peek();
        let base = self.header.base_timestamp;
        let require_keys = self.rules.require_keys;
        let window = self.rules.timestamps;
        let mut pos = 0;
        let mut max_delta = None;
        while index < self.header.records_count {
            let Some((fields, size)) = buf.get(pos..).and_then(read_record_fast) else {
                break;
            };
            if fields.offset_delta != i64::from(index) || (require_keys && !fields.has_key) {
                break;
            }
            if let Some(window) = &window {
                let ts = base.saturating_add(fields.timestamp_delta);
                if ts != NO_TIMESTAMP && !window.admits(ts) {
                    break;
                }
            }
            max_delta = max_delta.max(Some(fields.timestamp_delta));
            pos += size;
            index += 1;
        }
        input.advance(pos);
        if let Some(delta) = max_delta {
            self.max_timestamp = self.max_timestamp.max(base.saturating_add(delta));
        }
        index
    }

    /// Reads and checks record `index`, noting what is wrong with it. `Ok(false)` when
    /// the records after it cannot be found (it is malformed).
    fn check_one(
        &mut self,
        input: &mut impl Input,
        index: i32,
        log_append_time: bool,
    ) -> Result<bool> {
        let fields = match read_record(input) {
            Ok(f) => f,
            Err(Bad::Malformed(why)) => {
                // The rest cannot be found once one record is malformed.
                self.fail(index, format!("record {index} is malformed: {why}"));
                return Ok(false);
            }
            Err(Bad::Codec(m)) => {
                return Err(StorageError::CorruptBatch(format!(
                    "cannot decompress the records: {m}"
                )))
            }
            Err(Bad::TooLarge(limit)) => return Err(Stop::TooLarge(limit).into_error()),
        };
        if fields.offset_delta != i64::from(index) {
            self.fail(
                index,
                format!(
                    "record {index} has offset delta {}, expected {index}",
                    fields.offset_delta
                ),
            );
            return Ok(true);
        }
        if self.rules.require_keys && !fields.has_key {
            self.fail(
                index,
                "Compacted topic cannot accept message without key".into(),
            );
            return Ok(true);
        }
        if log_append_time {
            self.timestamp_error = true;
            self.fail(
                index,
                "producers may not set the LogAppendTime timestamp type".into(),
            );
            return Ok(true);
        }
        let ts = self
            .header
            .base_timestamp
            .saturating_add(fields.timestamp_delta);
        if let Some(window) = &self.rules.timestamps {
            if ts != NO_TIMESTAMP && !window.admits(ts) {
                self.timestamp_error = true;
                self.fail(
                    index,
                    format!(
                        "timestamp {ts} of record {index} is out of range [{}, {}]",
                        window.now_ms.saturating_sub(window.before_ms),
                        window.now_ms.saturating_add(window.after_ms)
                    ),
                );
                return Ok(true);
            }
        }
        self.max_timestamp = self.max_timestamp.max(ts);
        Ok(true)
    }

    fn finish(self) -> Result<i64> {
        if self.errors.is_empty() {
            return Ok(self.max_timestamp);
        }
        Err(StorageError::RecordErrors {
            kind: if self.timestamp_error {
                RecordErrorKind::InvalidTimestamp
            } else {
                RecordErrorKind::InvalidRecord
            },
            errors: self.errors,
        })
    }
}

#[cfg(test)]
mod tests;
