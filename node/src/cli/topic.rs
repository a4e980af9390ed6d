//! `fjord topic ...`: topic administration over the Kafka Admin API.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use super::client::{key_values, topic_error, ConnectArgs};
use super::config::{config_line, describe_configs, Entity, DEFAULT_CONFIG};
use super::wire::Wire;
use super::CliError;

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Topic name.
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(long)]
        replication_factor: Option<i32>,
        /// Topic config, KEY=VALUE (repeatable), e.g. --config retention.ms=60000.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Succeed without a word if the topic exists already (kafka-topics.sh's flag).
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Offsets of a topic's partitions by time, as kafka-get-offsets.sh prints them
    /// (topic:partition:offset).
    Offsets {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Topic name.
        name: String,
        /// Only these partitions, e.g. 0,2.
        #[arg(long)]
        partitions: Option<String>,
        /// latest (-1), earliest (-2), max-timestamp (-3), or epoch milliseconds: the
        /// first offset whose timestamp is at or after it.
        #[arg(long, default_value = "latest", allow_hyphen_values = true)]
        time: String,
    },
    /// Show partitions, leaders, replicas, ISR and the configs not at their default.
    Describe {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Topic to describe (default: all).
        name: Option<String>,
        /// Only partitions whose ISR is smaller than their replica set.
        #[arg(long)]
        under_replicated_partitions: bool,
        /// Also list every config, defaults included, with its source and synonyms.
        #[arg(long)]
        all_configs: bool,
    },
    /// Delete a topic.
    Delete {
        #[command(flatten)]
        connect: ConnectArgs,
        name: String,
        /// Succeed without a word if there is no such topic (kafka-topics.sh's flag).
        #[arg(long)]
        if_exists: bool,
    },
    /// Add partitions to a topic.
    AddPartitions {
        #[command(flatten)]
        connect: ConnectArgs,
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: usize,
    },
    /// Change topic configs: --set KEY=VALUE and --delete KEY (repeatable).
    AlterConfig {
        #[command(flatten)]
        connect: ConnectArgs,
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

pub(super) fn admin(connect: &ConnectArgs) -> Result<AdminClient<DefaultClientContext>, CliError> {
    // Describing a topic must never create it (librdkafka's admin handle would ask the
    // broker to auto-create any topic it looks up).
    Ok(connect
        .config_with(&[("allow.auto.create.topics", "false".into())])?
        .create()?)
}

fn wire(connect: &ConnectArgs) -> Result<Wire, CliError> {
    Wire::connect(&connect.bootstrap_server, connect)
}

fn timeout_ms(connect: &ConnectArgs) -> i32 {
    i32::try_from(connect.timeout_ms).unwrap_or(i32::MAX)
}

/// A per-topic error as the broker sent it: the code's name and, when given, its message
/// (which says why: the replication factor, the partition count, a config value).
fn broker_error(topic: &str, code: i16, message: Option<&str>) -> Result<(), CliError> {
    if code == 0 {
        return Ok(());
    }
    let name = kafka_protocol::error::ResponseError::try_from_code(code)
        .map(|e| e.to_string())
        .unwrap_or_else(|| format!("error code {code}"));
    Err(CliError::Kafka(match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{topic}: {name}: {m}"),
        None => format!("{topic}: {name}"),
    }))
}

pub(super) fn options(connect: &ConnectArgs) -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(connect.timeout()))
        .operation_timeout(Some(connect.timeout()))
}

pub fn run(cmd: TopicCommand) -> Result<(), CliError> {
    match cmd {
        TopicCommand::Create {
            connect,
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let configs = key_values(&configs, "--config")?
                .into_iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k))
                        .with_value(Some(StrBytes::from_string(v)))
                })
                .collect();
            let req = CreateTopicsRequest::default()
                .with_topics(vec![CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_num_partitions(partitions.unwrap_or(-1))
                    .with_replication_factor(
                        replication_factor
                            .map(|r| i16::try_from(r).unwrap_or(i16::MAX))
                            .unwrap_or(-1),
                    )
                    .with_configs(configs)])
                .with_timeout_ms(timeout_ms(&connect));
            let resp = wire(&connect)?.call(5, &req)?;
            for t in &resp.topics {
                if if_not_exists && t.error_code == ResponseError::TopicAlreadyExists.code() {
                    return Ok(());
                }
                broker_error(&name, t.error_code, t.error_message.as_deref())?;
            }
            outln!("Created topic {name}.");
            Ok(())
        }
        TopicCommand::Offsets {
            connect,
            name,
            partitions,
            time,
        } => super::offsets::run(&connect, &name, partitions.as_deref(), &time),
        TopicCommand::List { connect } => {
            let client = admin(&connect)?;
            let md = client.inner().fetch_metadata(None, connect.timeout())?;
            let mut names: Vec<&str> = md.topics().iter().map(|t| t.name()).collect();
            names.sort_unstable();
            for n in names {
                outln!("{n}");
            }
            Ok(())
        }
        TopicCommand::Describe {
            connect,
            name,
            under_replicated_partitions,
            all_configs,
        } => {
            let client = admin(&connect)?;
            let md = client
                .inner()
                .fetch_metadata(name.as_deref(), connect.timeout())?;
            let mut topics: Vec<_> = md.topics().iter().collect();
            topics.sort_by_key(|t| t.name());
            if let Some(n) = &name {
                if !topics.iter().any(|t| t.name() == n) {
                    return Err(CliError::Kafka(format!("topic '{n}' does not exist")));
                }
            }
            for t in topics {
                if let Some(e) = t.error() {
                    return Err(topic_error(t.name(), e));
                }
                if under_replicated_partitions {
                    for p in t
                        .partitions()
                        .iter()
                        .filter(|p| p.isr().len() < p.replicas().len())
                    {
                        outln!(
                            "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                            t.name(),
                            p.id(),
                            p.leader(),
                            join(p.replicas()),
                            join(p.isr())
                        );
                    }
                    continue;
                }
                let rf = t
                    .partitions()
                    .first()
                    .map(|p| p.replicas().len())
                    .unwrap_or(0);
                // As kafka-topics.sh: every config not at its default, wherever it was
                // set (the topic, a broker's dynamic or static config).
                let configs = describe_configs(&connect, &Entity::Topic(t.name().to_string()))?;
                let set: Vec<String> = configs
                    .iter()
                    .filter(|c| c.config_source != DEFAULT_CONFIG)
                    .map(|c| {
                        let value = if c.is_sensitive {
                            None
                        } else {
                            c.value.as_deref()
                        };
                        format!("{}={}", c.name, value.unwrap_or("null"))
                    })
                    .collect();
                outln!(
                    "Topic: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                    t.name(),
                    t.partitions().len(),
                    rf,
                    set.join(",")
                );
                if all_configs {
                    for c in &configs {
                        outln!("\tConfig: {}", config_line(c));
                    }
                }
                for p in t.partitions() {
                    outln!(
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                        t.name(),
                        p.id(),
                        p.leader(),
                        join(p.replicas()),
                        join(p.isr())
                    );
                }
            }
            Ok(())
        }
        TopicCommand::Delete {
            connect,
            name,
            if_exists,
        } => {
            let req = DeleteTopicsRequest::default()
                .with_topic_names(vec![TopicName(StrBytes::from_string(name.clone()))])
                .with_timeout_ms(timeout_ms(&connect));
            let resp = wire(&connect)?.call(5, &req)?;
            for r in &resp.responses {
                if if_exists && r.error_code == ResponseError::UnknownTopicOrPartition.code() {
                    return Ok(());
                }
                broker_error(&name, r.error_code, r.error_message.as_deref())?;
            }
            outln!("Deleted topic {name}.");
            Ok(())
        }
        TopicCommand::AddPartitions {
            connect,
            name,
            partitions,
        } => {
            let count = i32::try_from(partitions)
                .map_err(|_| CliError::Usage(format!("--partitions {partitions} is too large")))?;
            let req = CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_count(count)])
                .with_timeout_ms(timeout_ms(&connect));
            let resp = wire(&connect)?.call(3, &req)?;
            for r in &resp.results {
                broker_error(&name, r.error_code, r.error_message.as_deref())?;
            }
            outln!("Topic {name} now has {partitions} partitions.");
            Ok(())
        }
        TopicCommand::AlterConfig {
            connect,
            name,
            set,
            delete,
        } => {
            if set.is_empty() && delete.is_empty() {
                return Err(CliError::Usage(
                    "give at least one --set KEY=VALUE or --delete KEY".into(),
                ));
            }
            // IncrementalAlterConfigs (Kafka 2.3+): SET and DELETE exactly what was asked.
            let mut ops = Vec::new();
            for (k, v) in key_values(&set, "--set")? {
                ops.push(
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_string(v))),
                );
            }
            for k in &delete {
                ops.push(
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(k.clone()))
                        .with_config_operation(1),
                );
            }
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(name.clone()))
                    .with_configs(ops),
            ]);
            let resp = wire(&connect)?.call(1, &req)?;
            for r in &resp.responses {
                broker_error(&name, r.error_code, r.error_message.as_deref())?;
            }
            outln!("Updated configs of topic {name}.");
            Ok(())
        }
    }
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
