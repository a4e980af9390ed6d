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

impl ControllerGrpc {
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
        let rpc = parse(req.get_ref())?;
        reply(self.controller.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
        let rpc = parse(req.get_ref())?;
        reply(self.controller.raft().vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
        let rpc = parse(req.get_ref())?;
        reply(self.controller.raft().pre_vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.check_target(&req)?;
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
        let rpc = parse(req.get_ref())?;
        reply(self.controller.raft().handle_transfer_leader(rpc).await)
    }

    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        let req = req.into_inner();
        let request: ControllerRequest = serde_json::from_slice(&req.request)
            .map_err(|e| Status::invalid_argument(format!("malformed forwarded request: {e}")))?;
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
