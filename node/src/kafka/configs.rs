//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, brokers, broker
//! loggers and groups (`group_configs`),
//! with Kafka's config names, defaults, sources and synonyms.

use std::collections::{BTreeMap, HashMap};

use fjord_controller::metadata::{ConfigOp, ConfigResource};
use fjord_controller::{ClusterMetadata, ControllerRequest};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_request, incremental_alter_configs_response,
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;
use super::group_configs::{self, GROUP};
use super::topics::validate_topic_configs;
use crate::config::defs::{self, ConfigDef, ConfigType};
use crate::config::{ConfigSource, ConfigView, ResolvedConfig};
use crate::security::{
    DEFAULT_CLIENT_AUTH, DEFAULT_ENDPOINT_IDENTIFICATION, DEFAULT_SASL_MECHANISMS, STORE_TYPE,
};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Log levels; Kafka authorizes them as the cluster's configs.
const BROKER_LOGGER: i8 = 8;

fn err(code: ResponseError, msg: impl Into<String>) -> KafkaError {
    KafkaError::new(code, msg)
}

fn entry(
    def: &ConfigDef,
    resolved: ResolvedConfig,
    read_only: bool,
    include_synonyms: bool,
    include_docs: bool,
) -> DescribeConfigsResourceResult {
    let value = if resolved.value.is_empty() && def.default.is_empty() {
        None
    } else {
        Some(StrBytes::from_string(resolved.value))
    };
    let mut e = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(def.name))
        .with_value(value)
        .with_read_only(read_only)
        .with_config_source(resolved.source as i8)
        .with_is_sensitive(false)
        .with_config_type(def.ty as i8);
    if include_synonyms {
        e.synonyms = resolved
            .synonyms
            .into_iter()
            .filter(|(_, v, _)| !v.is_empty())
            .map(|(n, v, s)| {
                DescribeConfigsSynonym::default()
                    .with_name(StrBytes::from_string(n))
                    .with_value(Some(StrBytes::from_string(v)))
                    .with_source(s as i8)
            })
            .collect();
    }
    if include_docs {
        e.documentation = Some(StrBytes::from_static_str(def.doc));
    }
    e
}

/// The security settings a broker reports among its configs, read-only, as Kafka does:
/// (name, type, Fjord's default, sensitive). Sensitive values are never sent.
const SECURITY_CONFIGS: &[(&str, ConfigType, &str, bool)] = &[
    ("ssl.keystore.location", ConfigType::String, "", false),
    ("ssl.keystore.type", ConfigType::String, STORE_TYPE, false),
    ("ssl.truststore.location", ConfigType::String, "", false),
    ("ssl.truststore.type", ConfigType::String, STORE_TYPE, false),
    (
        "ssl.client.auth",
        ConfigType::String,
        DEFAULT_CLIENT_AUTH,
        false,
    ),
    (
        "ssl.endpoint.identification.algorithm",
        ConfigType::String,
        DEFAULT_ENDPOINT_IDENTIFICATION,
        false,
    ),
    (
        "sasl.enabled.mechanisms",
        ConfigType::List,
        DEFAULT_SASL_MECHANISMS,
        false,
    ),
    ("sasl.jaas.config", ConfigType::String, "", true),
    ("connections.max.reauth.ms", ConfigType::Long, "0", false),
    ("authorizer.class.name", ConfigType::String, "", false),
    ("super.users", ConfigType::String, "", false),
    (
        "allow.everyone.if.no.acl.found",
        ConfigType::Boolean,
        "false",
        false,
    ),
];

/// This broker's security settings as DescribeConfigs entries: the ones above, and
/// every listener-prefixed one (`listener.name.<l>.<key>`) that is set.
fn security_entries(
    props: &BTreeMap<String, String>,
    wanted: impl Fn(&str) -> bool,
    include_docs: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let one = |name: &str, ty: ConfigType, value: Option<&String>, default: &str, sensitive| {
        let (value, source) = match value {
            Some(v) => (Some(v.clone()), ConfigSource::StaticBrokerConfig),
            None => (
                (!default.is_empty()).then(|| default.to_string()),
                ConfigSource::DefaultConfig,
            ),
        };
        let mut e = DescribeConfigsResourceResult::default()
            .with_name(StrBytes::from_string(name.to_string()))
            .with_value(if sensitive {
                None
            } else {
                value.map(StrBytes::from_string)
            })
            .with_read_only(true)
            .with_config_source(source as i8)
            .with_is_sensitive(sensitive)
            .with_config_type(ty as i8);
        if include_docs {
            e.documentation = Some(StrBytes::from_static_str(
                "A security setting, read when the broker starts (TLS files are reloaded when they change).",
            ));
        }
        e
    };
    let mut out: Vec<DescribeConfigsResourceResult> = SECURITY_CONFIGS
        .iter()
        .filter(|(name, ..)| wanted(name))
        .map(|(name, ty, default, sensitive)| one(name, *ty, props.get(*name), default, *sensitive))
        .collect();
    for (key, value) in props.range("listener.name.".to_string()..) {
        let Some(rest) = key.strip_prefix("listener.name.") else {
            break;
        };
        let Some((_, suffix)) = rest.split_once('.') else {
            continue;
        };
        if let Some((_, ty, _, sensitive)) = SECURITY_CONFIGS.iter().find(|(n, ..)| *n == suffix) {
            if wanted(key) {
                out.push(one(key, *ty, Some(value), "", *sensitive));
            }
        }
    }
    out
}

/// Parses a broker resource name: "" is the cluster-wide default, else a broker id.
fn broker_target(name: &str) -> Result<Option<i32>, KafkaError> {
    if name.is_empty() {
        return Ok(None);
    }
    name.parse::<i32>().map(Some).map_err(|_| {
        err(
            ResponseError::InvalidRequest,
            format!("broker resource name '{name}' is not a broker id"),
        )
    })
}

/// A BROKER_LOGGER resource names the broker whose loggers it means; a broker answers
/// for its own only (Kafka's clients send it to that broker).
fn logger_target(ctx: &RequestContext, name: &str) -> Result<(), KafkaError> {
    match broker_target(name)? {
        Some(id) if id == ctx.broker.node_id => Ok(()),
        Some(id) => Err(err(
            ResponseError::InvalidRequest,
            format!(
                "broker {} answers for its own loggers only; ask broker {id}",
                ctx.broker.node_id
            ),
        )),
        None => Err(err(
            ResponseError::InvalidRequest,
            "a BROKER_LOGGER resource names a broker id",
        )),
    }
}

fn logger_error(e: crate::log_levels::LogLevelError) -> KafkaError {
    use crate::log_levels::LogLevelError;
    let code = match e {
        LogLevelError::InvalidLevel(_) | LogLevelError::InvalidLogger(_) => {
            ResponseError::InvalidConfig
        }
        LogLevelError::RootRemoved => ResponseError::InvalidRequest,
        LogLevelError::Unavailable | LogLevelError::Reload(_) => ResponseError::UnknownServerError,
    };
    err(code, e.to_string())
}

/// Kafka's DYNAMIC_BROKER_LOGGER_CONFIG config source (KIP-412).
const LOGGER_SOURCE: i8 = 6;

fn describe_loggers(
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<DescribeConfigsResourceResult>, KafkaError> {
    Ok(crate::log_levels::describe()
        .map_err(logger_error)?
        .into_iter()
        .filter(|(name, _)| wanted(name))
        .map(|(name, level)| {
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_string(name))
                .with_value(Some(StrBytes::from_string(level)))
                .with_read_only(false)
                .with_config_source(LOGGER_SOURCE)
                .with_is_sensitive(false)
                .with_config_type(ConfigType::String as i8)
        })
        .collect())
}

pub fn describe(ctx: &RequestContext, req: DescribeConfigsRequest) -> ResponseKind {
    let md = ctx.broker.metadata();
    let view = ctx.broker.view(&md);
    let check = authz::Check::new(ctx);
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let name = res.resource_name.to_string();
            let keys: Option<Vec<String>> = res
                .configuration_keys
                .map(|k| k.iter().map(|s| s.to_string()).collect());
            let wanted = |n: &str| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == n));
            let mut result = DescribeConfigsResult::default()
                .with_error_message(None)
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let configs: Result<Vec<DescribeConfigsResourceResult>, KafkaError> = match res
                .resource_type
            {
                TOPIC if !check.topic(Op::DescribeConfigs, &name) => {
                    Err(authz::topic_denied(&name))
                }
                BROKER if !check.cluster(Op::DescribeConfigs) => Err(authz::cluster_denied()),
                TOPIC => match md.topics.get(&name) {
                    None => Err(err(
                        ResponseError::UnknownTopicOrPartition,
                        format!("Topic {name} does not exist"),
                    )),
                    Some(t) => Ok(defs::TOPIC_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.def.name))
                        .map(|d| {
                            entry(
                                &d.def,
                                view.topic(d, &t.configs),
                                false,
                                req.include_synonyms,
                                req.include_documentation,
                            )
                        })
                        .collect()),
                },
                BROKER => match broker_target(&name) {
                    Err(e) => Err(e),
                    Ok(None) => Ok(md
                        .cluster_configs
                        .iter()
                        .filter(|(k, _)| wanted(k))
                        .filter_map(|(k, v)| {
                            let d = defs::broker_def(k)?;
                            let resolved = ResolvedConfig {
                                name: k.clone(),
                                value: v.clone(),
                                source: crate::config::ConfigSource::DynamicDefaultBrokerConfig,
                                synonyms: vec![(
                                    k.clone(),
                                    v.clone(),
                                    crate::config::ConfigSource::DynamicDefaultBrokerConfig,
                                )],
                            };
                            Some(entry(
                                &d.def,
                                resolved,
                                false,
                                req.include_synonyms,
                                req.include_documentation,
                            ))
                        })
                        .collect()),
                    Ok(Some(id)) if id == ctx.broker.node_id => Ok(defs::BROKER_CONFIGS
                        .iter()
                        .filter(|d| wanted(d.def.name))
                        .map(|d| {
                            entry(
                                &d.def,
                                view.broker(d),
                                !d.dynamic,
                                req.include_synonyms,
                                req.include_documentation,
                            )
                        })
                        .chain(security_entries(
                            &ctx.broker.config.static_props,
                            wanted,
                            req.include_documentation,
                        ))
                        .collect()),
                    Ok(Some(id)) => Err(err(
                        ResponseError::InvalidRequest,
                        format!(
                            "broker {} answers for its own configs only; ask broker {id}",
                            ctx.broker.node_id
                        ),
                    )),
                },
                BROKER_LOGGER if !check.cluster(Op::DescribeConfigs) => {
                    Err(authz::cluster_denied())
                }
                BROKER_LOGGER => logger_target(ctx, &name).and_then(|()| describe_loggers(wanted)),
                GROUP if !check.group(Op::DescribeConfigs, &name) => Err(err(
                    ResponseError::GroupAuthorizationFailed,
                    format!("not authorized to describe the configs of group {name}"),
                )),
                GROUP => Ok(group_configs::describe(
                    &view,
                    &md,
                    &name,
                    wanted,
                    req.include_synonyms,
                    req.include_documentation,
                )),
                other => Err(err(
                    ResponseError::InvalidRequest,
                    format!("unsupported resource type {other}"),
                )),
            };
            match configs {
                Ok(c) => result.configs = c,
                Err(e) => {
                    result.error_code = e.code();
                    result.error_message = Some(StrBytes::from_string(e.message));
                }
            }
            result
        })
        .collect();
    ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results))
}

/// Validates broker config changes: known, dynamically alterable, valid values.
fn validate_broker_ops(ops: &[ConfigOp]) -> Result<(), KafkaError> {
    for op in ops {
        let (key, value) = match op {
            ConfigOp::Set { key, value } => (key, Some(value)),
            ConfigOp::Delete { key } => (key, None),
        };
        let def = defs::broker_def(key).ok_or_else(|| {
            err(
                ResponseError::InvalidConfig,
                format!("Unknown broker config name: {key}"),
            )
        })?;
        if !def.dynamic {
            return Err(err(
                ResponseError::InvalidRequest,
                format!("Cannot update these configs dynamically: {key}"),
            ));
        }
        if let Some(v) = value {
            defs::validate(&def.def, v).map_err(|m| err(ResponseError::InvalidConfig, m))?;
        }
    }
    Ok(())
}

fn resource_of(
    md: &ClusterMetadata,
    resource_type: i8,
    name: &str,
) -> Result<ConfigResource, KafkaError> {
    match resource_type {
        TOPIC => {
            if md.topics.contains_key(name) {
                Ok(ConfigResource::Topic(name.to_string()))
            } else {
                Err(err(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic {name} does not exist"),
                ))
            }
        }
        BROKER => Ok(ConfigResource::Broker(broker_target(name)?)),
        GROUP if name.is_empty() => Err(err(
            ResponseError::InvalidRequest,
            "a GROUP resource names a group id",
        )),
        GROUP => Ok(ConfigResource::Group(name.to_string())),
        other => Err(err(
            ResponseError::InvalidRequest,
            format!("unsupported resource type {other}"),
        )),
    }
}

async fn submit(
    ctx: &RequestContext,
    resource: ConfigResource,
    ops: Vec<ConfigOp>,
    replace: bool,
    validate_only: bool,
) -> Result<(), KafkaError> {
    match &resource {
        ConfigResource::Topic(_) => {
            let sets: BTreeMap<String, String> = ops
                .iter()
                .filter_map(|o| match o {
                    ConfigOp::Set { key, value } => Some((key.clone(), value.clone())),
                    ConfigOp::Delete { .. } => None,
                })
                .collect();
            validate_topic_configs(&sets)?;
            for o in &ops {
                if let ConfigOp::Delete { key } = o {
                    if defs::topic_def(key).is_none() {
                        return Err(err(
                            ResponseError::InvalidConfig,
                            format!("Unknown topic config name: {key}"),
                        ));
                    }
                }
            }
        }
        ConfigResource::Broker(_) => validate_broker_ops(&ops)?,
        ConfigResource::Group(g) => {
            let md = ctx.broker.metadata();
            group_configs::validate(&ctx.broker.view(&md), &md, g, &ops)?;
        }
    }
    ctx.broker
        .submit_everywhere(ControllerRequest::AlterConfigs {
            resource,
            ops,
            replace,
            validate_only,
        })
        .await
        .map(|_| ())
        .map_err(|e| KafkaError::from(&e))
}

/// One resource of an AlterConfigs or IncrementalAlterConfigs request, reduced to what
/// the shared driver needs.
struct Change<C> {
    resource_type: i8,
    resource_name: StrBytes,
    configs: Vec<C>,
}

/// Applies one config change per resource: refuses duplicate resources, turns each into
/// ops with `plan`, submits them, and waits until local partitions see the result.
/// Returns `(resource_type, resource_name, outcome)` per resource, in request order.
async fn alter_each<C>(
    ctx: &RequestContext,
    changes: Vec<Change<C>>,
    validate_only: bool,
    replace: bool,
    plan: impl Fn(&ConfigResource, &[C]) -> Result<Vec<ConfigOp>, KafkaError>,
) -> Vec<(i8, StrBytes, Result<(), KafkaError>)> {
    let md = ctx.broker.metadata();
    let mut counts: HashMap<(i8, String), usize> = HashMap::new();
    for c in &changes {
        *counts
            .entry((c.resource_type, c.resource_name.to_string()))
            .or_insert(0) += 1;
    }
    let mut out = Vec::with_capacity(changes.len());
    let check = authz::Check::new(ctx);
    for change in changes {
        let name = change.resource_name.to_string();
        let result = async {
            match change.resource_type {
                TOPIC if !check.topic(Op::AlterConfigs, &name) => {
                    return Err(authz::topic_denied(&name))
                }
                BROKER | BROKER_LOGGER if !check.cluster(Op::AlterConfigs) => {
                    return Err(authz::cluster_denied())
                }
                GROUP if !check.group(Op::AlterConfigs, &name) => {
                    return Err(err(
                        ResponseError::GroupAuthorizationFailed,
                        format!("not authorized to alter the configs of group {name}"),
                    ))
                }
                _ => {}
            }
            if counts[&(change.resource_type, name.clone())] > 1 {
                return Err(err(
                    ResponseError::InvalidRequest,
                    format!("duplicate resource {name} in request"),
                ));
            }
            let resource = resource_of(&md, change.resource_type, &name)?;
            let ops = plan(&resource, &change.configs)?;
            submit(ctx, resource, ops, replace, validate_only).await
        }
        .await;
        out.push((change.resource_type, change.resource_name, result));
    }
    out
}

/// Legacy AlterConfigs: the given configs replace all of the resource's overrides.
pub async fn alter(ctx: &RequestContext, req: AlterConfigsRequest) -> ResponseKind {
    let changes = req
        .resources
        .into_iter()
        .map(|r| Change {
            resource_type: r.resource_type,
            resource_name: r.resource_name,
            configs: r.configs,
        })
        .collect();
    let results = alter_each(ctx, changes, req.validate_only, true, |_, configs| {
        configs
            .iter()
            .map(|c| {
                let value = c.value.as_ref().ok_or_else(|| {
                    err(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for config {}", c.name),
                    )
                })?;
                Ok(ConfigOp::Set {
                    key: c.name.to_string(),
                    value: value.to_string(),
                })
            })
            .collect()
    })
    .await;
    let responses = results
        .into_iter()
        .map(|(resource_type, resource_name, result)| {
            let mut r = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_message(None)
                .with_resource_type(resource_type)
                .with_resource_name(resource_name);
            if let Err(e) = result {
                r.error_code = e.code();
                r.error_message = Some(StrBytes::from_string(e.message));
            }
            r
        })
        .collect();
    ResponseKind::AlterConfigs(AlterConfigsResponse::default().with_responses(responses))
}

/// Current effective value of a config on a resource, for APPEND and SUBTRACT.
fn current_value(
    view: &ConfigView<'_>,
    md: &ClusterMetadata,
    resource: &ConfigResource,
    key: &str,
) -> String {
    match resource {
        ConfigResource::Topic(t) => {
            let overrides = md
                .topics
                .get(t)
                .map(|x| x.configs.clone())
                .unwrap_or_default();
            view.topic_value(key, &overrides)
        }
        ConfigResource::Broker(_) => view.broker_value(key),
        ConfigResource::Group(g) => group_configs::value(view, md, g, key),
    }
}

fn config_type(resource: &ConfigResource, key: &str) -> Option<ConfigType> {
    match resource {
        ConfigResource::Topic(_) => defs::topic_def(key).map(|d| d.def.ty),
        ConfigResource::Broker(_) => defs::broker_def(key).map(|d| d.def.ty),
        ConfigResource::Group(_) => group_configs::config_type(key),
    }
}

/// Turns one IncrementalAlterConfigs entry (SET 0, DELETE 1, APPEND 2, SUBTRACT 3) into an
/// op; list appends and subtracts are resolved against the current effective value.
fn incremental_op(
    view: &ConfigView<'_>,
    md: &ClusterMetadata,
    resource: &ConfigResource,
    c: &incremental_alter_configs_request::AlterableConfig,
) -> Result<ConfigOp, KafkaError> {
    let key = c.name.to_string();
    let value = c.value.as_ref().map(|v| v.to_string());
    match c.config_operation {
        0 => Ok(ConfigOp::Set {
            value: value.ok_or_else(|| {
                err(
                    ResponseError::InvalidRequest,
                    format!("Null value not supported for SET of {key}"),
                )
            })?,
            key,
        }),
        1 => Ok(ConfigOp::Delete { key }),
        op @ (2 | 3) => {
            if config_type(resource, &key) != Some(ConfigType::List) {
                return Err(err(
                    ResponseError::InvalidConfig,
                    format!("Config value append/subtract is not allowed for config key: {key}"),
                ));
            }
            let split = |v: &str| -> Vec<String> {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            };
            let mut items = split(&current_value(view, md, resource, &key));
            let given = split(&value.unwrap_or_default());
            if op == 2 {
                for g in given {
                    if !items.contains(&g) {
                        items.push(g);
                    }
                }
            } else {
                items.retain(|i| !given.contains(i));
            }
            Ok(ConfigOp::Set {
                key,
                value: items.join(","),
            })
        }
        other => Err(err(
            ResponseError::InvalidRequest,
            format!("unknown config operation {other}"),
        )),
    }
}

/// An IncrementalAlterConfigs of this broker's loggers: SET a level or DELETE back to the
/// root's, all checked before any applies; in memory until the broker restarts.
fn alter_loggers(
    ctx: &RequestContext,
    name: &str,
    configs: &[incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), KafkaError> {
    if !authz::Check::new(ctx).cluster(Op::AlterConfigs) {
        return Err(authz::cluster_denied());
    }
    logger_target(ctx, name)?;
    let changes = configs
        .iter()
        .map(|c| {
            let logger = c.name.to_string();
            match c.config_operation {
                0 => c
                    .value
                    .as_ref()
                    .map(|v| (logger.clone(), Some(v.to_string())))
                    .ok_or_else(|| {
                        err(
                            ResponseError::InvalidRequest,
                            format!("Null value not supported for SET of logger {logger}"),
                        )
                    }),
                1 => Ok((logger, None)),
                op => Err(err(
                    ResponseError::InvalidRequest,
                    format!("operation {op} does not apply to a logger; use SET or DELETE"),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    crate::log_levels::apply(&changes, validate_only).map_err(logger_error)
}

pub async fn incremental_alter(
    ctx: &RequestContext,
    req: IncrementalAlterConfigsRequest,
) -> ResponseKind {
    let md = ctx.broker.metadata();
    let view = ctx.broker.view(&md);
    // Loggers are this broker's own business; everything else goes through the
    // controller. Answers keep the request's order.
    let mut logger_results = HashMap::new();
    let mut changes = Vec::new();
    for (i, r) in req.resources.into_iter().enumerate() {
        if r.resource_type == BROKER_LOGGER {
            let result = alter_loggers(ctx, &r.resource_name, &r.configs, req.validate_only);
            logger_results.insert(i, (r.resource_type, r.resource_name, result));
        } else {
            changes.push(Change {
                resource_type: r.resource_type,
                resource_name: r.resource_name,
                configs: r.configs,
            });
        }
    }
    let results = alter_each(
        ctx,
        changes,
        req.validate_only,
        false,
        |resource, configs| {
            configs
                .iter()
                .map(|c| incremental_op(&view, &md, resource, c))
                .collect()
        },
    )
    .await;
    let mut others = results.into_iter();
    let results: Vec<_> = (0..logger_results.len() + others.len())
        .filter_map(|i| logger_results.remove(&i).or_else(|| others.next()))
        .collect();
    let responses = results
        .into_iter()
        .map(|(resource_type, resource_name, result)| {
            let mut r = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_message(None)
                .with_resource_type(resource_type)
                .with_resource_name(resource_name);
            if let Err(e) = result {
                r.error_code = e.code();
                r.error_message = Some(StrBytes::from_string(e.message));
            }
            r
        })
        .collect();
    ResponseKind::IncrementalAlterConfigs(
        IncrementalAlterConfigsResponse::default().with_responses(responses),
    )
}
