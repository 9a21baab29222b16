//! AddOffsetsToTxn (key 25, v0–v4): a transactional producer that will commit a consumer
//! group's offsets in its transaction (`send_offsets_to_transaction`) adds the group's
//! `__consumer_offsets` partition to it, so that the partition gets the transaction's
//! marker. Then it sends TxnOffsetCommit to the group coordinator.
//!
//! The same rules and errors as AddPartitionsToTxn apply. v4 only allows
//! TRANSACTION_ABORTABLE in answers (KIP-890), which this broker never sends.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::RequestContext;
use crate::group_coordinator::OFFSETS_TOPIC;

pub async fn handle(
    ctx: RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let broker = &ctx.broker;
    let id = request.transactional_id.0.as_str();
    let partition = cairn_txn::TopicPartition {
        topic: OFFSETS_TOPIC.to_owned(),
        partition: broker
            .group_coordinator
            .partition_of(broker, request.group_id.0.as_str()),
    };
    match broker
        .txn_coordinator
        .add_partitions(
            broker,
            id,
            request.producer_id.0,
            request.producer_epoch,
            &[partition],
            false,
        )
        .await
    {
        Ok(()) => AddOffsetsToTxnResponse::default(),
        Err(e) => {
            tracing::debug!(peer = %ctx.peer, transactional_id = id, error = ?e.code, "AddOffsetsToTxn refused: {}", e.message);
            AddOffsetsToTxnResponse::default().with_error_code(
                crate::txn_coordinator::fenced_for_version(
                    e.code,
                    cairn_txn::TxnApi::AddOffsetsToTxn,
                    ctx.version,
                )
                .code(),
            )
        }
    }
}
