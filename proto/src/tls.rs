//! Mutual TLS between nodes. The rpc listener accepts only peers whose certificate the
//! cluster's CA signed: the handshake fails before a byte of gRPC (Raft, forwarded
//! metadata writes, replication, transaction markers) is read. Each node dials its peers
//! with its own certificate.
//!
//! The TLS configs themselves are built by the node (from PEM files, reloaded when they
//! change); `peer` puts them between TCP and tonic.

use std::sync::Arc;

/// The TLS config for the next connection: configs are reloaded when their files change,
/// so this is asked each time.
#[derive(Clone)]
pub struct ClientTls(pub Arc<dyn Fn() -> Arc<rustls::ClientConfig> + Send + Sync>);

#[derive(Clone)]
pub struct ServerTls(pub Arc<dyn Fn() -> Arc<rustls::ServerConfig> + Send + Sync>);

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}
