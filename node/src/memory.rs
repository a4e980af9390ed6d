//! Node-wide memory budgets for what clients can make the broker hold.
//!
//! - [`RequestPool`] (`queued.max.request.bytes`): request frames, from the moment their
//!   length is read until they have been handled, charged at what they can cost once
//!   decoded (see `kafka::request_cost`). A connection whose frame does not fit waits,
//!   with its socket unread, so the bytes stay in the kernel and the client is slowed by
//!   TCP, as Kafka's memory pool does.
//! - [`ResponseBudget`] (`queued.max.response.bytes`): record bytes read for Fetch answers
//!   and not yet written to their sockets. It is shared between answers: one may take
//!   at most an equal share with those already holding some (the whole budget when it is
//!   alone, half beside one other, ...), and every answer may return its first batch
//!   even when the budget is spent. Clients that ask for gigabytes and never read hold
//!   the budget and a batch each, and everyone else still gets data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of request frames admitted and not yet handled, node-wide.
#[derive(Debug)]
pub struct RequestPool {
    permits: Arc<Semaphore>,
    capacity: u32,
}

impl RequestPool {
    pub fn new(capacity: u64) -> Self {
        let capacity = capacity.clamp(1, u64::from(u32::MAX)) as u32;
        RequestPool {
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    pub fn capacity(&self) -> u64 {
        u64::from(self.capacity)
    }

    /// Waits until `bytes` (at most the whole pool) are free and takes them. Cancel-safe.
    pub async fn acquire(&self, bytes: u64) -> OwnedSemaphorePermit {
        let n = bytes.clamp(1, u64::from(self.capacity)) as u32;
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(n)
            .await
            // The semaphore is never closed.
            .unwrap_or_else(|_| unreachable!("the request pool is never closed"));
        permit
    }

    pub fn in_use(&self) -> u64 {
        u64::from(self.capacity) - self.permits.available_permits() as u64
    }
}

/// Record bytes held by Fetch answers not yet written, node-wide.
#[derive(Debug)]
pub struct ResponseBudget {
    used: AtomicU64,
    capacity: u64,
    /// Answers holding (or about to hold) budget.
    answers: AtomicU64,
}

impl ResponseBudget {
    pub fn new(capacity: u64) -> Arc<Self> {
        Arc::new(ResponseBudget {
            used: AtomicU64::new(0),
            capacity: capacity.max(1),
            answers: AtomicU64::new(0),
        })
    }

    /// Bytes not yet taken.
    pub fn available(&self) -> u64 {
        self.capacity
            .saturating_sub(self.used.load(Ordering::Acquire))
    }

    pub fn in_use(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Answers holding budget now.
    pub fn answers(&self) -> u64 {
        self.answers.load(Ordering::Acquire)
    }

    /// Takes up to `want` bytes for a read about to happen, atomically, so concurrent
    /// reads cannot each see the same free budget, and at most an equal share with the
    /// answers already holding some. What the read does not use goes back when the
    /// reservation is dropped.
    pub fn reserve(self: &Arc<Self>, want: u64) -> Reservation {
        let others = self.answers.fetch_add(1, Ordering::AcqRel);
        let answer = Arc::new(Answer {
            budget: Arc::clone(self),
        });
        let share = self.capacity / (others + 1);
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            let granted = want.min(share).min(self.capacity.saturating_sub(used));
            match self.used.compare_exchange_weak(
                used,
                used + granted,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Reservation {
                        budget: Arc::clone(self),
                        answer,
                        granted,
                        left: granted,
                    }
                }
                Err(now) => used = now,
            }
        }
    }

    pub fn publish(&self) {
        metrics::gauge!("fjord_response_memory_bytes").set(self.in_use() as f64);
    }
}

/// Budget taken for one read. Records read under it are charged with
/// [`Reservation::charge`] and hold their share until freed; the rest is returned on
/// drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<ResponseBudget>,
    /// Counts this answer among those holding budget while any of it is alive.
    answer: Arc<Answer>,
    granted: u64,
    left: u64,
}

/// One answer's place among those sharing the budget.
#[derive(Debug)]
struct Answer {
    budget: Arc<ResponseBudget>,
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.budget.answers.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Reservation {
    /// What the read may take (a fetch still returns a whole first batch beyond it,
    /// which is charged on top).
    pub fn granted(&self) -> u64 {
        self.granted
    }

    /// Charges `records` until the last copy of them is dropped, which for a Fetch
    /// answer is when the socket has taken it.
    pub fn charge(&mut self, records: Bytes) -> Bytes {
        let len = records.len() as u64;
        if len == 0 {
            return records;
        }
        let from_reservation = len.min(self.left);
        self.left -= from_reservation;
        // A first batch larger than the reservation is charged beyond it.
        self.budget
            .used
            .fetch_add(len - from_reservation, Ordering::AcqRel);
        self.budget.publish();
        Bytes::from_owner(Charged {
            records,
            budget: Arc::clone(&self.budget),
            _answer: Arc::clone(&self.answer),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.left, Ordering::AcqRel);
        self.budget.publish();
    }
}

/// Record bytes that give their budget back when freed.
struct Charged {
    records: Bytes,
    budget: Arc<ResponseBudget>,
    _answer: Arc<Answer>,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.records
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        let len = self.records.len() as u64;
        self.budget.used.fetch_sub(len, Ordering::AcqRel);
        self.budget.publish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_waits_until_the_pool_has_room_and_an_oversized_one_takes_it_all() {
        let pool = RequestPool::new(100);
        let a = pool.acquire(60).await;
        assert_eq!(pool.in_use(), 60);
        let mut b = Box::pin(pool.acquire(50));
        assert!(
            futures::poll!(b.as_mut()).is_pending(),
            "50 more do not fit"
        );
        drop(a);
        let b = b.await;
        assert_eq!(pool.in_use(), 50);
        drop(b);
        let all = pool.acquire(1_000).await;
        assert_eq!(pool.in_use(), 100, "clamped to the whole pool");
        drop(all);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn fetched_bytes_are_charged_until_every_copy_is_dropped() {
        let budget = ResponseBudget::new(1_000);
        let mut r = budget.reserve(600);
        assert_eq!((r.granted(), budget.available()), (600, 400));
        let other = budget.reserve(600);
        assert_eq!(other.granted(), 400, "a concurrent read gets what is left");
        drop(other);
        assert_eq!(budget.answers(), 1);
        let charged = r.charge(Bytes::from(vec![1u8; 300]));
        let slice = charged.slice(10..20);
        drop(r);
        assert_eq!(budget.available(), 700, "the unused 300 came back");
        drop(charged);
        assert_eq!(budget.available(), 700, "a slice still holds the buffer");
        drop(slice);
        assert_eq!(budget.available(), 1_000);
        let mut r = budget.reserve(10);
        let big = r.charge(Bytes::from(vec![1u8; 50]));
        drop(r);
        assert_eq!(
            budget.in_use(),
            50,
            "a first batch beyond the reservation is charged"
        );
        drop(big);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn answers_share_the_budget_equally() {
        let budget = ResponseBudget::new(1_200);
        let mut first = budget.reserve(u64::MAX);
        assert_eq!(first.granted(), 1_200, "alone, an answer may take it all");
        let held = first.charge(Bytes::from(vec![0u8; 400]));
        drop(first);
        assert_eq!(budget.answers(), 1, "its records still hold a share");
        let second = budget.reserve(u64::MAX);
        assert_eq!(second.granted(), 600, "beside one other: half");
        let third = budget.reserve(u64::MAX);
        assert_eq!(third.granted(), 200, "a third, and what is left");
        drop((second, third, held));
        assert_eq!((budget.answers(), budget.in_use()), (0, 0));
    }
}
