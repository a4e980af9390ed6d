//! Kafka's operator tools for log dirs and transactions as `fjord` runs them:
//! kafka-log-dirs.sh (`fjord cluster log-dirs`) and kafka-transactions.sh's
//! find-hanging and abort (`fjord txn find-hanging|abort`), against a real node.

use std::time::Duration;

use super::{ok_stdout, stderr, stdout};
use fjord_tests::certs::Certs;
use fjord_tests::secure::{self, fjord_ok, sasl_props, users_file, AUTHORIZER};
use fjord_tests::wire::Wire;
use fjord_tests::{client_config, create_topic, run_cli as fjord, wait_until, Node};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, ListOffsetsRequest, ProducerId, TopicName,
    WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Runs a command that must fail, and returns its error output.
fn err_stderr(node: &Node, args: &[&str]) -> String {
    let out = fjord(node, args, None);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        stdout(&out)
    );
    stderr(&out)
}

/// A transactional producer, initialised, with a timeout far beyond the test so the
/// coordinator never aborts its transaction on its own.
fn txn_producer(node: &Node, txn_id: &str) -> BaseProducer {
    let producer: BaseProducer = client_config(&node.bootstrap())
        .set("transactional.id", txn_id)
        .set("transaction.timeout.ms", "600000")
        .set("linger.ms", "0")
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(Duration::from_secs(15))
        .expect("init_transactions");
    producer
}

/// Sends one record in the producer's open transaction and waits for its acknowledgement.
fn send_one(producer: &BaseProducer, topic: &str, value: &str) {
    producer
        .send(BaseRecord::<(), _>::to(topic).partition(0).payload(value))
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(15)).expect("flush");
}

/// The latest offset of `topic`-0 under an isolation level (1: read_committed, which
/// answers the last stable offset; 0: the high watermark).
fn latest(node: &Node, topic: &str, isolation: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    let resp = Wire::connect(&node.bootstrap()).call(7, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets {topic}-0");
    p.offset
}

/// Rows of find-hanging's table: (topic, partition, producer id, start offset).
fn hanging_rows(out: &str) -> Vec<(String, i32, i64, i64)> {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    assert!(
        header.split_whitespace().collect::<Vec<_>>()
            == [
                "Topic",
                "Partition",
                "ProducerId",
                "ProducerEpoch",
                "CoordinatorEpoch",
                "StartOffset",
                "LastTimestamp",
                "Duration(min)"
            ],
        "Kafka's columns: {out}"
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 8, "a row of eight columns: {l}");
            let n = |i: usize| f[i].parse::<i64>().unwrap_or_else(|_| panic!("{l}"));
            (f[0].to_string(), n(1) as i32, n(2), n(5))
        })
        .collect()
}

/// Issue 33: kafka-log-dirs.sh --describe, as text and in Kafka's JSON shape.
#[test]
fn log_dirs_show_each_partition_with_its_size() {
    let node = Node::start();
    for topic in ["sized", "other"] {
        ok_stdout(&node, &["topic", "create", topic, "--partitions", "2"]);
        let records: String = (0..20).map(|i| format!("record-{i}\n")).collect();
        for partition in ["0", "1"] {
            let out = fjord(
                &node,
                &["produce", "--topic", topic, "--partition", partition],
                Some(&records),
            );
            assert!(out.status.success(), "produce: {}", stderr(&out));
        }
    }

    let text = ok_stdout(&node, &["cluster", "log-dirs", "--topic-list", "sized"]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Broker 1") && l.contains("data")),
        "{text}"
    );
    for partition in ["sized-0", "sized-1"] {
        let row: Vec<&str> = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{partition} ")))
            .unwrap_or_else(|| panic!("no row for {partition}: {text}"))
            .split_whitespace()
            .collect();
        let size: i64 = row[1].parse().expect("size");
        assert!(size > 0, "{partition} holds 20 records: {text}");
        assert_eq!(&row[2..], ["0", "false"], "offset lag, is-future: {text}");
    }
    assert!(!text.contains("other-"), "only the listed topics: {text}");

    let json = ok_stdout(&node, &["cluster", "log-dirs", "--brokers", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(v["version"], 1, "{json}");
    let brokers = v["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1, "{json}");
    assert_eq!(brokers[0]["broker"], 1, "{json}");
    let dirs = brokers[0]["logDirs"].as_array().expect("logDirs");
    assert_eq!(dirs.len(), 1, "one data directory: {json}");
    assert!(dirs[0]["error"].is_null(), "{json}");
    assert!(dirs[0]["logDir"]
        .as_str()
        .is_some_and(|d| d.ends_with("data")));
    let partitions = dirs[0]["partitions"].as_array().expect("partitions");
    for name in ["sized-0", "sized-1", "other-0", "other-1"] {
        let p = partitions
            .iter()
            .find(|p| p["partition"] == name)
            .unwrap_or_else(|| panic!("{name} in {json}"));
        assert!(p["size"].as_i64().is_some_and(|s| s > 0), "{json}");
        assert_eq!(p["offsetLag"], 0, "{json}");
        assert_eq!(p["isFuture"], false, "{json}");
    }

    // `--broker-list` is the bootstrap servers' alias, so the broker filter is --brokers.
    let unknown = err_stderr(&node, &["cluster", "log-dirs", "--brokers", "1,7"]);
    assert!(unknown.contains('7'), "names the unknown broker: {unknown}");
}

/// Issue 33: a transaction its coordinator no longer knows holds the last stable offset
/// forever. kafka-transactions.sh find-hanging finds it and abort ends it, after which
/// read_committed consumers move on.
#[test]
fn a_hanging_transaction_is_found_and_aborted() {
    let mut node = Node::start();
    create_topic(&node.bootstrap(), "hang", 1, &[]);
    let producer = txn_producer(&node, "hanger");
    producer.begin_transaction().expect("begin");
    send_one(&producer, "hang", "in-doubt");
    assert_eq!(latest(&node, "hang", 0), 1);
    assert_eq!(
        latest(&node, "hang", 1),
        0,
        "the open transaction holds the LSO"
    );

    let find = |node: &Node, extra: &[&str]| {
        let mut args = vec!["txn", "find-hanging", "--max-transaction-timeout", "0"];
        args.extend(extra);
        hanging_rows(&ok_stdout(node, &args))
    };
    // Open but known to its coordinator, with this partition in it: not hanging.
    assert_eq!(find(&node, &["--topic", "hang"]), vec![]);

    // Fjord's KIP-890 guard keeps a late write from opening a transaction no coordinator
    // knows, so the test loses the coordinator's state instead, as an unclean election
    // of __transaction_state would: stop the node, remove that topic's logs, start again.
    node.stop();
    drop(producer);
    for entry in std::fs::read_dir(node.data_dir.join("logs")).expect("logs dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with("__transaction_state-") {
            std::fs::remove_dir_all(&path).expect("remove the coordinator's log");
        }
    }
    node.restart();

    let rows = wait_until(
        "find-hanging lists the transaction",
        Duration::from_secs(15),
        || {
            let out = fjord(
                &node,
                &[
                    "txn",
                    "find-hanging",
                    "--topic",
                    "hang",
                    "--partition",
                    "0",
                    "--max-transaction-timeout",
                    "0",
                ],
                None,
            );
            let rows = hanging_rows(&stdout(&out));
            (out.status.success() && !rows.is_empty()).then_some(rows)
        },
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (topic, partition, _producer_id, start_offset) = rows[0].clone();
    assert_eq!((topic.as_str(), partition, start_offset), ("hang", 0, 0));
    assert_eq!(find(&node, &["--broker-id", "1"]), rows, "by broker too");
    // Kafka's default: only transactions open longer than 15 minutes.
    let recent = ok_stdout(&node, &["txn", "find-hanging", "--topic", "hang"]);
    assert_eq!(hanging_rows(&recent), vec![], "{recent}");
    assert_eq!(latest(&node, "hang", 1), 0, "still held after the restart");

    ok_stdout(
        &node,
        &[
            "txn",
            "abort",
            "--topic",
            "hang",
            "--partition",
            "0",
            "--start-offset",
            "0",
        ],
    );
    // The abort marker follows the record: the LSO reaches the log end, past both.
    assert_eq!(latest(&node, "hang", 0), 2);
    wait_until("the LSO passes the abort", Duration::from_secs(10), || {
        (latest(&node, "hang", 1) == 2).then_some(())
    });
    assert_eq!(find(&node, &["--topic", "hang"]), vec![]);
    let again = err_stderr(
        &node,
        &[
            "txn",
            "abort",
            "--topic",
            "hang",
            "--partition",
            "0",
            "--start-offset",
            "0",
        ],
    );
    assert!(again.contains("no open transaction"), "{again}");
}

/// WriteTxnMarkers from a client answers Kafka's error codes per partition: an older
/// producer epoch, an older coordinator epoch than the last marker's, a partition that
/// does not exist.
#[test]
fn abort_refuses_stale_epochs_and_unknown_partitions() {
    let node = Node::start();
    create_topic(&node.bootstrap(), "ended", 1, &[]);
    let producer = txn_producer(&node, "ender");
    producer.begin_transaction().expect("begin");
    send_one(&producer, "ended", "committed");
    // An open transaction's start, for a person (ISO-8601) or a script (epoch ms).
    let started = |extra: &[&str]| -> String {
        let out = ok_stdout(&node, &[&["txn", "describe", "ender"][..], extra].concat());
        out.lines()
            .find_map(|l| l.strip_prefix("started at:"))
            .unwrap_or_else(|| panic!("a start time in {out}"))
            .trim()
            .to_string()
    };
    let iso = started(&[]);
    assert!(
        iso.len() == 24 && iso.ends_with('Z') && iso.contains('T'),
        "{iso}"
    );
    assert!(started(&["--raw-timestamps"])
        .parse::<i64>()
        .is_ok_and(|ms| ms > 0));
    producer
        .commit_transaction(Duration::from_secs(15))
        .expect("commit");
    let describe = ok_stdout(&node, &["txn", "describe", "ender"]);
    let field = |name: &str| -> i64 {
        describe
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {describe}"))
    };
    let (pid, epoch) = (field("producer id:"), field("producer epoch:"));
    let abort = |partition: &str, epoch: i64, coordinator_epoch: i64| {
        err_stderr(
            &node,
            &[
                "txn",
                "abort",
                "--topic",
                "ended",
                "--partition",
                partition,
                "--producer-id",
                &pid.to_string(),
                &format!("--producer-epoch={epoch}"),
                &format!("--coordinator-epoch={coordinator_epoch}"),
            ],
        )
    };
    // The commit marker carries the coordinator's epoch (0 or more): -1 is older.
    let fenced = abort("0", epoch, -1);
    assert!(fenced.contains("TransactionCoordinatorFenced"), "{fenced}");
    let stale = abort("0", epoch - 1, 1_000);
    assert!(stale.contains("InvalidProducerEpoch"), "{stale}");
    let unknown = abort("5", epoch, 1_000);
    assert!(unknown.contains("UnknownTopicOrPartition"), "{unknown}");
    // Nothing was written by the refusals: only the record and its commit marker.
    assert_eq!(latest(&node, "ended", 0), 2);

    // The broker's own answer for a partition it has never heard of (the CLI stops at
    // the metadata), and the API is advertised.
    let mut wire = Wire::connect(&node.bootstrap());
    let versions = wire.call(3, &ApiVersionsRequest::default());
    assert!(
        versions
            .api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::WriteTxnMarkers as i16 && k.max_version >= 1),
        "WriteTxnMarkers advertised"
    );
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch as i16)
        .with_transaction_result(false)
        .with_coordinator_epoch(1_000)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("ended")))
            .with_partition_indexes(vec![5])]);
    let resp = wire.call(
        1,
        &WriteTxnMarkersRequest::default().with_markers(vec![marker]),
    );
    let p = &resp.markers[0].topics[0].partitions[0];
    assert_eq!(p.partition_index, 5);
    assert_eq!(
        p.error_code,
        ResponseError::UnknownTopicOrPartition.code(),
        "{resp:?}"
    );
}

/// Kafka lets only holders of CLUSTER_ACTION on the cluster (its brokers, and admins
/// granted it) write transaction markers; DESCRIBE on the cluster shows log dirs.
#[test]
fn markers_need_cluster_action_and_log_dirs_cluster_describe() {
    let certs = Certs::new();
    let users = users_file(
        &certs,
        &[("admin", "admin-secret"), ("alice", "alice-secret")],
    );
    let node = secure::start(
        "SASL_PLAINTEXT",
        &[
            format!("sasl.users.file={users}"),
            AUTHORIZER.into(),
            "super.users=User:admin".into(),
        ],
    );
    let admin = sasl_props("SASL_PLAINTEXT", "PLAIN", "admin", "admin-secret");
    let alice = sasl_props("SASL_PLAINTEXT", "PLAIN", "alice", "alice-secret");
    fjord_ok(&node, &admin, &["topic", "create", "guarded"]);
    let abort = [
        "txn",
        "abort",
        "--topic",
        "guarded",
        "--partition",
        "0",
        "--producer-id",
        "1",
        "--producer-epoch",
        "0",
        "--coordinator-epoch=-1",
    ];
    let grant = |args: &[&str]| {
        let mut all = vec!["acl", "add", "--allow-principal", "User:alice"];
        all.extend(args);
        fjord_ok(&node, &admin, &all);
    };
    // Describing the topic is not enough to end transactions on it.
    grant(&["--operation", "Describe", "--topic", "guarded"]);
    let denied = secure::fjord(&node, &alice, &abort);
    assert!(!denied.status.success());
    let text = String::from_utf8_lossy(&denied.stderr);
    assert!(text.contains("ClusterAuthorizationFailed"), "{text}");
    let log_dirs = secure::fjord(&node, &alice, &["cluster", "log-dirs"]);
    let text = String::from_utf8_lossy(&log_dirs.stderr);
    assert!(text.contains("ClusterAuthorizationFailed"), "{text}");

    grant(&["--operation", "ClusterAction", "--cluster"]);
    grant(&["--operation", "Describe", "--cluster"]);
    let done = fjord_ok(&node, &alice, &abort);
    assert!(done.contains("Aborted"), "{done}");
    let dirs = fjord_ok(&node, &alice, &["cluster", "log-dirs"]);
    assert!(dirs.contains("guarded-0"), "{dirs}");
}
