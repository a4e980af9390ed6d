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
use crate::types::{SnapshotMeta, TypeConfig, Vote};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};

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

/// The node a Raft message says it comes from: its vote's leader (the candidate of a
/// vote, the leader of entries and snapshots, the old leader of a transfer).
fn sender(vote: &Vote) -> u64 {
    vote.leader_id.node_id
}

impl ControllerGrpc {
    /// Raft messages come only from members of the quorum, each as itself.
    fn check_raft(
        &self,
        call: &'static str,
        req: &Request<RaftMessage>,
        vote: &Vote,
    ) -> Result<(), Status> {
        fjord_proto::peer::check_caller(fjord_proto::peer::caller(req), Some(sender(vote)), |id| {
            self.controller.is_member(id)
        })
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
        let rpc: AppendEntriesRequest<TypeConfig> = parse(req.get_ref())?;
        self.check_raft("AppendEntries", &req, &rpc.vote)?;
        reply(self.controller.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
        let rpc: VoteRequest<TypeConfig> = parse(req.get_ref())?;
        self.check_raft("Vote", &req, &rpc.vote)?;
        reply(self.controller.raft().vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
        let rpc: VoteRequest<TypeConfig> = parse(req.get_ref())?;
        self.check_raft("PreVote", &req, &rpc.vote)?;
        reply(self.controller.raft().pre_vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
        let (vote, meta, data): (Vote, SnapshotMeta, Vec<u8>) = parse(req.get_ref())?;
        self.check_raft("InstallSnapshot", &req, &vote)?;
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
        let rpc: TransferLeaderRequest<TypeConfig> = parse(req.get_ref())?;
        self.check_raft("TransferLeader", &req, rpc.from_leader())?;
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

    /// Each kind of Raft message, as it crosses the wire, names its sender in its vote.
    #[test]
    fn the_sender_is_read_from_each_kind_of_raft_message() {
        fn wire<T: Serialize + DeserializeOwned>(v: &T) -> T {
            let msg = RaftMessage {
                payload: serde_json::to_vec(v).expect("encodes").into(),
            };
            parse(&msg).expect("decodes")
        }
        let vote = Vote::new(3, 7);
        let request: VoteRequest<TypeConfig> = wire(&VoteRequest::new(vote, None));
        assert_eq!(sender(&request.vote), 7);
        let (snapshot_vote, _, _): (Vote, u8, Vec<u8>) = wire(&(vote, 0u8, Vec::<u8>::new()));
        assert_eq!(sender(&snapshot_vote), 7);
        let transfer: TransferLeaderRequest<TypeConfig> =
            wire(&TransferLeaderRequest::new(vote, 2, None));
        assert_eq!(sender(transfer.from_leader()), 7);
        let malformed = RaftMessage {
            payload: serde_json::to_vec(&1u8).expect("encodes").into(),
        };
        assert!(parse::<VoteRequest<TypeConfig>>(&malformed).is_err());
    }
}
