//! LeaveGroup (key 13): members leave at once (v3+ batches members by id or instance id,
//! KIP-345).

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::RequestContext;
use crate::group_coordinator::{coordinator_error_code, group_error_code};

pub async fn handle(ctx: RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let broker = &ctx.broker;
    let batched = ctx.version >= 3;
    let members: Vec<(String, Option<String>)> = if batched {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let result = broker
        .group_coordinator
        .leave_group(broker, &request.group_id, members)
        .await;
    match result {
        Err(e) => LeaveGroupResponse::default().with_error_code(coordinator_error_code(&e).code()),
        Ok(results) if !batched => {
            let code = results[0]
                .as_ref()
                .err()
                .map_or(0, |e| group_error_code(e).code());
            LeaveGroupResponse::default().with_error_code(code)
        }
        Ok(results) => LeaveGroupResponse::default().with_members(
            request
                .members
                .into_iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(r.err().map_or(0, |e| group_error_code(&e).code()))
                })
                .collect(),
        ),
    }
}
