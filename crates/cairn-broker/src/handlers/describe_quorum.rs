//! DescribeQuorum (key 55): the metadata quorum (KIP-595/KIP-853), as the partition
//! `__cluster_metadata`-0 that Kafka's KRaft quorum is.
//!
//! Every broker answers, not only the quorum leader (Kafka's controllers answer
//! NOT_LEADER_OR_FOLLOWER unless they lead; its brokers forward to the active
//! controller). The answer is put together here from each voter's own
//! `RaftService.Status`, asked over the quorum's gRPC clients with a short timeout:
//!
//! - `leader_id`: the quorum leader (-1 if none is known), `leader_epoch`: its Raft term,
//!   `high_watermark`: its commit index — the leader's own status when it answers, else
//!   this node's.
//! - `current_voters`: every voter with `log_end_offset` = its applied Raft index, or -1
//!   when it did not answer in time. `last_fetch_timestamp` is -1 (not tracked);
//!   `last_caught_up_timestamp` is now for the leader, as in Kafka, and -1 for the
//!   others.
//! - `observers`: the brokers outside the voters that follow the log (KRaft's observers)
//!   and fetched from the leader in the last five minutes, as the leader reports them:
//!   `log_end_offset` = the observer's applied index when it last fetched,
//!   `last_fetch_timestamp` = when, and `last_caught_up_timestamp` = the same when it had
//!   applied up to the commit index then, else -1. When the leader does not answer, the
//!   observers this node served (none on an observer).
//! - v2 `nodes`: each voter with one `CONTROLLER` listener, its `--voters` address (none
//!   for a one-voter quorum, which has no controller listener).

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

/// The metadata log's topic name in Kafka; the quorum is its partition 0.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// How long a voter may take to report its status before it counts as unreachable.
pub const VOTER_STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// Name of the listener voters talk Raft on, as in Kafka.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

pub async fn handle(ctx: RequestContext, request: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let asks_for_metadata_partition = matches!(
        request.topics.as_slice(),
        [topic] if topic.topic_name.0.as_str() == METADATA_TOPIC
            && matches!(topic.partitions.as_slice(), [p] if p.partition_index == 0)
    );
    if !asks_for_metadata_partition {
        let error = ResponseError::UnknownTopicOrPartition;
        let mut response = DescribeQuorumResponse::default().with_error_code(error.code());
        if ctx.version >= 2 {
            response.error_message = Some(StrBytes::from_static_str(
                "DescribeQuorum takes exactly the partition __cluster_metadata-0",
            ));
        }
        return response;
    }

    let quorum = ctx.broker.metadata.quorum();
    let local = quorum.status();
    let peers = quorum.peer_statuses(VOTER_STATUS_TIMEOUT).await;
    // The leader knows the commit index first; fall back on this node's view.
    let view = match local.leader_id {
        Some(leader) if leader != local.node_id => peers
            .iter()
            .find_map(|(id, s)| (*id == leader).then_some(s.as_ref()).flatten())
            .filter(|s| s.leader_id == Some(leader))
            .unwrap_or(&local),
        _ => &local,
    };
    let leader_id = view.leader_id.map_or(-1, |id| id as i32);
    let now = crate::now_ms();
    let mut voters = local.voters.clone();
    voters.sort_unstable();
    let current_voters = voters
        .iter()
        .map(|&voter| {
            let applied = if voter == local.node_id {
                Some(local.applied_index)
            } else {
                peers
                    .iter()
                    .find(|(id, _)| *id == voter)
                    .and_then(|(_, s)| s.as_ref())
                    .map(|s| s.applied_index)
            };
            ReplicaState::default()
                .with_replica_id(BrokerId(voter as i32))
                .with_log_end_offset(applied.map_or(-1, |a| a as i64))
                .with_last_fetch_timestamp(-1)
                .with_last_caught_up_timestamp(if voter as i32 == leader_id { now } else { -1 })
        })
        .collect();
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_error_code(0)
        .with_leader_id(BrokerId(leader_id))
        .with_leader_epoch(i32::try_from(view.term).unwrap_or(i32::MAX))
        .with_high_watermark(view.commit_index as i64)
        .with_current_voters(current_voters)
        .with_observers(observers(view));
    let mut response = DescribeQuorumResponse::default()
        .with_error_code(0)
        .with_topics(vec![
            TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
                .with_partitions(vec![partition]),
        ]);
    if ctx.version >= 2 {
        response.nodes = voters
            .iter()
            .map(|&voter| {
                let listeners = ctx
                    .broker
                    .config
                    .voters
                    .get(&(voter as i32))
                    .and_then(|addr| listener(addr))
                    .into_iter()
                    .collect();
                Node::default()
                    .with_node_id(BrokerId(voter as i32))
                    .with_listeners(listeners)
            })
            .collect();
    }
    response
}

/// The observers `view` (the leader's status, when it answered) reports.
fn observers(view: &cairn_meta::quorum::QuorumStatus) -> Vec<ReplicaState> {
    let mut observers = view.observers.clone();
    observers.sort_by_key(|o| o.node_id);
    observers
        .iter()
        .map(|o| {
            let at = i64::try_from(o.last_fetch_ms).unwrap_or(i64::MAX);
            ReplicaState::default()
                .with_replica_id(BrokerId(o.node_id as i32))
                .with_log_end_offset(o.fetched_index as i64)
                .with_last_fetch_timestamp(at)
                .with_last_caught_up_timestamp(if o.fetched_index >= view.commit_index {
                    at
                } else {
                    -1
                })
        })
        .collect()
}

/// The `CONTROLLER` listener at `host:port` (`[v6]:port` too); `None` if unparsable.
fn listener(addr: &str) -> Option<Listener> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(
        Listener::default()
            .with_name(StrBytes::from_static_str(CONTROLLER_LISTENER))
            .with_host(StrBytes::from_string(host.to_owned()))
            .with_port(port.parse().ok()?),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_addresses() {
        let l = listener("127.0.0.1:9093").unwrap();
        assert_eq!((l.host.as_str(), l.port), ("127.0.0.1", 9093));
        assert_eq!(l.name.as_str(), "CONTROLLER");
        let l = listener("[::1]:19093").unwrap();
        assert_eq!((l.host.as_str(), l.port), ("::1", 19093));
        assert!(listener("nohost").is_none());
        assert!(listener("h:notaport").is_none());
    }
}
