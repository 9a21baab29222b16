//! OffsetForLeaderEpoch (key 23): where a leader epoch ends in the leader's log
//! (KIP-101, KIP-279). Followers ask it after a leader change to find how much of their
//! log to truncate; consumers (KIP-320, librdkafka after a leader change) ask it to detect
//! a log truncated under them.
//!
//! For `leader_epoch` E the answer is the largest epoch ≤ E that the leader knows and
//! where it ends: the start offset of the next epoch, or the log end offset when it is
//! the latest. UNDEFINED (-1, -1) when the leader knows no epoch ≤ E or E is later than
//! its latest. Only the leader answers (NOT_LEADER_OR_FOLLOWER elsewhere), after checking
//! `current_leader_epoch` like Fetch does (FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::RequestContext;
use crate::errors::check_leader_epoch;

pub fn handle(
    ctx: RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let broker = &ctx.broker;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let Some(partition) = broker.replicas.get(topic.topic.as_str(), p.partition)
                    else {
                        return answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if !partition.is_leader() {
                        return answer.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    if let Err(code) =
                        check_leader_epoch(p.current_leader_epoch, partition.leader_epoch())
                    {
                        return answer.with_error_code(code.code());
                    }
                    match partition.with_log(|log| log.end_offset_for_epoch(p.leader_epoch)) {
                        Some((epoch, end)) => answer.with_leader_epoch(epoch).with_end_offset(end),
                        None => answer,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
