//! `fjord consume --group` stopped the way people stop it: Ctrl-C (SIGINT) or SIGTERM.
//! Like Kafka's console consumer it commits what it printed and leaves the group, so the
//! next run is assigned the partitions at once instead of waiting out the old member's
//! session timeout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fjord_tests::{fjord_bin, Node};

/// librdkafka's default `session.timeout.ms`: how long a member that never left holds
/// its partitions.
const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// A rejoin after a clean leave takes the broker's initial rebalance delay (3 s) plus a
/// join round trip; Kafka's console consumer gets its first record in about 3 s.
const REJOIN_BOUND: Duration = Duration::from_secs(12);

fn produce(node: &Node, topic: &str, lines: &str) {
    let mut child = Command::new(fjord_bin())
        .args(["produce", "--topic", topic])
        .env("FJORD_BOOTSTRAP_SERVER", node.bootstrap())
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn fjord produce");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write stdin");
    assert!(child.wait().expect("fjord produce").success());
}

/// A console consumer in the background and the lines it prints, as they come.
struct Consumer {
    child: Child,
    lines: mpsc::Receiver<String>,
    started: Instant,
}

impl Consumer {
    fn start(node: &Node, topic: &str, group: &str) -> Consumer {
        let mut child = Command::new(fjord_bin())
            .args([
                "consume",
                "--topic",
                topic,
                "--group",
                group,
                "--from-beginning",
            ])
            .env("FJORD_BOOTSTRAP_SERVER", node.bootstrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fjord consume");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Consumer {
            child,
            lines,
            started: Instant::now(),
        }
    }

    /// The next printed line, or None after `timeout`.
    fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Sends `signal` and waits for the exit: (exit code, standard error).
    fn stop(mut self, signal: &str) -> (Option<i32>, String) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("fjord consume did not exit within 30 s of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20)); // poll for exit until the deadline
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (exit.code(), err)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One round: a consumer of `group` prints what is there, is stopped with `signal`, more
/// records arrive, and a second run must print the first new one well within the
/// session timeout, without re-printing what the first run printed.
fn stop_and_rejoin(node: &Node, topic: &str, group: &str, signal: &str, exit_code: i32) {
    produce(node, topic, "a\nb\nc\n");
    let first = Consumer::start(node, topic, group);
    let printed: Vec<String> = (0..3)
        .map(|_| {
            first
                .next_line(Duration::from_secs(60))
                .expect("the first run prints the records")
        })
        .collect();
    assert_eq!(printed, ["a", "b", "c"]);
    let (code, err) = first.stop(signal);

    produce(node, topic, "d\n");
    let second = Consumer::start(node, topic, group);
    let line = second.next_line(SESSION_TIMEOUT + Duration::from_secs(15));
    let waited = second.started.elapsed();
    eprintln!("after SIG{signal}, the next member's first record came in {waited:?}");
    assert!(
        waited < REJOIN_BOUND,
        "after SIG{signal} the next member waited {waited:?} for its first record (bound {REJOIN_BOUND:?}, session timeout {SESSION_TIMEOUT:?}): the first run did not leave the group"
    );
    assert_eq!(
        line.as_deref(),
        Some("d"),
        "the second run resumes after what the first printed"
    );
    // Kafka's console consumer: a count on standard error, exit status 128 + signal.
    assert_eq!(
        code,
        Some(exit_code),
        "exit status after SIG{signal}; stderr: {err}"
    );
    assert!(
        err.contains("Processed a total of 3 messages"),
        "stderr after SIG{signal}: {err}"
    );
    second.stop("TERM");
}

#[test]
fn a_console_consumer_stopped_with_ctrl_c_leaves_its_group() {
    let node = Node::start();
    stop_and_rejoin(&node, "interrupted", "ctrl-c", "INT", 130);
}

#[test]
fn a_console_consumer_stopped_with_sigterm_leaves_its_group() {
    let node = Node::start();
    stop_and_rejoin(&node, "terminated", "term", "TERM", 143);
}
