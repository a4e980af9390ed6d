//! Links between nodes: TCP, then TLS when `rpc.ssl.*` is set, then, when the cluster
//! has a secret, a challenge-response that proves both ends hold it and binds the
//! dialling node's id to the connection. Only then does gRPC (Raft, forwarded metadata
//! writes, replication, transaction markers) start, so a process without the secret
//! never gets a byte of HTTP/2 read, and every call the server handles knows which node
//! sent it ([`PeerInfo::node_id`]).
//!
//! The handshake, after TCP (and TLS):
//!
//! ```text
//! dialler -> server   "FJRDAUTH1" | node id (u64) | nonce_d (32 bytes)
//! server  -> dialler  nonce_s (32) | HMAC(secret, "server" | node id | nonce_d | nonce_s)
//! dialler -> server   HMAC(secret, "dialler" | node id | nonce_d | nonce_s)
//! ```
//!
//! Fresh nonces on both sides make a recorded exchange useless later, and the two labels
//! keep one side's proof from being replayed as the other's. The secret never travels.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hmac::{Hmac, Mac};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::server::Connected;
use tonic::transport::Uri;

use crate::tls::{ClientTls, ServerTls};

const MAGIC: &[u8; 9] = b"FJRDAUTH1";
const NONCE: usize = 32;
const PROOF: usize = 32;
/// How long a peer has to finish TLS and the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The cluster's shared secret (`rpc.auth.secret`), at least 16 bytes.
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Shorter secrets are refused: they could be guessed offline from one handshake.
pub const MIN_SECRET_BYTES: usize = 16;

impl ClusterSecret {
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        let trimmed = secret.trim_ascii();
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the cluster secret must be at least {MIN_SECRET_BYTES} bytes (it is {})",
                trimmed.len()
            ));
        }
        Ok(ClusterSecret(Arc::from(trimmed)))
    }

    /// Whether `candidate` is this secret, compared in constant time (an admin request's
    /// bearer token).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let candidate = candidate.trim_ascii();
        let mut mac = self.proof(b"bearer", 0, &[], &[]);
        mac.update(candidate);
        let mut own = self.proof(b"bearer", 0, &[], &[]);
        own.update(&self.0);
        mac.verify_slice(&own.finalize().into_bytes()).is_ok()
    }

    fn proof(&self, label: &[u8], node_id: u64, nonce_d: &[u8], nonce_s: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(label);
        mac.update(&node_id.to_be_bytes());
        mac.update(nonce_d);
        mac.update(nonce_s);
        mac
    }
}

fn nonce() -> [u8; NONCE] {
    rand::random()
}

fn refused(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why.to_string())
}

/// The dialling side: proves this node (`node_id`) holds the secret and checks that the
/// server does too.
pub async fn dial_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &ClusterSecret,
    node_id: u64,
) -> io::Result<()> {
    let nonce_d = nonce();
    let mut hello = Vec::with_capacity(MAGIC.len() + 8 + NONCE);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&node_id.to_be_bytes());
    hello.extend_from_slice(&nonce_d);
    stream.write_all(&hello).await?;
    stream.flush().await?;
    let mut answer = [0u8; NONCE + PROOF];
    stream.read_exact(&mut answer).await?;
    let (nonce_s, server_proof) = answer.split_at(NONCE);
    secret
        .proof(b"server", node_id, &nonce_d, nonce_s)
        .verify_slice(server_proof)
        .map_err(|_| refused("the peer does not hold this cluster's secret"))?;
    let proof = secret
        .proof(b"dialler", node_id, &nonce_d, nonce_s)
        .finalize()
        .into_bytes();
    stream.write_all(&proof).await?;
    stream.flush().await
}

/// The accepting side: the dialling node's id, once it has proved it holds the secret.
pub async fn accept_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &ClusterSecret,
) -> io::Result<u64> {
    let mut hello = [0u8; 9 + 8 + NONCE];
    stream.read_exact(&mut hello).await?;
    if &hello[..MAGIC.len()] != MAGIC {
        return Err(refused(
            "no cluster handshake (a client without the secret, or one speaking gRPC directly)",
        ));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&hello[MAGIC.len()..MAGIC.len() + 8]);
    let node_id = u64::from_be_bytes(id);
    let nonce_d = &hello[MAGIC.len() + 8..];
    let nonce_s = nonce();
    let proof = secret
        .proof(b"server", node_id, nonce_d, &nonce_s)
        .finalize()
        .into_bytes();
    let mut answer = Vec::with_capacity(NONCE + PROOF);
    answer.extend_from_slice(&nonce_s);
    answer.extend_from_slice(&proof);
    stream.write_all(&answer).await?;
    stream.flush().await?;
    let mut dialler_proof = [0u8; PROOF];
    stream.read_exact(&mut dialler_proof).await?;
    secret
        .proof(b"dialler", node_id, nonce_d, &nonce_s)
        .verify_slice(&dialler_proof)
        .map_err(|_| refused("wrong cluster secret"))?;
    Ok(node_id)
}

/// How this node reaches its peers.
#[derive(Clone, Debug, Default)]
pub struct PeerLinks {
    /// Mutual TLS (`rpc.ssl.*`).
    pub tls: Option<ClientTls>,
    /// The cluster secret and this node's id.
    pub auth: Option<(ClusterSecret, u64)>,
}

impl PeerLinks {
    /// Whether plain TCP with nothing on top will do (tonic's own connector).
    pub fn is_plain(&self) -> bool {
        self.tls.is_none() && self.auth.is_none()
    }
}

/// A tonic connector for [`PeerLinks`]: TCP without Nagle (small replication answers
/// must not wait for a delayed ACK), then TLS, then the handshake.
#[derive(Clone)]
pub struct PeerDialer(pub PeerLinks);

impl tower::Service<Uri> for PeerDialer {
    type Response = TokioIo<PeerStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let links = self.0.clone();
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
            let mut stream = match &links.tls {
                Some(tls) => {
                    let name = ServerName::try_from(host)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                    let tls = TlsConnector::from((tls.0)()).connect(name, tcp).await?;
                    PeerStream::ClientTls(Box::new(tls))
                }
                None => PeerStream::Plain(tcp),
            };
            if let Some((secret, node_id)) = &links.auth {
                tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    dial_handshake(&mut stream, secret, *node_id),
                )
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "cluster handshake"))??;
            }
            Ok(TokioIo::new(stream))
        })
    }
}

/// A link to or from a peer, whatever it runs over.
pub enum PeerStream {
    Plain(TcpStream),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            PeerStream::Plain($s) => $e,
            PeerStream::ClientTls($s) => $e,
            PeerStream::ServerTls($s) => $e,
        }
    };
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PeerStream::Plain(s) => s.is_write_vectored(),
            PeerStream::ClientTls(s) => s.is_write_vectored(),
            PeerStream::ServerTls(s) => s.is_write_vectored(),
        }
    }
}

/// Who is at the other end of an accepted link; tonic puts it in every request's
/// extensions.
#[derive(Clone, Copy, Debug)]
pub struct PeerInfo {
    pub remote: Option<SocketAddr>,
    /// The node id the peer proved with the cluster secret (`None` without one).
    pub node_id: Option<u64>,
}

/// The node id the link of `req` proved, or `None` when the cluster has no secret (then
/// nothing is known of the caller, and no identity is checked).
pub fn caller<T>(req: &tonic::Request<T>) -> Option<u64> {
    req.extensions().get::<PeerInfo>().and_then(|p| p.node_id)
}

/// Checks a call's claimed node id against the one its link proved, and that the caller
/// is one the cluster knows: `Err` carries why not, for the refusal.
pub fn check_caller(
    caller: Option<u64>,
    claimed: Option<u64>,
    known: impl FnOnce(u64) -> bool,
) -> Result<(), String> {
    let Some(caller) = caller else {
        return Ok(());
    };
    if let Some(claimed) = claimed {
        if claimed != caller {
            return Err(format!("node {caller} claims to be node {claimed}"));
        }
    }
    if !known(caller) {
        return Err(format!("node {caller} is not a member of this cluster"));
    }
    Ok(())
}

/// An accepted link, as tonic's server takes it.
pub struct Peer {
    stream: PeerStream,
    info: PeerInfo,
}

impl Connected for Peer {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info
    }
}

impl AsyncRead for Peer {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Peer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Accepts peers on `listener`, each through TLS and the handshake on a task of its own
/// (a slow or failing peer never holds up the others); only peers that complete them
/// come out. Refusals are reported to `on_refused`.
pub fn accept(
    listener: TcpListener,
    tls: Option<ServerTls>,
    secret: Option<ClusterSecret>,
    on_refused: Arc<dyn Fn(SocketAddr, String) + Send + Sync>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Peer>> {
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
            let (peers, on_refused) = (tx.clone(), Arc::clone(&on_refused));
            let (tls, secret) = (tls.clone(), secret.clone());
            tokio::spawn(async move {
                let link = async {
                    let mut stream = match tls {
                        Some(tls) => PeerStream::ServerTls(Box::new(
                            TlsAcceptor::from((tls.0)()).accept(tcp).await?,
                        )),
                        None => PeerStream::Plain(tcp),
                    };
                    let node_id = match &secret {
                        Some(secret) => Some(accept_handshake(&mut stream, secret).await?),
                        None => None,
                    };
                    io::Result::Ok(Peer {
                        stream,
                        info: PeerInfo {
                            remote: Some(remote),
                            node_id,
                        },
                    })
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, link).await {
                    Ok(Ok(peer)) => {
                        let _ = peers.send(Ok(peer)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> ClusterSecret {
        ClusterSecret::new(s.as_bytes()).expect("long enough")
    }

    #[tokio::test]
    async fn both_ends_with_the_secret_agree_on_the_dialler_id() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let s = secret("a-secret-of-some-length");
        let (dialled, accepted) =
            tokio::join!(dial_handshake(&mut a, &s, 7), accept_handshake(&mut b, &s));
        dialled.expect("dialler accepts the server");
        assert_eq!(accepted.expect("server accepts the dialler"), 7);
    }

    #[tokio::test]
    async fn a_wrong_secret_or_no_handshake_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let (mallory, real) = (
            secret("mallory-guesses-this"),
            secret("the-real-cluster-secret"),
        );
        let dial = async move {
            // The dialler hangs up when the server's proof fails.
            let r = dial_handshake(&mut a, &mallory, 1).await;
            drop(a);
            r
        };
        let (dialled, accepted) = tokio::join!(dial, accept_handshake(&mut b, &real));
        assert!(dialled.is_err(), "the server's proof does not check out");
        assert!(accepted.is_err());

        // A gRPC client speaking HTTP/2 straight away.
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("write");
        a.write_all(&[0u8; 32])
            .await
            .expect("a SETTINGS frame, say");
        let err = accept_handshake(&mut b, &secret("the-real-cluster-secret"))
            .await
            .expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn bearer_tokens_match_only_the_secret() {
        let s = secret("the-real-cluster-secret");
        assert!(s.matches(b"the-real-cluster-secret\n"));
        assert!(!s.matches(b"the-real-cluster-secreT"));
        assert!(!s.matches(b""));
    }

    #[test]
    fn short_secrets_are_refused_and_whitespace_is_trimmed() {
        assert!(ClusterSecret::new(b"short").is_err());
        let a = ClusterSecret::new(b"  0123456789abcdef\n").expect("16 bytes");
        assert_eq!(&*a.0, b"0123456789abcdef");
    }

    #[test]
    fn callers_must_be_who_they_claim_and_known() {
        let known = |id: u64| id < 10;
        assert!(
            check_caller(None, Some(99), known).is_ok(),
            "no secret: nothing known"
        );
        assert!(check_caller(Some(2), Some(2), known).is_ok());
        assert!(check_caller(Some(2), None, known).is_ok());
        assert!(
            check_caller(Some(2), Some(3), known).is_err(),
            "another's id"
        );
        assert!(
            check_caller(Some(42), Some(42), known).is_err(),
            "a stranger"
        );
    }
}
