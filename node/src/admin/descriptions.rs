//! The HELP text and unit of every metric Fjord exports, so `/metrics` explains itself.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

use Kind::{Counter, Gauge, Histogram};

/// (kind, name, unit, help). A metric missing here is exported without HELP; the
/// system test `every_metric_has_help` scrapes a busy node to catch that.
const METRICS: &[(Kind, &str, Option<Unit>, &str)] = &[
    (
        Counter,
        "fjord_requests_total",
        None,
        "Kafka requests handled, by API.",
    ),
    (
        Histogram,
        "fjord_request_duration_seconds",
        Some(Unit::Seconds),
        "Time from reading a Kafka request to its response being ready, by API.",
    ),
    (
        Counter,
        "fjord_errors_total",
        None,
        "Error codes answered to Kafka requests, by API and error.",
    ),
    (
        Counter,
        "fjord_rejected_requests_total",
        None,
        "Requests refused before handling (unknown API or version, undecodable).",
    ),
    (
        Counter,
        "fjord_produced_bytes_total",
        Some(Unit::Bytes),
        "Record batch bytes appended by Produce, by topic.",
    ),
    (
        Counter,
        "fjord_produced_records_total",
        None,
        "Records appended by Produce, by topic.",
    ),
    (
        Counter,
        "fjord_fetched_bytes_total",
        Some(Unit::Bytes),
        "Record bytes returned to consumers by Fetch, by topic.",
    ),
    (
        Counter,
        "fjord_replica_fetched_bytes_total",
        Some(Unit::Bytes),
        "Record bytes this broker copied from partition leaders as a follower.",
    ),
    (
        Histogram,
        "fjord_replica_fetch_wait_seconds",
        Some(Unit::Seconds),
        "Time a follower's fetch waited on its leader, by leader.",
    ),
    (
        Histogram,
        "fjord_replica_apply_seconds",
        Some(Unit::Seconds),
        "Time a follower took to append what it fetched, by leader.",
    ),
    (
        Counter,
        "fjord_cleaner_bytes_written_total",
        Some(Unit::Bytes),
        "Bytes written by log compaction.",
    ),
    (
        Counter,
        "fjord_cleaner_records_removed_total",
        None,
        "Records removed by log compaction.",
    ),
    (
        Counter,
        "fjord_rpc_peers_refused_total",
        None,
        "Connections to the rpc listener refused: no cluster certificate, or no cluster secret.",
    ),
    (
        Counter,
        "fjord_rpc_calls_refused_total",
        None,
        "Calls on the rpc port refused: the caller claimed another node's id, or is not a member.",
    ),
    (
        Counter,
        "fjord_admin_requests_refused_total",
        None,
        "Cluster changes on the admin port refused for want of the cluster secret.",
    ),
    (
        Counter,
        "fjord_connections_refused_total",
        None,
        "Kafka connections refused or delayed by connection limits, by reason (max.connections, max.connections.per.ip, max.connection.creation.rate, connection_creation_rate).",
    ),
    (
        Counter,
        "fjord_connections_closed_idle_total",
        None,
        "Kafka connections closed after connections.max.idle.ms without traffic.",
    ),
    (
        Counter,
        "fjord_sasl_authentications_total",
        None,
        "SASL authentications, by result.",
    ),
    (
        Counter,
        "fjord_tls_handshake_failures_total",
        None,
        "TLS handshakes that failed on Kafka listeners.",
    ),
    (
        Gauge,
        "fjord_connections_open",
        None,
        "Open Kafka client connections.",
    ),
    (
        Gauge,
        "fjord_replica_fetches_waiting",
        None,
        "Follower fetches parked until data arrives or their wait ends.",
    ),
    (
        Gauge,
        "fjord_request_memory_bytes",
        Some(Unit::Bytes),
        "Memory held by requests being read or handled (bounded by queued.max.request.bytes).",
    ),
    (
        Gauge,
        "fjord_response_memory_bytes",
        Some(Unit::Bytes),
        "Memory held by responses not yet written to their clients.",
    ),
    (
        Gauge,
        "fjord_quota_sensors",
        None,
        "Client quota rate sensors alive (one per user and client id with traffic).",
    ),
    (
        Gauge,
        "fjord_partitions",
        None,
        "Partition replicas hosted by this broker, by role (leader or follower).",
    ),
    (
        Gauge,
        "fjord_partition_log_end_offset",
        None,
        "Log end offset of each hosted partition.",
    ),
    (
        Gauge,
        "fjord_partition_high_watermark",
        None,
        "High watermark of each hosted partition.",
    ),
    (
        Gauge,
        "fjord_partition_isr_size",
        None,
        "In-sync replicas of each partition this broker leads.",
    ),
    (
        Gauge,
        "fjord_under_replicated_partitions",
        None,
        "Partitions this broker leads whose ISR is smaller than their replica set.",
    ),
    (
        Gauge,
        "fjord_offline_partitions",
        None,
        "Partitions with no live leader, as the metadata describes them.",
    ),
    (
        Gauge,
        "fjord_brokers_registered",
        None,
        "Brokers registered in the cluster metadata.",
    ),
    (
        Gauge,
        "fjord_brokers_fenced",
        None,
        "Registered brokers currently fenced.",
    ),
    (
        Gauge,
        "fjord_metadata_applied_index",
        None,
        "Last metadata log index this node applied.",
    ),
    (
        Gauge,
        "fjord_active_controller",
        None,
        "1 on the node that is the active controller (Raft leader), else 0.",
    ),
    (
        Gauge,
        "fjord_raft_term",
        None,
        "Current Raft term of the metadata quorum as this node sees it.",
    ),
    (
        Gauge,
        "fjord_raft_leader",
        None,
        "Node id of the Raft leader this node knows, -1 when none.",
    ),
    (
        Gauge,
        "fjord_raft_last_log_index",
        None,
        "Last index in this node's metadata log.",
    ),
    (
        Gauge,
        "fjord_raft_commit_index",
        None,
        "Last committed index of the metadata log this node knows.",
    ),
    (
        Gauge,
        "fjord_raft_apply_lag",
        None,
        "Committed metadata entries not yet applied on this node.",
    ),
    (
        Gauge,
        "fjord_consumer_group_lag",
        None,
        "Messages behind the high watermark, by group, topic and partition (on the coordinator).",
    ),
    (
        Gauge,
        "process_resident_memory_bytes",
        Some(Unit::Bytes),
        "Resident set size of the fjord process.",
    ),
    (
        Gauge,
        "process_open_fds",
        None,
        "Open file descriptors of the fjord process.",
    ),
];

/// Registers every description with the installed recorder.
pub fn describe_all() {
    for (kind, name, unit, help) in METRICS {
        match (kind, unit) {
            (Counter, Some(u)) => describe_counter!(*name, *u, *help),
            (Counter, None) => describe_counter!(*name, *help),
            (Gauge, Some(u)) => describe_gauge!(*name, *u, *help),
            (Gauge, None) => describe_gauge!(*name, *help),
            (Histogram, Some(u)) => describe_histogram!(*name, *u, *help),
            (Histogram, None) => describe_histogram!(*name, *help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::METRICS;

    #[test]
    fn names_are_unique_and_prometheus_shaped() {
        let mut seen = std::collections::BTreeSet::new();
        for (_, name, _, help) in METRICS {
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name}"
            );
            assert!(help.ends_with('.'), "{name}: {help}");
        }
    }
}
