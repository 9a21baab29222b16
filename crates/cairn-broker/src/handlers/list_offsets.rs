//! ListOffsets (key 2): earliest, latest, by timestamp and max timestamp.
//!
//! Offsets are bounded by what the requester may read: the high watermark, or for
//! `isolation_level=1` (read_committed, v2+) the last stable offset, as in Kafka: "latest"
//! is that bound and a lookup by time never answers an offset at or above it.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::RequestContext;
use crate::errors::{check_leader_epoch, log_error_code};
use crate::replica_manager::Partition;

/// Special timestamps of ListOffsets (KIP-79, KIP-734, KIP-405, KIP-1005).
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;
pub const LATEST_TIERED_TIMESTAMP: i64 = -5;
/// `isolation_level` of a read_committed requester.
const READ_COMMITTED: i8 = 1;

pub fn handle(ctx: RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let broker = &ctx.broker;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1);
                    let Some(partition) =
                        broker.replicas.get(topic.name.as_str(), p.partition_index)
                    else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    match lookup(
                        &partition,
                        p.timestamp,
                        p.current_leader_epoch,
                        request.isolation_level == READ_COMMITTED,
                    ) {
                        Ok((timestamp, offset)) => {
                            let response = response.with_timestamp(timestamp).with_offset(offset);
                            // The field exists from v4; the encoder refuses it below.
                            if ctx.version >= 4 {
                                response.with_leader_epoch(partition.leader_epoch())
                            } else {
                                response
                            }
                        }
                        Err(code) => response.with_error_code(code.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (timestamp, offset) for one partition; (-1, -1) when no record matches.
fn lookup(
    partition: &Partition,
    timestamp: i64,
    current_leader_epoch: i32,
    read_committed: bool,
) -> Result<(i64, i64), ResponseError> {
    if !partition.is_leader() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    check_leader_epoch(current_leader_epoch, partition.leader_epoch())?;
    // The bound on what the requester may read (named `hw` for both isolation levels).
    let hw = if read_committed {
        partition.last_stable_offset()
    } else {
        partition.high_watermark()
    };
    match timestamp {
        LATEST_TIMESTAMP => Ok((-1, hw)),
        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => Ok((-1, partition.log_start_offset())),
        LATEST_TIERED_TIMESTAMP => Ok((-1, -1)),
        MAX_TIMESTAMP => {
            let found = partition
                .with_log(|log| log.max_timestamp_offset())
                .map_err(|e| log_error_code(&e))?;
            Ok(found
                .filter(|t| t.offset < hw)
                .map_or((-1, -1), |t| (t.timestamp, t.offset)))
        }
        t if t < 0 => Err(ResponseError::InvalidRequest),
        t => {
            let found = partition
                .with_log(|log| log.fetch_offset_by_timestamp(t))
                .map_err(|e| log_error_code(&e))?;
            Ok(found
                .filter(|t| t.offset < hw)
                .map_or((-1, -1), |t| (t.timestamp, t.offset)))
        }
    }
}
