//! DescribeCluster (key 60): cluster id, controller and brokers.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

pub fn handle(ctx: RequestContext, request: DescribeClusterRequest) -> DescribeClusterResponse {
    let state = ctx.broker.metadata.state();
    let brokers = state
        .unfenced_brokers()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.broker_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port as i32)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(StrBytes::from_string(
            state.cluster_id().unwrap_or_default().to_owned(),
        ))
        .with_controller_id(BrokerId(super::metadata::controller_id(&ctx.broker)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
