//! Turning a request frame into a typed request, and a typed response into a frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::outgoing::{ResponseFrame, SplicingBuf, SPLICE_MIN};
use super::versions;

/// The first fields of every request header, readable before we know if we can parse
/// the rest.
#[derive(Clone, Copy, Debug)]
pub struct Preamble {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// What to do with a frame.
#[derive(Debug)]
pub enum Decoded {
    Request {
        header: RequestHeader,
        api: ApiKey,
        request: Box<RequestKind>,
    },
    /// ApiVersions at a version we do not speak: answer v0 with UNSUPPORTED_VERSION, as
    /// Kafka does, so the client can retry with a version we list.
    UnsupportedApiVersions { correlation_id: i32 },
    /// Anything else we cannot serve: the reason is logged and the connection closed.
    Reject {
        preamble: Option<Preamble>,
        reason: String,
    },
}

pub fn preamble(frame: &[u8]) -> Option<Preamble> {
    if frame.len() < 8 {
        return None;
    }
    let mut b = &frame[..8];
    Some(Preamble {
        api_key: b.get_i16(),
        api_version: b.get_i16(),
        correlation_id: b.get_i32(),
    })
}

pub fn decode(frame: Bytes) -> Decoded {
    let Some(pre) = preamble(&frame) else {
        return Decoded::Reject {
            preamble: None,
            reason: format!(
                "frame of {} bytes is too short for a request header",
                frame.len()
            ),
        };
    };
    let reject = |reason: String| Decoded::Reject {
        preamble: Some(pre),
        reason,
    };
    let Ok(api) = ApiKey::try_from(pre.api_key) else {
        return reject(format!("unknown API key {}", pre.api_key));
    };
    if !versions::is_supported(api, pre.api_version) {
        if api == ApiKey::ApiVersions {
            return Decoded::UnsupportedApiVersions {
                correlation_id: pre.correlation_id,
            };
        }
        return match versions::range(api) {
            Some((lo, hi)) => reject(format!(
                "{api:?} v{} is not supported (this broker serves v{lo}-v{hi})",
                pre.api_version
            )),
            None => reject(format!("{api:?} is not supported by this broker")),
        };
    }
    let mut buf = frame;
    let header_version = api.request_header_version(pre.api_version);
    let header = match RequestHeader::decode(&mut buf, header_version) {
        Ok(h) => h,
        Err(e) => return reject(format!("malformed {api:?} request header: {e:#}")),
    };
    match RequestKind::decode(api, &mut buf, pre.api_version) {
        Ok(request) => Decoded::Request {
            header,
            api,
            request: Box::new(request),
        },
        Err(e) => reject(format!(
            "malformed {api:?} v{} request: {e:#}",
            pre.api_version
        )),
    }
}

/// Encodes a response frame: 4-byte length, response header, body. Fetch answers share
/// their record batches with the log read (see `outgoing`).
pub fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> anyhow::Result<ResponseFrame> {
    let header_version = api.response_header_version(version);
    if let ResponseKind::Fetch(fetch) = response {
        let header = ResponseHeader::default().with_correlation_id(correlation_id);
        let batches: Vec<Bytes> = fetch
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.clone())
            .filter(|b| b.len() >= SPLICE_MIN)
            .collect();
        let shared: usize = batches.iter().map(Bytes::len).sum();
        // Only the part that is not shared is allocated here.
        let rest = fetch
            .compute_size(version)
            .unwrap_or(0)
            .saturating_sub(shared)
            + HEADER;
        let mut buf = SplicingBuf::new(batches, rest);
        header.encode(&mut buf, header_version)?;
        fetch.encode(&mut buf, version)?;
        return buf.into_frame();
    }
    contiguous(header_version, correlation_id, response, version).map(ResponseFrame::from)
}

/// A response in one buffer: 4-byte length, header, body.
fn contiguous(
    header_version: i16,
    correlation_id: i32,
    response: &ResponseKind,
    version: i16,
) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // length, patched below
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)?;
    response.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

/// Correlation id and the header's tagged fields.
const HEADER: usize = 16;

/// The response header version of ApiVersions is always 0, whatever the request version,
/// so a client can always read the error.
pub fn encode_api_versions_fallback(
    correlation_id: i32,
    response: &ResponseKind,
) -> anyhow::Result<Bytes> {
    contiguous(
        kafka_protocol::messages::ApiVersionsResponse::header_version(0),
        correlation_id,
        response,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn a_fetch_answer_with_shared_batches_is_byte_for_byte_the_contiguous_encoding() {
        let partition = |index: i32, records: Option<Bytes>| {
            PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(42)
                .with_records(records)
        };
        let topic = |name: &'static str, partitions| {
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str(name)))
                .with_partitions(partitions)
        };
        let response = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
            topic(
                "a",
                vec![
                    partition(0, Some(Bytes::from(vec![7u8; 9000]))),
                    partition(1, Some(Bytes::from(vec![8u8; 100]))),
                    partition(2, None),
                ],
            ),
            topic("b", vec![partition(0, Some(Bytes::from(vec![9u8; 70000])))]),
        ]));
        for version in [4, 11, 12, 13, 16] {
            let mut frame = encode_response(ApiKey::Fetch, version, 5, &response).expect("encodes");
            // Length, header and fields, batch, fields, batch (and any tagged fields).
            assert!(
                frame.pieces() >= 5,
                "v{version}: both large batches are shared"
            );
            assert_eq!(
                frame.copy_to_bytes(frame.remaining()).to_vec(),
                contiguous(
                    ApiKey::Fetch.response_header_version(version),
                    5,
                    &response,
                    version
                )
                .expect("encodes in one buffer"),
                "v{version}"
            );
        }
    }
}
