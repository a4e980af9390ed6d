//! The `fjord` client subcommands and the admin HTTP endpoints, as a user runs them.

use std::process::{Command, Output, Stdio};

use std::time::Duration;

use fjord_tests::{fjord_bin, http_get, run_cli as fjord, wait_until, Node};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn topic_produce_and_consume_commands() {
    let node = Node::start();
    let ok = |o: Output| {
        assert!(
            o.status.success(),
            "stdout: {}\nstderr: {}",
            stdout(&o),
            stderr(&o)
        );
        o
    };
    ok(fjord(
        &node,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "2",
            "--config",
            "retention.ms=5000",
        ],
        None,
    ));
    let again = fjord(&node, &["topic", "create", "orders"], None);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("error:") && stderr(&again).contains("orders"),
        "{}",
        stderr(&again)
    );
    let list = ok(fjord(&node, &["topic", "list"], None));
    assert!(stdout(&list).lines().any(|l| l == "orders"));
    let describe = ok(fjord(&node, &["topic", "describe", "orders"], None));
    assert!(
        stdout(&describe).contains("PartitionCount: 2"),
        "{}",
        stdout(&describe)
    );
    assert!(stdout(&describe).contains("retention.ms=5000"));

    ok(fjord(
        &node,
        &["produce", "--topic", "orders", "--partition", "1"],
        Some("a\nb\nc\n"),
    ));
    let one = ok(fjord(
        &node,
        &[
            "consume",
            "--topic",
            "orders",
            "--partition",
            "1",
            "--offset",
            "1",
            "--max-messages",
            "2",
            "--print-offset",
        ],
        None,
    ));
    assert_eq!(stdout(&one), "1:1\tb\n1:2\tc\n");

    ok(fjord(
        &node,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "segment.ms=60000",
            "--delete",
            "retention.ms",
        ],
        None,
    ));
    let describe = ok(fjord(&node, &["topic", "describe", "orders"], None));
    assert!(
        stdout(&describe).contains("segment.ms=60000")
            && !stdout(&describe).contains("retention.ms")
    );
    let bad = fjord(
        &node,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "retention.ms=never",
        ],
        None,
    );
    assert_eq!(
        bad.status.code(),
        Some(1),
        "invalid config value is refused: {}",
        stderr(&bad)
    );

    ok(fjord(&node, &["topic", "delete", "orders"], None));
    let list = ok(fjord(&node, &["topic", "list"], None));
    assert!(!stdout(&list).lines().any(|l| l == "orders"));

    let usage = fjord(&node, &["consume", "--topic", "x", "--offset", "3"], None);
    assert_eq!(usage.status.code(), Some(2), "usage errors exit with 2");
    assert!(stderr(&usage).contains("--offset needs --partition"));
    let version = ok(fjord(&node, &["--version"], None));
    assert!(stdout(&version).starts_with("fjord "));
}

#[test]
fn admin_endpoints_report_health_metrics_and_cluster() {
    let node = Node::start();
    let addr = node.admin_addr();
    assert_eq!(http_get(&addr, "/healthz").expect("healthz").0, 200);
    let (status, body) = http_get(&addr, "/readyz").expect("readyz");
    assert_eq!(status, 200, "{body}");
    let _ = fjord(&node, &["topic", "create", "metered"], None);
    let (status, body) = http_get(&addr, "/v1/cluster").expect("cluster");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["node_id"], 1);
    assert_eq!(v["active_controller"], 1);
    assert!(v["cluster_id"].as_str().is_some_and(|c| c.len() == 22));
    assert!(v["topics"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t["name"] == "metered")));
    let (status, metrics) = http_get(&addr, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("fjord_requests_total{api=\"CreateTopics\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fjord_request_duration_seconds"),
        "{metrics}"
    );
}

/// The last line of `fjord bench … --json`, parsed.
fn bench(node: &Node, args: &[&str]) -> serde_json::Value {
    bench_with_progress(node, args).0
}

/// [`bench`], and the progress lines it wrote to standard error.
fn bench_with_progress(node: &Node, args: &[&str]) -> (serde_json::Value, String) {
    let mut full = vec!["bench"];
    full.extend_from_slice(args);
    full.push("--json");
    let o = fjord(node, &full, None);
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    let out = stdout(&o);
    let last = out.lines().last().expect("a JSON line");
    let json = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    (json, stderr(&o))
}

#[test]
fn bench_measures_produce_consume_and_end_to_end() {
    let node = Node::start();
    let common = [
        "--topic",
        "perf",
        "--partitions",
        "3",
        "--record-size",
        "100",
    ];
    let p = bench(
        &node,
        &[
            &["produce"][..],
            &common,
            &["--num-records", "20000", "--acks", "1"],
        ]
        .concat(),
    );
    assert_eq!(p["records"], 20000, "{p}");
    assert_eq!(p["bytes"], 2_000_000, "{p}");
    assert_eq!(p["errors"], 0, "{p}");
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k}: {v}"));
    assert!(f(&p, "records_per_sec") > 0.0 && f(&p, "mb_per_sec") > 0.0);
    let lat = &p["latency_ms"];
    assert!(
        f(lat, "p50") <= f(lat, "p99") && f(lat, "p99") <= f(lat, "max"),
        "{p}"
    );
    assert_eq!(lat["count"], 20000);

    // By default consume reads everything the topic holds.
    let c = bench(&node, &[&["consume"][..], &common].concat());
    assert_eq!(c["records"], 20000, "{c}");
    assert_eq!(c["bytes"], 2_000_000, "{c}");

    // End to end: the consumers see exactly this run's records, with their latency.
    let (e, progress) = bench_with_progress(
        &node,
        &[
            &["e2e"][..],
            &common,
            &[
                "--reporting-interval",
                "200",
                "--num-records",
                "5000",
                "--throughput",
                "5000",
                "--producers",
                "2",
                "--consumers",
                "2",
                "--keys",
                "10",
            ],
        ]
        .concat(),
    );
    assert_eq!(e["records"], 5000, "{e}");
    assert_eq!(e["e2e_latency_ms"]["count"], 5000, "{e}");
    assert_eq!(e["produce"]["records"], 5000, "{e}");
    assert!(f(&e["e2e_latency_ms"], "p99") > 0.0, "{e}");
    // Issue 33: progress lines say how far the run is and how long is left.
    assert!(
        progress
            .lines()
            .any(|l| l.starts_with("e2e") && l.contains("%, about")),
        "{progress}"
    );

    let bad = fjord(
        &node,
        &["bench", "e2e", "--topic", "perf", "--record-size", "4"],
        None,
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// The value of the sample `name{labels}` (exactly as rendered) in a scrape.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn metrics_move_under_load() {
    // A fast housekeeping tick, so that abandoned gauges expire within seconds (30 ticks).
    let node = Node::start_with(&["--override", "log.flush.scheduler.interval.ms=100"]);
    let addr = node.admin_addr();
    let scrape = || http_get(&addr, "/metrics").expect("metrics").1;
    let common = [
        "--topic",
        "load",
        "--partitions",
        "2",
        "--record-size",
        "100",
    ];
    bench(
        &node,
        &[
            &["produce"][..],
            &common,
            &["--num-records", "10000", "--acks", "all"],
        ]
        .concat(),
    );
    bench(&node, &[&["consume"][..], &common].concat());
    // A group committed at offset 0 of partition 0: its lag is the partition's length.
    let reset = fjord(
        &node,
        &[
            "group",
            "reset-offsets",
            "lagging",
            "--topic",
            "load",
            "--partitions",
            "0",
        ]
        .iter()
        .chain(&["--to-earliest", "--execute"])
        .copied()
        .collect::<Vec<_>>(),
        None,
    );
    assert!(reset.status.success(), "{}", stderr(&reset));

    let m = scrape();
    let counter = |series: &str| sample(&m, series).unwrap_or_else(|| panic!("{series}:\n{m}"));
    assert_eq!(
        counter("fjord_produced_records_total{topic=\"load\"}"),
        10000.0
    );
    assert!(counter("fjord_produced_bytes_total{topic=\"load\"}") > 1_000_000.0);
    assert!(counter("fjord_fetched_bytes_total{topic=\"load\"}") > 1_000_000.0);
    assert!(counter("fjord_requests_total{api=\"Produce\"}") > 0.0);
    assert!(m.contains("fjord_request_duration_seconds_bucket{api=\"Fetch\""));
    // Gauges are sampled on the housekeeping tick.
    let gauges = wait_until("gauges sampled", Duration::from_secs(30), || {
        let m = scrape();
        let lag = sample(
            &m,
            "fjord_consumer_group_lag{group=\"lagging\",topic=\"load\",partition=\"0\"}",
        )?;
        let end = sample(
            &m,
            "fjord_partition_log_end_offset{topic=\"load\",partition=\"0\"}",
        )?;
        (lag > 0.0 && end > 0.0).then_some(m)
    });
    let gauge =
        |series: &str| sample(&gauges, series).unwrap_or_else(|| panic!("{series}:\n{gauges}"));
    assert_eq!(
        gauge("fjord_consumer_group_lag{group=\"lagging\",topic=\"load\",partition=\"0\"}"),
        gauge("fjord_partition_high_watermark{topic=\"load\",partition=\"0\"}"),
    );
    assert_eq!(
        gauge("fjord_partition_log_end_offset{topic=\"load\",partition=\"0\"}")
            + gauge("fjord_partition_log_end_offset{topic=\"load\",partition=\"1\"}"),
        10000.0
    );
    assert_eq!(
        gauge("fjord_partition_isr_size{topic=\"load\",partition=\"0\"}"),
        1.0
    );
    assert_eq!(gauge("fjord_offline_partitions"), 0.0);
    assert_eq!(gauge("fjord_brokers_fenced"), 0.0);
    assert!(gauge("fjord_raft_term") >= 1.0);
    assert_eq!(gauge("fjord_raft_leader"), 1.0);
    assert!(gauge("fjord_raft_commit_index") >= 1.0);
    assert!(gauge("process_resident_memory_bytes") > 1_000_000.0);
    assert!(gauge("process_open_fds") > 3.0);
    assert!(gauge("fjord_connections_open") >= 0.0);

    // Every metric the Grafana dashboard charts exists (event counters appear with their
    // first event, which this run need not have had).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/fjord-dashboard.json"
    );
    let dashboard = std::fs::read_to_string(path).expect("dashboard");
    let names: std::collections::BTreeSet<String> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("fjord_") || w.starts_with("process_"))
        .map(|w| w.trim_end_matches("_bucket").to_string())
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        if ["fjord_errors_total", "fjord_rejected_requests_total"].contains(&name.as_str()) {
            continue;
        }
        assert!(
            gauges.lines().any(|l| l.starts_with(&name)),
            "the dashboard charts {name}, which /metrics does not have"
        );
    }

    // A deleted topic's partition gauges (and the lag against it) go away once they are
    // no longer sampled; the node's own gauges stay.
    assert!(fjord(&node, &["topic", "delete", "load"], None)
        .status
        .success());
    let after = wait_until(
        "deleted topic's gauges gone",
        Duration::from_secs(60),
        || {
            let m = scrape();
            (!m.lines()
                .any(|l| l.contains("topic=\"load\"") && is_gauge(l)))
            .then_some(m)
        },
    );
    assert!(
        sample(&after, "fjord_connections_open").is_some(),
        "{after}"
    );
    assert!(sample(&after, "fjord_raft_term").is_some(), "{after}");
}

/// Partition and lag gauges, as opposed to the per-topic counters, which stay.
fn is_gauge(line: &str) -> bool {
    line.starts_with("fjord_partition_") || line.starts_with("fjord_consumer_group_lag")
}

#[test]
fn the_cli_reports_what_the_broker_refused() {
    let node = Node::start();
    // Describing a missing topic says so, as kafka-topics.sh does, and creates nothing.
    let o = fjord(&node, &["topic", "describe", "ghost"], None);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("topic 'ghost' does not exist"),
        "{}",
        stderr(&o)
    );
    let listed = fjord(&node, &["topic", "list"], None);
    assert!(
        !stdout(&listed).lines().any(|l| l == "ghost"),
        "describe created the topic: {}",
        stdout(&listed)
    );
    // The broker's own reason reaches the user.
    let o = fjord(
        &node,
        &["topic", "create", "wide", "--replication-factor", "3"],
        None,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("replication factor 3 is larger than the 1 available brokers"),
        "{}",
        stderr(&o)
    );
    // Records the cluster refused are reported one by one, and the exit code says so.
    let o = fjord(
        &node,
        &["topic", "create", "three", "--partitions", "3"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fjord(
        &node,
        &["produce", "--topic", "three", "--partition", "7"],
        Some("x\n"),
    );
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("record 1 (partition 7)")
            && stderr(&o).contains("1 of 1 records were not written to three"),
        "{}",
        stderr(&o)
    );
    let o = fjord(
        &node,
        &[
            "topic",
            "create",
            "tiny",
            "--config",
            "max.message.bytes=200",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let big = format!("{}\n", "x".repeat(1_000));
    let o = fjord(&node, &["produce", "--topic", "tiny"], Some(&big));
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("record 1") && err.contains("MessageSizeTooLarge"),
        "{err}"
    );
    assert!(err.contains("1 of 1 records were not written"), "{err}");
}

#[test]
fn the_console_consumer_reads_as_a_group_and_commits_what_it_printed() {
    let node = Node::start_with(&["--override", "group.initial.rebalance.delay.ms=0"]);
    let o = fjord(
        &node,
        &["produce", "--topic", "grouped"],
        Some("a\nb\nc\nd\ne\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |args: &[&str]| {
        let mut full = vec!["consume", "--topic", "grouped"];
        full.extend_from_slice(args);
        let o = fjord(&node, &full, None);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(
        read(&[
            "--group",
            "readers",
            "--from-beginning",
            "--max-messages",
            "3"
        ]),
        ["a", "b", "c"]
    );
    // The group's committed offset is what was printed: lag 2.
    let o = fjord(&node, &["group", "describe", "readers"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let row = stdout(&o)
        .lines()
        .find(|l| l.starts_with("grouped"))
        .map(|l| l.split_whitespace().take(5).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    assert_eq!(row, "grouped 0 3 5 2", "{}", stdout(&o));
    // A second run resumes where the group left off, without --from-beginning.
    assert_eq!(
        read(&["--group", "readers", "--max-messages", "2"]),
        ["d", "e"]
    );
    // group.id given as a client property (as kafka-console-consumer.sh takes it) works
    // the same way.
    assert_eq!(
        read(&[
            "--property",
            "group.id=by-property",
            "--from-beginning",
            "--max-messages",
            "5"
        ]),
        ["a", "b", "c", "d", "e"]
    );
    let o = fjord(&node, &["group", "list"], None);
    assert!(stdout(&o).contains("by-property"), "{}", stdout(&o));
    // A group assigns partitions itself.
    let o = fjord(
        &node,
        &[
            "consume",
            "--topic",
            "grouped",
            "--group",
            "g",
            "--partition",
            "0",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn every_metric_has_help_and_logs_have_no_colour_codes() {
    let node = Node::start();
    let o = fjord(&node, &["produce", "--topic", "helped"], Some("a\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = fjord(
        &node,
        &[
            "consume",
            "--topic",
            "helped",
            "--from-beginning",
            "--max-messages",
            "1",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let with = |metrics: &str, prefix: &str| -> std::collections::BTreeSet<String> {
        metrics
            .lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    };
    // A series appears once first recorded, and the periodic samplers (Raft, storage,
    // memory) record theirs a moment after start: poll until they have.
    let metrics = wait_until("the periodic metrics", Duration::from_secs(30), || {
        let (status, metrics) = http_get(&node.admin_addr(), "/metrics").expect("metrics");
        assert_eq!(status, 200);
        (with(&metrics, "# TYPE ").len() > 20).then_some(metrics)
    });
    let typed = with(&metrics, "# TYPE ");
    let helped = with(&metrics, "# HELP ");
    let missing: Vec<_> = typed.difference(&helped).collect();
    assert!(missing.is_empty(), "metrics without HELP: {missing:?}");
    // The node's log goes to a file here: plain text, no ANSI colour codes.
    let log = node.log();
    assert!(log.contains("Kafka listener ready"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a log file");
}

/// Issue 33: a wrong address used to mean a 30 s wait and then "Broker transport failure",
/// with no address and no cause. Each command now reports within about 5 s, naming the
/// address and what went wrong, and exits 1: librdkafka-based commands (`topic list`)
/// and the ones that speak the protocol themselves (`group list`, `acl list`) alike.
#[test]
fn connection_failures_are_reported_fast_with_the_address_and_the_cause() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };
    // Accepted by the kernel's backlog, never answered.
    let silent_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = silent_listener.local_addr().expect("addr").to_string();
    let run = |args: &[&str], bootstrap: &str| {
        let started = std::time::Instant::now();
        let out = Command::new(fjord_bin())
            .args(args)
            .args(["--bootstrap-server", bootstrap])
            .env_remove("FJORD_BOOTSTRAP_SERVER")
            .stdin(Stdio::null())
            .output()
            .expect("run fjord");
        (out, started.elapsed())
    };
    for args in [
        &["topic", "list"][..],
        &["group", "list"][..],
        &["acl", "list"][..],
    ] {
        // A cause that persists (refused) is reported after a second of it; silence
        // after the 5 s of patience.
        for (bootstrap, cause, within) in [
            (
                closed.as_str(),
                "Connection refused",
                Duration::from_secs(3),
            ),
            (
                silent.as_str(),
                "no answer within 5000 ms",
                Duration::from_secs(7),
            ),
        ] {
            let (out, took) = run(args, bootstrap);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?} {bootstrap}: {err}");
            assert!(
                took < within,
                "{args:?} {bootstrap}: reported after {took:?}"
            );
            assert!(
                err.contains(bootstrap) && err.contains(cause),
                "{args:?} {bootstrap}: the error names the address and '{cause}': {err}"
            );
        }
    }
    drop(silent_listener);
}

/// Issue 33: idempotent scripts written for kafka-topics.sh use `--if-not-exists` and
/// `--if-exists`, and older console-tool habits `--broker-list`; all three failed before.
#[test]
fn topic_commands_take_kafkas_idempotence_flags_and_broker_list() {
    let node = Node::start();
    let code = |args: &[&str]| {
        let out = fjord(&node, args, None);
        (out.status.code(), stdout(&out), stderr(&out))
    };
    let create = ["topic", "create", "again", "--partitions", "1"];
    assert_eq!(code(&create).0, Some(0));
    let (status, _, err) = code(&create);
    assert_eq!(status, Some(1), "a second create still fails: {err}");
    let (status, out, err) = code(&[&create[..], &["--if-not-exists"]].concat());
    assert_eq!(
        (status, out.as_str()),
        (Some(0), ""),
        "--if-not-exists: {err}"
    );

    let listed = Command::new(fjord_bin())
        .args(["topic", "list", "--broker-list", &node.bootstrap()])
        .env_remove("FJORD_BOOTSTRAP_SERVER")
        .output()
        .expect("run fjord");
    assert!(
        listed.status.success() && stdout(&listed).lines().any(|l| l == "again"),
        "--broker-list: {}",
        stderr(&listed)
    );

    let delete = ["topic", "delete", "again"];
    assert_eq!(code(&delete).0, Some(0));
    let (status, _, err) = code(&delete);
    assert_eq!(
        status,
        Some(1),
        "deleting a missing topic still fails: {err}"
    );
    let (status, out, err) = code(&[&delete[..], &["--if-exists"]].concat());
    assert_eq!((status, out.as_str()), (Some(0), ""), "--if-exists: {err}");
}
