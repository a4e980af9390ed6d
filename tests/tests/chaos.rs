//! The chaos suite: Fjord clusters in containers (the image from `deploy/build-image.sh`)
//! under SIGKILL, SIGTERM, freezes and network partitions, while idempotent acks=all
//! producers write unique values and a consumer group reads and commits (kafka-python's
//! classic protocol, or confluent-kafka with KIP-848 in two schedules). The harness (a
//! run's cluster, workload, faults and verdict) is in `chaos/harness.rs`, the Helm
//! chart's config for its schedule in `chaos/chart.rs`.
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

#[path = "chaos/chart.rs"]
mod chart;
#[path = "chaos/harness.rs"]
mod harness;
#[path = "chaos/scale_runbook.rs"]
mod scale_runbook;

use std::io::Write;
use std::time::{Duration, Instant};

use chart::{chart_config, helm, ChartSecurity};
use fjord_tests::checker::OpKind;
use fjord_tests::docker::{ChartConfig, ClusterSpec};
use fjord_tests::wait_until;
use harness::{rounds, turn, Readers, Run, OVERRIDES, PARTITIONS, TOPIC};
use rand::{Rng, SeedableRng};

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
                toml: chart_config(&helm, prefix, 3, ChartSecurity::SETS),
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
    run.wait_full_isr("node 2 back in every ISR");
    run.progress(200);
    run.finish();
}

/// Issue 31: a slow disk on one node (every write synchronous, throttled at the device).
/// Where that node follows, it falls behind and leaves the ISR while writes go on; where
/// it leads, clients wait longer but lose nothing. Both are measured: how long until it
/// left the ISR, and each partition's longest pause in acknowledged writes.
#[test]
fn slow_disk_on_one_node_slows_but_loses_nothing() {
    let _t = turn();
    const SLOW: i32 = 2;
    let spec = ClusterSpec {
        nodes: 3,
        overrides: OVERRIDES.iter().map(|s| s.to_string()).collect(),
        slow_log_disk: Some(SLOW as usize),
        ..ClusterSpec::default()
    };
    let Some(run) = Run::start_spec("slow disk", &spec, Readers::Classic, |_| None) else {
        return;
    };
    if !run.cluster.has_slow_disk(SLOW) {
        let why = "SKIPPED: a slow disk needs root, a loop device and the blkio cgroup";
        assert!(
            std::env::var("FJORD_REQUIRE_SLOW_DISK").is_err(),
            "FJORD_REQUIRE_SLOW_DISK is set: {why}"
        );
        eprintln!("{why}");
        return;
    }
    let leaders: Vec<i32> = (0..PARTITIONS as usize).map(|p| run.leader(p)).collect();
    eprintln!("chaos slow disk: partition leaders {leaders:?}; node {SLOW}'s disk goes slow");
    let fault_at = run.history.events().last().map_or(0, |e| e.t_ms);
    run.fault(format!(
        "node {SLOW}'s log disk slowed to 16 KiB/s, 2 writes/s"
    ));
    // Well below what the workload writes: at 10 writes/s a follower sometimes kept up,
    // each fetch reaching the leader's end as of the one before (in sync, as in Kafka),
    // and stayed in the ISR past the 60 s this test waits.
    run.cluster.throttle_disk(SLOW, 16 * 1024, 2);
    let started = Instant::now();
    // Where it follows, it leaves the ISR (replica.lag.time.max.ms is 3 s here).
    wait_until(
        &format!("node {SLOW} out of the ISR of the partitions it follows"),
        Duration::from_secs(60),
        || {
            run.partitions()?
                .iter()
                .filter(|p| p["leader"] != SLOW)
                .all(|p| {
                    p["isr"]
                        .as_array()
                        .is_some_and(|i| !i.iter().any(|b| b == SLOW))
                })
                .then_some(())
        },
    );
    let left_isr = started.elapsed();
    // Writes go on meanwhile.
    run.progress(600);
    assert!(
        run.cluster.status(SLOW).is_some(),
        "node {SLOW} keeps answering with a slow disk"
    );
    run.cluster.throttle_disk(SLOW, 0, 0);
    let heal_at = run.history.events().last().map_or(0, |e| e.t_ms);
    run.heal(format!("node {SLOW}'s disk back to full speed"));
    run.wait_full_isr(&format!("node {SLOW} back in every ISR"));
    let caught_up = started.elapsed();
    let events = run.history.events();
    let pauses: Vec<(i32, u64)> = (0..PARTITIONS)
        .map(|p| {
            let mut acks: Vec<u64> = events
                .iter()
                .filter(|e| e.kind == OpKind::Ack && e.partition == p)
                .map(|e| e.t_ms)
                .collect();
            acks.sort_unstable();
            (
                p,
                fjord_tests::checker::longest_gap(&acks, fault_at, heal_at),
            )
        })
        .collect();
    eprintln!(
        "chaos slow disk: node {SLOW} left the ISR of the partitions it follows {:.1} s after the disk slowed, back in every ISR {:.1} s after; longest pause in acknowledged writes per partition (leader): {}",
        left_isr.as_secs_f64(),
        caught_up.as_secs_f64(),
        pauses
            .iter()
            .map(|(p, gap)| format!("p{p} (node {}): {gap} ms", leaders[*p as usize]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    run.finish();
}

/// Issue 33: the compose SASL_SSL example runs from its header as written (certificates,
/// secret, compose up, kcat and fjord with the shipped admin.properties), by
/// tests/chaos/compose-sasl-ssl.sh against the same image.
#[test]
fn compose_sasl_ssl_example_runs_from_its_header() {
    let _t = turn();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if fjord_tests::docker::docker_or_skip(&rt).is_none() {
        return;
    }
    let script = fjord_tests::repo_root().join("tests/chaos/compose-sasl-ssl.sh");
    let bin_dir = fjord_tests::fjord_bin()
        .parent()
        .map(std::path::Path::to_path_buf)
        .expect("the fjord binary's folder");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("FJORD_IMAGE", fjord_tests::docker::image())
        .env("FJORD_BIN_DIR", bin_dir)
        .output()
        .expect("run compose-sasl-ssl.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("lines ran as written"), "{text}");
}
