//! One client connection: read frames, handle requests in order, write responses in
//! order. Malformed input closes this connection only, with a log line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tracing::{debug, info, warn};

use super::context::RequestContext;
use super::dispatch::{dispatch, Reply};
use super::frame::{self, Decoded};
use super::{api_versions, metrics_labels};
use crate::broker::Broker;

/// Requests whose responses may be outstanding at once on one connection; beyond this
/// the connection stops reading until responses drain (backpressure).
const MAX_IN_FLIGHT: usize = 64;

type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Option<Bytes>> + Send>>;

pub async fn run(stream: TcpStream, peer: SocketAddr, listener: String, broker: Arc<Broker>) {
    let _ = stream.set_nodelay(true);
    let max_frame = broker
        .broker_i64("socket.request.max.bytes")
        .clamp(1, i64::from(i32::MAX)) as usize;
    let (rd, mut wr) = stream.into_split();
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame)
        .new_codec();
    let mut frames = FramedRead::new(rd, codec);
    let mut pending: FuturesOrdered<Pending> = FuturesOrdered::new();
    metrics::gauge!("fjord_connections_open").increment(1.0);
    debug!(%peer, %listener, "connection opened");

    let close_reason = loop {
        tokio::select! {
            frame = frames.next(), if pending.len() < MAX_IN_FLIGHT => {
                let frame = match frame {
                    None => break None,
                    Some(Err(e)) => break Some(format!("bad frame: {e}")),
                    Some(Ok(f)) => f.freeze(),
                };
                match handle_frame(frame, peer, &listener, &broker).await {
                    Ok(Some(p)) => pending.push_back(p),
                    Ok(None) => {}
                    Err(reason) => break Some(reason),
                }
            }
            Some(response) = pending.next() => {
                if let Some(bytes) = response {
                    if let Err(e) = wr.write_all(&bytes).await {
                        break Some(format!("write failed: {e}"));
                    }
                }
            }
        }
    };
    if let Some(reason) = &close_reason {
        // Answer what was already accepted before closing, so a well-formed request
        // ahead of the bad one still gets its response.
        while let Some(response) = pending.next().await {
            if let Some(bytes) = response {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        }
        warn!(%peer, %listener, reason = %reason, "closing Kafka connection");
    } else {
        while let Some(response) = pending.next().await {
            if let Some(bytes) = response {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        }
        debug!(%peer, "connection closed by client");
    }
    let _ = wr.shutdown().await;
    metrics::gauge!("fjord_connections_open").decrement(1.0);
}

/// Decodes and handles one frame. `Ok(Some)` is a response to send in order, `Ok(None)`
/// means no response (acks=0), `Err` closes the connection.
async fn handle_frame(
    frame: Bytes,
    peer: SocketAddr,
    listener: &str,
    broker: &Arc<Broker>,
) -> Result<Option<Pending>, String> {
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
            return Ok(Some(Box::pin(async move { Some(bytes) })));
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
    let ctx = RequestContext {
        broker: Arc::clone(broker),
        listener: listener.to_string(),
        client_id: header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
        api_version: version,
    };
    let started = Instant::now();
    let api_label = metrics_labels::api_name(api);
    debug!(%peer, api = api_label, version, correlation_id, client_id = %ctx.client_id, "request");
    metrics::counter!("fjord_requests_total", "api" => api_label).increment(1);
    let finish = move |response: ResponseKind| -> Option<Bytes> {
        metrics::histogram!("fjord_request_duration_seconds", "api" => api_label)
            .record(started.elapsed().as_secs_f64());
        match frame::encode_response(api, version, correlation_id, &response) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(api = api_label, version, error = %format!("{e:#}"), "cannot encode response");
                None
            }
        }
    };
    match dispatch(&ctx, *request).await {
        Reply::Now(response) => {
            let bytes = finish(*response);
            if bytes.is_none() {
                return Err(format!("could not encode a {api:?} v{version} response"));
            }
            Ok(Some(Box::pin(async move { bytes })))
        }
        Reply::Later(fut) => Ok(Some(Box::pin(fut.map(finish)))),
        Reply::Nothing => {
            if api != ApiKey::Produce {
                info!(api = api_label, "request without response");
            }
            Ok(None)
        }
        Reply::Close(reason) => Err(reason),
    }
}
