//! `fjord group reset-offsets` and `fjord group delete-offsets` as kafka-consumer-groups.sh
//! has them (issue 33): the scopes (--all-topics, --topic t:0,1), the targets by time
//! (--to-datetime, --by-duration), --export and --from-file, and OffsetDelete.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use super::{ok_stdout, stderr, stdout};
use fjord_tests::{client_config, fjord_bin, run_cli as fjord, wait_until, Node};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// Writes `count` records to one partition with the console producer.
fn produce(node: &Node, topic: &str, partition: i32, count: usize) {
    let lines: String = (0..count).map(|i| format!("record-{i}\n")).collect();
    let p = partition.to_string();
    let out = fjord(
        node,
        &["produce", "--topic", topic, "--partition", &p],
        Some(&lines),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The group's committed offsets, as `fjord group describe` prints them.
fn committed(node: &Node, group: &str) -> BTreeMap<(String, i32), i64> {
    ok_stdout(node, &["group", "describe", group])
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            match cols[..] {
                [t, p, o, ..] => Some(((t.to_string(), p.parse().ok()?), o.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}

/// The rows of a reset plan table (GROUP TOPIC PARTITION NEW-OFFSET) of `group`.
fn planned(out: &str, group: &str) -> BTreeMap<(String, i32), i64> {
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            match cols[..] {
                [g, t, p, o] if g == group => {
                    Some(((t.to_string(), p.parse().ok()?), o.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

fn offsets(rows: &[(&str, i32, i64)]) -> BTreeMap<(String, i32), i64> {
    rows.iter()
        .map(|(t, p, o)| ((t.to_string(), *p), *o))
        .collect()
}

#[test]
fn all_topics_shift_by_moves_every_committed_partition() {
    let node = Node::start();
    for (topic, partitions) in [("left", "2"), ("right", "1"), ("untouched", "1")] {
        ok_stdout(
            &node,
            &["topic", "create", topic, "--partitions", partitions],
        );
    }
    for (topic, partition) in [("left", 0), ("left", 1), ("right", 0), ("untouched", 0)] {
        produce(&node, topic, partition, 10);
    }
    // Commits on two topics (through the repeatable --topic and Kafka's --group).
    let out = ok_stdout(
        &node,
        &[
            "group",
            "reset-offsets",
            "--group",
            "shifty",
            "--topic",
            "left",
            "--topic",
            "right",
            "--to-latest",
            "--execute",
        ],
    );
    assert!(
        out.lines().next().is_some_and(|h| h.split_whitespace().eq([
            "GROUP",
            "TOPIC",
            "PARTITION",
            "NEW-OFFSET"
        ])),
        "{out}"
    );
    let all_ten = offsets(&[("left", 0, 10), ("left", 1, 10), ("right", 0, 10)]);
    assert_eq!(planned(&out, "shifty"), all_ten, "{out}");
    assert_eq!(committed(&node, "shifty"), all_ten);

    let out = ok_stdout(
        &node,
        &[
            "group",
            "reset-offsets",
            "shifty",
            "--all-topics",
            "--shift-by",
            "-3",
            "--execute",
        ],
    );
    let seven = offsets(&[("left", 0, 7), ("left", 1, 7), ("right", 0, 7)]);
    assert_eq!(planned(&out, "shifty"), seven, "{out}");
    // Only the committed partitions moved: the group never read "untouched".
    assert_eq!(committed(&node, "shifty"), seven);
}

#[test]
fn a_topic_with_partitions_resets_only_those() {
    let node = Node::start();
    ok_stdout(&node, &["topic", "create", "three", "--partitions", "3"]);
    for p in 0..3 {
        produce(&node, "three", p, 5);
    }
    let reset = |extra: &[&str]| {
        let mut args = vec!["group", "reset-offsets", "picky"];
        args.extend(extra);
        ok_stdout(&node, &args)
    };
    reset(&["--topic", "three", "--to-latest", "--execute"]);
    let out = reset(&["--topic", "three:1", "--to-earliest", "--dry-run"]);
    assert_eq!(planned(&out, "picky"), offsets(&[("three", 1, 0)]), "{out}");
    assert!(out.contains("dry run"), "{out}");
    let fives = offsets(&[("three", 0, 5), ("three", 1, 5), ("three", 2, 5)]);
    assert_eq!(
        committed(&node, "picky"),
        fives,
        "a dry run changes nothing"
    );

    reset(&["--topic", "three:1", "--to-earliest", "--execute"]);
    assert_eq!(
        committed(&node, "picky"),
        offsets(&[("three", 0, 5), ("three", 1, 0), ("three", 2, 5)])
    );
    // The older spelling still works.
    reset(&[
        "--topic",
        "three",
        "--partitions",
        "2",
        "--to-offset",
        "2",
        "--execute",
    ]);
    assert_eq!(
        committed(&node, "picky"),
        offsets(&[("three", 0, 5), ("three", 1, 0), ("three", 2, 2)])
    );
    let missing = fjord(
        &node,
        &[
            "group",
            "reset-offsets",
            "picky",
            "--topic",
            "three:7",
            "--to-earliest",
        ],
        None,
    );
    assert!(
        !missing.status.success() && stderr(&missing).contains("no partition 7"),
        "{}",
        stderr(&missing)
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[test]
fn datetimes_and_durations_land_on_the_first_record_at_or_after() {
    let node = Node::start();
    ok_stdout(&node, &["topic", "create", "times", "--partitions", "1"]);
    // Records with chosen timestamps, in offset order: four a second apart from
    // 2024-05-01T12:00:00Z, then four of the last few hours.
    const MAY_DAY_NOON: i64 = 1_714_564_800_000;
    let now = now_ms();
    let hour = 3_600_000;
    let stamps = [
        MAY_DAY_NOON,
        MAY_DAY_NOON + 1000,
        MAY_DAY_NOON + 2000,
        MAY_DAY_NOON + 3000,
        now - 3 * hour,
        now - 2 * hour,
        now - hour / 2,
        now,
    ];
    let producer: ThreadedProducer<DefaultProducerContext> =
        client_config(&node.bootstrap()).create().expect("producer");
    for (i, ts) in stamps.iter().enumerate() {
        let value = format!("at-{i}");
        producer
            .send(
                BaseRecord::<(), String>::to("times")
                    .partition(0)
                    .payload(&value)
                    .timestamp(*ts),
            )
            .map_err(|(e, _)| e)
            .expect("send");
        // One at a time, so that the offsets follow the timestamps.
        producer.flush(Duration::from_secs(30)).expect("flush");
    }
    let new_offset = |target: &[&str]| {
        let mut args = vec!["group", "reset-offsets", "clock", "--topic", "times"];
        args.extend(target);
        let out = ok_stdout(&node, &args);
        planned(&out, "clock")
            .get(&("times".to_string(), 0))
            .copied()
            .unwrap_or_else(|| panic!("{target:?}: {out}"))
    };
    // Without a zone the time is UTC, as Kafka reads it.
    assert_eq!(new_offset(&["--to-datetime", "2024-05-01T12:00:01.500"]), 2);
    assert_eq!(
        new_offset(&["--to-datetime", "2024-05-01T13:00:01.500+01:00"]),
        2
    );
    assert_eq!(
        new_offset(&["--to-datetime", "2024-05-01T12:00:01.000Z"]),
        1
    );
    assert_eq!(
        new_offset(&["--to-datetime", "2024-05-01T06:00:00-0500"]),
        0
    );
    // Nothing that new: the log end, as Kafka.
    assert_eq!(new_offset(&["--to-datetime", "2999-01-01T00:00:00.000"]), 8);
    assert_eq!(new_offset(&["--by-duration", "PT1H"]), 6);
    assert_eq!(new_offset(&["--by-duration", "PT2H30M"]), 5);
    assert_eq!(new_offset(&["--by-duration", "P1D"]), 4);
    let ms = (MAY_DAY_NOON + 3000).to_string();
    assert_eq!(new_offset(&["--to-timestamp", &ms]), 3);

    let bad = fjord(
        &node,
        &[
            "group",
            "reset-offsets",
            "clock",
            "--topic",
            "times",
            "--to-datetime",
            "2024-05-01 12:00:00",
        ],
        None,
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

#[test]
fn export_then_from_file_restores_the_offsets() {
    let node = Node::start();
    ok_stdout(&node, &["topic", "create", "saved", "--partitions", "2"]);
    produce(&node, "saved", 0, 10);
    produce(&node, "saved", 1, 10);
    let reset = |extra: &[&str]| {
        let mut args = vec!["group", "reset-offsets", "--group", "snap"];
        args.extend(extra);
        ok_stdout(&node, &args)
    };
    reset(&["--topic", "saved:0", "--to-offset", "3", "--execute"]);
    reset(&["--topic", "saved:1", "--to-offset", "7", "--execute"]);
    let csv = reset(&["--all-topics", "--to-current", "--export"]);
    assert_eq!(csv, "saved,0,3\nsaved,1,7\n", "only the CSV on stdout");

    reset(&["--topic", "saved", "--to-earliest", "--execute"]);
    assert_eq!(
        committed(&node, "snap"),
        offsets(&[("saved", 0, 0), ("saved", 1, 0)])
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("snap.csv");
    std::fs::write(&file, &csv).expect("write the plan");
    let path = file.to_string_lossy().into_owned();
    let out = reset(&["--from-file", &path, "--execute"]);
    assert_eq!(
        planned(&out, "snap"),
        offsets(&[("saved", 0, 3), ("saved", 1, 7)]),
        "{out}"
    );
    assert_eq!(
        committed(&node, "snap"),
        offsets(&[("saved", 0, 3), ("saved", 1, 7)])
    );
}

/// A `fjord consume --group` member, stopped when the test ends, however it ends.
struct Consumer(Child);

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn delete_offsets_removes_commits_but_not_of_subscribed_topics() {
    let node = Node::start_with(&["--override", "group.initial.rebalance.delay.ms=0"]);
    ok_stdout(&node, &["topic", "create", "dropped", "--partitions", "2"]);
    produce(&node, "dropped", 0, 4);
    produce(&node, "dropped", 1, 4);
    ok_stdout(
        &node,
        &[
            "group",
            "reset-offsets",
            "gone",
            "--topic",
            "dropped",
            "--to-latest",
            "--execute",
        ],
    );
    let out = ok_stdout(
        &node,
        &[
            "group",
            "delete-offsets",
            "--group",
            "gone",
            "--topic",
            "dropped:1",
        ],
    );
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["TOPIC", "PARTITION", "STATUS"],
            vec!["dropped", "1", "Successful"]
        ],
        "{out}"
    );
    assert_eq!(committed(&node, "gone"), offsets(&[("dropped", 0, 4)]));

    // While a member is subscribed to the topic, its offsets stay.
    let consumer = Consumer(
        std::process::Command::new(fjord_bin())
            .args(["consume", "--group", "gone", "--topic", "dropped"])
            .env("FJORD_BOOTSTRAP_SERVER", node.bootstrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the consumer"),
    );
    wait_until("the consumer joined", Duration::from_secs(15), || {
        let out = fjord(&node, &["group", "describe", "gone", "--members"], None);
        stdout(&out).contains("dropped(").then_some(())
    });
    let refused = fjord(
        &node,
        &["group", "delete-offsets", "gone", "--topic", "dropped"],
        None,
    );
    assert!(!refused.status.success(), "{}", stdout(&refused));
    let out = stdout(&refused);
    assert!(
        out.lines()
            .filter(|l| l.starts_with("dropped"))
            .all(|l| l.ends_with("Error: GROUP_SUBSCRIBED_TO_TOPIC"))
            && out.lines().filter(|l| l.starts_with("dropped")).count() == 2,
        "{out}"
    );
    drop(consumer);
}
