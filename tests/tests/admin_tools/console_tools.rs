//! Kafka's console tools and offset tools as `fjord` runs them: the console producer's
//! and consumer's properties, kafka-delete-records.sh and kafka-get-offsets.sh.

use super::{ok_stdout_with as ok_stdout, stderr};
use fjord_tests::{run_cli as fjord, Node};

/// Issue 33: Kafka's console-tool properties were handed to librdkafka, which refused
/// them as unknown settings; now they work as kafka-console-producer.sh and
/// kafka-console-consumer.sh take them, in Kafka's output format.
#[test]
fn console_tool_properties_work_as_kafkas() {
    let node = Node::start();
    let run = |args: &[&str], input: Option<&str>| ok_stdout(&node, args, input);
    run(&["topic", "create", "props", "--partitions", "1"], None);
    run(
        &[
            "produce",
            "--topic",
            "props",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ],
        Some("k1:first\nk2:second\n"),
    );
    let consume = |props: &[&str]| {
        let mut args = vec![
            "consume",
            "--topic",
            "props",
            "--from-beginning",
            "--max-messages",
            "2",
        ];
        for p in props {
            args.extend(["--property", p]);
        }
        run(&args, None)
    };
    let all = consume(&[
        "print.timestamp=true",
        "print.partition=true",
        "print.offset=true",
        "print.headers=true",
        "print.key=true",
    ]);
    let lines: Vec<Vec<&str>> = all.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{all}");
    for (i, (key, value)) in [("k1", "first"), ("k2", "second")].iter().enumerate() {
        let f = &lines[i];
        assert!(
            f[0].strip_prefix("CreateTime:")
                .is_some_and(|ms| ms.parse::<i64>().is_ok_and(|ms| ms > 1_600_000_000_000)),
            "{all}"
        );
        assert_eq!(
            &f[1..],
            &[
                "Partition:0",
                &format!("Offset:{i}"),
                "NO_HEADERS",
                key,
                value
            ],
            "{all}"
        );
    }
    assert_eq!(
        consume(&["print.key=true", "key.separator= | ", "print.value=false"]),
        "k1\nk2\n"
    );
    assert_eq!(
        consume(&["print.key=true", "key.separator= => "]),
        "k1 => first\nk2 => second\n"
    );
    // Fjord's own --print-timestamp is for people (ISO-8601 UTC), raw on request.
    let timestamps = |extra: &[&str]| {
        let mut args = vec![
            "consume",
            "--topic",
            "props",
            "--from-beginning",
            "--max-messages",
            "1",
            "--print-timestamp",
        ];
        args.extend(extra);
        let out = run(&args, None);
        out.split('\t').next().unwrap_or_default().to_string()
    };
    let iso = timestamps(&[]);
    assert!(
        iso.len() == 24 && iso.starts_with("20") && iso.ends_with('Z') && iso.contains('T'),
        "{iso}"
    );
    let raw = timestamps(&["--raw-timestamps"]);
    assert!(
        raw.parse::<i64>().is_ok_and(|ms| ms > 1_600_000_000_000),
        "{raw}"
    );
    let refused = fjord(
        &node,
        &[
            "consume",
            "--topic",
            "props",
            "--property",
            "print.key=maybe",
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
}

/// Issue 33: there was no command for DeleteRecords (kafka-delete-records.sh) or for
/// offsets by time (kafka-get-offsets.sh), though the broker serves both.
#[test]
fn records_delete_and_topic_offsets_work_as_kafkas_tools() {
    let node = Node::start();
    let run = |args: &[&str], input: Option<&str>| ok_stdout(&node, args, input);
    run(&["topic", "create", "trim", "--partitions", "2"], None);
    let produce = |p: &str, lines: &str| {
        run(
            &["produce", "--topic", "trim", "--partition", p],
            Some(lines),
        );
    };
    produce("0", "a\nb\nc\nd\ne\n");
    produce("1", "x\ny\nz\n");
    let low_watermarks = |out: &str| -> Vec<(String, String)> {
        out.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[1].to_string(), f[2].to_string())
            })
            .collect()
    };
    let newest = run(
        &[
            "topic",
            "offsets",
            "trim",
            "--time",
            "max-timestamp",
            "--partitions",
            "1",
        ],
        None,
    );
    assert!(
        ["trim:1:0\n", "trim:1:1\n", "trim:1:2\n"].contains(&newest.as_str()),
        "a record with the largest timestamp: {newest}"
    );
    let one = run(
        &[
            "records",
            "delete",
            "--topic",
            "trim",
            "--partition",
            "0",
            "--before-offset",
            "3",
        ],
        None,
    );
    assert_eq!(low_watermarks(&one), [("0".into(), "3".into())], "{one}");
    let read = run(
        &[
            "consume",
            "--topic",
            "trim",
            "--partition",
            "0",
            "--offset",
            "earliest",
            "--max-messages",
            "2",
            "--print-offset",
        ],
        None,
    );
    assert_eq!(read, "0:3\td\n0:4\te\n");

    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("offsets.json");
    std::fs::write(
        &file,
        r#"{"version": 1, "partitions": [{"topic": "trim", "partition": 1, "offset": -1}]}"#,
    )
    .expect("write");
    let all = run(
        &[
            "records",
            "delete",
            "--offset-json-file",
            file.to_str().expect("utf-8"),
        ],
        None,
    );
    assert_eq!(low_watermarks(&all), [("1".into(), "3".into())], "{all}");

    // kafka-get-offsets.sh's view of the same partitions.
    let offsets = |extra: &[&str]| run(&[&["topic", "offsets", "trim"], extra].concat(), None);
    assert_eq!(offsets(&[]), "trim:0:5\ntrim:1:3\n");
    assert_eq!(offsets(&["--time", "earliest"]), "trim:0:3\ntrim:1:3\n");
    assert_eq!(
        offsets(&["--time", "-2", "--partitions", "0"]),
        "trim:0:3\n"
    );
    assert_eq!(offsets(&["--time", "0", "--partitions", "0"]), "trim:0:3\n");
    assert_eq!(
        offsets(&["--time", "4102444800000", "--partitions", "0"]),
        "trim:0:-1\n",
        "no record at or after 2100"
    );
    let no_partition = fjord(
        &node,
        &["topic", "offsets", "trim", "--partitions", "7"],
        None,
    );
    assert_eq!(
        no_partition.status.code(),
        Some(1),
        "{}",
        stderr(&no_partition)
    );

    let beyond = fjord(
        &node,
        &[
            "records",
            "delete",
            "--topic",
            "trim",
            "--partition",
            "0",
            "--before-offset",
            "99",
        ],
        None,
    );
    assert_eq!(beyond.status.code(), Some(1));
    assert!(
        stderr(&beyond).contains("trim-0"),
        "past the high watermark is refused: {}",
        stderr(&beyond)
    );
}
