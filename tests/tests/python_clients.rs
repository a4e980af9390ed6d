//! confluent-kafka and kafka-python against a real node: admin create/describe/delete,
//! produce and consume with keys, headers and timestamps (tests/python/compat.py).

use std::process::Command;

use fjord_tests::{python, Node};

#[test]
fn confluent_kafka_and_kafka_python_round_trip() {
    let node = Node::start();
    let out = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/compat.py"))
        .arg("--bootstrap-server")
        .arg(node.bootstrap())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "compat.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nnode log:\n{}",
        node.log()
    );
    assert!(
        stdout.contains("confluent-kafka: 2000 records match"),
        "{stdout}"
    );
    assert!(
        stdout.contains("kafka-python: 2000 records match"),
        "{stdout}"
    );
}
