//! ListConfigResources (KIP-1142; v0 was ListClientMetricsResources): which resources
//! have configs that DescribeConfigs can describe.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{
    ListConfigResourcesRequest, ListConfigResourcesResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::authz::{self, Op};
use super::context::RequestContext;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;

pub fn list(ctx: &RequestContext, req: ListConfigResourcesRequest) -> ResponseKind {
    let mut resp = ListConfigResourcesResponse::default();
    if !authz::Check::new(ctx).cluster(Op::DescribeConfigs) {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return ResponseKind::ListConfigResources(resp);
    }
    // v0 lists client-metrics subscriptions only; v1 with no types means every type.
    let types: Vec<i8> = if ctx.version() == 0 {
        vec![CLIENT_METRICS]
    } else if req.resource_types.is_empty() {
        vec![TOPIC, BROKER, CLIENT_METRICS, GROUP]
    } else {
        req.resource_types
    };
    // Broker loggers are not config resources one can list.
    if types
        .iter()
        .any(|t| ![TOPIC, BROKER, CLIENT_METRICS, GROUP].contains(t))
    {
        resp.error_code = ResponseError::InvalidRequest.code();
        return ResponseKind::ListConfigResources(resp);
    }
    let md = ctx.broker.metadata();
    let mut out = Vec::new();
    for t in types {
        match t {
            TOPIC => out.extend(md.topics.keys().map(|n| resource(n.clone(), TOPIC))),
            BROKER => out.extend(md.brokers.keys().map(|id| resource(id.to_string(), BROKER))),
            // Groups whose configs were set (a group config may precede its group).
            GROUP => out.extend(md.group_configs.keys().map(|g| resource(g.clone(), GROUP))),
            // Fjord holds no client-metrics subscriptions (KIP-714): none to list.
            _ => {}
        }
    }
    resp.config_resources = out;
    ResponseKind::ListConfigResources(resp)
}

fn resource(name: String, resource_type: i8) -> ConfigResource {
    ConfigResource::default()
        .with_resource_name(StrBytes::from_string(name))
        .with_resource_type(resource_type)
}
