//! ListOffsets: earliest, latest, by timestamp, max timestamp.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;
use crate::replica::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const EARLIEST_PENDING_UPLOAD: i64 = -5;

pub fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ResponseKind {
    let with_epoch = ctx.version() >= 4;
    let read_committed = req.isolation_level == 1;
    let check = authz::Check::new(ctx);
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let describable = check.topic(Op::Describe, &name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    let replica = ctx.broker.replicas.get(&name, p.partition_index);
                    let answer = match replica {
                        _ if !describable => Err(authz::topic_denied(&name)),
                        None => Err(KafkaError::new(
                            ResponseError::UnknownTopicOrPartition,
                            "unknown topic or partition",
                        )),
                        Some(r) if !r.is_leader() => Err(KafkaError::new(
                            ResponseError::NotLeaderOrFollower,
                            "not the leader",
                        )),
                        Some(replica) => lookup(
                            &replica,
                            p.timestamp,
                            p.current_leader_epoch,
                            read_committed,
                        ),
                    };
                    match answer {
                        Ok((offset, timestamp, epoch)) => {
                            r.offset = offset;
                            r.timestamp = timestamp;
                            if with_epoch {
                                r.leader_epoch = epoch;
                            }
                        }
                        Err(e) => r.error_code = e.code(),
                    }
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
}

/// `(offset, timestamp, leader epoch)`; offset -1 means no such record.
fn lookup(
    replica: &Partition,
    ts: i64,
    current_epoch: i32,
    read_committed: bool,
) -> Result<(i64, i64, i32), KafkaError> {
    replica
        .check_leader_epoch(current_epoch)
        .map_err(|e| KafkaError::from(&e))?;
    let map = |e: crate::replica::ReplicaError| KafkaError::from(&e);
    match ts {
        LATEST => {
            let offset = if read_committed {
                replica.last_stable_offset()
            } else {
                replica.high_watermark()
            };
            Ok((offset, -1, replica.leader_epoch()))
        }
        EARLIEST | EARLIEST_LOCAL => {
            let offset = replica.log_start_offset();
            Ok((offset, -1, replica.epoch_for_offset(offset)))
        }
        EARLIEST_PENDING_UPLOAD => Ok((-1, -1, -1)),
        MAX_TIMESTAMP => Ok(match replica.max_timestamp().map_err(map)? {
            Some((t, offset)) => (offset, t, replica.epoch_for_offset(offset)),
            None => (-1, -1, -1),
        }),
        t if t >= 0 => Ok(match replica.offset_for_timestamp(t).map_err(map)? {
            Some((offset, found)) => (offset, found, replica.epoch_for_offset(offset)),
            None => (-1, -1, -1),
        }),
        other => Err(KafkaError::new(
            ResponseError::InvalidRequest,
            format!("invalid timestamp {other}"),
        )),
    }
}
