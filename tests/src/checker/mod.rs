//! A Jepsen-style workload and checker, shared by the loopback replication tests and the
//! container chaos suite. Producers (acks=all, idempotent) write unique values and record
//! every operation with its outcome in a [`History`]; consumers in a group report what they
//! read, owned and committed; the checker reads every partition end to end and reports
//! lost writes, duplicates, inconsistent offsets, order violations, group anomalies and
//! how long writes were unavailable after each fault. The checks are in `analysis`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::members::now_ms;
use crate::{client_config, wait_until};

mod analysis;

pub use analysis::{analyze, check, group_anomalies, longest_gap, Anomaly, Report};

/// What happened to one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// A write was acknowledged at (partition, offset).
    Ack,
    /// A write failed after the client's retries. It may or may not have been written:
    /// its outcome is unknown, so it is never counted as lost, and may be read back.
    Unknown,
    /// A consumer read (partition, offset) = value.
    Read,
    /// A consumer's commit of (partition, next offset) was acknowledged.
    Commit,
    /// A fault was injected (value says which).
    Fault,
    /// A fault was healed (value says which).
    Heal,
}

/// One line of the operation history.
#[derive(Clone, Debug)]
pub struct Event {
    pub t_ms: u64,
    pub process: String,
    pub kind: OpKind,
    pub partition: i32,
    pub offset: i64,
    pub value: String,
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>13} {:<10} {:<8} p{} o{} {}",
            self.t_ms,
            self.process,
            format!("{:?}", self.kind),
            self.partition,
            self.offset,
            self.value
        )
    }
}

/// Every operation of a run, in the order they completed.
#[derive(Clone, Default)]
pub struct History(Arc<Mutex<Vec<Event>>>);

impl History {
    pub fn record(&self, e: Event) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(e);
    }

    /// Marks a fault (kind `Fault`) or its end (`Heal`), for the availability figures.
    pub fn mark(&self, kind: OpKind, what: &str) {
        eprintln!("chaos: {kind:?} {what}");
        self.record(Event {
            t_ms: now_ms(),
            process: "nemesis".into(),
            kind,
            partition: -1,
            offset: -1,
            value: what.to_string(),
        });
    }

    pub fn events(&self) -> Vec<Event> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        v.sort_by_key(|e| e.t_ms);
        v
    }
}

/// One acknowledged write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub partition: i32,
    pub offset: i64,
    pub value: String,
}

#[derive(Clone)]
struct Recorder {
    process: String,
    history: History,
    acks: Arc<Mutex<Vec<Ack>>>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Recorder {
    /// librdkafka's own log, printed with the test's clock so that it lines up with the
    /// history and the node logs (`FJORD_CLIENT_DEBUG` turns on its debug contexts).
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        eprintln!(
            "[client {} {} {level:?} {fac}] {log_message}",
            self.process,
            now_ms()
        );
    }
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                self.history.record(Event {
                    t_ms: now_ms(),
                    process: self.process.clone(),
                    kind: OpKind::Ack,
                    partition: m.partition(),
                    offset: m.offset(),
                    value: value.clone(),
                });
                self.acks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Ack {
                        partition: m.partition(),
                        offset: m.offset(),
                        value,
                    });
            }
            Err((e, m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                self.history.record(Event {
                    t_ms: now_ms(),
                    process: self.process.clone(),
                    kind: OpKind::Unknown,
                    partition: m.partition(),
                    offset: -1,
                    value: format!("{value} ({e})"),
                });
                self.failures
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(e.to_string());
            }
        }
    }
}

/// How the producers of a [`Workload`] behave.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub producers: usize,
    /// Records per second over all producers; `None` sends as fast as acknowledged.
    pub rate: Option<u32>,
    /// How long a send is retried before it counts as failed (outcome unknown).
    pub delivery_timeout: Duration,
    /// `max.in.flight.requests.per.connection` (librdkafka's default is 5). With more than
    /// one, librdkafka can write a batch twice by itself when leadership moves: the old
    /// leader answers NOT_LEADER_OR_FOLLOWER for a batch it appended (the client takes it
    /// as not persisted), the new leader answers OUT_OF_ORDER_SEQUENCE_NUMBER for the
    /// requests pipelined behind it, and the client bumps its producer epoch and sends
    /// the batch again under new sequence numbers that no broker can recognise
    /// (confluentinc/librdkafka#4953, seen against Apache Kafka too). Workloads that move
    /// many leaders at once send one request at a time, so a duplicate is the broker's.
    pub max_in_flight: u32,
}

/// Producers writing `w<producer>-<seq>` values, keyed over 64 keys.
pub struct Workload {
    acks: Arc<Mutex<Vec<Ack>>>,
    failures: Arc<Mutex<Vec<String>>>,
    history: History,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handles: Vec<JoinHandle<()>>,
}

/// What the workload saw.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub acks: Vec<Ack>,
    pub failures: Vec<String>,
    pub sent: u64,
    pub history: Vec<Event>,
}

impl Outcome {
    /// One past the highest acknowledged offset of each partition.
    pub fn acked_ends(&self) -> HashMap<i32, i64> {
        let mut ends = HashMap::new();
        for a in self.acks.iter().filter(|a| a.offset >= 0) {
            let e = ends.entry(a.partition).or_insert(0);
            *e = (*e).max(a.offset + 1);
        }
        ends
    }
}

impl Workload {
    /// One unthrottled idempotent acks=all producer (the loopback replication tests).
    pub fn start(bootstrap: &str, topic: &str, delivery_timeout: Duration) -> Workload {
        Self::start_with(
            bootstrap,
            topic,
            &WorkloadSpec {
                producers: 1,
                rate: None,
                delivery_timeout,
                max_in_flight: 5,
            },
            History::default(),
        )
    }

    pub fn start_with(
        bootstrap: &str,
        topic: &str,
        spec: &WorkloadSpec,
        history: History,
    ) -> Workload {
        let acks = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let per_producer = spec
            .rate
            .map(|r| (r as f64 / spec.producers.max(1) as f64).max(1.0));
        let handles = (0..spec.producers.max(1))
            .map(|p| {
                let recorder = Recorder {
                    process: format!("w{p}"),
                    history: history.clone(),
                    acks: Arc::clone(&acks),
                    failures: Arc::clone(&failures),
                };
                let (s, n, bootstrap, topic, spec) = (
                    Arc::clone(&stop),
                    Arc::clone(&sent),
                    bootstrap.to_string(),
                    topic.to_string(),
                    spec.clone(),
                );
                std::thread::spawn(move || {
                    produce_loop(recorder, p, &bootstrap, &topic, &spec, per_producer, &s, &n)
                })
            })
            .collect();
        Workload {
            acks,
            failures,
            history,
            stop,
            sent,
            handles,
        }
    }

    pub fn acked(&self) -> usize {
        self.acks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn failures(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Waits until `n` more writes than now are acknowledged.
    pub fn wait_for_progress(&self, n: usize, timeout: Duration) {
        let target = self.acked() + n;
        wait_until(&format!("{n} more acknowledged writes"), timeout, || {
            (self.acked() >= target).then_some(())
        });
    }

    pub fn stop(self) -> Outcome {
        self.stop.store(true, Ordering::Release);
        for h in self.handles {
            let _ = h.join();
        }
        Outcome {
            acks: self.acks.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            failures: self
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            sent: self.sent.load(Ordering::Acquire),
            history: self.history.events(),
        }
    }
}

#[allow(clippy::too_many_arguments)] // a thread body: each argument is one piece of shared state it owns or borrows
fn produce_loop(
    recorder: Recorder,
    id: usize,
    bootstrap: &str,
    topic: &str,
    spec: &WorkloadSpec,
    rate: Option<f64>,
    stop: &AtomicBool,
    sent: &AtomicU64,
) {
    let delivery_timeout = spec.delivery_timeout;
    let producer: ThreadedProducer<Recorder> = client_config(bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set(
            "max.in.flight.requests.per.connection",
            spec.max_in_flight.to_string(),
        )
        .set("linger.ms", "5")
        .set(
            "delivery.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        )
        .set("request.timeout.ms", "5000")
        // A frozen broker keeps its connections open: give up on it as soon as on a
        // request (librdkafka waits 60 s by default), e.g. for InitProducerId.
        .set("socket.timeout.ms", "5000")
        .set("retry.backoff.ms", "50")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create_with_context(recorder)
        .expect("producer");
    let started = Instant::now();
    let mut seq = 0u64;
    while !stop.load(Ordering::Acquire) {
        if let Some(r) = rate {
            // Pace to the target rate; poll serves delivery callbacks while waiting.
            let due = started + Duration::from_secs_f64(seq as f64 / r);
            let now = Instant::now();
            if due > now {
                producer.poll(due - now);
                continue;
            }
        }
        let value = format!("w{id}-{seq}");
        let key = format!("k{}", seq % 64);
        match producer.send(BaseRecord::to(topic).key(&key).payload(&value)) {
            Ok(()) => {
                seq += 1;
                sent.fetch_add(1, Ordering::AcqRel);
                // Keep a bounded number in flight, so a stall shows in the rate.
                if producer.in_flight_count() > 2_000 {
                    producer.poll(Duration::from_millis(5));
                }
            }
            Err(_) => {
                producer.poll(Duration::from_millis(5));
            }
        }
    }
    let _ = producer.flush(delivery_timeout + Duration::from_secs(5));
}

/// Reads every partition of `topic` from its log start to its high watermark:
/// `(partition -> [(offset, value)])` in offset order.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    read_topic_through(bootstrap, topic, partitions, &HashMap::new())
}

/// [`read_topic`], reading each partition at least up to `acked_ends[p]` (one past its
/// highest acknowledged offset) even if a broker reports a lower high watermark: a
/// stale leader that has not learned of its replacement yet must not make acknowledged
/// records look lost. The read fails loudly if they never show up.
pub fn read_topic_through(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    acked_ends: &HashMap<i32, i64>,
) -> BTreeMap<i32, Vec<(i64, String)>> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "fjord-checker")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut ends = HashMap::new();
    let mut starts = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (low, high) = wait_until("watermarks", Duration::from_secs(60), || {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .ok()
        });
        starts.insert(p, low);
        ends.insert(p, high.max(acked_ends.get(&p).copied().unwrap_or(0)));
        tpl.add_partition_offset(topic, p, Offset::Offset(low))
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    // Keyed by offset: a consumer that is sent back (a stale leader, an offset reset)
    // reads some offsets twice, which must neither count twice nor end the read early.
    let mut read: BTreeMap<i32, BTreeMap<i64, String>> = BTreeMap::new();
    wait_until("topic read back", Duration::from_secs(120), || {
        while let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    panic!("consume error (a corrupt or torn batch must never be served): {e}")
                }
            };
            if m.offset() >= ends[&m.partition()] {
                continue;
            }
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            let previous = read
                .entry(m.partition())
                .or_default()
                .insert(m.offset(), v.clone());
            if let Some(p) = previous.filter(|p| *p != v) {
                panic!(
                    "p{} o{} read as {p} and later as {v}",
                    m.partition(),
                    m.offset()
                );
            }
        }
        // Done when every partition was read up to its end (the last offset seen; gaps
        // are possible only where compaction removed records).
        (0..partitions)
            .all(|p| {
                ends[&p] <= starts[&p]
                    || read
                        .get(&p)
                        .and_then(|r| r.keys().next_back())
                        .is_some_and(|last| *last + 1 >= ends[&p])
            })
            .then_some(())
    });
    read.into_iter()
        .map(|(p, records)| (p, records.into_iter().collect()))
        .collect()
}
