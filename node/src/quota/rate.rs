//! Kafka's quota arithmetic, pure: a rate measured over sampled windows
//! (`quota.window.num` windows of `quota.window.size.seconds`), the throttle time that
//! brings a client back under its bound, and the token bucket of controller mutations
//! (KIP-599).

/// A rate over the last `samples` windows of `window_ms`, as Kafka's `Rate` measures it:
/// the total of the kept windows divided by their span, counting at least
/// `samples - 1` whole windows so that a burst right after a quiet spell is not
/// measured over a few milliseconds.
#[derive(Clone, Debug)]
pub struct SampledRate {
    window_ms: u64,
    samples: usize,
    /// `(window start, total)`, oldest first.
    windows: Vec<(u64, f64)>,
}

impl SampledRate {
    pub fn new(window_ms: u64, samples: usize) -> Self {
        SampledRate {
            window_ms: window_ms.max(1),
            samples: samples.max(2),
            windows: Vec::new(),
        }
    }

    fn expire(&mut self, now_ms: u64) {
        let span = self.window_ms * self.samples as u64;
        self.windows
            .retain(|(start, _)| now_ms.saturating_sub(*start) < span);
    }

    pub fn record(&mut self, value: f64, now_ms: u64) {
        self.expire(now_ms);
        match self.windows.last_mut() {
            Some((start, total)) if now_ms < *start + self.window_ms => *total += value,
            _ => {
                self.windows.push((now_ms, value));
                if self.windows.len() > self.samples {
                    self.windows.remove(0);
                }
            }
        }
    }

    /// The span the rate is measured over, in ms.
    pub fn window_size_ms(&self, now_ms: u64) -> u64 {
        let elapsed = self
            .windows
            .first()
            .map_or(0, |(start, _)| now_ms.saturating_sub(*start));
        elapsed.max((self.samples as u64 - 1) * self.window_ms)
    }

    /// Units per second.
    pub fn rate(&mut self, now_ms: u64) -> f64 {
        self.expire(now_ms);
        let total: f64 = self.windows.iter().map(|(_, t)| t).sum();
        total * 1000.0 / self.window_size_ms(now_ms) as f64
    }

    /// How long the client must pause for its rate to fall back to `bound` (Kafka's
    /// `(rate - bound) / bound * window`), capped at the whole measured span.
    pub fn throttle_ms(&mut self, bound: f64, now_ms: u64) -> u64 {
        let rate = self.rate(now_ms);
        if rate <= bound || bound <= 0.0 {
            return 0;
        }
        let window = self.window_size_ms(now_ms) as f64;
        let cap = (self.window_ms * self.samples as u64) as f64;
        ((rate - bound) / bound * window).min(cap).ceil() as u64
    }

    /// Whether anything was recorded in the measured span.
    pub fn is_idle(&mut self, now_ms: u64) -> bool {
        self.expire(now_ms);
        self.windows.is_empty()
    }
}

/// KIP-599's bucket of partition mutations: it holds up to `rate * samples * window`
/// tokens and refills at `rate` per second. A request is admitted while the bucket is
/// not empty (it may then go below zero); the next waits until it is positive again.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
    /// The refill rate last configured.
    rate: f64,
}

impl TokenBucket {
    pub fn new(rate: f64, burst_secs: f64, now_ms: u64) -> Self {
        TokenBucket {
            tokens: rate * burst_secs,
            last_ms: now_ms,
            rate,
        }
    }

    fn refill(&mut self, burst_secs: f64, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate * burst_secs);
        self.last_ms = now_ms;
    }

    /// Takes `n` tokens, or says how many ms until the bucket admits again. `rate` is
    /// the quota now (it may have been changed since the last call).
    pub fn take(&mut self, n: f64, rate: f64, burst_secs: f64, now_ms: u64) -> Result<(), u64> {
        self.refill(burst_secs, now_ms);
        self.rate = rate;
        if self.tokens <= 0.0 {
            return Err((-self.tokens / rate * 1000.0).ceil().max(1.0) as u64);
        }
        self.tokens -= n;
        Ok(())
    }

    /// Whether the bucket has refilled completely (and so holds nothing a new one would
    /// not).
    pub fn is_full(&mut self, burst_secs: f64, now_ms: u64) -> bool {
        self.refill(burst_secs, now_ms);
        self.tokens >= self.rate * burst_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_counts_at_least_the_full_span_of_windows() {
        let mut r = SampledRate::new(1000, 11);
        r.record(10_000.0, 0);
        // One burst: measured over 10 s, not over the first millisecond.
        assert!((r.rate(1) - 1000.0).abs() < 1e-6);
        for s in 1..=20 {
            r.record(1_000.0, s * 1000);
        }
        // Steady 1000/s once the burst has aged out.
        let rate = r.rate(20_500);
        assert!((rate - 1050.0).abs() < 60.0, "{rate}");
    }

    #[test]
    fn throttle_time_brings_the_rate_back_to_the_bound() {
        let mut r = SampledRate::new(1000, 11);
        r.record(20_000.0, 0);
        // 2000/s measured over 10 s against a bound of 1000/s: pause 10 s.
        assert_eq!(r.throttle_ms(1000.0, 0), 10_000);
        assert_eq!(r.throttle_ms(5000.0, 0), 0);
        // Capped at the measured span (11 s) however far over.
        r.record(1e12, 1);
        assert_eq!(r.throttle_ms(1.0, 1), 11_000);
        assert!(!r.is_idle(10_999));
        assert!(r.is_idle(11_000));
    }

    #[test]
    fn the_bucket_admits_while_positive_and_says_when_it_will_again() {
        // 10 mutations/s with an 11 s burst: 110 tokens.
        let mut b = TokenBucket::new(10.0, 11.0, 0);
        assert!(b.take(100.0, 10.0, 11.0, 0).is_ok());
        assert!(
            b.take(50.0, 10.0, 11.0, 0).is_ok(),
            "10 left: admitted, goes to -40"
        );
        assert_eq!(b.take(1.0, 10.0, 11.0, 0), Err(4000));
        assert_eq!(b.take(1.0, 10.0, 11.0, 3_000), Err(1000));
        assert!(b.take(1.0, 10.0, 11.0, 4_100).is_ok());
        assert!(b.is_full(11.0, 20_000));
    }
}
