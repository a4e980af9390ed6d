//! Progress of partition moves (reassign, drain, balance) for the person waiting on them:
//! partitions done, bytes the new replicas have copied against what their leaders hold,
//! the copy rate and the time left at that rate.
//!
//! The numbers come from DescribeLogDirs on the brokers involved; the arithmetic is a pure
//! function of those sizes so it is tested without a cluster. On a terminal the line is
//! rewritten in place; in a log or pipe a line goes out when a partition finishes or every
//! [`QUIET_FOR`], so a long drain neither floods a CI log nor looks hung.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{DescribeLogDirsRequest, TopicName};

use super::client::ConnectArgs;
use super::group::{broker_addresses, metadata, str};
use super::wire::Wire;
use super::CliError;

/// The longest a non-terminal output stays silent while moves run.
const QUIET_FOR: Duration = Duration::from_secs(5);

/// A partition being moved: its replicas that hold the data, and those being added.
#[derive(Clone, Debug)]
pub struct Moving {
    pub topic: String,
    pub partition: i32,
    pub holding: Vec<i32>,
    pub adding: Vec<i32>,
}

/// `(broker, topic, partition) -> bytes` of the replicas DescribeLogDirs reported.
pub type Sizes = BTreeMap<(i32, String, i32), u64>;

/// Bytes still to copy, summed over `moving`: `(copied, to copy)`. A partition's target is
/// the largest copy among the replicas that hold it; each new replica counts what it has,
/// up to that target. Replicas a broker did not report count as empty.
pub fn copied(moving: &[Moving], sizes: &Sizes) -> (u64, u64) {
    let size = |b: i32, m: &Moving| {
        sizes
            .get(&(b, m.topic.clone(), m.partition))
            .copied()
            .unwrap_or(0)
    };
    let mut done = 0;
    let mut total = 0;
    for m in moving {
        let target = m.holding.iter().map(|b| size(*b, m)).max().unwrap_or(0);
        for b in &m.adding {
            total += target;
            done += size(*b, m).min(target);
        }
    }
    (done, total)
}

/// One progress line: `3 of 12 partitions moved; copied 1.2 of 3.4 GiB (35%), 84.0 MB/s,
/// about 26 s left (14.2 s so far)`. `rate` is bytes per second, if known yet.
pub fn line(
    done: usize,
    total: usize,
    (copied, to_copy): (u64, u64),
    rate: Option<f64>,
    elapsed: Duration,
) -> String {
    let mut s = format!("{done} of {total} partitions moved");
    if to_copy > 0 {
        let pct = copied as f64 * 100.0 / to_copy as f64;
        s.push_str(&format!(
            "; copied {} of {} ({pct:.0}%)",
            bytes(copied),
            bytes(to_copy)
        ));
        if let Some(r) = rate.filter(|r| *r > 0.0) {
            let left = (to_copy - copied) as f64 / r;
            s.push_str(&format!(
                ", {:.1} MB/s, about {} left",
                r / 1e6,
                seconds(left)
            ));
        }
    }
    s.push_str(&format!(" ({} so far)", seconds(elapsed.as_secs_f64())));
    s
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn seconds(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.1} s")
    } else if s < 5400.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Prints progress as moves run; see the module comment for when.
pub struct Reporter<'a> {
    connect: &'a ConnectArgs,
    started: Instant,
    terminal: bool,
    last_line: Option<(Instant, usize)>,
    first_copied: Option<(Instant, u64)>,
    rewrote: bool,
}

impl<'a> Reporter<'a> {
    pub fn new(connect: &'a ConnectArgs) -> Self {
        Reporter {
            connect,
            started: Instant::now(),
            terminal: std::io::stdout().is_terminal(),
            last_line: None,
            first_copied: None,
            rewrote: false,
        }
    }

    /// Reports `done` of `total` partitions moved, with the copy state of `moving`. A
    /// failure to read sizes leaves the byte counts out rather than stopping the wait.
    pub fn report(&mut self, done: usize, total: usize, moving: &[Moving]) {
        self.report_if(false, done, total, moving);
    }

    /// The last line, always printed, so even moves done before the first poll show.
    pub fn done(&mut self, total: usize) {
        self.report_if(true, total, total, &[]);
        self.finish();
    }

    fn report_if(&mut self, force: bool, done: usize, total: usize, moving: &[Moving]) {
        let due = force
            || match self.last_line {
                None => true,
                Some((at, d)) => self.terminal || d != done || at.elapsed() >= QUIET_FOR,
            };
        if !due {
            return;
        }
        let copy = sizes(self.connect, moving)
            .map(|s| copied(moving, &s))
            .unwrap_or((0, 0));
        let now = Instant::now();
        let first = *self.first_copied.get_or_insert((now, copy.0));
        let span = now.duration_since(first.0).as_secs_f64();
        let rate = (span >= 1.0 && copy.0 > first.1).then(|| (copy.0 - first.1) as f64 / span);
        let text = line(done, total, copy, rate, self.started.elapsed());
        if self.terminal {
            print_inline(&text);
            self.rewrote = true;
        } else {
            outln!("{text}");
        }
        self.last_line = Some((now, done));
    }

    /// Ends an in-place line so what follows starts on its own.
    pub fn finish(&mut self) {
        if self.rewrote {
            outln!();
            self.rewrote = false;
        }
    }
}

fn print_inline(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    // Clear to the end of the line: the new text may be shorter than the old.
    let _ = write!(out, "\r{text}\x1b[K");
    let _ = out.flush();
}

/// The sizes of `moving`'s replicas on every broker involved.
fn sizes(connect: &ConnectArgs, moving: &[Moving]) -> Result<Sizes, CliError> {
    if moving.is_empty() {
        return Ok(Sizes::new());
    }
    let brokers: BTreeSet<i32> = moving
        .iter()
        .flat_map(|m| m.holding.iter().chain(&m.adding).copied())
        .collect();
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for m in moving {
        by_topic.entry(&m.topic).or_default().push(m.partition);
    }
    let req = DescribeLogDirsRequest::default().with_topics(Some(
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                DescribableLogDirTopic::default()
                    .with_topic(TopicName(str(t)))
                    .with_partitions(ps)
            })
            .collect(),
    ));
    let addresses = broker_addresses(&metadata(connect, Some(&[]))?);
    let mut out = Sizes::new();
    for b in brokers {
        let Some(addr) = addresses.get(&b) else {
            continue;
        };
        let resp = Wire::connect(addr, connect)?.call(1, &req)?;
        for dir in resp.results.iter().filter(|d| d.error_code == 0) {
            for t in &dir.topics {
                for p in t.partitions.iter().filter(|p| !p.is_future_key) {
                    let size = u64::try_from(p.partition_size).unwrap_or(0);
                    *out.entry((b, t.name.0.to_string(), p.partition_index))
                        .or_default() += size;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moving(topic: &str, partition: i32, holding: &[i32], adding: &[i32]) -> Moving {
        Moving {
            topic: topic.into(),
            partition,
            holding: holding.to_vec(),
            adding: adding.to_vec(),
        }
    }

    #[test]
    fn copied_counts_each_new_replica_against_the_fullest_holder() {
        let sizes: Sizes = [
            ((1, "t".to_string(), 0), 1000),
            ((2, "t".to_string(), 0), 900),
            ((3, "t".to_string(), 0), 250),
            ((1, "t".to_string(), 1), 400),
            // A new replica past the old copy (the leader kept writing): capped.
            ((4, "t".to_string(), 1), 500),
        ]
        .into_iter()
        .collect();
        let moves = [moving("t", 0, &[1, 2], &[3, 5]), moving("t", 1, &[1], &[4])];
        // Partition 0: 250 of 1000 on broker 3, nothing on 5; partition 1: all 400.
        assert_eq!(copied(&moves, &sizes), (650, 2400));
        assert_eq!(copied(&[], &sizes), (0, 0));
    }

    #[test]
    fn lines_read_as_a_person_expects() {
        let gib = 1024 * 1024 * 1024;
        assert_eq!(
            line(3, 12, (gib, 4 * gib), Some(100e6), Duration::from_secs(14)),
            "3 of 12 partitions moved; copied 1.0 GiB of 4.0 GiB (25%), 100.0 MB/s, \
             about 32.2 s left (14.0 s so far)"
        );
        assert_eq!(
            line(0, 2, (0, 0), None, Duration::from_millis(500)),
            "0 of 2 partitions moved (0.5 s so far)"
        );
        assert_eq!(
            line(1, 2, (10, 20), None, Duration::from_secs(200)),
            "1 of 2 partitions moved; copied 10 B of 20 B (50%) (3 min so far)"
        );
    }
}
