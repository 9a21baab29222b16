//! DeleteRecords (key 21): move a partition's log start offset forward.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::RequestContext;
use crate::errors::log_error_code;

/// `offset` value meaning "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub async fn handle(ctx: RequestContext, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let broker = ctx.broker.clone();
    let topics = super::blocking(move || {
        request
            .topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let result = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1);
                        let Some(partition) =
                            broker.replicas.get(topic.name.as_str(), p.partition_index)
                        else {
                            return result
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        };
                        if !partition.is_leader() {
                            return result
                                .with_error_code(ResponseError::NotLeaderOrFollower.code());
                        }
                        let hw = partition.high_watermark();
                        let offset = if p.offset == HIGH_WATERMARK {
                            hw
                        } else {
                            p.offset
                        };
                        if offset < 0 || offset > hw {
                            return result.with_error_code(ResponseError::OffsetOutOfRange.code());
                        }
                        match partition.with_log(|log| log.delete_records(offset)) {
                            Ok(low) => result.with_low_watermark(low),
                            Err(e) => result.with_error_code(log_error_code(&e).code()),
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect()
    })
    .await;
    DeleteRecordsResponse::default().with_topics(topics)
}
