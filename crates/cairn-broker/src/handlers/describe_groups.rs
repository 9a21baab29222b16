//! DescribeGroups (key 15): state, protocol and members (with metadata and assignment
//! when Stable) of each group.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::group_coordinator::coordinator_error_code;

/// "Authorized operations were not requested."
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub async fn handle(ctx: RequestContext, request: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let broker = &ctx.broker;
    let mut groups = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let described = broker
            .group_coordinator
            .describe_group(broker, &group_id)
            .await;
        let base = DescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_protocol_type(StrBytes::from_static_str(""))
            .with_protocol_data(StrBytes::from_static_str(""))
            .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
        groups.push(match described {
            Ok(Some(d)) => base
                .with_group_state(StrBytes::from_static_str(d.state.as_str()))
                .with_protocol_type(StrBytes::from_string(d.protocol_type))
                .with_protocol_data(StrBytes::from_string(d.protocol_name))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_group_instance_id(
                                    m.group_instance_id.map(StrBytes::from_string),
                                )
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
            // Kafka describes an unknown group as Dead; v6 (KIP-1043) says so with an error.
            Ok(None) if ctx.version >= 6 => base
                .with_group_state(StrBytes::from_static_str("Dead"))
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_error_message(Some(StrBytes::from_string(format!(
                    "group '{}' does not exist",
                    &*group_id
                )))),
            Ok(None) => base.with_group_state(StrBytes::from_static_str("Dead")),
            Err(e) => base
                .with_group_state(StrBytes::from_static_str(""))
                .with_error_code(coordinator_error_code(&e).code()),
        });
    }
    DescribeGroupsResponse::default().with_groups(groups)
}
