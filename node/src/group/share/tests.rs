//! The share-partition's rules one by one, and its snapshots.

use super::snapshot::{DELIVERY_STATE_ACKNOWLEDGED, DELIVERY_STATE_ARCHIVED, MAX_RESTORED_WINDOW};
use super::*;
use kafka_protocol::error::ResponseError;

const LOCK_MS: i64 = 1_000;

fn config() -> SharePartitionConfig {
    SharePartitionConfig {
        max_record_locks: 10,
        delivery_count_limit: 3,
        record_lock_duration_ms: LOCK_MS,
    }
}

fn fresh() -> SharePartition {
    SharePartition::new(config(), AutoOffsetReset::Earliest, 0, 0)
}

fn run(first: i64, last: i64, delivery_count: i16) -> AcquiredRecords {
    AcquiredRecords {
        first_offset: first,
        last_offset: last,
        delivery_count,
    }
}

fn ack(first: i64, last: i64, t: AcknowledgeType) -> AcknowledgementBatch {
    AcknowledgementBatch::new(first, last, t)
}

fn state(p: &SharePartition, offset: i64) -> Option<i8> {
    p.record(offset).map(|r| r.state.code())
}

fn holder(p: &SharePartition, offset: i64) -> Option<String> {
    match p.record(offset).map(|r| &r.state) {
        Some(RecordState::Acquired { member_id, .. }) => Some(member_id.to_string()),
        _ => None,
    }
}

#[test]
fn auto_offset_reset_picks_the_start() {
    let p = SharePartition::new(config(), AutoOffsetReset::Earliest, 5, 20);
    assert_eq!((p.start_offset(), p.end_offset()), (5, 5));
    let p = SharePartition::new(config(), AutoOffsetReset::Latest, 5, 20);
    assert_eq!((p.start_offset(), p.end_offset()), (20, 20));
    assert_eq!(
        AutoOffsetReset::parse("earliest"),
        Some(AutoOffsetReset::Earliest)
    );
    assert_eq!(
        AutoOffsetReset::parse("latest"),
        Some(AutoOffsetReset::Latest)
    );
    assert_eq!(AutoOffsetReset::parse("by_duration:PT1H"), None);
    assert_eq!(AutoOffsetReset::default(), AutoOffsetReset::Latest);
    for code in 0..4 {
        assert_eq!(
            AcknowledgeType::from_code(code).map(AcknowledgeType::code),
            Some(code)
        );
    }
    assert_eq!(AcknowledgeType::from_code(4), None);
}

#[test]
fn acquire_locks_new_records_in_order_for_one_member() {
    let mut p = fresh();
    let (got, changed) = p.acquire("a", 0..5, 100, 0);
    assert_eq!(got, vec![run(0, 4, 1)]);
    assert!(changed);
    assert_eq!((p.start_offset(), p.end_offset(), p.acquired()), (0, 5, 5));
    assert_eq!(holder(&p, 3).as_deref(), Some("a"));
    // Nothing is free below the SPEO, and the log has nothing more.
    let (got, changed) = p.acquire("b", 0..5, 100, 1);
    assert!(got.is_empty() && !changed);
    let (got, _) = p.acquire("b", 0..8, 2, 1);
    assert_eq!(got, vec![run(5, 6, 1)], "max_records caps the answer");
    assert_eq!(holder(&p, 5).as_deref(), Some("b"));
    assert_eq!(p.next_lock_deadline(), Some(LOCK_MS));
    assert_eq!(p.next_fetch_offset(), 7);
    assert!(p.holds_locks("a") && p.holds_locks("b") && !p.holds_locks("c"));
}

#[test]
fn the_window_never_grows_past_the_record_lock_limit() {
    let mut p = fresh();
    let (got, _) = p.acquire("a", 0..100, 100, 0);
    assert_eq!(got, vec![run(0, 9, 1)]);
    let (got, _) = p.acquire("b", 0..100, 100, 0);
    assert!(got.is_empty(), "a full window hands out nothing new");
    // Finished records in the middle still count: only the SPSO moving frees room.
    p.acknowledge("a", &[ack(5, 9, AcknowledgeType::Accept)], 1)
        .expect("ack");
    assert!(p.acquire("b", 0..100, 100, 1).0.is_empty());
    p.acknowledge("a", &[ack(0, 2, AcknowledgeType::Accept)], 1)
        .expect("ack");
    assert_eq!(p.start_offset(), 3);
    let (got, _) = p.acquire("b", 0..100, 100, 1);
    assert_eq!(got, vec![run(10, 12, 1)]);
    assert_eq!(p.in_flight(), 10);
}

#[test]
fn each_acknowledge_type_moves_records_where_kafka_does() {
    let mut p = fresh();
    p.acquire("a", 0..8, 100, 0);
    let batches = [
        ack(0, 1, AcknowledgeType::Accept),
        ack(2, 2, AcknowledgeType::Release),
        ack(3, 3, AcknowledgeType::Reject),
        ack(4, 4, AcknowledgeType::Gap),
    ];
    assert_eq!(p.acknowledge("a", &batches, 1), Ok(true));
    // 0 and 1 are done and behind the SPSO; 2 waits for another delivery.
    assert_eq!(p.start_offset(), 2);
    assert_eq!(state(&p, 2), Some(0));
    assert_eq!(state(&p, 3), Some(4));
    assert_eq!(state(&p, 4), Some(4));
    assert_eq!(holder(&p, 5).as_deref(), Some("a"));
    // A redelivery comes before new records, with its count.
    let (got, _) = p.acquire("b", 2..12, 100, 2);
    assert_eq!(got, vec![run(2, 2, 2), run(8, 11, 1)]);
    p.acknowledge("a", &[ack(5, 7, AcknowledgeType::Accept)], 3)
        .expect("ack");
    p.acknowledge("b", &[ack(2, 2, AcknowledgeType::Accept)], 3)
        .expect("ack");
    assert_eq!(p.start_offset(), 8);
}

#[test]
fn per_offset_types_settle_each_offset() {
    let mut p = fresh();
    p.acquire("a", 0..4, 100, 0);
    let batch = AcknowledgementBatch {
        first_offset: 0,
        last_offset: 3,
        acknowledge_types: vec![1, 0, 2, 3],
    };
    p.acknowledge("a", &[batch], 1).expect("ack");
    assert_eq!(p.start_offset(), 2);
    assert_eq!(state(&p, 2), Some(0));
    assert_eq!(state(&p, 3), Some(4));
}

#[test]
fn only_the_holder_acknowledges_and_a_failed_ack_changes_nothing() {
    let mut p = fresh();
    p.acquire("a", 0..3, 100, 0);
    p.acquire("b", 0..5, 100, 0);
    let before = p.clone();
    assert_eq!(
        p.acknowledge("b", &[ack(0, 0, AcknowledgeType::Accept)], 1),
        Err(ResponseError::InvalidRecordState)
    );
    // One bad offset fails the partition's whole acknowledgement.
    let mixed = [
        ack(3, 3, AcknowledgeType::Accept),
        ack(4, 4, AcknowledgeType::Accept),
    ];
    assert_eq!(
        p.acknowledge("a", &mixed, 1),
        Err(ResponseError::InvalidRecordState)
    );
    assert_eq!(p, before);
    // A settled record is not the holder's any more either.
    p.acknowledge("a", &[ack(0, 0, AcknowledgeType::Release)], 1)
        .expect("ack");
    assert_eq!(
        p.acknowledge("a", &[ack(0, 0, AcknowledgeType::Accept)], 1),
        Err(ResponseError::InvalidRecordState)
    );
}

#[test]
fn malformed_acknowledgements_are_invalid_requests() {
    let mut p = fresh();
    p.acquire("a", 0..6, 100, 0);
    let before = p.clone();
    let cases: Vec<Vec<AcknowledgementBatch>> = vec![
        vec![ack(3, 2, AcknowledgeType::Accept)],
        vec![
            ack(0, 2, AcknowledgeType::Accept),
            ack(2, 3, AcknowledgeType::Accept),
        ],
        vec![
            ack(3, 4, AcknowledgeType::Accept),
            ack(0, 1, AcknowledgeType::Accept),
        ],
        vec![AcknowledgementBatch {
            first_offset: 0,
            last_offset: 2,
            acknowledge_types: vec![1, 1],
        }],
        vec![AcknowledgementBatch {
            first_offset: 0,
            last_offset: 0,
            acknowledge_types: vec![4],
        }],
        vec![AcknowledgementBatch {
            first_offset: 0,
            last_offset: 0,
            acknowledge_types: vec![],
        }],
        // Past anything handed out.
        vec![ack(4, 9, AcknowledgeType::Accept)],
        vec![ack(-1, 0, AcknowledgeType::Accept)],
    ];
    for batches in cases {
        assert_eq!(
            p.acknowledge("a", &batches, 1),
            Err(ResponseError::InvalidRequest),
            "{batches:?}"
        );
        assert_eq!(p, before);
    }
}

#[test]
fn expired_locks_free_records_until_the_delivery_limit_archives_them() {
    let mut p = fresh();
    assert_eq!(p.acquire("a", 0..2, 100, 0).0, vec![run(0, 1, 1)]);
    p.acknowledge("a", &[ack(1, 1, AcknowledgeType::Accept)], 0)
        .expect("ack");
    let mut now = 0;
    for delivery in 2..=3 {
        assert!(
            !p.expire_locks(now + LOCK_MS - 1),
            "a lock holds until its deadline"
        );
        now += LOCK_MS;
        assert!(p.expire_locks(now));
        assert_eq!(state(&p, 0), Some(0));
        assert_eq!(p.acquire("b", 0..2, 100, now).0, vec![run(0, 0, delivery)]);
    }
    // The third delivery was the last: archived, and the SPSO passes both.
    now += LOCK_MS;
    assert!(p.expire_locks(now));
    assert_eq!((p.start_offset(), p.in_flight()), (2, 0));
    assert!(p.acquire("c", 0..2, 100, now).0.is_empty());
}

#[test]
fn an_acknowledgement_after_the_deadline_fails_even_before_the_timer_runs() {
    let mut p = fresh();
    p.acquire("a", 0..2, 100, 0);
    assert_eq!(
        p.acknowledge("a", &[ack(0, 1, AcknowledgeType::Accept)], LOCK_MS),
        Err(ResponseError::InvalidRecordState)
    );
    assert_eq!(state(&p, 0), Some(0));
    let (got, _) = p.acquire("b", 0..2, 100, LOCK_MS);
    assert_eq!(got, vec![run(0, 1, 2)]);
}

#[test]
fn a_release_at_the_limit_archives() {
    let mut p = fresh();
    for now in 0..3 {
        p.acquire("a", 0..1, 100, now);
        p.acknowledge("a", &[ack(0, 0, AcknowledgeType::Release)], now)
            .expect("ack");
    }
    assert_eq!(p.start_offset(), 1);
    assert_eq!(p.in_flight(), 0);
}

#[test]
fn a_leaving_member_gives_back_only_its_own_records() {
    let mut p = fresh();
    p.acquire("a", 0..2, 100, 0);
    p.acquire("b", 0..4, 100, 0);
    assert!(p.release_member("a"));
    assert!(!p.release_member("a"));
    assert_eq!(state(&p, 0), Some(0));
    assert_eq!(holder(&p, 2).as_deref(), Some("b"));
    assert_eq!(p.next_fetch_offset(), 0);
    let (got, _) = p.acquire("c", 0..4, 100, 1);
    assert_eq!(got, vec![run(0, 1, 2)]);
}

#[test]
fn a_moving_log_start_finishes_what_lies_below_it() {
    let mut p = fresh();
    p.acquire("a", 0..6, 100, 0);
    assert!(p.advance_log_start(3));
    assert!(!p.advance_log_start(2), "the log start never moves back");
    assert_eq!((p.start_offset(), p.end_offset()), (3, 6));
    // Acknowledging records that are gone is fine and does nothing to them.
    p.acknowledge("a", &[ack(0, 4, AcknowledgeType::Accept)], 1)
        .expect("ack");
    assert_eq!(p.start_offset(), 5);
    // Past the SPEO the window is empty and restarts there.
    assert!(p.advance_log_start(20));
    assert_eq!(
        (p.start_offset(), p.end_offset(), p.in_flight()),
        (20, 20, 0)
    );
    let (got, _) = p.acquire("a", 20..22, 100, 2);
    assert_eq!(got, vec![run(20, 21, 1)]);
}

#[test]
fn new_records_are_only_taken_contiguously_from_the_end() {
    let mut p = fresh();
    p.acquire("a", 0..3, 100, 0);
    // A fetch that read from past the SPEO must not make the offsets between vanish.
    let (got, changed) = p.acquire("b", 5..9, 100, 0);
    assert!(got.is_empty() && !changed);
    // A fetch of a subrange hands out only what it read.
    p.acknowledge("a", &[ack(1, 1, AcknowledgeType::Release)], 0)
        .expect("ack");
    let (got, _) = p.acquire("b", 1..2, 100, 0);
    assert_eq!(got, vec![run(1, 1, 2)]);
}

#[test]
fn the_start_offset_resets_only_with_no_locks_held() {
    let mut p = fresh();
    p.acquire("a", 0..4, 100, 0);
    assert_eq!(
        p.reset_start_offset(0, 1),
        Err(ResponseError::NonEmptyGroup)
    );
    p.acknowledge("a", &[ack(0, 3, AcknowledgeType::Accept)], 1)
        .expect("ack");
    assert_eq!(p.start_offset(), 4);
    // Backward is allowed: an operator replays the queue.
    assert_eq!(p.reset_start_offset(1, 2), Ok(true));
    assert_eq!(
        (p.start_offset(), p.end_offset(), p.state_epoch()),
        (1, 1, 1)
    );
    assert_eq!(p.acquire("a", 0..4, 100, 3).0, vec![run(1, 3, 1)]);
    // Expired locks do not block a reset.
    assert_eq!(p.reset_start_offset(10, 3 + LOCK_MS), Ok(true));
    assert_eq!(
        p.reset_start_offset(-1, 3 + LOCK_MS),
        Err(ResponseError::InvalidRequest)
    );
}

#[test]
fn calls_say_whether_the_durable_state_changed() {
    let mut p = fresh();
    let epoch = p.snapshot_epoch();
    assert!(!p.acquire("a", 0..0, 100, 0).1);
    assert!(!p.acquire("a", 0..5, 0, 0).1);
    assert!(!p.expire_locks(0));
    assert!(!p.release_member("nobody"));
    assert_eq!(p.snapshot_epoch(), epoch);
    assert!(p.acquire("a", 0..2, 100, 0).1);
    assert_eq!(p.acknowledge("a", &[], 0), Ok(false));
    assert_eq!(
        p.acknowledge("a", &[ack(0, 0, AcknowledgeType::Accept)], 0),
        Ok(true)
    );
    assert_eq!(p.snapshot_epoch(), epoch + 2);
}

#[test]
fn a_snapshot_writes_locked_records_as_available() {
    let mut p = fresh();
    p.acquire("a", 0..6, 100, 0);
    p.acknowledge(
        "a",
        &[
            ack(1, 1, AcknowledgeType::Accept),
            ack(2, 2, AcknowledgeType::Reject),
        ],
        0,
    )
    .expect("ack");
    let snap = p.snapshot();
    assert_eq!(snap.start_offset, 0);
    assert_eq!(
        snap.state_batches,
        vec![
            StateBatch {
                first_offset: 0,
                last_offset: 0,
                delivery_state: 0,
                delivery_count: 1
            },
            StateBatch {
                first_offset: 1,
                last_offset: 1,
                delivery_state: DELIVERY_STATE_ACKNOWLEDGED,
                delivery_count: 1
            },
            StateBatch {
                first_offset: 2,
                last_offset: 2,
                delivery_state: DELIVERY_STATE_ARCHIVED,
                delivery_count: 1
            },
            StateBatch {
                first_offset: 3,
                last_offset: 5,
                delivery_state: 0,
                delivery_count: 1
            },
        ]
    );
    // The new leader redelivers the locked ones, never the accepted one.
    let mut q = SharePartition::from_snapshot(&snap, config()).expect("restore");
    assert_eq!(q.acquired(), 0);
    let (got, _) = q.acquire("b", 0..6, 100, 0);
    assert_eq!(got, vec![run(0, 0, 2), run(3, 5, 2)]);
    // A snapshot with nothing locked restores to the same state.
    let mut r = fresh();
    r.acquire("a", 0..3, 100, 0);
    let batches = [
        ack(0, 1, AcknowledgeType::Release),
        ack(2, 2, AcknowledgeType::Accept),
    ];
    r.acknowledge("a", &batches, 0).expect("ack");
    let restored = SharePartition::from_snapshot(&r.snapshot(), config()).expect("restore");
    assert_eq!(restored, r);
    let json = serde_json::to_string(&r.snapshot()).expect("serialize");
    let back: ShareSnapshot = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, r.snapshot());
}

#[test]
fn a_restore_archives_records_whose_last_delivery_was_in_flight() {
    let mut p = fresh();
    for now in 0..3 {
        p.acquire("a", 0..2, 100, now * LOCK_MS);
    }
    // Offset 0 and 1 are on their third (last) delivery when the leader dies.
    let q = SharePartition::from_snapshot(&p.snapshot(), config()).expect("restore");
    assert_eq!((q.start_offset(), q.in_flight()), (2, 0));
    // With a higher limit they would have had another go.
    let more = SharePartitionConfig {
        delivery_count_limit: 5,
        ..config()
    };
    let q = SharePartition::from_snapshot(&p.snapshot(), more).expect("restore");
    assert_eq!(q.next_fetch_offset(), 0);
}

#[test]
fn a_restore_fills_gaps_and_cuts_runs_below_the_start() {
    let snap = ShareSnapshot {
        snapshot_epoch: 7,
        state_epoch: 2,
        start_offset: 10,
        state_batches: vec![
            StateBatch {
                first_offset: 8,
                last_offset: 10,
                delivery_state: 0,
                delivery_count: 1,
            },
            StateBatch {
                first_offset: 13,
                last_offset: 13,
                delivery_state: 2,
                delivery_count: 1,
            },
        ],
    };
    let p = SharePartition::from_snapshot(&snap, config()).expect("restore");
    assert_eq!((p.start_offset(), p.end_offset()), (10, 14));
    assert_eq!((p.state_epoch(), p.snapshot_epoch()), (2, 7));
    assert_eq!(p.record(10).map(|r| r.delivery_count), Some(1));
    // Offsets no run names were never finished: available, never delivered.
    assert_eq!(
        p.record(11).map(|r| (r.state.code(), r.delivery_count)),
        Some((0, 0))
    );
    assert_eq!(state(&p, 13), Some(2));
}

#[test]
fn a_bad_snapshot_is_refused() {
    let batch = |first, last, delivery_state, delivery_count| StateBatch {
        first_offset: first,
        last_offset: last,
        delivery_state,
        delivery_count,
    };
    let snap = |start, state_batches| ShareSnapshot {
        snapshot_epoch: 0,
        state_epoch: 0,
        start_offset: start,
        state_batches,
    };
    let cases = [
        (snap(-1, vec![]), SnapshotError::Uninitialized(-1)),
        (
            snap(0, vec![batch(3, 2, 0, 1)]),
            SnapshotError::BatchOrder { first: 3, last: 2 },
        ),
        (
            snap(0, vec![batch(0, 2, 0, 1), batch(2, 3, 0, 1)]),
            SnapshotError::BatchOrder { first: 2, last: 3 },
        ),
        (
            snap(0, vec![batch(0, 0, 3, 1)]),
            SnapshotError::UnknownDeliveryState {
                first: 0,
                last: 0,
                state: 3,
            },
        ),
        (
            snap(0, vec![batch(0, 0, 0, -1)]),
            SnapshotError::NegativeDeliveryCount {
                first: 0,
                last: 0,
                count: -1,
            },
        ),
        (
            snap(0, vec![batch(0, MAX_RESTORED_WINDOW, 0, 1)]),
            SnapshotError::WindowTooWide(MAX_RESTORED_WINDOW + 1),
        ),
    ];
    for (s, err) in cases {
        assert_eq!(SharePartition::from_snapshot(&s, config()), Err(err));
    }
}
