//! Kafka's operator tools as `fjord` runs them, through the real binary against a real
//! node: kafka-configs.sh and client profiles (`config_tool`), kafka-consumer-groups.sh's
//! offset commands (`group_offsets`), kafka-transactions.sh and kafka-log-dirs.sh
//! (`txn_tools`), and the console tools' properties, kafka-delete-records.sh and
//! kafka-get-offsets.sh (`console_tools`), and kafka-share-groups.sh on share groups
//! (`share_groups`). One test binary, so CI links it once.

use std::process::Output;

use fjord_tests::{run_cli, Node};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must succeed, and returns what it printed.
fn ok_stdout(node: &Node, args: &[&str]) -> String {
    ok_stdout_with(node, args, None)
}

/// [`ok_stdout`] with `input` on the command's standard input.
fn ok_stdout_with(node: &Node, args: &[&str], input: Option<&str>) -> String {
    let out = run_cli(node, args, input);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[path = "admin_tools/config_tool.rs"]
mod config_tool;
#[path = "admin_tools/console_tools.rs"]
mod console_tools;
#[path = "admin_tools/group_offsets.rs"]
mod group_offsets;
#[path = "admin_tools/share_groups.rs"]
mod share_groups;
#[path = "admin_tools/txn_tools.rs"]
mod txn_tools;
