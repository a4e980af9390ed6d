//! Hand-made record batches for abuse tests: any record counts, any record bytes, any
//! codec, with a correct CRC so that only the broker's record checks stand between them
//! and the log.

use bytes::Bytes;

/// Appends `v` as a zigzag varint, as Kafka encodes record fields.
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// One record's bytes (length prefix included) with the given offset delta, key and
/// value, and no headers.
pub fn record(offset_delta: i64, key: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8]; // attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, offset_delta);
    match key {
        None => put_varint(&mut body, -1),
        Some(k) => {
            put_varint(&mut body, k.len() as i64);
            body.extend_from_slice(k);
        }
    }
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(value);
    put_varint(&mut body, 0); // headers
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as i64);
    out.extend_from_slice(&body);
    out
}

/// `n` well-formed keyed records with offset deltas 0..n.
pub fn records(n: usize, value_len: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            record(
                i as i64,
                Some(format!("k{i}").as_bytes()),
                &vec![b'v'; value_len],
            )
        })
        .collect()
}

/// A v2 batch around `records` (already encoded, and compressed if `attributes` says
/// so) claiming `count` records and `last_offset_delta`, timestamped now.
pub fn raw_batch(count: i32, last_offset_delta: i32, attributes: i16, records: &[u8]) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut out = Vec::with_capacity(61 + records.len());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&last_offset_delta.to_be_bytes());
    out.extend_from_slice(&now.to_be_bytes());
    out.extend_from_slice(&now.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(records);
    let crc = crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}

/// Attribute bits of Kafka's codecs.
pub const GZIP: i16 = 1;
pub const ZSTD: i16 = 4;

/// zstd-compresses `data` as a producer would.
pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd")
}

/// CRC-32C (Castagnoli), bit by bit: tests need it rarely and should not share the
/// broker's implementation.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
