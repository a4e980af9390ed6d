//! Stopping a whole cluster, as `docker compose stop`, a Helm uninstall or a node
//! drain do it: SIGTERM to every node at once, or one after another in any order. Every
//! node must exit within 10 s (orchestrators SIGKILL after their grace period, which
//! loses the clean-shutdown markers), and the restarted cluster must not wait on the
//! registrations of processes that are gone.
//!
//! The container form of this, 50 compose stop/start cycles, is
//! `tests/chaos/stop-cycles.sh`.

use std::time::{Duration, Instant};

use fjord_tests::{create_topic_rf, wait_until, Cluster};
use rand::seq::SliceRandom;
use rand::SeedableRng;

const EXIT_BOUND: Duration = Duration::from_secs(10);
/// A restarted node is ready this soon once a quorum is back (debug build, two cores).
const READY_BOUND: Duration = Duration::from_secs(20);

/// Some state worth stopping cleanly: a replicated topic with records and a group.
fn load(cluster: &mut Cluster) {
    let bootstrap = cluster.bootstrap();
    create_topic_rf(&bootstrap, "stop-test", 3, 3, &[]);
    let out = std::process::Command::new(fjord_tests::fjord_bin())
        .args([
            "produce",
            "--topic",
            "stop-test",
            "--bootstrap-server",
            &bootstrap,
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            if let Some(mut stdin) = c.stdin.take() {
                for i in 0..200 {
                    writeln!(stdin, "record-{i}")?;
                }
            }
            c.wait()
        })
        .expect("fjord produce");
    assert!(out.success());
}

/// Starts every node again at once and checks each is ready within the bound, with no
/// registration refused as a duplicate of a process that is gone.
fn restart_all(cluster: &mut Cluster, round: usize) {
    let logs_before: Vec<usize> = cluster.nodes.iter().map(|n| n.log().len()).collect();
    for n in &mut cluster.nodes {
        n.spawn_again();
    }
    let started = Instant::now();
    for n in &mut cluster.nodes {
        n.wait_ready(Duration::from_secs(90));
    }
    let took = started.elapsed();
    for (n, before) in cluster.nodes.iter().zip(logs_before) {
        let log = n.log();
        let fresh = &log[before.min(log.len())..];
        assert!(
            !fresh.contains("registered by another live process"),
            "round {round}: node {} waited on a registration of a process that is gone",
            n.node_id
        );
    }
    assert!(
        took < READY_BOUND,
        "round {round}: the restarted cluster took {took:?} to be ready"
    );
}

fn stop_all_at_once(cluster: &mut Cluster, round: usize) {
    for n in &mut cluster.nodes {
        n.signal_term();
    }
    for n in &mut cluster.nodes {
        let id = n.node_id;
        let took = n.wait_exit(EXIT_BOUND + Duration::from_secs(20));
        assert!(
            took.is_some_and(|t| t <= EXIT_BOUND),
            "round {round}: node {id} took {took:?} to exit after SIGTERM to every node (bound {EXIT_BOUND:?})\n{}",
            n.log().lines().rev().take(40).collect::<Vec<_>>().join("\n")
        );
    }
}

fn stop_one_by_one(cluster: &mut Cluster, order: &[usize], round: usize) {
    for &i in order {
        let n = &mut cluster.nodes[i];
        let id = n.node_id;
        n.signal_term();
        let took = n.wait_exit(EXIT_BOUND + Duration::from_secs(20));
        assert!(
            took.is_some_and(|t| t <= EXIT_BOUND),
            "round {round}: node {id} took {took:?} to exit (stopping in order {order:?})\n{}",
            n.log()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn a_whole_cluster_stops_in_any_order_and_restarts_without_waiting() {
    let mut cluster = Cluster::start(3, 0, &[]);
    load(&mut cluster);
    let seed = std::env::var("FJORD_STOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for round in 0..4 {
        if round % 2 == 0 {
            stop_all_at_once(&mut cluster, round);
        } else {
            let mut order: Vec<usize> = (0..cluster.nodes.len()).collect();
            order.shuffle(&mut rng);
            stop_one_by_one(&mut cluster, &order, round);
        }
        restart_all(&mut cluster, round);
        // The data survived every stop.
        let bootstrap = cluster.bootstrap();
        wait_until("the records read back", Duration::from_secs(60), || {
            let out = std::process::Command::new(fjord_tests::fjord_bin())
                .args([
                    "consume",
                    "--topic",
                    "stop-test",
                    "--from-beginning",
                    "--max-messages",
                    "200",
                    "--idle-timeout-ms",
                    "5000",
                    "--bootstrap-server",
                    &bootstrap,
                ])
                .output()
                .ok()?;
            (String::from_utf8_lossy(&out.stdout).lines().count() == 200).then_some(())
        });
        for n in &cluster.nodes {
            assert!(
                !n.log().contains("closing log failed"),
                "round {round}: node {} left a log without its clean-shutdown marker",
                n.node_id
            );
        }
    }
}
