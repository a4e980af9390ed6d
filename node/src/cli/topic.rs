//! `fjord topic ...`: topic administration over the Kafka Admin API.

use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::IncrementalAlterConfigsRequest;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;

use super::client::{key_values, ConnectArgs};
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
    },
    /// List topics.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show partitions, leaders, replicas, ISR and non-default configs.
    Describe {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Topic to describe (default: all).
        name: Option<String>,
        /// Only partitions whose ISR is smaller than their replica set.
        #[arg(long)]
        under_replicated_partitions: bool,
    },
    /// Delete a topic.
    Delete {
        #[command(flatten)]
        connect: ConnectArgs,
        name: String,
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

fn admin(connect: &ConnectArgs) -> Result<AdminClient<DefaultClientContext>, CliError> {
    Ok(connect.config()?.create()?)
}

fn options(connect: &ConnectArgs) -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(connect.timeout()))
        .operation_timeout(Some(connect.timeout()))
}

fn one_result(
    results: Vec<Result<String, (String, rdkafka::types::RDKafkaErrorCode)>>,
) -> Result<(), CliError> {
    for r in results {
        if let Err((name, code)) = r {
            return Err(CliError::Kafka(format!("{name}: {code}")));
        }
    }
    Ok(())
}

pub fn run(cmd: TopicCommand) -> Result<(), CliError> {
    match cmd {
        TopicCommand::Create {
            connect,
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let client = admin(&connect)?;
            let configs = key_values(&configs, "--config")?;
            let mut topic = NewTopic::new(
                &name,
                partitions.unwrap_or(-1),
                TopicReplication::Fixed(replication_factor.unwrap_or(-1)),
            );
            for (k, v) in &configs {
                topic = topic.set(k, v);
            }
            let results =
                futures::executor::block_on(client.create_topics([&topic], &options(&connect)))?;
            one_result(results)?;
            outln!("Created topic {name}.");
            Ok(())
        }
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
        } => {
            let client = admin(&connect)?;
            let md = client
                .inner()
                .fetch_metadata(name.as_deref(), connect.timeout())?;
            let mut topics: Vec<_> = md.topics().iter().collect();
            topics.sort_by_key(|t| t.name());
            for t in topics {
                if let Some(e) = t.error() {
                    return Err(CliError::Kafka(format!("{}: {:?}", t.name(), e)));
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
                let spec = ResourceSpecifier::Topic(t.name());
                let described = futures::executor::block_on(
                    client.describe_configs([&spec], &options(&connect)),
                )?;
                let mut overrides = Vec::new();
                for r in described.into_iter().flatten() {
                    for e in r.entries {
                        if e.source == ConfigSource::DynamicTopic {
                            overrides.push(format!("{}={}", e.name, e.value.unwrap_or_default()));
                        }
                    }
                }
                outln!(
                    "Topic: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                    t.name(),
                    t.partitions().len(),
                    rf,
                    overrides.join(",")
                );
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
        TopicCommand::Delete { connect, name } => {
            let client = admin(&connect)?;
            let results = futures::executor::block_on(
                client.delete_topics(&[name.as_str()], &options(&connect)),
            )?;
            one_result(results)?;
            outln!("Deleted topic {name}.");
            Ok(())
        }
        TopicCommand::AddPartitions {
            connect,
            name,
            partitions,
        } => {
            let client = admin(&connect)?;
            let np = NewPartitions::new(&name, partitions);
            let results =
                futures::executor::block_on(client.create_partitions([&np], &options(&connect)))?;
            one_result(results)?;
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
            let resp = Wire::connect(&connect.bootstrap_server, &connect)?.call(1, &req)?;
            for r in resp.responses {
                if r.error_code != 0 {
                    let code = kafka_protocol::error::ResponseError::try_from_code(r.error_code)
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    let msg = r.error_message.map(|m| m.to_string()).unwrap_or_default();
                    return Err(CliError::Kafka(format!("{name}: {code}: {msg}")));
                }
            }
            outln!("Updated configs of topic {name}.");
            Ok(())
        }
    }
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
