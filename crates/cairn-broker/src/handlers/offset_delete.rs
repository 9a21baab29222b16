//! OffsetDelete (key 47): removes a group's committed offsets for partitions it does not
//! consume (GROUP_SUBSCRIBED_TO_TOPIC otherwise; any partition when the group is Empty).

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::RequestContext;
use crate::group_coordinator::{coordinator_error_code, group_error_code};

pub async fn handle(ctx: RequestContext, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let broker = &ctx.broker;
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let results = match broker
        .group_coordinator
        .delete_offsets(broker, &request.group_id, partitions)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return OffsetDeleteResponse::default()
                .with_error_code(coordinator_error_code(&e).code());
        }
    };
    let mut results = results.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = results.next().expect("one result per partition");
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(r.err().map_or(0, |e| group_error_code(&e).code()))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
