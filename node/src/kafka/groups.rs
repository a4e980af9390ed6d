//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup: the classic group protocol, answered
//! by the shard that coordinates the group. Joins and syncs that must wait for the rest of
//! the group are returned as `Reply::Later`, so the connection keeps serving heartbeats.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ResponseKind, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::authz::{self, Op};
use super::context::RequestContext;
use super::dispatch::Reply;
use crate::group::coordinator::group_config;
use crate::group::shard::{Pending, Shard};
use crate::group::state::{JoinRequest, JoinResult, SyncResult};
use crate::time::now_ms;

/// The shard for a group named in a request, or the error to answer with. Every call of
/// the membership protocol needs READ on the group.
fn shard(ctx: &RequestContext, group_id: &str) -> Result<std::sync::Arc<Shard>, ResponseError> {
    if !authz::Check::new(ctx).group(Op::Read, group_id) {
        return Err(ResponseError::GroupAuthorizationFailed);
    }
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    let md = ctx.broker.metadata();
    ctx.broker.groups.shard_for(&md, group_id)
}

fn opt(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|x| x.to_string())
}

pub fn join(ctx: &RequestContext, req: JoinGroupRequest) -> Reply {
    let version = ctx.version();
    let group_id = req.group_id.0.to_string();
    let member_id = req.member_id.to_string();
    let shard = match shard(ctx, &group_id) {
        Ok(s) => s,
        Err(e) => return join_response(version, JoinResult::error(e, &member_id)).into(),
    };
    let request = JoinRequest {
        member_id: member_id.clone(),
        instance_id: if version >= 5 {
            opt(&req.group_instance_id)
        } else {
            None
        },
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: i64::from(req.session_timeout_ms),
        // v0 has no rebalance timeout: Kafka used the session timeout.
        rebalance_timeout_ms: i64::from(if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        }),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.to_vec()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let config = group_config(&ctx.broker);
    debug!(group = %group_id, member = %member_id, "join group");
    match shard.join(&group_id, request, &config, now_ms()) {
        Err(e) => join_response(version, JoinResult::error(e, &member_id)).into(),
        Ok(Pending::Ready(r)) => join_response(version, r).into(),
        Ok(Pending::Waiting(rx)) => Reply::Later(Box::pin(async move {
            let result = rx.await.unwrap_or_else(|_| {
                JoinResult::error(ResponseError::RebalanceInProgress, &member_id)
            });
            join_response(version, result)
        })),
    }
}

fn join_response(version: i16, r: JoinResult) -> ResponseKind {
    let mut resp = JoinGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_generation_id(r.generation)
        .with_leader(StrBytes::from_string(r.leader))
        .with_member_id(StrBytes::from_string(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_group_instance_id(if version >= 5 {
                            instance.map(StrBytes::from_string)
                        } else {
                            None
                        })
                        .with_metadata(metadata.into())
                })
                .collect(),
        );
    // The protocol name became nullable in v7; older clients expect a string.
    resp.protocol_name = match (r.protocol_name, version >= 7) {
        (Some(n), _) => Some(StrBytes::from_string(n)),
        (None, true) => None,
        (None, false) => Some(StrBytes::default()),
    };
    if version >= 7 {
        resp.protocol_type = r.protocol_type.map(StrBytes::from_string);
    }
    if version >= 9 {
        resp.skip_assignment = r.skip_assignment;
    }
    ResponseKind::JoinGroup(resp)
}

pub fn sync(ctx: &RequestContext, req: SyncGroupRequest) -> Reply {
    let version = ctx.version();
    let group_id = req.group_id.0.to_string();
    let shard = match shard(ctx, &group_id) {
        Ok(s) => s,
        Err(e) => return sync_response(version, SyncResult::error(e)).into(),
    };
    let instance = if version >= 3 {
        opt(&req.group_instance_id)
    } else {
        None
    };
    let assignments = req
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.to_vec()))
        .collect();
    let outcome = shard.sync(
        &group_id,
        &req.member_id,
        instance.as_deref(),
        req.generation_id,
        assignments,
        now_ms(),
    );
    match outcome {
        Err(e) => sync_response(version, SyncResult::error(e)).into(),
        Ok(Pending::Ready(r)) => sync_response(version, r).into(),
        Ok(Pending::Waiting(rx)) => Reply::Later(Box::pin(async move {
            let result = rx
                .await
                .unwrap_or_else(|_| SyncResult::error(ResponseError::RebalanceInProgress));
            sync_response(version, result)
        })),
    }
}

fn sync_response(version: i16, r: SyncResult) -> ResponseKind {
    let mut resp = SyncGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_assignment(r.assignment.into());
    if version >= 5 {
        resp.protocol_type = r.protocol_type.map(StrBytes::from_string);
        resp.protocol_name = r.protocol_name.map(StrBytes::from_string);
    }
    ResponseKind::SyncGroup(resp)
}

pub fn heartbeat(ctx: &RequestContext, req: HeartbeatRequest) -> ResponseKind {
    let version = ctx.version();
    let group_id = req.group_id.0.to_string();
    let instance = if version >= 3 {
        opt(&req.group_instance_id)
    } else {
        None
    };
    let result = shard(ctx, &group_id).and_then(|s| {
        s.heartbeat(
            &group_id,
            &req.member_id,
            instance.as_deref(),
            req.generation_id,
            now_ms(),
        )
    });
    ResponseKind::Heartbeat(
        HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code())),
    )
}

pub fn leave(ctx: &RequestContext, req: LeaveGroupRequest) -> ResponseKind {
    let version = ctx.version();
    let group_id = req.group_id.0.to_string();
    // v3 (KIP-345) lets one request remove several members, static ones by instance id.
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), opt(&m.group_instance_id)))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let outcome = shard(ctx, &group_id).and_then(|s| s.leave(&group_id, &members, now_ms()));
    let mut resp = LeaveGroupResponse::default();
    match outcome {
        Err(e) => resp.error_code = e.code(),
        Ok(results) if version >= 3 => {
            resp.members = members
                .into_iter()
                .zip(results)
                .map(|((member, instance), r)| {
                    MemberResponse::default()
                        .with_member_id(StrBytes::from_string(member))
                        .with_group_instance_id(instance.map(StrBytes::from_string))
                        .with_error_code(r.err().map_or(0, |e| e.code()))
                })
                .collect();
        }
        Ok(results) => {
            resp.error_code = results
                .into_iter()
                .find_map(|r| r.err())
                .map_or(0, |e| e.code());
        }
    }
    ResponseKind::LeaveGroup(resp)
}
