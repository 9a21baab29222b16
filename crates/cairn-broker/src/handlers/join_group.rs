//! JoinGroup (key 11): a member joins (or rejoins) a classic group; the answer may wait for
//! the whole group (see `cairn_group::coordinator`).

use cairn_group::{GroupError, JoinRequest};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::group_coordinator::{CoordinatorError, coordinator_error_code};

pub async fn handle(ctx: RequestContext, request: JoinGroupRequest) -> JoinGroupResponse {
    let broker = &ctx.broker;
    let req = JoinRequest {
        group_id: request.group_id.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        // v0 had one timeout for both.
        rebalance_timeout_ms: if ctx.version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: ctx.version >= 4,
    };
    // Below v7 the protocol name is not nullable.
    let name = |n: Option<String>| match n {
        Some(n) => Some(StrBytes::from_string(n)),
        None if ctx.version < 7 => Some(StrBytes::from_static_str("")),
        None => None,
    };
    match broker.group_coordinator.join_group(broker, req).await {
        Ok(j) => JoinGroupResponse::default()
            .with_generation_id(j.generation_id)
            .with_protocol_type(j.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(name(j.protocol_name))
            .with_leader(StrBytes::from_string(j.leader_id))
            // KIP-814's flag exists from v9; older leaders get the members and assign again
            // (their SyncGroup in Stable returns the current assignment).
            .with_skip_assignment(j.skip_assignment && ctx.version >= 9)
            .with_member_id(StrBytes::from_string(j.member_id))
            .with_members(
                j.members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(StrBytes::from_string(m.member_id))
                            .with_group_instance_id(m.group_instance_id.map(StrBytes::from_string))
                            .with_metadata(m.metadata)
                    })
                    .collect(),
            ),
        Err(e) => {
            let member_id = match &e {
                CoordinatorError::Group(GroupError::MemberIdRequired { member_id }) => {
                    StrBytes::from_string(member_id.clone())
                }
                _ => request.member_id,
            };
            tracing::debug!(peer = %ctx.peer, error = %e, "JoinGroup refused");
            JoinGroupResponse::default()
                .with_error_code(coordinator_error_code(&e).code())
                .with_generation_id(-1)
                .with_protocol_name(name(None))
                .with_leader(StrBytes::from_static_str(""))
                .with_member_id(member_id)
        }
    }
}
