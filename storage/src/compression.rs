//! Kafka's record codecs: inflating the records section of a compressed batch (to validate
//! it, compact it or recompress it) and compressing one (a topic whose `compression.type`
//! names a codec).
//!
//! Kafka's codecs: gzip, snappy in xerial-java framing (raw snappy accepted too), LZ4
//! frames, and zstd frames. Every reader works in bounded memory whatever the input
//! declares: zstd windows are capped at [`ZSTD_WINDOW_LOG_MAX`], a snappy block may not
//! declare more than the caller's limit, and LZ4 and gzip have fixed-size state. So a
//! decompression bomb costs time (bounded by the caller's output limit), never memory.

use std::io::{Read, Write};

use crate::batch::Compression;
use crate::error::StorageError;
use crate::Result;

/// The xerial framing header Kafka's snappy writers put first.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;
/// Uncompressed bytes per xerial block, as Kafka's Java writer uses.
const XERIAL_BLOCK: usize = 32 * 1024;

/// Largest zstd window (2^n bytes) a reader accepts: 32 MiB. zstd levels up to 19 use
/// at most 8 MiB; only the "ultra" levels 20-22 go past this, and a reader that
/// accepted their 128 MiB windows would let one batch pin that much memory.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 25;

fn corrupt(codec: &str, why: impl std::fmt::Display) -> StorageError {
    StorageError::CorruptBatch(format!("cannot decompress {codec} records: {why}"))
}

fn codec_name(codec: Compression) -> &'static str {
    match codec {
        Compression::None => "uncompressed",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// A streaming reader of the inflated records of `data` (the bytes after a batch
/// header). `max_block` bounds the one codec whose working memory an input can choose:
/// a snappy block larger than this once inflated is refused.
pub fn reader<'a>(
    codec: Compression,
    data: &'a [u8],
    max_block: usize,
) -> Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Compression::None => Box::new(data),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
        Compression::Lz4 => Box::new(lz4::Decoder::new(data).map_err(|e| corrupt("lz4", e))?),
        Compression::Zstd => {
            let mut decoder =
                zstd::stream::read::Decoder::with_buffer(data).map_err(|e| corrupt("zstd", e))?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| corrupt("zstd", e))?;
            Box::new(decoder)
        }
        Compression::Snappy => Box::new(SnappyReader::new(data, max_block)),
    })
}

/// Inflates `data` (the bytes after a batch header) compressed with `codec`, refusing
/// to produce more than `limit` bytes.
pub fn decompress(codec: Compression, data: &[u8], limit: usize) -> Result<Vec<u8>> {
    if codec == Compression::None {
        return Ok(data.to_vec());
    }
    let name = codec_name(codec);
    let mut out = Vec::new();
    let read = reader(codec, data, limit)?
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(name, e))?;
    if read > limit {
        return Err(corrupt(
            name,
            format!("more than {limit} bytes once inflated"),
        ));
    }
    Ok(out)
}

/// Compresses a records section with `codec` at `level` (the codec's default when
/// `None`), in the framing Kafka's clients read: gzip, xerial-framed snappy, LZ4 frames
/// with independent blocks, zstd frames.
pub fn compress(codec: Compression, data: &[u8], level: Option<i32>) -> Result<Vec<u8>> {
    let fail = |e: std::io::Error| {
        StorageError::CorruptBatch(format!("cannot compress with {}: {e}", codec_name(codec)))
    };
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let level = level.map_or(flate2::Compression::default(), |l| {
                flate2::Compression::new(l.clamp(1, 9) as u32)
            });
            let mut w = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), level);
            w.write_all(data).map_err(fail)?;
            w.finish().map_err(fail)
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(data.len() / 2 + XERIAL_HEADER_LEN);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1u32.to_be_bytes()); // version
            out.extend_from_slice(&1u32.to_be_bytes()); // oldest compatible version
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK) {
                let packed = encoder
                    .compress_vec(block)
                    .map_err(|e| fail(std::io::Error::other(e)))?;
                out.extend_from_slice(&(packed.len() as u32).to_be_bytes());
                out.extend_from_slice(&packed);
            }
            Ok(out)
        }
        Compression::Lz4 => {
            let mut w = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .block_size(lz4::BlockSize::Max64KB)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .level(level.map_or(9, |l| l.clamp(1, 17) as u32))
                .build(Vec::with_capacity(data.len() / 2))
                .map_err(fail)?;
            w.write_all(data).map_err(fail)?;
            let (out, result) = w.finish();
            result.map_err(fail)?;
            Ok(out)
        }
        Compression::Zstd => zstd::encode_all(data, level.unwrap_or(3)).map_err(fail),
    }
}

/// Streams the blocks of a snappy payload: xerial framing (a header, then blocks each
/// prefixed with its compressed length), or one raw block.
struct SnappyReader<'a> {
    rest: &'a [u8],
    /// Raw snappy: the whole input is one block, read once.
    raw: bool,
    block: Vec<u8>,
    pos: usize,
    max_block: usize,
}

impl<'a> SnappyReader<'a> {
    fn new(data: &'a [u8], max_block: usize) -> Self {
        let (rest, raw) = if data.starts_with(XERIAL_MAGIC) {
            (data.get(XERIAL_HEADER_LEN..).unwrap_or_default(), false)
        } else {
            (data, true)
        };
        SnappyReader {
            rest,
            raw,
            block: Vec::new(),
            pos: 0,
            max_block,
        }
    }

    fn next_block(&mut self) -> std::io::Result<bool> {
        if self.rest.is_empty() {
            return Ok(false);
        }
        let packed = if self.raw {
            std::mem::take(&mut self.rest)
        } else {
            let (len, tail) = self
                .rest
                .split_first_chunk::<4>()
                .ok_or_else(|| invalid("truncated xerial block length"))?;
            let len = u32::from_be_bytes(*len) as usize;
            let packed = tail
                .get(..len)
                .ok_or_else(|| invalid("truncated xerial block"))?;
            self.rest = &tail[len..];
            packed
        };
        let len = snap::raw::decompress_len(packed).map_err(invalid)?;
        if len > self.max_block {
            return Err(invalid(format!(
                "a block declares {len} bytes once inflated, more than {}",
                self.max_block
            )));
        }
        self.block.clear();
        self.block.resize(len, 0);
        snap::raw::Decoder::new()
            .decompress(packed, &mut self.block)
            .map_err(invalid)?;
        self.pos = 0;
        Ok(true)
    }
}

fn invalid(why: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = b"the quick brown fox jumps over the lazy dog, again and again and again";

    #[test]
    fn every_kafka_codec_round_trips() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for level in [None, Some(1)] {
                let packed = compress(codec, TEXT, level).expect("compresses");
                assert_eq!(
                    decompress(codec, &packed, 1 << 20).expect("inflates"),
                    TEXT,
                    "{codec:?} at {level:?}"
                );
            }
        }
        // Larger than one xerial block and one LZ4 block.
        let big: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in [Compression::Snappy, Compression::Lz4, Compression::Gzip] {
            let packed = compress(codec, &big, None).expect("compresses");
            assert_eq!(decompress(codec, &packed, 2 << 20).expect("inflates"), big);
        }
    }

    #[test]
    fn raw_snappy_and_foreign_frames_are_read() {
        let raw = snap::raw::Encoder::new()
            .compress_vec(TEXT)
            .expect("snappy");
        assert_eq!(
            decompress(Compression::Snappy, &raw, 1 << 20).expect("raw snappy"),
            TEXT
        );
        // An LZ4 frame with linked blocks and a content checksum, as other writers make.
        let mut w = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
        w.write_all(TEXT).expect("lz4");
        let (lz, r) = w.finish();
        r.expect("lz4");
        assert_eq!(
            decompress(Compression::Lz4, &lz, 1 << 20).expect("lz4"),
            TEXT
        );
    }

    #[test]
    fn inflation_beyond_the_limit_is_refused() {
        let big = vec![0u8; 1 << 20];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, &big, None).expect("compresses");
            assert!(decompress(codec, &packed, 1000).is_err(), "{codec:?}");
        }
        assert!(decompress(Compression::Gzip, b"not gzip", 1000).is_err());
    }

    #[test]
    fn a_snappy_block_declaring_more_than_the_limit_is_refused_before_allocating() {
        // A raw snappy block header claiming 2^32-1 inflated bytes.
        let lying = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let err = decompress(Compression::Snappy, &lying, 1 << 20).expect_err("refused");
        assert!(err.to_string().contains("declares"), "{err}");
    }

    #[test]
    fn a_zstd_frame_with_a_huge_window_is_refused() {
        let big = vec![7u8; 64];
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
        encoder
            .set_parameter(zstd::zstd_safe::CParameter::WindowLog(30))
            .expect("window");
        encoder.include_contentsize(false).expect("no size");
        encoder.write_all(&big).expect("zstd");
        let packed = encoder.finish().expect("zstd");
        assert!(decompress(Compression::Zstd, &packed, 1 << 20).is_err());
    }
}
