//! SyncGroup (key 14): the leader hands in the assignment, every member gets its share.

use cairn_group::SyncRequest;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::group_coordinator::coordinator_error_code;

pub async fn handle(ctx: RequestContext, request: SyncGroupRequest) -> SyncGroupResponse {
    let broker = &ctx.broker;
    let req = SyncRequest {
        group_id: request.group_id.to_string(),
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|s| s.to_string()),
        protocol_type: request.protocol_type.map(|s| s.to_string()),
        protocol_name: request.protocol_name.map(|s| s.to_string()),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    match broker.group_coordinator.sync_group(broker, req).await {
        Ok(s) => SyncGroupResponse::default()
            .with_protocol_type(s.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(s.protocol_name.map(StrBytes::from_string))
            .with_assignment(s.assignment),
        Err(e) => {
            tracing::debug!(peer = %ctx.peer, error = %e, "SyncGroup refused");
            SyncGroupResponse::default().with_error_code(coordinator_error_code(&e).code())
        }
    }
}
