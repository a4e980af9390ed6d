//! Transactions with confluent-kafka (tests/python/transactions.py): read_committed
//! visibility, zombie fencing, and an exactly-once consume-transform-produce copy on a
//! three-node cluster while a data-partition leader and the transaction coordinator are
//! killed.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use fjord_tests::wire::Wire;
use fjord_tests::{create_topic_rf, fjord_bin, python, wait_until, Cluster, Node, FAST_FAILOVER};
use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/transactions.py");

fn script(bootstrap: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(python());
    cmd.arg(SCRIPT).arg("--bootstrap-server").arg(bootstrap);
    cmd.args(args);
    cmd
}

fn run_ok(bootstrap: &str, args: &[&str], log: impl Fn() -> String) -> String {
    let out: Output = script(bootstrap, args).output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "transactions.py {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    stdout
}

#[test]
fn read_committed_sees_commits_and_never_aborts() {
    let node = Node::start();
    let out = run_ok(&node.bootstrap(), &["visibility"], || node.log());
    assert!(
        out.contains("visibility ok: 11 committed, 10 aborted"),
        "{out}"
    );
    // The coordinator's view, through the CLI (ListTransactions, DescribeTransactions).
    let cli = |args: &[&str]| {
        let out = Command::new(fjord_bin())
            .args(args)
            .args(["--bootstrap-server", &node.bootstrap()])
            .output()
            .expect("run fjord");
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cli(&["txn", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("vis-app ") && l.contains("CompleteCommit")),
        "{listed}"
    );
    let described = cli(&["txn", "describe", "vis-app"]);
    assert!(
        described.contains("state:            CompleteCommit"),
        "{described}"
    );
    assert!(cli(&["txn", "list", "--state", "Ongoing"]).lines().count() == 1);
}

/// Issue 31: the cleaner removes an aborted transaction's records from a compacted topic,
/// and read_committed readers see the same committed records before and after.
#[test]
fn the_cleaner_removes_aborted_transactions_from_a_compacted_topic() {
    let node = Node::start_with(&["--override", "log.cleaner.backoff.ms=200"]);
    let out = run_ok(&node.bootstrap(), &["compacted-aborts"], || node.log());
    assert!(out.contains("compacted aborts ok"), "{out}");
    // The abort marker was removed too, while the script was still reading.
    let log = node.log();
    assert!(
        log.contains("abort_markers_removed=1"),
        "the cleaner removed the abort marker:\n{log}"
    );
    // After a restart (transaction state from a snapshot that may predate the marker's
    // removal) read_committed still sees both committed transactions.
    let mut node = node;
    node.stop();
    node.restart();
    let read = Command::new("kcat")
        .args([
            "-b",
            &node.bootstrap(),
            "-C",
            "-t",
            "compacted-txn",
            "-o",
            "beginning",
        ])
        .args([
            "-e",
            "-q",
            "-f",
            "%s\n",
            "-X",
            "isolation.level=read_committed",
        ])
        .output()
        .expect("kcat");
    let text = String::from_utf8_lossy(&read.stdout);
    for fate in ["commit-a", "commit-b"] {
        assert_eq!(
            text.lines().filter(|l| *l == fate).count(),
            10,
            "{fate} after a restart"
        );
    }
    assert!(!text.lines().any(|l| l == "abort"));
}

#[test]
fn a_new_producer_fences_the_old_one() {
    let node = Node::start();
    let out = run_ok(&node.bootstrap(), &["fencing"], || node.log());
    assert!(out.contains("fencing ok"), "{out}");
}

/// librdkafka's committed() right after commit_transaction() finds the transaction's
/// offsets stable: EndTxn answers once the markers are written.
#[test]
fn offsets_of_a_committed_transaction_are_stable_at_once() {
    // Three brokers, so the markers travel to other brokers' partitions.
    let mut c = Cluster::start(3, 0, &[]);
    let bootstrap = c.bootstrap();
    let out = run_ok(&bootstrap, &["committed"], String::new);
    assert!(out.contains("committed ok"), "{out}");
}

/// The broker that coordinates `txn_id` now, as FindCoordinator reports it.
fn coordinator_of(node: &Node, txn_id: &str) -> i32 {
    let mut w = Wire::connect(&node.bootstrap());
    let r = w.call(
        3,
        &FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(txn_id.to_string()))
            .with_key_type(1),
    );
    if r.error_code == 0 {
        r.node_id.0
    } else {
        -1
    }
}

fn leader_of(node: &Node, topic: &str, partition: usize) -> i32 {
    let mut w = Wire::connect(&node.bootstrap());
    let md = w.call(
        4,
        &MetadataRequest::default().with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(fjord_tests::topic_name(topic))),
        ])),
    );
    md.topics
        .first()
        .and_then(|t| t.partitions.get(partition))
        .map_or(-1, |p| p.leader_id.0)
}

fn progress(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The copy process, started again whenever it stops on a fatal client error (as an
/// application would be), until it exits having copied everything.
struct Copier {
    bootstrap: String,
    progress: std::path::PathBuf,
    child: Child,
    restarts: u32,
}

impl Copier {
    fn start(bootstrap: String, progress: std::path::PathBuf) -> Copier {
        let child = Self::spawn(&bootstrap, &progress);
        Copier {
            bootstrap,
            progress,
            child,
            restarts: 0,
        }
    }

    fn spawn(bootstrap: &str, progress: &Path) -> Child {
        let p = progress.to_string_lossy().into_owned();
        script(bootstrap, &["copy", "src", "dst", "--progress-file", &p])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn copy")
    }

    /// True once the copy has finished; restarts it after a fatal error.
    fn finished(&mut self) -> bool {
        match self.child.try_wait().expect("wait copy") {
            None => false,
            Some(status) if status.success() => true,
            Some(_) => {
                self.restarts += 1;
                assert!(self.restarts < 20, "the copy keeps failing");
                self.child = Self::spawn(&self.bootstrap, &self.progress);
                false
            }
        }
    }

    fn wait_progress(&mut self, at_least: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while progress(&self.progress) < at_least {
            assert!(!self.finished() || progress(&self.progress) >= at_least);
            assert!(
                Instant::now() < deadline,
                "copy stalled at {}",
                progress(&self.progress)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn copying_in_transactions_under_leader_and_coordinator_kills_is_exactly_once() {
    const RECORDS: u64 = 100_000;
    let mut c = Cluster::start(3, 0, FAST_FAILOVER);
    let bootstrap = c.bootstrap();
    for t in ["src", "dst"] {
        create_topic_rf(&bootstrap, t, 3, 3, &[("min.insync.replicas", "2")]);
    }
    run_ok(
        &bootstrap,
        &["fill", "src", &RECORDS.to_string()],
        String::new,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let progress_file = dir.path().join("progress");
    let mut copier = Copier::start(bootstrap.clone(), progress_file);

    // A leader of the output topic dies mid-transaction and comes back.
    copier.wait_progress(RECORDS / 5, Duration::from_secs(180));
    let victim = leader_of(c.node(1), "dst", 0);
    assert!(victim > 0, "dst-0 has a leader");
    c.node(victim).kill9();
    let observer = if victim == 1 { 2 } else { 1 };
    wait_until("dst-0 has a new leader", Duration::from_secs(30), || {
        let l = leader_of(c.node(observer), "dst", 0);
        (l > 0 && l != victim).then_some(())
    });
    c.node(victim).restart();

    // Then the transaction coordinator dies and comes back.
    copier.wait_progress(RECORDS / 2, Duration::from_secs(180));
    let observer = if victim == 1 { 2 } else { 1 };
    let coordinator = wait_until("a coordinator", Duration::from_secs(30), || {
        let id = coordinator_of(c.node(observer), "copy-app");
        (id > 0).then_some(id)
    });
    c.node(coordinator).kill9();
    let observer = (1..=3).find(|id| *id != coordinator).unwrap_or(1);
    wait_until("a new coordinator", Duration::from_secs(30), || {
        let id = coordinator_of(c.node(observer), "copy-app");
        (id > 0 && id != coordinator).then_some(())
    });
    c.node(coordinator).restart();

    let deadline = Instant::now() + Duration::from_secs(300);
    while !copier.finished() {
        assert!(
            Instant::now() < deadline,
            "copy did not finish: {}",
            progress(&copier.progress)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = run_ok(&bootstrap, &["verify", "src", "dst"], String::new);
    println!("{out}restarts of the copy process: {}", copier.restarts);
    assert!(
        out.contains(&format!("exactly once: {RECORDS} records")),
        "{out}"
    );
}
