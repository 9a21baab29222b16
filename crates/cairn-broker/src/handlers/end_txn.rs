//! EndTxn (key 26, v0–v4): a transactional producer commits or aborts its transaction.
//!
//! Answered by the coordinator once PrepareCommit or PrepareAbort is durable in
//! `__transaction_state`: from then on the outcome is decided and survives coordinator
//! failover. The COMMIT/ABORT markers are written to every partition of the transaction
//! afterwards (WriteTxnMarkers), which moves their last stable offsets; the producer's next
//! AddPartitionsToTxn gets CONCURRENT_TRANSACTIONS until that is done. A retried EndTxn
//! whose outcome already completed is answered with success; the opposite outcome, or an
//! EndTxn without an open transaction, is INVALID_TXN_STATE; an old producer epoch is
//! PRODUCER_FENCED (INVALID_PRODUCER_EPOCH before v2, as Kafka answers).
//!
//! v5 (transactions v2, KIP-890 part 2: the epoch is bumped at every commit) is not served.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::RequestContext;

pub async fn handle(ctx: RequestContext, request: EndTxnRequest) -> EndTxnResponse {
    let broker = &ctx.broker;
    let id = request.transactional_id.0.as_str();
    match broker
        .txn_coordinator
        .end_txn(
            broker,
            id,
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await
    {
        Ok(()) => EndTxnResponse::default(),
        Err(e) => {
            tracing::debug!(peer = %ctx.peer, transactional_id = id, commit = request.committed, error = ?e.code, "EndTxn refused: {}", e.message);
            EndTxnResponse::default().with_error_code(
                crate::txn_coordinator::fenced_for_version(
                    e.code,
                    cairn_txn::TxnApi::EndTxn,
                    ctx.version,
                )
                .code(),
            )
        }
    }
}
