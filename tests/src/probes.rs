//! Availability probes for fault tests: a consumer group committing offsets and a
//! transactional producer, each in its own thread with librdkafka, recording when its
//! operations succeed. Together with the checker's acks=all producer they cover the three
//! things an operator's clients need from a cluster: writes, group commits and
//! transactions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaError};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::members::now_ms;
use crate::{client_config, wait_until};

/// How often a probe tries its operation: often enough to resolve a gap to a few tens of
/// milliseconds, rarely enough not to load a debug build.
const PROBE_INTERVAL: Duration = Duration::from_millis(40);

/// How long a probe's request may go unanswered before its client gives up on that broker
/// (librdkafka's `socket.timeout.ms` and `request.timeout.ms`; 60 s and 30 s by default).
/// A frozen broker keeps its connections open, so without this a probe measures the
/// client's patience rather than the cluster's failover.
const PROBE_REQUEST_TIMEOUT_MS: &str = "2000";

/// What a probe saw: the times its operations succeeded, the errors it met, and what it
/// claims was made durable (the last committed offset, the committed transactions).
#[derive(Clone, Debug, Default)]
pub struct ProbeLog {
    pub successes: Vec<u64>,
    pub errors: BTreeMap<String, usize>,
    /// Commit probe: the last offset whose commit was acknowledged.
    pub last_committed: Option<i64>,
    /// Transaction probe: the values of the transactions whose commit was acknowledged.
    pub committed_values: Vec<String>,
}

type Shared = Arc<Mutex<ProbeLog>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, ProbeLog> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn note_error(s: &Shared, e: &dyn std::fmt::Display) {
    let mut text = e.to_string();
    text.truncate(120);
    *lock(s).errors.entry(text).or_default() += 1;
}

/// A running probe.
pub struct Probe {
    pub name: &'static str,
    log: Shared,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Probe {
    fn spawn(
        name: &'static str,
        body: impl FnOnce(Shared, Arc<AtomicBool>) + Send + 'static,
    ) -> Probe {
        let log = Shared::default();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (log, stop) = (Arc::clone(&log), Arc::clone(&stop));
            std::thread::spawn(move || body(log, stop))
        };
        Probe {
            name,
            log,
            stop,
            handle: Some(handle),
        }
    }

    /// A consumer group `group` committing ever larger offsets of `topic` partition 0, as
    /// a standalone consumer does (no membership), once per probe interval.
    pub fn group_commits(bootstrap: &str, group: &str, topic: &str) -> Probe {
        let consumer: BaseConsumer = client_config(bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("retry.backoff.ms", "50")
            .set("socket.timeout.ms", PROBE_REQUEST_TIMEOUT_MS)
            .set("topic.metadata.refresh.interval.ms", "500")
            .create()
            .expect("commit probe consumer");
        let topic = topic.to_string();
        Probe::spawn("group commits", move |log, stop| {
            let mut next = 1i64;
            while !stop.load(Ordering::Acquire) {
                let mut tpl = TopicPartitionList::new();
                if tpl
                    .add_partition_offset(&topic, 0, Offset::Offset(next))
                    .is_err()
                {
                    return;
                }
                match consumer.commit(&tpl, CommitMode::Sync) {
                    Ok(()) => {
                        let mut l = lock(&log);
                        l.successes.push(now_ms());
                        l.last_committed = Some(next);
                        next += 1;
                    }
                    Err(e) => note_error(&log, &e),
                }
                std::thread::sleep(PROBE_INTERVAL); // pacing of the probe, not synchronization
            }
        })
    }

    /// A transactional producer (`transactional.id` = `txn_id`) committing one record to
    /// `topic` partition 0 per transaction, once per probe interval. Abortable errors
    /// abort and go on; fatal ones start a new producer, which fences the old one.
    pub fn transactions(bootstrap: &str, txn_id: &str, topic: &str) -> Probe {
        let config = {
            let mut c = client_config(bootstrap);
            c.set("transactional.id", txn_id)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "0")
                .set("retry.backoff.ms", "50")
                .set("transaction.timeout.ms", "60000")
                .set("socket.timeout.ms", PROBE_REQUEST_TIMEOUT_MS)
                .set("request.timeout.ms", PROBE_REQUEST_TIMEOUT_MS)
                .set("topic.metadata.refresh.interval.ms", "500");
            c
        };
        let topic = topic.to_string();
        Probe::spawn("transactions", move |log, stop| {
            let mut seq = 0u64;
            'producer: while !stop.load(Ordering::Acquire) {
                let producer: BaseProducer = config.create().expect("transactional producer");
                if let Err(e) = producer.init_transactions(Duration::from_secs(10)) {
                    note_error(&log, &e);
                    std::thread::sleep(PROBE_INTERVAL); // pacing of the probe, not synchronization
                    continue;
                }
                while !stop.load(Ordering::Acquire) {
                    seq += 1;
                    let value = format!("t-{seq}");
                    match one_transaction(&producer, &topic, &value, &log) {
                        Ok(()) => {
                            let mut l = lock(&log);
                            l.successes.push(now_ms());
                            l.committed_values.push(value);
                        }
                        Err(e) => {
                            note_error(&log, &e);
                            let txn = txn_error(&e);
                            if txn.is_some_and(RDKafkaError::is_fatal) {
                                continue 'producer;
                            }
                            // A failed send inside a transaction leaves it to abort too.
                            if txn.is_none_or(RDKafkaError::txn_requires_abort)
                                && producer.abort_transaction(Duration::from_secs(10)).is_err()
                            {
                                continue 'producer;
                            }
                        }
                    }
                    std::thread::sleep(PROBE_INTERVAL); // pacing of the probe, not synchronization
                }
            }
        })
    }

    /// Success times so far.
    pub fn successes(&self) -> Vec<u64> {
        lock(&self.log).successes.clone()
    }

    /// Whether an operation succeeded after `t_ms`.
    pub fn succeeded_after(&self, t_ms: u64) -> bool {
        lock(&self.log).successes.last().is_some_and(|s| *s > t_ms)
    }

    /// Waits for the first success (the probe's client has found its coordinator).
    pub fn wait_started(&self, timeout: Duration) {
        wait_until(
            &format!("the {} probe's first success", self.name),
            timeout,
            || (!lock(&self.log).successes.is_empty()).then_some(()),
        );
    }

    /// Stops the probe and returns what it saw.
    pub fn stop(mut self) -> ProbeLog {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        lock(&self.log).clone()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// One transaction of one record; a retriable commit error (or a flush that timed out)
/// is retried, as librdkafka asks.
fn one_transaction(
    producer: &BaseProducer,
    topic: &str,
    value: &str,
    log: &Shared,
) -> Result<(), KafkaError> {
    producer.begin_transaction()?;
    producer
        .send(BaseRecord::<(), str>::to(topic).partition(0).payload(value))
        .map_err(|(e, _)| e)?;
    loop {
        // librdkafka gives the EndTxn request the call's timeout: a short one lets the
        // retry find a new coordinator rather than wait on a frozen one.
        match producer.commit_transaction(Duration::from_secs(2)) {
            Ok(()) => return Ok(()),
            // The crate flushes before it commits; records still waiting (for a new
            // transaction coordinator, say) are no reason to give the transaction up.
            Err(e @ KafkaError::Flush(_)) => note_error(log, &format!("retried: {e}")),
            Err(e) if txn_error(&e).is_some_and(RDKafkaError::is_retriable) => {
                note_error(log, &format!("retried: {e}"))
            }
            Err(e) => return Err(e),
        }
    }
}

/// The transactional error behind `e`, which says whether it is fatal, retriable or
/// needs an abort.
fn txn_error(e: &KafkaError) -> Option<&RDKafkaError> {
    match e {
        KafkaError::Transaction(t) => Some(t),
        _ => None,
    }
}

/// The committed offset of `group` on `topic` partition 0, as a new client reads it;
/// `Err` when no coordinator answered within a minute.
pub fn committed_offset(bootstrap: &str, group: &str, topic: &str) -> Result<Option<i64>, String> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
            Ok(list) => {
                return Ok(list.elements().first().and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                }))
            }
            Err(e) if std::time::Instant::now() > deadline => {
                return Err(format!("reading the committed offset: {e}"))
            }
            Err(_) => std::thread::sleep(PROBE_INTERVAL), // retry until the deadline
        }
    }
}

/// The values of `topic` partition 0 that a read_committed consumer sees, up to the last
/// stable offset.
pub fn read_committed_values(bootstrap: &str, topic: &str) -> Vec<String> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "fjord-probe-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let (_, end) = wait_until("watermarks", Duration::from_secs(60), || {
        consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(5))
            .ok()
    });
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut values = Vec::new();
    let mut position = 0i64;
    // The last control record stands at end - 1; reading stops once nothing but markers
    // is left, or the position passes the end.
    wait_until(
        "the transactional topic read back",
        Duration::from_secs(60),
        || {
            while let Some(m) = consumer.poll(Duration::from_millis(200)) {
                match m {
                    Ok(m) => {
                        position = m.offset() + 1;
                        values.push(
                            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                        );
                    }
                    Err(e) => panic!("read_committed read failed: {e}"),
                }
            }
            let at_end = consumer
                .position()
                .ok()
                .and_then(|p| p.elements().first().map(|e| e.offset()))
                .is_some_and(|o| matches!(o, Offset::Offset(o) if o >= end));
            (at_end || position >= end).then_some(())
        },
    );
    values
}
