//! A node whose metadata log was damaged, or whose metadata directory is gone, comes back
//! (issue 31): real `fjord serve` processes, files damaged on disk between runs as a
//! failing disk or a careless operator would leave them.
//!
//! - A damaged tail of the metadata log is cut; the node starts with what is left and
//!   (with peers) is sent the rest by the leader.
//! - A voter whose metadata directory was removed rejoins, and none of its partition
//!   logs is deleted as a stray before its image has caught up.
//! - A lone voter in that state refuses to start (a new empty cluster would discard its
//!   data) and says what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fjord_tests::{
    create_topic, create_topic_rf, http_get, wait_until, Cluster, Node, FAST_FAILOVER,
};

/// The newest segment of the node's metadata log.
fn last_metadata_segment(data_dir: &Path) -> PathBuf {
    let dir = data_dir.join("controller").join("raft-log");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a metadata log segment")
}

/// A torn write: the file ends `bytes` early, in the middle of a batch.
fn tear_tail(segment: &Path, bytes: u64) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("open segment");
    let len = f.metadata().expect("size").len();
    assert!(len > bytes, "segment of {len} bytes");
    f.set_len(len - bytes).expect("truncate");
}

/// Garbage over the last `bytes` bytes, as a bad sector returns it.
fn scribble_tail(segment: &Path, bytes: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("open segment");
    let len = f.metadata().expect("size").len();
    f.write_all_at(&vec![0xA5; bytes], len - bytes as u64)
        .expect("scribble");
}

fn topics_of(status: &serde_json::Value) -> Vec<String> {
    status["topics"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn node_status(admin: &str) -> Option<serde_json::Value> {
    match http_get(admin, "/v1/cluster") {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Produces one record and reads it back through kcat.
fn round_trip(bootstrap: &str, topic: &str) {
    let produce = std::process::Command::new("kcat")
        .args([
            "-b",
            bootstrap,
            "-P",
            "-t",
            topic,
            "-p",
            "0",
            "-X",
            "message.timeout.ms=20000",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(b"after-repair\n")?;
            c.wait()
        })
        .expect("kcat -P");
    assert!(produce.success(), "produce to {topic}");
    let out = std::process::Command::new("kcat")
        .args([
            "-b",
            bootstrap,
            "-C",
            "-t",
            topic,
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .output()
        .expect("kcat -C");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("after-repair"),
        "read back from {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_single_node_starts_after_its_metadata_log_tail_is_damaged() {
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    for i in 0..6 {
        create_topic(&bootstrap, &format!("kept-{i}"), 1, &[]);
    }
    node.stop();
    // Garbage over the last entries, then a torn end: both cut at the first bad batch.
    let segment = last_metadata_segment(&node.data_dir);
    scribble_tail(&segment, 64);
    tear_tail(&segment, 16);
    node.restart();
    let status = node_status(&node.admin_addr()).expect("cluster status");
    let topics = topics_of(&status);
    assert!(
        topics.iter().any(|t| t == "kept-0"),
        "topics before the damage survive: {topics:?}"
    );
    round_trip(&bootstrap, "kept-0");
    create_topic(&bootstrap, "after", 1, &[]);
    round_trip(&bootstrap, "after");
}

#[test]
fn a_voter_with_a_damaged_metadata_log_tail_is_sent_the_rest_by_the_leader() {
    let mut c = Cluster::start(3, 0, FAST_FAILOVER);
    let bootstrap = c.bootstrap();
    for i in 0..4 {
        create_topic_rf(&bootstrap, &format!("before-{i}"), 1, 3, &[]);
    }
    c.node(3).stop();
    let segment = last_metadata_segment(&c.node(3).data_dir);
    tear_tail(&segment, 300);
    // Written while it is down (on the two live brokers): it must learn of it from the
    // leader too.
    let bootstrap = c.bootstrap();
    create_topic_rf(&bootstrap, "while-down", 1, 2, &[]);
    c.node(3).restart();
    let admin = c.node(3).admin_addr();
    wait_until(
        "node 3's image holds every topic",
        Duration::from_secs(30),
        || {
            let topics = topics_of(&node_status(&admin)?);
            ((0..4).all(|i| topics.contains(&format!("before-{i}")))
                && topics.iter().any(|t| t == "while-down"))
            .then_some(())
        },
    );
    // And it serves: back in sync for every topic it holds a replica of.
    wait_until("node 3 back in every ISR", Duration::from_secs(30), || {
        let status = node_status(&admin)?;
        status["under_replicated_partitions"]
            .as_array()?
            .is_empty()
            .then_some(())
    });
}

#[test]
fn a_voter_that_lost_its_metadata_directory_rejoins_without_deleting_its_logs() {
    let mut c = Cluster::start(3, 0, FAST_FAILOVER);
    let bootstrap = c.bootstrap();
    for i in 0..5 {
        create_topic_rf(&bootstrap, &format!("held-{i}"), 2, 3, &[]);
    }
    round_trip(&bootstrap, "held-0");
    // Node 3 is an ordinary voter; node 1 is the lowest, the one that would create a
    // quorum if it had none.
    for id in [3, 1] {
        c.node(id).stop();
        let data = c.node(id).data_dir.clone();
        std::fs::remove_dir_all(data.join("controller")).expect("remove the metadata directory");
        c.node(id).restart();
        let admin = c.node(id).admin_addr();
        wait_until(
            &format!("node {id}'s image holds every topic"),
            Duration::from_secs(30),
            || {
                let topics = topics_of(&node_status(&admin)?);
                (0..5)
                    .all(|i| topics.contains(&format!("held-{i}")))
                    .then_some(())
            },
        );
        wait_until(
            &format!("node {id} back in every ISR"),
            Duration::from_secs(60),
            || {
                let status = node_status(&admin)?;
                status["under_replicated_partitions"]
                    .as_array()?
                    .is_empty()
                    .then_some(())
            },
        );
        let log = c.node(id).log();
        let restarted = log.rfind("starting Fjord node").unwrap_or(0);
        assert!(
            !log[restarted..].contains("removing a stray log"),
            "node {id} deleted logs as strays after losing its metadata:\n{}",
            &log[restarted..]
        );
        assert!(
            data.join("logs").join("held-0-0").is_dir(),
            "node {id}'s log of held-0-0"
        );
    }
}

#[test]
fn a_lone_voter_without_its_metadata_directory_refuses_to_start_and_says_why() {
    let mut node = Node::start();
    let bootstrap = node.bootstrap();
    create_topic(&bootstrap, "precious", 3, &[]);
    round_trip(&bootstrap, "precious");
    node.stop();
    std::fs::remove_dir_all(node.data_dir.join("controller")).expect("remove");
    node.spawn_again();
    assert!(
        node.wait_exit(Duration::from_secs(30)).is_some(),
        "the node must not start a new, empty cluster over its logs"
    );
    let log = node.log();
    assert!(
        log.contains("metadata directory") && log.contains("Restore"),
        "the refusal says what happened and what to do:\n{log}"
    );
    assert!(
        node.data_dir.join("logs").join("precious-0").is_dir(),
        "the partition logs are untouched"
    );
}
