//! TxnOffsetCommit (key 28, v0–v4; KIP-98, v3 adds the consumer's member fields, KIP-447):
//! offsets a transactional producer commits for a consumer group inside its transaction
//! (`sendOffsetsToTransaction`). They are written to the group's `__consumer_offsets`
//! partition as one transactional batch of the producer and answered once durable, like
//! OffsetCommit, but stay pending — invisible to OffsetFetch — until the transaction's
//! COMMIT or ABORT marker reaches that partition
//! ([`GroupCoordinator::complete_txn`](crate::group_coordinator::GroupCoordinator::complete_txn)).
//!
//! Errors as Kafka: partitions of unknown topics UNKNOWN_TOPIC_OR_PARTITION (the others are
//! committed); NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS (COORDINATOR_NOT_AVAILABLE
//! before v2, whose clients do not retry the former); with member fields (v3), the group's
//! member and generation checks; OFFSET_METADATA_TOO_LARGE per partition;
//! INVALID_PRODUCER_EPOCH when the producer has been fenced in the offsets partition.
//!
//! v4 differs from v3 only in allowing TRANSACTION_ABORTABLE, which Kafka answers when its
//! KIP-890 partition verification fails; we do not verify, so v4 is served as v3. v5
//! (transactions v2: the offsets partition is added to the transaction implicitly) is not.

use cairn_group::{OffsetCommit, TxnCommitRequest};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::RequestContext;
use crate::group_coordinator::{coordinator_error_code, group_error_code};

pub async fn handle(
    ctx: RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
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
                    leader_epoch: if ctx.version >= 2 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            }
        }
    }
    // Kafka asks the coordinator only when some partition is known.
    let result = if offsets.is_empty() {
        Ok(Vec::new())
    } else {
        let v3 = ctx.version >= 3;
        let req = TxnCommitRequest {
            group_id: request.group_id.to_string(),
            producer_id: request.producer_id.0,
            producer_epoch: request.producer_epoch,
            generation_id: if v3 { request.generation_id } else { -1 },
            member_id: if v3 {
                request.member_id.to_string()
            } else {
                String::new()
            },
            group_instance_id: if v3 {
                request.group_instance_id.as_ref().map(|s| s.to_string())
            } else {
                None
            },
            offsets,
        };
        broker
            .group_coordinator
            .txn_commit_offsets(broker, req)
            .await
    };
    let retriable_before_v2 = |code: ResponseError| {
        // KAFKA-7296: producers before 2.0 (v0, v1) treat COORDINATOR_LOAD_IN_PROGRESS as
        // fatal; Kafka answers them COORDINATOR_NOT_AVAILABLE, which they retry.
        if ctx.version < 2 && code == ResponseError::CoordinatorLoadInProgress {
            ResponseError::CoordinatorNotAvailable
        } else {
            code
        }
    };
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
                            Err(e) => retriable_before_v2(coordinator_error_code(e)).code(),
                        }
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
