//! Heartbeat (key 12): keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to
//! rejoin.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::RequestContext;
use crate::group_coordinator::coordinator_error_code;

pub async fn handle(ctx: RequestContext, request: HeartbeatRequest) -> HeartbeatResponse {
    let broker = &ctx.broker;
    let result = broker
        .group_coordinator
        .heartbeat(
            broker,
            &request.group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        )
        .await;
    match result {
        Ok(()) => HeartbeatResponse::default(),
        Err(e) => HeartbeatResponse::default().with_error_code(coordinator_error_code(&e).code()),
    }
}
