//! `fjord cluster log-dirs`: each broker's log directories and the size of every
//! partition in them, like `kafka-log-dirs.sh --describe`, through DescribeLogDirs.

use std::collections::BTreeSet;

use kafka_protocol::messages::describe_log_dirs_response::DescribeLogDirsResult;
use kafka_protocol::messages::DescribeLogDirsRequest;
use serde_json::{json, Value};

use crate::cli::client::ConnectArgs;
use crate::cli::group::{broker_addresses, check, error_name, metadata};
use crate::cli::wire::Wire;
use crate::cli::CliError;

#[derive(clap::Args, Debug)]
pub struct LogDirsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Only these brokers, by id (comma-separated; default: every broker). This is
    /// kafka-log-dirs.sh's --broker-list, which here names the bootstrap servers.
    #[arg(long, value_delimiter = ',', value_name = "ID,...")]
    brokers: Vec<i32>,
    /// Only the partitions of these topics (comma-separated; default: all).
    #[arg(long, value_delimiter = ',', value_name = "TOPIC,...")]
    topic_list: Vec<String>,
    /// Print Kafka's JSON (what kafka-log-dirs.sh prints) instead of a table.
    #[arg(long)]
    json: bool,
    /// Accepted for kafka-log-dirs.sh command lines; describing is all this does.
    #[arg(long, hide = true)]
    describe: bool,
}

/// One partition's replica in a log dir.
struct Replica {
    name: String,
    size: i64,
    offset_lag: i64,
    is_future: bool,
}

pub fn run(args: LogDirsArgs) -> Result<(), CliError> {
    let connect = &args.connect;
    let md = metadata(connect, Some(&[]))?;
    let addresses = broker_addresses(&md);
    let known: BTreeSet<i32> = addresses.keys().copied().collect();
    let chosen: BTreeSet<i32> = if args.brokers.is_empty() {
        known.clone()
    } else {
        args.brokers.iter().copied().collect()
    };
    let missing: Vec<String> = chosen.difference(&known).map(i32::to_string).collect();
    if !missing.is_empty() {
        let existing: Vec<String> = known.iter().map(i32::to_string).collect();
        return Err(CliError::Usage(format!(
            "no broker {} in the cluster (its brokers: {})",
            missing.join(","),
            existing.join(",")
        )));
    }
    let topics: BTreeSet<&str> = args.topic_list.iter().map(String::as_str).collect();
    let mut described = Vec::new();
    for id in &chosen {
        let Some(addr) = addresses.get(id) else {
            continue;
        };
        // Every topic (a null list), filtered here, as kafka-log-dirs.sh does.
        let resp = Wire::connect(addr, connect)?
            .call(4, &DescribeLogDirsRequest::default().with_topics(None))?;
        check(
            resp.error_code,
            &format!("describing the log dirs of broker {id}"),
        )?;
        described.push((*id, resp.results));
    }
    if args.json {
        outln!("{}", kafka_json(&described, &topics));
    } else {
        print_table(&described, &topics);
    }
    Ok(())
}

/// The replicas of `dir`, in topic and partition order, only of `topics` if any.
fn replicas(dir: &DescribeLogDirsResult, topics: &BTreeSet<&str>) -> Vec<Replica> {
    let mut out: Vec<(String, i32, Replica)> = dir
        .topics
        .iter()
        .filter(|t| topics.is_empty() || topics.contains(t.name.0.as_str()))
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let topic = t.name.0.to_string();
                let replica = Replica {
                    name: format!("{topic}-{}", p.partition_index),
                    size: p.partition_size,
                    offset_lag: p.offset_lag,
                    is_future: p.is_future_key,
                };
                (topic, p.partition_index, replica)
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out.into_iter().map(|(_, _, r)| r).collect()
}

/// Kafka's `{"version":1,"brokers":[{"broker":N,"logDirs":[...]}]}`.
fn kafka_json(described: &[(i32, Vec<DescribeLogDirsResult>)], topics: &BTreeSet<&str>) -> Value {
    let brokers: Vec<Value> = described
        .iter()
        .map(|(broker, dirs)| {
            let log_dirs: Vec<Value> = dirs
                .iter()
                .map(|dir| {
                    let partitions: Vec<Value> = replicas(dir, topics)
                        .into_iter()
                        .map(|r| {
                            json!({
                                "partition": r.name,
                                "size": r.size,
                                "offsetLag": r.offset_lag,
                                "isFuture": r.is_future,
                            })
                        })
                        .collect();
                    let error = (dir.error_code != 0).then(|| error_name(dir.error_code));
                    json!({
                        "logDir": dir.log_dir.to_string(),
                        "error": error,
                        "partitions": partitions,
                    })
                })
                .collect();
            json!({ "broker": broker, "logDirs": log_dirs })
        })
        .collect();
    json!({ "version": 1, "brokers": brokers })
}

fn print_table(described: &[(i32, Vec<DescribeLogDirsResult>)], topics: &BTreeSet<&str>) {
    for (broker, dirs) in described {
        for dir in dirs {
            let error = match dir.error_code {
                0 => "none".to_string(),
                code => error_name(code),
            };
            // Kafka answers -1 when it does not know the volume's size.
            let mut volume = String::new();
            if dir.total_bytes >= 0 {
                volume.push_str(&format!("  total {} bytes", dir.total_bytes));
            }
            if dir.usable_bytes >= 0 {
                volume.push_str(&format!("  usable {} bytes", dir.usable_bytes));
            }
            outln!(
                "Broker {broker}  log dir {}  error {error}{volume}",
                dir.log_dir
            );
            outln!(
                "    {:<40} {:>14} {:>11}  IS-FUTURE",
                "PARTITION",
                "SIZE",
                "OFFSET-LAG"
            );
            for r in replicas(dir, topics) {
                outln!(
                    "    {:<40} {:>14} {:>11}  {}",
                    r.name,
                    r.size,
                    r.offset_lag,
                    r.is_future
                );
            }
        }
    }
}
