//! DescribeQuorum (`kafka-metadata-quorum.sh describe`): the Raft quorum that holds the
//! cluster metadata, described by the active controller, as a KRaft broker forwards it.
//! Raft log indexes stand in for the offsets of Kafka's `__cluster_metadata` log.

use std::time::Duration;

use fjord_controller::{ControllerRequest, ControllerResponse, QuorumNode, QuorumStatus};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;
use crate::time::now_ms;

pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn describe(ctx: &RequestContext, req: DescribeQuorumRequest) -> ResponseKind {
    let error = |code: ResponseError, msg: String| {
        ResponseKind::DescribeQuorum(
            DescribeQuorumResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(msg))),
        )
    };
    if !authz::Check::new(ctx).cluster(Op::Describe) {
        let e = authz::cluster_denied();
        return error(e.code, e.message);
    }
    let status = match ctx
        .broker
        .controller
        .submit_within(ControllerRequest::DescribeQuorum, Duration::from_secs(5))
        .await
    {
        Ok(ControllerResponse::Quorum(q)) => q,
        Ok(other) => {
            return error(
                ResponseError::UnknownServerError,
                format!("unexpected controller answer {other:?}"),
            )
        }
        Err(e) => {
            let e = KafkaError::from(&e);
            return error(e.code, e.message);
        }
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let known = t.topic_name.as_str() == METADATA_TOPIC;
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    if known && p.partition_index == 0 {
                        partition(&status, now_ms())
                    } else {
                        PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(None)
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_name(t.topic_name)
                .with_partitions(partitions)
        })
        .collect();
    let nodes = if ctx.version() >= 2 {
        status.nodes.iter().filter_map(node).collect()
    } else {
        Vec::new()
    };
    ResponseKind::DescribeQuorum(
        DescribeQuorumResponse::default()
            .with_error_message(None)
            .with_topics(topics)
            .with_nodes(nodes),
    )
}

/// The metadata log as the active controller sees it: its offsets are Raft log indexes
/// plus one (an end offset is the next index to write).
fn partition(status: &QuorumStatus, now: i64) -> PartitionData {
    let replica = |n: &QuorumNode| {
        let fetched = n
            .last_ack_ms_ago
            .map_or(-1, |ago| now - i64::try_from(ago).unwrap_or(now));
        ReplicaState::default()
            .with_replica_id(BrokerId(node_id(n.node_id)))
            .with_log_end_offset(n.matched_index.map_or(-1, end_offset))
            .with_last_fetch_timestamp(fetched)
            // Caught up means holding the leader's whole log at that acknowledgement.
            .with_last_caught_up_timestamp(if n.lag == Some(0) { fetched } else { -1 })
    };
    PartitionData::default()
        .with_partition_index(0)
        .with_error_message(None)
        .with_leader_id(BrokerId(node_id(status.leader)))
        .with_leader_epoch(i32::try_from(status.term).unwrap_or(i32::MAX))
        .with_high_watermark(status.committed_index.map_or(0, end_offset))
        .with_current_voters(
            status
                .nodes
                .iter()
                .filter(|n| n.voter)
                .map(replica)
                .collect(),
        )
        .with_observers(
            status
                .nodes
                .iter()
                .filter(|n| !n.voter)
                .map(replica)
                .collect(),
        )
}

fn end_offset(index: u64) -> i64 {
    i64::try_from(index).map_or(i64::MAX, |i| i.saturating_add(1))
}

fn node_id(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(-1)
}

/// A voter's endpoint: its RPC address under the listener name KRaft uses for it.
fn node(n: &QuorumNode) -> Option<Node> {
    let (host, port) = n.rpc_address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(
        Node::default()
            .with_node_id(BrokerId(node_id(n.node_id)))
            .with_listeners(vec![Listener::default()
                .with_name(StrBytes::from_static_str("CONTROLLER"))
                .with_host(StrBytes::from_string(host.to_string()))
                .with_port(port)]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_at(id: u64, voter: bool, matched: Option<u64>, lag: Option<u64>) -> QuorumNode {
        QuorumNode {
            node_id: id,
            rpc_address: format!("10.0.0.{id}:9093"),
            voter,
            matched_index: matched,
            lag,
            last_ack_ms_ago: matched.map(|_| 100),
        }
    }

    #[test]
    fn voters_and_observers_with_offsets() {
        let status = QuorumStatus {
            leader: 1,
            term: 4,
            last_log_index: Some(41),
            committed_index: Some(40),
            nodes: vec![
                node_at(1, true, Some(41), Some(0)),
                node_at(2, true, Some(39), Some(2)),
                node_at(4, false, None, Some(42)),
            ],
        };
        let p = partition(&status, 10_000);
        assert_eq!(p.leader_id.0, 1);
        assert_eq!(p.leader_epoch, 4);
        assert_eq!(p.high_watermark, 41);
        let ids: Vec<i32> = p.current_voters.iter().map(|r| r.replica_id.0).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(p.current_voters[0].log_end_offset, 42);
        assert_eq!(p.current_voters[0].last_caught_up_timestamp, 9_900);
        assert_eq!(p.current_voters[1].last_fetch_timestamp, 9_900);
        assert_eq!(p.current_voters[1].last_caught_up_timestamp, -1);
        assert_eq!(p.observers.len(), 1);
        assert_eq!(p.observers[0].log_end_offset, -1);
        assert_eq!(p.observers[0].last_fetch_timestamp, -1);
    }

    #[test]
    fn node_endpoint_from_rpc_address() {
        let n = node(&node_at(3, true, None, None)).expect("parses");
        assert_eq!(n.node_id.0, 3);
        assert_eq!(n.listeners[0].host.as_str(), "10.0.0.3");
        assert_eq!(n.listeners[0].port, 9093);
        let mut v6 = node_at(5, true, None, None);
        v6.rpc_address = "[::1]:19093".into();
        assert_eq!(node(&v6).expect("parses").listeners[0].host.as_str(), "::1");
    }
}
