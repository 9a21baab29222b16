//! ListPartitionReassignments (key 46, KIP-455): the partitions with a reassignment in
//! progress, with their replicas (target first, then the replicas being removed) and the
//! replicas being added and removed. Any broker answers, from its applied metadata after
//! catching up with the quorum leader's (so a reassignment altered through another broker
//! a moment ago is listed). Topics or partitions that do not exist or have no reassignment
//! in progress are left out, as in Kafka.

use std::time::{Duration, Instant};

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

/// How long a listing waits to catch up with the quorum leader's metadata.
const CATCH_UP_MAX: Duration = Duration::from_secs(2);

fn ids(brokers: &[i32]) -> Vec<BrokerId> {
    brokers.iter().copied().map(BrokerId).collect()
}

pub async fn handle(
    ctx: RequestContext,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let b = ctx.broker.clone();
    let state = super::blocking(move || {
        let quorum = b.metadata.quorum();
        let deadline = Instant::now() + CATCH_UP_MAX;
        match quorum.leader_version(deadline) {
            Some(version) => quorum.wait_for_version(version, deadline),
            None => b.metadata.state(),
        }
    })
    .await;
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.name.as_str() == topic && t.partition_indexes.contains(&partition)),
    };
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for (topic, p) in cairn_meta::controller::reassignments_in_progress(&state) {
        if !wanted(&topic.name, p.partition) {
            continue;
        }
        let ongoing = OngoingPartitionReassignment::default()
            .with_partition_index(p.partition)
            .with_replicas(ids(&p.replicas))
            .with_adding_replicas(ids(&p.adding_replicas))
            .with_removing_replicas(ids(&p.removing_replicas));
        match topics.last_mut() {
            Some(t) if t.name.as_str() == topic.name => t.partitions.push(ongoing),
            _ => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(StrBytes::from_string(topic.name.clone()).into())
                    .with_partitions(vec![ongoing]),
            ),
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
