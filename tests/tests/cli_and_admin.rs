//! The `fjord` client subcommands and the admin HTTP endpoints, as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use std::time::Duration;

use fjord_tests::{fjord_bin, http_get, wait_until, Node};

fn fjord(node: &Node, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(fjord_bin())
        .args(args)
        .env("FJORD_BOOTSTRAP_SERVER", node.bootstrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fjord");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("fjord output")
}

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
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
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
    let e = bench(
        &node,
        &[
            &["e2e"][..],
            &common,
            &[
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
