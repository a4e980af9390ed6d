use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use fjord_controller::metadata::acls::ResourceType;

use super::authz;
use super::context::RequestContext;

pub fn describe(ctx: &RequestContext, req: DescribeClusterRequest) -> ResponseKind {
    let md = ctx.broker.metadata();
    let mut resp = DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(StrBytes::from_string(
            md.cluster_id.clone().unwrap_or_default(),
        ))
        .with_controller_id(BrokerId(ctx.broker.controller_id_for_clients(&md)));
    if req.endpoint_type == 2 {
        // Controllers are not exposed on the broker listener, as in Kafka.
        return ResponseKind::DescribeCluster(
            resp.with_error_code(ResponseError::MismatchedEndpointType.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "this endpoint serves brokers; controllers are reached over the rpc listener",
                ))),
        );
    }
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations =
            authz::Check::new(ctx).operations(ResourceType::Cluster, authz::CLUSTER_NAME);
    }
    resp.brokers = md
        .brokers
        .values()
        .filter(|b| req.include_fenced_brokers || !b.fenced)
        .filter_map(|b| {
            let l = b.listener(&ctx.listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(l.host.clone()))
                    .with_port(i32::from(l.port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
                    .with_is_fenced(b.fenced && ctx.version() >= 2),
            )
        })
        .collect();
    ResponseKind::DescribeCluster(resp)
}
