//! A Jepsen-style workload and checker, shared by the loopback replication tests and the
//! container chaos suite. Producers (acks=all, idempotent) write unique values and record
//! every operation with its outcome in a [`History`]; consumers in a group report what they
//! read, owned and committed; the checker reads every partition end to end and reports
//! lost writes, duplicates, inconsistent offsets, order violations, group anomalies and
//! how long writes were unavailable after each fault.

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

impl ClientContext for Recorder {}

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
                let (s, n, bootstrap, topic, timeout) = (
                    Arc::clone(&stop),
                    Arc::clone(&sent),
                    bootstrap.to_string(),
                    topic.to_string(),
                    spec.delivery_timeout,
                );
                std::thread::spawn(move || {
                    produce_loop(
                        recorder,
                        p,
                        &bootstrap,
                        &topic,
                        timeout,
                        per_producer,
                        &s,
                        &n,
                    )
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
    delivery_timeout: Duration,
    rate: Option<f64>,
    stop: &AtomicBool,
    sent: &AtomicU64,
) {
    let producer: ThreadedProducer<Recorder> = client_config(bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set(
            "delivery.timeout.ms",
            delivery_timeout.as_millis().to_string(),
        )
        .set("request.timeout.ms", "5000")
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

/// One invariant violation, with where to look in the history.
#[derive(Clone, Debug)]
pub struct Anomaly {
    pub partition: i32,
    pub offset: i64,
    pub detail: String,
}

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub acknowledged: usize,
    pub records: usize,
    /// Sends whose outcome is unknown (failed after the client's retries).
    pub failures: usize,
    pub lost: Vec<Anomaly>,
    pub duplicates: Vec<Anomaly>,
    pub inconsistent: Vec<Anomaly>,
    pub order: Vec<Anomaly>,
    pub group: Vec<Anomaly>,
    /// Per fault: the longest time without an acknowledged write after it, in ms.
    pub unavailability_ms: Vec<u64>,
    pub faults: usize,
}

impl Report {
    pub fn anomalies(&self) -> usize {
        self.lost.len()
            + self.duplicates.len()
            + self.inconsistent.len()
            + self.order.len()
            + self.group.len()
    }

    pub fn median_unavailability_ms(&self) -> u64 {
        let mut v = self.unavailability_ms.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }

    pub fn max_unavailability_ms(&self) -> u64 {
        self.unavailability_ms.iter().copied().max().unwrap_or(0)
    }

    /// Panics with every anomaly and the history around the first one.
    pub fn assert_clean(&self, history: &[Event]) {
        if self.anomalies() == 0 {
            return;
        }
        let mut msg = String::new();
        for (name, list) in [
            ("lost writes", &self.lost),
            ("duplicates", &self.duplicates),
            ("inconsistent offsets", &self.inconsistent),
            ("order violations", &self.order),
            ("consumer-group anomalies", &self.group),
        ] {
            if list.is_empty() {
                continue;
            }
            msg.push_str(&format!("{} {name}:\n", list.len()));
            for a in list.iter().take(10) {
                msg.push_str(&format!("  p{} o{}: {}\n", a.partition, a.offset, a.detail));
            }
        }
        let first = [
            &self.lost,
            &self.duplicates,
            &self.inconsistent,
            &self.order,
            &self.group,
        ]
        .iter()
        .find_map(|l| l.first())
        .cloned();
        if let Some(a) = first {
            msg.push_str(&format!(
                "history around p{} o{} (faults, and operations on that partition near that offset):\n",
                a.partition, a.offset
            ));
            for e in history.iter().filter(|e| {
                e.kind == OpKind::Fault
                    || e.kind == OpKind::Heal
                    || (e.partition == a.partition
                        && (e.offset < 0 || (e.offset - a.offset).abs() <= 5))
            }) {
                msg.push_str(&format!("  {e}\n"));
            }
        }
        panic!("the checker found {} anomalies:\n{msg}", self.anomalies());
    }
}

/// The producer and sequence number of a workload value `w<producer>-<seq>`.
fn parse_value(v: &str) -> Option<(&str, u64)> {
    let (producer, seq) = v.rsplit_once('-')?;
    Some((producer, seq.parse().ok()?))
}

/// Checks the acknowledged writes and everything consumers saw against the log `data`.
pub fn analyze(data: &BTreeMap<i32, Vec<(i64, String)>>, outcome: &Outcome) -> Report {
    let mut r = Report {
        acknowledged: outcome.acks.len(),
        records: data.values().map(Vec::len).sum(),
        failures: outcome.failures.len(),
        ..Report::default()
    };
    let mut first_seen: HashMap<&str, (i32, i64)> = HashMap::new();
    for (p, records) in data {
        for w in records.windows(2) {
            if w[1].0 != w[0].0 + 1 {
                r.inconsistent.push(Anomaly {
                    partition: *p,
                    offset: w[0].0,
                    detail: format!("offsets {} and {} leave a gap", w[0].0, w[1].0),
                });
            }
        }
        let mut last_seq: HashMap<&str, u64> = HashMap::new();
        for (offset, v) in records {
            if let Some((po, oo)) = first_seen.insert(v.as_str(), (*p, *offset)) {
                r.duplicates.push(Anomaly {
                    partition: *p,
                    offset: *offset,
                    detail: format!("{v} is also at p{po} o{oo}"),
                });
            }
            if let Some((producer, seq)) = parse_value(v) {
                if let Some(prev) = last_seq.insert(producer, seq) {
                    if seq <= prev {
                        r.order.push(Anomaly {
                            partition: *p,
                            offset: *offset,
                            detail: format!("{v} follows {producer}-{prev}"),
                        });
                    }
                }
            }
        }
    }
    let index: HashMap<(i32, i64), &String> = data
        .iter()
        .flat_map(|(p, rs)| rs.iter().map(move |(o, v)| ((*p, *o), v)))
        .collect();
    let values: HashMap<(i32, &str), i64> = data
        .iter()
        .flat_map(|(p, rs)| rs.iter().map(move |(o, v)| ((*p, v.as_str()), *o)))
        .collect();
    for ack in &outcome.acks {
        if ack.offset < 0 {
            // Acknowledged without an offset (librdkafka reports -1001 when a retried
            // batch is answered as a duplicate): it must be somewhere in its partition.
            if !values.contains_key(&(ack.partition, ack.value.as_str())) {
                r.lost.push(Anomaly {
                    partition: ack.partition,
                    offset: ack.offset,
                    detail: format!("acknowledged {} (offset unknown), never read", ack.value),
                });
            }
            continue;
        }
        match index.get(&(ack.partition, ack.offset)) {
            Some(v) if **v == ack.value => {}
            Some(v) => r.inconsistent.push(Anomaly {
                partition: ack.partition,
                offset: ack.offset,
                detail: format!("acknowledged {} here, but the log holds {v}", ack.value),
            }),
            None => r.lost.push(Anomaly {
                partition: ack.partition,
                offset: ack.offset,
                detail: format!("acknowledged {} here, never read", ack.value),
            }),
        }
    }
    // What consumers read must be what the log holds at that offset.
    for e in outcome.history.iter().filter(|e| e.kind == OpKind::Read) {
        if let Some(v) = index.get(&(e.partition, e.offset)) {
            if **v != e.value {
                r.inconsistent.push(Anomaly {
                    partition: e.partition,
                    offset: e.offset,
                    detail: format!("{} read {}, the log holds {v}", e.process, e.value),
                });
            }
        }
    }
    r.unavailability_ms = unavailability(&outcome.history);
    r.faults = outcome
        .history
        .iter()
        .filter(|e| e.kind == OpKind::Fault)
        .count();
    r
}

/// For each fault: the longest gap between acknowledged writes that overlaps the time from
/// the fault to the next one (or the end of the run).
fn unavailability(history: &[Event]) -> Vec<u64> {
    let mut acks: Vec<u64> = history
        .iter()
        .filter(|e| e.kind == OpKind::Ack)
        .map(|e| e.t_ms)
        .collect();
    acks.sort_unstable();
    let faults: Vec<u64> = history
        .iter()
        .filter(|e| e.kind == OpKind::Fault)
        .map(|e| e.t_ms)
        .collect();
    let end = history.iter().map(|e| e.t_ms).max().unwrap_or(0);
    faults
        .iter()
        .enumerate()
        .map(|(i, &f)| {
            let until = faults.get(i + 1).copied().unwrap_or(end);
            let mut worst = 0;
            let mut prev = acks.iter().rev().find(|&&a| a <= f).copied().unwrap_or(f);
            for &a in acks.iter().filter(|&&a| a > f && a <= until) {
                worst = worst.max(a - prev.max(f));
                prev = a;
            }
            if prev < until {
                // No ack after the last one before the window closed.
                worst = worst.max(until - prev.max(f));
            }
            worst
        })
        .collect()
}

/// Reads the topic back, checks it, and panics on any anomaly (the loopback tests).
pub fn check(bootstrap: &str, topic: &str, partitions: i32, outcome: &Outcome) -> Report {
    let data = read_topic_through(bootstrap, topic, partitions, &outcome.acked_ends());
    let report = analyze(&data, outcome);
    report.assert_clean(&outcome.history);
    report
}

/// Consumer-group anomalies in what members reported (name, JSON-lines events of
/// `tests/python/group_member.py`), whose reads and commits also go into `history` so the
/// log check covers them: a partition assigned to two members in one generation, or a
/// committed offset of a partition going backwards.
pub fn group_anomalies(
    members: &[(String, Vec<serde_json::Value>)],
    history: &History,
) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut owners: BTreeMap<(i64, i64), Vec<&str>> = BTreeMap::new();
    let mut commits: Vec<(u64, &str, i32, i64)> = Vec::new();
    for (name, events) in members {
        for e in events {
            let t = e["t"].as_u64().unwrap_or(0);
            match e["event"].as_str() {
                Some("assigned") => {
                    let generation = e["generation"].as_i64().unwrap_or(-1);
                    if generation < 0 {
                        continue;
                    }
                    for p in e["partitions"].as_array().into_iter().flatten() {
                        if let Some(p) = p.as_i64() {
                            let names = owners.entry((generation, p)).or_default();
                            if !names.contains(&name.as_str()) {
                                names.push(name);
                            }
                        }
                    }
                }
                Some("record") => {
                    if let (Some(p), Some(o), Some(v)) =
                        (e["p"].as_i64(), e["o"].as_i64(), e["v"].as_str())
                    {
                        history.record(Event {
                            t_ms: t,
                            process: name.clone(),
                            kind: OpKind::Read,
                            partition: p as i32,
                            offset: o,
                            value: v.to_string(),
                        });
                    }
                }
                Some("committed") => {
                    if let (Some(p), Some(o)) = (e["p"].as_i64(), e["o"].as_i64()) {
                        commits.push((t, name, p as i32, o));
                        history.record(Event {
                            t_ms: t,
                            process: name.clone(),
                            kind: OpKind::Commit,
                            partition: p as i32,
                            offset: o,
                            value: String::new(),
                        });
                    }
                }
                _ => {}
            }
        }
    }
    for ((generation, p), names) in owners {
        if names.len() > 1 {
            out.push(Anomaly {
                partition: p as i32,
                offset: -1,
                detail: format!("owned by {names:?} in generation {generation}"),
            });
        }
    }
    commits.sort_by_key(|c| c.0);
    let mut high: HashMap<i32, (i64, &str)> = HashMap::new();
    for (_, name, p, o) in commits {
        match high.get(&p) {
            Some(&(h, by)) if o < h => out.push(Anomaly {
                partition: p,
                offset: o,
                detail: format!(
                    "{name} committed {o} after {by} committed {h}: the offset went back"
                ),
            }),
            _ => {
                high.insert(p, (o, name));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: u64, kind: OpKind, p: i32, o: i64, v: &str) -> Event {
        Event {
            t_ms: t,
            process: "x".into(),
            kind,
            partition: p,
            offset: o,
            value: v.into(),
        }
    }

    fn outcome(acks: &[(i32, i64, &str)], history: Vec<Event>) -> Outcome {
        Outcome {
            acks: acks
                .iter()
                .map(|(p, o, v)| Ack {
                    partition: *p,
                    offset: *o,
                    value: v.to_string(),
                })
                .collect(),
            failures: vec![],
            sent: acks.len() as u64,
            history,
        }
    }

    fn log(rows: &[(i32, i64, &str)]) -> BTreeMap<i32, Vec<(i64, String)>> {
        let mut m: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
        for (p, o, v) in rows {
            m.entry(*p).or_default().push((*o, v.to_string()));
        }
        m
    }

    #[test]
    fn a_clean_run_has_no_anomalies() {
        let data = log(&[(0, 0, "w0-0"), (0, 1, "w0-1"), (1, 0, "w1-0")]);
        let r = analyze(
            &data,
            &outcome(&[(0, 0, "w0-0"), (0, 1, "w0-1"), (1, 0, "w1-0")], vec![]),
        );
        assert_eq!(r.anomalies(), 0, "{r:?}");
    }

    #[test]
    fn every_kind_of_anomaly_is_found() {
        let data = log(&[
            (0, 0, "w0-0"),
            (0, 1, "w0-2"),
            (0, 2, "w0-1"),
            (0, 4, "w0-0"),
        ]);
        let history = vec![ev(10, OpKind::Read, 0, 1, "w0-9")];
        let r = analyze(
            &data,
            &outcome(&[(0, 0, "w0-0"), (0, 5, "w0-5"), (0, 2, "w0-7")], history),
        );
        assert_eq!(r.lost.len(), 1, "ack at offset 5 was never read");
        assert_eq!(r.duplicates.len(), 1, "w0-0 at offsets 0 and 4");
        assert_eq!(r.order.len(), 2, "w0-1 after w0-2, w0-0 after w0-1");
        // The 2..4 gap, the ack of w0-7 at 2, and the read of w0-9 at 1.
        assert_eq!(r.inconsistent.len(), 3, "{:?}", r.inconsistent);
    }

    #[test]
    fn unavailability_is_the_longest_ack_gap_after_each_fault() {
        let mut h = vec![
            ev(0, OpKind::Ack, 0, 0, "w0-0"),
            ev(100, OpKind::Ack, 0, 1, "w0-1"),
            ev(150, OpKind::Fault, -1, -1, "kill"),
            ev(900, OpKind::Ack, 0, 2, "w0-2"),
            ev(950, OpKind::Ack, 0, 3, "w0-3"),
            ev(1000, OpKind::Fault, -1, -1, "kill"),
            ev(1100, OpKind::Ack, 0, 4, "w0-4"),
        ];
        h.sort_by_key(|e| e.t_ms);
        assert_eq!(unavailability(&h), vec![750, 100]);
    }
}
