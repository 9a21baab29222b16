//! DeleteGroups (key 42): removes Empty groups with their committed offsets and the
//! offsets pending in open transactions (tombstones in `__consumer_offsets`); a group with
//! members is NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::RequestContext;
use crate::group_coordinator::coordinator_error_code;

pub async fn handle(ctx: RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let broker = &ctx.broker;
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let code = match broker
            .group_coordinator
            .delete_group(broker, &group_id)
            .await
        {
            Ok(()) => 0,
            Err(e) => coordinator_error_code(&e).code(),
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
