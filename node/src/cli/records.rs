//! `fjord records delete`: DeleteRecords, as kafka-delete-records.sh runs it. Records
//! before an offset are deleted (the partition's log start moves up to it), and each
//! partition's new low watermark is printed.

use std::path::PathBuf;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use super::client::ConnectArgs;
use super::CliError;

#[derive(clap::Subcommand, Debug)]
pub enum RecordsCommand {
    /// Delete the records before an offset (DeleteRecords).
    #[command(group(
        clap::ArgGroup::new("which")
            .required(true)
            .args(["topic", "offset_json_file"])
    ))]
    Delete {
        #[command(flatten)]
        connect: ConnectArgs,
        /// The topic (every partition, or the one --partition names).
        #[arg(long, requires = "before_offset")]
        topic: Option<String>,
        /// With --topic: one partition.
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// With --topic: delete the records before this offset; -1 deletes everything
        /// up to the high watermark.
        #[arg(long, requires = "topic", allow_hyphen_values = true)]
        before_offset: Option<i64>,
        /// A JSON file as kafka-delete-records.sh reads it:
        /// {"partitions": [{"topic": "t", "partition": 0, "offset": 3}, ...]}.
        #[arg(long, value_name = "FILE")]
        offset_json_file: Option<PathBuf>,
    },
}

#[derive(Deserialize)]
struct OffsetsFile {
    partitions: Vec<OffsetEntry>,
}

#[derive(Deserialize)]
struct OffsetEntry {
    topic: String,
    partition: i32,
    offset: i64,
}

pub fn run(cmd: RecordsCommand) -> Result<(), CliError> {
    let RecordsCommand::Delete {
        connect,
        topic,
        partition,
        before_offset,
        offset_json_file,
    } = cmd;
    let admin = super::topic::admin(&connect)?;
    let wanted: Vec<(String, i32, i64)> = match (offset_json_file, topic) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
            let file: OffsetsFile = serde_json::from_str(&text)
                .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
            file.partitions
                .into_iter()
                .map(|e| (e.topic, e.partition, e.offset))
                .collect()
        }
        (None, Some(topic)) => {
            let offset = before_offset.unwrap_or(-1);
            let partitions = match partition {
                Some(p) => vec![p],
                None => partitions_of(&admin, &topic, &connect)?,
            };
            partitions
                .into_iter()
                .map(|p| (topic.clone(), p, offset))
                .collect()
        }
        (None, None) => return Err(CliError::Usage("give --topic or --offset-json-file".into())),
    };
    let mut tpl = TopicPartitionList::new();
    for (topic, partition, offset) in &wanted {
        let at = if *offset < 0 {
            Offset::End
        } else {
            Offset::Offset(*offset)
        };
        tpl.add_partition_offset(topic, *partition, at)?;
    }
    let result =
        futures::executor::block_on(admin.delete_records(&tpl, &super::topic::options(&connect)))?;
    let mut failed = Vec::new();
    outln!("{:<40} {:>9} {:>14}", "TOPIC", "PARTITION", "LOW-WATERMARK");
    for e in result.elements() {
        match e.error() {
            Ok(()) => {
                let low = match e.offset() {
                    Offset::Offset(o) => o.to_string(),
                    other => format!("{other:?}"),
                };
                outln!("{:<40} {:>9} {:>14}", e.topic(), e.partition(), low);
            }
            Err(err) => failed.push(format!("{}-{}: {err}", e.topic(), e.partition())),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::Kafka(failed.join("; ")))
    }
}

/// Every partition of `topic`, from the cluster's metadata.
fn partitions_of(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    connect: &ConnectArgs,
) -> Result<Vec<i32>, CliError> {
    let md = admin
        .inner()
        .fetch_metadata(Some(topic), connect.timeout())?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| CliError::Kafka(format!("topic '{topic}' does not exist")))?;
    if let Some(err) = t.error() {
        return Err(super::client::topic_error(topic, err));
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}
