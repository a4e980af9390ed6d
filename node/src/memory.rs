//! Node-wide memory budgets for what clients can make the broker hold.
//!
//! - [`RequestPool`] (`queued.max.request.bytes`): request frames, from the moment their
//!   length is read until they have been handled, charged at what they can cost once
//!   decoded (see `kafka::request_cost`). A connection whose frame does not fit waits,
//!   with its socket unread, so the bytes stay in the kernel and the client is slowed by
//!   TCP, as Kafka's memory pool does.
//! - [`ResponseBudget`] (`queued.max.response.bytes`): record bytes read for Fetch answers
//!   and not yet written to their sockets. A client that asks for gigabytes and never
//!   reads holds at most what the budget had left; other fetches then read less, or wait
//!   for data as if there were none.

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
        metrics::gauge!("fjord_request_memory_bytes").set(self.in_use() as f64);
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
}

impl ResponseBudget {
    pub fn new(capacity: u64) -> Arc<Self> {
        Arc::new(ResponseBudget {
            used: AtomicU64::new(0),
            capacity: capacity.max(1),
        })
    }

    /// Bytes a read may still take. Reads may overshoot by their first batch (a fetch
    /// always returns a whole first batch), so the bound is this plus one batch per
    /// read in progress, and reads run on the runtime's few worker threads.
    pub fn available(&self) -> u64 {
        self.capacity
            .saturating_sub(self.used.load(Ordering::Acquire))
    }

    pub fn in_use(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Charges `records` to the budget until the last copy of them is dropped, which for
    /// a Fetch answer is when the socket has taken it.
    pub fn charge(self: &Arc<Self>, records: Bytes) -> Bytes {
        let len = records.len() as u64;
        if len == 0 {
            return records;
        }
        self.used.fetch_add(len, Ordering::AcqRel);
        metrics::gauge!("fjord_response_memory_bytes").set(self.in_use() as f64);
        Bytes::from_owner(Charged {
            records,
            budget: Arc::clone(self),
        })
    }
}

/// Record bytes that give their budget back when freed.
struct Charged {
    records: Bytes,
    budget: Arc<ResponseBudget>,
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
        metrics::gauge!("fjord_response_memory_bytes").set(self.budget.in_use() as f64);
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
        let charged = budget.charge(Bytes::from(vec![1u8; 300]));
        let slice = charged.slice(10..20);
        assert_eq!(budget.available(), 700);
        drop(charged);
        assert_eq!(budget.available(), 700, "a slice still holds the buffer");
        drop(slice);
        assert_eq!(budget.available(), 1_000);
    }
}
