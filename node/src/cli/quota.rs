//! `fjord quota ...`: client quotas per user and client id, and connection creation
//! rates per client address, like `kafka-configs.sh --entity-type users|clients|ips`,
//! through DescribeClientQuotas and AlterClientQuotas.

use kafka_protocol::messages::{
    alter_client_quotas_request, describe_client_quotas_request, AlterClientQuotasRequest,
    DescribeClientQuotasRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::client::ConnectArgs;
use super::wire::Wire;
use super::CliError;

/// Which entity a command is about. Naming neither a user nor a client id describes
/// every quota.
#[derive(clap::Args, Debug, Clone)]
pub struct EntityArgs {
    /// A user (the authenticated principal's name; ANONYMOUS without authentication).
    #[arg(long, conflicts_with = "user_default")]
    pub user: Option<String>,
    /// The default quota of every user without one of their own.
    #[arg(long)]
    pub user_default: bool,
    /// A client id.
    #[arg(long, conflicts_with = "client_id_default")]
    pub client_id: Option<String>,
    /// The default quota of every client id without one of its own.
    #[arg(long)]
    pub client_id_default: bool,
    /// A client IP address (its only quota is connection_creation_rate, KIP-612).
    #[arg(long, conflicts_with_all = ["ip_default", "user", "user_default", "client_id", "client_id_default"])]
    pub ip: Option<String>,
    /// The default connection_creation_rate of every address without one of its own.
    #[arg(long, conflicts_with_all = ["user", "user_default", "client_id", "client_id_default"])]
    pub ip_default: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum QuotaCommand {
    /// List quotas, all of them or those of one entity (its user and client-id
    /// combinations included).
    Describe {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        entity: EntityArgs,
    },
    /// Set or remove quotas of one entity: producer_byte_rate, consumer_byte_rate
    /// (bytes/s), request_percentage (% of one thread), controller_mutation_rate
    /// (partitions/s); for an IP, connection_creation_rate (connections/s).
    Alter {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        entity: EntityArgs,
        /// KEY=VALUE[,KEY=VALUE...] to set.
        #[arg(long, value_name = "KEY=VALUE,...")]
        add: Option<String>,
        /// KEY[,KEY...] to remove.
        #[arg(long, value_name = "KEY,...")]
        delete: Option<String>,
    },
}

pub fn run(cmd: QuotaCommand) -> Result<(), CliError> {
    match cmd {
        QuotaCommand::Describe { connect, entity } => describe(&connect, &entity),
        QuotaCommand::Alter {
            connect,
            entity,
            add,
            delete,
        } => alter(&connect, &entity, add.as_deref(), delete.as_deref()),
    }
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// `(entity type, name or None for the default)` of each side given.
fn sides(e: &EntityArgs) -> Vec<(&'static str, Option<String>)> {
    let mut out = Vec::new();
    if e.user.is_some() || e.user_default {
        out.push(("user", e.user.clone()));
    }
    if e.client_id.is_some() || e.client_id_default {
        out.push(("client-id", e.client_id.clone()));
    }
    if e.ip.is_some() || e.ip_default {
        out.push(("ip", e.ip.clone()));
    }
    out
}

fn check(code: i16, message: Option<&StrBytes>, what: &str) -> Result<(), CliError> {
    if code == 0 {
        return Ok(());
    }
    let name = kafka_protocol::error::ResponseError::try_from_code(code)
        .map_or_else(|| format!("error {code}"), |e| format!("{e:?}"));
    Err(CliError::Kafka(format!(
        "{what}: {name}{}",
        message.map(|m| format!(": {m}")).unwrap_or_default()
    )))
}

pub(super) fn describe(connect: &ConnectArgs, entity: &EntityArgs) -> Result<(), CliError> {
    let components = sides(entity)
        .into_iter()
        .map(|(kind, name)| {
            describe_client_quotas_request::ComponentData::default()
                .with_entity_type(StrBytes::from_static_str(kind))
                .with_match_type(if name.is_some() { 0 } else { 1 })
                .with_match(name.as_deref().map(str))
        })
        .collect();
    let req = DescribeClientQuotasRequest::default().with_components(components);
    let resp = Wire::connect(&connect.bootstrap_server, connect)?.call(1, &req)?;
    check(
        resp.error_code,
        resp.error_message.as_ref(),
        "describing quotas",
    )?;
    let mut lines: Vec<String> = resp
        .entries
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let who: Vec<String> = e
                .entity
                .iter()
                .map(|p| {
                    format!(
                        "{}={}",
                        p.entity_type,
                        p.entity_name.as_deref().unwrap_or("<default>")
                    )
                })
                .collect();
            let mut values: Vec<String> = e
                .values
                .iter()
                .map(|v| format!("{}={}", v.key, v.value))
                .collect();
            values.sort();
            format!("{}\t{}", who.join(" "), values.join(","))
        })
        .collect();
    lines.sort();
    for line in lines {
        outln!("{line}");
    }
    Ok(())
}

pub(super) fn alter(
    connect: &ConnectArgs,
    entity: &EntityArgs,
    add: Option<&str>,
    delete: Option<&str>,
) -> Result<(), CliError> {
    let sides = sides(entity);
    if sides.is_empty() {
        return Err(CliError::Usage(
            "name a user (--user, --user-default), a client id (--client-id, \
             --client-id-default), both, or an address (--ip, --ip-default)"
                .into(),
        ));
    }
    let mut ops = Vec::new();
    for pair in add
        .into_iter()
        .flat_map(|a| a.split(','))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--add takes KEY=VALUE, not '{pair}'")))?;
        let value: f64 = v
            .trim()
            .parse()
            .map_err(|_| CliError::Usage(format!("quota {k} needs a number, not '{v}'")))?;
        ops.push(
            alter_client_quotas_request::OpData::default()
                .with_key(str(k.trim()))
                .with_value(value),
        );
    }
    for key in delete
        .into_iter()
        .flat_map(|d| d.split(','))
        .filter(|k| !k.is_empty())
    {
        ops.push(
            alter_client_quotas_request::OpData::default()
                .with_key(str(key.trim()))
                .with_remove(true),
        );
    }
    if ops.is_empty() {
        return Err(CliError::Usage(
            "nothing to change: give --add or --delete".into(),
        ));
    }
    let described: Vec<String> = sides
        .iter()
        .map(|(k, n)| format!("{k}={}", n.as_deref().unwrap_or("<default>")))
        .collect();
    let req = AlterClientQuotasRequest::default().with_entries(vec![
        alter_client_quotas_request::EntryData::default()
            .with_entity(
                sides
                    .into_iter()
                    .map(|(kind, name)| {
                        alter_client_quotas_request::EntityData::default()
                            .with_entity_type(StrBytes::from_static_str(kind))
                            .with_entity_name(name.as_deref().map(str))
                    })
                    .collect(),
            )
            .with_ops(ops),
    ]);
    let resp = Wire::connect(&connect.bootstrap_server, connect)?.call(1, &req)?;
    for e in &resp.entries {
        check(e.error_code, e.error_message.as_ref(), "altering quotas")?;
    }
    outln!("Altered quotas of {}.", described.join(" "));
    Ok(())
}
