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

/// Every batch of the log, in order, as (header, bytes).
fn batches(log: &PartitionLog) -> Vec<(fjord_storage::BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let Some(range) = log.read(offset, 1 << 20, i64::MAX, true).expect("read") else {
            break;
        };
        let bytes = range.read().expect("bytes");
        for b in BatchIter::new(&bytes) {
            let (r, h) = b.expect("batch");
            offset = h.next_offset();
            out.push((h, bytes[r].to_vec()));
        }
    }
    out
}

/// Every record of the log as (offset, key, value).
fn contents(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    batches(log)
        .iter()
        .flat_map(|(_, bytes)| decode_records(bytes).expect("records"))
        .map(|rec| {
            (
                rec.offset,
                String::from_utf8_lossy(rec.key.as_deref().unwrap_or_default()).into_owned(),
                rec.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            )
        })
        .collect()
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

mod codecs {
    //! Compaction keeps every kept batch in the codec it arrived in and never writes more
    //! than it read, whatever the codec, the keys and how compressible the values are.

    use std::collections::HashMap;

    use fjord_storage::batch::Compression;
    use fjord_storage::builder::{BatchBuilder, Record};
    use fjord_storage::compression::compress;
    use fjord_storage::PartitionLog;
    use proptest::prelude::*;

    use super::{append, compacted_config, contents};

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// One record: its key, and its value as (length, fill byte), or none (a tombstone).
    type Spec = (u8, Option<(usize, u8)>);

    /// A producer's batch of `records`, compressed with `codec` the way a client sends it.
    fn producer_batch(codec: Compression, records: &[Spec]) -> Vec<u8> {
        let mut b = BatchBuilder::new(0, 1_000);
        for (key, value) in records {
            b.push(Record::new(
                Some(format!("key-{key}").into_bytes()),
                value.map(|(len, fill)| vec![fill; len]),
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

    fn record() -> impl Strategy<Value = Spec> {
        (
            0u8..12,
            prop_oneof![
                1 => Just(None),
                6 => (1usize..2_000, any::<u8>()).prop_map(Some),
            ],
        )
    }

    fn run(codec: Compression, batches: Vec<Vec<Spec>>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = PartitionLog::open(dir.path(), compacted_config(), None).expect("open");
        for records in &batches {
            append(&mut log, &producer_batch(codec, records), 0, 1_000).expect("append");
        }
        let before = contents(&log);
        let size_before = log.size_bytes();
        let Some(job) = log.plan_compaction(2_000, log.log_end_offset(), 1 << 20) else {
            return;
        };
        let out = job.run(&mut |_| {}).expect("run");
        assert!(
            out.stats.bytes_written <= out.stats.bytes_read,
            "{codec:?}: wrote {} bytes, read {}",
            out.stats.bytes_written,
            out.stats.bytes_read
        );
        log.finish_compaction(out, 2_000).expect("swap");
        assert!(
            log.size_bytes() <= size_before,
            "{codec:?}: {size_before} bytes on disk before, {} after",
            log.size_bytes()
        );
        // Every batch is still in the producers' codec (an emptied batch, kept only for
        // its producer's sequence, has nothing to compress).
        log.for_each_batch_header(|h| {
            if h.records_count > 0 {
                assert_eq!(
                    h.compression().expect("codec"),
                    codec,
                    "batch at {}",
                    h.base_offset
                );
            }
        })
        .expect("headers");
        // What is left is the original records at their offsets, and every key's latest.
        let after = contents(&log);
        let original: HashMap<i64, _> = before.iter().map(|(o, k, v)| (*o, (k, v))).collect();
        for (o, k, v) in &after {
            assert_eq!(
                original.get(o),
                Some(&(k, v)),
                "{codec:?}: offset {o} changed"
            );
        }
        let mut latest: HashMap<&String, i64> = HashMap::new();
        for (o, k, _) in &before {
            latest.insert(k, *o);
        }
        let kept: std::collections::HashSet<i64> = after.iter().map(|(o, _, _)| *o).collect();
        for (k, o) in latest {
            assert!(
                kept.contains(&o),
                "{codec:?}: the latest record of {k} (offset {o}) is gone"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn compaction_keeps_the_codec_and_never_grows_a_log(
            codec in prop::sample::select(CODECS.to_vec()),
            batches in prop::collection::vec(prop::collection::vec(record(), 1..20), 20..80),
        ) {
            run(codec, batches);
        }
    }

    /// The case that grew a topic 14,600x: highly compressible zstd values, compacted
    /// again and again as new values of the same keys arrive.
    #[test]
    fn repeated_passes_over_compressible_zstd_batches_do_not_inflate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = PartitionLog::open(dir.path(), compacted_config(), None).expect("open");
        let mut largest = 0;
        for round in 0..60u8 {
            // Nine keys every round supersedes, and one of its own that stays: every
            // batch compacted is partly kept and rebuilt.
            let mut records: Vec<_> = (0..9u8).map(|k| (k, Some((20_000, round)))).collect();
            records.push((100 + round, Some((20_000, round))));
            append(
                &mut log,
                &producer_batch(Compression::Zstd, &records),
                0,
                1_000,
            )
            .expect("append");
            if let Some(job) = log.plan_compaction(2_000, log.log_end_offset(), 1 << 20) {
                let out = job.run(&mut |_| {}).expect("run");
                log.finish_compaction(out, 2_000).expect("swap");
            }
            largest = largest.max(log.size_bytes());
        }
        // Up to 69 live records of 20,000 bytes: 1.4 MB uncompressed, a few KiB as zstd.
        assert!(largest < 64 * 1024, "the log reached {largest} bytes");
    }
}

/// A transactional batch of producer 9 (epoch 0) holding `keys`, each valued `value`.
fn txn_batch(sequence: i32, keys: &[&str], value: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new(0, 1_000)
        .producer(9, 0, sequence)
        .transactional(true);
    for k in keys {
        b.push(Record::new(
            Some(k.as_bytes().to_vec()),
            Some(value.as_bytes().to_vec()),
        ));
    }
    b.build()
}

fn markers(log: &PartitionLog) -> Vec<(i64, fjord_storage::control::ControlType)> {
    batches(log)
        .iter()
        .filter(|(h, _)| h.is_control())
        .map(|(h, bytes)| {
            let kind = fjord_storage::control::control_type(bytes)
                .expect("marker")
                .expect("a transaction marker");
            (h.base_offset, kind)
        })
        .collect()
}

#[test]
fn aborted_transactions_are_removed_and_their_markers_expire() {
    use fjord_storage::control::{marker_batch, ControlType};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = PartitionLog::open(dir.path(), compacted_config(), None).expect("open");
    // Producer 9: an aborted transaction, then a committed one, then plain records enough
    // to close the segments that hold them.
    append(&mut log, &txn_batch(0, &["a", "b"], "aborted"), 0, 1_000).expect("append");
    append(&mut log, &txn_batch(2, &["zz"], "aborted"), 0, 1_000).expect("append");
    append(
        &mut log,
        &marker_batch(9, 0, ControlType::Abort, 0, 1_000),
        0,
        1_000,
    )
    .expect("abort");
    append(&mut log, &txn_batch(3, &["c"], "committed"), 0, 1_000).expect("append");
    append(
        &mut log,
        &marker_batch(9, 0, ControlType::Commit, 0, 1_000),
        0,
        1_000,
    )
    .expect("commit");
    for i in 0..300 {
        put(&mut log, &format!("plain-{}", i % 20), Some("x"), 1_000);
    }
    let before = contents(&log);
    assert!(before
        .iter()
        .any(|(_, _, v)| v.as_deref() == Some("aborted")));
    let abort_at = markers(&log)
        .iter()
        .find(|(_, k)| *k == ControlType::Abort)
        .expect("abort marker")
        .0;

    assert!(compact(&mut log, 2_000));
    let after = contents(&log);
    assert!(
        !after
            .iter()
            .any(|(_, _, v)| v.as_deref() == Some("aborted")),
        "aborted records are gone"
    );
    assert!(
        after
            .iter()
            .any(|(_, k, v)| k == "c" && v.as_deref() == Some("committed")),
        "committed records stay"
    );
    assert!(
        markers(&log).contains(&(abort_at, ControlType::Abort)),
        "the abort marker stays for delete.retention.ms"
    );

    // After delete.retention.ms (10 s here) the abort marker goes; the commit marker,
    // the producer's last batch, stays.
    compact(&mut log, 20_000);
    let left = markers(&log);
    assert!(
        !left.iter().any(|(_, k)| *k == ControlType::Abort),
        "the abort marker expired: {left:?}"
    );
    assert!(left.iter().any(|(_, k)| *k == ControlType::Commit));
    // Offsets and the log end never move.
    assert_eq!(
        contents(&log).last().map(|(o, _, _)| *o),
        before.last().map(|(o, _, _)| *o)
    );
}
