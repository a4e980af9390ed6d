//! The checks: what a history and the partitions read back end to end say about lost
//! writes, duplicates, offsets, order, consumer groups and unavailability.

use std::collections::{BTreeMap, HashMap};

use super::{read_topic_through, Event, History, OpKind, Outcome};

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
        .map(|(i, &f)| longest_gap(&acks, f, faults.get(i + 1).copied().unwrap_or(end)))
        .collect()
}

/// The longest time within `[from, until]` without a success, given the sorted times of
/// `successes`: how long an operation was unavailable after something happened at `from`.
/// A window with no success after `from` counts as unavailable to its end.
pub fn longest_gap(successes: &[u64], from: u64, until: u64) -> u64 {
    let mut worst = 0;
    let mut prev = successes
        .iter()
        .rev()
        .find(|&&a| a <= from)
        .copied()
        .unwrap_or(from);
    for &a in successes.iter().filter(|&&a| a > from && a <= until) {
        worst = worst.max(a - prev.max(from));
        prev = a;
    }
    if prev < until {
        // No success after the last one before the window closed.
        worst = worst.max(until - prev.max(from));
    }
    worst
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
    use crate::checker::Ack;

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
