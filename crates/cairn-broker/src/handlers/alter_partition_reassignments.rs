//! AlterPartitionReassignments (key 45, KIP-455): start, replace or cancel moving
//! partitions to new replicas. Any broker answers: every partition of the request is
//! decided by `cairn_meta::controller::alter_partition_reassignment` against one state and
//! committed in one batch through the metadata quorum. New replicas are opened by their
//! brokers when they apply the record and follow the leader; the active controller
//! completes the reassignment once they are in the ISR (see [`crate::controller`]), and
//! brokers no longer among the replicas then delete their copy.
//!
//! Errors per partition: UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT (bad
//! target, or a move that would leave no in-sync leader), NO_REASSIGNMENT_IN_PROGRESS (a
//! cancellation of none), INVALID_REPLICATION_FACTOR (v1 with
//! `allow_replication_factor_change` false and a target of another size, KIP-860),
//! INVALID_REQUEST (a partition named twice), and REQUEST_TIMED_OUT / NOT_CONTROLLER when
//! the batch did not commit within the request's `timeout_ms` (at most the broker's own
//! 15 s commit timeout).

use std::collections::BTreeSet;

use cairn_meta::ClusterState;
use cairn_meta::controller::{self, ReassignmentError};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

/// The Kafka error for a refused reassignment.
pub fn reassignment_error_code(e: &ReassignmentError) -> ResponseError {
    match e {
        ReassignmentError::UnknownTopicId { .. } | ReassignmentError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        ReassignmentError::InvalidReplicas { .. }
        | ReassignmentError::WouldLoseLeadership { .. } => ResponseError::InvalidReplicaAssignment,
        ReassignmentError::NoReassignmentInProgress { .. } => {
            ResponseError::NoReassignmentInProgress
        }
    }
}

type Outcome = Result<(), (ResponseError, String)>;

/// One partition of the request: topic, partition, target (`None`: cancel).
struct Item {
    topic: String,
    partition: i32,
    target: Option<Vec<i32>>,
}

/// Decides one partition against `state` (which already holds the records decided for the
/// request's earlier partitions).
fn decide(
    state: &ClusterState,
    item: &Item,
    allow_replication_factor_change: bool,
) -> Result<Vec<cairn_meta::MetadataRecord>, (ResponseError, String)> {
    let refused = |e: ReassignmentError| (reassignment_error_code(&e), e.to_string());
    let topic = state.topic(&item.topic).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{}' does not exist", item.topic),
        )
    })?;
    if let (Some(target), Some(p)) = (&item.target, topic.partition(item.partition)) {
        let current = p.original_replicas().len();
        if !allow_replication_factor_change && !target.is_empty() && target.len() != current {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!(
                    "the target {target:?} has {} replicas and {}-{} has {current}, but the request does not allow a replication factor change",
                    target.len(),
                    item.topic,
                    item.partition
                ),
            ));
        }
    }
    controller::alter_partition_reassignment(
        state,
        topic.topic_id,
        item.partition,
        item.target.clone(),
    )
    .map_err(refused)
}

pub async fn handle(
    ctx: RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = ctx.version < 1 || request.allow_replication_factor_change;
    let items: Vec<Item> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Item {
                topic: t.name.to_string(),
                partition: p.partition_index,
                target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            })
        })
        .collect();
    let b = ctx.broker.clone();
    let timeout_ms = i64::from(request.timeout_ms);
    let (items, outcomes) = super::blocking(move || {
        let mut outcomes: Vec<Outcome> = vec![Ok(()); items.len()];
        let mut seen = BTreeSet::new();
        let committed = b.metadata.propose_within(timeout_ms, |state| {
            let mut working = state.clone();
            let mut records = Vec::new();
            for (item, outcome) in items.iter().zip(outcomes.iter_mut()) {
                if !seen.insert((item.topic.clone(), item.partition)) {
                    *outcome = Err((
                        ResponseError::InvalidRequest,
                        format!(
                            "{}-{} is named more than once",
                            item.topic, item.partition
                        ),
                    ));
                    continue;
                }
                match decide(&working, item, allow_rf_change) {
                    Ok(decided) => {
                        for r in &decided {
                            working.apply(r);
                        }
                        records.extend(decided);
                    }
                    Err(e) => *outcome = Err(e),
                }
            }
            Ok::<_, std::convert::Infallible>(records)
        });
        match committed {
            Ok(Ok(state)) => {
                for (item, outcome) in items.iter().zip(&outcomes) {
                    if outcome.is_ok() {
                        tracing::info!(topic = %item.topic, partition = item.partition, target = ?item.target, "partition reassignment altered");
                    }
                }
                if let Err(e) = b.replicas.apply_metadata(&state, crate::now_ms()) {
                    tracing::error!("applying committed metadata to hosted partitions: {e}");
                }
            }
            Ok(Err(never)) => match never {},
            Err(e) => {
                let code = crate::errors::metadata_error_code(&e);
                for outcome in outcomes.iter_mut().filter(|o| o.is_ok()) {
                    *outcome = Err((code, e.to_string()));
                }
            }
        }
        (items, outcomes)
    })
    .await;
    let mut responses: Vec<ReassignableTopicResponse> = Vec::new();
    for (item, outcome) in items.into_iter().zip(outcomes) {
        let partition = match outcome {
            Ok(()) => ReassignablePartitionResponse::default().with_partition_index(item.partition),
            Err((code, message)) => ReassignablePartitionResponse::default()
                .with_partition_index(item.partition)
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        };
        match responses.last_mut() {
            Some(t) if t.name.as_str() == item.topic => t.partitions.push(partition),
            _ => responses.push(
                ReassignableTopicResponse::default()
                    .with_name(StrBytes::from_string(item.topic).into())
                    .with_partitions(vec![partition]),
            ),
        }
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(responses)
}
