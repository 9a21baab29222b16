//! DescribeProducers (key 61, v0): the producers a partition's leader knows
//! (`kafka-transactions.sh describe-producers`, admin clients' `describeProducers`), from
//! the partition's producer state: producer id and epoch, last sequence number, last
//! batch timestamp, the coordinator epoch of its last marker and, if it has a transaction
//! open on the partition, that transaction's first offset (-1 otherwise). Only the leader
//! answers (NOT_LEADER_OR_FOLLOWER elsewhere), as in Kafka; an unknown partition is
//! UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::RequestContext;

pub fn handle(ctx: RequestContext, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let broker = &ctx.broker;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let response = PartitionResponse::default().with_partition_index(index);
                    let Some(partition) = broker.replicas.get(topic.name.as_str(), index) else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if !partition.is_leader() {
                        return response.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let producers = partition.with_log(|log| {
                        log.producer_state()
                            .producers()
                            .map(|(id, e)| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(id))
                                    .with_producer_epoch(i32::from(e.producer_epoch))
                                    .with_last_sequence(e.last_seq().unwrap_or(-1))
                                    .with_last_timestamp(e.last_timestamp)
                                    .with_coordinator_epoch(e.coordinator_epoch)
                                    .with_current_txn_start_offset(
                                        e.current_txn_first_offset.unwrap_or(-1),
                                    )
                            })
                            .collect()
                    });
                    response.with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
