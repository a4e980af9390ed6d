//! What a partition leader knows about its followers: their log end offsets and when
//! each was last caught up. From that it derives the high watermark and the ISR changes
//! to ask the controller for. Pure: time comes in as an argument.

use std::collections::BTreeMap;

/// A follower as the leader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Follower {
    /// Its log end offset, learned from its fetch offset; -1 until it first fetches
    /// under this leadership.
    log_end_offset: i64,
    /// The last time it had everything the leader had (Kafka's lastCaughtUpTimeMs).
    last_caught_up_ms: i64,
    /// Time and leader log end at its previous fetch, to credit a follower that was
    /// caught up as of that fetch.
    last_fetch_ms: i64,
    leader_end_at_last_fetch: i64,
    /// Whether it has fetched since it last left the ISR (or since a request to add it
    /// was refused). Only a follower that is really fetching is proposed to join, so a
    /// dead broker whose last fetch was recent is not re-proposed on every tick.
    fetched_since_out: bool,
}

#[derive(Clone, Debug)]
pub struct LeaderState {
    leader_id: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    partition_epoch: i32,
    /// An ISR change sent to the controller and not yet answered. While it is in
    /// flight the high watermark is computed over the union of both sets (Kafka's
    /// "maximal ISR"), so it is safe whichever way the change lands.
    pending_isr: Option<Vec<i32>>,
    /// First offset written under the current leader epoch: a follower must reach it
    /// before it can join the ISR.
    epoch_start_offset: i64,
    followers: BTreeMap<i32, Follower>,
}

impl LeaderState {
    pub fn new(
        leader_id: i32,
        replicas: &[i32],
        isr: &[i32],
        partition_epoch: i32,
        epoch_start_offset: i64,
        now_ms: i64,
    ) -> Self {
        let followers = replicas
            .iter()
            .filter(|r| **r != leader_id)
            .map(|r| {
                (
                    *r,
                    Follower {
                        log_end_offset: -1,
                        // In-sync followers get a full lag window from the start of this
                        // leadership before they can be dropped.
                        last_caught_up_ms: if isr.contains(r) { now_ms } else { 0 },
                        last_fetch_ms: 0,
                        leader_end_at_last_fetch: -1,
                        fetched_since_out: false,
                    },
                )
            })
            .collect();
        LeaderState {
            leader_id,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            partition_epoch,
            pending_isr: None,
            epoch_start_offset,
            followers,
        }
    }

    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    pub fn is_replica(&self, id: i32) -> bool {
        self.replicas.contains(&id)
    }

    /// The metadata image changed the replicas, ISR or partition epoch.
    pub fn update_from_metadata(
        &mut self,
        replicas: &[i32],
        isr: &[i32],
        partition_epoch: i32,
        now_ms: i64,
    ) {
        if partition_epoch >= self.partition_epoch {
            self.note_isr(isr);
            // An image at the same partition epoch predates the change in flight, which
            // may still commit: keep counting the pending set until it is answered or a
            // newer epoch shows how it landed.
            if partition_epoch > self.partition_epoch {
                self.pending_isr = None;
            }
            self.partition_epoch = partition_epoch;
        }
        self.replicas = replicas.to_vec();
        self.followers.retain(|id, _| replicas.contains(id));
        for r in replicas.iter().filter(|r| **r != self.leader_id) {
            self.followers.entry(*r).or_insert(Follower {
                log_end_offset: -1,
                last_caught_up_ms: now_ms,
                last_fetch_ms: 0,
                leader_end_at_last_fetch: -1,
                fetched_since_out: false,
            });
        }
    }

    /// A follower fetched from `fetch_offset`, which is its log end offset.
    pub fn on_fetch(&mut self, follower: i32, fetch_offset: i64, leader_end: i64, now_ms: i64) {
        let Some(f) = self.followers.get_mut(&follower) else {
            return;
        };
        f.log_end_offset = fetch_offset;
        if fetch_offset >= leader_end {
            f.last_caught_up_ms = now_ms;
        } else if f.leader_end_at_last_fetch >= 0 && fetch_offset >= f.leader_end_at_last_fetch {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.last_fetch_ms = now_ms;
        f.leader_end_at_last_fetch = leader_end;
        f.fetched_since_out = true;
    }

    /// Takes `isr` as the current ISR; followers it drops must fetch again to rejoin.
    fn note_isr(&mut self, isr: &[i32]) {
        for (id, f) in self.followers.iter_mut() {
            if self.isr.contains(id) && !isr.contains(id) {
                f.fetched_since_out = false;
            }
        }
        self.isr = isr.to_vec();
    }

    /// The high watermark the ISR allows: the smallest log end offset over the leader
    /// and every in-sync (or joining) follower. A follower that has not fetched yet
    /// holds it at its current value (the caller never moves it backwards).
    pub fn high_watermark(&self, leader_end: i64) -> i64 {
        let mut hw = leader_end;
        let members = self.isr.iter().chain(self.pending_isr.iter().flatten());
        for id in members {
            if *id == self.leader_id {
                continue;
            }
            if let Some(f) = self.followers.get(id) {
                hw = hw.min(f.log_end_offset);
            }
        }
        hw
    }

    /// The ISR the leader should ask for now, if different from the current one: drop
    /// followers not caught up within `lag_ms`, add replicas that reached the high
    /// watermark (and this epoch's start). `None` while a change is in flight.
    pub fn desired_isr(&self, high_watermark: i64, now_ms: i64, lag_ms: i64) -> Option<Vec<i32>> {
        if self.pending_isr.is_some() {
            return None;
        }
        let mut next: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|id| {
                *id == self.leader_id
                    || self
                        .followers
                        .get(id)
                        .is_some_and(|f| now_ms - f.last_caught_up_ms <= lag_ms)
            })
            .collect();
        for (id, f) in &self.followers {
            let caught_up =
                f.log_end_offset >= high_watermark && f.log_end_offset >= self.epoch_start_offset;
            if !next.contains(id)
                && caught_up
                && f.fetched_since_out
                && now_ms - f.last_caught_up_ms <= lag_ms
            {
                next.push(*id);
            }
        }
        let order =
            |v: &mut Vec<i32>| v.sort_by_key(|id| self.replicas.iter().position(|r| r == id));
        order(&mut next);
        let mut current = self.isr.clone();
        order(&mut current);
        (next != current).then_some(next)
    }

    pub fn set_pending(&mut self, isr: Option<Vec<i32>>) {
        self.pending_isr = isr;
    }

    /// The controller refused the change in flight: followers it would have added are
    /// proposed again only after their next fetch.
    pub fn refused(&mut self) {
        if let Some(pending) = self.pending_isr.take() {
            for id in pending.iter().filter(|id| !self.isr.contains(id)) {
                if let Some(f) = self.followers.get_mut(id) {
                    f.fetched_since_out = false;
                }
            }
        }
    }

    /// The controller accepted an ISR change.
    pub fn committed(&mut self, isr: Vec<i32>, partition_epoch: i32) {
        if partition_epoch >= self.partition_epoch {
            self.note_isr(&isr);
            self.partition_epoch = partition_epoch;
        }
        self.pending_isr = None;
    }

    /// Follower log end offsets, for tests and status.
    pub fn follower_ends(&self) -> Vec<(i32, i64)> {
        self.followers
            .iter()
            .map(|(id, f)| (*id, f.log_end_offset))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_watermark_is_the_slowest_in_sync_replica() {
        let mut s = LeaderState::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, 0);
        assert_eq!(s.high_watermark(10), -1, "unknown followers hold it");
        s.on_fetch(2, 10, 10, 1);
        s.on_fetch(3, 4, 10, 1);
        assert_eq!(s.high_watermark(10), 4);
        s.on_fetch(3, 10, 10, 2);
        assert_eq!(s.high_watermark(12), 10);
    }

    #[test]
    fn laggards_leave_and_rejoin_the_isr() {
        let mut s = LeaderState::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, 0);
        s.on_fetch(2, 5, 5, 100);
        s.on_fetch(3, 5, 5, 100);
        assert_eq!(s.desired_isr(5, 200, 1000), None);
        // 3 stops fetching; 2 keeps up.
        s.on_fetch(2, 9, 9, 1_500);
        assert_eq!(s.desired_isr(5, 1_500, 1000), Some(vec![1, 2]));
        s.set_pending(Some(vec![1, 2]));
        assert_eq!(s.desired_isr(5, 1_600, 1000), None, "one change at a time");
        s.committed(vec![1, 2], 1);
        assert_eq!(
            s.high_watermark(9),
            9,
            "3 no longer holds the high watermark"
        );
        // 3 catches up to the high watermark and rejoins.
        s.on_fetch(3, 9, 9, 2_000);
        assert_eq!(s.desired_isr(9, 2_000, 1000), Some(vec![1, 2, 3]));
    }

    #[test]
    fn a_follower_caught_up_as_of_its_previous_fetch_stays() {
        let mut s = LeaderState::new(1, &[1, 2], &[1, 2], 0, 0, 0);
        s.on_fetch(2, 10, 10, 100); // caught up
                                    // Constant traffic: it is never exactly at the end, but always reaches the end
                                    // of its previous fetch.
        s.on_fetch(2, 10, 20, 900);
        s.on_fetch(2, 20, 30, 1_700);
        s.on_fetch(2, 30, 40, 2_500);
        assert_eq!(s.desired_isr(30, 2_500, 1000), None);
    }

    #[test]
    fn a_pending_expansion_survives_an_image_of_the_same_epoch() {
        let mut s = LeaderState::new(1, &[1, 2, 3], &[1, 2], 4, 0, 0);
        s.on_fetch(2, 10, 10, 1);
        s.on_fetch(3, 10, 10, 1);
        assert_eq!(s.desired_isr(10, 1, 1000), Some(vec![1, 2, 3]));
        s.set_pending(Some(vec![1, 2, 3]));
        // An unrelated metadata change republishes this partition at epoch 4.
        s.update_from_metadata(&[1, 2, 3], &[1, 2], 4, 2);
        s.on_fetch(2, 20, 20, 3);
        assert_eq!(
            s.high_watermark(20),
            10,
            "3 may already be in the committed ISR, so it still holds the high watermark"
        );
        // The expansion landed at epoch 5.
        s.update_from_metadata(&[1, 2, 3], &[1, 2, 3], 5, 4);
        assert_eq!(s.high_watermark(20), 10);
        s.on_fetch(3, 20, 20, 5);
        assert_eq!(s.high_watermark(20), 20);
    }

    #[test]
    fn a_follower_that_left_the_isr_rejoins_only_after_it_fetches_again() {
        let mut s = LeaderState::new(1, &[1, 2, 3], &[1, 2, 3], 0, 0, 0);
        s.on_fetch(2, 10, 10, 100);
        s.on_fetch(3, 10, 10, 100);
        // 3 dies; the controller fences it and removes it from the ISR. Nothing is
        // written, so 3 still looks caught up and within the lag window.
        s.update_from_metadata(&[1, 2, 3], &[1, 2], 1, 200);
        s.on_fetch(2, 10, 10, 300);
        assert_eq!(
            s.desired_isr(10, 300, 30_000),
            None,
            "3 has not fetched since"
        );
        s.on_fetch(3, 10, 10, 400);
        assert_eq!(s.desired_isr(10, 400, 30_000), Some(vec![1, 2, 3]));
    }

    #[test]
    fn a_refused_expansion_waits_for_the_next_fetch() {
        let mut s = LeaderState::new(1, &[1, 2], &[1], 0, 0, 0);
        s.on_fetch(2, 0, 0, 10);
        let want = s.desired_isr(0, 10, 30_000);
        assert_eq!(want, Some(vec![1, 2]));
        s.set_pending(want);
        s.refused();
        assert_eq!(s.desired_isr(0, 20, 30_000), None, "no retry on every tick");
        s.on_fetch(2, 0, 0, 30);
        assert_eq!(s.desired_isr(0, 30, 30_000), Some(vec![1, 2]));
    }

    #[test]
    fn joining_requires_this_epochs_start() {
        let mut s = LeaderState::new(1, &[1, 2], &[1], 3, 50, 0);
        s.on_fetch(2, 40, 60, 10);
        assert_eq!(s.desired_isr(40, 10, 1000), None, "behind the epoch start");
        s.on_fetch(2, 60, 60, 20);
        assert_eq!(s.desired_isr(60, 20, 1000), Some(vec![1, 2]));
    }
}
