//! A minimal blocking Kafka protocol client for the admin calls librdkafka's Rust binding
//! does not expose faithfully (it drops per-resource AlterConfigs errors, and has no
//! quota, ACL or SCRAM user calls). It speaks the same security as librdkafka, from the
//! same properties: `security.protocol`, `ssl.ca.location` (plus `ssl.certificate.location`
//! and `ssl.key.location` for a client certificate), `sasl.mechanism`, `sasl.username`
//! and `sasl.password`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::client::ConnectArgs;
use super::CliError;
use crate::security::scram::{Mechanism, ScramClient};
use crate::security::tls::{self, ClientAuth, TlsFiles};

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// How to reach a secured cluster, from the client properties.
struct Security {
    tls: Option<Arc<rustls::ClientConfig>>,
    /// `(mechanism, user, password)`.
    sasl: Option<(String, String, String)>,
}

impl Security {
    fn from_args(connect: &ConnectArgs) -> Result<Self, CliError> {
        let prop = |k: &str| connect.property(k);
        let protocol = prop("security.protocol")?
            .unwrap_or_else(|| "plaintext".into())
            .to_ascii_uppercase();
        let (tls, sasl) = match protocol.as_str() {
            "PLAINTEXT" => (false, false),
            "SSL" => (true, false),
            "SASL_PLAINTEXT" => (false, true),
            "SASL_SSL" => (true, true),
            other => {
                return Err(CliError::Usage(format!(
                    "security.protocol={other}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                )))
            }
        };
        let tls = if tls {
            let ca = prop("ssl.ca.location")?.ok_or_else(|| {
                CliError::Usage("TLS needs ssl.ca.location (the CA's PEM file)".into())
            })?;
            // A client certificate, if given, as one PEM of key and chain.
            let keystore = match (prop("ssl.certificate.location")?, prop("ssl.key.location")?) {
                (Some(cert), Some(key)) => {
                    let joined = std::env::temp_dir()
                        .join(format!("fjord-cli-{}-identity.pem", std::process::id()));
                    let mut pem = std::fs::read(&key)?;
                    pem.extend(std::fs::read(&cert)?);
                    std::fs::write(&joined, pem)?;
                    Some(joined)
                }
                _ => None,
            };
            let files = TlsFiles {
                keystore: keystore.clone(),
                truststore: Some(ca.into()),
                client_auth: ClientAuth::None,
                verify_hostname: prop("ssl.endpoint.identification.algorithm")?
                    .is_none_or(|v| v.eq_ignore_ascii_case("https")),
            };
            let config = tls::client_config(&files, &[]);
            if let Some(k) = keystore {
                let _ = std::fs::remove_file(k);
            }
            Some(Arc::new(config.map_err(|e| {
                CliError::Usage(format!("TLS settings: {e}"))
            })?))
        } else {
            None
        };
        let sasl = if sasl {
            let mechanism = prop("sasl.mechanism")?.unwrap_or_else(|| "PLAIN".into());
            let user = prop("sasl.username")?
                .ok_or_else(|| CliError::Usage("SASL needs sasl.username".into()))?;
            let password = prop("sasl.password")?
                .ok_or_else(|| CliError::Usage("SASL needs sasl.password".into()))?;
            Some((mechanism.to_ascii_uppercase(), user, password))
        } else {
            None
        };
        Ok(Security { tls, sasl })
    }
}

pub struct Wire {
    stream: Stream,
    correlation_id: i32,
}

impl Wire {
    /// Connects to the first reachable of `addrs` (comma-separated), with the security
    /// `connect`'s properties ask for.
    pub fn connect(addrs: &str, connect: &ConnectArgs) -> Result<Wire, CliError> {
        connect.ensure_reachable()?;
        let security = Security::from_args(connect)?;
        let timeout = connect.timeout();
        let mut last = None;
        for addr in addrs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            let resolved = std::net::ToSocketAddrs::to_socket_addrs(addr).map_err(CliError::Io)?;
            for sa in resolved {
                match TcpStream::connect_timeout(&sa, timeout) {
                    Ok(tcp) => {
                        tcp.set_read_timeout(Some(timeout))?;
                        tcp.set_write_timeout(Some(timeout))?;
                        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                        let stream = Self::wrap(tcp, host, &security)?;
                        let mut wire = Wire {
                            stream,
                            correlation_id: 0,
                        };
                        if let Some((mechanism, user, password)) = &security.sasl {
                            wire.authenticate(mechanism, user, password)?;
                        }
                        return Ok(wire);
                    }
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(CliError::Kafka(format!(
            "cannot reach any bootstrap server {addrs}: {}",
            last.map(|e| e.to_string())
                .unwrap_or_else(|| "no address".into())
        )))
    }

    fn wrap(tcp: TcpStream, host: &str, security: &Security) -> Result<Stream, CliError> {
        let Some(config) = &security.tls else {
            return Ok(Stream::Plain(tcp));
        };
        let name = rustls::pki_types::ServerName::try_from(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        )
        .map_err(|e| CliError::Usage(format!("server name {host}: {e}")))?;
        let conn = rustls::ClientConnection::new(Arc::clone(config), name)
            .map_err(|e| CliError::Kafka(format!("TLS: {e}")))?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        // Complete the handshake now, so a certificate problem is reported as one.
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| CliError::Kafka(format!("TLS handshake with {host}: {e}")))?;
        Ok(Stream::Tls(Box::new(s)))
    }

    fn authenticate(
        &mut self,
        mechanism: &str,
        user: &str,
        password: &str,
    ) -> Result<(), CliError> {
        let handshake = self.call(
            1,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_string(mechanism.to_string())),
        )?;
        if handshake.error_code != 0 {
            return Err(CliError::Kafka(format!(
                "the broker does not offer SASL mechanism {mechanism} (it offers {})",
                handshake
                    .mechanisms
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut send = |token: Vec<u8>| -> Result<Bytes, CliError> {
            let resp = self.call(
                2,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
            )?;
            if resp.error_code != 0 {
                return Err(CliError::Kafka(format!(
                    "SASL authentication as {user} failed: {}",
                    resp.error_message.as_deref().unwrap_or("no reason given")
                )));
            }
            Ok(resp.auth_bytes)
        };
        match Mechanism::from_name(mechanism) {
            None if mechanism == "PLAIN" => {
                send(format!("\0{user}\0{password}").into_bytes())?;
            }
            None => {
                return Err(CliError::Usage(format!(
                    "sasl.mechanism={mechanism}: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                )))
            }
            Some(m) => {
                let client = ScramClient::new(m, user, password);
                let server_first = send(client.client_first())?;
                let (pending, last) = client
                    .client_final(&server_first)
                    .map_err(|e| CliError::Kafka(format!("SCRAM: {e}")))?;
                let server_final = send(last)?;
                pending.verify(&server_final).map_err(|e| {
                    CliError::Kafka(format!("SCRAM: the broker did not prove itself: {e}"))
                })?;
            }
        }
        Ok(())
    }

    pub fn call<R: Request>(&mut self, version: i16, req: &R) -> Result<R::Response, CliError> {
        let bad = |e: anyhow::Error| CliError::Kafka(format!("protocol error: {e:#}"));
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("fjord-cli")))
            .encode(&mut buf, R::header_version(version))
            .map_err(bad)?;
        req.encode(&mut buf, version).map_err(bad)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf)?;
        self.stream.flush()?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                CliError::Kafka(
                    "the broker closed the connection (is authentication needed? see \
                     --command-config)"
                        .into(),
                )
            } else {
                CliError::Io(e)
            }
        })?;
        let n = i32::from_be_bytes(len);
        if !(0..=64 << 20).contains(&n) {
            return Err(CliError::Kafka(format!("implausible response length {n}")));
        }
        let mut body = vec![0u8; n as usize];
        self.stream.read_exact(&mut body)?;
        let mut b = Bytes::from(body);
        let header =
            ResponseHeader::decode(&mut b, R::Response::header_version(version)).map_err(bad)?;
        if header.correlation_id != self.correlation_id {
            return Err(CliError::Kafka(
                "response does not match the request".into(),
            ));
        }
        R::Response::decode(&mut b, version).map_err(bad)
    }
}
