//! One client connection: read a frame, handle it, write its response, and only then
//! read the next, as Kafka's socket server does (it mutes a connection while its request
//! is in flight). Requests a client pipelines wait in the socket, not in the node: a
//! connection holds at most one request and one answer, whatever the client sends.
//! Malformed input closes this connection only, with a log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::context::RequestContext;
use super::dispatch::{dispatch, Reply};
use super::frame::{self, Decoded};
use super::incoming::{Admitted, FrameReader};
use super::outgoing::ResponseFrame;
use super::session::{Gate, Session, ANONYMOUS, MAX_UNAUTHENTICATED_FRAME};
use super::{api_versions, metrics_labels, throttle};
use crate::broker::Broker;
use crate::quota::connections::Slot;

/// Socket reads are buffered this much, so small requests cost one read each.
const READ_BUFFER: usize = 8 * 1024;

/// A response to write (or `None`: nothing to send), once its request is handled.
type Response = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Outgoing>> + Send>>;

/// An encoded response, and how long the client is throttled after it (KIP-219: the
/// connection is not read again until then).
struct Outgoing {
    frame: ResponseFrame,
    throttle_ms: u64,
    /// Close the connection once this is written (a failed authentication).
    close: bool,
}
/// How long a client has to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted connection; `_slot` keeps it counted against the connection
/// limits until it closes.
pub async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    listener: String,
    broker: Arc<Broker>,
    _slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    let security = broker.security.listener_security(&listener);
    crate::admin::CONNECTIONS_OPEN.add(1);
    match &security.tls {
        None => {
            let (rd, wr) = stream.into_split();
            let principal = Arc::from(ANONYMOUS);
            let session = Session::new(peer, listener, broker, Arc::clone(&security), principal);
            serve(rd, wr, session).await;
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.get());
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    // A client certificate names the client (Kafka's default principal
                    // builder: its subject's distinguished name); SASL may name it again.
                    let principal = tls_stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| crate::security::principal::subject_name(c))
                        .unwrap_or_else(|| ANONYMOUS.to_string());
                    let (rd, wr) = tokio::io::split(tls_stream);
                    let session = Session::new(
                        peer,
                        listener,
                        broker,
                        Arc::clone(&security),
                        Arc::from(principal.as_str()),
                    );
                    serve(rd, wr, session).await;
                }
                Ok(Err(e)) => {
                    metrics::counter!("fjord_tls_handshake_failures_total").increment(1);
                    debug!(%peer, %listener, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    metrics::counter!("fjord_tls_handshake_failures_total").increment(1);
                    debug!(%peer, %listener, "TLS handshake timed out");
                }
            }
        }
    }
    crate::admin::CONNECTIONS_OPEN.add(-1);
}

/// Serves one connection's requests until it closes.
async fn serve<R, W>(rd: R, mut wr: W, mut session: Session)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (peer, listener) = (session.peer, session.listener.clone());
    let broker = Arc::clone(&session.broker);
    let max_frame = broker
        .broker_i64("socket.request.max.bytes")
        .clamp(1, i64::from(i32::MAX)) as u64;
    let frame_limit = |s: &Session| {
        if s.unauthenticated() {
            max_frame.min(MAX_UNAUTHENTICATED_FRAME)
        } else {
            max_frame
        }
    };
    let mut frames = FrameReader::new(
        BufReader::with_capacity(READ_BUFFER, rd),
        Arc::clone(&broker.request_pool),
        frame_limit(&session),
    );
    // The answer being waited for; no frame is read while there is one.
    let mut in_flight: Option<Response> = None;
    // connections.max.idle.ms: a connection with nothing read, nothing in flight and
    // nothing written for this long is closed, as Kafka's selector does.
    let idle_limit = u64::try_from(broker.broker_i64("connections.max.idle.ms"))
        .ok()
        .map(Duration::from_millis);
    let failed_auth_delay = Duration::from_millis(
        broker
            .broker_i64("connection.failed.authentication.delay.ms")
            .max(0) as u64,
    );
    let mut active_at = tokio::time::Instant::now();
    debug!(%peer, %listener, "connection opened");

    // A throttled client's next request is not read before this (KIP-219).
    let mut muted_until: Option<tokio::time::Instant> = None;
    let close_reason = loop {
        if muted_until.is_some_and(|t| t <= tokio::time::Instant::now()) {
            muted_until = None;
        }
        frames.set_max_frame(frame_limit(&session));
        frames.allow_bare_frames(session.expects_raw_token());
        let idle = in_flight.is_none() && !frames.mid_frame();
        let idle_deadline = idle_limit.filter(|_| idle).map(|d| active_at + d);
        tokio::select! {
            () = sleep_until(muted_until), if muted_until.is_some() => {}
            () = sleep_until(idle_deadline), if idle_deadline.is_some() => {
                metrics::counter!("fjord_connections_closed_idle_total").increment(1);
                debug!(%peer, %listener, "closing idle connection (connections.max.idle.ms)");
                break None;
            }
            frame = frames.next(), if in_flight.is_none() && muted_until.is_none() => {
                let frame = match frame {
                    Ok(None) => break None,
                    Err(super::incoming::FrameError::Io(e)) if is_disconnect(&e) => break None,
                    Err(e) => break Some(format!("bad frame: {e}")),
                    Ok(Some(f)) => f,
                };
                active_at = tokio::time::Instant::now();
                match start(frame, &mut session).await {
                    Ok((answer, throttle_ms)) => {
                        in_flight = answer;
                        mute(&mut muted_until, throttle_ms);
                    }
                    Err(reason) => break Some(reason),
                }
            }
            response = answer(&mut in_flight), if in_flight.is_some() => {
                in_flight = None;
                active_at = tokio::time::Instant::now();
                if let Some(Outgoing { mut frame, throttle_ms, close }) = response {
                    if close && !failed_auth_delay.is_zero() {
                        // KIP-306: a failed login is answered, and its connection
                        // closed, only after a delay, so guessing passwords is slow.
                        tokio::time::sleep(failed_auth_delay).await;
                    }
                    // The flush matters under TLS: records the socket did not take yet
                    // stay in the session's buffer until flushed.
                    if let Err(e) = write_frame(&mut wr, &mut frame).await {
                        if is_disconnect(&e) {
                            break None;
                        }
                        break Some(format!("write failed: {e}"));
                    }
                    if close {
                        break Some("the client failed to authenticate".into());
                    }
                    mute(&mut muted_until, throttle_ms);
                }
            }
        }
    };
    // Answer what was already accepted before closing.
    if let Some(pending) = in_flight {
        if let Some(Outgoing { mut frame, .. }) = pending.await {
            let _ = write_frame(&mut wr, &mut frame).await;
        }
    }
    match &close_reason {
        Some(reason) => info!(%peer, %listener, reason = %reason, "closing Kafka connection"),
        None => debug!(%peer, "connection closed by client"),
    }
    let _ = wr.shutdown().await;
}

/// A peer that went away (mid-frame, or while its answer was being written) is an
/// ordinary disconnect, logged at DEBUG rather than as a refused connection.
fn is_disconnect(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

async fn write_frame<W: AsyncWrite + Unpin, B: bytes::Buf>(
    wr: &mut W,
    frame: &mut B,
) -> std::io::Result<()> {
    wr.write_all_buf(frame).await?;
    wr.flush().await
}

/// Holds the connection's reading for `throttle_ms` from now (KIP-219), keeping a longer
/// hold already in force. A throttle is known when its request is handled, so requests
/// pipelined behind it are not read, let alone handled, until it has passed.
fn mute(muted_until: &mut Option<tokio::time::Instant>, throttle_ms: u64) {
    if throttle_ms > 0 {
        let until = tokio::time::Instant::now() + Duration::from_millis(throttle_ms);
        *muted_until = Some(muted_until.map_or(until, |t| t.max(until)));
    }
}

/// Sleeps until `t` (forever for `None`, which the caller guards against).
async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Handles one admitted frame: its answer to wait for and write (`None`: nothing to
/// send, for acks=0) and the throttle it earned; `Err` closes the connection. The
/// frame's share of the request pool is given back once it has been handled: what
/// remains in flight (a response being waited for) no longer holds the request.
async fn start(
    admitted: Admitted,
    session: &mut Session,
) -> Result<(Option<Response>, u64), String> {
    let Admitted { frame, permit } = admitted;
    let handled = handle_frame(frame, session).await;
    drop(permit);
    handled
}

/// Waits for the answer in flight (the caller only asks while there is one).
async fn answer(in_flight: &mut Option<Response>) -> Option<Outgoing> {
    match in_flight {
        Some(pending) => pending.await,
        None => std::future::pending().await,
    }
}

/// A response that is already encoded.
fn ready(outgoing: Option<Outgoing>) -> Response {
    Box::pin(async move { outgoing })
}

/// Decodes and handles one frame: a response to send in order (`None`: no response, for
/// acks=0) and the throttle the request earned; `Err` closes the connection.
async fn handle_frame(
    frame: Bytes,
    session: &mut Session,
) -> Result<(Option<Response>, u64), String> {
    let frame_len = frame.len();
    if session.expects_raw_token() {
        // After a v0 SaslHandshake the tokens travel bare, without Kafka's framing.
        let reply = session.raw_token(&frame)?;
        let outgoing = Outgoing {
            frame: ResponseFrame::from(reply),
            throttle_ms: 0,
            close: false,
        };
        return Ok((Some(ready(Some(outgoing))), 0));
    }
    let (header, api, request) = match frame::decode(frame) {
        Decoded::Request {
            header,
            api,
            request,
        } => (header, api, request),
        Decoded::UnsupportedApiVersions { correlation_id } => {
            let resp = api_versions::unsupported_version_response();
            let bytes = frame::encode_api_versions_fallback(
                correlation_id,
                &ResponseKind::ApiVersions(resp),
            )
            .map_err(|e| format!("encoding ApiVersions fallback: {e:#}"))?;
            let outgoing = Outgoing {
                frame: ResponseFrame::from(bytes),
                throttle_ms: 0,
                close: false,
            };
            return Ok((Some(ready(Some(outgoing))), 0));
        }
        Decoded::Reject { preamble, reason } => {
            metrics::counter!("fjord_rejected_requests_total").increment(1);
            return Err(match preamble {
                Some(p) => format!(
                    "{reason} (api key {}, version {}, correlation id {})",
                    p.api_key, p.api_version, p.correlation_id
                ),
                None => reason,
            });
        }
    };
    let version = header.request_api_version;
    let correlation_id = header.correlation_id;
    let api_label = metrics_labels::api_name(api);
    let encode = move |response: &ResponseKind, throttle_ms: u64, close: bool| {
        match frame::encode_response(api, version, correlation_id, response) {
            Ok(frame) => Some(Outgoing {
                frame,
                throttle_ms,
                close,
            }),
            Err(e) => {
                warn!(api = api_label, version, error = %format!("{e:#}"), "cannot encode response");
                None
            }
        }
    };
    // Authentication comes first: SASL requests are answered here, and nothing else
    // passes before a SASL client has authenticated.
    let gate = match session.gate(api) {
        Gate::Pass => match &*request {
            RequestKind::SaslHandshake(r) => session.handshake(r, version),
            RequestKind::SaslAuthenticate(r) => session.authenticate(r, version),
            _ => Gate::Pass,
        },
        other => other,
    };
    match gate {
        Gate::Pass => {}
        Gate::Close(reason) => return Err(reason),
        Gate::Answer { response, close } => {
            let outgoing = encode(&response, 0, close)
                .ok_or_else(|| format!("could not encode a {api:?} v{version} response"))?;
            return Ok((Some(ready(Some(outgoing))), 0));
        }
    }
    let Session {
        peer,
        listener,
        broker,
        principal,
        ..
    } = &*session;
    let peer = *peer;
    let ctx = RequestContext {
        broker: Arc::clone(broker),
        listener: listener.clone(),
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
        api_version: version,
        principal: Arc::clone(principal),
    };
    let started = Instant::now();
    debug!(%peer, api = api_label, version, correlation_id, client_id = %ctx.client_id, "request");
    metrics::counter!("fjord_requests_total", "api" => api_label).increment(1);
    let frame_len = frame_len as f64;
    let reply = dispatch(&ctx, *request).await;
    // Produce bytes and handling time count against the client's quotas; waiting for
    // replication or data (a `Later` reply) does not.
    let throttle_ms = crate::quota::request_throttle(
        broker,
        api,
        ctx.quota_client(),
        frame_len,
        started.elapsed(),
    );
    let finish = move |mut response: ResponseKind| -> Option<Outgoing> {
        metrics::histogram!("fjord_request_duration_seconds", "api" => api_label)
            .record(started.elapsed().as_secs_f64());
        throttle::raise(&mut response, version, throttle_ms);
        let throttle_ms = throttle::get(&mut response).max(throttle_ms);
        encode(&response, throttle_ms, false)
    };
    let response: Option<Response> = match reply {
        Reply::Now(response) => {
            let outgoing = finish(*response);
            if outgoing.is_none() {
                return Err(format!("could not encode a {api:?} v{version} response"));
            }
            Some(ready(outgoing))
        }
        Reply::Later(fut) => Some(Box::pin(fut.map(finish))),
        Reply::Nothing => {
            if api != ApiKey::Produce {
                info!(api = api_label, "request without response");
            }
            None
        }
        Reply::Close(reason) => return Err(reason),
    };
    Ok((response, throttle_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response written through TLS into a pipe that takes a few bytes at a time must
    /// arrive whole without anything else being written after it. Without the flush the
    /// session kept the tail until the next response, and a consumer waiting for this
    /// one sent nothing that would cause one.
    #[tokio::test]
    async fn a_response_written_over_tls_arrives_whole_on_its_own() {
        use crate::security::tls::{self, test_certs, ClientAuth, TlsFiles};
        use tokio::io::AsyncReadExt;

        let tmp = tempfile::tempdir().expect("tmp");
        let dir = test_certs::make(tmp.path(), &["server"]);
        let files = |keystore: Option<&str>| TlsFiles {
            keystore: keystore.map(|k| dir.join(k)),
            truststore: Some(dir.join("ca.pem")),
            client_auth: ClientAuth::None,
            verify_hostname: true,
        };
        let server = tls::server_config(&files(Some("server.pem")), &[]).expect("server");
        let client = tls::client_config(&files(None), &[]).expect("client");
        let (near, far) = tokio::io::duplex(1024);
        let accept = tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(near);
        let connect = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            far,
        );
        let (served, connected) = tokio::join!(accept, connect);
        let (mut served, mut connected) = (served.expect("accept"), connected.expect("connect"));

        let body = Bytes::from(vec![7u8; 1 << 20]);
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 1 << 20];
            connected.read_exact(&mut got).await.map(|_| got)
        });
        write_frame(&mut served, &mut body.clone())
            .await
            .expect("write");
        let got = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the whole response arrives without another write")
            .expect("reader task")
            .expect("read");
        assert_eq!(got, body);
        drop(served);
    }
}
