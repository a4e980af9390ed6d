//! DescribeGroups, ListGroups and DeleteGroups. Each broker answers for the groups it
//! coordinates; admin clients ask every broker for ListGroups and the coordinator for the
//! rest.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use std::time::Duration;

use fjord_controller::metadata::acls::ResourceType;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::dispatch::Reply;
use super::share_admin;
use crate::group::state::GroupPhase;
use crate::time::now_ms;

pub fn describe(ctx: &RequestContext, req: DescribeGroupsRequest) -> ResponseKind {
    let version = ctx.version();
    let md = ctx.broker.metadata();
    let check = authz::Check::new(ctx);
    let groups = req
        .groups
        .iter()
        .map(|g| {
            let group_id = g.0.to_string();
            let mut out = DescribedGroup::default().with_group_id(g.clone());
            if !check.group(Op::Describe, &group_id) {
                out.error_code = ResponseError::GroupAuthorizationFailed.code();
                out.group_state = StrBytes::from_static_str("");
                return out;
            }
            if req.include_authorized_operations && version >= 3 {
                out.authorized_operations = check.operations(ResourceType::Group, &group_id);
            }
            let found = ctx
                .broker
                .groups
                .shard_for(&md, &group_id)
                .and_then(|s| s.describe(&group_id));
            match found {
                Err(e) => {
                    out.error_code = e.code();
                    out.group_state = StrBytes::from_static_str("");
                }
                Ok(None) => {
                    out.group_state = StrBytes::from_static_str(GroupPhase::Dead.name());
                    // v6 (KIP-1043) reports unknown groups as an error; older versions
                    // describe them as dead.
                    if version >= 6 {
                        out.error_code = ResponseError::GroupIdNotFound.code();
                        out.error_message = Some(StrBytes::from_string(format!(
                            "Group {group_id} not found."
                        )));
                    }
                }
                Ok(Some(d)) => {
                    out.group_state = StrBytes::from_static_str(d.state.name());
                    out.protocol_type = StrBytes::from_string(d.protocol_type);
                    out.protocol_data = StrBytes::from_string(d.protocol_name);
                    out.members = d
                        .members
                        .into_iter()
                        .map(|(m, metadata)| {
                            DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_group_instance_id(if version >= 4 {
                                    m.instance_id.map(StrBytes::from_string)
                                } else {
                                    None
                                })
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(metadata.into())
                                .with_member_assignment(m.assignment.into())
                        })
                        .collect();
                }
            }
            out
        })
        .collect();
    ResponseKind::DescribeGroups(DescribeGroupsResponse::default().with_groups(groups))
}

pub fn list(ctx: &RequestContext, req: ListGroupsRequest) -> ResponseKind {
    let version = ctx.version();
    // Kafka matches state filters case-insensitively (v4+) and type filters (v5+).
    let states: Vec<String> = if version >= 4 {
        req.states_filter.iter().map(|s| s.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    let types: Vec<String> = if version >= 5 {
        req.types_filter.iter().map(|s| s.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    let mut listed: Vec<ListedGroup> = Vec::new();
    let mut error = 0;
    // DESCRIBE on the cluster lists every group; otherwise those the client may describe.
    let check = authz::Check::new(ctx);
    let all = check.cluster(Op::Describe);
    // Kafka's answer while any coordinator partition of this broker is still loading
    // (or, here, its shard is not made yet): the list would be incomplete, so the
    // client retries.
    if ctx.broker.groups.loading(&ctx.broker.metadata()) {
        error = ResponseError::CoordinatorLoadInProgress.code();
    }
    for shard in ctx.broker.groups.shards() {
        for g in shard.list() {
            if !all && !check.group(Op::Describe, &g.group_id) {
                continue;
            }
            if !states.is_empty() && !states.contains(&g.state.to_lowercase()) {
                continue;
            }
            if !types.is_empty() && !types.iter().any(|t| t == g.group_type) {
                continue;
            }
            let mut entry = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            if version >= 4 {
                entry.group_state = StrBytes::from_static_str(g.state);
            }
            if version >= 5 {
                entry.group_type = StrBytes::from_static_str(g.group_type);
            }
            listed.push(entry);
        }
    }
    listed.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ResponseKind::ListGroups(
        ListGroupsResponse::default()
            .with_error_code(error)
            .with_groups(listed),
    )
}

pub fn delete(ctx: &RequestContext, req: DeleteGroupsRequest) -> Reply {
    let md = ctx.broker.metadata();
    let timeout =
        Duration::from_millis(ctx.broker.broker_i64("offsets.commit.timeout.ms").max(1) as u64);
    let mut waits = Vec::new();
    let mut results = Vec::with_capacity(req.groups_names.len());
    let check = authz::Check::new(ctx);
    for (i, g) in req.groups_names.iter().enumerate() {
        let group_id = g.0.to_string();
        // A share group's share-partition states are deleted after its record: which
        // topics they are of is known only before.
        let mut share_topics = None;
        let outcome = if check.group(Op::Delete, &group_id) {
            share_topics = share_admin::share_state_topics(&ctx.broker, &md, &group_id);
            ctx.broker
                .groups
                .shard_for(&md, &group_id)
                .and_then(|s| s.delete_group(&group_id, now_ms()).map(|t| (s, t)))
        } else {
            Err(ResponseError::GroupAuthorizationFailed)
        };
        let mut r = DeletableGroupResult::default().with_group_id(g.clone());
        match outcome {
            Ok((shard, ticket)) => waits.push((i, shard, ticket, group_id, share_topics)),
            Err(e) => r.error_code = e.code(),
        }
        results.push(r);
    }
    if waits.is_empty() {
        return ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
            .into();
    }
    let broker = std::sync::Arc::clone(&ctx.broker);
    Reply::Later(Box::pin(async move {
        for (i, shard, ticket, group_id, share_topics) in waits {
            if let Err(e) = shard.complete_commit(ticket, timeout).await {
                results[i].error_code = e.code();
                continue;
            }
            let Some(topics) = share_topics else { continue };
            if let Err(e) = share_admin::delete_all_share_state(&broker, &group_id, &topics).await {
                // The group is gone but some share-partition state is left (and would
                // be found by a share group created again under that id): said so.
                tracing::warn!(group = %group_id, error = ?e, "share group deleted, but not all of its share-partition state");
                results[i].error_code = e.code();
            }
        }
        ResponseKind::DeleteGroups(DeleteGroupsResponse::default().with_results(results))
    }))
}
