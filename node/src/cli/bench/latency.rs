//! A latency histogram with bounded relative error, in microseconds.
//!
//! Values below 128 µs are counted exactly; above, each power of two is split into 128
//! buckets, so a reported percentile is at most 0.8% above the true value. That keeps
//! the whole histogram at a fixed 7424 counters however many samples arrive, which is
//! what a benchmark recording millions of acknowledgements needs.

const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (v >> shift) as usize;
    ((shift as usize + 1) << SUB_BITS) + (sub - SUB)
}

/// The largest value that lands in bucket `i`: what a percentile in it reports.
fn highest_in(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i >> SUB_BITS) - 1;
    let sub = ((i & (SUB - 1)) + SUB) as u64;
    let low = sub << shift;
    low.saturating_add((1u64 << shift) - 1)
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        self.counts[index(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1) in microseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return highest_in(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v} -> {i}");
            assert!(i >= last, "bucket order at {v}");
            assert!(highest_in(i) >= v, "{v} above its bucket's top");
            last = i;
        }
    }

    #[test]
    fn relative_error_stays_under_one_percent() {
        for v in [127u64, 128, 1_000, 12_345, 999_999, 30_000_000] {
            let top = highest_in(index(v));
            assert!(
                (top - v) as f64 <= v as f64 * 0.008,
                "{v} reported as {top}"
            );
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 10);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 10_000);
        let p50 = h.quantile(0.5);
        assert!((5_000..=5_040).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((9_900..=9_980).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(Histogram::default().quantile(0.99), 0);
    }
}
