//! `fjord txn find-hanging`: transactions open on a partition that their coordinator no
//! longer has open there, like `kafka-transactions.sh find-hanging`. Such a transaction
//! holds the partition's last stable offset, so read_committed consumers stop at it
//! until `fjord txn abort` ends it.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::ProducerState;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, ListTransactionsRequest, ProducerId, TransactionalId,
};

use super::producers::{self, TopicPartition};
use crate::cli::client::ConnectArgs;
use crate::cli::group::{broker_addresses, check, coordinator_of, metadata, str, until_ready};
use crate::cli::wire::Wire;
use crate::cli::CliError;

#[derive(clap::Args, Debug)]
#[group(id = "where", required = true, multiple = true, args = ["broker_id", "topic"])]
pub struct FindHangingArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Search the partitions with a replica on this broker.
    #[arg(long)]
    broker_id: Option<i32>,
    /// Search this topic's partitions.
    #[arg(long)]
    topic: Option<String>,
    /// Only this partition of --topic.
    #[arg(long, requires = "topic")]
    partition: Option<i32>,
    /// Only transactions whose producer last wrote more than this many minutes ago
    /// (Kafka's default: 15, the broker's largest transaction.max.timeout.ms; a live
    /// transaction cannot be older than that).
    #[arg(long, default_value_t = 15, value_name = "MINUTES")]
    max_transaction_timeout: i64,
    /// Print LastTimestamp as epoch milliseconds instead of ISO-8601, for scripts.
    #[arg(long)]
    raw_timestamps: bool,
}

/// A transaction open on a partition, as its leader describes the producer.
struct Open {
    tp: TopicPartition,
    producer: ProducerState,
}

pub fn run(args: FindHangingArgs) -> Result<(), CliError> {
    let connect = &args.connect;
    let topics = args.topic.clone().map(|t| vec![t]);
    // A null topic list asks for every topic (internal ones too, which transactional
    // offset commits write to).
    let md = metadata(connect, topics.as_deref())?;
    let all = producers::partitions(&md)?;
    let wanted: Vec<TopicPartition> = all
        .iter()
        .filter(|(tp, info)| {
            args.partition.is_none_or(|p| tp.1 == p)
                && args.broker_id.is_none_or(|b| info.replicas.contains(&b))
        })
        .map(|(tp, _)| tp.clone())
        .collect();
    if let (Some(topic), Some(p), true) = (&args.topic, args.partition, wanted.is_empty()) {
        return Err(CliError::Usage(format!("{topic} has no partition {p}")));
    }
    let now = crate::time::now_ms();
    let max_ms = args.max_transaction_timeout.saturating_mul(60_000);
    // Kafka's candidates: an open transaction whose producer has written nothing for
    // longer than any transaction may last.
    let candidates: Vec<Open> = producers::describe(connect, &md, &all, &wanted)?
        .into_iter()
        .flat_map(|(tp, states)| {
            states
                .into_iter()
                .filter(|s| s.current_txn_start_offset >= 0)
                .filter(|s| now.saturating_sub(s.last_timestamp) > max_ms)
                .map(move |producer| Open {
                    tp: tp.clone(),
                    producer,
                })
        })
        .collect();
    let hanging = if candidates.is_empty() {
        Vec::new()
    } else {
        let pids: BTreeSet<i64> = candidates
            .iter()
            .map(|o| o.producer.producer_id.0)
            .collect();
        let ids = transactional_ids(connect, &pids)?;
        let mut described = BTreeMap::new();
        for id in ids.values() {
            described.insert(id.clone(), describe(connect, id)?);
        }
        candidates
            .into_iter()
            .filter(|o| {
                let id = ids.get(&o.producer.producer_id.0);
                let state = id.and_then(|id| described.get(id)).and_then(Option::as_ref);
                is_hanging(o, state)
            })
            .collect()
    };
    print(&hanging, now, args.raw_timestamps);
    Ok(())
}

/// Whether an open transaction is one its coordinator will not end: the coordinator
/// knows no transactional id for the producer, or its transaction for that id is
/// another producer's, or is not in progress, or does not include the partition. (A
/// coordinator in progress with a newer producer epoch still ends the partition's
/// transaction: its marker closes whatever the producer has open there.)
fn is_hanging(open: &Open, state: Option<&TransactionState>) -> bool {
    let Some(t) = state else {
        return true;
    };
    let in_progress = matches!(
        t.transaction_state.as_str(),
        "Ongoing" | "PrepareCommit" | "PrepareAbort"
    );
    let (topic, partition) = &open.tp;
    let includes = t
        .topics
        .iter()
        .any(|x| x.topic.0.as_str() == topic && x.partitions.contains(partition));
    t.producer_id != open.producer.producer_id || !in_progress || !includes
}

/// The transactional id of each producer id, asked of every broker (each lists the ids
/// it coordinates).
fn transactional_ids(
    connect: &ConnectArgs,
    pids: &BTreeSet<i64>,
) -> Result<BTreeMap<i64, String>, CliError> {
    let md = metadata(connect, Some(&[]))?;
    let req = ListTransactionsRequest::default()
        .with_producer_id_filters(pids.iter().map(|p| ProducerId(*p)).collect())
        .with_duration_filter(-1);
    let mut out = BTreeMap::new();
    for addr in broker_addresses(&md).values() {
        let resp = until_ready(connect, || {
            let resp = Wire::connect(addr, connect)?.call(1, &req)?;
            check(resp.error_code, &format!("listing transactions on {addr}"))?;
            Ok(resp)
        })?;
        for t in resp.transaction_states {
            out.insert(t.producer_id.0, t.transactional_id.0.to_string());
        }
    }
    Ok(out)
}

/// The coordinator's view of `txn_id`; `None` when it does not know the id.
pub(super) fn describe(
    connect: &ConnectArgs,
    txn_id: &str,
) -> Result<Option<TransactionState>, CliError> {
    until_ready(connect, || {
        let resp = coordinator_of(connect, txn_id, 1)?.call(
            0,
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(str(txn_id))]),
        )?;
        let t = resp
            .transaction_states
            .into_iter()
            .next()
            .ok_or_else(|| CliError::Kafka("empty DescribeTransactions answer".into()))?;
        if t.error_code == ResponseError::TransactionalIdNotFound.code() {
            return Ok(None);
        }
        check(t.error_code, &format!("describing {txn_id}"))?;
        Ok(Some(t))
    })
}

/// Kafka's table: one row per hanging transaction.
fn print(hanging: &[Open], now: i64, raw_timestamps: bool) {
    let row = |cols: [String; 8]| {
        outln!(
            "{:<30} {:>9} {:>12} {:>13} {:>16} {:>12} {:<24} {:>13}",
            cols[0],
            cols[1],
            cols[2],
            cols[3],
            cols[4],
            cols[5],
            cols[6],
            cols[7]
        );
    };
    row([
        "Topic",
        "Partition",
        "ProducerId",
        "ProducerEpoch",
        "CoordinatorEpoch",
        "StartOffset",
        "LastTimestamp",
        "Duration(min)",
    ]
    .map(String::from));
    for o in hanging {
        let p = &o.producer;
        let last = if raw_timestamps {
            p.last_timestamp.to_string()
        } else {
            crate::time::iso8601_ms(p.last_timestamp)
        };
        row([
            o.tp.0.clone(),
            o.tp.1.to_string(),
            p.producer_id.0.to_string(),
            p.producer_epoch.to_string(),
            p.coordinator_epoch.to_string(),
            p.current_txn_start_offset.to_string(),
            last,
            (now.saturating_sub(p.last_timestamp) / 60_000).to_string(),
        ]);
    }
}
