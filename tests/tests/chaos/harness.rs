//! The chaos harness: a cluster in containers with a workload and a reading consumer
//! group, faults marked in the history, and the checker's verdict at the end.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fjord_tests::checker::{
    analyze, group_anomalies, read_topic_through, History, OpKind, Report, Workload, WorkloadSpec,
};
use fjord_tests::docker::{docker_or_skip, ChartConfig, ClusterSpec, ContainerCluster};
use fjord_tests::members::{ClientKind, Member};
use fjord_tests::wait_until;

pub const TOPIC: &str = "chaos";
pub const PARTITIONS: i32 = 3;

/// One schedule at a time: a few clusters of containers would starve two cores.
pub static TURN: Mutex<()> = Mutex::new(());

pub fn long_profile() -> bool {
    std::env::var("FJORD_CHAOS_PROFILE").is_ok_and(|p| p == "long")
}

/// Rounds of a fault loop: short in CI, many in the long profile.
pub fn rounds(short: usize) -> usize {
    if long_profile() {
        short * 5
    } else {
        short
    }
}

pub const OVERRIDES: &[&str] = &[
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=300",
    "controller.quorum.election.timeout.ms=1000",
    "replica.lag.time.max.ms=3000",
    "offsets.topic.num.partitions=6",
    "transaction.state.log.num.partitions=6",
    "group.initial.rebalance.delay.ms=500",
    // KIP-848 readers: a session like the classic readers' 10 s, news within 500 ms.
    "group.consumer.session.timeout.ms=10000",
    "group.consumer.heartbeat.interval.ms=500",
    "default.replication.factor=3",
    "min.insync.replicas=2",
];

pub struct Run {
    pub name: &'static str,
    pub cluster: ContainerCluster,
    pub history: History,
    pub workload: Option<Workload>,
    pub members: Vec<Member>,
    pub started: Instant,
}

/// Which group protocol the reading consumer group speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// kafka-python members of a classic group (JoinGroup/SyncGroup), whose rebalances
    /// report generations, so ownership is checked per generation.
    Classic,
    /// confluent-kafka members with `group.protocol=consumer` (KIP-848): commits carry
    /// member epochs, so a zombie's commit cannot move an offset back.
    ConsumerProtocol,
}

impl Run {
    pub fn start(name: &'static str, nodes: usize) -> Option<Run> {
        Self::start_reading(name, nodes, Readers::Classic)
    }

    pub fn start_reading(name: &'static str, nodes: usize, readers: Readers) -> Option<Run> {
        let spec = ClusterSpec {
            nodes,
            overrides: OVERRIDES.iter().map(|s| s.to_string()).collect(),
            ..ClusterSpec::default()
        };
        Self::start_spec(name, &spec, readers, |_| None)
    }

    pub fn start_spec(
        name: &'static str,
        spec: &ClusterSpec,
        readers: Readers,
        chart_for: impl Fn(&str) -> Option<ChartConfig>,
    ) -> Option<Run> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let docker = docker_or_skip(&rt)?;
        let cluster = ContainerCluster::start_with(docker, spec, chart_for);
        eprintln!(
            "chaos {name}: cluster {} up: {}",
            cluster.tag(),
            cluster.bootstrap()
        );
        let bootstrap = cluster.bootstrap();
        fjord_tests::create_topic_rf(
            &bootstrap,
            TOPIC,
            PARTITIONS,
            3,
            &[("min.insync.replicas", "2")],
        );
        wait_until(
            "every partition has three in-sync replicas",
            Duration::from_secs(60),
            || {
                let v = cluster.status(0)?;
                let t = v["topics"]
                    .as_array()?
                    .iter()
                    .find(|t| t["name"] == TOPIC)?
                    .clone();
                let ps = t["partitions"].as_array()?;
                (ps.len() == PARTITIONS as usize
                    && ps
                        .iter()
                        .all(|p| p["isr"].as_array().is_some_and(|i| i.len() == 3)))
                .then_some(())
            },
        );
        let history = History::default();
        let workload = Workload::start_with(
            &bootstrap,
            TOPIC,
            &WorkloadSpec {
                producers: 2,
                rate: Some(400),
                delivery_timeout: Duration::from_secs(120),
                max_in_flight: 5,
            },
            history.clone(),
        );
        let (kind, group, protocol): (ClientKind, &str, &[&str]) = match readers {
            Readers::Classic => (ClientKind::KafkaPython, "chaos-readers", &[]),
            Readers::ConsumerProtocol => (
                ClientKind::Confluent,
                "chaos-readers-kip848",
                &["--property", "group.protocol=consumer"],
            ),
        };
        let members = (0..2)
            .map(|i| {
                let mut args = vec![
                    "--commit",
                    "batch",
                    "--log-records",
                    "--session-timeout-ms",
                    "10000",
                ];
                args.extend_from_slice(protocol);
                Member::spawn(&format!("c{i}"), kind, &bootstrap, group, TOPIC, &args)
            })
            .collect();
        let run = Run {
            name,
            cluster,
            history,
            workload: Some(workload),
            members,
            started: Instant::now(),
        };
        run.progress(300);
        Some(run)
    }

    pub fn workload(&self) -> &Workload {
        self.workload.as_ref().expect("workload running")
    }

    /// Waits for `n` more acknowledged writes.
    pub fn progress(&self, n: usize) {
        self.workload()
            .wait_for_progress(n, Duration::from_secs(120));
    }

    pub fn fault(&self, what: String) {
        self.history.mark(OpKind::Fault, &what);
    }

    pub fn heal(&self, what: String) {
        self.history.mark(OpKind::Heal, &what);
    }

    /// Takes `victim` down (SIGTERM when `graceful`, else SIGKILL) while writes go on,
    /// then starts it again and waits until it is ready.
    pub fn bounce(&mut self, victim: i32, what: String, graceful: bool) {
        self.fault(what);
        if graceful {
            self.cluster.stop(victim);
        } else {
            self.cluster.kill(victim);
        }
        self.progress(300);
        self.cluster.restart(victim);
        self.heal(format!("node {victim} restarted"));
        self.progress(200);
    }

    /// Cuts `victim` off from its peers while writes go on, then heals it and waits
    /// until it is ready again. Clients reach it throughout.
    pub fn cut_off(&mut self, victim: i32, what: String) {
        self.fault(what);
        self.cluster.partition(victim);
        self.progress(600);
        self.cluster.heal(victim);
        self.heal(format!("node {victim} reconnected"));
        self.cluster.wait_ready(victim, Duration::from_secs(120));
        self.progress(200);
    }

    /// The workload topic's partitions (leader, replicas, isr) as node 0 reports them.
    pub fn partitions(&self) -> Option<Vec<serde_json::Value>> {
        let v = self.cluster.status(0)?;
        let t = v["topics"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == TOPIC)?;
        t["partitions"].as_array().cloned()
    }

    /// Waits until every partition of the workload topic has all three replicas in sync.
    pub fn wait_full_isr(&self, what: &str) {
        wait_until(what, Duration::from_secs(120), || {
            self.partitions()?
                .iter()
                .all(|p| p["isr"].as_array().is_some_and(|i| i.len() == 3))
                .then_some(())
        });
    }

    pub fn leader(&self, partition: usize) -> i32 {
        wait_until(
            &format!("a leader for partition {partition}"),
            Duration::from_secs(60),
            || self.cluster.leader_of(TOPIC, partition),
        )
    }

    pub fn controller(&self) -> i32 {
        wait_until("an active controller", Duration::from_secs(60), || {
            self.cluster.active_controller()
        })
    }

    /// Heals every fault, lets the workload run on, then checks everything.
    pub fn finish(mut self) -> Report {
        let mut stopped = Vec::new();
        for id in 0..self.cluster.nodes.len() as i32 {
            let n = self.cluster.node(id).clone();
            if n.paused {
                self.cluster.unpause(id);
            }
            if n.partitioned {
                self.cluster.heal(id);
            }
            if !n.running {
                stopped.push(id);
            }
        }
        self.cluster.restart_all(&stopped);
        for id in 0..self.cluster.nodes.len() as i32 {
            self.cluster.wait_ready(id, Duration::from_secs(120));
        }
        self.progress(200);
        let outcome = self.workload.take().expect("workload").stop();
        let mut reports = Vec::new();
        for m in &mut self.members {
            m.close();
            eprintln!(
                "chaos {}: member {}: {} assignments, {} records, {} commits, {} failed commits",
                self.name,
                m.name,
                m.count("assigned"),
                m.count("record"),
                m.count("committed"),
                m.count("commit-failed")
            );
            let why: std::collections::BTreeSet<String> = m
                .events()
                .iter()
                .filter(|e| e["event"] == "commit-failed")
                .filter_map(|e| e["error"].as_str().map(str::to_string))
                .collect();
            if !why.is_empty() {
                eprintln!(
                    "chaos {}: member {}: commits failed with {why:?}",
                    self.name, m.name
                );
            }
            reports.push((m.name.clone(), m.events()));
        }
        let group = group_anomalies(&reports, &self.history);
        // A high watermark still catching up after the last heal is not a lost write: give
        // every partition time to expose its last acknowledged offset before reading.
        settle_high_watermarks(&self.cluster.bootstrap(), &outcome);
        let data = read_topic_through(
            &self.cluster.bootstrap(),
            TOPIC,
            PARTITIONS,
            &outcome.acked_ends(),
        );
        let mut outcome = outcome;
        outcome.history = self.history.events();
        let mut report = analyze(&data, &outcome);
        report.group = group;
        let ops = outcome
            .history
            .iter()
            .filter(|e| e.kind != OpKind::Fault && e.kind != OpKind::Heal)
            .count();
        eprintln!(
            "chaos {}: {} ops ({} acked, {} unknown), {} faults, {} anomalies, unavailability median {} ms max {} ms, {:.0} s",
            self.name,
            ops,
            report.acknowledged,
            report.failures,
            report.faults,
            report.anomalies(),
            report.median_unavailability_ms(),
            report.max_unavailability_ms(),
            self.started.elapsed().as_secs_f64()
        );
        if let Ok(path) = std::env::var("FJORD_CHAOS_RESULTS") {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(
                    f,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    self.name,
                    self.cluster.nodes.len(),
                    ops,
                    report.failures,
                    report.faults,
                    report.lost.len(),
                    report.duplicates.len(),
                    report.inconsistent.len(),
                    report.order.len(),
                    report.group.len(),
                    report.median_unavailability_ms(),
                    report.max_unavailability_ms(),
                );
            }
        }
        let keep_all = std::env::var_os("FJORD_CHAOS_KEEP_LOGS").is_some();
        if keep_all || report.anomalies() > 0 || report.max_unavailability_ms() > 60_000 {
            self.save_logs();
        }
        report.assert_clean(&outcome.history);
        report
    }

    /// With `FJORD_CHAOS_LOGS=DIR`, keeps every node's log of a run that found anomalies
    /// or stalled for over a minute, or of every run with `FJORD_CHAOS_KEEP_LOGS=1` (the
    /// containers go away with the run).
    pub fn save_logs(&self) {
        let Ok(dir) = std::env::var("FJORD_CHAOS_LOGS") else {
            return;
        };
        let dir = std::path::Path::new(&dir).join(self.name.replace(' ', "-"));
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        for id in 0..self.cluster.nodes.len() as i32 {
            let _ = std::fs::write(
                dir.join(format!("node-{id}.log")),
                self.cluster.logs(id, 100_000),
            );
        }
        let history: Vec<String> = self
            .history
            .events()
            .iter()
            .map(|e| e.to_string())
            .collect();
        let _ = std::fs::write(dir.join("history.txt"), history.join("\n"));
        eprintln!(
            "chaos {}: node logs and history saved in {}",
            self.name,
            dir.display()
        );
    }
}

/// Waits (up to a minute) until each partition's high watermark passes its highest
/// acknowledged offset, printing how long that took when it was not at once.
pub fn settle_high_watermarks(bootstrap: &str, outcome: &fjord_tests::checker::Outcome) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = fjord_tests::client_config(bootstrap)
        .create()
        .expect("consumer");
    let started = Instant::now();
    for p in 0..PARTITIONS {
        let Some(last) = outcome
            .acks
            .iter()
            .filter(|a| a.partition == p)
            .map(|a| a.offset)
            .max()
        else {
            continue;
        };
        while started.elapsed() < Duration::from_secs(60) {
            let high = consumer
                .fetch_watermarks(TOPIC, p, Duration::from_secs(5))
                .map(|(_, h)| h)
                .unwrap_or(-1);
            if high > last {
                break;
            }
            std::thread::sleep(Duration::from_millis(200)); // poll, bounded by the minute above
        }
    }
    if started.elapsed() > Duration::from_secs(1) {
        eprintln!(
            "chaos: high watermarks took {:.1} s to pass the last acknowledged offsets",
            started.elapsed().as_secs_f64()
        );
    }
}

pub fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}
