//! A raw Kafka protocol connection for tests that need exact control of request versions
//! and fields (encoded with the kafka-protocol crate, as a client would).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    FindCoordinatorRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

pub struct Wire {
    stream: TcpStream,
    correlation_id: i32,
}

impl Wire {
    pub fn connect(bootstrap: &str) -> Wire {
        let stream = TcpStream::connect(bootstrap).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .expect("timeout");
        Wire {
            stream,
            correlation_id: 0,
        }
    }

    /// Speaks the protocol on a connection made elsewhere (from a chosen address, say).
    pub fn from_stream(stream: TcpStream) -> Wire {
        Wire {
            stream,
            correlation_id: 0,
        }
    }

    /// The connection, to watch it at the byte level.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
    }

    /// Like [`receive`](Self::receive), but a closed connection or a read timeout (with
    /// nothing of the answer read yet) is `None`.
    pub fn try_receive<R: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> Option<R::Response> {
        let mut b = self.read_frame().ok()?;
        let header = ResponseHeader::decode(&mut b, R::Response::header_version(version)).ok()?;
        assert_eq!(header.correlation_id, correlation_id);
        R::Response::decode(&mut b, version).ok()
    }

    /// `req` as one frame under the next correlation id.
    fn encode<R: Request>(&mut self, version: i16, req: &R) -> BytesMut {
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("fjord-wire-test")))
            .encode(&mut buf, R::header_version(version))
            .expect("encode header");
        req.encode(&mut buf, version).expect("encode request");
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        buf
    }

    /// The body of the next frame the broker sends.
    fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Sends `req` at `version` without waiting; returns its correlation id.
    pub fn send<R: Request>(&mut self, version: i16, req: &R) -> i32 {
        let buf = self.encode(version, req);
        self.stream.write_all(&buf).expect("send");
        self.correlation_id
    }

    /// Reads the next response, which must answer `correlation_id`.
    pub fn receive<R: Request>(&mut self, version: i16, correlation_id: i32) -> R::Response {
        let mut b = self.read_frame().expect("response");
        let header = ResponseHeader::decode(&mut b, R::Response::header_version(version))
            .expect("response header");
        assert_eq!(
            header.correlation_id, correlation_id,
            "responses come back in order"
        );
        R::Response::decode(&mut b, version).expect("decode response")
    }

    pub fn call<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let id = self.send(version, req);
        self.receive::<R>(version, id)
    }

    /// Like [`call`](Self::call), but a connection the broker closed is `None`.
    pub fn try_call<R: Request>(&mut self, version: i16, req: &R) -> Option<R::Response> {
        let buf = self.encode(version, req);
        self.stream.write_all(&buf).ok()?;
        let mut b = self.read_frame().ok()?;
        let header = ResponseHeader::decode(&mut b, R::Response::header_version(version)).ok()?;
        assert_eq!(header.correlation_id, self.correlation_id);
        R::Response::decode(&mut b, version).ok()
    }

    /// Connects to a SASL_PLAINTEXT listener and logs in with SASL/PLAIN.
    pub fn connect_plain(bootstrap: &str, user: &str, password: &str) -> Wire {
        let mut w = Wire::connect(bootstrap);
        let answer = w.login_plain(user, password);
        assert_eq!(
            answer.error_code, 0,
            "login as {user}: {:?}",
            answer.error_message
        );
        w
    }

    /// SaslHandshake v1 (PLAIN) and SaslAuthenticate v2 on this connection (a first login,
    /// or a KIP-368 re-authentication); the answer says whether it worked and how long the
    /// session lasts.
    pub fn login_plain(&mut self, user: &str, password: &str) -> SaslAuthenticateResponse {
        let hs = self.call(
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        );
        assert_eq!(hs.error_code, 0, "PLAIN is enabled: {:?}", hs.mechanisms);
        let token = format!("\0{user}\0{password}");
        self.call(
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token.into_bytes())),
        )
    }

    /// The coordinator FindCoordinator (v3) names for `key` (key type 0: a group, 1: a
    /// transactional id), or the error code it answered.
    pub fn find_coordinator(&mut self, key: &str, key_type: i8) -> Result<i32, i16> {
        let r = self.call(
            3,
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(key.to_string()))
                .with_key_type(key_type),
        );
        match r.error_code {
            0 => Ok(r.node_id.0),
            code => Err(code),
        }
    }
}
