//! `fjord txn ...`: transactions as their coordinators see them, like
//! `kafka-transactions.sh list|describe`, and hanging ones found and aborted
//! (`find-hanging|abort`). Spoken directly in the Kafka protocol.

mod abort;
mod hanging;
mod producers;

use std::collections::BTreeMap;

use kafka_protocol::messages::ListTransactionsRequest;

use super::client::ConnectArgs;
use super::group::{broker_addresses, check, metadata, str, until_ready};
use super::wire::Wire;
use super::CliError;

#[derive(clap::Subcommand, Debug)]
pub enum TxnCommand {
    /// List transactional ids on every broker, with their producer and state.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Only transactions in this state (Empty, Ongoing, PrepareCommit, ...).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one transactional id: producer id and epoch, state, timeout, start time and
    /// the partitions of its open transaction.
    Describe {
        #[command(flatten)]
        connect: ConnectArgs,
        transactional_id: String,
        /// Print the start time as epoch milliseconds instead of ISO-8601, for scripts.
        #[arg(long)]
        raw_timestamps: bool,
    },
    /// Find transactions open on partitions that their coordinator will never end: they
    /// hold the last stable offset, so read_committed consumers stop there. Like
    /// kafka-transactions.sh find-hanging.
    FindHanging(hanging::FindHangingArgs),
    /// Abort a (hanging) transaction on one partition by writing its ABORT marker there.
    /// Like kafka-transactions.sh abort.
    Abort(abort::AbortArgs),
}

pub fn run(cmd: TxnCommand) -> Result<(), CliError> {
    match cmd {
        TxnCommand::List { connect, state } => list(&connect, state),
        TxnCommand::Describe {
            connect,
            transactional_id,
            raw_timestamps,
        } => describe(&connect, &transactional_id, raw_timestamps),
        TxnCommand::FindHanging(args) => hanging::run(args),
        TxnCommand::Abort(args) => abort::run(args),
    }
}

fn list(connect: &ConnectArgs, state: Option<String>) -> Result<(), CliError> {
    let md = metadata(connect, Some(&[]))?;
    let mut found: BTreeMap<String, (i64, String, i32)> = BTreeMap::new();
    for (broker, addr) in broker_addresses(&md) {
        let req = ListTransactionsRequest::default()
            .with_state_filters(state.iter().map(|s| str(s)).collect())
            .with_duration_filter(-1);
        let resp = until_ready(connect, || {
            let resp = Wire::connect(&addr, connect)?.call(1, &req)?;
            check(resp.error_code, &format!("listing transactions on {addr}"))?;
            Ok(resp)
        })?;
        if let Some(unknown) = resp.unknown_state_filters.first() {
            return Err(CliError::Usage(format!(
                "unknown transaction state {unknown}"
            )));
        }
        for t in resp.transaction_states {
            found.insert(
                t.transactional_id.0.to_string(),
                (t.producer_id.0, t.transaction_state.to_string(), broker),
            );
        }
    }
    outln!(
        "{:<40} {:>12} {:<16} COORDINATOR",
        "TRANSACTIONAL-ID",
        "PRODUCER-ID",
        "STATE"
    );
    for (id, (pid, state, broker)) in found {
        outln!("{id:<40} {pid:>12} {state:<16} {broker}");
    }
    Ok(())
}

fn describe(connect: &ConnectArgs, txn_id: &str, raw_timestamps: bool) -> Result<(), CliError> {
    let t = hanging::describe(connect, txn_id)?
        .ok_or_else(|| CliError::Kafka(format!("describing {txn_id}: TransactionalIdNotFound")))?;
    outln!("transactional id: {txn_id}");
    outln!("producer id:      {}", t.producer_id.0);
    outln!("producer epoch:   {}", t.producer_epoch);
    outln!("state:            {}", t.transaction_state);
    outln!("timeout ms:       {}", t.transaction_timeout_ms);
    if t.transaction_start_time_ms >= 0 {
        let started = if raw_timestamps {
            t.transaction_start_time_ms.to_string()
        } else {
            crate::time::iso8601_ms(t.transaction_start_time_ms)
        };
        outln!("started at:       {started}");
    }
    for topic in &t.topics {
        let parts: Vec<String> = topic.partitions.iter().map(|p| p.to_string()).collect();
        outln!("partitions:       {} [{}]", topic.topic.0, parts.join(","));
    }
    Ok(())
}
