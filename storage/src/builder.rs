//! Building v2 record batches, and reading the records of any batch.
//!
//! Producers build their own batches; the broker only needs this for what it writes itself
//! (the metadata log, internal topics), for the cleaner, which rebuilds a batch around the
//! records it keeps in the batch's own codec, and for tests.

use crate::batch::{self, BatchHeader, Compression, HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2};
use crate::error::StorageError;
use crate::Result;

/// One record inside a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds after the batch's base timestamp.
    pub timestamp_delta: i64,
}

impl Record {
    pub fn new(key: Option<Vec<u8>>, value: Option<Vec<u8>>) -> Self {
        Record {
            key,
            value,
            headers: Vec::new(),
            timestamp_delta: 0,
        }
    }
}

/// A record decoded from an uncompressed batch, with its absolute offset and timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Accumulates records and writes one uncompressed v2 batch.
#[derive(Clone, Debug)]
pub struct BatchBuilder {
    base_offset: i64,
    base_timestamp: i64,
    partition_leader_epoch: i32,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    records: Vec<Record>,
}

impl BatchBuilder {
    pub fn new(base_offset: i64, base_timestamp: i64) -> Self {
        BatchBuilder {
            base_offset,
            base_timestamp,
            partition_leader_epoch: batch::NO_PARTITION_LEADER_EPOCH,
            producer_id: batch::NO_PRODUCER_ID,
            producer_epoch: batch::NO_PRODUCER_EPOCH,
            base_sequence: batch::NO_SEQUENCE,
            transactional: false,
            control: false,
            records: Vec::new(),
        }
    }

    pub fn producer(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    pub fn control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    pub fn leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    pub fn push(&mut self, record: Record) -> &mut Self {
        self.records.push(record);
        self
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Encodes the batch, computing the length, the max timestamp and the CRC.
    pub fn build(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 * self.records.len());
        let mut max_delta = 0i64;
        for (i, r) in self.records.iter().enumerate() {
            max_delta = max_delta.max(r.timestamp_delta);
            encode_record(&mut body, r, i as i32);
        }
        let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
        let batch_length = (HEADER_SIZE - LOG_OVERHEAD + body.len()) as i32;
        let mut attributes: i16 = 0;
        if self.transactional {
            attributes |= 0x10;
        }
        if self.control {
            attributes |= 0x20;
        }
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&batch_length.to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&[0u8; 4]); // CRC, filled below
        out.extend_from_slice(&attributes.to_be_bytes());
        let last_offset_delta = (self.records.len() as i32 - 1).max(0);
        out.extend_from_slice(&last_offset_delta.to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.to_be_bytes());
        out.extend_from_slice(&(self.base_timestamp + max_delta).to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&(self.records.len() as i32).to_be_bytes());
        out.extend_from_slice(&body);
        let crc = batch::compute_crc(&out);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

fn encode_record(out: &mut Vec<u8>, r: &Record, offset_delta: i32) {
    let mut body = Vec::with_capacity(32);
    body.push(0); // record attributes, unused by v2
    put_varint(&mut body, r.timestamp_delta);
    put_varint(&mut body, i64::from(offset_delta));
    put_bytes(&mut body, r.key.as_deref());
    put_bytes(&mut body, r.value.as_deref());
    put_varint(&mut body, r.headers.len() as i64);
    for (k, v) in &r.headers {
        put_bytes(&mut body, Some(k.as_bytes()));
        put_bytes(&mut body, v.as_deref());
    }
    put_varint(out, body.len() as i64);
    out.extend_from_slice(&body);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<i64> {
        let mut z: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *self.buf.get(self.pos).ok_or_else(|| {
                StorageError::CorruptBatch("record varint runs past the end".into())
            })?;
            self.pos += 1;
            if shift > 63 {
                return Err(StorageError::CorruptBatch("record varint too long".into()));
            }
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len());
        let end =
            end.ok_or_else(|| StorageError::CorruptBatch("record field runs past the end".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<Option<Vec<u8>>> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(self.take(len as usize)?.to_vec()))
    }
}

/// Most bytes one batch may inflate to when decoded (a compressed batch is at most
/// `max.message.bytes`, but its records may compress very well).
pub const MAX_DECODED_BATCH_BYTES: usize = 256 << 20;

/// Decodes every record of a batch, inflating compressed ones. The data path never needs
/// this; the group coordinator and the log cleaner do.
pub fn decode_records(batch_bytes: &[u8]) -> Result<Vec<DecodedRecord>> {
    let header: BatchHeader = batch::BatchHeader::parse(batch_bytes)?;
    let end = header.total_size().min(batch_bytes.len());
    let codec = header.compression()?;
    let inflated;
    let body: &[u8] = if codec == Compression::None {
        &batch_bytes[HEADER_SIZE.min(end)..end]
    } else {
        inflated = crate::compression::decompress(
            codec,
            &batch_bytes[HEADER_SIZE.min(end)..end],
            MAX_DECODED_BATCH_BYTES,
        )?;
        &inflated
    };
    let mut r = Reader { buf: body, pos: 0 };
    let mut out = Vec::with_capacity(header.records_count.max(0) as usize);
    for _ in 0..header.records_count {
        let len = r.varint()?;
        if len < 0 {
            return Err(StorageError::CorruptBatch("negative record length".into()));
        }
        let body = r.take(len as usize)?;
        let mut rr = Reader { buf: body, pos: 1 };
        let ts_delta = rr.varint()?;
        let offset_delta = rr.varint()?;
        let key = rr.bytes()?;
        let value = rr.bytes()?;
        let n_headers = rr.varint()?;
        let mut headers = Vec::with_capacity(n_headers.clamp(0, 64) as usize);
        for _ in 0..n_headers.max(0) {
            let k = rr.bytes()?.unwrap_or_default();
            let v = rr.bytes()?;
            headers.push((String::from_utf8_lossy(&k).into_owned(), v));
        }
        out.push(DecodedRecord {
            offset: header.base_offset + offset_delta,
            timestamp: header.base_timestamp + ts_delta,
            key,
            value,
            headers,
        });
    }
    Ok(out)
}

/// Rebuilds a batch holding only `records` (a subset of its own, in order), keeping
/// everything else of the original header: base offset, offset range, timestamps,
/// producer fields and attributes, the compression codec included. The cleaner rewrites
/// batches this way: a batch that arrived compressed stays compressed, with its codec.
/// With no records it is an empty, uncompressed batch that still covers the original
/// offsets, which keeps an idempotent producer's last sequence in the log.
pub fn rebuild_batch(header: &BatchHeader, records: &[DecodedRecord]) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(64 * records.len());
    for r in records {
        let record = Record {
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp_delta: r.timestamp - header.base_timestamp,
        };
        let delta = (r.offset - header.base_offset).clamp(0, i64::from(i32::MAX)) as i32;
        encode_record(&mut body, &record, delta);
    }
    let codec = header.compression()?;
    let (body, attributes) = if codec == Compression::None || records.is_empty() {
        (body, header.attributes & !batch::COMPRESSION_MASK)
    } else {
        (
            crate::compression::compress(codec, &body, None)?,
            header.attributes,
        )
    };
    let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
    let batch_length = (HEADER_SIZE - LOG_OVERHEAD + body.len()) as i32;
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&[0u8; 4]); // CRC, filled below
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&header.max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&(records.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_records() {
        let mut b = BatchBuilder::new(10, 5_000);
        let mut r = Record::new(Some(b"key".to_vec()), None);
        r.headers.push(("h".into(), Some(b"x".to_vec())));
        r.timestamp_delta = 3;
        b.push(r);
        b.push(Record::new(None, Some(vec![7; 300])));
        let bytes = b.build();
        batch::validate(&bytes).expect("valid");
        let recs = decode_records(&bytes).expect("decode");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].offset, 10);
        assert_eq!(recs[0].timestamp, 5_003);
        assert_eq!(recs[0].key.as_deref(), Some(&b"key"[..]));
        assert_eq!(recs[0].value, None);
        assert_eq!(recs[0].headers[0].0, "h");
        assert_eq!(recs[1].offset, 11);
        assert_eq!(recs[1].value.as_ref().map(Vec::len), Some(300));
    }

    #[test]
    fn varints_round_trip_extremes() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader { buf: &out, pos: 0 };
            assert_eq!(r.varint().expect("decode"), v);
        }
    }
}
