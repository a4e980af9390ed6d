use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, ResponseKind};

use super::context::RequestContext;
use super::features;
use super::versions::SUPPORTED;

fn api_keys() -> Vec<ApiVersion> {
    api_keys_where(|_| true)
}

fn api_keys_where(shown: impl Fn(ApiKey) -> bool) -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .filter(|(api, _, _)| shown(*api))
        .map(|(api, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*api as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect()
}

pub fn handle(ctx: &RequestContext, _req: ApiVersionsRequest) -> ResponseKind {
    let md = ctx.broker.metadata();
    // As Kafka: with group.version 0 the KIP-848 APIs are not offered, so clients fall
    // back to the classic protocol.
    let consumer_protocol = features::consumer_protocol_enabled(&md);
    // Likewise share.version 0 takes the KIP-932 APIs away.
    let share_groups = features::share_groups_enabled(&md);
    let keys = api_keys_where(|api| match api {
        ApiKey::ConsumerGroupHeartbeat | ApiKey::ConsumerGroupDescribe => consumer_protocol,
        ApiKey::ShareGroupHeartbeat
        | ApiKey::ShareGroupDescribe
        | ApiKey::ShareFetch
        | ApiKey::ShareAcknowledge
        | ApiKey::DescribeShareGroupOffsets
        | ApiKey::AlterShareGroupOffsets
        | ApiKey::DeleteShareGroupOffsets => share_groups,
        _ => true,
    });
    let resp = ApiVersionsResponse::default().with_api_keys(keys);
    ResponseKind::ApiVersions(features::describe(&md, resp))
}

/// The v0 answer to an ApiVersions version we do not serve: the error plus our ranges.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}
