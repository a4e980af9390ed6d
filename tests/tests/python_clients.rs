//! confluent-kafka and kafka-python against a real node: admin create/describe/delete,
//! produce and consume with keys, headers and timestamps (tests/python/compat.py).

use std::process::Command;

use fjord_tests::{python, Cluster, Node};

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

/// kafka-python's admin client against three nodes: DescribeLogDirs,
/// AlterReplicaLogDirs, DescribeQuorum, DescribeTopicPartitions, ListConfigResources,
/// broker DescribeConfigs, and what a fenced transactional producer is told
/// (tests/python/admin_apis.py).
#[test]
fn kafka_python_admin_apis_on_three_nodes() {
    let mut cluster = Cluster::start(3, 0, &[]);
    let bootstrap = cluster.bootstrap();
    let mut cmd = Command::new(python());
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/admin_apis.py"))
        .args(["--bootstrap-server", &bootstrap, "--brokers", "3"]);
    for n in &cluster.nodes {
        cmd.arg("--data-dir-of")
            .arg(format!("{}={}", n.node_id, n.data_dir.display()));
    }
    let out = cmd.output().expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "admin_apis.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nnode 1 log:\n{}",
        cluster.nodes[0].log()
    );
    println!("{stdout}");
    assert!(stdout.contains("all admin API checks passed"), "{stdout}");
}
