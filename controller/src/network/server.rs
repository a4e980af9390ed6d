use fjord_proto::v1::controller_server::{Controller as ControllerRpc, ControllerServer};
use fjord_proto::v1::{AttachRequest, ForwardRequest, ForwardResponse, RaftMessage};
use fjord_proto::MAX_MESSAGE_BYTES;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};
use tracing::debug;

use super::Routing;
use crate::controller::Controller;
use crate::requests::ControllerRequest;
use crate::types::{SnapshotMeta, Vote};

/// The gRPC face of the local controller.
#[derive(Clone)]
pub struct ControllerGrpc {
    controller: Controller,
}

impl ControllerGrpc {
    pub fn new(controller: Controller) -> Self {
        ControllerGrpc { controller }
    }

    pub fn into_server(self) -> ControllerServer<Self> {
        ControllerServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

/// Refuses a call whose link proved another node than the call claims, or a node the
/// cluster does not know; counted by `fjord_rpc_calls_refused_total`.
pub fn refuse(call: &'static str, why: String) -> Status {
    metrics::counter!("fjord_rpc_calls_refused_total", "call" => call).increment(1);
    tracing::warn!(call, reason = %why, "rpc call refused");
    Status::permission_denied(why)
}

/// The node a broker's request about itself names (registration, joining, heartbeats,
/// shutdown, producer ids); `None` for requests any member may make for others.
fn about_self(request: &ControllerRequest) -> Option<u64> {
    let broker = |id: &i32| u64::try_from(*id).ok().or(Some(u64::MAX));
    match request {
        ControllerRequest::RegisterBroker(r) => broker(&r.broker_id),
        ControllerRequest::Heartbeat { broker_id, .. }
        | ControllerRequest::ControlledShutdown { broker_id, .. }
        | ControllerRequest::AllocateProducerIds { broker_id, .. } => broker(broker_id),
        ControllerRequest::AddLearner { node_id, .. } => Some(*node_id),
        _ => None,
    }
}

/// Where a Raft message's sender names itself: its vote's leader (the candidate of a
/// vote, the leader of entries and snapshots, the old leader of a transfer).
enum VoteAt {
    Field(&'static str),
    /// The first element of a tuple (a snapshot's `(vote, meta, data)`).
    First,
}

/// The node a Raft message says it comes from (`None` if it does not parse, which the
/// handler refuses anyway).
fn sender_of(msg: &RaftMessage, at: VoteAt) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(&msg.payload).ok()?;
    let vote = match at {
        VoteAt::Field(f) => v.get(f)?,
        VoteAt::First => v.get(0)?,
    };
    let leader = vote.get("leader_id")?;
    leader
        .get("node_id")
        .or_else(|| leader.get("voted_for"))
        .and_then(serde_json::Value::as_u64)
}

impl ControllerGrpc {
    /// Raft messages come only from members of the quorum, each as itself.
    fn check_raft(
        &self,
        call: &'static str,
        req: &Request<RaftMessage>,
        at: VoteAt,
    ) -> Result<(), Status> {
        let caller = fjord_proto::peer::caller(req);
        if caller.is_none() {
            return Ok(());
        }
        let claimed = sender_of(req.get_ref(), at).or(Some(u64::MAX));
        fjord_proto::peer::check_caller(caller, claimed, |id| self.controller.is_member(id))
            .map_err(|why| refuse(call, why))
    }

    fn check_target(&self, req: &Request<RaftMessage>) -> Result<(), Status> {
        let routing = Routing {
            me: self.controller.node_id(),
            metadata: self.controller.metadata(),
        };
        routing.check(req.metadata()).inspect_err(|e| {
            tracing::error!(peer = ?req.remote_addr(), reason = %e.message(), "raft message refused");
        })
    }
}

fn parse<T: DeserializeOwned>(msg: &RaftMessage) -> Result<T, Status> {
    serde_json::from_slice(&msg.payload)
        .map_err(|e| Status::invalid_argument(format!("malformed raft message: {e}")))
}

/// Wraps openraft's answer as `Result<T, String>` (see the client's `decode`).
fn reply<T: Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Result<Response<RaftMessage>, Status> {
    let result = result.map_err(|e| e.to_string());
    let payload = serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftMessage {
        payload: payload.into(),
    }))
}

#[tonic::async_trait]
impl ControllerRpc for ControllerGrpc {
    type AttachStream = crate::controller::AttachStream;

    async fn attach(
        &self,
        req: Request<AttachRequest>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        // A joining node attaches before it is known: only its id is checked.
        let claimed = u64::try_from(req.get_ref().broker_id).unwrap_or(u64::MAX);
        fjord_proto::peer::check_caller(fjord_proto::peer::caller(&req), Some(claimed), |_| true)
            .map_err(|why| refuse("Attach", why))?;
        self.controller
            .attach(req.into_inner())
            .map(Response::new)
            .map_err(|e| Status::failed_precondition(e.to_string()))
    }

    async fn append_entries(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
        self.check_raft("AppendEntries", &req, VoteAt::Field("vote"))?;
        let rpc = parse(req.get_ref())?;
        reply(self.controller.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
        self.check_raft("Vote", &req, VoteAt::Field("vote"))?;
        let rpc = parse(req.get_ref())?;
        reply(self.controller.raft().vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
        self.check_raft("PreVote", &req, VoteAt::Field("vote"))?;
        let rpc = parse(req.get_ref())?;
        reply(self.controller.raft().pre_vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
        self.check_raft("InstallSnapshot", &req, VoteAt::First)?;
        let (vote, meta, data): (Vote, SnapshotMeta, Vec<u8>) = parse(req.get_ref())?;
        let snapshot = openraft::alias::SnapshotOf::<crate::types::TypeConfig, Vec<u8>> {
            meta,
            snapshot: data,
        };
        reply(
            self.controller
                .raft()
                .install_full_snapshot(vote, snapshot)
                .await,
        )
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
        self.check_raft("TransferLeader", &req, VoteAt::Field("from_leader"))?;
        let rpc = parse(req.get_ref())?;
        reply(self.controller.raft().handle_transfer_leader(rpc).await)
    }

    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let caller = fjord_proto::peer::caller(&req);
        let claimed = Some(req.get_ref().origin_node);
        let req = req.into_inner();
        let request: ControllerRequest = serde_json::from_slice(&req.request)
            .map_err(|e| Status::invalid_argument(format!("malformed forwarded request: {e}")))?;
        // What a broker asks for itself must be asked by that broker; a node that is not
        // a member yet may ask only to join, as itself.
        let subject = about_self(&request);
        if let (Some(caller), Some(subject)) = (caller, subject) {
            if caller != subject {
                return Err(refuse(
                    "Forward",
                    format!("node {caller} asked on behalf of node {subject}"),
                ));
            }
        }
        let joining = matches!(
            request,
            ControllerRequest::AddLearner { .. } | ControllerRequest::RegisterBroker(_)
        );
        fjord_proto::peer::check_caller(caller, claimed, |id| joining || self.controller.knows(id))
            .map_err(|why| refuse("Forward", why))?;
        debug!(
            origin = req.origin_node,
            ?request,
            "forwarded metadata write"
        );
        let result = self.controller.handle_as_leader(request).await;
        let bytes = serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardResponse {
            response: bytes.into(),
            applied_index: self.controller.known_index(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::raft::VoteRequest;

    fn message<T: Serialize>(v: &T) -> RaftMessage {
        RaftMessage {
            payload: serde_json::to_vec(v).expect("encodes").into(),
        }
    }

    #[test]
    fn the_sender_is_read_from_each_kind_of_raft_message() {
        let vote = Vote::new(3, 7);
        let request: VoteRequest<crate::types::TypeConfig> = VoteRequest::new(vote, None);
        assert_eq!(
            sender_of(&message(&request), VoteAt::Field("vote")),
            Some(7)
        );
        let snapshot = (vote, 0u8, Vec::<u8>::new());
        assert_eq!(sender_of(&message(&snapshot), VoteAt::First), Some(7));
        assert_eq!(sender_of(&message(&1u8), VoteAt::First), None);
    }
}
