//! SIGTERM closes every partition log cleanly, under load and with leadership moving
//! while the node stops: no `closing log failed` in the node's log, and every partition
//! directory keeps its clean-shutdown marker (so the next start skips recovery).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fjord_tests::{client_config, create_topic_rf, wait_until, Cluster, FAST_FAILOVER};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const TOPIC: &str = "busy";
const PARTITIONS: i32 = 60;
const ROUNDS: usize = 3;

/// Writes to every partition with acks=1 until told to stop; returns how many records
/// were handed to the client.
fn start_load(bootstrap: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let producer: BaseProducer = client_config(&bootstrap)
            .set("acks", "1")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "10000")
            .create()
            .expect("producer");
        let mut sent = 0;
        let mut i: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let value = format!("record-{i}");
            let partition = (i % PARTITIONS as u64) as i32;
            if producer
                .send(
                    BaseRecord::<(), _>::to(TOPIC)
                        .partition(partition)
                        .payload(&value),
                )
                .is_ok()
            {
                sent += 1;
            }
            i += 1;
            if i.is_multiple_of(200) {
                producer.poll(Duration::from_millis(1));
            }
        }
        let _ = producer.flush(Duration::from_secs(5));
        sent
    })
}

/// Partition directories of a stopped node that have no clean-shutdown marker.
fn unmarked(data_dir: &Path) -> Vec<String> {
    let logs = data_dir.join("logs");
    std::fs::read_dir(&logs)
        .expect("logs dir")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.path().join(".clean-shutdown").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn sigterm_under_load_closes_every_log_cleanly() {
    let mut cluster = Cluster::start(3, 0, FAST_FAILOVER);
    let bootstrap = cluster.bootstrap();
    create_topic_rf(&bootstrap, TOPIC, PARTITIONS, 3, &[]);
    for round in 0..ROUNDS {
        let victim = (round % 3) as i32 + 1;
        let stop = Arc::new(AtomicBool::new(false));
        let load = start_load(cluster.bootstrap(), Arc::clone(&stop));
        std::thread::sleep(Duration::from_secs(2)); // let the load build up
        let before = cluster.node(victim).log().len();
        let status = cluster.node(victim).stop().expect("was running");
        stop.store(true, Ordering::Relaxed);
        let sent = load.join().expect("load thread");
        assert!(sent > 0, "round {round}: the load wrote nothing");
        let node = cluster.node(victim);
        assert!(
            status.success(),
            "round {round}: node {victim} exited {status}"
        );
        let log = node.log();
        let fresh = &log[before.min(log.len())..];
        let failed: Vec<&str> = fresh
            .lines()
            .filter(|l| l.contains("closing log failed"))
            .collect();
        assert!(
            failed.is_empty(),
            "round {round}: node {victim} failed to close logs:\n{}",
            failed.join("\n")
        );
        assert!(
            fresh.contains("stopped cleanly"),
            "round {round}: node {victim} did not stop cleanly"
        );
        let missing = unmarked(&node.data_dir);
        assert!(
            missing.is_empty(),
            "round {round}: node {victim} left {} partitions without their clean-shutdown marker: {missing:?}",
            missing.len()
        );
        node.restart();
        wait_until(
            "the restarted node is ready",
            Duration::from_secs(60),
            || cluster.status(victim).map(|_| ()),
        );
    }
}
