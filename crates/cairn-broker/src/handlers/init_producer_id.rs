//! InitProducerId (key 22, v0–v5): producer ids for idempotent producers.
//!
//! Any broker answers (Kafka sends non-transactional InitProducerId to any broker too):
//! - No `transactional_id`, no `producer_id`/`producer_epoch` (-1/-1): a fresh producer id
//!   from this broker's block ([`crate::producer_ids`]) with epoch 0.
//! - No `transactional_id`, `producer_id` and `producer_epoch` set (v3+, KIP-360: a
//!   producer recovering from OUT_OF_ORDER_SEQUENCE_NUMBER or an expired id): the same id
//!   with epoch + 1. At the last usable epoch (`i16::MAX - 1`; Kafka keeps `i16::MAX` for
//!   fencing) or for an id no broker was ever given (at or above the cluster's next free
//!   id), a fresh id with epoch 0 — the client takes whatever id the answer carries. The
//!   broker keeps no record of epochs: the partitions' producer state does the fencing
//!   (a batch with an older epoch than the last written gets INVALID_PRODUCER_EPOCH).
//!   Only one of the two set is INVALID_REQUEST.
//! - A non-null `transactional_id`: sent to the transactional id's coordinator
//!   ([`crate::txn_coordinator`], NOT_COORDINATOR elsewhere), which answers the id's
//!   producer id with its epoch bumped (a new producer id at epoch exhaustion), fencing
//!   any older producer with that transactional id; an open transaction of the id is first
//!   aborted (CONCURRENT_TRANSACTIONS until that is done, which clients retry). A
//!   `transaction_timeout_ms` above `transaction.max.timeout.ms` is
//!   INVALID_TRANSACTION_TIMEOUT; an empty transactional id INVALID_REQUEST.
//! - No id block could be obtained (no metadata quorum, this broker not registered yet):
//!   COORDINATOR_LOAD_IN_PROGRESS, which clients retry (Kafka answers the same while its
//!   broker waits for a block).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::RequestContext;

/// The highest epoch handed out; Kafka keeps `i16::MAX` itself for fencing.
pub const MAX_EPOCH: i16 = i16::MAX - 1;

pub async fn handle(ctx: RequestContext, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let refused = |code: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(code.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    let (pid, epoch) = if ctx.version >= 3 {
        (request.producer_id.0, request.producer_epoch)
    } else {
        (-1, -1)
    };
    let bump = match (pid, epoch) {
        (-1, -1) => None,
        (pid, epoch) if pid >= 0 && epoch >= 0 => Some((pid, epoch)),
        _ => {
            tracing::debug!(peer = %ctx.peer, pid, epoch, "InitProducerId with only one of producer_id and producer_epoch");
            return refused(ResponseError::InvalidRequest);
        }
    };
    if let Some(id) = &request.transactional_id {
        let id = id.0.as_str();
        if id.is_empty() {
            return refused(ResponseError::InvalidRequest);
        }
        return match ctx
            .broker
            .txn_coordinator
            .init_producer_id(&ctx.broker, id, request.transaction_timeout_ms, bump)
            .await
        {
            Ok((producer_id, producer_epoch)) => {
                tracing::debug!(peer = %ctx.peer, transactional_id = id, producer_id, producer_epoch, "transactional producer initialised");
                InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(producer_epoch)
            }
            Err(e) => {
                tracing::debug!(peer = %ctx.peer, transactional_id = id, error = ?e.code, "InitProducerId refused: {}", e.message);
                refused(crate::txn_coordinator::fenced_for_version(
                    e.code,
                    cairn_txn::TxnApi::InitProducerId,
                    ctx.version,
                ))
            }
        };
    }
    let next_free = ctx.broker.metadata.state().next_producer_id();
    if let Some((pid, epoch)) = bump
        && epoch < MAX_EPOCH
        && pid < next_free
    {
        return InitProducerIdResponse::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch + 1);
    }
    match ctx
        .broker
        .replicas
        .producer_ids
        .next_id_for(&ctx.broker)
        .await
    {
        Ok(id) => {
            tracing::debug!(peer = %ctx.peer, producer_id = id, replaced = ?bump, "producer id handed out");
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0)
        }
        Err(e) => {
            tracing::warn!(peer = %ctx.peer, error = %e, "InitProducerId: no producer id available");
            refused(ResponseError::CoordinatorLoadInProgress)
        }
    }
}
