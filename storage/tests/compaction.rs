//! Log compaction on real segment files: latest value per key, unchanged offsets,
//! tombstones that expire, compressed batches, producer state, and crash safety.

mod common;

use std::collections::BTreeMap;
use std::io::Write;

use common::append;
use fjord_storage::batch::BatchIter;
use fjord_storage::builder::{decode_records, BatchBuilder, Record};
use fjord_storage::config::CleanupPolicy;
use fjord_storage::{LogConfig, PartitionLog};

fn compacted_config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 * 1024,
        index_interval_bytes: 256,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 10_000,
        ..LogConfig::default()
    }
}

/// One record per call: `key` = `value` (`None` is a tombstone).
fn put(log: &mut PartitionLog, key: &str, value: Option<&str>, now: i64) -> i64 {
    let mut b = BatchBuilder::new(0, now);
    b.push(Record::new(
        Some(key.as_bytes().to_vec()),
        value.map(|v| v.as_bytes().to_vec()),
    ));
    append(log, &b.build(), 0, now)
        .expect("append")
        .first_offset
}

/// Every record of the log as (offset, key, value).
fn contents(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let Some(range) = log.read(offset, 1 << 20, i64::MAX, true).expect("read") else {
            break;
        };
        let bytes = range.read().expect("bytes");
        for b in BatchIter::new(&bytes) {
            let (r, h) = b.expect("batch");
            for rec in decode_records(&bytes[r]).expect("records") {
                out.push((
                    rec.offset,
                    String::from_utf8_lossy(rec.key.as_deref().unwrap_or_default()).into_owned(),
                    rec.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                ));
            }
            offset = h.next_offset();
        }
    }
    out
}

fn compact(log: &mut PartitionLog, now: i64) -> bool {
    let Some(job) = log.plan_compaction(now, log.log_end_offset(), 1 << 20) else {
        return false;
    };
    let out = job.run(&mut |_| {}).expect("run");
    log.finish_compaction(out, now).expect("swap")
}

#[test]
fn keeps_the_latest_value_per_key_at_its_original_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), compacted_config(), None).expect("open");
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for round in 0..40 {
        for k in 0..25 {
            let key = format!("key-{k}");
            let value = format!("v{round}-{k}");
            let offset = put(&mut log, &key, Some(&value), 1_000);
            latest.insert(key, (offset, value));
        }
    }
    let before_end = log.log_end_offset();
    let segments_before = log.segment_count();
    assert!(segments_before > 3);
    assert!(compact(&mut log, 2_000));
    assert_eq!(log.log_end_offset(), before_end, "the log end never moves");
    let got = contents(&log);
    // The active segment is not compacted: expect the latest per key among compacted
    // records, plus whatever the active segment holds.
    let active_start = *log.segment_bases().last().expect("a segment");
    let compacted: BTreeMap<String, (i64, String)> = got
        .iter()
        .filter(|(o, _, _)| *o < active_start)
        .map(|(o, k, v)| (k.clone(), (*o, v.clone().unwrap_or_default())))
        .collect();
    let count_below = got.iter().filter(|(o, _, _)| *o < active_start).count();
    assert_eq!(
        count_below,
        compacted.len(),
        "one record per key below the active segment"
    );
    for (k, (o, v)) in &compacted {
        let (lo, lv) = &latest[k];
        if *lo < active_start {
            assert_eq!(
                (o, v),
                (lo, lv),
                "{k} is its latest value at its original offset"
            );
        }
    }
    // Offsets are strictly increasing and consumers can read from any old offset.
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(log
        .read(3, 1 << 20, i64::MAX, true)
        .expect("read")
        .is_some());

    // It survives a reopen.
    drop(log);
    let log = PartitionLog::open(dir.path(), compacted_config(), None).expect("reopen");
    assert_eq!(contents(&log), got);
    assert_eq!(log.log_end_offset(), before_end);
}

#[test]
fn tombstones_delete_keys_and_expire_after_delete_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), compacted_config(), None).expect("open");
    for round in 0..30 {
        for k in 0..20 {
            put(
                &mut log,
                &format!("key-{k}"),
                Some(&format!("value-{round}")),
                1_000,
            );
        }
    }
    for k in 0..10 {
        put(&mut log, &format!("key-{k}"), None, 1_000);
    }
    // Enough later data that the tombstones land in closed segments.
    for round in 0..30 {
        for k in 10..20 {
            put(
                &mut log,
                &format!("key-{k}"),
                Some(&format!("later-{round}")),
                1_000,
            );
        }
    }
    assert!(compact(&mut log, 5_000));
    let after_first = contents(&log);
    let tombstones = after_first.iter().filter(|(_, _, v)| v.is_none()).count();
    assert_eq!(tombstones, 10, "tombstones stay for delete.retention.ms");
    assert!(!after_first
        .iter()
        .any(|(_, k, v)| v.is_some() && (0..10).any(|i| *k == format!("key-{i}"))));
    // Not yet due: nothing new is dirty and the tombstones are young.
    assert!(log
        .plan_compaction(6_000, log.log_end_offset(), 1 << 20)
        .is_none());
    // After delete.retention.ms a pass is due for the tombstones alone, and drops them.
    assert!(compact(&mut log, 15_000));
    let after_second = contents(&log);
    assert!(
        after_second.iter().all(|(_, _, v)| v.is_some()),
        "tombstones expired"
    );
    assert!(after_second
        .iter()
        .all(|(_, k, _)| !(0..10).any(|i| *k == format!("key-{i}"))));
}

#[test]
fn compressed_batches_are_compacted_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), compacted_config(), None).expect("open");
    // Gzip batches of 10 records each, built like a producer would.
    for round in 0..300i64 {
        let mut b = BatchBuilder::new(0, 1_000);
        for k in 0..10 {
            b.push(Record::new(
                Some(format!("key-{k}").into_bytes()),
                Some(format!("{round}-{k}-{}", round * 7919 % 1000).into_bytes()),
            ));
        }
        let plain = b.build();
        let gz = gzip_batch(&plain);
        append(&mut log, &gz, 0, 1_000).expect("append compressed");
    }
    let end = log.log_end_offset();
    assert!(compact(&mut log, 2_000));
    let got = contents(&log);
    let active_start = *log.segment_bases().last().expect("segment");
    let below: Vec<_> = got.iter().filter(|(o, _, _)| *o < active_start).collect();
    let mut keys: Vec<&String> = below.iter().map(|(_, k, _)| k).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys.len(),
        below.len(),
        "one record per key after compaction"
    );
    assert_eq!(log.log_end_offset(), end);
    assert!(log.segment_count() >= 2);
}

/// Rewrites an uncompressed batch as a gzip batch with the same header fields.
fn gzip_batch(plain: &[u8]) -> Vec<u8> {
    const HEADER: usize = 61;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&plain[HEADER..]).expect("gzip");
    let body = gz.finish().expect("gzip");
    let mut out = plain[..HEADER].to_vec();
    out.extend_from_slice(&body);
    let len = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&len.to_be_bytes());
    out[21..23].copy_from_slice(&1i16.to_be_bytes()); // attributes: gzip
    let crc = fjord_storage::batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

#[test]
fn an_idempotent_producers_last_batch_survives_as_an_empty_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), compacted_config(), None).expect("open");
    // Producer 7 writes key "a" once; later plain writes supersede it.
    let mut b = BatchBuilder::new(0, 1_000).producer(7, 0, 0);
    b.push(Record::new(Some(b"a".to_vec()), Some(b"old".to_vec())));
    append(&mut log, &b.build(), 0, 1_000).expect("append");
    for i in 0..400 {
        put(&mut log, "a", Some(&format!("new-{i}")), 1_000);
    }
    assert!(compact(&mut log, 2_000));
    let mut found = None;
    log.for_each_batch_header(|h| {
        if h.producer_id == 7 {
            found = Some((h.records_count, h.base_sequence, h.base_offset));
        }
    })
    .expect("headers");
    assert_eq!(
        found,
        Some((0, 0, 0)),
        "an empty batch keeps producer 7's sequence"
    );
}

#[test]
fn an_interrupted_swap_is_completed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = compacted_config();
    let mut log = PartitionLog::open(dir.path(), config.clone(), None).expect("open");
    for round in 0..40 {
        for k in 0..25 {
            put(
                &mut log,
                &format!("key-{k}"),
                Some(&format!("v{round}")),
                1_000,
            );
        }
    }
    let job = log
        .plan_compaction(2_000, log.log_end_offset(), 1 << 20)
        .expect("due");
    let out = job.run(&mut |_| {}).expect("run");
    let (base, _) = out.groups[0].clone();
    let expected_end = log.log_end_offset();
    drop(log);
    // Crash right after the cleaned file became a swap file.
    let name = format!("{base:020}.log");
    std::fs::rename(
        dir.path().join(format!("{name}.cleaned")),
        dir.path().join(format!("{name}.swap")),
    )
    .expect("rename");
    for (b, _) in out.groups.iter().skip(1) {
        let _ = std::fs::remove_file(dir.path().join(format!("{b:020}.log.cleaned")));
    }
    let log = PartitionLog::open(dir.path(), config, None).expect("reopen");
    assert_eq!(log.log_end_offset(), expected_end);
    let got = contents(&log);
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "no overlapping offsets"
    );
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.ends_with(".swap") && !n.ends_with(".cleaned")),
        "{names:?}"
    );
}
