//! FindCoordinator (key 10): which broker coordinates a group (v0–v6; v4+ batches keys).
//!
//! The first request for a group creates `__consumer_offsets` (compacted, like Kafka's
//! auto-creation; waiting at most `IMPLICIT_CREATE_WAIT`, then COORDINATOR_NOT_AVAILABLE
//! while the creation goes on) with `offsets.topic.num.partitions` partitions and Kafka's
//! `offsets.topic.replication.factor` of 3, capped by the live (unfenced) brokers. The
//! coordinator is the current leader of the group's partition as the applied metadata
//! says, answered with that broker's registered host and port; a partition without a
//! leader (every replica fenced) is COORDINATOR_NOT_AVAILABLE, which clients retry. A
//! client sent to a broker that has lost the leadership since gets NOT_COORDINATOR from it
//! and asks again.
//!
//! Transaction coordinators (key type 1) follow the same rules with `__transaction_state`
//! (`transaction.state.log.num.partitions`, default 50) and the transactional id's
//! partition ([`crate::txn_coordinator`]). Share groups (key type 2) are not served:
//! INVALID_REQUEST.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use super::topics::create_topic_implicitly;
use crate::group_coordinator::OFFSETS_TOPIC;
use crate::txn_coordinator::TXN_TOPIC;

/// FindCoordinator key types.
/// FindCoordinator key type of a transactional id.
const KEY_TYPE_TRANSACTION: i8 = 1;
const KEY_TYPE_GROUP: i8 = 0;

pub async fn handle(
    ctx: RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys = if ctx.version >= 4 {
        request.coordinator_keys
    } else {
        vec![request.key]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        coordinators.push(find(&ctx, request.key_type, key).await);
    }
    if ctx.version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().expect("one key below v4");
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_error_message(c.error_message)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

async fn find(ctx: &RequestContext, key_type: i8, key: StrBytes) -> Coordinator {
    let refused = |code: ResponseError, msg: String| {
        Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::from_static_str(""))
            .with_port(-1)
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(msg)))
    };
    let broker = &ctx.broker;
    let (topic, partitions) = match key_type {
        KEY_TYPE_GROUP => (OFFSETS_TOPIC, broker.config.offsets_topic_num_partitions),
        KEY_TYPE_TRANSACTION => (TXN_TOPIC, broker.config.transaction_state_num_partitions),
        _ => {
            return refused(
                ResponseError::InvalidRequest,
                format!(
                    "coordinator key type {key_type} (share groups) is not supported by this broker yet"
                ),
            );
        }
    };
    if key_type == KEY_TYPE_TRANSACTION && key.is_empty() {
        return refused(
            ResponseError::InvalidRequest,
            "an empty transactional id has no coordinator".to_owned(),
        );
    }
    if broker.metadata.state().topic(topic).is_none() {
        let configs = BTreeMap::from([
            ("cleanup.policy".to_owned(), "compact".to_owned()),
            ("segment.bytes".to_owned(), (100 * 1024 * 1024).to_string()),
        ]);
        // `offsets.topic.replication.factor` / `transaction.state.log.replication.factor`
        // (Kafka: 3), capped by the live brokers.
        let replication_factor =
            cairn_meta::controller::default_replication_factor(&broker.metadata.state());
        match create_topic_implicitly(broker, topic, partitions, replication_factor, configs).await
        {
            Some(Ok(_) | Err((ResponseError::TopicAlreadyExists, _))) => {}
            Some(Err((code, msg))) => {
                tracing::warn!(?code, "creating {topic} failed: {msg}");
                return refused(
                    ResponseError::CoordinatorNotAvailable,
                    format!("cannot create {topic}: {msg}"),
                );
            }
            None => {
                return refused(
                    ResponseError::CoordinatorNotAvailable,
                    format!("{topic} is being created; retry"),
                );
            }
        }
    }
    let state = broker.metadata.state();
    let index = if key_type == KEY_TYPE_GROUP {
        broker.group_coordinator.partition_of(broker, &key)
    } else {
        broker.txn_coordinator.partition_of(broker, &key)
    };
    let leader = state
        .topic(topic)
        .and_then(|t| t.partition(index))
        .map(|p| p.leader)
        .and_then(|id| state.broker(id))
        .filter(|b| !b.fenced);
    match leader {
        Some(b) => Coordinator::default()
            .with_key(key.clone())
            .with_node_id(BrokerId(b.broker_id))
            .with_host(StrBytes::from_string(b.host.clone()))
            .with_port(i32::from(b.port)),
        None => refused(
            ResponseError::CoordinatorNotAvailable,
            format!("{topic} partition {index} has no leader"),
        ),
    }
}
