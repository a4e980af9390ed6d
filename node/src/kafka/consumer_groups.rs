//! ConsumerGroupHeartbeat and ConsumerGroupDescribe: the KIP-848 consumer group protocol
//! (`group.protocol=consumer`), answered by the shard that coordinates the group. The
//! protocol itself is in `group::consumer`; this is the translation to and from the wire,
//! plus the checks that do not need the group: authorization and request shape.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedTopic,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as WireAssignment, TopicPartitions as WireTopic,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::HashMap;

use fjord_controller::metadata::acls::ResourceType;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::dispatch::Reply;
use crate::group::consumer::{self, Assignment, Heartbeat, HeartbeatAnswer, MAX_SUBSCRIBED_TOPICS};
use crate::group::coordinator::{consumer_group_config, MetadataCatalog};
use crate::group::shard::Pending;
use crate::time::now_ms;

/// Longest member, instance or rack id accepted (they are stored with the group).
const MAX_ID_LEN: usize = 255;

pub fn heartbeat(ctx: &RequestContext, req: ConsumerGroupHeartbeatRequest) -> Reply {
    let version = ctx.version();
    let group_id = req.group_id.0.to_string();
    let check = authz::Check::new(ctx);
    if !super::features::consumer_protocol_enabled(&ctx.broker.metadata()) {
        // As Kafka with group.version 0: the protocol is off cluster-wide.
        return error_response(
            ResponseError::UnsupportedVersion,
            Some("the consumer group protocol is off: group.version is 0"),
        )
        .into();
    }
    if !check.group(Op::Read, &group_id) {
        return error_response(ResponseError::GroupAuthorizationFailed, None).into();
    }
    if let Err((e, why)) = validate(version, &req) {
        return error_response(e, Some(why)).into();
    }
    if let Some(names) = &req.subscribed_topic_names {
        if names.iter().any(|t| !check.topic(Op::Describe, &t.0)) {
            return error_response(ResponseError::TopicAuthorizationFailed, None).into();
        }
    }
    let hb = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ns| ns.iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: if version >= 1 {
            req.subscribed_topic_regex.as_ref().map(|s| s.to_string())
        } else {
            None
        },
        server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned: req.topic_partitions.as_ref().map(|tps| {
            let mut a = Assignment::new();
            for tp in tps {
                a.entry(tp.topic_id)
                    .or_default()
                    .extend(tp.partitions.iter().copied());
            }
            a
        }),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
        principal: format!("User:{}", ctx.principal),
    };
    let md = ctx.broker.metadata();
    let shard = match ctx.broker.groups.shard_for(&md, &group_id) {
        Ok(s) => s,
        Err(e) => return error_response(e, None).into(),
    };
    let config = consumer_group_config(&ctx.broker, &group_id);
    let interval = i32::try_from(config.heartbeat_interval_ms).unwrap_or(i32::MAX);
    let outcome = shard.consumer_heartbeat(
        &group_id,
        hb,
        &MetadataCatalog {
            md: &md,
            authorizer: &ctx.broker.security.authorizer,
        },
        &config,
        now_ms(),
    );
    match outcome {
        Err(e) => error_response(e, None).into(),
        Ok(Pending::Ready(r)) => answer(r, interval).into(),
        Ok(Pending::Waiting(rx)) => Reply::Later(Box::pin(async move {
            let r = rx
                .await
                .unwrap_or(Err(ResponseError::CoordinatorNotAvailable));
            answer(r, interval)
        })),
    }
}

/// The checks Kafka makes before the group is looked at, with its messages.
fn validate(
    version: i16,
    req: &ConsumerGroupHeartbeatRequest,
) -> Result<(), (ResponseError, &'static str)> {
    let invalid = |why| Err((ResponseError::InvalidRequest, why));
    if req.group_id.0.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if req.member_id.len() > MAX_ID_LEN
        || req
            .instance_id
            .as_ref()
            .is_some_and(|s| s.len() > MAX_ID_LEN)
        || req.rack_id.as_ref().is_some_and(|s| s.len() > MAX_ID_LEN)
    {
        return invalid("MemberId, InstanceId and RackId are limited to 255 bytes.");
    }
    if req.member_epoch != 0 || version >= 1 {
        // v1 clients make up their own member id (KIP-1082).
        if req.member_id.is_empty() {
            return invalid("MemberId can't be empty.");
        }
    }
    if req.member_epoch == consumer::STATIC_LEAVE_EPOCH && req.instance_id.is_none() {
        return invalid("InstanceId can't be null when leaving temporarily.");
    }
    if let Some(names) = &req.subscribed_topic_names {
        if names.len() > MAX_SUBSCRIBED_TOPICS {
            return invalid("Too many subscribed topics.");
        }
        if names
            .iter()
            .any(|n| crate::topic_names::validate(&n.0).is_err())
        {
            return invalid("SubscribedTopicNames holds an invalid topic name.");
        }
    }
    if req.member_epoch == 0 && req.rebalance_timeout_ms == -1 {
        return invalid("RebalanceTimeoutMs must be provided in first request.");
    }
    if req.member_epoch == 0
        && req.subscribed_topic_names.is_none()
        && req.subscribed_topic_regex.is_none()
    {
        return invalid(
            "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
        );
    }
    if req.member_epoch == 0 && req.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
        return invalid("TopicPartitions must be empty when (re-)joining.");
    }
    Ok(())
}

fn error_response(e: ResponseError, why: Option<&str>) -> ResponseKind {
    ResponseKind::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(e.code())
            .with_error_message(why.map(|w| StrBytes::from_string(w.to_string())))
            .with_member_epoch(0),
    )
}

fn answer(r: Result<HeartbeatAnswer, ResponseError>, interval_ms: i32) -> ResponseKind {
    match r {
        Err(e) => error_response(e, None),
        Ok(a) => ResponseKind::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(StrBytes::from_string(a.member_id)))
                .with_member_epoch(a.member_epoch)
                .with_heartbeat_interval_ms(interval_ms)
                .with_assignment(a.assignment.map(|assigned| {
                    WireAssignment::default().with_topic_partitions(
                        assigned
                            .into_iter()
                            .filter(|(_, ps)| !ps.is_empty())
                            .map(|(topic_id, ps)| {
                                WireTopic::default()
                                    .with_topic_id(topic_id)
                                    .with_partitions(ps.into_iter().collect())
                            })
                            .collect(),
                    )
                })),
        ),
    }
}

pub fn describe(ctx: &RequestContext, req: ConsumerGroupDescribeRequest) -> ResponseKind {
    let md = ctx.broker.metadata();
    let check = authz::Check::new(ctx);
    let version = ctx.version();
    let groups = req
        .group_ids
        .iter()
        .map(|g| {
            let group_id = g.0.to_string();
            let mut out = DescribedGroup::default().with_group_id(g.clone());
            if !check.group(Op::Describe, &group_id) {
                out.error_code = ResponseError::GroupAuthorizationFailed.code();
                return out;
            }
            let found = ctx
                .broker
                .groups
                .shard_for(&md, &group_id)
                .and_then(|s| s.consumer_describe(&group_id));
            let d = match found {
                Err(ResponseError::GroupIdNotFound) => {
                    out.error_code = ResponseError::GroupIdNotFound.code();
                    out.error_message = Some(StrBytes::from_string(format!(
                        "Group {group_id} is not a consumer group."
                    )));
                    return out;
                }
                Err(e) => {
                    out.error_code = e.code();
                    return out;
                }
                Ok(None) => {
                    out.error_code = ResponseError::GroupIdNotFound.code();
                    out.error_message = Some(StrBytes::from_string(format!(
                        "Group {group_id} not found."
                    )));
                    return out;
                }
                Ok(Some(d)) => d,
            };
            if req.include_authorized_operations {
                out.authorized_operations = check.operations(ResourceType::Group, &group_id);
            }
            let mut names: HashMap<uuid::Uuid, String> = d.topic_names;
            let name_of = |names: &mut HashMap<uuid::Uuid, String>, id: &uuid::Uuid| {
                names
                    .entry(*id)
                    .or_insert_with(|| {
                        md.topics
                            .values()
                            .find(|t| t.id == *id)
                            .map(|t| t.name.clone())
                            .unwrap_or_default()
                    })
                    .clone()
            };
            let mut described = |a: &Assignment| {
                DescribedAssignment::default().with_topic_partitions(
                    a.iter()
                        .filter(|(_, ps)| !ps.is_empty())
                        .map(|(id, ps)| {
                            DescribedTopic::default()
                                .with_topic_id(*id)
                                .with_topic_name(TopicName(StrBytes::from_string(name_of(
                                    &mut names, id,
                                ))))
                                .with_partitions(ps.iter().copied().collect())
                        })
                        .collect(),
                )
            };
            out.group_state = StrBytes::from_static_str(d.state.name());
            out.group_epoch = d.group_epoch;
            out.assignment_epoch = d.assignment_epoch;
            out.assignor_name = StrBytes::from_string(d.assignor);
            out.members = d
                .members
                .into_iter()
                .map(|(m, target)| {
                    let mut member = Member::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
                        .with_instance_id(m.instance_id.map(StrBytes::from_string))
                        .with_rack_id(m.rack_id.map(StrBytes::from_string))
                        .with_member_epoch(m.member_epoch)
                        .with_client_id(StrBytes::from_string(m.client_id))
                        .with_client_host(StrBytes::from_string(m.client_host))
                        .with_subscribed_topic_names(
                            m.subscribed_topic_names
                                .into_iter()
                                .map(|n| TopicName(StrBytes::from_string(n)))
                                .collect(),
                        )
                        .with_subscribed_topic_regex(
                            m.subscribed_topic_regex.map(StrBytes::from_string),
                        )
                        .with_assignment(described(&m.assigned))
                        .with_target_assignment(described(&target));
                    if version >= 1 {
                        // 1: a member speaking the consumer protocol (not a classic
                        // member of a migrated group).
                        member.member_type = 1;
                    }
                    member
                })
                .collect();
            out
        })
        .collect();
    ResponseKind::ConsumerGroupDescribe(
        ConsumerGroupDescribeResponse::default().with_groups(groups),
    )
}
