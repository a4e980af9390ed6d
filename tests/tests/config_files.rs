//! `fjord serve --config` with the files operators already have: Kafka's own
//! `server.properties`, and `--check-config` as a gate that fails on what nothing reads.
//!
//! Before: only TOML loaded (Kafka's file failed to parse), and `--check-config` printed
//! every key twice and exited 0 on unknown keys.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use fjord_tests::{fjord_bin, free_port, http_get, wait_until};

/// Kafka 4's sample config/server.properties with its comments, ports and paths made
/// this test's (the controller listener on loopback, as a secret-less rpc port must be).
fn kafka_server_properties(kafka: u16, controller: u16, admin: u16, logs: &str) -> String {
    format!(
        "############################# Server Basics #############################

# The role of this server. Setting this puts us in KRaft mode
process.roles=broker,controller

# The node id associated with this instance's roles
node.id=1

# List of controller endpoints used connect to the controller cluster
controller.quorum.bootstrap.servers=localhost:{controller}

listeners=PLAINTEXT://localhost:{kafka},CONTROLLER://localhost:{controller}
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:{kafka},CONTROLLER://localhost:{controller}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL

num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600

log.dirs={logs}
num.partitions=3
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000

# Fjord's own: its admin HTTP port
admin.listener=127.0.0.1:{admin}
"
    )
}

fn run(args: &[&str]) -> Output {
    Command::new(fjord_bin())
        .args(args)
        .env_remove("FJORD_CONFIG")
        .output()
        .expect("fjord")
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn kafkas_server_properties_starts_a_node_as_it_is() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (kafka, controller, admin) = (free_port(), free_port(), free_port());
    let logs = tmp.path().join("kraft-combined-logs");
    let file = tmp.path().join("server.properties");
    std::fs::write(
        &file,
        kafka_server_properties(kafka, controller, admin, &logs.display().to_string()),
    )
    .expect("write");
    let path = file.to_str().expect("utf-8");

    let checked = run(&["serve", "--config", path, "--check-config"]);
    let described = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(described.contains(&format!("rpc.listener = localhost:{controller}")));
    for key in ["listeners", "node.id", "log.retention.hours"] {
        let times = described
            .lines()
            .filter(|l| l.starts_with(&format!("{key} = ")))
            .count();
        assert_eq!(times, 1, "{key} printed once:\n{described}");
    }

    let log = std::fs::File::create(tmp.path().join("node.log")).expect("log");
    let child = Command::new(fjord_bin())
        .args(["serve", "--config", path])
        .env_remove("FJORD_CONFIG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("fjord serve");
    let _node = Killed(child);
    let admin_addr = format!("127.0.0.1:{admin}");
    wait_until("the node ready", Duration::from_secs(60), || {
        matches!(http_get(&admin_addr, "/readyz"), Ok((200, _))).then_some(())
    });
    let bootstrap = format!("localhost:{kafka}");
    let created = run(&[
        "topic",
        "create",
        "from-props",
        "--bootstrap-server",
        &bootstrap,
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let described = run(&[
        "topic",
        "describe",
        "from-props",
        "--bootstrap-server",
        &bootstrap,
    ]);
    let text = String::from_utf8_lossy(&described.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("Partition:")).count(),
        3,
        "num.partitions=3 from the file:\n{text}"
    );
    assert!(logs.is_dir(), "log.dirs is the data directory");
}

#[test]
fn check_config_fails_on_what_nothing_reads_and_names_the_closest_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("server.properties");
    std::fs::write(
        &file,
        format!(
            "log.dirs={}\nlog.retention.hour=5\nnum.partitions=2\n",
            tmp.path().join("data").display()
        ),
    )
    .expect("write");
    let out = run(&[
        "serve",
        "--config",
        file.to_str().expect("utf-8"),
        "--check-config",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown property log.retention.hour (did you mean log.retention.hours?)"),
        "{stderr}"
    );
}

/// Before: "cannot open the data directory: File exists (os error 17)", with no path.
#[test]
fn a_data_directory_that_cannot_be_used_is_named() {
    let tmp = tempfile::tempdir().expect("tmp");
    let not_a_dir = tmp.path().join("a-file");
    std::fs::write(&not_a_dir, "").expect("write");
    let out = run(&[
        "serve",
        "--data-dir",
        not_a_dir.to_str().expect("utf-8"),
        "--listeners",
        "PLAINTEXT://127.0.0.1:0",
        "--rpc-listener",
        "127.0.0.1:0",
        "--admin-listener",
        "127.0.0.1:0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot open the data directory {}",
            not_a_dir.display()
        )),
        "{stderr}"
    );
}
