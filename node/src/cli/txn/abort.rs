//! `fjord txn abort`: ends a hanging transaction on one partition by writing an ABORT
//! marker for its producer there, like `kafka-transactions.sh abort` (Kafka's
//! Admin.abortTransaction: WriteTxnMarkers to the partition's leader).

use std::collections::BTreeMap;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{MetadataResponse, ProducerId, TopicName, WriteTxnMarkersRequest};

use super::producers::{self, PartitionInfo, TopicPartition};
use crate::cli::client::ConnectArgs;
use crate::cli::group::{check, metadata, str};
use crate::cli::wire::Wire;
use crate::cli::CliError;

#[derive(clap::Args, Debug)]
#[group(id = "which", required = true, multiple = false, args = ["start_offset", "producer_id"])]
pub struct AbortArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The topic of the partition the transaction hangs on.
    #[arg(long)]
    topic: String,
    /// The partition the transaction hangs on.
    #[arg(long)]
    partition: i32,
    /// The offset the transaction starts at (find-hanging's StartOffset); its producer
    /// is looked up on the partition's leader.
    #[arg(long)]
    start_offset: Option<i64>,
    /// The producer whose transaction to abort, instead of --start-offset.
    #[arg(long, requires_all = ["producer_epoch", "coordinator_epoch"])]
    producer_id: Option<i64>,
    /// With --producer-id: the producer's epoch.
    #[arg(long, requires = "producer_id", allow_negative_numbers = true)]
    producer_epoch: Option<i16>,
    /// With --producer-id: the coordinator epoch of the producer's last marker on the
    /// partition (-1 for none).
    #[arg(long, requires = "producer_id", allow_negative_numbers = true)]
    coordinator_epoch: Option<i32>,
}

/// The producer of the transaction to abort: (id, epoch, coordinator epoch).
type Target = (i64, i16, i32);

pub fn run(args: AbortArgs) -> Result<(), CliError> {
    let connect = &args.connect;
    let tp = (args.topic.clone(), args.partition);
    let md = metadata(connect, Some(std::slice::from_ref(&args.topic)))?;
    let all = producers::partitions(&md)?;
    let leader = producers::leader_address(&md, &all, &tp)?;
    let (producer_id, producer_epoch, coordinator_epoch) = match args.start_offset {
        Some(offset) => by_start_offset(connect, &md, &all, &tp, offset)?,
        None => match (
            args.producer_id,
            args.producer_epoch,
            args.coordinator_epoch,
        ) {
            (Some(id), Some(epoch), Some(coordinator)) => (id, epoch, coordinator),
            _ => {
                return Err(CliError::Usage(
                    "--producer-id needs --producer-epoch and --coordinator-epoch".into(),
                ))
            }
        },
    };
    let marker = WritableTxnMarker::default()
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
        .with_transaction_result(false)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(TopicName(str(&tp.0)))
            .with_partition_indexes(vec![tp.1])]);
    let resp = Wire::connect(&leader, connect)?.call(
        1,
        &WriteTxnMarkersRequest::default().with_markers(vec![marker]),
    )?;
    let code = resp
        .markers
        .iter()
        .flat_map(|m| &m.topics)
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == tp.1)
        .map(|p| p.error_code)
        .ok_or_else(|| CliError::Kafka("WriteTxnMarkers answered no partition".into()))?;
    check(
        code,
        &format!(
            "aborting the transaction of producer {producer_id} on {}-{}",
            tp.0, tp.1
        ),
    )?;
    outln!(
        "Aborted the transaction of producer {producer_id} (epoch {producer_epoch}) on {}-{}.",
        tp.0,
        tp.1
    );
    Ok(())
}

/// The producer whose open transaction on `tp` starts at `offset`, as Kafka's tool finds
/// it (DescribeProducers on the leader).
fn by_start_offset(
    connect: &ConnectArgs,
    md: &MetadataResponse,
    all: &BTreeMap<TopicPartition, PartitionInfo>,
    tp: &TopicPartition,
    offset: i64,
) -> Result<Target, CliError> {
    let described = producers::describe(connect, md, all, std::slice::from_ref(tp))?;
    let found = described
        .into_iter()
        .flat_map(|(_, states)| states)
        .find(|s| s.current_txn_start_offset == offset)
        .ok_or_else(|| {
            CliError::Kafka(format!(
                "no open transaction starts at offset {offset} of {}-{}",
                tp.0, tp.1
            ))
        })?;
    let epoch = i16::try_from(found.producer_epoch).map_err(|_| {
        CliError::Kafka(format!(
            "implausible producer epoch {}",
            found.producer_epoch
        ))
    })?;
    Ok((found.producer_id.0, epoch, found.coordinator_epoch))
}
