//! The log cleaner: compacts the partitions with `cleanup.policy=compact` one at a time,
//! off the async workers and outside the partition lock, within an I/O budget
//! (`log.cleaner.io.max.bytes.per.second`), every `log.cleaner.backoff.ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::broker::Broker;
use crate::time::now_ms;

/// Paces the cleaner's reads and writes to `bytes_per_sec`.
struct Throttle {
    bytes_per_sec: f64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn account(&mut self, n: u64) {
        self.bytes += n;
        if !self.bytes_per_sec.is_finite() || self.bytes_per_sec <= 0.0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_sec);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            // Runs on a blocking thread: sleeping here is the budget, not a wait for state.
            std::thread::sleep(due - elapsed);
        }
    }
}

pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let backoff =
            Duration::from_millis(broker.broker_i64("log.cleaner.backoff.ms").max(10) as u64);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if !broker.broker_bool("log.cleaner.enable") {
            continue;
        }
        let md = broker.metadata();
        let view = broker.view(&md);
        let dedupe = usize::try_from(view.broker_i64("log.cleaner.dedupe.buffer.size"))
            .unwrap_or(usize::MAX);
        let budget: f64 = view
            .broker_value("log.cleaner.io.max.bytes.per.second")
            .parse()
            .unwrap_or(f64::INFINITY);
        for partition in broker.replicas.all() {
            if *shutdown.borrow() {
                return;
            }
            let Some(job) = partition.plan_compaction(now_ms(), dedupe) else {
                continue;
            };
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || {
                let mut throttle = Throttle {
                    bytes_per_sec: budget,
                    started: Instant::now(),
                    bytes: 0,
                };
                job.run(&mut |n| throttle.account(n))
            })
            .await;
            let output = match result {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => {
                    warn!(partition = %partition.tp, error = %e, "compaction failed");
                    continue;
                }
                Err(e) => {
                    warn!(partition = %partition.tp, error = %e, "compaction task failed");
                    continue;
                }
            };
            let stats = output.stats;
            match partition.finish_compaction(output, now_ms()) {
                Ok(true) => info!(
                    partition = %partition.tp,
                    read_bytes = stats.bytes_read,
                    written_bytes = stats.bytes_written,
                    kept = stats.records_kept,
                    removed = stats.records_removed,
                    tombstones_removed = stats.tombstones_removed,
                    aborted_removed = stats.aborted_records_removed,
                    abort_markers_removed = stats.abort_markers_removed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "compacted log"
                ),
                Ok(false) => {
                    debug!(partition = %partition.tp, "compaction discarded: the log changed meanwhile")
                }
                Err(e) => {
                    warn!(partition = %partition.tp, error = %e, "swapping in a compaction failed")
                }
            }
            metrics::counter!("fjord_cleaner_bytes_written_total").increment(stats.bytes_written);
            metrics::counter!("fjord_cleaner_records_removed_total")
                .increment(stats.records_removed);
        }
    }
}
