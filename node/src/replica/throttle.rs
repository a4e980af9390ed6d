//! The reassignment throttle: a token bucket per broker over the bytes a leader sends to
//! replicas that a reassignment is adding (`leader.replication.throttled.rate`), so that
//! moving a partition does not starve producers, consumers and in-sync followers.

use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug)]
struct Bucket {
    /// Bytes that may be sent now; negative after a batch larger than the allowance
    /// (whole batches are sent), which later refills pay back.
    tokens: f64,
    last_ms: f64,
}

#[derive(Debug)]
pub struct Throttle {
    origin: Instant,
    bucket: Mutex<Bucket>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            origin: Instant::now(),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                last_ms: 0.0,
            }),
        }
    }
}

impl Throttle {
    /// Bytes that may be sent now at `rate` bytes per second (0: none yet).
    pub fn allowance(&self, rate: i64) -> u64 {
        let now_ms = self.origin.elapsed().as_secs_f64() * 1000.0;
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        refill(&mut b, rate, now_ms);
        b.tokens.max(0.0) as u64
    }

    /// `bytes` were sent.
    pub fn consume(&self, bytes: u64) {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        b.tokens -= bytes as f64;
    }
}

/// Adds what `rate` earned since the last refill; at most one second's worth is saved up.
fn refill(b: &mut Bucket, rate: i64, now_ms: f64) {
    let rate = rate.max(0) as f64;
    let earned = rate * (now_ms - b.last_ms).max(0.0) / 1000.0;
    b.tokens = (b.tokens + earned).min(rate);
    b.last_ms = now_ms;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_earns_the_rate_and_saves_at_most_a_second() {
        let mut b = Bucket {
            tokens: 0.0,
            last_ms: 0.0,
        };
        refill(&mut b, 1000, 500.0);
        assert_eq!(b.tokens as i64, 500);
        refill(&mut b, 1000, 10_000.0);
        assert_eq!(b.tokens as i64, 1000, "capped at one second of rate");
        b.tokens -= 3000.0; // a batch larger than the allowance went out
        refill(&mut b, 1000, 11_000.0);
        assert_eq!(b.tokens as i64, -1000, "the debt is paid back first");
    }
}
