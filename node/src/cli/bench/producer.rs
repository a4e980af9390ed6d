//! Producer threads: each a librdkafka producer sending fixed-size records as fast as
//! allowed, timing every acknowledgement from send to delivery report.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::meter::Meter;
use crate::cli::CliError;

/// What one producer thread sends.
#[derive(Clone, Debug)]
pub struct Plan {
    pub topic: String,
    pub record_size: usize,
    /// Stop after this many records (this thread's share).
    pub records: Option<u64>,
    /// Or at this instant.
    pub until: Option<Instant>,
    /// Records per second for this thread; `None` is unthrottled.
    pub rate: Option<f64>,
    /// Cycle through this many distinct keys; 0 sends no keys.
    pub keys: u64,
    /// Stamp the send time into the first 8 bytes (for end-to-end latency).
    pub stamp: bool,
    /// Seeds the payload, so threads do not send identical bytes.
    pub seed: u64,
}

struct Context {
    meter: Arc<Meter>,
    delivered: Arc<Deliveries>,
}

/// Counts delivery reports, so a sender facing a full queue can sleep until one arrives.
/// (Polling the producer for a millisecond instead busy-waits inside rdkafka, whose
/// sub-millisecond remainder becomes a zero timeout: a spinning client steals the
/// brokers' cores.)
#[derive(Default)]
struct Deliveries {
    count: AtomicU64,
    /// Senders asleep in `wait_past`: reports wake them only then, since a condition
    /// variable's notify is a system call and reports come a million a second.
    waiting: AtomicUsize,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Deliveries {
    fn current(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.changed.notify_all();
        }
    }

    /// Returns once a report beyond `seen` arrived, or after `limit`. The waiter counts
    /// itself before it checks the count, both under the lock, so a report either is
    /// seen by that check or finds the waiter and wakes it.
    fn wait_past(&self, seen: u64, limit: Duration) {
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _ = self
            .changed
            .wait_timeout_while(guard, limit, |_| self.current() == seen);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ClientContext for Context {}

impl ProducerContext for Context {
    /// When the record was handed to librdkafka, and its size.
    type DeliveryOpaque = Box<(Instant, usize)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let (sent, size) = *opaque;
        match result {
            Ok(_) => {
                self.meter.ack_latency(sent.elapsed());
                self.meter.count(size);
            }
            Err(_) => self.meter.error(),
        }
        self.delivered.bump();
    }
}

/// Microseconds since the Unix epoch: comparable between a producer and a consumer on
/// the same machine.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Uppercase letters from a xorshift generator, like Kafka's perf tool: compressible
/// about as well as text, unlike a run of one byte.
fn payload(size: usize, mut seed: u64) -> Vec<u8> {
    seed |= 1;
    (0..size)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b'A' + (seed % 26) as u8
        })
        .collect()
}

pub fn run(
    config: &ClientConfig,
    plan: &Plan,
    meter: Arc<Meter>,
    flush_timeout: Duration,
) -> Result<(), CliError> {
    let delivered = Arc::new(Deliveries::default());
    let producer: ThreadedProducer<Context> = config.create_with_context(Context {
        meter: Arc::clone(&meter),
        delivered: Arc::clone(&delivered),
    })?;
    let mut value = payload(plan.record_size, plan.seed);
    let keys: Vec<String> = (0..plan.keys).map(|k| format!("key-{k}")).collect();
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        if plan.records.is_some_and(|n| sent >= n)
            || plan.until.is_some_and(|t| Instant::now() >= t)
        {
            break;
        }
        if let Some(rate) = plan.rate {
            // Pacing to the requested rate, not synchronization.
            let due = Duration::from_secs_f64(sent as f64 / rate);
            let elapsed = started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        if plan.stamp && value.len() >= 8 {
            value[..8].copy_from_slice(&now_micros().to_be_bytes());
        }
        let mut record = BaseRecord::<[u8], [u8], Box<(Instant, usize)>>::with_opaque_to(
            &plan.topic,
            Box::new((Instant::now(), value.len())),
        )
        .payload(&value);
        if !keys.is_empty() {
            record = record.key(keys[(sent % plan.keys) as usize].as_bytes());
        }
        loop {
            let seen = delivered.current();
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    // librdkafka's queue is full: wait for deliveries (back-pressure).
                    // The polling thread serves them; the limit only bounds a lost wakeup.
                    delivered.wait_past(seen, Duration::from_millis(100));
                    record = r;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        sent += 1;
    }
    producer.flush(flush_timeout)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_letters_and_differ_by_seed() {
        let a = payload(64, 1);
        let b = payload(64, 2);
        assert_eq!(a.len(), 64);
        assert!(a.iter().all(u8::is_ascii_uppercase));
        assert_ne!(a, b);
    }
}
