use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fjord_proto::peer::{PeerDialer, PeerLinks};
use fjord_proto::v1::controller_client::ControllerClient;
use fjord_proto::v1::RaftMessage;
use fjord_proto::{
    HTTP2_CONNECTION_WINDOW, HTTP2_MAX_FRAME, HTTP2_STREAM_WINDOW, MAX_MESSAGE_BYTES,
};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, RaftNetworkFactory, RaftNetworkV2};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

use crate::types::{NodeId, Snapshot, TypeConfig, Vote};

use super::Routing;

/// gRPC channels to peers, one per address, shared by every user (Raft replication,
/// forwarding). A tonic channel multiplexes calls over one HTTP/2 connection and
/// reconnects on its own.
#[derive(Clone, Default)]
pub struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// Mutual TLS (`rpc.ssl.*`) and the cluster secret; plain TCP with neither.
    links: PeerLinks,
    /// Peers whose last call failed to reach them: each outage is logged once, when it
    /// starts and when it ends, rather than at every heartbeat.
    unreachable: Arc<Mutex<HashSet<String>>>,
}

impl ChannelPool {
    pub fn new(links: PeerLinks) -> Self {
        ChannelPool {
            channels: Arc::default(),
            links,
            unreachable: Arc::default(),
        }
    }

    /// Whether the last call to `addr` could not reach it (refused, timed out).
    pub fn is_unreachable(&self, addr: &str) -> bool {
        self.unreachable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(addr)
    }

    /// Records the outcome of a call to `addr`, logging only changes of reachability.
    pub fn note_reachability(&self, target: NodeId, addr: &str, failure: Option<&tonic::Status>) {
        let mut down = self
            .unreachable
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match failure {
            Some(status) if status.code() == tonic::Code::Unavailable => {
                if down.insert(addr.to_string()) {
                    warn!(peer = target, %addr, error = %root_cause(status), "metadata peer unreachable");
                }
            }
            Some(_) => {}
            None => {
                if down.remove(addr) {
                    info!(peer = target, %addr, "metadata peer reachable again");
                }
            }
        }
    }

    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(ch) = map.get(addr) {
            return Ok(ch.clone());
        }
        // A peer that vanished (kill -9, a cut cable) sends no reset: only keep-alive
        // pings notice, and until they do, calls to it hang (a forwarded ISR change to a
        // dead controller, a follower fetch from a dead leader). Detect it within ~3 s,
        // about one Raft election, so retries go to the new leader.
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .initial_stream_window_size(HTTP2_STREAM_WINDOW)
            .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
            .max_frame_size(HTTP2_MAX_FRAME);
        // With TLS the scheme stays http: the dialer puts TLS (and the cluster
        // handshake) under HTTP/2 itself.
        let ch = if self.links.is_plain() {
            endpoint.connect_lazy()
        } else {
            endpoint.connect_with_connector_lazy(PeerDialer(self.links.clone()))
        };
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    pub fn client(&self, addr: &str) -> Result<ControllerClient<Channel>, tonic::transport::Error> {
        Ok(ControllerClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

pub struct RaftNetworkFactoryImpl {
    pool: ChannelPool,
    routing: Routing,
}

impl RaftNetworkFactoryImpl {
    pub fn new(pool: ChannelPool, routing: Routing) -> Self {
        RaftNetworkFactoryImpl { pool, routing }
    }
}

impl RaftNetworkFactory<TypeConfig> for RaftNetworkFactoryImpl {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        PeerConnection {
            target,
            addr: node.addr.clone(),
            pool: self.pool.clone(),
            routing: self.routing.clone(),
        }
    }
}

/// openraft's view of one peer.
pub struct PeerConnection {
    target: NodeId,
    addr: String,
    pool: ChannelPool,
    routing: Routing,
}

fn encode<T: Serialize>(v: &T) -> Result<RaftMessage, NetworkError<TypeConfig>> {
    serde_json::to_vec(v)
        .map(|payload| RaftMessage {
            payload: payload.into(),
        })
        .map_err(|e| NetworkError::new(&e))
}

/// The server answers `Result<T, String>`: Ok with openraft's response, or the text of
/// a remote failure (the peer's Raft is shutting down, say), which is retried like a
/// network error.
fn decode<T: DeserializeOwned>(msg: RaftMessage) -> Result<T, NetworkError<TypeConfig>> {
    let result: Result<T, String> =
        serde_json::from_slice(&msg.payload).map_err(|e| NetworkError::new(&e))?;
    result.map_err(|remote| NetworkError::new(&AnyError::error(remote)))
}

/// The innermost cause of a failed call ("Connection refused (os error 111)"), which
/// says what happened without tonic's and hyper's layers around it.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() {
        e.to_string()
    } else {
        text
    }
}

fn status_to_rpc(e: tonic::Status) -> RPCError<TypeConfig> {
    match e.code() {
        tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&e)),
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

impl PeerConnection {
    fn client(&self) -> Result<ControllerClient<Channel>, RPCError<TypeConfig>> {
        self.pool
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

macro_rules! unary {
    ($self:ident, $method:ident, $req:expr, $opt:expr) => {{
        let mut client = $self.client()?;
        let mut request = tonic::Request::new(encode(&$req)?);
        request.set_timeout($opt.hard_ttl());
        $self.routing.stamp($self.target, request.metadata_mut());

        let resp = client.$method(request).await;
        $self
            .pool
            .note_reachability($self.target, &$self.addr, resp.as_ref().err());
        Ok(decode(resp.map_err(status_to_rpc)?.into_inner())?)
    }};
}

impl RaftNetworkV2<TypeConfig> for PeerConnection {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        unary!(self, append_entries, rpc, option)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        unary!(self, vote, rpc, option)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        unary!(self, pre_vote, rpc, option)
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        unary!(self, transfer_leader, req, option)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self
            .pool
            .client(&self.addr)
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        let msg = encode(&(vote, snapshot.meta, snapshot.snapshot))?;
        let mut request = tonic::Request::new(msg);
        request.set_timeout(option.hard_ttl());
        self.routing.stamp(self.target, request.metadata_mut());
        tokio::select! {

            closed = cancel => Err(StreamingError::Closed(closed)),
            resp = client.install_snapshot(request) => {
                let resp = resp.map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
                Ok(decode(resp.into_inner())?)
            }
        }
    }
}

impl std::fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerConnection({}@{})", self.target, self.addr)
    }
}
