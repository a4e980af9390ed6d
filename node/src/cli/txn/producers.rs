//! What partition leaders know of their producers (DescribeProducers), shared by
//! `txn find-hanging` and `txn abort`.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_producers_response::ProducerState;
use kafka_protocol::messages::{DescribeProducersRequest, MetadataResponse, TopicName};

use crate::cli::client::ConnectArgs;
use crate::cli::group::{broker_addresses, check, error_name, str};
use crate::cli::wire::Wire;
use crate::cli::CliError;

pub type TopicPartition = (String, i32);

/// A partition as the metadata answer describes it: its leader and replicas.
pub struct PartitionInfo {
    pub leader: i32,
    pub replicas: Vec<i32>,
}

/// Every partition of the metadata answer; an error for a topic that does not exist.
pub fn partitions(
    md: &MetadataResponse,
) -> Result<BTreeMap<TopicPartition, PartitionInfo>, CliError> {
    let mut out = BTreeMap::new();
    for t in &md.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        if t.error_code != 0 {
            return Err(CliError::Kafka(format!(
                "topic {name}: {}",
                error_name(t.error_code)
            )));
        }
        for p in &t.partitions {
            out.insert(
                (name.clone(), p.partition_index),
                PartitionInfo {
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
                },
            );
        }
    }
    Ok(out)
}

/// The address of a partition's leader.
pub fn leader_address(
    md: &MetadataResponse,
    all: &BTreeMap<TopicPartition, PartitionInfo>,
    tp: &TopicPartition,
) -> Result<String, CliError> {
    let (topic, partition) = tp;
    let info = all
        .get(tp)
        .ok_or_else(|| CliError::Kafka(format!("{topic}-{partition}: UnknownTopicOrPartition")))?;
    broker_addresses(md)
        .remove(&info.leader)
        .ok_or_else(|| CliError::Kafka(format!("{topic}-{partition} has no leader now")))
}

/// The producers each of `wanted` knows, asked of its leader (the only replica Fjord
/// answers DescribeProducers on).
pub fn describe(
    connect: &ConnectArgs,
    md: &MetadataResponse,
    all: &BTreeMap<TopicPartition, PartitionInfo>,
    wanted: &[TopicPartition],
) -> Result<Vec<(TopicPartition, Vec<ProducerState>)>, CliError> {
    let mut by_leader: BTreeMap<String, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for tp in wanted {
        by_leader
            .entry(leader_address(md, all, tp)?)
            .or_default()
            .entry(tp.0.clone())
            .or_default()
            .push(tp.1);
    }
    let mut out = Vec::new();
    for (addr, topics) in by_leader {
        let req = DescribeProducersRequest::default().with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    TopicRequest::default()
                        .with_name(TopicName(str(&t)))
                        .with_partition_indexes(ps)
                })
                .collect(),
        );
        let resp = Wire::connect(&addr, connect)?.call(0, &req)?;
        for t in resp.topics {
            for p in t.partitions {
                let tp = (t.name.0.to_string(), p.partition_index);
                check(
                    p.error_code,
                    &format!("describing the producers of {}-{}", tp.0, tp.1),
                )?;
                out.push((tp, p.active_producers));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
