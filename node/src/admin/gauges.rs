//! Gauges sampled on the housekeeping tick: hosted partitions, the cluster as the
//! metadata describes it, the local Raft state, consumer lag and the process itself.

use std::sync::Mutex;

use crate::broker::Broker;

/// A gauge that the code changing it keeps (open connections, parked follower fetches).
/// Each change sets the absolute value, under a lock so that racing changes cannot
/// publish out of order, and every sample sets it again: the idle timeout that drops
/// the gauges of deleted partitions must not drop these, nor may one reset them.
pub struct LiveGauge {
    name: &'static str,
    value: Mutex<i64>,
}

impl LiveGauge {
    pub const fn new(name: &'static str) -> Self {
        LiveGauge {
            name,
            value: Mutex::new(0),
        }
    }

    pub fn add(&self, delta: i64) {
        let mut v = self.value.lock().unwrap_or_else(|e| e.into_inner());
        *v += delta;
        metrics::gauge!(self.name).set(*v as f64);
    }

    fn publish(&self) {
        self.add(0);
    }
}

pub static CONNECTIONS_OPEN: LiveGauge = LiveGauge::new("fjord_connections_open");
pub static REPLICA_FETCHES_WAITING: LiveGauge = LiveGauge::new("fjord_replica_fetches_waiting");

pub fn record(broker: &Broker) {
    CONNECTIONS_OPEN.publish();
    REPLICA_FETCHES_WAITING.publish();
    metrics::gauge!("fjord_request_memory_bytes").set(broker.request_pool.in_use() as f64);
    broker.response_budget.publish();
    metrics::gauge!("fjord_quota_sensors").set(broker.quotas.sensor_count() as f64);
    partitions(broker);
    cluster(broker);
    raft(broker);
    consumer_lag(broker);
    process();
}

fn partitions(broker: &Broker) {
    let partitions = broker.replicas.all();
    let leaders = partitions.iter().filter(|p| p.is_leader()).count();
    metrics::gauge!("fjord_partitions", "role" => "leader").set(leaders as f64);
    metrics::gauge!("fjord_partitions", "role" => "follower")
        .set((partitions.len() - leaders) as f64);
    for p in &partitions {
        let labels = [
            ("topic", p.tp.topic.clone()),
            ("partition", p.tp.partition.to_string()),
        ];
        metrics::gauge!("fjord_partition_log_end_offset", &labels).set(p.log_end_offset() as f64);
        metrics::gauge!("fjord_partition_high_watermark", &labels).set(p.high_watermark() as f64);
        if p.is_leader() {
            metrics::gauge!("fjord_partition_isr_size", &labels).set(p.isr().len() as f64);
        }
    }
}

fn cluster(broker: &Broker) {
    let md = broker.metadata();
    metrics::gauge!("fjord_metadata_applied_index").set(md.last_applied_index as f64);
    metrics::gauge!("fjord_brokers_registered").set(md.brokers.len() as f64);
    let fenced = md.brokers.values().filter(|b| b.fenced).count();
    metrics::gauge!("fjord_brokers_fenced").set(fenced as f64);
    let offline = md
        .topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .filter(|p| p.leader < 0 || !md.is_live(p.leader))
        .count();
    metrics::gauge!("fjord_offline_partitions").set(offline as f64);
}

fn raft(broker: &Broker) {
    let s = broker.controller.raft_stats();
    metrics::gauge!("fjord_active_controller").set(if broker.controller.is_active() {
        1.0
    } else {
        0.0
    });
    metrics::gauge!("fjord_raft_term").set(s.term as f64);
    metrics::gauge!("fjord_raft_leader").set(s.leader.map_or(-1.0, |l| l as f64));
    metrics::gauge!("fjord_raft_last_log_index").set(s.last_log_index as f64);
    metrics::gauge!("fjord_raft_commit_index").set(s.committed_index as f64);
    metrics::gauge!("fjord_raft_apply_lag")
        .set(s.committed_index.saturating_sub(s.applied_index) as f64);
}

/// Lag of every group this node coordinates, against this node's copy of each partition
/// (so it is reported where the coordinator also hosts the partition).
fn consumer_lag(broker: &Broker) {
    for shard in broker.groups.shards() {
        for (group, topic, partition, offset) in shard.committed_offsets() {
            let Some(p) = broker.replicas.get(&topic, partition) else {
                continue;
            };
            let lag = (p.high_watermark() - offset).max(0);
            let labels = [
                ("group", group),
                ("topic", topic),
                ("partition", partition.to_string()),
            ];
            metrics::gauge!("fjord_consumer_group_lag", &labels).set(lag as f64);
        }
    }
}

/// Resident memory and open descriptors, under Prometheus's standard process names.
fn process() {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok());
        if let Some(kib) = rss_kib {
            metrics::gauge!("process_resident_memory_bytes").set(kib * 1024.0);
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(fds.count() as f64);
    }
}
