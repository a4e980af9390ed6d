//! `fjord acl ...`: ACLs like `kafka-acls.sh --add|--remove|--list`, through CreateAcls,
//! DeleteAcls and DescribeAcls.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use fjord_controller::metadata::acls::{AclOperation, ResourceType};

use super::client::ConnectArgs;
use super::wire::Wire;
use super::CliError;

const ANY: i8 = 1;

/// What the ACLs are about, and who.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AclArgs {
    /// Principals to allow, `User:NAME` or `User:*` (repeatable).
    #[arg(long = "allow-principal", value_name = "User:NAME")]
    allow_principals: Vec<String>,
    /// Principals to deny (repeatable).
    #[arg(long = "deny-principal", value_name = "User:NAME")]
    deny_principals: Vec<String>,
    /// Hosts the allow rules apply to (default: every host).
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Hosts the deny rules apply to (default: every host).
    #[arg(long = "deny-host")]
    deny_hosts: Vec<String>,
    /// Operations: Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite, All (repeatable).
    #[arg(long = "operation")]
    operations: Vec<String>,
    /// Topics (repeatable).
    #[arg(long = "topic")]
    topics: Vec<String>,
    /// Consumer groups (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Transactional ids (repeatable).
    #[arg(long = "transactional-id")]
    transactional_ids: Vec<String>,
    /// The cluster itself.
    #[arg(long)]
    cluster: bool,
    /// literal or prefixed (add); also any or match (list, remove).
    #[arg(long, default_value = "literal")]
    resource_pattern_type: String,
    /// Kafka's convenience: WRITE, DESCRIBE and CREATE on the topics (and WRITE on the
    /// transactional ids given).
    #[arg(long)]
    producer: bool,
    /// Kafka's convenience: READ and DESCRIBE on the topics, READ on the groups.
    #[arg(long)]
    consumer: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum AclCommand {
    /// Add ACLs: each allowed or denied principal gets each operation on each resource.
    Add {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        acl: AclArgs,
    },
    /// Remove the ACLs matching: unnamed principals, hosts and operations match any.
    Remove {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        acl: AclArgs,
    },
    /// List ACLs, all of them or those of the resources and principals named.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        acl: AclArgs,
        /// Only the ACLs of this principal.
        #[arg(long)]
        principal: Option<String>,
    },
}

pub fn run(cmd: AclCommand) -> Result<(), CliError> {
    match cmd {
        AclCommand::Add { connect, acl } => add(&connect, &acl),
        AclCommand::Remove { connect, acl } => remove(&connect, &acl),
        AclCommand::List {
            connect,
            acl,
            principal,
        } => list(&connect, &acl, principal.as_deref()),
    }
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn operation(name: &str) -> Result<AclOperation, CliError> {
    let wanted: String = name.chars().filter(|c| *c != '_' && *c != '-').collect();
    AclOperation::EVERY
        .into_iter()
        .find(|o| format!("{o:?}").eq_ignore_ascii_case(&wanted))
        .ok_or_else(|| CliError::Usage(format!("unknown operation {name}")))
}

fn pattern_code(name: &str) -> Result<i8, CliError> {
    match name.to_ascii_lowercase().as_str() {
        "any" => Ok(1),
        "match" => Ok(2),
        "literal" => Ok(3),
        "prefixed" => Ok(4),
        other => Err(CliError::Usage(format!(
            "--resource-pattern-type {other}: literal, prefixed, any or match"
        ))),
    }
}

/// The resources named, with the operations each gets.
fn resources(acl: &AclArgs) -> Result<Vec<(ResourceType, String, Vec<AclOperation>)>, CliError> {
    let ops: Vec<AclOperation> = acl
        .operations
        .iter()
        .map(|o| operation(o))
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    let with = |extra: &[AclOperation]| {
        let mut v = ops.clone();
        for o in extra {
            if !v.contains(o) {
                v.push(*o);
            }
        }
        v
    };
    use AclOperation::*;
    for t in &acl.topics {
        let mut topic_ops = ops.clone();
        if acl.producer {
            topic_ops = with(&[Write, Describe, Create]);
        }
        if acl.consumer {
            for o in [Read, Describe] {
                if !topic_ops.contains(&o) {
                    topic_ops.push(o);
                }
            }
        }
        out.push((ResourceType::Topic, t.clone(), topic_ops));
    }
    for g in &acl.groups {
        out.push((
            ResourceType::Group,
            g.clone(),
            if acl.consumer {
                with(&[Read])
            } else {
                ops.clone()
            },
        ));
    }
    for id in &acl.transactional_ids {
        out.push((
            ResourceType::TransactionalId,
            id.clone(),
            if acl.producer {
                with(&[Write, Describe])
            } else {
                ops.clone()
            },
        ));
    }
    if acl.cluster {
        out.push((ResourceType::Cluster, "kafka-cluster".into(), ops.clone()));
    }
    Ok(out)
}

/// `(principal, host, permission code)` of every allow and deny rule given.
fn grants(acl: &AclArgs) -> Vec<(String, String, i8)> {
    let hosts = |h: &[String]| {
        if h.is_empty() {
            vec!["*".to_string()]
        } else {
            h.to_vec()
        }
    };
    let mut out = Vec::new();
    for p in &acl.allow_principals {
        for h in hosts(&acl.allow_hosts) {
            out.push((p.clone(), h, 3));
        }
    }
    for p in &acl.deny_principals {
        for h in hosts(&acl.deny_hosts) {
            out.push((p.clone(), h, 2));
        }
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

fn add(connect: &ConnectArgs, acl: &AclArgs) -> Result<(), CliError> {
    let pattern = pattern_code(&acl.resource_pattern_type)?;
    if !(3..=4).contains(&pattern) {
        return Err(CliError::Usage(
            "ACLs are added with a literal or prefixed pattern".into(),
        ));
    }
    let grants = grants(acl);
    if grants.is_empty() {
        return Err(CliError::Usage(
            "name who: --allow-principal or --deny-principal".into(),
        ));
    }
    let resources = resources(acl)?;
    if resources.is_empty() || resources.iter().any(|(_, _, ops)| ops.is_empty()) {
        return Err(CliError::Usage(
            "name a resource (--topic, --group, --transactional-id, --cluster) and \
             --operation (or --producer, --consumer)"
                .into(),
        ));
    }
    let mut creations = Vec::new();
    for (rtype, name, ops) in &resources {
        for (principal, host, permission) in &grants {
            for op in ops {
                creations.push(
                    AclCreation::default()
                        .with_resource_type(rtype.code())
                        .with_resource_name(str(name))
                        .with_resource_pattern_type(pattern)
                        .with_principal(str(principal))
                        .with_host(str(host))
                        .with_operation(op.code())
                        .with_permission_type(*permission),
                );
            }
        }
    }
    let n = creations.len();
    let resp = Wire::connect(&connect.bootstrap_server, connect)?
        .call(3, &CreateAclsRequest::default().with_creations(creations))?;
    for r in &resp.results {
        check(r.error_code, r.error_message.as_ref(), "adding ACLs")?;
    }
    outln!("Added {n} ACLs.");
    Ok(())
}

/// Filters for remove and list: each named resource, or any resource.
fn filters(acl: &AclArgs, principal: Option<&str>) -> Result<Vec<DeleteAclsFilter>, CliError> {
    let pattern = pattern_code(&acl.resource_pattern_type)?;
    let resources = resources(acl)?;
    let targets: Vec<(i8, Option<String>, Vec<i8>)> = if resources.is_empty() {
        let ops = acl
            .operations
            .iter()
            .map(|o| operation(o).map(|o| o.code()))
            .collect::<Result<Vec<_>, _>>()?;
        vec![(ANY, None, ops)]
    } else {
        resources
            .into_iter()
            .map(|(t, n, ops)| (t.code(), Some(n), ops.iter().map(|o| o.code()).collect()))
            .collect()
    };
    let mut who: Vec<(Option<String>, Option<String>, i8)> = grants(acl)
        .into_iter()
        .map(|(p, h, perm)| (Some(p), (h != "*").then_some(h), perm))
        .collect();
    if who.is_empty() {
        who.push((principal.map(str::to_string), None, ANY));
    }
    let pattern = if resources_named(acl) { pattern } else { ANY };
    let mut out = Vec::new();
    for (rtype, name, ops) in &targets {
        for (p, h, perm) in &who {
            let ops = if ops.is_empty() {
                vec![ANY]
            } else {
                ops.clone()
            };
            for op in ops {
                out.push(
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(*rtype)
                        .with_resource_name_filter(name.as_deref().map(str))
                        .with_pattern_type_filter(pattern)
                        .with_principal_filter(p.as_deref().map(str))
                        .with_host_filter(h.as_deref().map(str))
                        .with_operation(op)
                        .with_permission_type(*perm),
                );
            }
        }
    }
    Ok(out)
}

fn resources_named(acl: &AclArgs) -> bool {
    !acl.topics.is_empty()
        || !acl.groups.is_empty()
        || !acl.transactional_ids.is_empty()
        || acl.cluster
}

fn remove(connect: &ConnectArgs, acl: &AclArgs) -> Result<(), CliError> {
    let resp = Wire::connect(&connect.bootstrap_server, connect)?.call(
        3,
        &DeleteAclsRequest::default().with_filters(filters(acl, None)?),
    )?;
    let mut removed = 0;
    for r in &resp.filter_results {
        check(r.error_code, r.error_message.as_ref(), "removing ACLs")?;
        removed += r.matching_acls.len();
    }
    outln!("Removed {removed} ACLs.");
    Ok(())
}

fn resource_name(code: i8) -> String {
    ResourceType::from_code(code).map_or_else(|| code.to_string(), |t| format!("{t:?}"))
}

fn operation_name(code: i8) -> String {
    AclOperation::from_code(code).map_or_else(|| code.to_string(), |o| format!("{o:?}"))
}

fn list(connect: &ConnectArgs, acl: &AclArgs, principal: Option<&str>) -> Result<(), CliError> {
    let mut wire = Wire::connect(&connect.bootstrap_server, connect)?;
    let mut lines = Vec::new();
    for f in filters(acl, principal)? {
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(f.resource_type_filter)
            .with_resource_name_filter(f.resource_name_filter)
            .with_pattern_type_filter(f.pattern_type_filter)
            .with_principal_filter(f.principal_filter)
            .with_host_filter(f.host_filter)
            .with_operation(f.operation)
            .with_permission_type(f.permission_type);
        let resp = wire.call(3, &req)?;
        check(resp.error_code, resp.error_message.as_ref(), "listing ACLs")?;
        for r in &resp.resources {
            for a in &r.acls {
                lines.push(format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    resource_name(r.resource_type),
                    r.resource_name,
                    if r.pattern_type == 4 {
                        "Prefixed"
                    } else {
                        "Literal"
                    },
                    a.principal,
                    a.host,
                    operation_name(a.operation),
                    if a.permission_type == 2 {
                        "Deny"
                    } else {
                        "Allow"
                    }
                ));
            }
        }
    }
    lines.sort();
    lines.dedup();
    for l in lines {
        outln!("{l}");
    }
    Ok(())
}
