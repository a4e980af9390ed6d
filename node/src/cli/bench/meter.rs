//! What a benchmark counts while it runs, the live progress line, and the final report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::latency::Histogram;

/// Kafka's perf tools report MB/s as MiB per second; so does this.
const MIB: f64 = 1024.0 * 1024.0;

/// Latencies, whole-run and for the current progress window, and the steady state:
/// the whole run but its warm-up.
#[derive(Default)]
struct Latencies {
    total: Histogram,
    window: Histogram,
    steady: Histogram,
}

/// Counters shared by every producer and consumer thread of one run.
#[derive(Default)]
pub struct Meter {
    records: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    ack: Mutex<Latencies>,
    e2e: Mutex<Latencies>,
    /// Acknowledgements before this many records are the warm-up (connections being
    /// made, the first metadata, cold memory): left out of the steady-state figures, as
    /// kafka-producer-perf-test's `--warmup-records` does. 0: no steady-state figures.
    warmup_records: AtomicU64,
}

fn lock(m: &Mutex<Latencies>) -> MutexGuard<'_, Latencies> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Meter {
    /// One record acknowledged (produce) or received (consume).
    pub fn count(&self, bytes: usize) {
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_warmup_records(&self, n: u64) {
        self.warmup_records.store(n, Ordering::Relaxed);
    }

    fn warmup_records(&self) -> u64 {
        self.warmup_records.load(Ordering::Relaxed)
    }

    /// The latency of one acknowledgement, given before that record is counted.
    pub fn ack_latency(&self, d: Duration) {
        let warmup = self.warmup_records();
        let steady = warmup > 0 && self.records() >= warmup;
        let mut l = lock(&self.ack);
        let us = d.as_micros() as u64;
        l.total.record(us);
        l.window.record(us);
        if steady {
            l.steady.record(us);
        }
    }

    pub fn e2e_latency(&self, micros: u64) {
        let mut l = lock(&self.e2e);
        l.total.record(micros);
        l.window.record(micros);
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn take_window(&self, which: &Mutex<Latencies>) -> Histogram {
        std::mem::take(&mut lock(which).window)
    }

    fn total(&self, which: &Mutex<Latencies>) -> Histogram {
        lock(which).total.clone()
    }

    /// The acknowledgement latencies after the warm-up, if the run has one.
    fn steady_ack(&self) -> Option<(u64, Histogram)> {
        let warmup = self.warmup_records();
        (warmup > 0).then(|| (warmup, lock(&self.ack).steady.clone()))
    }
}

/// Where a run ends, for the share done and the time left in its progress lines.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    Records(u64),
    Time(Duration),
}

impl Goal {
    /// `" [42%, about 12.0 s left]"` after `records` in `elapsed`; empty without a goal.
    fn suffix(self, records: u64, elapsed: Duration) -> String {
        let (done, left) = match self {
            Goal::Records(0) => return String::new(),
            Goal::Records(total) => {
                let rate = records as f64 / elapsed.as_secs_f64().max(1e-9);
                let left = (total.saturating_sub(records) as f64 / rate.max(1e-9)).min(1e9);
                (records as f64 / total as f64, left)
            }
            Goal::Time(d) => (
                elapsed.as_secs_f64() / d.as_secs_f64().max(1e-9),
                d.saturating_sub(elapsed).as_secs_f64(),
            ),
        };
        format!(
            " [{:.0}%, about {left:.1} s left]",
            (done * 100.0).min(100.0)
        )
    }
}

/// Prints one progress line to standard error per `interval` until dropped.
pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    pub fn start(label: &'static str, meter: Arc<Meter>, interval: Duration, goal: Goal) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let (mut records, mut bytes, mut at) = (0, 0, started);
            while !flag.load(Ordering::Relaxed) {
                // Waking early to notice the stop flag; the line goes out once per interval.
                std::thread::park_timeout(Duration::from_millis(50));
                if at.elapsed() < interval {
                    continue;
                }
                let (r, b) = (meter.records(), meter.bytes());
                let secs = at.elapsed().as_secs_f64();
                let mut line = format!(
                    "{label} {:>6.1} s: {:>10.0} records/s {:>8.2} MB/s",
                    started.elapsed().as_secs_f64(),
                    (r - records) as f64 / secs,
                    (b - bytes) as f64 / MIB / secs,
                );
                for (name, h) in [
                    ("ack", meter.take_window(&meter.ack)),
                    ("e2e", meter.take_window(&meter.e2e)),
                ] {
                    if h.count() > 0 {
                        line.push_str(&format!(
                            ", {name} p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
                            ms(h.quantile(0.5)),
                            ms(h.quantile(0.99)),
                            ms(h.max())
                        ));
                    }
                }
                line.push_str(&goal.suffix(r, started.elapsed()));
                eprintln!("{line}");
                (records, bytes, at) = (r, b, Instant::now());
            }
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
#[test]
fn goals_give_the_share_done_and_the_time_left() {
    let s = Duration::from_secs;
    assert_eq!(
        Goal::Records(1000).suffix(250, s(5)),
        " [25%, about 15.0 s left]"
    );
    assert_eq!(
        Goal::Time(s(60)).suffix(7, s(15)),
        " [25%, about 45.0 s left]"
    );
    assert_eq!(Goal::Records(0).suffix(7, s(15)), "");
    assert_eq!(
        Goal::Records(10).suffix(20, s(1)),
        " [100%, about 0.0 s left]"
    );
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// The outcome of one run.
pub struct Summary {
    pub kind: &'static str,
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub ack: Histogram,
    pub e2e: Histogram,
    /// The warm-up's length in records, and the acknowledgement latencies after it.
    pub steady_ack: Option<(u64, Histogram)>,
}

impl Summary {
    pub fn of(kind: &'static str, meter: &Meter, elapsed: Duration) -> Self {
        Summary {
            kind,
            records: meter.records(),
            bytes: meter.bytes(),
            errors: meter.errors(),
            elapsed,
            ack: meter.total(&meter.ack),
            e2e: meter.total(&meter.e2e),
            steady_ack: meter.steady_ack(),
        }
    }

    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / MIB / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentiles(h: &Histogram) -> serde_json::Value {
        serde_json::json!({
            "p50": ms(h.quantile(0.50)),
            "p95": ms(h.quantile(0.95)),
            "p99": ms(h.quantile(0.99)),
            "p99_9": ms(h.quantile(0.999)),
            "max": ms(h.max()),
            "count": h.count(),
        })
    }

    /// One JSON object, for scripts: the last line of `--json` output.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "kind": self.kind,
            "records": self.records,
            "bytes": self.bytes,
            "errors": self.errors,
            "seconds": self.elapsed.as_secs_f64(),
            "records_per_sec": self.records_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
        });
        if self.ack.count() > 0 {
            v["latency_ms"] = Self::percentiles(&self.ack);
        }
        if self.e2e.count() > 0 {
            v["e2e_latency_ms"] = Self::percentiles(&self.e2e);
        }
        if let Some((warmup, steady)) = &self.steady_ack {
            v["warmup_records"] = serde_json::json!(warmup);
            v["steady_latency_ms"] = Self::percentiles(steady);
        }
        v
    }

    /// The same, for a person.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "{}: {} records ({:.1} MB) in {:.2} s: {:.0} records/s, {:.2} MB/s, {} errors",
            self.kind,
            self.records,
            self.bytes as f64 / MIB,
            self.elapsed.as_secs_f64(),
            self.records_per_sec(),
            self.mb_per_sec(),
            self.errors
        )];
        let steady = self
            .steady_ack
            .as_ref()
            .map(|(warmup, h)| (format!("ack latency after the first {warmup} records"), h));
        for (name, h) in [
            ("ack latency".to_string(), &self.ack),
            ("end-to-end latency".to_string(), &self.e2e),
        ]
        .into_iter()
        .chain(steady)
        {
            if h.count() > 0 {
                out.push(format!(
                    "{name}: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                    ms(h.quantile(0.50)),
                    ms(h.quantile(0.95)),
                    ms(h.quantile(0.99)),
                    ms(h.quantile(0.999)),
                    ms(h.max())
                ));
            }
        }
        out
    }
}

#[cfg(test)]
#[test]
fn steady_state_latencies_leave_out_the_warm_up() {
    let meter = Meter::default();
    meter.set_warmup_records(2);
    for ms in [500, 400, 7, 9] {
        meter.ack_latency(Duration::from_millis(ms));
        meter.count(100);
    }
    let summary = Summary::of("produce", &meter, Duration::from_secs(1));
    assert_eq!(summary.ack.count(), 4);
    let (warmup, steady) = summary.steady_ack.expect("a warm-up was set");
    assert_eq!(warmup, 2);
    assert_eq!(steady.count(), 2);
    assert!(ms(steady.max()) < 10.0, "steady max {}", ms(steady.max()));
    assert!(ms(summary.ack.max()) >= 500.0);

    let plain = Meter::default();
    plain.ack_latency(Duration::from_millis(5));
    plain.count(100);
    let summary = Summary::of("produce", &plain, Duration::from_secs(1));
    assert!(summary.steady_ack.is_none());
    assert!(summary.json().get("steady_latency_ms").is_none());
}
