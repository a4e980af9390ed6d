//! CreateTopics, DeleteTopics and CreatePartitions: validated here, decided and applied by
//! the active controller.

use std::collections::{BTreeMap, HashMap};

use fjord_controller::{ControllerRequest, ControllerResponse, CreateTopicRequest};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::errors::KafkaError;
use crate::config::defs;
use crate::topic_names;

fn err(code: ResponseError, msg: impl Into<String>) -> KafkaError {
    KafkaError::new(code, msg)
}

/// KIP-599: takes `partitions` from the client's controller mutation quota. Over it,
/// the topic fails with THROTTLING_QUOTA_EXCEEDED where the request version knows that
/// error (`strict`), and is let through with the client throttled where it does not.
fn take_mutations(
    ctx: &RequestContext,
    partitions: u64,
    strict: bool,
    throttle: &mut u64,
) -> Result<(), KafkaError> {
    match crate::quota::mutation_throttle(&ctx.broker, ctx.quota_client(), partitions) {
        Ok(()) => Ok(()),
        Err(ms) => {
            *throttle = (*throttle).max(ms);
            if strict {
                Err(err(
                    ResponseError::ThrottlingQuotaExceeded,
                    "The throttling quota has been exceeded.",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Validates topic configs given in a request: known names and valid values.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), KafkaError> {
    for (name, value) in configs {
        let def = defs::topic_def(name).ok_or_else(|| {
            err(
                ResponseError::InvalidConfig,
                format!("Unknown topic config name: {name}"),
            )
        })?;
        defs::validate(&def.def, value).map_err(|m| err(ResponseError::InvalidConfig, m))?;
    }
    Ok(())
}

/// Checks a new topic's name against Kafka's rules and existing topics.
pub fn validate_new_name(
    name: &str,
    existing: impl Iterator<Item = impl AsRef<str>>,
) -> Result<(), KafkaError> {
    topic_names::validate(name).map_err(|m| err(ResponseError::InvalidTopicException, m))?;
    for other in existing {
        if topic_names::collides(name, other.as_ref()) {
            return Err(err(
                ResponseError::InvalidTopicException,
                format!(
                    "Topic '{name}' collides with existing topic: {}",
                    other.as_ref()
                ),
            ));
        }
    }
    Ok(())
}

/// Creates topics through the controller and waits until this broker hosts them.
/// Returns one result per request, in order.
pub async fn create_via_controller(
    ctx: &RequestContext,
    topics: Vec<CreateTopicRequest>,
    validate_only: bool,
) -> Vec<(String, Result<Uuid, KafkaError>)> {
    if topics.is_empty() {
        return Vec::new();
    }
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let outcome = ctx
        .broker
        .submit_everywhere(ControllerRequest::CreateTopics {
            topics,
            validate_only,
        })
        .await;
    let results: Vec<(String, Result<Uuid, KafkaError>)> = match outcome {
        Ok(ControllerResponse::Topics(outcomes)) => outcomes
            .into_iter()
            .map(|o| (o.name, o.result.map_err(|e| KafkaError::from(&e))))
            .collect(),
        Ok(other) => names
            .into_iter()
            .map(|n| {
                (
                    n,
                    Err(err(
                        ResponseError::UnknownServerError,
                        format!("unexpected controller answer {other:?}"),
                    )),
                )
            })
            .collect(),
        Err(e) => {
            let e = KafkaError::from(&e);
            names.into_iter().map(|n| (n, Err(e.clone()))).collect()
        }
    };
    results
}

pub async fn create_topics(ctx: &RequestContext, req: CreateTopicsRequest) -> ResponseKind {
    let md = ctx.broker.metadata();
    let view = ctx.broker.view(&md);
    let default_partitions = view.broker_i64("num.partitions") as i32;
    let default_rf = view.broker_i64("default.replication.factor") as i16;
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.as_str()).or_default() += 1;
    }

    // Either an error now, or a request for the controller.
    let mut prepared: Vec<(String, Result<CreateTopicRequest, KafkaError>)> = Vec::new();
    let check = authz::Check::new(ctx);
    let may_create_any = check.cluster(Op::Create);
    for t in &req.topics {
        let name = t.name.0.to_string();
        let checked = (|| {
            // CREATE on the cluster, or on the topic (Kafka accepts either).
            if !may_create_any && !check.topic(Op::Create, &name) {
                return Err(authz::topic_denied(&name));
            }
            if counts.get(name.as_str()).copied().unwrap_or(0) > 1 {
                return Err(err(
                    ResponseError::InvalidRequest,
                    format!("Create topics request contains multiple entries for the topic {name}"),
                ));
            }
            validate_new_name(&name, md.topics.keys())?;
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                let value = c.value.as_ref().ok_or_else(|| {
                    err(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for topic configs: {}", c.name),
                    )
                })?;
                configs.insert(c.name.to_string(), value.to_string());
            }
            validate_topic_configs(&configs)?;
            let assignments = if t.assignments.is_empty() {
                None
            } else {
                if t.num_partitions != -1 || t.replication_factor != -1 {
                    return Err(err(
                        ResponseError::InvalidRequest,
                        "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
                    ));
                }
                let mut sorted: Vec<_> = t.assignments.iter().collect();
                sorted.sort_by_key(|a| a.partition_index);
                if sorted
                    .iter()
                    .enumerate()
                    .any(|(i, a)| a.partition_index != i as i32)
                {
                    return Err(err(
                        ResponseError::InvalidReplicaAssignment,
                        "Partitions in the replica assignment must be numbered 0..n without gaps",
                    ));
                }
                Some(
                    sorted
                        .iter()
                        .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                        .collect(),
                )
            };
            let num_partitions = match t.num_partitions {
                -1 => default_partitions,
                n if n < 1 && assignments.is_none() => {
                    return Err(err(
                        ResponseError::InvalidPartitions,
                        "Number of partitions was set to an invalid non-positive value.",
                    ))
                }
                n => n,
            };
            let replication_factor =
                match t.replication_factor {
                    -1 => default_rf,
                    n if n < 1 && assignments.is_none() => return Err(err(
                        ResponseError::InvalidReplicationFactor,
                        "Replication factor must be larger than 0, or -1 to use the default value.",
                    )),
                    n => n,
                };
            Ok(CreateTopicRequest {
                name: name.clone(),
                num_partitions,
                replication_factor,
                assignments,
                configs,
                internal: false,
            })
        })();
        prepared.push((name, checked));
    }

    let mut throttle = 0;
    if !req.validate_only {
        for (_, checked) in prepared.iter_mut() {
            let Ok(spec) = checked else { continue };
            let partitions = match &spec.assignments {
                Some(a) => a.len() as u64,
                None => spec.num_partitions.max(0) as u64,
            };
            if let Err(e) = take_mutations(ctx, partitions, ctx.version() >= 6, &mut throttle) {
                *checked = Err(e);
            }
        }
    }
    let to_submit: Vec<CreateTopicRequest> = prepared
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    let mut submitted: HashMap<String, Result<Uuid, KafkaError>> =
        create_via_controller(ctx, to_submit, req.validate_only)
            .await
            .into_iter()
            .collect();

    let md = ctx.broker.metadata();
    let view = ctx.broker.view(&md);
    let with_configs = ctx.version() >= 5;
    let results = prepared
        .into_iter()
        .map(|(name, checked)| {
            let outcome = match checked {
                Err(e) => Err(e),
                Ok(spec) => submitted
                    .remove(&name)
                    .unwrap_or_else(|| {
                        Err(err(
                            ResponseError::UnknownServerError,
                            "no result from the controller",
                        ))
                    })
                    .map(|id| (id, spec)),
            };
            // kafka-protocol defaults the message to "", Kafka sends null on success.
            let mut r = CreatableTopicResult::default()
                .with_name(TopicName(StrBytes::from_string(name.clone())))
                .with_error_message(None);
            match outcome {
                Ok((id, spec)) => {
                    let (partitions, rf) = match md.topics.get(&name) {
                        Some(t) => (
                            t.partitions.len() as i32,
                            t.partitions
                                .first()
                                .map(|p| p.replicas.len() as i16)
                                .unwrap_or(-1),
                        ),
                        None => match &spec.assignments {
                            Some(a) => (
                                a.len() as i32,
                                a.first().map(|r| r.len() as i16).unwrap_or(-1),
                            ),
                            None => (spec.num_partitions, spec.replication_factor),
                        },
                    };
                    r.topic_id = id;
                    r.num_partitions = partitions;
                    r.replication_factor = rf;
                    r.configs = with_configs.then(|| {
                        defs::TOPIC_CONFIGS
                            .iter()
                            .map(|d| {
                                let c = view.topic(d, &spec.configs);
                                CreatableTopicConfigs::default()
                                    .with_name(StrBytes::from_static_str(d.def.name))
                                    .with_value(Some(StrBytes::from_string(c.value)))
                                    .with_config_source(c.source as i8)
                            })
                            .collect()
                    });
                }
                Err(e) => {
                    r.error_code = e.code();
                    r.error_message = Some(StrBytes::from_string(e.message));
                }
            }
            r
        })
        .collect();
    ResponseKind::CreateTopics(
        CreateTopicsResponse::default()
            .with_topics(results)
            .with_throttle_time_ms(throttle.min(i32::MAX as u64) as i32),
    )
}

pub async fn delete_topics(ctx: &RequestContext, req: DeleteTopicsRequest) -> ResponseKind {
    let md = ctx.broker.metadata();
    // (name as given or resolved, id as given, resolution error)
    let mut wanted: Vec<(Option<String>, Uuid, Option<KafkaError>)> = Vec::new();
    for n in &req.topic_names {
        wanted.push((Some(n.0.to_string()), Uuid::nil(), None));
    }
    for t in &req.topics {
        match (&t.name, t.topic_id) {
            (Some(n), _) => wanted.push((Some(n.0.to_string()), Uuid::nil(), None)),
            (None, id) => match md.topic_by_id(&id) {
                Some(topic) => wanted.push((Some(topic.name.clone()), id, None)),
                None => wanted.push((
                    None,
                    id,
                    Some(err(
                        ResponseError::UnknownTopicId,
                        format!("Topic id {id} does not exist"),
                    )),
                )),
            },
        }
    }
    let deletion_enabled = ctx.broker.broker_bool("delete.topic.enable");
    let mut to_delete = Vec::new();
    let mut throttle = 0;
    let check = authz::Check::new(ctx);
    for (name, _, error) in &mut wanted {
        if error.is_some() {
            continue;
        }
        let Some(n) = name.as_ref() else { continue };
        if !deletion_enabled {
            *error = Some(err(
                ResponseError::TopicDeletionDisabled,
                "Topic deletion is disabled (delete.topic.enable=false)",
            ));
        } else if !check.topic(Op::Delete, n) {
            *error = Some(authz::topic_denied(n));
        } else if let Some(topic) = md.topics.get(n) {
            let partitions = topic.partitions.len() as u64;
            match take_mutations(ctx, partitions, ctx.version() >= 5, &mut throttle) {
                Ok(()) => to_delete.push(n.clone()),
                Err(e) => *error = Some(e),
            }
        } else {
            *error = Some(err(
                ResponseError::UnknownTopicOrPartition,
                format!("Topic {n} does not exist"),
            ));
        }
    }
    let mut outcomes: HashMap<String, Result<Uuid, KafkaError>> = HashMap::new();
    if !to_delete.is_empty() {
        match ctx
            .broker
            .submit_everywhere(ControllerRequest::DeleteTopics {
                names: to_delete.clone(),
            })
            .await
        {
            Ok(ControllerResponse::Topics(t)) => {
                for o in t {
                    outcomes.insert(o.name, o.result.map_err(|e| KafkaError::from(&e)));
                }
            }
            Ok(_) => {}
            Err(e) => {
                let e = KafkaError::from(&e);
                for n in &to_delete {
                    outcomes.insert(n.clone(), Err(e.clone()));
                }
            }
        }
    }
    let responses = wanted
        .into_iter()
        .map(|(name, id, error)| {
            let result = match error {
                Some(e) => Err(e),
                None => name
                    .as_ref()
                    .and_then(|n| outcomes.remove(n))
                    .unwrap_or_else(|| {
                        Err(err(
                            ResponseError::UnknownServerError,
                            "no result from the controller",
                        ))
                    }),
            };
            let mut r = DeletableTopicResult::default()
                .with_name(name.map(|n| TopicName(StrBytes::from_string(n))))
                .with_topic_id(id);
            match result {
                Ok(deleted_id) => r.topic_id = deleted_id,
                Err(e) => {
                    r.error_code = e.code();
                    r.error_message = Some(StrBytes::from_string(e.message));
                }
            }
            r
        })
        .collect();
    ResponseKind::DeleteTopics(
        DeleteTopicsResponse::default()
            .with_responses(responses)
            .with_throttle_time_ms(throttle.min(i32::MAX as u64) as i32),
    )
}

pub async fn create_partitions(ctx: &RequestContext, req: CreatePartitionsRequest) -> ResponseKind {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *counts.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    let mut throttle = 0;
    let md = ctx.broker.metadata();
    let check = authz::Check::new(ctx);
    for t in req.topics {
        let name = t.name.0.to_string();
        let outcome: Result<(), KafkaError> = if counts.get(&name).copied().unwrap_or(0) > 1 {
            Err(err(
                ResponseError::InvalidRequest,
                format!("Duplicate topic in request: {name}"),
            ))
        } else if !check.topic(Op::Alter, &name) {
            Err(authz::topic_denied(&name))
        } else if let Err(e) = (|| {
            if req.validate_only {
                return Ok(());
            }
            let current = md
                .topics
                .get(&name)
                .map_or(0, |t| t.partitions.len() as i64);
            let added = (i64::from(t.count) - current).max(0) as u64;
            take_mutations(ctx, added, ctx.version() >= 3, &mut throttle)
        })() {
            Err(e)
        } else {
            let assignments = t.assignments.filter(|a| !a.is_empty()).map(|a| {
                a.into_iter()
                    .map(|x| x.broker_ids.into_iter().map(|b| b.0).collect())
                    .collect()
            });
            ctx.broker
                .submit_everywhere(ControllerRequest::CreatePartitions {
                    topic: name.clone(),
                    count: t.count,
                    assignments,
                    validate_only: req.validate_only,
                })
                .await
                .map_err(|e| KafkaError::from(&e))
                .and_then(|r| r.single_topic().map_err(|e| KafkaError::from(&e)))
        };
        let mut r = CreatePartitionsTopicResult::default()
            .with_name(TopicName(StrBytes::from_string(name)));
        if let Err(e) = outcome {
            r.error_code = e.code();
            r.error_message = Some(StrBytes::from_string(e.message));
        }
        results.push(r);
    }
    ResponseKind::CreatePartitions(
        CreatePartitionsResponse::default()
            .with_results(results)
            .with_throttle_time_ms(throttle.min(i32::MAX as u64) as i32),
    )
}
