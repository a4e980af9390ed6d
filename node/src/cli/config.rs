//! `fjord config ...`: every entity's configs, like `kafka-configs.sh --describe|--alter`.
//! Topics, brokers (one, or the cluster-wide default), broker loggers and groups go through
//! DescribeConfigs and IncrementalAlterConfigs; users and client ids through the client
//! quota APIs, and users' SCRAM credentials through the SCRAM APIs, as Kafka's tool does.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use super::client::ConnectArgs;
use super::group::{broker_addresses, error_name, metadata, str};
use super::wire::Wire;
use super::{quota, user, CliError};

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// Show an entity's configs: those set on it (dynamic), or with --all every config
    /// with its value, source, and whether it is sensitive or read-only.
    Describe {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        entity: EntityArgs,
        /// Every config, defaults included, not only those set on the entity.
        #[arg(long)]
        all: bool,
    },
    /// Set and remove an entity's configs.
    Alter {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        entity: EntityArgs,
        /// KEY=VALUE[,KEY=VALUE...] to set; a value with commas goes in brackets,
        /// k=[a,b]. For users, SCRAM-SHA-256=[iterations=8192,password=...] sets a
        /// credential.
        #[arg(long, value_name = "KEY=VALUE,...")]
        add_config: Option<String>,
        /// A properties file of configs to set (KEY=VALUE per line).
        #[arg(long, value_name = "FILE")]
        add_config_file: Option<std::path::PathBuf>,
        /// KEY[,KEY...] to remove (back to the default).
        #[arg(long, value_name = "KEY,...")]
        delete_config: Option<String>,
    },
}

/// The entity, as kafka-configs.sh names it: `--entity-type` with `--entity-name` or
/// `--entity-default`, or one of the short forms.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EntityArgs {
    /// topics, brokers, broker-loggers, groups, users or clients.
    #[arg(long, value_parser = ["topics", "brokers", "broker-loggers", "groups", "users", "clients"])]
    entity_type: Option<String>,
    #[arg(long)]
    entity_name: Option<String>,
    /// The entity type's default: every broker's, every user's or every client id's.
    #[arg(long)]
    entity_default: bool,
    /// Short for --entity-type topics --entity-name TOPIC.
    #[arg(long)]
    topic: Option<String>,
    /// Short for --entity-type brokers --entity-name ID.
    #[arg(long)]
    broker: Option<String>,
    /// Short for --entity-type brokers --entity-default.
    #[arg(long)]
    broker_defaults: bool,
    /// Short for --entity-type broker-loggers --entity-name ID.
    #[arg(long)]
    broker_logger: Option<String>,
    /// Short for --entity-type groups --entity-name GROUP.
    #[arg(long)]
    group: Option<String>,
    /// Short for --entity-type users --entity-name USER.
    #[arg(long)]
    user: Option<String>,
    /// Short for --entity-type clients --entity-name CLIENT_ID.
    #[arg(long)]
    client: Option<String>,
}

/// What a command is about, resolved from [`EntityArgs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entity {
    Topic(String),
    /// A broker id, or `None` for the cluster-wide default.
    Broker(Option<i32>),
    BrokerLogger(i32),
    /// A group's own settings (KIP-848 group configs).
    Group(String),
    /// A user, or `None` for the default of every user.
    User(Option<String>),
    /// A client id, or `None` for the default of every client id.
    Client(Option<String>),
}

/// DescribeConfigs' source code of a config at its default.
pub(super) const DEFAULT_CONFIG: i8 = 5;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const GROUP: i8 = 32;

impl EntityArgs {
    pub(super) fn resolve(&self) -> Result<Entity, CliError> {
        let mut given: Vec<(&str, Option<String>)> = Vec::new();
        if let Some(kind) = &self.entity_type {
            if self.entity_name.is_some() == self.entity_default {
                return Err(usage(
                    "give --entity-name or --entity-default with --entity-type",
                ));
            }
            given.push((kind.as_str(), self.entity_name.clone()));
        } else if self.entity_name.is_some() || self.entity_default {
            return Err(usage(
                "--entity-name and --entity-default need --entity-type",
            ));
        }
        let short = [
            ("topics", &self.topic),
            ("brokers", &self.broker),
            ("broker-loggers", &self.broker_logger),
            ("groups", &self.group),
            ("users", &self.user),
            ("clients", &self.client),
        ];
        for (kind, name) in short {
            if let Some(n) = name {
                given.push((kind, Some(n.clone())));
            }
        }
        if self.broker_defaults {
            given.push(("brokers", None));
        }
        let [(kind, name)] = given.as_slice() else {
            return Err(usage(
                "name one entity: --topic, --broker, --broker-defaults, --broker-logger, --group, \
                 --user, --client, or --entity-type with --entity-name/--entity-default",
            ));
        };
        let broker_id = |n: &str| {
            n.parse::<i32>()
                .map_err(|_| usage(&format!("a broker is named by its id, not '{n}'")))
        };
        match (*kind, name) {
            ("topics", Some(n)) => Ok(Entity::Topic(n.clone())),
            ("topics", None) => Err(usage("topics have no default entity; name a topic")),
            ("brokers", Some(n)) => Ok(Entity::Broker(Some(broker_id(n)?))),
            ("brokers", None) => Ok(Entity::Broker(None)),
            ("broker-loggers", Some(n)) => Ok(Entity::BrokerLogger(broker_id(n)?)),
            ("broker-loggers", None) => Err(usage("broker loggers are named by a broker id")),
            ("groups", Some(n)) => Ok(Entity::Group(n.clone())),
            ("groups", None) => Err(usage("groups have no default entity; name a group")),
            ("users", n) => Ok(Entity::User(n.clone())),
            (_, n) => Ok(Entity::Client(n.clone())),
        }
    }
}

fn usage(m: &str) -> CliError {
    CliError::Usage(m.to_string())
}

pub fn run(cmd: ConfigCommand) -> Result<(), CliError> {
    match cmd {
        ConfigCommand::Describe {
            connect,
            entity,
            all,
        } => match entity.resolve()? {
            Entity::User(name) => describe_user(&connect, name),
            Entity::Client(name) => quota::describe(&connect, &quota_entity(None, Some(name))),
            entity => describe(&connect, &entity, all),
        },
        ConfigCommand::Alter {
            connect,
            entity,
            add_config,
            add_config_file,
            delete_config,
        } => {
            let mut set = match &add_config {
                Some(a) => parse_add_config(a)?,
                None => Vec::new(),
            };
            if let Some(path) = &add_config_file {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CliError::Usage(format!("--add-config-file {}: {e}", path.display()))
                })?;
                let props = crate::config::properties::parse(&text).map_err(|e| {
                    CliError::Usage(format!("--add-config-file {}: {e}", path.display()))
                })?;
                set.extend(props);
            }
            let delete: Vec<String> = delete_config
                .iter()
                .flat_map(|d| d.split(','))
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect();
            if set.is_empty() && delete.is_empty() {
                return Err(usage(
                    "nothing to change: give --add-config, --add-config-file or --delete-config",
                ));
            }
            alter(&connect, &entity.resolve()?, set, delete)
        }
    }
}

/// Splits kafka-configs.sh's `--add-config` value: commas separate pairs except inside
/// brackets, and a bracketed value loses its brackets (`k=[a,b]` sets `a,b`).
pub(super) fn parse_add_config(s: &str) -> Result<Vec<(String, String)>, CliError> {
    let mut pairs = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| usage(&format!("--add-config '{s}': unmatched ']'")))?
            }
            ',' if depth == 0 => {
                pairs.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if depth != 0 {
        return Err(usage(&format!("--add-config '{s}': unmatched '['")));
    }
    pairs.push(current);
    pairs
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| usage(&format!("--add-config takes KEY=VALUE, not '{p}'")))?;
            let v = v.trim();
            let v = v
                .strip_prefix('[')
                .and_then(|v| v.strip_suffix(']'))
                .unwrap_or(v);
            Ok((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

fn quota_entity(user: Option<Option<String>>, client: Option<Option<String>>) -> quota::EntityArgs {
    quota::EntityArgs {
        user: user.clone().flatten(),
        user_default: matches!(user, Some(None)),
        client_id: client.clone().flatten(),
        client_id_default: matches!(client, Some(None)),
        ip: None,
        ip_default: false,
    }
}

/// Kafka's names of the config sources DescribeConfigs reports.
pub(super) fn source_name(code: i8) -> &'static str {
    match code {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

/// The config resource of an entity: (resource type, resource name). Users and client
/// ids have none; their configs are quotas.
fn resource(entity: &Entity) -> Result<(i8, String), CliError> {
    match entity {
        Entity::Topic(t) => Ok((TOPIC, t.clone())),
        Entity::Broker(id) => Ok((BROKER, id.map(|i| i.to_string()).unwrap_or_default())),
        Entity::BrokerLogger(id) => Ok((BROKER_LOGGER, id.to_string())),
        Entity::Group(g) => Ok((GROUP, g.clone())),
        Entity::User(_) | Entity::Client(_) => {
            Err(usage("users and clients have quotas, not config resources"))
        }
    }
}

/// Where to send a request about the entity: a broker answers for its own configs and
/// loggers only, as in Kafka; anything else goes to the bootstrap servers.
fn wire_for(connect: &ConnectArgs, entity: &Entity) -> Result<Wire, CliError> {
    let id = match entity {
        Entity::Broker(Some(id)) | Entity::BrokerLogger(id) => *id,
        _ => return Wire::connect(&connect.bootstrap_server, connect),
    };
    let md = metadata(connect, Some(&[]))?;
    let addr = broker_addresses(&md)
        .remove(&id)
        .ok_or_else(|| CliError::Kafka(format!("broker {id} is not in the cluster")))?;
    Wire::connect(&addr, connect)
}

/// Every config of a topic or broker as the cluster reports it, with synonyms.
pub(super) fn describe_configs(
    connect: &ConnectArgs,
    entity: &Entity,
) -> Result<Vec<DescribeConfigsResourceResult>, CliError> {
    let (resource_type, name) = resource(entity)?;
    let req = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(str(&name))
            .with_configuration_keys(None)])
        .with_include_synonyms(true);
    let resp = wire_for(connect, entity)?.call(4, &req)?;
    let r = resp
        .results
        .into_iter()
        .next()
        .ok_or_else(|| CliError::Kafka("empty DescribeConfigs answer".into()))?;
    if r.error_code != 0 {
        return Err(CliError::Kafka(format!(
            "describing {}: {}{}",
            describe_title(entity),
            error_name(r.error_code),
            r.error_message
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )));
    }
    let mut configs = r.configs;
    configs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(configs)
}

fn describe_title(entity: &Entity) -> String {
    match entity {
        Entity::Topic(t) => format!("topic {t}"),
        Entity::Broker(Some(id)) => format!("broker {id}"),
        Entity::Broker(None) => "brokers in the cluster".into(),
        Entity::BrokerLogger(id) => format!("broker-logger {id}"),
        Entity::Group(g) => format!("group {g}"),
        Entity::User(u) => format!("user {}", u.as_deref().unwrap_or("<default>")),
        Entity::Client(c) => format!("client {}", c.as_deref().unwrap_or("<default>")),
    }
}

/// Whether a config is set on the entity itself, rather than inherited.
fn set_on_entity(entity: &Entity, source: i8) -> bool {
    match entity {
        Entity::Topic(_) => source == 1,
        Entity::Broker(Some(_)) => source == 2,
        Entity::Broker(None) => source == 3,
        Entity::BrokerLogger(_) => true,
        Entity::Group(_) => source == 8,
        Entity::User(_) | Entity::Client(_) => false,
    }
}

/// One config as kafka-configs.sh prints it, with its source and read-only flag too:
/// `name=value source=... sensitive=false read-only=false synonyms={SOURCE:name=value, ...}`.
pub(super) fn config_line(c: &DescribeConfigsResourceResult) -> String {
    let value = if c.is_sensitive {
        "null".to_string()
    } else {
        c.value.as_deref().unwrap_or("null").to_string()
    };
    let synonyms: Vec<String> = c
        .synonyms
        .iter()
        .map(|s| {
            let v = if c.is_sensitive {
                "null"
            } else {
                s.value.as_deref().unwrap_or("null")
            };
            format!("{}:{}={v}", source_name(s.source), s.name)
        })
        .collect();
    format!(
        "{}={value} source={} sensitive={} read-only={} synonyms={{{}}}",
        c.name,
        source_name(c.config_source),
        c.is_sensitive,
        c.read_only,
        synonyms.join(", ")
    )
}

fn describe(connect: &ConnectArgs, entity: &Entity, all: bool) -> Result<(), CliError> {
    let configs = describe_configs(connect, entity)?;
    let title = describe_title(entity);
    match (entity, all) {
        (Entity::Broker(None), _) => outln!("Default configs for {title} are:"),
        (_, true) => outln!("All configs for {title} are:"),
        (_, false) => outln!("Dynamic configs for {title} are:"),
    }
    for c in configs
        .iter()
        .filter(|c| all || set_on_entity(entity, c.config_source))
    {
        outln!("  {}", config_line(c));
    }
    Ok(())
}

/// A user's quotas and SCRAM credentials, as kafka-configs.sh shows both.
fn describe_user(connect: &ConnectArgs, name: Option<String>) -> Result<(), CliError> {
    quota::describe(connect, &quota_entity(Some(name.clone()), None))?;
    if let Some(name) = name {
        user::describe_credentials(connect, &name)?;
    }
    Ok(())
}

const SCRAM_PREFIX: &str = "SCRAM-SHA-";

fn alter(
    connect: &ConnectArgs,
    entity: &Entity,
    set: Vec<(String, String)>,
    delete: Vec<String>,
) -> Result<(), CliError> {
    match entity {
        Entity::User(name) => alter_user(connect, name.as_deref(), set, delete),
        Entity::Client(name) => alter_quotas(connect, None, Some(name.clone()), set, delete),
        _ => alter_configs(connect, entity, set, delete),
    }
}

fn alter_configs(
    connect: &ConnectArgs,
    entity: &Entity,
    set: Vec<(String, String)>,
    delete: Vec<String>,
) -> Result<(), CliError> {
    let (resource_type, name) = resource(entity)?;
    let ops = set
        .into_iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(v)))
        })
        .chain(delete.into_iter().map(|k| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k))
                .with_config_operation(1)
        }))
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(str(&name))
            .with_configs(ops),
    ]);
    let resp = wire_for(connect, entity)?.call(1, &req)?;
    let title = describe_title(entity);
    for r in &resp.responses {
        if r.error_code != 0 {
            return Err(CliError::Kafka(format!(
                "altering {title}: {}{}",
                error_name(r.error_code),
                r.error_message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )));
        }
    }
    outln!("Completed updating config for {title}.");
    Ok(())
}

fn alter_quotas(
    connect: &ConnectArgs,
    user: Option<Option<String>>,
    client: Option<Option<String>>,
    set: Vec<(String, String)>,
    delete: Vec<String>,
) -> Result<(), CliError> {
    if set.is_empty() && delete.is_empty() {
        return Ok(());
    }
    let add: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    quota::alter(
        connect,
        &quota_entity(user, client),
        Some(&add.join(",")),
        Some(&delete.join(",")),
    )
}

/// A user's changes: SCRAM-SHA-* keys are credentials, the rest quotas.
fn alter_user(
    connect: &ConnectArgs,
    name: Option<&str>,
    set: Vec<(String, String)>,
    delete: Vec<String>,
) -> Result<(), CliError> {
    let (scram_set, quota_set): (Vec<_>, Vec<_>) = set
        .into_iter()
        .partition(|(k, _)| k.starts_with(SCRAM_PREFIX));
    let (scram_delete, quota_delete): (Vec<_>, Vec<_>) = delete
        .into_iter()
        .partition(|k| k.starts_with(SCRAM_PREFIX));
    if !scram_set.is_empty() || !scram_delete.is_empty() {
        let name = name.ok_or_else(|| usage("SCRAM credentials belong to a named user"))?;
        for (mechanism, spec) in scram_set {
            let (iterations, password) = scram_spec(&mechanism, &spec)?;
            user::create(connect, name, &password, &[mechanism], iterations)?;
        }
        if !scram_delete.is_empty() {
            user::delete(connect, name, &scram_delete)?;
        }
    }
    alter_quotas(
        connect,
        Some(name.map(str::to_string)),
        None,
        quota_set,
        quota_delete,
    )
}

/// `iterations=8192,password=secret` (brackets already removed): Kafka's default is
/// 4096 iterations.
fn scram_spec(mechanism: &str, spec: &str) -> Result<(i32, String), CliError> {
    let mut iterations = 4096;
    let mut password = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("iterations", n)) => {
                iterations = n.trim().parse().map_err(|_| {
                    usage(&format!(
                        "{mechanism}: iterations must be a number, not '{n}'"
                    ))
                })?
            }
            Some(("password", p)) => password = Some(p.to_string()),
            _ => {
                return Err(usage(&format!(
                    "{mechanism} takes [iterations=N,password=SECRET], not '{part}'"
                )))
            }
        }
    }
    let password = password.ok_or_else(|| usage(&format!("{mechanism} needs password=...")))?;
    Ok((iterations, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_config_splits_on_commas_outside_brackets() {
        let parsed = parse_add_config(
            "retention.ms=1000,cleanup.policy=[compact,delete], SCRAM-SHA-256=[iterations=8192,password=a,b]",
        )
        .expect("parses");
        assert_eq!(
            parsed,
            vec![
                ("retention.ms".to_string(), "1000".to_string()),
                ("cleanup.policy".to_string(), "compact,delete".to_string()),
                (
                    "SCRAM-SHA-256".to_string(),
                    "iterations=8192,password=a,b".to_string()
                ),
            ]
        );
        assert!(parse_add_config("a=[1,2").is_err());
        assert!(parse_add_config("a=1]").is_err());
        assert!(parse_add_config("novalue").is_err());
    }

    #[test]
    fn entities_resolve_from_long_and_short_forms() {
        let args = |f: fn(&mut EntityArgs)| {
            let mut a = EntityArgs::default();
            f(&mut a);
            a.resolve()
        };
        assert_eq!(
            args(|a| {
                a.entity_type = Some("brokers".into());
                a.entity_default = true;
            })
            .ok(),
            Some(Entity::Broker(None))
        );
        assert_eq!(
            args(|a| a.broker = Some("2".into())).ok(),
            Some(Entity::Broker(Some(2)))
        );
        assert_eq!(
            args(|a| a.topic = Some("t".into())).ok(),
            Some(Entity::Topic("t".into()))
        );
        assert!(args(|a| a.broker = Some("two".into())).is_err());
        assert!(args(|a| {
            a.topic = Some("t".into());
            a.user = Some("u".into());
        })
        .is_err());
        assert!(args(|_| {}).is_err());
    }

    #[test]
    fn scram_specs_need_a_password() {
        assert_eq!(
            scram_spec("SCRAM-SHA-256", "iterations=8192,password=s3cret").ok(),
            Some((8192, "s3cret".to_string()))
        );
        assert_eq!(
            scram_spec("SCRAM-SHA-512", "password=x").ok(),
            Some((4096, "x".to_string()))
        );
        assert!(scram_spec("SCRAM-SHA-256", "iterations=1").is_err());
    }
}
