//! What one connection knows about its client, and SASL on it: SaslHandshake (v1) and
//! SaslAuthenticate are answered here, because they change the connection rather than
//! the cluster. Before a client on a SASL listener has authenticated, only ApiVersions,
//! SaslHandshake and SaslAuthenticate are served; anything else closes the connection,
//! as Kafka does. With `connections.max.reauth.ms` a session expires (KIP-368): the
//! client must authenticate again on the same connection, as the same user, before its
//! next request after that.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ResponseKind, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info};

use crate::broker::Broker;
use crate::security::sasl::{Credentials, Exchange, SaslMechanism, Step};
use crate::security::ListenerSecurity;

/// The user name of a client that has not authenticated, as Kafka names it.
pub const ANONYMOUS: &str = "ANONYMOUS";

/// Requests a SASL client may send before it has authenticated are this small, as
/// Kafka's `sasl.server.max.receive.size` allows.
pub const MAX_UNAUTHENTICATED_FRAME: u64 = 512 * 1024;

pub struct Session {
    pub peer: SocketAddr,
    pub listener: String,
    pub broker: Arc<Broker>,
    pub security: Arc<ListenerSecurity>,
    /// The user's name (Kafka's principal is `User:<name>`).
    pub principal: Arc<str>,
    auth: Auth,
}

enum Auth {
    /// Not a SASL listener: the principal is fixed for the connection.
    Open,
    /// A SASL listener: authenticated once `user` is set; `exchange` is an
    /// authentication (or re-authentication) in progress.
    Sasl {
        user: Option<Arc<str>>,
        exchange: Option<Box<Exchange>>,
        expires: Option<Instant>,
        /// SaslHandshake v0 was used: the tokens come as bare length-prefixed frames,
        /// without Kafka's request header, until the exchange ends.
        raw: bool,
    },
}

/// What the connection does with a request before handling it.
pub enum Gate {
    /// Handle it as usual.
    Pass,
    /// Answer with this response (SASL APIs); close after it when `close` is set.
    Answer {
        response: Box<ResponseKind>,
        close: bool,
    },
    /// Close without answering.
    Close(String),
}

impl Session {
    pub fn new(
        peer: SocketAddr,
        listener: String,
        broker: Arc<Broker>,
        security: Arc<ListenerSecurity>,
        principal: Arc<str>,
    ) -> Self {
        let auth = if security.protocol.sasl() {
            Auth::Sasl {
                user: None,
                exchange: None,
                expires: None,
                raw: false,
            }
        } else {
            Auth::Open
        };
        Session {
            peer,
            listener,
            broker,
            security,
            principal,
            auth,
        }
    }

    /// Whether the client may send only small, authentication-related frames yet.
    pub fn unauthenticated(&self) -> bool {
        matches!(self.auth, Auth::Sasl { user: None, .. })
    }

    /// Decides what to do with a request of `api` before it is handled.
    pub fn gate(&mut self, api: ApiKey) -> Gate {
        match (&self.auth, api) {
            (_, ApiKey::ApiVersions) => Gate::Pass,
            (Auth::Open, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) => Gate::Close(format!(
                "{api:?} on listener {}, which does not use SASL",
                self.listener
            )),
            (Auth::Open, _) => Gate::Pass,
            (Auth::Sasl { .. }, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) => Gate::Pass,
            (Auth::Sasl { user: None, .. }, _) => {
                Gate::Close(format!("{api:?} before SASL authentication"))
            }
            (
                Auth::Sasl {
                    expires: Some(t), ..
                },
                _,
            ) if *t <= Instant::now() => Gate::Close(
                "the SASL session expired (connections.max.reauth.ms) and was not renewed".into(),
            ),
            (Auth::Sasl { .. }, _) => Gate::Pass,
        }
    }

    /// Whether the next frame is a bare SASL token (after a v0 handshake).
    pub fn expects_raw_token(&self) -> bool {
        matches!(
            self.auth,
            Auth::Sasl {
                raw: true,
                exchange: Some(_),
                ..
            }
        )
    }

    /// Answers a bare SASL token (after a v0 handshake) with a bare one: the frame to
    /// write, or why to close the connection (Kafka sends nothing on failure then).
    pub fn raw_token(&mut self, token: &[u8]) -> Result<Bytes, String> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
        let (response, close) = match self.authenticate(&req, 0) {
            Gate::Answer { response, close } => (*response, close),
            _ => return Err("SASL authentication failed".into()),
        };
        match (response, close) {
            (ResponseKind::SaslAuthenticate(r), false) => {
                if let Auth::Sasl { raw, exchange, .. } = &mut self.auth {
                    *raw = exchange.is_some();
                }
                let mut out = Vec::with_capacity(4 + r.auth_bytes.len());
                out.extend_from_slice(&(r.auth_bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(&r.auth_bytes);
                Ok(Bytes::from(out))
            }
            (ResponseKind::SaslAuthenticate(r), true) => Err(format!(
                "SASL authentication failed: {}",
                r.error_message.as_deref().unwrap_or("invalid credentials")
            )),
            _ => Err("SASL authentication failed".into()),
        }
    }

    pub fn handshake(&mut self, req: &SaslHandshakeRequest, version: i16) -> Gate {
        let enabled: Vec<StrBytes> = self
            .security
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let chosen = SaslMechanism::from_name(req.mechanism.as_str())
            .filter(|m| self.security.mechanisms.contains(m));
        let response = SaslHandshakeResponse::default().with_mechanisms(enabled);
        let Auth::Sasl { exchange, raw, .. } = &mut self.auth else {
            unreachable!("the gate closes SASL requests on other listeners")
        };
        match chosen {
            Some(m) if exchange.is_none() => {
                *exchange = Some(Box::new(Exchange::Started(m)));
                *raw = version == 0;
                answer(ResponseKind::SaslHandshake(response), false)
            }
            Some(_) => answer(
                ResponseKind::SaslHandshake(
                    response.with_error_code(ResponseError::IllegalSaslState.code()),
                ),
                true,
            ),
            None => answer(
                ResponseKind::SaslHandshake(
                    response.with_error_code(ResponseError::UnsupportedSaslMechanism.code()),
                ),
                true,
            ),
        }
    }

    pub fn authenticate(&mut self, req: &SaslAuthenticateRequest, version: i16) -> Gate {
        let reauth_ms = self.broker.security.reauth_ms;
        let statics = self.broker.security.static_users();
        let metadata = self.broker.metadata();
        let creds = Credentials {
            statics: &statics,
            metadata: &metadata,
        };
        let Auth::Sasl {
            user,
            exchange,
            expires,
            ..
        } = &mut self.auth
        else {
            unreachable!("the gate closes SASL requests on other listeners")
        };
        let fail = |code: ResponseError, message: String| {
            answer(
                ResponseKind::SaslAuthenticate(
                    SaslAuthenticateResponse::default()
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_string(message))),
                ),
                true,
            )
        };
        let Some(current) = exchange.take() else {
            return fail(
                ResponseError::IllegalSaslState,
                "SaslAuthenticate without a SaslHandshake".into(),
            );
        };
        let step = match (*current).step(&req.auth_bytes, &creds) {
            Ok(step) => step,
            Err(e) => {
                info!(peer = %self.peer, listener = %self.listener, error = %e, "SASL authentication failed");
                metrics::counter!("fjord_sasl_authentications_total", "result" => "failed")
                    .increment(1);
                return fail(ResponseError::SaslAuthenticationFailed, e.to_string());
            }
        };
        // Kafka's success carries a null message, not "".
        let mut response = SaslAuthenticateResponse::default().with_error_message(None);
        match step {
            Step::Challenge(next, challenge) => {
                *exchange = Some(Box::new(next));
                response.auth_bytes = Bytes::from(challenge);
            }
            Step::Done { user: name, reply } => {
                if let Some(previous) = user.as_deref() {
                    if previous != name {
                        return fail(
                            ResponseError::SaslAuthenticationFailed,
                            format!("re-authentication must be as {previous}, not as {name}"),
                        );
                    }
                }
                debug!(peer = %self.peer, user = %name, "SASL authenticated");
                metrics::counter!("fjord_sasl_authentications_total", "result" => "succeeded")
                    .increment(1);
                let name: Arc<str> = Arc::from(name.as_str());
                *user = Some(Arc::clone(&name));
                self.principal = name;
                response.auth_bytes = Bytes::from(reply);
                if reauth_ms > 0 {
                    *expires =
                        Some(Instant::now() + std::time::Duration::from_millis(reauth_ms as u64));
                    if version >= 1 {
                        response.session_lifetime_ms = reauth_ms;
                    }
                }
            }
        }
        answer(ResponseKind::SaslAuthenticate(response), false)
    }
}

fn answer(response: ResponseKind, close: bool) -> Gate {
    Gate::Answer {
        response: Box::new(response),
        close,
    }
}
