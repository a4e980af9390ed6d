//! The leader's share-partitions against an in-memory store and log: what is stored
//! before each answer, and what a failed write or a new leader epoch does.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use fjord_storage::builder::{BatchBuilder, Record};

use super::*;
use crate::group::share::{AcknowledgeType, RecordState};

#[derive(Default)]
struct MemoryStore {
    stored: Mutex<HashMap<ShareKey, (i32, ShareSnapshot)>>,
    writes: AtomicI32,
    failing: AtomicBool,
}

impl StateStore for MemoryStore {
    async fn read(
        &self,
        key: &ShareKey,
        leader_epoch: i32,
    ) -> Result<Option<ShareSnapshot>, ResponseError> {
        let mut stored = self.stored.lock().expect("store lock");
        match stored.get_mut(key) {
            Some((e, _)) if *e > leader_epoch => Err(ResponseError::FencedLeaderEpoch),
            Some((e, s)) => {
                *e = leader_epoch;
                Ok(Some(s.clone()))
            }
            None => Ok(None),
        }
    }

    async fn write(
        &self,
        key: &ShareKey,
        leader_epoch: i32,
        snapshot: &ShareSnapshot,
    ) -> Result<(), ResponseError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        let mut stored = self.stored.lock().expect("store lock");
        if stored.get(key).is_some_and(|(e, _)| *e > leader_epoch) {
            return Err(ResponseError::FencedLeaderEpoch);
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        stored.insert(key.clone(), (leader_epoch, snapshot.clone()));
        Ok(())
    }
}

/// A log of `len` one-record batches from offset 0.
struct MemoryLog {
    epoch: AtomicI32,
    start: i64,
    batches: Vec<Bytes>,
}

impl MemoryLog {
    fn new(len: i64) -> Self {
        let batches = (0..len)
            .map(|o| {
                let mut b = BatchBuilder::new(o, 1_700_000_000_000);
                b.push(Record::new(None, Some(vec![o as u8; 8])));
                Bytes::from(b.build())
            })
            .collect();
        MemoryLog {
            epoch: AtomicI32::new(1),
            start: 0,
            batches,
        }
    }
}

impl ShareLog for MemoryLog {
    fn leading_epoch(&self) -> Option<i32> {
        let e = self.epoch.load(Ordering::SeqCst);
        (e >= 0).then_some(e)
    }
    fn log_start_offset(&self) -> i64 {
        self.start
    }
    fn readable_end(&self) -> i64 {
        self.batches.len() as i64
    }
    fn offset_for_timestamp(&self, timestamp_ms: i64) -> Option<i64> {
        // Record o was written in second o.
        let o = timestamp_ms / 1000;
        (o < self.batches.len() as i64).then_some(o.max(0))
    }
    fn read(&self, offset: i64, max_bytes: u64) -> Result<Bytes, ResponseError> {
        let mut out = Vec::new();
        for b in self.batches.iter().skip(offset as usize) {
            if !out.is_empty() && (out.len() + b.len()) as u64 > max_bytes {
                break;
            }
            out.extend_from_slice(b);
        }
        Ok(Bytes::from(out))
    }
}

fn key() -> ShareKey {
    ShareKey {
        group_id: "g".into(),
        topic_id: uuid::Uuid::from_bytes([7; 16]),
        partition: 0,
    }
}

fn earliest() -> Settings {
    Settings {
        partition: SharePartitionConfig::default(),
        reset: AutoOffsetReset::Earliest,
        by_duration_ms: None,
    }
}

fn offsets(a: &Acquired) -> Vec<(i64, i64)> {
    a.runs
        .iter()
        .map(|r| (r.first_offset, r.last_offset))
        .collect()
}

#[tokio::test]
async fn acquisitions_are_stored_before_they_are_answered() {
    let (store, log, leader) = (
        MemoryStore::default(),
        MemoryLog::new(10),
        ShareLeader::default(),
    );
    let got = leader
        .acquire(&store, &log, &key(), earliest(), "a", 4, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    assert_eq!(offsets(&got), vec![(0, 3)]);
    assert_eq!(batches::covered_offsets(&got.records), Some(0..4));
    let stored = store
        .stored
        .lock()
        .expect("store lock")
        .get(&key())
        .cloned()
        .expect("stored state");
    // Four records delivered once each, written as available (a lock is not durable).
    assert_eq!(stored.1.state_batches.len(), 1);
    assert_eq!(stored.1.state_batches[0].delivery_count, 1);
    // Another member gets the next ones, not the same.
    let other = leader
        .acquire(&store, &log, &key(), earliest(), "b", 100, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    assert_eq!(offsets(&other), vec![(4, 9)]);
}

#[tokio::test]
async fn a_new_share_partition_starts_where_auto_offset_reset_says() {
    let (store, log, leader) = (
        MemoryStore::default(),
        MemoryLog::new(10),
        ShareLeader::default(),
    );
    let latest = Settings {
        reset: AutoOffsetReset::Latest,
        ..earliest()
    };
    let got = leader
        .acquire(&store, &log, &key(), latest, "a", 100, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    assert!(got.runs.is_empty());
    // The start was stored at once, so a later leader keeps it.
    let stored = store
        .stored
        .lock()
        .expect("store lock")
        .get(&key())
        .cloned()
        .expect("stored state");
    assert_eq!(stored.1.start_offset, 10);
}

#[tokio::test]
async fn by_duration_starts_at_the_first_record_young_enough() {
    let (store, log, leader) = (
        MemoryStore::default(),
        MemoryLog::new(10),
        ShareLeader::default(),
    );
    // Records are a second apart from the epoch; "no older than now - 3 s" is record 3.
    let settings = Settings {
        by_duration_ms: Some(crate::time::now_ms() - 3_000),
        reset: AutoOffsetReset::Latest,
        ..earliest()
    };
    let got = leader
        .acquire(&store, &log, &key(), settings, "a", 2, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    assert_eq!(offsets(&got), vec![(3, 4)]);
}

#[tokio::test]
async fn a_failed_write_answers_nothing_and_reloads_the_stored_state() {
    let (store, log, leader) = (
        MemoryStore::default(),
        MemoryLog::new(10),
        ShareLeader::default(),
    );
    leader
        .acquire(&store, &log, &key(), earliest(), "a", 2, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    store.failing.store(true, Ordering::SeqCst);
    let failed = leader
        .acquire(&store, &log, &key(), earliest(), "a", 2, 1 << 20, 0)
        .await;
    assert_eq!(
        failed.expect_err("an error"),
        ResponseError::NotLeaderOrFollower
    );
    store.failing.store(false, Ordering::SeqCst);
    // The records of the failed answer were never sent: offered again from the store,
    // where 0-1 were delivered once and 2-3 never.
    let again = leader
        .acquire(&store, &log, &key(), earliest(), "b", 10, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    assert_eq!(offsets(&again), vec![(0, 1), (2, 9)]);
    assert_eq!(again.runs[0].delivery_count, 2);
    assert_eq!(again.runs[1].delivery_count, 1);
}

#[tokio::test]
async fn accepted_records_survive_a_new_leader_and_locked_ones_come_back() {
    let (store, log, leader) = (
        MemoryStore::default(),
        MemoryLog::new(6),
        ShareLeader::default(),
    );
    leader
        .acquire(&store, &log, &key(), earliest(), "a", 6, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    let accept = AcknowledgementBatch::new(0, 2, AcknowledgeType::Accept);
    leader
        .acknowledge(&store, &log, &key(), earliest(), "a", &[accept], 1)
        .await
        .expect("the call succeeds");
    // Leadership moves (the same broker at a new epoch stands in for a new leader).
    log.epoch.store(2, Ordering::SeqCst);
    let next = ShareLeader::default();
    let got = next
        .acquire(&store, &log, &key(), earliest(), "b", 10, 1 << 20, 2)
        .await
        .expect("the call succeeds");
    assert_eq!(offsets(&got), vec![(3, 5)]);
    assert_eq!(got.runs[0].delivery_count, 2);
    // The old leader's writes are fenced from now on.
    let stale = leader
        .acknowledge(
            &store,
            &MemoryLog::new(6),
            &key(),
            earliest(),
            "a",
            &[AcknowledgementBatch::new(3, 3, AcknowledgeType::Accept)],
            3,
        )
        .await;
    assert!(stale.is_err());
}

#[tokio::test]
async fn released_sessions_and_expired_locks_redeliver() {
    let (store, log, leader) = (
        MemoryStore::default(),
        MemoryLog::new(3),
        ShareLeader::default(),
    );
    let settings = earliest();
    leader
        .acquire(&store, &log, &key(), settings, "a", 3, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    assert!(!leader.has_redeliveries(&key(), 0));
    leader.release(&key(), "a").await;
    assert!(leader.has_redeliveries(&key(), 0));
    let got = leader
        .acquire(&store, &log, &key(), settings, "b", 10, 1 << 20, 1)
        .await
        .expect("the call succeeds");
    assert_eq!(offsets(&got), vec![(0, 2)]);
    let lock = settings.partition.record_lock_duration_ms;
    assert_eq!(leader.next_lock_deadline(&[key()]), Some(1 + lock));
    assert!(leader.has_redeliveries(&key(), 1 + lock));
    let again = leader
        .acquire(&store, &log, &key(), settings, "c", 10, 1 << 20, 1 + lock)
        .await
        .expect("the call succeeds");
    assert_eq!(again.runs[0].delivery_count, 3);
}

#[tokio::test]
async fn acknowledging_what_another_member_holds_is_refused() {
    let (store, log, leader) = (
        MemoryStore::default(),
        MemoryLog::new(3),
        ShareLeader::default(),
    );
    leader
        .acquire(&store, &log, &key(), earliest(), "a", 3, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    let writes = store.writes.load(Ordering::SeqCst);
    let theft = leader
        .acknowledge(
            &store,
            &log,
            &key(),
            earliest(),
            "b",
            &[AcknowledgementBatch::new(0, 0, AcknowledgeType::Accept)],
            1,
        )
        .await;
    assert_eq!(theft, Err(ResponseError::InvalidRecordState));
    assert_eq!(
        store.writes.load(Ordering::SeqCst),
        writes,
        "nothing written"
    );
    let slot = leader.existing(&key()).expect("a slot");
    let slot = slot.lock().await;
    let (_, p) = slot.state.as_ref().expect("loaded state");
    assert!(matches!(
        p.record(0).expect("in flight").state,
        RecordState::Acquired { .. }
    ));
}

#[tokio::test]
async fn a_follower_serves_nothing() {
    let (store, log, leader) = (
        MemoryStore::default(),
        MemoryLog::new(3),
        ShareLeader::default(),
    );
    log.epoch.store(-1, Ordering::SeqCst);
    let got = leader
        .acquire(&store, &log, &key(), earliest(), "a", 3, 1 << 20, 0)
        .await;
    assert_eq!(
        got.expect_err("an error"),
        ResponseError::NotLeaderOrFollower
    );
    assert!(store.stored.lock().expect("store lock").is_empty());
}

#[tokio::test]
async fn a_fetch_settles_its_acknowledgements_and_acquires_in_one_write() {
    let (store, log, leader) = (
        MemoryStore::default(),
        MemoryLog::new(8),
        ShareLeader::default(),
    );
    leader
        .acquire(&store, &log, &key(), earliest(), "a", 4, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    let writes = store.writes.load(Ordering::SeqCst);
    let accept = [AcknowledgementBatch::new(0, 3, AcknowledgeType::Accept)];
    let request = FetchRequest {
        member_id: "a",
        acks: &accept,
        max_records: 10,
        max_bytes: 1 << 20,
        now_ms: 1,
    };
    let outcome = leader
        .fetch(&store, &log, &key(), earliest(), request)
        .await;
    assert_eq!(outcome.acked, Some(Ok(())));
    let acquired = outcome.acquired.expect("acquired");
    assert_eq!(offsets(&acquired), vec![(4, 7)]);
    assert_eq!(store.writes.load(Ordering::SeqCst), writes + 1, "one write");
    let stored = store
        .stored
        .lock()
        .expect("store lock")
        .get(&key())
        .cloned()
        .expect("stored state");
    assert_eq!(
        stored.1.start_offset, 4,
        "the accepted records are finished"
    );

    // A refused acknowledgement (records another member holds) does not stop the fetch.
    let theft = [AcknowledgementBatch::new(4, 4, AcknowledgeType::Accept)];
    let outcome = leader
        .fetch(
            &store,
            &log,
            &key(),
            earliest(),
            FetchRequest {
                member_id: "b",
                acks: &theft,
                ..request
            },
        )
        .await;
    assert_eq!(outcome.acked, Some(Err(ResponseError::InvalidRecordState)));
    assert!(outcome.acquired.expect("no error").runs.is_empty());
}

#[tokio::test]
async fn idle_share_partitions_are_forgotten_unless_something_is_locked() {
    let (store, log, leader) = (
        MemoryStore::default(),
        MemoryLog::new(4),
        ShareLeader::default(),
    );
    let other = ShareKey {
        partition: 1,
        ..key()
    };
    leader
        .acquire(&store, &log, &key(), earliest(), "a", 2, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    let accept = [AcknowledgementBatch::new(0, 1, AcknowledgeType::Accept)];
    leader
        .acknowledge(&store, &log, &key(), earliest(), "a", &accept, 1)
        .await
        .expect("acknowledged");
    leader
        .acquire(&store, &log, &other, earliest(), "a", 2, 1 << 20, 0)
        .await
        .expect("the call succeeds");
    leader.forget_idle(10, 5);
    assert_eq!(leader.len(), 2, "not idle yet");
    leader.forget_idle(10, 100);
    assert_eq!(leader.len(), 1, "the one holding locks stays");
    assert!(leader.existing(&other).is_some());
    // Forgotten state comes back from the store: 0-1 accepted, 2 next.
    let got = leader
        .acquire(&store, &log, &key(), earliest(), "b", 1, 1 << 20, 101)
        .await
        .expect("the call succeeds");
    assert_eq!(offsets(&got), vec![(2, 2)]);
}
