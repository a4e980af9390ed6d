//! Compaction of compressed producers' batches: bytes on disk before and after, and the
//! cleaner's throughput (bytes read per second of `CompactionJob::run` plus the swap).
//! Uses only the storage crate's public API, so `tests/bench/compaction.sh` can run the
//! same file against an older checkout in the same session and report the ratio.
//!
//!   cargo bench -p fjord-storage --bench compaction -- [ROUNDS]
//!
//! Prints one `codec=... before=... after=... mib_per_s=...` line per codec.

use std::time::Instant;

use fjord_storage::batch::Compression;
use fjord_storage::builder::{BatchBuilder, Record};
use fjord_storage::compression::compress;
use fjord_storage::config::CleanupPolicy;
use fjord_storage::{LogConfig, PartitionLog};

const KEYS: usize = 2_000;
const RECORDS_PER_BATCH: usize = 20;
const VALUE_BYTES: usize = 512;
const BATCHES: usize = 2_000;

/// A producer's batch: `RECORDS_PER_BATCH` JSON-like values over `KEYS` keys (text that
/// compresses about as well as real payloads do), compressed with `codec`.
fn batch(codec: Compression, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(0, 1_000);
    for i in 0..RECORDS_PER_BATCH {
        let seq = n * RECORDS_PER_BATCH + i;
        // Keys in a scattered order, so a key's latest value can be in any batch and
        // most batches end up partly kept (and rebuilt) by the pass.
        let mixed = (seq as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
        let key = format!("customer-{:05}", mixed % KEYS as u64);
        let mut value = format!(
            "{{\"id\":{seq},\"customer\":\"{key}\",\"status\":\"active\",\"balance\":{},\"notes\":\"",
            seq % 9973
        );
        while value.len() < VALUE_BYTES - 2 {
            value.push_str("lorem ipsum dolor sit amet ");
        }
        value.truncate(VALUE_BYTES - 2);
        value.push_str("\"}");
        b.push(Record::new(
            Some(key.into_bytes()),
            Some(value.into_bytes()),
        ));
    }
    let plain = b.build();
    if codec == Compression::None {
        return plain;
    }
    const HEADER: usize = 61;
    let mut out = plain[..HEADER].to_vec();
    out.extend_from_slice(&compress(codec, &plain[HEADER..], None).expect("compress"));
    let len = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    out[21..23].copy_from_slice(&codec.attribute_bits().to_be_bytes());
    let crc = fjord_storage::batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 86_400_000,
        ..LogConfig::default()
    }
}

fn run(codec: Compression) -> (u64, u64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), config(), None).expect("open");
    for n in 0..BATCHES {
        let bytes = batch(codec, n);
        let validated = log.validate(&bytes).expect("valid");
        log.append_as_leader(&validated, 0, 1_000).expect("append");
    }
    log.roll(1_000).expect("roll");
    let before = log.size_bytes();
    let started = Instant::now();
    // One pass over the whole log, as the cleaner makes it when the log is dirty.
    let job = log
        .plan_compaction(2_000, log.log_end_offset(), 64 << 20)
        .expect("a compaction is due");
    let out = job.run(&mut |_| {}).expect("compact");
    let read = out.stats.bytes_read;
    assert!(
        log.finish_compaction(out, 2_000).expect("swap"),
        "swapped in"
    );
    let secs = started.elapsed().as_secs_f64();
    (
        before,
        log.size_bytes(),
        read as f64 / secs.max(1e-9) / (1 << 20) as f64,
    )
}

fn main() {
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    for (name, codec) in [
        ("none", Compression::None),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
    ] {
        let mut speeds = Vec::new();
        let (mut before, mut after) = (0, 0);
        for _ in 0..rounds {
            let (b, a, s) = run(codec);
            (before, after) = (b, a);
            speeds.push(s);
        }
        speeds.sort_by(|a, b| a.total_cmp(b));
        println!(
            "codec={name} before={before} after={after} mib_per_s={:.1}",
            speeds[speeds.len() / 2]
        );
    }
}
