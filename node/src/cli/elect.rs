//! `fjord cluster elect-leaders`: preferred or unclean leader elections on request, as
//! kafka-leader-election.sh runs them (ElectLeaders).

use std::path::PathBuf;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{ElectLeadersRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use serde::Deserialize;

use super::client::ConnectArgs;
use super::wire::Wire;
use super::CliError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ElectionType {
    /// Move leadership to the first live in-sync replica of the assignment.
    Preferred,
    /// Elect a replica outside the ISR where no in-sync replica is alive (may lose
    /// acknowledged records).
    Unclean,
}

impl ElectionType {
    fn code(self) -> i8 {
        match self {
            ElectionType::Preferred => 0,
            ElectionType::Unclean => 1,
        }
    }

    fn label(self) -> &'static str {
        match self {
            ElectionType::Preferred => "PREFERRED",
            ElectionType::Unclean => "UNCLEAN",
        }
    }
}

#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("which")
        .required(true)
        .args(["all_topic_partitions", "topic", "path_to_json_file"])
))]
pub struct ElectArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The kind of election.
    #[arg(long, value_enum)]
    pub election_type: ElectionType,
    /// Every partition of every topic.
    #[arg(long)]
    pub all_topic_partitions: bool,
    /// One topic (every partition, or the one --partition names).
    #[arg(long)]
    pub topic: Option<String>,
    /// With --topic: one partition.
    #[arg(long, requires = "topic")]
    pub partition: Option<i32>,
    /// A JSON file as kafka-leader-election.sh reads it:
    /// {"partitions": [{"topic": "t", "partition": 0}, ...]}.
    #[arg(long, value_name = "FILE")]
    pub path_to_json_file: Option<PathBuf>,
}

#[derive(Deserialize)]
struct PartitionsFile {
    partitions: Vec<PartitionEntry>,
}

#[derive(Deserialize)]
struct PartitionEntry {
    topic: String,
    partition: i32,
}

/// What one ElectLeaders call did, partition by partition.
#[derive(Debug, Default)]
pub struct ElectionOutcome {
    pub elected: Vec<String>,
    pub not_needed: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// Runs one election over `partitions` (`None`: all of them).
pub fn elect(
    wire: &mut Wire,
    kind: ElectionType,
    partitions: Option<Vec<(String, Vec<i32>)>>,
    timeout_ms: i32,
) -> Result<ElectionOutcome, CliError> {
    let topic_partitions = partitions.map(|list| {
        list.into_iter()
            .map(|(topic, parts)| {
                TopicPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(parts)
            })
            .collect()
    });
    let resp = wire.call(
        2,
        &ElectLeadersRequest::default()
            .with_election_type(kind.code())
            .with_topic_partitions(topic_partitions)
            .with_timeout_ms(timeout_ms),
    )?;
    if resp.error_code != 0 {
        return Err(CliError::Kafka(format!(
            "leader election failed: {}",
            describe_code(resp.error_code)
        )));
    }
    let mut out = ElectionOutcome::default();
    for t in resp.replica_election_results {
        for p in t.partition_result {
            let name = format!("{}-{}", t.topic.as_str(), p.partition_id);
            match p.error_code {
                0 => out.elected.push(name),
                c if c == ResponseError::ElectionNotNeeded.code() => out.not_needed.push(name),
                c => {
                    let mut why = describe_code(c);
                    if let Some(m) = p.error_message.as_deref().filter(|m| !m.is_empty()) {
                        why = format!("{why}: {m}");
                    }
                    out.failed.push((name, why));
                }
            }
        }
    }
    Ok(out)
}

fn describe_code(code: i16) -> String {
    ResponseError::try_from_code(code)
        .map(|e| e.to_string())
        .unwrap_or_else(|| format!("error code {code}"))
}

pub fn run(args: ElectArgs) -> Result<(), CliError> {
    let partitions = if args.all_topic_partitions {
        None
    } else if let Some(topic) = &args.topic {
        let parts = match args.partition {
            Some(p) => vec![p],
            None => topic_partitions(&args.connect, topic)?,
        };
        Some(vec![(topic.clone(), parts)])
    } else if let Some(path) = &args.path_to_json_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
        let file: PartitionsFile = serde_json::from_str(&text).map_err(|e| {
            CliError::Usage(format!("{} is not a partition list: {e}", path.display()))
        })?;
        let mut grouped: Vec<(String, Vec<i32>)> = Vec::new();
        for e in file.partitions {
            match grouped.iter_mut().find(|(t, _)| *t == e.topic) {
                Some((_, parts)) => parts.push(e.partition),
                None => grouped.push((e.topic, vec![e.partition])),
            }
        }
        Some(grouped)
    } else {
        return Err(CliError::Usage(
            "give --all-topic-partitions, --topic or --path-to-json-file".into(),
        ));
    };
    let mut wire = Wire::connect(&args.connect.bootstrap_server, &args.connect)?;
    let timeout = i32::try_from(args.connect.timeout_ms).unwrap_or(i32::MAX);
    let outcome = elect(&mut wire, args.election_type, partitions, timeout)?;
    let label = args.election_type.label();
    if !outcome.elected.is_empty() {
        outln!(
            "Successfully completed leader election ({label}) for partitions {}",
            outcome.elected.join(", ")
        );
    }
    if !outcome.not_needed.is_empty() {
        outln!(
            "Valid replica already elected for partitions {}",
            outcome.not_needed.join(", ")
        );
    }
    if outcome.elected.is_empty() && outcome.not_needed.is_empty() && outcome.failed.is_empty() {
        outln!("No partition needed a {label} election.");
    }
    if outcome.failed.is_empty() {
        return Ok(());
    }
    for (name, why) in &outcome.failed {
        eprintln!("Error completing leader election ({label}) for partition {name}: {why}");
    }
    Err(CliError::Kafka(format!(
        "{} partitions could not be elected",
        outcome.failed.len()
    )))
}

/// The partition ids of `topic`, from Metadata (never creating it).
fn topic_partitions(connect: &ConnectArgs, topic: &str) -> Result<Vec<i32>, CliError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = connect
        .config_with(&[("allow.auto.create.topics", "false".into())])?
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), connect.timeout())?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| CliError::Kafka(format!("topic '{topic}' does not exist")))?;
    if let Some(e) = t.error() {
        return Err(super::client::topic_error(topic, e));
    }
    Ok(t.partitions().iter().map(|p| p.id()).collect())
}
