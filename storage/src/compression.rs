//! Decompressing the records section of a compressed batch, for the log cleaner. Producers
//! compress; the broker stores their batches as they are and only looks inside to compact.
//!
//! Kafka's codecs: gzip, snappy in xerial-java framing (raw snappy accepted too), LZ4
//! frames, and zstd frames. Output is capped so a small batch cannot inflate without bound.

use std::io::Read;

use crate::batch::Compression;
use crate::error::StorageError;
use crate::Result;

/// The xerial framing header Kafka's snappy writers put first.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

fn corrupt(codec: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::CorruptBatch(format!("cannot decompress {codec} records: {why}"))
}

fn read_capped(mut r: impl Read, codec: &str, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let read = r
        .by_ref()
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, e))?;
    if read > limit {
        return Err(corrupt(
            codec,
            format!("more than {limit} bytes once inflated"),
        ));
    }
    Ok(out)
}

/// Inflates `data` (the bytes after a batch header) compressed with `codec`, refusing
/// to produce more than `limit` bytes.
pub fn decompress(codec: Compression, data: &[u8], limit: usize) -> Result<Vec<u8>> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => read_capped(flate2::read::GzDecoder::new(data), "gzip", limit),
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| corrupt("lz4", e))?;
            read_capped(decoder, "lz4", limit)
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| corrupt("zstd", e))?;
            read_capped(decoder, "zstd", limit)
        }
        Compression::Snappy => snappy(data, limit),
    }
}

fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<()> {
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt("snappy", e))?;
    if out.len() + len > limit {
        return Err(corrupt(
            "snappy",
            format!("more than {limit} bytes once inflated"),
        ));
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| corrupt("snappy", e))?;
    Ok(())
}

fn snappy(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    if !data.starts_with(XERIAL_MAGIC) {
        snappy_block(data, &mut out, limit)?;
        return Ok(out);
    }
    let mut rest = data.get(XERIAL_HEADER_LEN..).unwrap_or_default();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("snappy", "truncated block length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail
            .get(..len)
            .ok_or_else(|| corrupt("snappy", "truncated block"))?;
        snappy_block(block, &mut out, limit)?;
        rest = &tail[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const TEXT: &[u8] = b"the quick brown fox jumps over the lazy dog, again and again and again";

    #[test]
    fn every_kafka_codec_round_trips() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(TEXT).expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert_eq!(
            decompress(Compression::Gzip, &gz, 1 << 20).expect("gzip"),
            TEXT
        );

        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
        lz.write_all(TEXT).expect("lz4");
        let (lz, r) = lz.finish();
        r.expect("lz4");
        assert_eq!(
            decompress(Compression::Lz4, &lz, 1 << 20).expect("lz4"),
            TEXT
        );

        let zs = zstd::encode_all(TEXT, 3).expect("zstd");
        assert_eq!(
            decompress(Compression::Zstd, &zs, 1 << 20).expect("zstd"),
            TEXT
        );

        // xerial framing with two blocks, as Kafka's Java and librdkafka write it.
        let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for half in [&TEXT[..30], &TEXT[30..]] {
            let block = snap::raw::Encoder::new()
                .compress_vec(half)
                .expect("snappy");
            xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
            xerial.extend_from_slice(&block);
        }
        assert_eq!(
            decompress(Compression::Snappy, &xerial, 1 << 20).expect("snappy"),
            TEXT
        );
        let raw = snap::raw::Encoder::new()
            .compress_vec(TEXT)
            .expect("snappy");
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1 << 20).expect("raw snappy"),
            TEXT
        );
    }

    #[test]
    fn inflation_beyond_the_limit_is_refused() {
        let big = vec![0u8; 1 << 20];
        let zs = zstd::encode_all(&big[..], 3).expect("zstd");
        assert!(decompress(Compression::Zstd, &zs, 1000).is_err());
        assert!(decompress(Compression::Gzip, b"not gzip", 1000).is_err());
    }
}
