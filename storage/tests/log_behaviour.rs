mod common;

use common::{append, batch, small_config};
use fjord_storage::batch::{validate, BatchIter};
use fjord_storage::builder::{BatchBuilder, Record};
use fjord_storage::{LogConfig, PartitionLog, StorageError};

fn append_n(log: &mut PartitionLog, n: usize, ts: i64) {
    for i in 0..n {
        let b = batch(3, 100, ts + i as i64 * 10);
        append(log, &b, 1, ts).expect("append");
    }
}

fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut offset = from;
    while let Some(range) = log.read(offset, 1 << 20, i64::MAX, true).expect("read") {
        let bytes = range.read().expect("bytes");
        for item in BatchIter::new(&bytes) {
            let (r, h) = item.expect("whole batch");
            validate(&bytes[r]).expect("valid crc");
            out.push((h.base_offset, h.last_offset()));
            offset = h.next_offset();
        }
    }
    out
}

#[test]
fn offsets_are_dense_across_segment_rolls() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), small_config(), None).expect("open");
    append_n(&mut log, 50, 1_000);
    assert!(log.segment_count() > 3, "small segments must roll");
    assert_eq!(log.log_end_offset(), 150);
    let batches = read_all(&log, 0);
    assert_eq!(batches.len(), 50);
    for (i, (base, last)) in batches.iter().enumerate() {
        assert_eq!(*base, i as i64 * 3);
        assert_eq!(*last, *base + 2);
    }
    // A read from the middle of a batch starts at that batch.
    let range = log.read(4, 1, i64::MAX, true).expect("read").expect("data");
    let bytes = range.read().expect("bytes");
    let h = validate(&bytes).expect("one whole batch");
    assert_eq!(h.base_offset, 3);
}

#[test]
fn first_batch_is_returned_even_when_larger_than_the_limit() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), None).expect("open");
    append_n(&mut log, 3, 0);
    let one = log
        .read(0, 10, i64::MAX, true)
        .expect("read")
        .expect("data");
    assert_eq!(BatchIter::new(&one.read().expect("bytes")).count(), 1);
    assert!(log.read(0, 10, i64::MAX, false).expect("read").is_none());
    let two = log
        .read(0, 2 * one.len, i64::MAX, true)
        .expect("read")
        .expect("data");
    assert_eq!(BatchIter::new(&two.read().expect("bytes")).count(), 2);
}

#[test]
fn a_first_batch_that_does_not_fit_is_not_skipped_for_a_later_segment() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), None).expect("open");
    append(&mut log, &batch(3, 1000, 0), 1, 0).expect("append");
    log.roll(0).expect("roll");
    append(&mut log, &batch(1, 1, 0), 1, 0).expect("append");
    assert_eq!(log.segment_count(), 2);
    // Without the first-batch exemption the big batch at offset 0 does not fit in 500
    // bytes; answering with the small batch at offset 3 instead would skip 0..3.
    assert!(log.read(0, 500, i64::MAX, false).expect("read").is_none());
    let range = log
        .read(3, 500, i64::MAX, false)
        .expect("read")
        .expect("data");
    let h = validate(&range.read().expect("bytes")).expect("one whole batch");
    assert_eq!(h.base_offset, 3);
}

#[test]
fn reads_stop_at_the_max_offset() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), None).expect("open");
    append_n(&mut log, 4, 0);
    let range = log.read(0, 1 << 20, 6, true).expect("read").expect("data");
    let bytes = range.read().expect("bytes");
    assert_eq!(BatchIter::new(&bytes).count(), 2);
    assert!(log.read(6, 1 << 20, 6, true).expect("read").is_none());
    assert!(matches!(
        log.read(13, 1 << 20, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn clean_reopen_keeps_everything() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), small_config(), Some("id".into())).expect("open");
    append_n(&mut log, 30, 0);
    let before = read_all(&log, 0);
    log.close().expect("close");
    let log = PartitionLog::open(dir.path(), small_config(), None).expect("reopen");
    assert_eq!(log.topic_id(), Some("id"));
    assert_eq!(read_all(&log, 0), before);
    assert_eq!(log.latest_epoch(), Some(1));
}

#[test]
fn torn_tail_is_cut_at_the_last_whole_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), None).expect("open");
    append_n(&mut log, 10, 0);
    let last_base = *log.segment_bases().last().expect("segment");
    drop(log); // no clean shutdown
    let path = dir.path().join(format!("{last_base:020}.log"));
    let len = std::fs::metadata(&path).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_len(len - 7).expect("tear");
    let log = PartitionLog::open(dir.path(), LogConfig::default(), None).expect("recover");
    assert_eq!(log.log_end_offset(), 27);
    assert_eq!(read_all(&log, 0).len(), 9);
}

#[test]
fn corrupt_byte_is_never_served() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), None).expect("open");
    append_n(&mut log, 10, 0);
    drop(log);
    let path = dir.path().join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&path).expect("read");
    let size = bytes.len() / 10;
    bytes[size * 5 + 40] ^= 0xff; // inside the 6th batch
    std::fs::write(&path, &bytes).expect("write");
    let log = PartitionLog::open(dir.path(), LogConfig::default(), None).expect("recover");
    assert_eq!(log.log_end_offset(), 15);
    assert_eq!(read_all(&log, 0).len(), 5);
}

#[test]
fn delete_records_and_retention_by_bytes() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        retention_bytes: 8192,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config, None).expect("open");
    append_n(&mut log, 60, 0);
    let segments = log.segment_count();
    log.advance_log_start_offset(10).expect("delete records");
    assert_eq!(log.log_start_offset(), 10);
    assert!(matches!(
        log.read(5, 100, i64::MAX, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(log.read(10, 100, i64::MAX, true).expect("read").is_some());
    let deleted = log
        .enforce_retention(0, log.log_end_offset())
        .expect("retention");
    assert!(deleted > 0);
    assert!(log.segment_count() < segments);
    assert!(log.size_bytes() <= 8192 + 4096);
    assert_eq!(log.log_start_offset(), log.segment_bases()[0]);
}

#[test]
fn retention_by_time_respects_the_high_watermark() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        retention_ms: 1_000,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config, None).expect("open");
    append_n(&mut log, 40, 0);
    let leo = log.log_end_offset();
    assert_eq!(log.enforce_retention(500, leo).expect("retention"), 0);
    assert!(log.enforce_retention(10_000, 30).expect("retention") > 0);
    assert!(log.log_start_offset() <= 30);
    let n = log.enforce_retention(10_000, leo).expect("retention");
    assert!(n > 0);
    assert_eq!(
        log.log_start_offset(),
        leo,
        "everything expired, active rolled"
    );
    assert_eq!(log.log_end_offset(), leo, "offsets are never reused");
}

#[test]
fn truncation_and_epochs() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), small_config(), None).expect("open");
    for epoch in 0..3 {
        for _ in 0..10 {
            let b = batch(2, 50, 0);
            append(&mut log, &b, epoch, 0).expect("append");
        }
    }
    assert_eq!(log.end_offset_for_epoch(0), (0, 20));
    assert_eq!(log.end_offset_for_epoch(1), (1, 40));
    assert_eq!(log.end_offset_for_epoch(2), (2, 60));
    log.truncate_to(45).expect("truncate");
    assert_eq!(
        log.log_end_offset(),
        44,
        "cut at the batch boundary below 45"
    );
    log.truncate_to(30).expect("truncate");
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(log.end_offset_for_epoch(2), (1, 30));
    let b = batch(1, 10, 0);
    let info = append(&mut log, &b, 3, 0).expect("append");
    assert_eq!(info.first_offset, 30);
    assert_eq!(log.end_offset_for_epoch(1), (1, 30));
}

#[test]
fn a_cut_inside_a_batch_forgets_the_epoch_that_batch_started() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), small_config(), None).expect("open");
    for epoch in 0..2 {
        for _ in 0..5 {
            append(&mut log, &batch(2, 50, 0), epoch, 0).expect("append");
        }
    }
    // Epoch 1 starts at 10 with the batch 10..=11; cutting at 11 removes that batch.
    log.truncate_to(11).expect("truncate");
    assert_eq!(log.log_end_offset(), 10);
    assert_eq!(log.latest_epoch(), Some(0), "no epoch-1 record is left");
    assert_eq!(log.end_offset_for_epoch(1), (0, 10));
}

#[test]
fn an_epoch_started_without_writes_is_dropped_when_following() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), small_config(), None).expect("open");
    append(&mut log, &batch(3, 10, 0), 4, 0).expect("append");
    // Elected at epoch 7, then demoted before any write.
    log.assign_epoch_start(7).expect("assign");
    assert_eq!(log.latest_epoch(), Some(7));
    assert!(!log.truncate_to(3).expect("truncate"), "no records removed");
    assert_eq!(log.latest_epoch(), Some(4), "the next fetch names epoch 4");
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config(), None).expect("reopen");
    assert_eq!(log.latest_epoch(), Some(4), "and that survives a restart");
}

#[test]
fn timestamp_lookup() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), small_config(), None).expect("open");
    append_n(&mut log, 20, 1_000); // batch i has records at 1000+10i .. +2
    assert_eq!(
        log.offset_for_timestamp(0).expect("lookup"),
        Some((0, 1_000))
    );
    assert_eq!(
        log.offset_for_timestamp(1_051).expect("lookup"),
        Some((16, 1_051))
    );
    assert_eq!(
        log.offset_for_timestamp(1_055).expect("lookup"),
        Some((18, 1_060))
    );
    assert_eq!(log.offset_for_timestamp(5_000).expect("lookup"), None);
    assert_eq!(
        log.max_timestamp_and_offset().expect("lookup"),
        Some((1_192, 59))
    );
}

/// KAFKA-16310: MAX_TIMESTAMP names the record holding the largest timestamp, not the
/// last offset of its batch (librdkafka 0081 expected 1 and got 2).
#[test]
fn max_timestamp_names_the_record_not_its_batch() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = PartitionLog::open(dir.path(), small_config(), None).expect("open");
    append_n(&mut log, 2, 1_000); // offsets 0..=5
    let mut b = BatchBuilder::new(0, 5_000);
    for delta in [0, 400, 100] {
        let mut r = Record::new(None, Some(b"v".to_vec()));
        r.timestamp_delta = delta;
        b.push(r);
    }
    append(&mut log, &b.build(), 1, 5_000).expect("append"); // offsets 6..=8
    assert_eq!(
        log.max_timestamp_and_offset().expect("lookup"),
        Some((5_400, 7))
    );
}

#[test]
fn oversized_and_corrupt_batches_are_refused_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        max_message_bytes: 500,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config, None).expect("open");
    let big = batch(10, 100, 0);
    assert!(matches!(
        append(&mut log, &big, 0, 0),
        Err(StorageError::BatchTooLarge { .. })
    ));
    let mut two = batch(1, 10, 0);
    let mut bad = batch(1, 10, 0);
    let n = bad.len();
    bad[n - 1] ^= 1;
    two.extend_from_slice(&bad);
    assert!(matches!(
        append(&mut log, &two, 0, 0),
        Err(StorageError::CorruptBatch(_))
    ));
    assert_eq!(
        log.log_end_offset(),
        0,
        "nothing from a rejected request is written"
    );
}

#[test]
fn segments_roll_by_age_and_flush_by_time_and_count() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        segment_ms: 1_000,
        flush_ms: 500,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config, None).expect("open");
    append(&mut log, &batch(1, 10, 0), 0, 10_000).expect("append");
    append(&mut log, &batch(1, 10, 0), 0, 10_400).expect("append");
    assert_eq!(log.segment_count(), 1, "young segment keeps growing");
    assert_eq!(
        log.recovery_point(),
        0,
        "flush.ms not reached at the second append"
    );
    assert!(log.maybe_flush(10_600).expect("flush"), "flush.ms reached");
    assert_eq!(log.recovery_point(), 2);
    append(&mut log, &batch(1, 10, 0), 0, 11_000).expect("append");
    assert_eq!(log.segment_count(), 2, "segment.ms reached: rolled");
    assert_eq!(log.recovery_point(), 2, "rolling flushed the old segment");

    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        flush_messages: 3,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config, None).expect("open");
    append(&mut log, &batch(2, 10, 0), 0, 0).expect("append");
    assert_eq!(log.recovery_point(), 0);
    append(&mut log, &batch(1, 10, 0), 0, 0).expect("append");
    assert_eq!(log.recovery_point(), 3, "flush.messages reached");
}
