//! Mutual TLS between nodes. The rpc listener accepts only peers whose certificate the
//! cluster's CA signed: the handshake fails before a byte of gRPC (Raft, forwarded
//! metadata writes, replication, transaction markers) is read. Each node dials its peers
//! with its own certificate.
//!
//! The TLS configs themselves are built by the node (from PEM files, reloaded when they
//! change); this module only puts them between TCP and tonic.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::Uri;

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

/// How long a peer has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A tonic connector that dials TCP (no Nagle: small replication answers must not wait
/// for a delayed ACK) and then TLS.
#[derive(Clone)]
pub struct TlsDialer {
    pub config: ClientTls,
}

impl tower::Service<Uri> for TlsDialer {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = (self.config.0)();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(9093);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// A peer's TLS stream, as tonic's server takes it.
pub struct TlsPeer {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
}

impl Connected for TlsPeer {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.local,
            remote_addr: self.remote,
        }
    }
}

impl AsyncRead for TlsPeer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsPeer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts peers on `listener`, each through a TLS handshake of its own (a slow or
/// failing one never holds up the others); only peers that complete it come out.
/// Handshake failures (a peer without the cluster's certificate) are logged and counted
/// by `on_refused`.
pub fn accept(
    listener: TcpListener,
    config: ServerTls,
    on_refused: Arc<dyn Fn(SocketAddr, String) + Send + Sync>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<TlsPeer>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: keep the listener.
                    tracing::warn!(error = %e, "rpc accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let local = tcp.local_addr().ok();
            let acceptor = TlsAcceptor::from((config.0)());
            let (peers, on_refused) = (tx.clone(), Arc::clone(&on_refused));
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(inner)) => {
                        let _ = peers
                            .send(Ok(TlsPeer {
                                inner,
                                remote: Some(remote),
                                local,
                            }))
                            .await;
                    }
                    Ok(Err(e)) => on_refused(remote, e.to_string()),
                    Err(_) => on_refused(remote, "handshake timed out".into()),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
