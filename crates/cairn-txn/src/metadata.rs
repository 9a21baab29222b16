//! The data of one transactional id: [`TxnState`], [`TxnMetadata`] and [`TopicPartition`],
//! Kafka's `TransactionState` and `TransactionMetadata` without the locks and the
//! pending state (the coordinator keeps that beside the metadata).

use std::collections::BTreeSet;
use std::fmt;

/// Kafka's "no producer id" (`RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// Kafka's "no producer epoch" (`RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// A partition of a topic, ordered by topic then partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Where a transactional id's transaction stands (Kafka's `TransactionState`); the ids
/// are the `TransactionStatus` byte of the `__transaction_state` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    /// A producer id and epoch are assigned; no transaction is open.
    Empty,
    /// A transaction is open: partitions have been added to it.
    Ongoing,
    /// EndTxn(commit) is written; commit markers are being written to the partitions.
    PrepareCommit,
    /// EndTxn(abort), a timeout or a fencing InitProducerId is written; abort markers are
    /// being written to the partitions.
    PrepareAbort,
    /// Every commit marker is written.
    CompleteCommit,
    /// Every abort marker is written.
    CompleteAbort,
    /// The id is being expired (Kafka's pending state of a tombstone; never written).
    Dead,
    /// Kafka's in-memory step of fencing an ongoing transaction; Kafka never writes it and
    /// neither do we (the fence is written as `PrepareAbort` with the bumped epoch).
    PrepareEpochFence,
}

impl TxnState {
    /// Every state, in id order.
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    /// Kafka's id of the state, as written in `TransactionStatus`.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state of a `TransactionStatus` byte, `None` for an unknown id.
    pub fn from_id(id: i8) -> Option<TxnState> {
        TxnState::ALL.get(usize::try_from(id).ok()?).copied()
    }

    /// Kafka's name of the state, as DescribeTransactions and ListTransactions report it.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state named `name` (ListTransactions' state filter), `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Markers are being written: `PrepareCommit` or `PrepareAbort`.
    pub fn is_prepare(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// No transaction is open and none is being completed, so the id may expire
    /// (Kafka's `isExpirationAllowed`).
    pub fn is_expiration_allowed(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

impl fmt::Display for TxnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transactional id's producer and transaction, as the coordinator keeps it and as
/// `__transaction_state` stores it (except `last_producer_epoch`, which the record format
/// has no field for and which reads back as -1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    /// The producer id in use.
    pub producer_id: i64,
    /// The producer id before the last InitProducerId: the old id after a rotation on
    /// epoch exhaustion, so that a KIP-360 retry of that InitProducerId is recognised;
    /// -1 before the first.
    pub prev_producer_id: i64,
    /// Transactions v2 (KIP-890 part 2) hands out the next producer id at EndTxn; under
    /// the classic protocol it is always -1. Read and written so records round-trip.
    pub next_producer_id: i64,
    /// -1 only for a transactional id that was never initialised.
    pub producer_epoch: i16,
    /// The epoch before the last InitProducerId that named its expected epoch (KIP-360):
    /// a retry of that request gets the current epoch again instead of a bump. In memory
    /// only; -1 after loading.
    pub last_producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the open (or completing) transaction; empty in `Empty` and
    /// `Complete*`.
    pub partitions: BTreeSet<TopicPartition>,
    /// When the first partition was added to the transaction; -1 after InitProducerId.
    pub txn_start_ms: i64,
    /// When this metadata last changed.
    pub last_update_ms: i64,
}
