//! A minimal blocking Kafka protocol client for the few admin calls librdkafka's Rust
//! binding does not expose faithfully (it drops per-resource AlterConfigs errors).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::CliError;

pub struct Wire {
    stream: TcpStream,
    correlation_id: i32,
}

impl Wire {
    /// Connects to the first reachable bootstrap server.
    pub fn connect(bootstrap: &str, timeout: Duration) -> Result<Wire, CliError> {
        let mut last = None;
        for addr in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            let resolved = std::net::ToSocketAddrs::to_socket_addrs(addr).map_err(CliError::Io)?;
            for sa in resolved {
                match TcpStream::connect_timeout(&sa, timeout) {
                    Ok(stream) => {
                        stream.set_read_timeout(Some(timeout))?;
                        stream.set_write_timeout(Some(timeout))?;
                        return Ok(Wire {
                            stream,
                            correlation_id: 0,
                        });
                    }
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(CliError::Kafka(format!(
            "cannot reach any bootstrap server {bootstrap}: {}",
            last.map(|e| e.to_string())
                .unwrap_or_else(|| "no address".into())
        )))
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
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
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
