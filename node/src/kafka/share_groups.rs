//! ShareGroupHeartbeat and ShareGroupDescribe: KIP-932 share group membership, answered
//! by the shard that coordinates the group. Membership itself is in
//! `group::share::group`; this is the translation to and from the wire, plus the checks
//! that do not need the group: the share.version feature, authorization and request
//! shape. Records are fetched and acknowledged at the partition leaders (ShareFetch,
//! ShareAcknowledge), not here.

use std::collections::HashMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedTopic,
};
use kafka_protocol::messages::share_group_heartbeat_response::{
    Assignment as WireAssignment, TopicPartitions as WireTopic,
};
use kafka_protocol::messages::{
    ResponseKind, ShareGroupDescribeRequest, ShareGroupDescribeResponse,
    ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use fjord_controller::metadata::acls::ResourceType;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::dispatch::Reply;
use crate::group::consumer::{Assignment, LEAVE_EPOCH, MAX_SUBSCRIBED_TOPICS};
use crate::group::coordinator::{share_group_config, MetadataCatalog};
use crate::group::shard::Pending;
use crate::group::share::{ShareHeartbeat, ShareHeartbeatAnswer};
use crate::time::now_ms;

/// Longest member or rack id accepted (they are stored with the group).
const MAX_ID_LEN: usize = 255;

/// Kafka's message when share.version is below 1.
const SHARE_GROUPS_OFF: &str = "share groups are off: share.version is 0";

pub fn heartbeat(ctx: &RequestContext, req: ShareGroupHeartbeatRequest) -> Reply {
    let group_id = req.group_id.0.to_string();
    let md = ctx.broker.metadata();
    if !super::features::share_groups_enabled(&md) {
        // As Kafka 4.1 until `kafka-features.sh upgrade --feature share.version=1`.
        return error_response(ResponseError::UnsupportedVersion, Some(SHARE_GROUPS_OFF)).into();
    }
    let check = authz::Check::new(ctx);
    if !check.group(Op::Read, &group_id) {
        return error_response(ResponseError::GroupAuthorizationFailed, None).into();
    }
    if let Some(names) = &req.subscribed_topic_names {
        if names.iter().any(|t| !check.topic(Op::Describe, &t.0)) {
            return error_response(ResponseError::TopicAuthorizationFailed, None).into();
        }
    }
    if let Err(why) = validate(&req) {
        return error_response(ResponseError::InvalidRequest, Some(why)).into();
    }
    let hb = ShareHeartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        subscribed_topic_names: req
            .subscribed_topic_names
            .as_ref()
            .map(|ns| ns.iter().map(|n| n.0.to_string()).collect()),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
    };
    let shard = match ctx.broker.groups.shard_for(&md, &group_id) {
        Ok(s) => s,
        Err(e) => return error_response(e, None).into(),
    };
    let config = share_group_config(&ctx.broker, &group_id);
    let outcome = shard.share_heartbeat(
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
        Err(ResponseError::GroupIdNotFound) => error_response(
            ResponseError::GroupIdNotFound,
            Some(&format!("Group {group_id} is not a share group.")),
        )
        .into(),
        Err(e) => error_response(e, None).into(),
        Ok(Pending::Ready(r)) => answer(r).into(),
        Ok(Pending::Waiting(rx)) => Reply::Later(Box::pin(async move {
            answer(
                rx.await
                    .unwrap_or(Err(ResponseError::CoordinatorNotAvailable)),
            )
        })),
    }
}

/// The checks Kafka makes before the group is looked at, with its messages.
fn validate(req: &ShareGroupHeartbeatRequest) -> Result<(), &'static str> {
    if req.group_id.0.is_empty() {
        return Err("GroupId can't be empty.");
    }
    // Share consumers make up their own member id, from the first heartbeat on.
    if req.member_id.is_empty() {
        return Err("MemberId can't be empty.");
    }
    if req.rack_id.as_ref().is_some_and(|r| r.is_empty()) {
        return Err("RackId can't be empty.");
    }
    if req.member_id.len() > MAX_ID_LEN
        || req.rack_id.as_ref().is_some_and(|r| r.len() > MAX_ID_LEN)
    {
        return Err("MemberId and RackId are limited to 255 bytes.");
    }
    if req.member_epoch == 0 {
        if req
            .subscribed_topic_names
            .as_ref()
            .is_none_or(|n| n.is_empty())
        {
            return Err("SubscribedTopicNames must be set in first request.");
        }
    } else if req.member_epoch < LEAVE_EPOCH {
        return Err("MemberEpoch is invalid.");
    }
    if let Some(names) = &req.subscribed_topic_names {
        if names.len() > MAX_SUBSCRIBED_TOPICS {
            return Err("Too many subscribed topics.");
        }
        if names
            .iter()
            .any(|n| crate::topic_names::validate(&n.0).is_err())
        {
            return Err("SubscribedTopicNames holds an invalid topic name.");
        }
    }
    Ok(())
}

fn error_response(e: ResponseError, why: Option<&str>) -> ResponseKind {
    ResponseKind::ShareGroupHeartbeat(
        ShareGroupHeartbeatResponse::default()
            .with_error_code(e.code())
            .with_error_message(why.map(|w| StrBytes::from_string(w.to_string())))
            .with_member_epoch(0),
    )
}

fn answer(r: Result<ShareHeartbeatAnswer, ResponseError>) -> ResponseKind {
    match r {
        Err(e) => error_response(e, None),
        Ok(a) => ResponseKind::ShareGroupHeartbeat(
            ShareGroupHeartbeatResponse::default()
                .with_member_id(Some(StrBytes::from_string(a.member_id)))
                .with_member_epoch(a.member_epoch)
                .with_heartbeat_interval_ms(a.heartbeat_interval_ms)
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

pub fn describe(ctx: &RequestContext, req: ShareGroupDescribeRequest) -> ResponseKind {
    let md = ctx.broker.metadata();
    let enabled = super::features::share_groups_enabled(&md);
    let check = authz::Check::new(ctx);
    let groups = req
        .group_ids
        .iter()
        .map(|g| {
            let group_id = g.0.to_string();
            let mut out = DescribedGroup::default().with_group_id(g.clone());
            let fail = |mut out: DescribedGroup, e: ResponseError, why: Option<String>| {
                out.error_code = e.code();
                out.error_message = why.map(StrBytes::from_string);
                out
            };
            if !enabled {
                return fail(
                    out,
                    ResponseError::UnsupportedVersion,
                    Some(SHARE_GROUPS_OFF.into()),
                );
            }
            if !check.group(Op::Describe, &group_id) {
                return fail(out, ResponseError::GroupAuthorizationFailed, None);
            }
            let found = ctx
                .broker
                .groups
                .shard_for(&md, &group_id)
                .and_then(|s| s.share_describe(&group_id));
            let d = match found {
                Err(ResponseError::GroupIdNotFound) => {
                    return fail(
                        out,
                        ResponseError::GroupIdNotFound,
                        Some(format!("Group {group_id} is not a share group.")),
                    );
                }
                Err(e) => return fail(out, e, None),
                Ok(None) => {
                    return fail(
                        out,
                        ResponseError::GroupIdNotFound,
                        Some(format!("Group {group_id} not found.")),
                    );
                }
                Ok(Some(d)) => d,
            };
            if req.include_authorized_operations {
                out.authorized_operations = check.operations(ResourceType::Group, &group_id);
            }
            let mut names: HashMap<Uuid, String> = d.topic_names;
            let mut described = |a: &Assignment| {
                DescribedAssignment::default().with_topic_partitions(
                    a.iter()
                        .filter(|(_, ps)| !ps.is_empty())
                        .map(|(id, ps)| {
                            // A topic deleted since the group last resolved it has no
                            // name left: it is described with an empty one.
                            let name = names
                                .entry(*id)
                                .or_insert_with(|| {
                                    md.topics
                                        .values()
                                        .find(|t| t.id == *id)
                                        .map(|t| t.name.clone())
                                        .unwrap_or_default()
                                })
                                .clone();
                            DescribedTopic::default()
                                .with_topic_id(*id)
                                .with_topic_name(TopicName(StrBytes::from_string(name)))
                                .with_partitions(ps.iter().copied().collect())
                        })
                        .collect(),
                )
            };
            out.group_state = StrBytes::from_static_str(d.state.name());
            out.group_epoch = d.group_epoch;
            out.assignment_epoch = d.assignment_epoch;
            // The only share group assignor Kafka has.
            out.assignor_name = StrBytes::from_static_str("simple");
            out.members = d
                .members
                .into_iter()
                .map(|m| {
                    Member::default()
                        .with_member_id(StrBytes::from_string(m.member_id))
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
                        .with_assignment(described(&m.assigned))
                })
                .collect();
            out
        })
        .collect();
    ResponseKind::ShareGroupDescribe(ShareGroupDescribeResponse::default().with_groups(groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::GroupId;

    fn request(member_epoch: i32, topics: Option<Vec<&str>>) -> ShareGroupHeartbeatRequest {
        ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_member_id(StrBytes::from_static_str("m"))
            .with_member_epoch(member_epoch)
            .with_subscribed_topic_names(topics.map(|ts| {
                ts.into_iter()
                    .map(|t| TopicName(StrBytes::from_string(t.to_string())))
                    .collect()
            }))
    }

    #[test]
    fn requests_are_checked_with_kafkas_messages() {
        assert_eq!(validate(&request(0, Some(vec!["t"]))), Ok(()));
        assert_eq!(validate(&request(3, None)), Ok(()));
        assert_eq!(validate(&request(LEAVE_EPOCH, None)), Ok(()));
        assert_eq!(
            validate(&request(0, None)),
            Err("SubscribedTopicNames must be set in first request.")
        );
        assert_eq!(
            validate(&request(0, Some(vec![]))),
            Err("SubscribedTopicNames must be set in first request.")
        );
        assert_eq!(validate(&request(-2, None)), Err("MemberEpoch is invalid."));
        assert_eq!(
            validate(&request(0, Some(vec!["t"])).with_member_id(StrBytes::default())),
            Err("MemberId can't be empty.")
        );
        assert_eq!(
            validate(&request(0, Some(vec!["t"])).with_group_id(GroupId::default())),
            Err("GroupId can't be empty.")
        );
        assert_eq!(
            validate(&request(0, Some(vec!["t"])).with_rack_id(Some(StrBytes::default()))),
            Err("RackId can't be empty.")
        );
        assert_eq!(
            validate(&request(0, Some(vec!["bad name"]))),
            Err("SubscribedTopicNames holds an invalid topic name.")
        );
    }
}
