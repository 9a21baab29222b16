//! ElectLeaders (key 43, KIP-183 / KIP-460): move partition leadership back to each
//! partition's preferred replica (the first of its replicas), as
//! `kafka-leader-election.sh --election-type preferred` and the admin clients'
//! `elect_leaders` do. Any broker answers: the partitions of one request are decided by
//! `cairn_meta::controller::elect_preferred_leader` against one state and committed in
//! one batch through the metadata quorum; the answer comes once the batch is committed
//! and applied on this broker (or REQUEST_TIMED_OUT / NOT_CONTROLLER for every partition
//! elected when it did not commit within `timeout_ms`, at most 15 s).
//!
//! Per partition, as in Kafka's controller: NONE (elected), ELECTION_NOT_NEEDED (the
//! preferred replica leads already), PREFERRED_LEADER_NOT_AVAILABLE (it is fenced or out
//! of the ISR), UNKNOWN_TOPIC_OR_PARTITION. With `topic_partitions` null every partition
//! is elected and, as in Kafka, those that needed no election are left out of the answer.
//!
//! Unclean election (`election_type` 1) is not implemented: Cairn never makes a replica
//! outside the ISR and ELR leader (see `cairn_meta::controller`). Such a request gets
//! ELECTION_NOT_NEEDED for partitions with a leader and ELIGIBLE_LEADERS_NOT_AVAILABLE,
//! saying so, for those without; an unknown election type is INVALID_REQUEST.

use std::collections::BTreeSet;

use cairn_meta::ClusterState;
use cairn_meta::controller::{self, ElectionError};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

/// Kafka's `ElectionType`.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

/// The Kafka error for a partition that elected nobody.
pub fn election_error_code(e: &ElectionError) -> ResponseError {
    match e {
        ElectionError::UnknownTopicOrPartition { .. } => ResponseError::UnknownTopicOrPartition,
        ElectionError::NotNeeded { .. } => ResponseError::ElectionNotNeeded,
        ElectionError::PreferredNotAvailable { .. } => ResponseError::PreferredLeaderNotAvailable,
    }
}

type Outcome = Result<(), (ResponseError, String)>;

/// Every partition the request names (each once, in request order), or every partition
/// of every topic when it names none.
fn requested(state: &ClusterState, request: &ElectLeadersRequest) -> Vec<(String, i32)> {
    match &request.topic_partitions {
        Some(topics) => {
            let mut seen = BTreeSet::new();
            topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.to_string(), p)))
                .filter(|item| seen.insert(item.clone()))
                .collect()
        }
        None => state
            .topics()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
            .collect(),
    }
}

/// An unclean election's answer for one partition (not implemented; see the module doc).
fn unclean(state: &ClusterState, topic: &str, partition: i32) -> Outcome {
    match state.topic(topic).and_then(|t| t.partition(partition)) {
        None => Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{topic}' has no partition {partition}"),
        )),
        Some(p) if p.leader >= 0 => Err((
            ResponseError::ElectionNotNeeded,
            format!("{topic}-{partition} has a leader ({})", p.leader),
        )),
        Some(_) => Err((
            ResponseError::EligibleLeadersNotAvailable,
            format!(
                "{topic}-{partition} has no leader and Cairn does not elect a replica outside its ISR and ELR (unclean leader election is not supported)"
            ),
        )),
    }
}

pub async fn handle(ctx: RequestContext, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let election_type = if ctx.version == 0 {
        PREFERRED
    } else {
        request.election_type
    };
    let all = request.topic_partitions.is_none();
    if !matches!(election_type, PREFERRED | UNCLEAN) {
        let state = ctx.broker.metadata.state();
        let message = format!("election type {election_type} is not 0 (preferred) or 1 (unclean)");
        let outcomes = requested(&state, &request)
            .into_iter()
            .map(|item| (item, Err((ResponseError::InvalidRequest, message.clone()))))
            .collect();
        return response(outcomes, all).with_error_code(ResponseError::InvalidRequest.code());
    }
    if election_type == UNCLEAN {
        let state = ctx.broker.metadata.state();
        let outcomes = requested(&state, &request)
            .into_iter()
            .map(|(topic, partition)| {
                let outcome = unclean(&state, &topic, partition);
                ((topic, partition), outcome)
            })
            .collect();
        return response(outcomes, all);
    }
    let b = ctx.broker.clone();
    let timeout_ms = i64::from(request.timeout_ms);
    let outcomes = super::blocking(move || {
        let mut outcomes: Vec<((String, i32), Outcome)> = Vec::new();
        let committed = b.metadata.propose_within(timeout_ms, |state| {
            let mut records = Vec::new();
            for (topic, partition) in requested(state, &request) {
                let outcome = match controller::elect_preferred_leader(state, &topic, partition)
                {
                    Ok(decided) => {
                        records.extend(decided);
                        Ok(())
                    }
                    Err(e) => Err((election_error_code(&e), e.to_string())),
                };
                outcomes.push(((topic, partition), outcome));
            }
            Ok::<_, std::convert::Infallible>(records)
        });
        match committed {
            Ok(Ok(state)) => {
                for ((topic, partition), outcome) in &outcomes {
                    if outcome.is_ok() {
                        tracing::info!(%topic, partition, "preferred leader elected (ElectLeaders)");
                    }
                }
                if let Err(e) = b.replicas.apply_metadata(&state, crate::now_ms()) {
                    tracing::error!("applying committed metadata to hosted partitions: {e}");
                }
            }
            Ok(Err(never)) => match never {},
            Err(e) => {
                let code = crate::errors::metadata_error_code(&e);
                for (_, outcome) in outcomes.iter_mut().filter(|(_, o)| o.is_ok()) {
                    *outcome = Err((code, e.to_string()));
                }
            }
        }
        outcomes
    })
    .await;
    response(outcomes, all)
}

/// The response for `outcomes`, grouped by topic in order; with `all` (the request named
/// no partitions) those that needed no election are left out.
fn response(outcomes: Vec<((String, i32), Outcome)>, all: bool) -> ElectLeadersResponse {
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for ((topic, partition), outcome) in outcomes {
        let result = match outcome {
            Ok(()) => PartitionResult::default().with_partition_id(partition),
            Err((ResponseError::ElectionNotNeeded, _)) if all => continue,
            Err((code, message)) => PartitionResult::default()
                .with_partition_id(partition)
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message))),
        };
        match results.last_mut() {
            Some(t) if t.topic.as_str() == topic => t.partition_result.push(result),
            _ => results.push(
                ReplicaElectionResult::default()
                    .with_topic(StrBytes::from_string(topic).into())
                    .with_partition_result(vec![result]),
            ),
        }
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}
