//! [`TxnError`]: every refusal of the transaction coordinator, each the twin of one Kafka
//! error code.
//!
//! Unlike the other library crates this one also carries the numeric codes
//! ([`TxnError::kafka_code`]), because the classic protocol answers a fenced producer
//! with a code that depends on the request version ([`TxnError::kafka_code_for`]) and that
//! rule belongs next to the states it describes.

use crate::metadata::{TopicPartition, TxnState};

/// The transaction APIs whose old versions predate PRODUCER_FENCED (KIP-588).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnApi {
    InitProducerId,
    AddPartitionsToTxn,
    AddOffsetsToTxn,
    EndTxn,
}

impl TxnApi {
    /// The first version of this API whose clients know PRODUCER_FENCED; older ones get
    /// INVALID_PRODUCER_EPOCH (47) instead, as Kafka's KafkaApis answers.
    pub fn first_version_with_fenced(self) -> i16 {
        match self {
            TxnApi::InitProducerId => 4,
            TxnApi::AddPartitionsToTxn | TxnApi::AddOffsetsToTxn | TxnApi::EndTxn => 2,
        }
    }
}

/// Why the coordinator refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// An empty transactional id, or a KIP-360 producer id and epoch of which only one
    /// is -1 (INVALID_REQUEST, 42).
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: &'static str },
    /// `transaction.timeout.ms` not in `1..=transaction.max.timeout.ms`
    /// (INVALID_TRANSACTION_TIMEOUT, 50).
    #[error("transaction timeout {timeout_ms} ms is not in 1..={max_timeout_ms} ms")]
    InvalidTransactionTimeout {
        timeout_ms: i32,
        max_timeout_ms: i32,
    },
    /// Another write for this id is in flight, or its markers are being written; retry
    /// (CONCURRENT_TRANSACTIONS, 51).
    #[error("transactional id '{transactional_id}' has a state change in progress")]
    ConcurrentTransactions { transactional_id: String },
    /// The id is unknown or uses another producer id (INVALID_PRODUCER_ID_MAPPING, 49).
    #[error("producer id {producer_id} is not the one of transactional id '{transactional_id}'")]
    InvalidProducerIdMapping {
        transactional_id: String,
        producer_id: i64,
    },
    /// The request's epoch is not the current one: a newer producer took the id over
    /// (PRODUCER_FENCED, 90; INVALID_PRODUCER_EPOCH, 47, for requests older than KIP-588).
    #[error(
        "producer {producer_id} epoch {producer_epoch} of '{transactional_id}' is fenced (current epoch {current_epoch})"
    )]
    ProducerFenced {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        current_epoch: i16,
    },
    /// The operation does not apply to the transaction's state, e.g. EndTxn with no
    /// transaction open (INVALID_TXN_STATE, 48).
    #[error("transactional id '{transactional_id}' is {state}: cannot {operation}")]
    InvalidTxnState {
        transactional_id: String,
        state: TxnState,
        operation: &'static str,
    },
    /// A transactional id this coordinator does not know (TRANSACTIONAL_ID_NOT_FOUND, 105).
    #[error("transactional id '{transactional_id}' not found")]
    TransactionalIdNotFound { transactional_id: String },
    /// KIP-890 verification: partitions not in the ongoing transaction; the producer must
    /// abort (TRANSACTION_ABORTABLE, 120; a partition leader answers INVALID_TXN_STATE to
    /// producers too old to know it).
    #[error("partitions {missing:?} are not in the transaction of '{transactional_id}'")]
    TransactionAbortable {
        transactional_id: String,
        missing: Vec<TopicPartition>,
    },
    /// The host is still loading the `__transaction_state` partition
    /// (COORDINATOR_LOAD_IN_PROGRESS, 14). Never returned by [`crate::TxnCoordinator`].
    #[error("the transaction coordinator is loading")]
    CoordinatorLoadInProgress,
    /// This broker does not lead the id's `__transaction_state` partition
    /// (NOT_COORDINATOR, 16). Never returned by [`crate::TxnCoordinator`].
    #[error("not the transaction coordinator")]
    NotCoordinator,
}

impl TxnError {
    /// Kafka's error code, as current request versions carry it.
    pub fn kafka_code(&self) -> i16 {
        match self {
            TxnError::CoordinatorLoadInProgress => 14,
            TxnError::NotCoordinator => 16,
            TxnError::InvalidRequest { .. } => 42,
            TxnError::InvalidTxnState { .. } => 48,
            TxnError::InvalidProducerIdMapping { .. } => 49,
            TxnError::InvalidTransactionTimeout { .. } => 50,
            TxnError::ConcurrentTransactions { .. } => 51,
            TxnError::ProducerFenced { .. } => 90,
            TxnError::TransactionalIdNotFound { .. } => 105,
            TxnError::TransactionAbortable { .. } => 120,
        }
    }

    /// Kafka's error code for a response of `api` at `version`: clients older than KIP-588
    /// (InitProducerId < 4, AddPartitionsToTxn, AddOffsetsToTxn and EndTxn < 2) get
    /// INVALID_PRODUCER_EPOCH (47) instead of PRODUCER_FENCED, as Kafka's `KafkaApis` does.
    pub fn kafka_code_for(&self, api: TxnApi, version: i16) -> i16 {
        match self {
            TxnError::ProducerFenced { .. } if version < api.first_version_with_fenced() => 47,
            _ => self.kafka_code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_is_invalid_epoch_for_old_versions() {
        let e = TxnError::ProducerFenced {
            transactional_id: "t".into(),
            producer_id: 1,
            producer_epoch: 0,
            current_epoch: 1,
        };
        assert_eq!(e.kafka_code(), 90);
        assert_eq!(e.kafka_code_for(TxnApi::InitProducerId, 3), 47);
        assert_eq!(e.kafka_code_for(TxnApi::InitProducerId, 4), 90);
        assert_eq!(e.kafka_code_for(TxnApi::EndTxn, 1), 47);
        assert_eq!(e.kafka_code_for(TxnApi::EndTxn, 2), 90);
        assert_eq!(e.kafka_code_for(TxnApi::AddPartitionsToTxn, 5), 90);
        let c = TxnError::ConcurrentTransactions {
            transactional_id: "t".into(),
        };
        assert_eq!(c.kafka_code_for(TxnApi::EndTxn, 0), 51);
    }
}
