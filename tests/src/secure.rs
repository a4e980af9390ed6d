//! Helpers for the security tests: secure single nodes, users files, client properties,
//! and the CLI and kcat run with them.

use std::process::{Command, Output, Stdio};

use kafka_protocol::protocol::StrBytes;

use crate::certs::Certs;
use crate::Node;

pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;

pub const AUTHORIZER: &str =
    "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer";

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// A users file (`sasl.users.file`) with these name/password pairs.
pub fn users_file(certs: &Certs, users: &[(&str, &str)]) -> String {
    let path = certs.path("users.txt");
    let text: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
    std::fs::write(&path, text).expect("users file");
    path.display().to_string()
}

/// `--override k=v` pairs.
pub fn overrides(settings: &[String]) -> Vec<String> {
    settings
        .iter()
        .flat_map(|kv| ["--override".to_string(), kv.clone()])
        .collect()
}

pub fn start(protocol: &str, settings: &[String]) -> Node {
    let args = overrides(settings);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start_secure(protocol, &args)
}

/// Client properties (librdkafka's names) as `KEY=VALUE` pairs.
pub fn sasl_props(protocol: &str, mechanism: &str, user: &str, password: &str) -> Vec<String> {
    vec![
        format!("security.protocol={protocol}"),
        format!("sasl.mechanism={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ]
}

/// Runs the `fjord` CLI against `node` with these client properties.
pub fn fjord(node: &Node, props: &[String], args: &[&str]) -> Output {
    crate::fjord_cli()
        .args(args)
        .arg("--bootstrap-server")
        .arg(node.bootstrap())
        .args(props.iter().flat_map(|p| ["--property", p.as_str()]))
        .args(["--timeout-ms", "15000"])
        .output()
        .expect("run fjord")
}

pub fn fjord_ok(node: &Node, props: &[String], args: &[&str]) -> String {
    let out = fjord(node, props, args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "fjord {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// kcat with these `-X` properties; `input` lines are produced with `-P`, else it
/// consumes the topic from the start to its end. Returns (success, stdout + stderr).
pub fn kcat(node: &Node, props: &[String], topic: &str, input: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("kcat");
    cmd.arg("-b").arg(node.bootstrap());
    for p in props {
        cmd.arg("-X").arg(p);
    }
    cmd.args(["-t", topic]);
    match input {
        Some(_) => cmd.args(["-P", "-X", "message.timeout.ms=15000"]),
        // Not quiet: librdkafka's error lines (a failed login, say) are part of the answer.
        None => cmd.args(["-C", "-o", "beginning", "-e", "-m", "15"]),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kcat");
    if let Some(lines) = input {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(lines.as_bytes()).expect("write to kcat");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("kcat");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // kcat exits 0 even when deliveries failed; their reports name the error.
    (
        out.status.success() && !text.contains("Delivery failed"),
        text,
    )
}
