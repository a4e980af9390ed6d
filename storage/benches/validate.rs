//! What validating a produced batch costs: the CRC-only check the data path did before
//! (`validate_records`) beside Kafka-style validation of every record
//! (`validate_produce`), on the same batches in the same run, for 100 B and 1 KiB
//! records, uncompressed and lz4 (librdkafka's batches of about 1 MB). Prints each
//! ratio at the end, and the cost per record (`record-work` lines, which
//! tests/bench/record_work.sh reads).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use fjord_storage::batch::{self, validate_records};
use fjord_storage::builder::{BatchBuilder, Record};
use fjord_storage::compression::compress;
use fjord_storage::validate::MAX_INFLATED_BATCH_BYTES;
use fjord_storage::{validate_produce, Compression, ProduceRules};

const BATCH_BYTES: usize = 1_000_000;

/// A ~1 MB batch of `record_bytes` records with keys, as librdkafka sends them.
fn sample(record_bytes: usize, codec: Compression) -> Vec<u8> {
    let mut b = BatchBuilder::new(0, 1_700_000_000_000);
    for i in 0..BATCH_BYTES / (record_bytes + 20) {
        let mut r = Record::new(
            Some(format!("key-{}", i % 1000).into_bytes()),
            Some((0..record_bytes).map(|j| (j % 61) as u8 + b'0').collect()),
        );
        r.timestamp_delta = (i / 100) as i64;
        b.push(r);
    }
    let plain = b.build();
    if codec == Compression::None {
        return plain;
    }
    // The same records compressed, header rewritten for the codec.
    let packed = compress(codec, &plain[batch::HEADER_SIZE..], None).expect("compress");
    let mut out = plain[..batch::HEADER_SIZE].to_vec();
    out.extend_from_slice(&packed);
    let len = (out.len() - batch::LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    let attributes = i16::from_be_bytes([out[21], out[22]]) | codec.attribute_bits();
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

fn bench(c: &mut Criterion) {
    let rules = ProduceRules {
        max_batch_bytes: 2 * BATCH_BYTES,
        require_keys: false,
        timestamps: None,
        max_inflated_bytes: MAX_INFLATED_BATCH_BYTES,
    };
    let mut ratios = Vec::new();
    let mut per_record = Vec::new();
    for (name, record, codec) in [
        ("100b", 100, Compression::None),
        ("1kib", 1024, Compression::None),
        ("100b_lz4", 100, Compression::Lz4),
        ("1kib_lz4", 1024, Compression::Lz4),
    ] {
        let batch = sample(record, codec);
        let records = BATCH_BYTES / (record + 20);
        let mut group = c.benchmark_group(format!("validate_{name}"));
        group.throughput(Throughput::Bytes(batch.len() as u64));
        group.sample_size(20);
        group.measurement_time(Duration::from_secs(3));
        // Seconds per batch: the fastest of criterion's samples (warm-up too), each the
        // mean of many iterations. Other work on the machine only ever adds time, so the
        // fastest sample is the least disturbed.
        let mut timed = |label: &str, f: &dyn Fn() -> bool| -> f64 {
            let mut fastest = f64::INFINITY;
            group.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        assert!(f());
                    }
                    let e = start.elapsed();
                    fastest = fastest.min(e.as_secs_f64() / iters.max(1) as f64);
                    e
                })
            });
            fastest
        };
        let crc_only = timed("crc_only", &|| validate_records(&batch, usize::MAX).is_ok());
        let full = timed("every_record", &|| validate_produce(&batch, &rules).is_ok());
        group.finish();
        ratios.push((name, batch.len(), crc_only, full));
        per_record.push((name, records, crc_only, full));
    }
    println!("\nbatch         bytes     CRC only     every record   per record cost");
    for (name, len, crc, full) in ratios {
        println!(
            "{name:<10} {len:>9} {:>9.0} MB/s {:>9.0} MB/s   {:.2}x the CRC pass",
            len as f64 / crc / 1e6,
            len as f64 / full / 1e6,
            full / crc
        );
    }
    println!();
    for (name, records, crc, full) in per_record {
        println!(
            "record-work {name} records={records} crc_only_ns={:.3} every_record_ns={:.3}",
            crc * 1e9 / records as f64,
            full * 1e9 / records as f64
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
