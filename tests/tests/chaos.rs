//! The chaos suite: Fjord clusters in containers (the image from `deploy/build-image.sh`)
//! under SIGKILL, SIGTERM, freezes and network partitions, while idempotent acks=all
//! producers write unique values and a kafka-python consumer group reads and commits.
//! The shared checker then reads every partition end to end; every schedule must end with
//! zero lost writes, zero duplicates, zero inconsistent offsets and no group anomalies.
//! A transactional schedule adds a confluent-kafka transactional producer (every third
//! transaction aborted on purpose) and checks what read_committed sees: no aborted
//! reads, no torn transactions, no lost acknowledged commits.
//!
//! Profiles: the default (CI) one runs a few rounds per schedule; `FJORD_CHAOS_PROFILE=long`
//! runs many more. `FJORD_CHAOS_SEED` replays the random schedule. With
//! `FJORD_CHAOS_RESULTS=FILE`, each schedule appends its row of figures to FILE.
//! Without Docker the suite is skipped with a message, unless `FJORD_REQUIRE_DOCKER=1`.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fjord_tests::checker::{
    analyze, group_anomalies, read_topic_through, History, OpKind, Report, Workload, WorkloadSpec,
};
use fjord_tests::docker::{client_ip, docker_or_skip, ChartConfig, ClusterSpec, ContainerCluster};
use fjord_tests::members::{ClientKind, Member};
use fjord_tests::wait_until;
use rand::{Rng, SeedableRng};

const TOPIC: &str = "chaos";
const PARTITIONS: i32 = 3;

/// One schedule at a time: a few clusters of containers would starve two cores.
static TURN: Mutex<()> = Mutex::new(());

fn long_profile() -> bool {
    std::env::var("FJORD_CHAOS_PROFILE").is_ok_and(|p| p == "long")
}

/// Rounds of a fault loop: short in CI, many in the long profile.
fn rounds(short: usize) -> usize {
    if long_profile() {
        short * 5
    } else {
        short
    }
}

const OVERRIDES: &[&str] = &[
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

struct Run {
    name: &'static str,
    cluster: ContainerCluster,
    history: History,
    workload: Option<Workload>,
    members: Vec<Member>,
    started: Instant,
}

/// Which group protocol the reading consumer group speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Readers {
    /// kafka-python members of a classic group (JoinGroup/SyncGroup), whose rebalances
    /// report generations, so ownership is checked per generation.
    Classic,
    /// confluent-kafka members with `group.protocol=consumer` (KIP-848): commits carry
    /// member epochs, so a zombie's commit cannot move an offset back.
    ConsumerProtocol,
}

impl Run {
    fn start(name: &'static str, nodes: usize) -> Option<Run> {
        Self::start_reading(name, nodes, Readers::Classic)
    }

    fn start_reading(name: &'static str, nodes: usize, readers: Readers) -> Option<Run> {
        let spec = ClusterSpec {
            nodes,
            overrides: OVERRIDES.iter().map(|s| s.to_string()).collect(),
            ..ClusterSpec::default()
        };
        Self::start_spec(name, &spec, readers, |_| None)
    }

    fn start_spec(
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

    fn workload(&self) -> &Workload {
        self.workload.as_ref().expect("workload running")
    }

    /// Waits for `n` more acknowledged writes.
    fn progress(&self, n: usize) {
        self.workload()
            .wait_for_progress(n, Duration::from_secs(120));
    }

    fn fault(&self, what: String) {
        self.history.mark(OpKind::Fault, &what);
    }

    fn heal(&self, what: String) {
        self.history.mark(OpKind::Heal, &what);
    }

    /// Takes `victim` down (SIGTERM when `graceful`, else SIGKILL) while writes go on,
    /// then starts it again and waits until it is ready.
    fn bounce(&mut self, victim: i32, what: String, graceful: bool) {
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
    fn cut_off(&mut self, victim: i32, what: String) {
        self.fault(what);
        self.cluster.partition(victim);
        self.progress(600);
        self.cluster.heal(victim);
        self.heal(format!("node {victim} reconnected"));
        self.cluster.wait_ready(victim, Duration::from_secs(120));
        self.progress(200);
    }

    fn leader(&self, partition: usize) -> i32 {
        wait_until(
            &format!("a leader for partition {partition}"),
            Duration::from_secs(60),
            || self.cluster.leader_of(TOPIC, partition),
        )
    }

    fn controller(&self) -> i32 {
        wait_until("an active controller", Duration::from_secs(60), || {
            self.cluster.active_controller()
        })
    }

    /// Heals every fault, lets the workload run on, then checks everything.
    fn finish(mut self) -> Report {
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
    fn save_logs(&self) {
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
fn settle_high_watermarks(bootstrap: &str, outcome: &fjord_tests::checker::Outcome) {
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

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn leader_kill_loop() {
    let _t = turn();
    let Some(mut run) = Run::start_reading(
        "leader kill loop (KIP-848 readers)",
        3,
        Readers::ConsumerProtocol,
    ) else {
        return;
    };
    for round in 0..rounds(3) {
        let victim = run.leader(round % PARTITIONS as usize);
        run.bounce(
            victim,
            format!("kill -9 node {victim} (leader of partition {})", round % 3),
            false,
        );
    }
    run.finish();
}

#[test]
fn controller_kill_loop() {
    let _t = turn();
    let Some(mut run) = Run::start("controller kill loop", 3) else {
        return;
    };
    for _ in 0..rounds(3) {
        let victim = run.controller();
        run.fault(format!("kill -9 node {victim} (active controller)"));
        run.cluster.kill(victim);
        wait_until("a new controller", Duration::from_secs(60), || {
            run.cluster.active_controller().filter(|c| *c != victim)
        });
        run.progress(300);
        run.cluster.restart(victim);
        run.heal(format!("node {victim} restarted"));
        run.progress(200);
    }
    run.finish();
}

#[test]
fn minority_partition() {
    let _t = turn();
    let Some(mut run) = Run::start("minority partition", 3) else {
        return;
    };
    for round in 0..rounds(2) {
        // Alternate between cutting off a partition leader and cutting off a follower.
        let leader = run.leader(0);
        let victim = if round % 2 == 0 {
            leader
        } else {
            (leader + 1) % 3
        };
        run.cut_off(victim, format!("partition node {victim} from its peers"));
    }
    run.finish();
}

#[test]
fn majority_partition_stops_writes_without_forking() {
    let _t = turn();
    let Some(mut run) = Run::start("majority partition", 3) else {
        return;
    };
    for _ in 0..rounds(1) {
        // Two of three nodes are cut off, each alone: no side has a quorum, so acks=all
        // writes must stop (and nothing may fork) until the network heals.
        let leader = run.leader(0);
        let cut: Vec<i32> = (0..3).filter(|&n| n != leader).collect();
        run.fault(format!("partition nodes {cut:?} from everyone"));
        let cut_at = fjord_tests::members::now_ms();
        for &n in &cut {
            run.cluster.partition(n);
        }
        // Whatever was in flight settles within the ISR timeout; after that nothing may
        // be acknowledged while no quorum exists.
        let quiet_from = cut_at + 4_000;
        let waited = Instant::now();
        while waited.elapsed() < Duration::from_secs(12) {
            std::thread::sleep(Duration::from_millis(200)); // observation window, not synchronization
        }
        let healed_at = fjord_tests::members::now_ms();
        let acked_in_split = run
            .history
            .events()
            .iter()
            .filter(|e| e.kind == OpKind::Ack && e.t_ms > quiet_from && e.t_ms < healed_at)
            .count();
        for &n in &cut {
            run.cluster.heal(n);
        }
        run.heal(format!("nodes {cut:?} reconnected"));
        assert_eq!(
            acked_in_split, 0,
            "acks=all writes were acknowledged without a quorum"
        );
        run.progress(300);
    }
    run.finish();
}

#[test]
fn paused_leader_is_fenced_and_cannot_ack() {
    let _t = turn();
    let Some(mut run) = Run::start("leader pause", 3) else {
        return;
    };
    for round in 0..rounds(2) {
        let victim = run.leader(round % PARTITIONS as usize);
        run.fault(format!(
            "pause node {victim} (leader) past the session timeout"
        ));
        run.cluster.pause(victim);
        wait_until(
            "the paused leader is fenced",
            Duration::from_secs(60),
            || {
                let c = run.cluster.active_controller()?;
                let v = run.cluster.status(c)?;
                v["brokers"]
                    .as_array()?
                    .iter()
                    .find(|b| b["id"] == victim)
                    .and_then(|b| b["fenced"].as_bool())
                    .filter(|f| *f)
            },
        );
        run.progress(300);
        run.cluster.unpause(victim);
        run.heal(format!("node {victim} resumed"));
        run.cluster.wait_ready(victim, Duration::from_secs(120));
        run.progress(200);
    }
    run.finish();
}

#[test]
fn leader_cut_off_from_the_controller() {
    let _t = turn();
    let Some(mut run) = Run::start("leader split from controller", 3) else {
        return;
    };
    for round in 0..rounds(2) {
        let controller = run.controller();
        let Some(p) = (0..PARTITIONS as usize).find(|&p| run.leader(p) != controller) else {
            continue;
        };
        let victim = run.leader(p);
        // Clients still reach the victim; its peers and the controller do not.
        run.cut_off(
            victim,
            format!("cut leader {victim} (partition {p}) off from controller {controller}, round {round}"),
        );
    }
    run.finish();
}

/// Kafka's `partitionFor` of a transactional id (Java's `String.hashCode`).
fn coordinator_partition(txn_id: &str, partitions: i32) -> usize {
    let h = txn_id
        .encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
    let h = if h == i32::MIN { 0 } else { h.abs() };
    (h % partitions) as usize
}

#[test]
fn transactions_survive_leader_and_coordinator_kills() {
    const TXN_TOPIC: &str = "chaos-txn";
    let _t = turn();
    let Some(mut run) = Run::start("transactions under kills", 3) else {
        return;
    };
    let bootstrap = run.cluster.bootstrap();
    fjord_tests::create_topic_rf(&bootstrap, TXN_TOPIC, 3, 3, &[("min.insync.replicas", "2")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let fates = dir.path().join("fates");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/transactions.py");
    let python_run = |args: &[&str]| {
        std::process::Command::new(fjord_tests::python())
            .arg(script)
            .args(["--bootstrap-server", &bootstrap])
            .args(args)
            .args(["--out", &fates.to_string_lossy()])
            .output()
            .expect("run transactions.py")
    };
    let mut workload = std::process::Command::new(fjord_tests::python())
        .arg(script)
        .args([
            "--bootstrap-server",
            &bootstrap,
            "txn-workload",
            TXN_TOPIC,
            "90",
        ])
        .args(["--out", &fates.to_string_lossy()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the transactional workload");
    let coordinator_of = |run: &Run| {
        let p = coordinator_partition("chaos-txn", 6);
        wait_until("a transaction coordinator", Duration::from_secs(60), || {
            run.cluster.leader_of("__transaction_state", p)
        })
    };
    for round in 0..rounds(2) {
        let coordinator = coordinator_of(&run);
        run.bounce(
            coordinator,
            format!("kill -9 node {coordinator} (transaction coordinator)"),
            false,
        );
        let victim = wait_until("a leader", Duration::from_secs(60), || {
            run.cluster.leader_of(TXN_TOPIC, round % 3)
        });
        run.bounce(
            victim,
            format!(
                "kill -9 node {victim} (leader of {TXN_TOPIC}-{})",
                round % 3
            ),
            false,
        );
    }
    let status = wait_until(
        "the transactional workload ends",
        Duration::from_secs(300),
        || workload.try_wait().expect("wait for the workload"),
    );
    assert!(status.success(), "the transactional workload failed");
    let out = python_run(&["check-txn", TXN_TOPIC]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("chaos transactions under kills: {}", stdout.trim());
    assert!(
        out.status.success(),
        "transactional anomalies:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run.finish();
}

#[test]
fn rolling_restart() {
    let _t = turn();
    let Some(mut run) = Run::start_reading(
        "rolling restart (KIP-848 readers)",
        3,
        Readers::ConsumerProtocol,
    ) else {
        return;
    };
    for id in 0..3 {
        run.bounce(id, format!("SIGTERM node {id}"), true);
    }
    run.finish();
}

#[test]
fn whole_cluster_kill_and_restart() {
    let _t = turn();
    let Some(mut run) = Run::start("full-cluster kill -9", 3) else {
        return;
    };
    for _ in 0..rounds(1) {
        run.fault("kill -9 every node".into());
        for id in 0..3 {
            run.cluster.kill(id);
        }
        run.cluster.restart_all(&[0, 1, 2]);
        run.heal("every node restarted".into());
        run.progress(300);
    }
    run.finish();
}

#[test]
fn random_mixed_schedule_on_five_nodes() {
    let _t = turn();
    let seed: u64 = std::env::var("FJORD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261122);
    eprintln!("chaos random schedule: FJORD_CHAOS_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let Some(mut run) = Run::start("random (5 nodes)", 5) else {
        return;
    };
    for _ in 0..rounds(4) {
        // At most two nodes are faulty at once: RF 3 with min.insync.replicas 2 and five
        // voters tolerate that without losing an acknowledged write.
        let a = rng.random_range(0..5);
        let b = (a + rng.random_range(1..5)) % 5;
        let victims: Vec<i32> = if rng.random_bool(0.5) {
            vec![a]
        } else {
            vec![a, b]
        };
        let fault = rng.random_range(0..4);
        let what = ["kill -9", "SIGTERM", "pause", "partition"][fault];
        run.fault(format!("{what} nodes {victims:?}"));
        for &v in &victims {
            match fault {
                0 => run.cluster.kill(v),
                1 => run.cluster.stop(v),
                2 => run.cluster.pause(v),
                _ => run.cluster.partition(v),
            }
        }
        run.progress(300);
        match fault {
            0 | 1 => run.cluster.restart_all(&victims),
            2 => victims.iter().for_each(|&v| run.cluster.unpause(v)),
            _ => victims.iter().for_each(|&v| run.cluster.heal(v)),
        }
        run.heal(format!("nodes {victims:?} back"));
        for &v in &victims {
            run.cluster.wait_ready(v, Duration::from_secs(120));
        }
        run.progress(200);
    }
    run.finish();
}

/// helm from k8s/tools.sh, or why the chart schedule cannot run.
fn helm() -> Option<std::path::PathBuf> {
    let tools = std::env::var("FJORD_K8S_TOOLS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| fjord_tests::repo_root().join("k8s/.tools"));
    let helm = tools.join("bin/helm");
    if helm.exists() {
        return Some(helm);
    }
    if std::env::var("FJORD_REQUIRE_DOCKER").is_ok_and(|v| v == "1") {
        panic!("helm is missing at {}: run k8s/tools.sh", helm.display());
    }
    eprintln!("SKIPPED: the chart schedule needs helm: run k8s/tools.sh");
    None
}

/// The `fjord.toml` the chart's ConfigMap gives every pod, with each pod's external
/// listener advertised at its client-network address, and `sets` more chart values.
fn chart_config(helm: &std::path::Path, client_prefix: &str, sets: &[&str]) -> String {
    let addresses = (0..3)
        .map(|i| client_ip(client_prefix, i))
        .collect::<Vec<_>>()
        .join(",");
    let out = std::process::Command::new(helm)
        .args(["template", "fjord"])
        .arg(fjord_tests::repo_root().join("k8s/helm/fjord"))
        .args([
            "--show-only",
            "templates/configmap.yaml",
            "--set",
            "replicas=3",
        ])
        .args([
            "--set",
            "externalAccess.enabled=true",
            "--set",
            "externalAccess.type=LoadBalancer",
        ])
        .arg("--set")
        .arg(format!(
            "externalAccess.loadBalancer.addresses={{{addresses}}}"
        ))
        .args(sets.iter().flat_map(|s| ["--set", s]))
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    // The ConfigMap's one key is a block scalar indented by four spaces.
    yaml.lines()
        .skip_while(|l| !l.trim_start().starts_with("fjord.toml: |"))
        .skip(1)
        .map(|l| l.strip_prefix("    ").unwrap_or(l.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The chart's security on: SASL_SSL listeners, mutual TLS between pods, ACLs. The pods
/// get a keystore valid for their DNS names and client addresses, and an admin user, as
/// the chart's Secrets would give them; every client of the run logs in as that admin.
struct ChartSecurity {
    certs: fjord_tests::certs::Certs,
    users: tempfile::TempDir,
}

impl ChartSecurity {
    const SETS: &'static [&'static str] = &[
        "tls.enabled=true",
        "tls.secretName=fjord-tls",
        "sasl.enabled=true",
        "sasl.usersSecret=fjord-users",
        "authorization.enabled=true",
    ];

    fn new() -> ChartSecurity {
        let users = tempfile::tempdir().expect("users dir");
        std::fs::write(users.path().join("users"), "admin:admin-secret\n").expect("users");
        fjord_tests::docker::readable_by_the_image_user(users.path());
        let certs = fjord_tests::certs::Certs::new();
        fjord_tests::docker::readable_by_the_image_user(certs.dir());
        ChartSecurity { certs, users }
    }

    /// The pods' files for a cluster whose clients use `client_prefix`, and the clients'
    /// settings registered for its addresses.
    fn for_cluster(
        &self,
        client_prefix: &str,
        client_port: u16,
    ) -> Vec<(std::path::PathBuf, String)> {
        let ips: Vec<String> = (0..3).map(|i| client_ip(client_prefix, i)).collect();
        let mut sans = vec![
            "DNS:*.fjord-headless.default.svc.cluster.local".to_string(),
            "DNS:fjord.default.svc.cluster.local".to_string(),
        ];
        sans.extend(ips.iter().map(|ip| format!("IP:{ip}")));
        let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
        self.certs.issue("keystore", &sans);
        let bootstrap = ips
            .iter()
            .map(|ip| format!("{ip}:{client_port}"))
            .collect::<Vec<_>>()
            .join(",");
        let ca = self.certs.ca().display().to_string();
        fjord_tests::register_client_security(
            &bootstrap,
            &[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "admin"),
                ("sasl.password", "admin-secret"),
                ("ssl.ca.location", &ca),
            ],
        );
        vec![
            (self.certs.dir().to_path_buf(), "/etc/fjord-tls".into()),
            (self.users.path().to_path_buf(), "/etc/fjord-sasl".into()),
        ]
    }
}

/// The chart's config with security on (SASL_SSL, mutual TLS between pods, ACLs), pods
/// restarted in StatefulSet order under the workload.
#[test]
fn helm_rendered_secure_pods_survive_a_rolling_restart_in_statefulset_order() {
    let _t = turn();
    let Some(helm) = helm() else { return };
    let spec = ClusterSpec {
        nodes: 3,
        ..ClusterSpec::default()
    };
    let security = ChartSecurity::new();
    let Some(mut run) = Run::start_spec(
        "secure chart config, rolling restart",
        &spec,
        Readers::Classic,
        |prefix| {
            Some(ChartConfig {
                toml: chart_config(&helm, prefix, ChartSecurity::SETS),
                aliases: vec![
                    "fjord-{}".into(),
                    "fjord-{}.fjord-headless.default.svc.cluster.local".into(),
                ],
                client_port: 9094,
                mounts: security.for_cluster(prefix, 9094),
            })
        },
    ) else {
        return;
    };
    // Without credentials nothing gets in, and the admin port takes no voter change from
    // another host.
    let anonymous = std::process::Command::new("kcat")
        .args(["-b", &run.cluster.bootstrap(), "-L", "-m", "5"])
        .output()
        .expect("kcat");
    assert!(!anonymous.status.success(), "plaintext clients are refused");
    let (status, _) = post(&run.cluster.node(0).admin(), "/v1/voters/2");
    assert_eq!(status, 403, "voter changes only from the node itself");
    // Highest ordinal first, each pod back and ready before the next, as a StatefulSet
    // rolling update does.
    for id in (0..3).rev() {
        run.fault(format!("SIGTERM pod fjord-{id}"));
        run.cluster.stop(id);
        wait_until(
            "every partition led by a running pod",
            Duration::from_secs(30),
            || {
                (0..PARTITIONS as usize)
                    .all(|p| run.cluster.leader_of(TOPIC, p).is_some_and(|l| l != id))
                    .then_some(())
            },
        );
        run.progress(200);
        run.cluster.restart(id);
        run.heal(format!("pod fjord-{id} ready"));
        run.progress(200);
    }
    run.finish();
}

/// One bodiless HTTP POST; returns the status code and body.
fn post(addr: &str, path: &str) -> (u16, String) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).ok();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn full_disk_on_one_node_loses_and_corrupts_nothing() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let _t = turn();
    let spec = ClusterSpec {
        nodes: 3,
        overrides: OVERRIDES.iter().map(|s| s.to_string()).collect(),
        small_log_disk: Some((2, 64)),
        ..ClusterSpec::default()
    };
    let Some(run) = Run::start_spec("full disk", &spec, Readers::Classic, |_| None) else {
        return;
    };
    let bootstrap = run.cluster.bootstrap();
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        fjord_tests::client_config(&bootstrap)
            .create()
            .expect("admin");
    let filler = NewTopic::new("filler", 1, TopicReplication::Variable(&[&[2]]))
        .set("max.message.bytes", "1048576");
    let created =
        fjord_tests::futures_block_on(admin.create_topics([&filler], &AdminOptions::new()))
            .expect("create filler");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    // Fill node 2's log disk with 512 KiB records until it refuses them.
    run.fault("fill node 2's log disk".into());
    let producer: FutureProducer = fjord_tests::client_config(&bootstrap)
        .set("acks", "1")
        .set("message.max.bytes", "1048576")
        .set("message.timeout.ms", "15000")
        .create()
        .expect("filler producer");
    let chunk = vec![b'x'; 512 * 1024];
    let mut refused = None;
    // 64 MiB cannot take 400 of these: a refusal must come first.
    for n in 0..400 {
        let record = FutureRecord::<(), _>::to("filler").payload(&chunk);
        if let Err((e, _)) =
            fjord_tests::futures_block_on(producer.send(record, Duration::from_secs(30)))
        {
            refused = Some((n, e));
            break;
        }
    }
    let (n, e) = refused.expect("the 64 MiB disk never filled");
    eprintln!("chaos full disk: node 2 refused the filler after {n} records of 512 KiB: {e}");
    run.progress(600);
    assert!(
        run.cluster.status(2).is_some(),
        "node 2 keeps running with a full disk"
    );
    // Free the space: deleting the filler topic deletes its log on node 2.
    let deleted =
        fjord_tests::futures_block_on(admin.delete_topics(&["filler"], &AdminOptions::new()))
            .expect("delete filler");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    run.heal("deleted the filler topic".into());
    wait_until("node 2 back in every ISR", Duration::from_secs(120), || {
        let v = run.cluster.status(0)?;
        let t = v["topics"]
            .as_array()?
            .iter()
            .find(|t| t["name"] == TOPIC)?
            .clone();
        t["partitions"]
            .as_array()?
            .iter()
            .all(|p| p["isr"].as_array().is_some_and(|i| i.len() == 3))
            .then_some(())
    });
    run.progress(200);
    run.finish();
}
