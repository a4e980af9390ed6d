//! The cluster-facing gRPC port. Every broker-to-broker service (the metadata quorum,
//! replication, transactions, share-group state) shares one listener with its own
//! HTTP/2 tuning and peer admission, apart from the client-facing Kafka listeners.

use std::sync::Arc;

use fjord_controller::Controller;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::broker::Broker;
use crate::replica::ReplicationService;

/// Broker-to-broker gRPC services. They serve before the broker exists (the controller
/// needs the server first), so it is handed to them once made.
#[derive(Clone, Default)]
pub(super) struct PeerServices {
    transactions: crate::txn::service::TxnService,
    share_state: crate::share_state::service::ShareStateService,
}

impl PeerServices {
    pub(super) fn set_broker(&self, broker: &Arc<Broker>) {
        self.transactions.set_broker(Arc::clone(broker));
        self.share_state.set_broker(Arc::clone(broker));
    }
}

pub(super) async fn serve_rpc(
    listener: TcpListener,
    tls: Option<fjord_proto::tls::ServerTls>,
    secret: Option<fjord_proto::peer::ClusterSecret>,
    controller: Controller,
    replication: ReplicationService,
    peer_services: PeerServices,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    info!(%addr, tls = tls.is_some(), cluster_secret = secret.is_some(), "rpc listener ready");
    // Peers cancel many RPCs at once when a network split heals (timed-out Raft
    // appends and fetches); h2's rapid-reset guard (20 resets) would then answer GOAWAY
    // and stall metadata catch-up for seconds. This port only faces cluster members.
    let router = tonic::transport::Server::builder()
        .http2_max_pending_accept_reset_streams(Some(4096))
        .http2_max_local_error_reset_streams(Some(4096))
        .initial_stream_window_size(fjord_proto::HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(fjord_proto::HTTP2_CONNECTION_WINDOW)
        .max_frame_size(fjord_proto::HTTP2_MAX_FRAME)
        .add_service(controller.grpc().into_server())
        .add_service(replication.into_server())
        .add_service(peer_services.transactions.into_server())
        .add_service(peer_services.share_state.into_server());
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    // A peer without a certificate from the cluster's CA (with TLS), or without the
    // cluster secret, never gets past its handshake. Accepted sockets get TCP_NODELAY
    // there: tonic ignores its own setting for a caller-supplied stream, and Nagle then
    // holds small fetch answers until the follower's delayed ACK, ~40 ms on Linux, which
    // every acks=all produce waits for.
    let refused = Arc::new(|peer: std::net::SocketAddr, why: String| {
        metrics::counter!("fjord_rpc_peers_refused_total").increment(1);
        warn!(%peer, reason = %why, "rpc peer refused");
    });
    let incoming = fjord_proto::peer::accept(listener, tls, secret, refused);
    let result = router.serve_with_incoming_shutdown(incoming, stop).await;
    if let Err(e) = result {
        error!(error = %e, "rpc server failed");
    }
}
