//! Log append throughput beside a raw sequential `write` of the same bytes to one file,
//! measured in the same run. Prints the ratio at the end (target: >= 80%).

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use fjord_storage::builder::{BatchBuilder, Record};
use fjord_storage::{LogConfig, PartitionLog};

const RECORD_BYTES: usize = 1024;
const BATCH_BYTES: usize = 16 * 1024;

/// One ~16 KiB batch of 1 KiB records, as a producer would send it.
fn sample_batch() -> Vec<u8> {
    let mut b = BatchBuilder::new(0, 1_700_000_000_000);
    let per_record = RECORD_BYTES + 16;
    for i in 0..(BATCH_BYTES / per_record).max(1) {
        let mut r = Record::new(
            Some(format!("key-{i}").into_bytes()),
            Some(vec![b'x'; RECORD_BYTES]),
        );
        r.timestamp_delta = i as i64;
        b.push(r);
    }
    b.build()
}

fn bench(c: &mut Criterion) {
    let batch = sample_batch();
    let mut group = c.benchmark_group("append_16k_batches");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));

    group.bench_function("raw_write", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().expect("tmp");
            let mut f = File::create(dir.path().join("raw.bin")).expect("create");
            let start = Instant::now();
            for _ in 0..iters {
                f.write_all(&batch).expect("write");
            }
            start.elapsed()
        })
    });

    // What runs under the partition lock: the batch was validated on the connection task.
    group.bench_function("log_append", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().expect("tmp");
            let mut log = PartitionLog::open(dir.path(), LogConfig::default(), None).expect("open");
            let validated = log.validate(&batch).expect("valid");
            let start = Instant::now();
            for _ in 0..iters {
                log.append_as_leader(&validated, 0, 0).expect("append");
            }
            start.elapsed()
        })
    });

    // The whole produce-side cost: CRC validation plus the append.
    group.bench_function("validate_and_append", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir().expect("tmp");
            let mut log = PartitionLog::open(dir.path(), LogConfig::default(), None).expect("open");
            let start = Instant::now();
            for _ in 0..iters {
                let validated = log.validate(&batch).expect("valid");
                log.append_as_leader(&validated, 0, 0).expect("append");
            }
            start.elapsed()
        })
    });
    group.finish();
}

fn mean_ns(id: &str) -> Option<f64> {
    let path = format!(
        "{}/criterion/append_16k_batches/{id}/new/estimates.json",
        target_dir()
    );
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn target_dir() -> String {
    std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target").to_string())
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    let bytes = sample_batch().len() as f64;
    let mbps = |ns: f64| bytes / ns * 1e9 / 1e6;
    if let Some(raw) = mean_ns("raw_write") {
        println!("raw sequential write      {:>6.0} MB/s", mbps(raw));
        for (id, label) in [
            ("log_append", "log append"),
            ("validate_and_append", "CRC check + log append"),
        ] {
            if let Some(ns) = mean_ns(id) {
                println!(
                    "{label:<25} {:>6.0} MB/s  = {:.1}% of raw write (target >= 80% for log append)",
                    mbps(ns),
                    100.0 * raw / ns
                );
            }
        }
    }
}
