//! Consumer-group members as separate processes (confluent-kafka, kafka-python and the
//! `rdkafka` crate), each reporting its rebalances, records and commits as JSON lines, so
//! tests can kill them like real applications and check what they saw.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::{python, repo_root, wait_until};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    Confluent,
    KafkaPython,
    Rdkafka,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One running member.
pub struct Member {
    pub name: String,
    pub kind: ClientKind,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    events: Arc<Mutex<Vec<Value>>>,
    /// When the process was killed (its ownership ends there).
    pub killed_at: Option<u64>,
}

fn group_member_bin() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("FJORD_GROUP_MEMBER_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir");
    dir.join("group-member")
}

impl Member {
    /// Starts a member of `group` on `topic`; `extra` are more flags of the member
    /// programs (`--instance-id`, `--commit sync`, `--log-records`, ...).
    pub fn spawn(
        name: &str,
        kind: ClientKind,
        bootstrap: &str,
        group: &str,
        topic: &str,
        extra: &[&str],
    ) -> Member {
        let mut cmd = match kind {
            ClientKind::Rdkafka => Command::new(group_member_bin()),
            ClientKind::Confluent | ClientKind::KafkaPython => {
                let mut c = Command::new(python());
                c.arg(repo_root().join("tests/python/group_member.py"));
                c.arg("--client").arg(if kind == ClientKind::Confluent {
                    "confluent"
                } else {
                    "kafka-python"
                });
                c
            }
        };
        cmd.arg("--bootstrap-server")
            .arg(bootstrap)
            .arg("--group")
            .arg(group)
            .arg("--topic")
            .arg(topic)
            .args(extra)
            .args(
                crate::client_security(bootstrap)
                    .into_iter()
                    .flat_map(|(k, v)| ["--property".to_string(), format!("{k}={v}")]),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(v);
                }
            }
        });
        Member {
            name: name.to_string(),
            kind,
            child: Some(child),
            stdin,
            events,
            killed_at: None,
        }
    }

    pub fn events(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn count(&self, event: &str) -> usize {
        self.events().iter().filter(|e| e["event"] == event).count()
    }

    /// Partitions the member holds now (eager protocol: a revoke drops them all).
    pub fn assignment(&self) -> BTreeSet<i32> {
        let mut held = BTreeSet::new();
        for e in self.events() {
            match e["event"].as_str() {
                Some("assigned") => {
                    held = partitions(&e);
                }
                Some("revoked") => {
                    for p in partitions(&e) {
                        held.remove(&p);
                    }
                }
                Some("closed") => held.clear(),
                _ => {}
            }
        }
        if self.killed_at.is_some() {
            held.clear();
        }
        held
    }

    /// `(partition, offset)` of every record the member processed.
    pub fn records(&self) -> Vec<(i32, i64)> {
        self.events()
            .iter()
            .filter(|e| e["event"] == "record")
            .filter_map(|e| Some((e["p"].as_i64()? as i32, e["o"].as_i64()?)))
            .collect()
    }

    /// The last acknowledged commit per partition (the next offset to read).
    pub fn acked_commits(&self) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        for e in self.events() {
            if e["event"] == "committed" {
                if let (Some(p), Some(o)) = (e["p"].as_i64(), e["o"].as_i64()) {
                    let slot = out.entry(p as i32).or_insert(o);
                    *slot = (*slot).max(o);
                }
            }
        }
        out
    }

    /// Closes standard input: the member closes its consumer (leaving the group) and exits.
    pub fn close(&mut self) {
        self.stdin.take();
        if let Some(mut c) = self.child.take() {
            let status = wait_until(
                &format!("{} to exit", self.name),
                Duration::from_secs(60),
                || c.try_wait().ok().flatten(),
            );
            assert!(status.success(), "{} exited with {status}", self.name);
        }
    }

    /// SIGKILL: no leave, no commit, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.killed_at = Some(now_ms());
        }
    }

    /// Ownership intervals `(partition, from, until)`; `until` is `None` while held.
    pub fn ownership(&self) -> Vec<(i32, u64, Option<u64>)> {
        let mut open: BTreeMap<i32, u64> = BTreeMap::new();
        let mut out = Vec::new();
        for e in self.events() {
            let t = e["t"].as_u64().unwrap_or(0);
            match e["event"].as_str() {
                Some("assigned") => {
                    for p in partitions(&e) {
                        open.entry(p).or_insert(t);
                    }
                }
                Some("revoked") => {
                    for p in partitions(&e) {
                        if let Some(from) = open.remove(&p) {
                            out.push((p, from, Some(t)));
                        }
                    }
                }
                Some("closed") => {
                    for (p, from) in std::mem::take(&mut open) {
                        out.push((p, from, Some(t)));
                    }
                }
                _ => {}
            }
        }
        for (p, from) in open {
            out.push((p, from, self.killed_at));
        }
        out
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn partitions(e: &Value) -> BTreeSet<i32> {
    e["partitions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p.as_i64().map(|p| p as i32))
                .collect()
        })
        .unwrap_or_default()
}

/// Panics if two members ever owned one partition at the same time.
pub fn assert_no_double_ownership(members: &[&Member]) {
    let mut by_partition: BTreeMap<i32, Vec<(u64, u64, &str)>> = BTreeMap::new();
    for m in members {
        for (p, from, until) in m.ownership() {
            by_partition.entry(p).or_default().push((
                from,
                until.unwrap_or(u64::MAX),
                m.name.as_str(),
            ));
        }
    }
    for (p, mut spans) in by_partition {
        spans.sort();
        for w in spans.windows(2) {
            assert!(
                w[1].0 >= w[0].1,
                "partition {p} owned by {} ({}..{}) and {} ({}..) at once",
                w[0].2,
                w[0].0,
                w[0].1,
                w[1].2,
                w[1].0
            );
        }
    }
}
