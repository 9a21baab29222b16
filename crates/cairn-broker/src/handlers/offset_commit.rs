//! OffsetCommit (key 8, v2–v8): answered only once the offsets' records are durable in
//! `__consumer_offsets`. v9 (KIP-848 member epochs) is not served yet.

use cairn_group::{CommitRequest, OffsetCommit};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::RequestContext;
use crate::group_coordinator::{coordinator_error_code, group_error_code};

pub async fn handle(ctx: RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let broker = &ctx.broker;
    let state = broker.metadata.state();
    // Partitions of unknown topics are refused here (as Kafka does) and not committed.
    let exists = |topic: &str, partition: i32| {
        state
            .topic(topic)
            .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len())
    };
    let mut offsets = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            if exists(&t.name, p.partition_index) {
                offsets.push(OffsetCommit {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if ctx.version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            }
        }
    }
    let req = CommitRequest {
        group_id: request.group_id.to_string(),
        generation_id: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        retention_time_ms: if ctx.version <= 4 {
            request.retention_time_ms
        } else {
            -1
        },
        offsets,
    };
    let result = broker.group_coordinator.commit_offsets(broker, req).await;
    let mut results = match &result {
        Ok(r) => r
            .iter()
            .map(|r| r.as_ref().err().map_or(0, |e| group_error_code(e).code()))
            .collect(),
        Err(_) => Vec::new(),
    }
    .into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if !exists(&t.name, p.partition_index) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else {
                        match &result {
                            Ok(_) => results.next().expect("one result per committed partition"),
                            Err(e) => coordinator_error_code(e).code(),
                        }
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
