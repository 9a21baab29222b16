//! AddPartitionsToTxn (key 24, v0–v3): a transactional producer names the partitions it
//! is about to write in its current transaction, before its first batch to each.
//!
//! Answered by the transactional id's coordinator (NOT_COORDINATOR elsewhere) once the
//! new partition set is durable in `__transaction_state`: the coordinator must know every
//! partition that will need a marker. A partition that does not exist is
//! UNKNOWN_TOPIC_OR_PARTITION and the others of the request OPERATION_NOT_ATTEMPTED, as in
//! Kafka; an internal topic other than `__consumer_offsets` (reached only through
//! AddOffsetsToTxn) is refused the same way. Other failures apply to every partition:
//! INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED / INVALID_PRODUCER_EPOCH (a zombie),
//! CONCURRENT_TRANSACTIONS (the previous transaction is still completing; clients retry),
//! INVALID_TXN_STATE.
//!
//! v4+ is the batched form brokers send (KIP-890 part 1): several transactional ids per
//! request, each either added as above or, with `verify_only`, checked: every partition
//! must already be in the producer's ongoing transaction, else INVALID_TXN_STATE (v4) or
//! TRANSACTION_ABORTABLE (v5) for the missing ones. Served so that tools and other brokers
//! can ask; this broker's own partition leaders do not send it yet (they do not verify
//! transactional produces with the coordinator, as Kafka before 3.6).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::RequestContext;
use crate::group_coordinator::OFFSETS_TOPIC;

pub async fn handle(
    ctx: RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.version >= 4 {
        return handle_batched(&ctx, request).await;
    }
    let broker = &ctx.broker;
    let state = broker.metadata.state();
    let id = request.v3_and_below_transactional_id.0.as_str();
    let mut wanted = Vec::new();
    let mut unknown = Vec::new();
    for topic in &request.v3_and_below_topics {
        let name = topic.name.as_str();
        let info = state.topic(name);
        for &p in &topic.partitions {
            let exists = info.is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len());
            let internal = name.starts_with("__") && name != OFFSETS_TOPIC;
            let tp = cairn_txn::TopicPartition {
                topic: name.to_owned(),
                partition: p,
            };
            if exists && !internal {
                wanted.push(tp);
            } else {
                unknown.push(tp);
            }
        }
    }
    let outcome = if !unknown.is_empty() {
        Err(ResponseError::OperationNotAttempted)
    } else {
        broker
            .txn_coordinator
            .add_partitions(
                broker,
                id,
                request.v3_and_below_producer_id.0,
                request.v3_and_below_producer_epoch,
                &wanted,
                true,
            )
            .await
            .map_err(|e| {
                tracing::debug!(peer = %ctx.peer, transactional_id = id, error = ?e.code, "AddPartitionsToTxn refused: {}", e.message);
                crate::txn_coordinator::fenced_for_version(
                    e.code,
                    cairn_txn::TxnApi::AddPartitionsToTxn,
                    ctx.version,
                )
            })
    };
    let code_of = |topic: &str, partition: i32| -> i16 {
        if unknown
            .iter()
            .any(|u| u.topic == topic && u.partition == partition)
        {
            return ResponseError::UnknownTopicOrPartition.code();
        }
        match outcome {
            Ok(()) => 0,
            Err(code) => code.code(),
        }
    };
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(code_of(topic.name.as_str(), p))
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

/// v4+: each transaction of the request on its own.
async fn handle_batched(
    ctx: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let broker = &ctx.broker;
    let mut results = Vec::with_capacity(request.transactions.len());
    for txn in &request.transactions {
        let id = txn.transactional_id.0.as_str();
        let partitions: Vec<cairn_txn::TopicPartition> = txn
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|&p| cairn_txn::TopicPartition {
                    topic: t.name.as_str().to_owned(),
                    partition: p,
                })
            })
            .collect();
        let outcome = if txn.verify_only {
            broker
                .txn_coordinator
                .verify_partitions(
                    broker,
                    id,
                    txn.producer_id.0,
                    txn.producer_epoch,
                    &partitions,
                )
                .await
        } else {
            broker
                .txn_coordinator
                .add_partitions(
                    broker,
                    id,
                    txn.producer_id.0,
                    txn.producer_epoch,
                    &partitions,
                    true,
                )
                .await
        };
        let code = match outcome {
            Ok(()) => 0,
            // TRANSACTION_ABORTABLE exists from v5; v4 askers get INVALID_TXN_STATE.
            Err(e) if e.code == ResponseError::TransactionAbortable && ctx.version < 5 => {
                ResponseError::InvalidTxnState.code()
            }
            Err(e) => {
                tracing::debug!(peer = %ctx.peer, transactional_id = id, verify_only = txn.verify_only, error = ?e.code, "AddPartitionsToTxn v{} refused: {}", ctx.version, e.message);
                e.code.code()
            }
        };
        let topic_results = txn
            .topics
            .iter()
            .map(|t| {
                AddPartitionsToTxnTopicResult::default()
                    .with_name(t.name.clone())
                    .with_results_by_partition(
                        t.partitions
                            .iter()
                            .map(|&p| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(p)
                                    .with_partition_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect();
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(txn.transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}
