//! A share-partition driven by seeded random schedules: members fetch, acknowledge
//! with every type (right and wrong), go away, locks run out, the leader fails over
//! (sometimes losing a change it had not persisted), the log grows and its start moves,
//! and operators reset the start. A model of what clients were told and what was
//! persisted checks the partition after every step.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

const MEMBERS: [&str; 4] = ["m0", "m1", "m2", "m3"];
const LOCK_MS: i64 = 1_000;
const LIMIT: i16 = 3;

fn config() -> SharePartitionConfig {
    SharePartitionConfig {
        max_record_locks: 16,
        delivery_count_limit: LIMIT,
        record_lock_duration_ms: LOCK_MS,
    }
}

use crate::group::test_rng::Rng;

/// The partition, and what its clients and its durable store have seen.
struct World {
    p: SharePartition,
    /// The last snapshot written.
    durable: ShareSnapshot,
    high_watermark: i64,
    log_start: i64,
    now: i64,
    /// Locks handed to clients: offset -> (member, deadline).
    held: BTreeMap<i64, (String, i64)>,
    /// Offsets whose ACCEPT was answered as done.
    accepted: BTreeSet<i64>,
    /// Deliveries answered per offset since the last reset.
    deliveries: BTreeMap<i64, i16>,
    /// Offsets from here up must be delivered (below, the log dropped them or a reset
    /// skipped them).
    must_deliver_from: i64,
    /// The SPSO may never drop below this: the last one written, or a reset's.
    spso_floor: i64,
}

impl World {
    fn new() -> Self {
        let p = SharePartition::new(config(), AutoOffsetReset::Earliest, 0, 0);
        World {
            durable: p.snapshot(),
            p,
            high_watermark: 0,
            log_start: 0,
            now: 0,
            held: BTreeMap::new(),
            accepted: BTreeSet::new(),
            deliveries: BTreeMap::new(),
            must_deliver_from: 0,
            spso_floor: 0,
        }
    }

    fn persist(&mut self) {
        let snap = self.p.snapshot();
        assert!(
            snap.start_offset >= self.spso_floor,
            "durable SPSO went back"
        );
        self.spso_floor = snap.start_offset;
        self.durable = snap;
    }

    fn failover(&mut self) {
        self.p = SharePartition::from_snapshot(&self.durable, config()).expect("restore");
        // Locks die with the leader; clients' later acknowledgements of them fail.
        self.held.clear();
    }

    /// A fetch whose records reach the client: the acquisition is written first.
    fn acquire(&mut self, member: &str, fetched: std::ops::Range<i64>, max: usize) -> Vec<i64> {
        let (got, changed) = self.p.acquire(member, fetched.clone(), max, self.now);
        if changed {
            self.persist();
        }
        let mut offsets = Vec::new();
        let mut taken = 0usize;
        for run in got {
            assert!(run.first_offset <= run.last_offset);
            assert!(
                run.delivery_count >= 1 && run.delivery_count <= LIMIT,
                "{run:?}"
            );
            for o in run.first_offset..=run.last_offset {
                assert!(fetched.contains(&o), "{o} was not fetched");
                assert!(
                    o >= self.log_start && o < self.high_watermark,
                    "{o} not in the log"
                );
                assert!(
                    !self.accepted.contains(&o),
                    "accepted offset {o} handed out again"
                );
                if let Some((holder, deadline)) = self.held.get(&o) {
                    assert!(
                        *deadline <= self.now,
                        "{o} handed to {member} while {holder} holds it until {deadline}"
                    );
                }
                let count = self.deliveries.entry(o).or_default();
                *count += 1;
                assert_eq!(*count, run.delivery_count, "delivery count of {o}");
                self.held
                    .insert(o, (member.to_string(), self.now + LOCK_MS));
                offsets.push(o);
                taken += 1;
            }
        }
        assert!(taken <= max);
        offsets
    }

    /// An acknowledgement; `crash` loses it before it is written (the client then gets
    /// an error). Returns whether it was answered as done.
    fn acknowledge(&mut self, member: &str, batches: &[AcknowledgementBatch], crash: bool) -> bool {
        // The partition first ends locks that ran out, which may move the SPSO past
        // offsets this acknowledgement names; those are then skipped.
        let mut probe = self.p.clone();
        probe.expire_locks(self.now);
        let (start, end) = (probe.start_offset(), probe.end_offset());
        let expect_ok = batches.iter().all(|b| {
            (b.first_offset.max(start)..=b.last_offset).all(|o| {
                o < end
                    && self
                        .held
                        .get(&o)
                        .is_some_and(|(h, d)| h == member && *d > self.now)
            })
        });
        let result = self.p.acknowledge(member, batches, self.now);
        assert_eq!(
            result.is_ok(),
            expect_ok,
            "{member} {batches:?}: {result:?}"
        );
        if result.is_err() {
            return false;
        }
        if crash {
            self.failover();
            return false;
        }
        self.persist();
        for b in batches {
            for o in b.first_offset.max(start)..=b.last_offset {
                self.held.remove(&o);
                let code = if b.acknowledge_types.len() == 1 {
                    b.acknowledge_types[0]
                } else {
                    b.acknowledge_types[(o - b.first_offset) as usize]
                };
                if code == AcknowledgeType::Accept.code() {
                    self.accepted.insert(o);
                }
            }
        }
        true
    }

    fn check(&self) {
        let p = &self.p;
        assert!(
            p.in_flight() <= config().max_record_locks,
            "window {}",
            p.in_flight()
        );
        assert!(p.acquired() <= config().max_record_locks);
        assert!(p.start_offset() >= self.spso_floor, "SPSO went back");
        assert!(p.start_offset() >= self.log_start);
        assert!(p.end_offset() <= self.high_watermark.max(p.start_offset()));
        for (o, r) in p.records() {
            match &r.state {
                RecordState::Acquired {
                    member_id,
                    deadline_ms,
                } => {
                    assert_eq!(
                        self.held.get(&o),
                        Some(&(member_id.to_string(), *deadline_ms)),
                        "lock on {o}"
                    );
                }
                RecordState::Available => assert!(r.delivery_count < LIMIT, "{o}: {r:?}"),
                RecordState::Acknowledged | RecordState::Archived => {}
            }
            assert_eq!(
                self.accepted.contains(&o),
                r.state == RecordState::Acknowledged,
                "{o}: {r:?}"
            );
            assert_eq!(
                r.delivery_count,
                self.deliveries.get(&o).copied().unwrap_or(0),
                "delivery count of {o}"
            );
        }
        for (o, (member, deadline)) in &self.held {
            if *deadline > self.now && *o >= p.start_offset() {
                let held = matches!(
                    p.record(*o).map(|r| &r.state),
                    Some(RecordState::Acquired { member_id, deadline_ms })
                        if &**member_id == member && deadline_ms == deadline
                );
                assert!(held, "{member} lost its lock on {o}");
            }
        }
    }
}

/// Batches over some of the offsets `member` was given: contiguous runs, each with one
/// type or a type per offset; now and then with a stranger's offset mixed in.
fn some_acknowledgement(w: &World, member: &str, rng: &mut Rng) -> Vec<AcknowledgementBatch> {
    let mut offsets: Vec<i64> = w
        .held
        .iter()
        .filter(|(_, (h, _))| h == member)
        .map(|(o, _)| *o)
        .filter(|_| rng.below(3) > 0)
        .collect();
    if rng.below(6) == 0 {
        offsets.push(rng.upto(w.p.start_offset(), w.p.end_offset() + 2));
    }
    offsets.sort_unstable();
    offsets.dedup();
    let mut batches: Vec<AcknowledgementBatch> = Vec::new();
    for o in offsets {
        match batches.last_mut() {
            Some(b) if b.last_offset + 1 == o => b.last_offset = o,
            _ => batches.push(AcknowledgementBatch {
                first_offset: o,
                last_offset: o,
                acknowledge_types: Vec::new(),
            }),
        }
    }
    for b in &mut batches {
        let width = (b.last_offset - b.first_offset + 1) as usize;
        let n = if rng.below(3) == 0 { width } else { 1 };
        b.acknowledge_types = (0..n).map(|_| rng.below(4) as i8).collect();
    }
    batches
}

fn step(w: &mut World, rng: &mut Rng) {
    w.now += rng.below(200) as i64;
    let prev_spso = w.p.start_offset();
    let mut may_go_back = false;
    match rng.below(20) {
        0 | 1 => w.high_watermark += 1 + rng.below(6) as i64,
        2..=6 => {
            let member = rng.pick(&MEMBERS);
            let from = if rng.below(4) == 0 {
                rng.upto(w.p.start_offset(), w.high_watermark)
            } else {
                w.p.next_fetch_offset()
            };
            let max = 1 + rng.below(6);
            let hw = w.high_watermark;
            w.acquire(member, from..hw, max);
        }
        7..=11 => {
            let member = rng.pick(&MEMBERS);
            let batches = some_acknowledgement(w, member, rng);
            let crash = rng.below(10) == 0;
            w.acknowledge(member, &batches, crash);
            may_go_back = crash;
        }
        12 => {
            // The lock timer. Expiry need not be written: a restore does the same.
            if w.p.expire_locks(w.now) && rng.below(2) == 0 {
                w.persist();
            }
        }
        13 => {
            let member = rng.pick(&MEMBERS);
            if w.p.release_member(member) && rng.below(2) == 0 {
                w.persist();
            }
            w.held.retain(|_, (h, _)| h != member);
        }
        14 => w.failover(),
        15 => {
            // The leader hands out records but dies before writing that it did: the
            // client never got them.
            let member = rng.pick(&MEMBERS);
            let (from, hw) = (w.p.next_fetch_offset(), w.high_watermark);
            let _ = w.p.acquire(member, from..hw, 4, w.now);
            w.failover();
            may_go_back = true;
        }
        16 if rng.below(2) == 0 => {
            let to = rng.upto(w.log_start, w.high_watermark);
            if to > w.log_start {
                w.log_start = to;
                w.must_deliver_from = w.must_deliver_from.max(to);
                if w.p.advance_log_start(to) {
                    w.persist();
                }
            }
        }
        17 if rng.below(4) == 0 => {
            let to = rng.upto(w.log_start, w.high_watermark);
            let locked = w.p.records().any(|(_, r)| {
                matches!(r.state, RecordState::Acquired { deadline_ms, .. } if deadline_ms > w.now)
            });
            match w.p.reset_start_offset(to, w.now) {
                Ok(_) => {
                    assert!(!locked);
                    // An explicit replay: from `to` on, everything is delivered afresh.
                    w.held.clear();
                    w.accepted.retain(|o| *o < to);
                    w.deliveries.retain(|o, _| *o < to);
                    w.must_deliver_from = to;
                    w.spso_floor = to;
                    w.persist();
                    may_go_back = true;
                }
                Err(e) => {
                    assert!(locked);
                    assert_eq!(e, kafka_protocol::error::ResponseError::NonEmptyGroup);
                }
            }
        }
        _ => w.now += rng.below(LOCK_MS as usize) as i64,
    }
    if !may_go_back {
        assert!(w.p.start_offset() >= prev_spso, "SPSO went back");
    }
    w.check();
}

/// Every member keeps fetching and accepting until nothing is left: the SPSO must reach
/// the high watermark, every offset still in the log having been delivered.
fn drain(w: &mut World) {
    w.now += LOCK_MS;
    w.p.expire_locks(w.now);
    w.check();
    for round in 0..1_000 {
        if w.p.start_offset() == w.high_watermark {
            break;
        }
        let member = MEMBERS[round % MEMBERS.len()];
        let (from, hw) = (w.p.next_fetch_offset(), w.high_watermark);
        let got = w.acquire(member, from..hw, 4);
        let batches: Vec<AcknowledgementBatch> = got
            .iter()
            .map(|&o| AcknowledgementBatch::new(o, o, AcknowledgeType::Accept))
            .collect();
        assert!(w.acknowledge(member, &batches, false));
        w.check();
    }
    assert_eq!(
        w.p.start_offset(),
        w.high_watermark,
        "the queue did not drain"
    );
    assert_eq!(w.p.end_offset(), w.high_watermark);
    for o in w.must_deliver_from..w.high_watermark {
        assert!(
            w.deliveries.get(&o).is_some_and(|c| *c >= 1),
            "{o} never delivered"
        );
    }
    // And a new leader agrees.
    w.failover();
    assert_eq!(w.p.start_offset(), w.high_watermark);
}

#[test]
fn random_schedules_keep_every_share_partition_promise() {
    for seed in 1..=500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut w = World::new();
        for _ in 0..200 {
            step(&mut w, &mut rng);
        }
        drain(&mut w);
    }
}
