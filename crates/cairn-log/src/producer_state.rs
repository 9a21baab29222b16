//! Per-partition producer state for idempotent and transactional producers (Kafka's
//! `ProducerStateManager`, `ProducerStateEntry` and `ProducerAppendInfo`).
//!
//! Pure: no I/O, no clock. [`PartitionLog`](crate::PartitionLog) owns one
//! [`ProducerStateManager`], calls [`ProducerStateManager::check_batches`] (or
//! [`ProducerStateManager::check_coordinator_batches`], [`ProducerStateManager::check_marker`])
//! before a leader append, [`ProducerStateManager::update`] after every append (leader or
//! follower) and during recovery replays, and persists it as `<offset>.snapshot` files
//! (format below and in the crate docs).
//!
//! ## What is tracked
//!
//! Per producer id: the current producer epoch, the metadata of the last
//! [`BATCHES_TO_RETAIN`] (5, Kafka's `NUM_BATCHES_TO_RETAIN`, the most a client keeps in
//! flight with `max.in.flight.requests.per.connection <= 5`) batches of that epoch
//! (`first_seq`, `last_seq`, `first_offset`, `last_offset`, batch `max_timestamp`), the
//! last batch timestamp (for `producer.id.expiration.ms`), the first offset of its ongoing
//! transaction (`current_txn_first_offset`) and the epoch of the transaction coordinator
//! that wrote its last marker (`coordinator_epoch`, -1 unknown). The state only ever depends
//! on the batches in the log (headers, plus the one record of each control batch), in log
//! order, so followers, recovery replays and snapshots all compute the same state as the
//! leader did.
//!
//! ## Transactions (KIP-98)
//!
//! - A transactional data batch (attribute bit 4) starts a transaction at its base offset if
//!   its producer has none ongoing.
//! - An end marker (a control batch whose record is a COMMIT or ABORT, see
//!   [`crate::control`]) ends it: [`ProducerStateManager::update`] returns a
//!   [`CompletedTxn`] (`first_offset` of the transaction, `last_offset` = the marker's
//!   offset). A marker for a producer without an ongoing transaction (Kafka writes markers
//!   to every partition of a transaction, some may have no data) completes nothing but still
//!   moves the producer's epoch, coordinator epoch and last offset. A newer epoch in a
//!   marker (a coordinator aborting on an epoch bump) clears the retained batches, so the
//!   next data batch of that epoch must start at sequence 0.
//! - Ongoing transactions are kept ordered by first offset, and completed transactions
//!   whose marker may still be above the high watermark ("unreplicated", Kafka's
//!   `unreplicatedTxns`) until [`ProducerStateManager::on_high_watermark_updated`] is told
//!   the high watermark passed their marker. [`ProducerStateManager::first_unstable_offset`]
//!   is the smallest first offset of both: the last stable offset (LSO) served to
//!   read_committed consumers never passes the data of a transaction whose outcome is not
//!   both decided and replicated.
//! - Producers with an ongoing transaction never expire (as Kafka).
//!
//! ## Leader checks (in this order, as Kafka 3.x)
//!
//! For a client batch with `producer_id >= 0` (client control batches are refused earlier by
//! the log):
//! 1. `base_sequence < 0` → [`ProducerError::InvalidSequence`] (Kafka: INVALID_RECORD).
//! 2. Same epoch as the known one, and `(first_seq, last_seq)` equal to one of the retained
//!    batches → [`CheckOutcome::Duplicate`] with that batch's original offsets: the broker
//!    answers success with those offsets and appends nothing.
//! 3. Unknown producer id: `first_seq == 0` is accepted, anything else is
//!    [`ProducerError::OutOfOrderSequence`]. (Kafka 3.x accepts any sequence from a producer
//!    it has no state for, which happens after `producer.id.expiration.ms`; we are stricter
//!    and let the client bump its epoch: Java and librdkafka both recover from
//!    OUT_OF_ORDER_SEQUENCE_NUMBER on an idempotent producer by bumping the epoch, after
//!    which sequence 0 is accepted.)
//! 4. Epoch older than the known one → [`ProducerError::InvalidProducerEpoch`].
//! 5. A non-transactional batch from a producer with an ongoing transaction →
//!    [`ProducerError::InvalidTxnState`] (Kafka: INVALID_TXN_STATE).
//! 6. Newer epoch: must start at sequence 0, else `OutOfOrderSequence`.
//! 7. Same epoch: `first_seq` must follow the last batch's `last_seq` (`last + 1`, or 0 after
//!    `i32::MAX`: sequences wrap like Kafka's `DefaultRecordBatch.incrementSequence`), else
//!    `OutOfOrderSequence`. A same-epoch entry without batches (after a marker with a new
//!    epoch) expects 0.
//!
//! Transactional batches are sequence-checked like idempotent ones. Batches written by a
//! coordinator (Kafka's `AppendOrigin.COORDINATOR`: the group coordinator's transactional
//! offset commits, `base_sequence = -1`) only get checks 4 and 5. End markers written by the
//! leader ([`ProducerStateManager::check_marker`]): an epoch older than the producer's →
//! `InvalidProducerEpoch`; a `coordinator_epoch` older than the producer's →
//! [`ProducerError::TransactionCoordinatorFenced`].
//!
//! Followers and replays never check: they record what the leader wrote
//! ([`ProducerStateManager::update`]), including an older epoch (as Kafka's `REPLICATION`
//! origin does, with the entry's batches reset).
//!
//! ## Snapshot format (version 2), all integers big-endian
//!
//! | bytes    | field                                                        |
//! |----------|--------------------------------------------------------------|
//! | 0..2     | `version` u16 = 2 (1 is still read)                          |
//! | 2..6     | `crc` u32: CRC-32C (Castagnoli) of bytes 6..end              |
//! | 6..14    | `offset` i64: the state covers every batch below this offset |
//! | 14..18   | `count` u32: number of producer entries                      |
//! | 18..     | `count` entries, by increasing producer id                   |
//! | then     | `unreplicated` u32, then that many completed transactions    |
//!
//! Entry: `producer_id` i64, `producer_epoch` i16, `last_timestamp` i64, `last_offset` i64
//! (of the producer's last batch), `current_txn_first_offset` i64 (-1: none),
//! `coordinator_epoch` i32 (-1: unknown), `batches` u8 (0..=5), then per batch, oldest
//! first: `first_seq` i32, `last_seq` i32, `first_offset` i64, `last_offset` i64,
//! `timestamp` i64 (39 + 32 × batches bytes).
//!
//! Completed transaction whose marker was not yet known to be below the high watermark
//! (by increasing first offset): `producer_id` i64, `first_offset` i64, `last_offset` i64
//! (the marker's), `is_aborted` u8 (0 or 1) — 25 bytes. Kafka does not persist these; we do
//! so that a reopen cannot move the LSO past a transaction whose marker is not replicated.
//! The file must end exactly after the last one. The ongoing-transaction index is rebuilt
//! from the entries on load.
//!
//! Version 1 (no transactions) has the same header and 27-byte entries without
//! `current_txn_first_offset` and `coordinator_epoch`, and nothing after the entries; it
//! loads as producers without ongoing transactions and an unknown coordinator epoch.

use std::collections::BTreeMap;
use std::collections::VecDeque;

use crate::batch::BatchHeader;
use crate::control::{ControlType, EndTxnMarker};

/// How many batches per producer are remembered for duplicate detection (Kafka's
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`).
pub const BATCHES_TO_RETAIN: usize = 5;

/// Kafka's default `producer.id.expiration.ms` (1 day).
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

/// Current snapshot format version.
pub const SNAPSHOT_VERSION: u16 = 2;

const SNAPSHOT_HEADER_LEN: usize = 18;
const ENTRY_HEADER_LEN_V1: usize = 27;
const ENTRY_HEADER_LEN: usize = 39;
const BATCH_META_LEN: usize = 32;
const COMPLETED_TXN_LEN: usize = 25;

/// One batch of a producer, as remembered for duplicate detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    /// The batch's `max_timestamp` as stored (the append time on LogAppendTime topics).
    pub timestamp: i64,
}

/// The state of one producer id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub producer_epoch: i16,
    /// The last (up to [`BATCHES_TO_RETAIN`]) batches of `producer_epoch`, oldest first.
    pub batches: VecDeque<BatchMetadata>,
    /// `max_timestamp` of the producer's last batch (drives expiry).
    pub last_timestamp: i64,
    /// Last offset of the producer's last batch of any kind (control batches included).
    pub last_offset: i64,
    /// Base offset of the first batch of the producer's ongoing transaction, if one is open.
    pub current_txn_first_offset: Option<i64>,
    /// Epoch of the transaction coordinator that wrote the producer's last marker (-1: none
    /// seen yet). Markers from an older coordinator epoch are fenced.
    pub coordinator_epoch: i32,
}

impl ProducerEntry {
    /// The last sequence number written in the current epoch, if any.
    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    fn find_duplicate(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        if epoch != self.producer_epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }
}

/// A transaction ended by a marker (Kafka's `CompletedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CompletedTxn {
    pub producer_id: i64,
    /// Base offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// Offset of the marker that ended it.
    pub last_offset: i64,
    /// ABORT marker (else COMMIT).
    pub is_aborted: bool,
}

/// What a leader append of a batch set should do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Every batch is new and in sequence: append them.
    Append,
    /// A batch repeats one of the producer's retained batches: append nothing and answer
    /// success with the original offsets (and `timestamp` as the log append time on
    /// LogAppendTime topics).
    Duplicate {
        base_offset: i64,
        last_offset: i64,
        timestamp: i64,
    },
}

/// Why a leader refuses a producer's batch or marker. Each variant names the Kafka error
/// code the broker answers; [`ProducerError::kafka_code`] gives it as a number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// A gap or a repeat older than the retained batches, a new epoch not starting at 0, or an
    /// unknown producer not starting at 0. Kafka: `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
    #[error(
        "out of order sequence number for producer {producer_id} epoch {producer_epoch}: \
         got {first_seq}, expected {expected_seq}"
    )]
    OutOfOrderSequence {
        producer_id: i64,
        producer_epoch: i16,
        first_seq: i32,
        /// The sequence that would have been accepted.
        expected_seq: i32,
    },

    /// The batch's (or marker's) epoch is older than the producer's known epoch (a zombie
    /// producer). Kafka: `INVALID_PRODUCER_EPOCH` (47) since Kafka 2.7 (KIP-588); older
    /// brokers answered `PRODUCER_FENCED` (90), which Kafka now keeps for the transaction
    /// coordinator.
    #[error(
        "producer {producer_id} epoch {producer_epoch} is older than the current epoch {current_epoch}"
    )]
    InvalidProducerEpoch {
        producer_id: i64,
        producer_epoch: i16,
        current_epoch: i16,
    },

    /// A batch with a producer id but a negative base sequence. Kafka: `INVALID_RECORD` (87).
    #[error("invalid base sequence {base_sequence} in a batch of producer {producer_id}")]
    InvalidSequence {
        producer_id: i64,
        base_sequence: i32,
    },

    /// A non-transactional batch from a producer whose transaction (started at
    /// `txn_first_offset`) is still open: the producer must commit or abort it first.
    /// Kafka: `INVALID_TXN_STATE` (48).
    #[error(
        "non-transactional batch from producer {producer_id} epoch {producer_epoch}, whose \
         transaction started at offset {txn_first_offset} is still ongoing: end it first"
    )]
    InvalidTxnState {
        producer_id: i64,
        producer_epoch: i16,
        txn_first_offset: i64,
    },

    /// An end marker from a transaction coordinator epoch older than the one that wrote the
    /// producer's last marker (a zombie coordinator). Kafka: `TRANSACTION_COORDINATOR_FENCED`
    /// (52).
    #[error(
        "marker for producer {producer_id} from coordinator epoch {coordinator_epoch}, older \
         than the current coordinator epoch {current_coordinator_epoch}"
    )]
    TransactionCoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current_coordinator_epoch: i32,
    },
}

impl ProducerError {
    /// The Kafka error code for the produce (or WriteTxnMarkers) response.
    pub fn kafka_code(&self) -> i16 {
        match self {
            ProducerError::OutOfOrderSequence { .. } => 45,
            ProducerError::InvalidProducerEpoch { .. } => 47,
            ProducerError::InvalidTxnState { .. } => 48,
            ProducerError::TransactionCoordinatorFenced { .. } => 52,
            ProducerError::InvalidSequence { .. } => 87,
        }
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: `seq + n`, wrapping past `i32::MAX` to 0.
pub fn increment_sequence(seq: i32, n: i32) -> i32 {
    if seq > i32::MAX - n {
        n - (i32::MAX - seq) - 1
    } else {
        seq + n
    }
}

/// The sequence number of a batch's last record (`base_sequence + last_offset_delta`,
/// wrapping).
pub fn last_sequence(h: &BatchHeader) -> i32 {
    increment_sequence(h.base_sequence, h.last_offset_delta)
}

/// `next` directly follows `last` (Kafka's `ProducerStateManager.inSequence`).
pub fn in_sequence(last: i32, next: i32) -> bool {
    next as i64 == last as i64 + 1 || (next == 0 && last == i32::MAX)
}

/// A producer's state as seen by the checks of one request: the stored entry updated by the
/// request's earlier batches.
#[derive(Clone, Copy)]
struct Pending {
    producer_id: i64,
    epoch: i16,
    last_seq: Option<i32>,
    txn_first_offset: Option<i64>,
}

/// The producer state of one partition: producer id → [`ProducerEntry`], valid for every
/// batch below [`ProducerStateManager::map_end_offset`], plus the ongoing and not yet
/// replicated transactions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
    /// Every batch below this offset has been applied (the log end offset it reflects).
    map_end_offset: i64,
    /// first offset → producer id of every ongoing transaction (derived from `producers`).
    ongoing: BTreeMap<i64, i64>,
    /// first offset → completed transaction whose marker is not known to be below the high
    /// watermark (Kafka's `unreplicatedTxns`).
    unreplicated: BTreeMap<i64, CompletedTxn>,
}

impl ProducerStateManager {
    /// Empty state for a log whose data starts at `offset`.
    pub fn new(offset: i64) -> ProducerStateManager {
        ProducerStateManager {
            map_end_offset: offset,
            ..ProducerStateManager::default()
        }
    }

    /// The offset below which every batch has been applied.
    pub fn map_end_offset(&self) -> i64 {
        self.map_end_offset
    }

    /// Records that the log now ends at `offset` without producer batches in between (a
    /// follower's offset gap, a roll at a later base).
    pub fn advance_to(&mut self, offset: i64) {
        self.map_end_offset = self.map_end_offset.max(offset);
    }

    /// The entry of `producer_id`, if it has state.
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer with state, by increasing id (for DescribeProducers).
    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&id, e)| (id, e))
    }

    /// Number of producers with state.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer has state.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// `(first_offset, producer_id)` of every ongoing transaction, by first offset.
    pub fn ongoing_txns(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(&first, &pid)| (first, pid))
    }

    /// Completed transactions whose marker is not yet known to be below the high watermark,
    /// by first offset.
    pub fn unreplicated_txns(&self) -> impl Iterator<Item = &CompletedTxn> {
        self.unreplicated.values()
    }

    /// The first offset of the earliest transaction that is ongoing or completed but not yet
    /// replicated (Kafka's `firstUnstableOffset`), as of the last
    /// [`ProducerStateManager::on_high_watermark_updated`].
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forgets completed transactions whose marker is below `high_watermark` (Kafka's
    /// `onHighWatermarkUpdated`): their outcome is replicated, their data stable.
    pub fn on_high_watermark_updated(&mut self, high_watermark: i64) {
        self.unreplicated
            .retain(|_, c| c.last_offset >= high_watermark);
    }

    /// The `last_stable_offset` recorded with a transaction just completed by a marker at
    /// `marker_offset` (Kafka's `lastStableOffset(completedTxn)`): the first offset of the
    /// earliest transaction still ongoing, else the offset right after the marker.
    pub fn last_stable_offset_after(&self, marker_offset: i64) -> i64 {
        self.ongoing
            .keys()
            .next()
            .copied()
            .unwrap_or(marker_offset + 1)
    }

    /// Checks one batch (before offsets are assigned) for a leader append. Batches without a
    /// producer id and control batches are always `Append`.
    pub fn check(&self, header: &BatchHeader) -> Result<CheckOutcome, ProducerError> {
        self.check_batches([header])
    }

    /// Checks the batches of one produce request in order, each against the state as if the
    /// earlier ones had been appended (all-or-nothing, like the append itself). Duplicates
    /// are looked up in the state before the request, as Kafka does; the first duplicate
    /// decides the outcome.
    pub fn check_batches<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a BatchHeader>,
    ) -> Result<CheckOutcome, ProducerError> {
        self.check_inner(headers, true)
    }

    /// Checks batches written by a coordinator (Kafka's `AppendOrigin.COORDINATOR`): epochs
    /// and transaction state only, no sequences (their `base_sequence` is -1).
    pub fn check_coordinator_batches<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a BatchHeader>,
    ) -> Result<(), ProducerError> {
        self.check_inner(headers, false).map(|_| ())
    }

    fn check_inner<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a BatchHeader>,
        sequences: bool,
    ) -> Result<CheckOutcome, ProducerError> {
        let mut pending: Vec<Pending> = Vec::new();
        for h in headers {
            if h.producer_id < 0 || h.is_control() {
                continue;
            }
            let pid = h.producer_id;
            if sequences && h.base_sequence < 0 {
                return Err(ProducerError::InvalidSequence {
                    producer_id: pid,
                    base_sequence: h.base_sequence,
                });
            }
            let first_seq = h.base_sequence;
            let last_seq = last_sequence(h);
            let entry = self.producers.get(&pid);
            if sequences {
                if let Some(dup) =
                    entry.and_then(|e| e.find_duplicate(h.producer_epoch, first_seq, last_seq))
                {
                    return Ok(CheckOutcome::Duplicate {
                        base_offset: dup.first_offset,
                        last_offset: dup.last_offset,
                        timestamp: dup.timestamp,
                    });
                }
            }
            let slot = pending.iter().position(|p| p.producer_id == pid);
            let current: Option<Pending> = match slot {
                Some(i) => Some(pending[i]),
                None => entry.map(|e| Pending {
                    producer_id: pid,
                    epoch: e.producer_epoch,
                    last_seq: e.last_seq(),
                    txn_first_offset: e.current_txn_first_offset,
                }),
            };
            let out_of_order = |expected_seq| ProducerError::OutOfOrderSequence {
                producer_id: pid,
                producer_epoch: h.producer_epoch,
                first_seq,
                expected_seq,
            };
            if let Some(c) = current {
                if h.producer_epoch < c.epoch {
                    return Err(ProducerError::InvalidProducerEpoch {
                        producer_id: pid,
                        producer_epoch: h.producer_epoch,
                        current_epoch: c.epoch,
                    });
                }
                if let (false, Some(txn_first_offset)) = (h.is_transactional(), c.txn_first_offset)
                {
                    return Err(ProducerError::InvalidTxnState {
                        producer_id: pid,
                        producer_epoch: h.producer_epoch,
                        txn_first_offset,
                    });
                }
            }
            if sequences {
                let expected = match current {
                    None => 0,
                    Some(c) if h.producer_epoch > c.epoch => 0,
                    Some(Pending { last_seq: None, .. }) => 0,
                    Some(Pending {
                        last_seq: Some(last),
                        ..
                    }) => increment_sequence(last, 1),
                };
                let ok = match current
                    .and_then(|c| c.last_seq.filter(|_| h.producer_epoch == c.epoch))
                {
                    Some(last) => in_sequence(last, first_seq),
                    None => first_seq == 0,
                };
                if !ok {
                    return Err(out_of_order(expected));
                }
            }
            let txn_first_offset = current.and_then(|c| c.txn_first_offset).or(
                // Offsets are not assigned yet: any value marks the transaction as open.
                h.is_transactional().then_some(h.base_offset),
            );
            let next = Pending {
                producer_id: pid,
                epoch: h.producer_epoch,
                last_seq: (h.base_sequence >= 0).then_some(last_seq),
                txn_first_offset,
            };
            match slot {
                Some(i) => pending[i] = next,
                None => pending.push(next),
            }
        }
        Ok(CheckOutcome::Append)
    }

    /// Checks an end marker the leader is about to write for `producer_id` (Kafka's
    /// `appendEndTxnMarker` checks for a non-replication origin): its epoch must not be older
    /// than the producer's, nor its coordinator epoch older than the last marker's. A
    /// producer without state accepts any marker.
    pub fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: &EndTxnMarker,
    ) -> Result<(), ProducerError> {
        let Some(e) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < e.producer_epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_id,
                producer_epoch,
                current_epoch: e.producer_epoch,
            });
        }
        if marker.coordinator_epoch < e.coordinator_epoch {
            return Err(ProducerError::TransactionCoordinatorFenced {
                producer_id,
                coordinator_epoch: marker.coordinator_epoch,
                current_coordinator_epoch: e.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a batch that is now in the log (`header` carries its final offsets and
    /// `max_timestamp`; `marker` is the parsed record of a control batch, `None` for data
    /// batches and control batches that are not transaction markers). No validation: used by
    /// leaders after the checks, by followers and by recovery replays. Batches without a
    /// producer id only move `map_end_offset`. Returns the transaction a marker completed.
    pub fn update(
        &mut self,
        header: &BatchHeader,
        marker: Option<EndTxnMarker>,
    ) -> Option<CompletedTxn> {
        self.map_end_offset = self.map_end_offset.max(header.last_offset() + 1);
        if header.producer_id < 0 {
            return None;
        }
        let pid = header.producer_id;
        let ts = header.max_timestamp;
        let entry = self.producers.entry(pid).or_insert_with(|| ProducerEntry {
            producer_epoch: header.producer_epoch,
            batches: VecDeque::new(),
            last_timestamp: ts,
            last_offset: header.last_offset(),
            current_txn_first_offset: None,
            coordinator_epoch: -1,
        });
        if entry.producer_epoch != header.producer_epoch {
            entry.producer_epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = ts;
        entry.last_offset = header.last_offset();
        if header.is_control() {
            // Control batches other than transaction markers only move the entry.
            let marker = marker?;
            entry.coordinator_epoch = marker.coordinator_epoch;
            let first_offset = entry.current_txn_first_offset.take()?;
            self.ongoing.remove(&first_offset);
            let completed = CompletedTxn {
                producer_id: pid,
                first_offset,
                last_offset: header.last_offset(),
                is_aborted: marker.control == ControlType::Abort,
            };
            self.unreplicated.insert(first_offset, completed);
            return Some(completed);
        }
        if header.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(header.base_offset);
            self.ongoing.insert(header.base_offset, pid);
        }
        if header.base_sequence < 0 {
            // A coordinator's batch: no sequence to remember.
            return None;
        }
        if entry.batches.len() == BATCHES_TO_RETAIN {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: last_sequence(header),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            timestamp: ts,
        });
        None
    }

    /// [`ProducerStateManager::update`] for one whole stored batch: parses its header and,
    /// for a control batch of a producer, its marker (malformed → `Err`, nothing applied).
    pub fn update_from_batch(
        &mut self,
        batch: &[u8],
    ) -> Result<Option<CompletedTxn>, crate::LogError> {
        let h = BatchHeader::parse(batch)?;
        let marker = if h.is_control() && h.producer_id >= 0 {
            crate::control::parse_marker(batch)?
        } else {
            None
        };
        Ok(self.update(&h, marker))
    }

    /// Drops what the log lost by a truncation to `offset` (every batch at or after it).
    /// Returns `true` when the result is exact, i.e. no producer's last batch was at or after
    /// `offset` (so no producer had a batch there). Returns `false` when some entry lost
    /// batches: older batches, an older epoch or an ongoing transaction (reopened by a
    /// truncated marker) may have been evicted since, so the caller must rebuild from a
    /// snapshot and the log (this state is then only a best effort with the affected
    /// producers removed).
    pub fn truncate_to(&mut self, offset: i64) -> bool {
        let mut exact = true;
        self.producers.retain(|_, e| {
            if e.last_offset >= offset {
                exact = false;
                false
            } else {
                true
            }
        });
        self.ongoing = self
            .producers
            .iter()
            .filter_map(|(&pid, e)| e.current_txn_first_offset.map(|f| (f, pid)))
            .collect();
        self.unreplicated.retain(|_, c| c.last_offset < offset);
        self.map_end_offset = self.map_end_offset.min(offset);
        exact
    }

    /// Removes producers whose last batch timestamp is `producer_id_expiration_ms` or more
    /// before `now_ms` (Kafka's `removeExpiredProducers`; `producer.id.expiration.ms`,
    /// default [`DEFAULT_PRODUCER_ID_EXPIRATION_MS`]), except those with an ongoing
    /// transaction. Returns how many were removed.
    pub fn remove_expired(&mut self, now_ms: i64, producer_id_expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < producer_id_expiration_ms
        });
        before - self.producers.len()
    }

    /// Encodes the state as a snapshot file's bytes (version 2, see the module docs).
    pub fn to_snapshot_bytes(&self) -> Vec<u8> {
        let body_len: usize = self
            .producers
            .values()
            .map(|e| ENTRY_HEADER_LEN + BATCH_META_LEN * e.batches.len())
            .sum::<usize>()
            + 4
            + COMPLETED_TXN_LEN * self.unreplicated.len();
        let mut b = Vec::with_capacity(SNAPSHOT_HEADER_LEN + body_len);
        b.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&self.map_end_offset.to_be_bytes());
        b.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (&id, e) in &self.producers {
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&e.producer_epoch.to_be_bytes());
            b.extend_from_slice(&e.last_timestamp.to_be_bytes());
            b.extend_from_slice(&e.last_offset.to_be_bytes());
            b.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
            b.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            b.push(e.batches.len() as u8);
            for m in &e.batches {
                b.extend_from_slice(&m.first_seq.to_be_bytes());
                b.extend_from_slice(&m.last_seq.to_be_bytes());
                b.extend_from_slice(&m.first_offset.to_be_bytes());
                b.extend_from_slice(&m.last_offset.to_be_bytes());
                b.extend_from_slice(&m.timestamp.to_be_bytes());
            }
        }
        b.extend_from_slice(&(self.unreplicated.len() as u32).to_be_bytes());
        for c in self.unreplicated.values() {
            b.extend_from_slice(&c.producer_id.to_be_bytes());
            b.extend_from_slice(&c.first_offset.to_be_bytes());
            b.extend_from_slice(&c.last_offset.to_be_bytes());
            b.push(u8::from(c.is_aborted));
        }
        let crc = crc32c::crc32c(&b[6..]);
        b[2..6].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decodes snapshot bytes (version 2 or 1); `Err` says why they are unusable (the caller
    /// then falls back to an older snapshot or the log).
    pub fn from_snapshot_bytes(bytes: &[u8]) -> Result<ProducerStateManager, String> {
        if bytes.len() < SNAPSHOT_HEADER_LEN {
            return Err(format!("{} bytes is shorter than the header", bytes.len()));
        }
        let version = u16::from_be_bytes([bytes[0], bytes[1]]);
        if version != 1 && version != SNAPSHOT_VERSION {
            return Err(format!("unknown snapshot version {version}"));
        }
        let v2 = version == 2;
        let stored = u32::from_be_bytes(bytes[2..6].try_into().unwrap());
        let computed = crc32c::crc32c(&bytes[6..]);
        if stored != computed {
            return Err(format!(
                "CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ));
        }
        let mut r = SnapshotReader { b: bytes, pos: 6 };
        let map_end_offset = r.i64()?;
        let count = r.u32()? as usize;
        let entry_len = if v2 {
            ENTRY_HEADER_LEN
        } else {
            ENTRY_HEADER_LEN_V1
        };
        if count > (bytes.len() - SNAPSHOT_HEADER_LEN) / entry_len {
            return Err(format!(
                "{count} entries cannot fit in {} bytes",
                bytes.len()
            ));
        }
        let mut state = ProducerStateManager::new(map_end_offset);
        let mut prev_id = None;
        for _ in 0..count {
            let id = r.i64()?;
            if id < 0 || prev_id.is_some_and(|p| id <= p) {
                return Err(format!("producer id {id} out of order or negative"));
            }
            prev_id = Some(id);
            let producer_epoch = r.i16()?;
            let last_timestamp = r.i64()?;
            let last_offset = r.i64()?;
            if last_offset >= map_end_offset {
                return Err(format!(
                    "last offset {last_offset} of producer {id} beyond the snapshot"
                ));
            }
            let (current_txn_first_offset, coordinator_epoch) = if v2 {
                let first = r.i64()?;
                let coordinator_epoch = r.i32()?;
                let first = match first {
                    -1 => None,
                    f if (0..=last_offset).contains(&f) => Some(f),
                    f => {
                        return Err(format!(
                            "transaction first offset {f} of producer {id} out of range"
                        ));
                    }
                };
                (first, coordinator_epoch)
            } else {
                (None, -1)
            };
            let n = r.u8()? as usize;
            if n > BATCHES_TO_RETAIN {
                return Err(format!("{n} batches for producer {id}"));
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                let m = BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    timestamp: r.i64()?,
                };
                if m.first_offset > m.last_offset || m.last_offset >= map_end_offset {
                    return Err(format!("bad batch offsets for producer {id}"));
                }
                batches.push_back(m);
            }
            if let Some(first) = current_txn_first_offset {
                if state.ongoing.insert(first, id).is_some() {
                    return Err(format!("two transactions start at offset {first}"));
                }
            }
            state.producers.insert(
                id,
                ProducerEntry {
                    producer_epoch,
                    batches,
                    last_timestamp,
                    last_offset,
                    current_txn_first_offset,
                    coordinator_epoch,
                },
            );
        }
        if v2 {
            let n = r.u32()? as usize;
            if n > (bytes.len() - r.pos) / COMPLETED_TXN_LEN {
                return Err(format!("{n} transactions cannot fit in the snapshot"));
            }
            for _ in 0..n {
                let c = CompletedTxn {
                    producer_id: r.i64()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    is_aborted: match r.u8()? {
                        0 => false,
                        1 => true,
                        b => return Err(format!("is_aborted byte {b}")),
                    },
                };
                if c.producer_id < 0
                    || c.first_offset < 0
                    || c.first_offset > c.last_offset
                    || c.last_offset >= map_end_offset
                {
                    return Err(format!("bad completed transaction {c:?}"));
                }
                if state.unreplicated.insert(c.first_offset, c).is_some() {
                    return Err(format!(
                        "two completed transactions start at offset {}",
                        c.first_offset
                    ));
                }
            }
        }
        if r.pos != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - r.pos));
        }
        Ok(state)
    }
}

struct SnapshotReader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl SnapshotReader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.pos + N;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or_else(|| "snapshot ends inside an entry".to_string())?;
        self.pos = end;
        Ok(s.try_into().unwrap())
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header as a leader sees it before assigning offsets (`base_offset` 0).
    fn hdr(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 1_000,
            max_timestamp: 1_000,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: records,
        }
    }

    /// Checks and appends at `*leo` like a leader; returns the outcome.
    fn send(
        s: &mut ProducerStateManager,
        leo: &mut i64,
        h: BatchHeader,
    ) -> Result<CheckOutcome, ProducerError> {
        let out = s.check(&h)?;
        if out == CheckOutcome::Append {
            let placed = BatchHeader {
                base_offset: *leo,
                ..h
            };
            s.update(&placed, None);
            *leo = placed.last_offset() + 1;
        }
        Ok(out)
    }

    #[test]
    fn duplicates_of_each_of_the_last_five_batches() {
        let mut s = ProducerStateManager::new(0);
        let mut leo = 0;
        let mut seq = 0;
        let mut placed = Vec::new();
        for i in 0..7 {
            let n = i + 1;
            let base = leo;
            assert_eq!(
                send(&mut s, &mut leo, hdr(7, 0, seq, n)).unwrap(),
                CheckOutcome::Append
            );
            placed.push((seq, n, base, leo - 1));
            seq += n;
        }
        for (i, &(seq, n, base, last)) in placed.iter().enumerate() {
            let out = s.check(&hdr(7, 0, seq, n));
            if i >= 2 {
                assert_eq!(
                    out,
                    Ok(CheckOutcome::Duplicate {
                        base_offset: base,
                        last_offset: last,
                        timestamp: 1_000
                    }),
                    "batch {i}"
                );
            } else {
                // The 6th-oldest and older are forgotten: an old sequence is out of order.
                assert!(
                    matches!(out, Err(ProducerError::OutOfOrderSequence { .. })),
                    "batch {i}: {out:?}"
                );
            }
        }
        // Same first sequence but another last sequence is not a duplicate.
        let (seq, n, _, _) = placed[6];
        assert!(s.check(&hdr(7, 0, seq, n + 1)).is_err());
        // A duplicate under another epoch is not a duplicate.
        assert!(s.check(&hdr(7, 1, seq, n)).is_err());
    }

    #[test]
    fn gaps_and_unknown_producers() {
        let mut s = ProducerStateManager::new(0);
        let mut leo = 0;
        assert_eq!(
            send(&mut s, &mut leo, hdr(1, 0, 5, 1)),
            Err(ProducerError::OutOfOrderSequence {
                producer_id: 1,
                producer_epoch: 0,
                first_seq: 5,
                expected_seq: 0
            })
        );
        send(&mut s, &mut leo, hdr(1, 0, 0, 3)).unwrap();
        let gap = send(&mut s, &mut leo, hdr(1, 0, 4, 1)).unwrap_err();
        assert_eq!(gap.kafka_code(), 45);
        assert!(matches!(
            gap,
            ProducerError::OutOfOrderSequence {
                expected_seq: 3,
                ..
            }
        ));
        send(&mut s, &mut leo, hdr(1, 0, 3, 1)).unwrap();
        assert_eq!(s.get(1).unwrap().last_seq(), Some(3));
        let bad = s.check(&hdr(1, 0, -1, 1)).unwrap_err();
        assert_eq!(bad.kafka_code(), 87);
        // Non-idempotent batches are not checked.
        assert_eq!(s.check(&hdr(-1, -1, -1, 1)), Ok(CheckOutcome::Append));
    }

    #[test]
    fn epoch_bump_and_fencing() {
        let mut s = ProducerStateManager::new(0);
        let mut leo = 0;
        send(&mut s, &mut leo, hdr(1, 3, 0, 2)).unwrap();
        send(&mut s, &mut leo, hdr(1, 3, 2, 2)).unwrap();
        // New epoch must restart at 0.
        assert!(matches!(
            send(&mut s, &mut leo, hdr(1, 4, 4, 1)),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
        send(&mut s, &mut leo, hdr(1, 4, 0, 1)).unwrap();
        let e = s.get(1).unwrap();
        assert_eq!((e.producer_epoch, e.batches.len()), (4, 1));
        // The old epoch is fenced, even for what was a duplicate before.
        let fenced = s.check(&hdr(1, 3, 2, 2)).unwrap_err();
        assert_eq!(
            fenced,
            ProducerError::InvalidProducerEpoch {
                producer_id: 1,
                producer_epoch: 3,
                current_epoch: 4
            }
        );
        assert_eq!(fenced.kafka_code(), 47);
        // Other producers are independent.
        send(&mut s, &mut leo, hdr(2, 0, 0, 1)).unwrap();
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(increment_sequence(5, 3), 8);
        assert!(in_sequence(i32::MAX, 0));
        assert!(!in_sequence(i32::MAX, 1));
        // A producer whose state says last_seq = i32::MAX - 2 (sent through a follower).
        let mut s = ProducerStateManager::new(0);
        s.update(
            &BatchHeader {
                base_offset: 0,
                ..hdr(9, 0, i32::MAX - 4, 3)
            },
            None,
        );
        assert_eq!(s.get(9).unwrap().last_seq(), Some(i32::MAX - 2));
        let mut leo = 3;
        // Batch crossing the wrap: MAX-1, MAX, 0, 1.
        send(&mut s, &mut leo, hdr(9, 0, i32::MAX - 1, 4)).unwrap();
        assert_eq!(s.get(9).unwrap().last_seq(), Some(1));
        assert!(matches!(
            s.check(&hdr(9, 0, i32::MAX - 1, 4)),
            Ok(CheckOutcome::Duplicate {
                base_offset: 3,
                last_offset: 6,
                ..
            })
        ));
        send(&mut s, &mut leo, hdr(9, 0, 2, 1)).unwrap();
        assert!(s.check(&hdr(9, 0, 0, 1)).is_err());
    }

    #[test]
    fn multi_batch_requests_are_checked_in_order() {
        let s = ProducerStateManager::new(0);
        let a = hdr(1, 0, 0, 2);
        let b = hdr(1, 0, 2, 2);
        let c = hdr(1, 0, 5, 1);
        assert_eq!(s.check_batches([&a, &b]), Ok(CheckOutcome::Append));
        assert!(s.check_batches([&a, &c]).is_err());
        assert!(s.check_batches([&b]).is_err());
    }

    #[test]
    fn truncation_expiry_and_snapshots() {
        let mut s = ProducerStateManager::new(0);
        let mut leo = 0;
        send(&mut s, &mut leo, hdr(1, 0, 0, 2)).unwrap(); // 0..=1
        send(&mut s, &mut leo, hdr(2, 0, 0, 2)).unwrap(); // 2..=3
        let mut late = hdr(3, 0, 0, 1);
        late.max_timestamp = 5_000;
        send(&mut s, &mut leo, late).unwrap(); // 4
        let bytes = s.to_snapshot_bytes();
        assert_eq!(
            ProducerStateManager::from_snapshot_bytes(&bytes),
            Ok(s.clone())
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                ProducerStateManager::from_snapshot_bytes(&bad).is_err(),
                "byte {i}"
            );
        }
        assert!(ProducerStateManager::from_snapshot_bytes(&bytes[..bytes.len() - 1]).is_err());

        let mut t = s.clone();
        assert!(t.truncate_to(5));
        assert!(!t.truncate_to(3));
        assert_eq!(t.producers().map(|(id, _)| id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(t.map_end_offset(), 3);

        let mut e = s.clone();
        assert_eq!(
            e.remove_expired(
                1_000 + DEFAULT_PRODUCER_ID_EXPIRATION_MS - 1,
                DEFAULT_PRODUCER_ID_EXPIRATION_MS
            ),
            0
        );
        assert_eq!(
            e.remove_expired(
                1_000 + DEFAULT_PRODUCER_ID_EXPIRATION_MS,
                DEFAULT_PRODUCER_ID_EXPIRATION_MS
            ),
            2
        );
        assert_eq!(e.get(3).map(|e| e.last_timestamp), Some(5_000));
    }

    /// A transactional data batch header (offsets not assigned yet).
    fn txn(pid: i64, epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            attributes: 0x10,
            ..hdr(pid, epoch, seq, records)
        }
    }

    /// A marker header placed at `offset`.
    fn marker_at(pid: i64, epoch: i16, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            attributes: 0x30,
            base_sequence: -1,
            ..hdr(pid, epoch, 0, 1)
        }
    }

    fn end(control: ControlType, coordinator_epoch: i32) -> EndTxnMarker {
        EndTxnMarker {
            control,
            coordinator_epoch,
        }
    }

    #[test]
    fn transactions_start_at_their_first_batch_and_end_at_a_marker() {
        let mut s = ProducerStateManager::new(0);
        let mut leo = 0;
        send(&mut s, &mut leo, txn(1, 0, 0, 2)).unwrap(); // 0..=1
        send(&mut s, &mut leo, txn(2, 0, 0, 1)).unwrap(); // 2
        send(&mut s, &mut leo, txn(1, 0, 2, 1)).unwrap(); // 3: same transaction
        send(&mut s, &mut leo, hdr(3, 0, 0, 1)).unwrap(); // 4: idempotent only
        assert_eq!(s.get(1).unwrap().current_txn_first_offset, Some(0));
        assert_eq!(s.get(3).unwrap().current_txn_first_offset, None);
        assert_eq!(s.ongoing_txns().collect::<Vec<_>>(), vec![(0, 1), (2, 2)]);
        assert_eq!(s.first_unstable_offset(), Some(0));

        // Producer 1 commits at 5: completed, still unstable until the HW passes 5.
        let done = s.update(&marker_at(1, 0, 5), Some(end(ControlType::Commit, 3)));
        assert_eq!(
            done,
            Some(CompletedTxn {
                producer_id: 1,
                first_offset: 0,
                last_offset: 5,
                is_aborted: false
            })
        );
        let e = s.get(1).unwrap();
        assert_eq!(
            (
                e.current_txn_first_offset,
                e.coordinator_epoch,
                e.last_offset
            ),
            (None, 3, 5)
        );
        assert_eq!(e.batches.len(), 2, "a same-epoch marker keeps the batches");
        assert_eq!(s.ongoing_txns().collect::<Vec<_>>(), vec![(2, 2)]);
        assert_eq!(s.last_stable_offset_after(5), 2);
        assert_eq!(s.first_unstable_offset(), Some(0));
        s.on_high_watermark_updated(5);
        assert_eq!(s.first_unstable_offset(), Some(0), "marker at the HW");
        s.on_high_watermark_updated(6);
        assert_eq!(s.first_unstable_offset(), Some(2));
        assert_eq!(s.unreplicated_txns().count(), 0);

        // Producer 2 aborts with a bumped epoch: batches cleared, next data at sequence 0.
        let done = s.update(&marker_at(2, 1, 6), Some(end(ControlType::Abort, 3)));
        assert!(done.is_some_and(|c| c.is_aborted && c.first_offset == 2));
        assert_eq!(s.last_stable_offset_after(6), 7);
        let e = s.get(2).unwrap();
        assert_eq!((e.producer_epoch, e.batches.len()), (1, 0));
        leo = 7;
        assert!(send(&mut s, &mut leo, txn(2, 1, 1, 1)).is_err());
        send(&mut s, &mut leo, txn(2, 1, 0, 1)).unwrap();
        assert_eq!(s.get(2).unwrap().current_txn_first_offset, Some(7));

        // A marker without an ongoing transaction completes nothing but moves the entry.
        assert_eq!(
            s.update(&marker_at(4, 2, 8), Some(end(ControlType::Commit, 5))),
            None
        );
        let e = s.get(4).unwrap();
        assert_eq!(
            (e.producer_epoch, e.coordinator_epoch, e.last_offset),
            (2, 5, 8)
        );
        // Other control types only move the entry.
        assert_eq!(s.update(&marker_at(2, 1, 9), None), None);
        assert_eq!(s.get(2).unwrap().current_txn_first_offset, Some(7));

        // Truncating a marker away is inexact (the caller rebuilds, reopening the txn).
        let mut t = s.clone();
        assert!(!t.truncate_to(6));
        assert!(t.unreplicated_txns().all(|c| c.last_offset < 6));
        // Producers with an ongoing transaction never expire.
        let mut x = s.clone();
        x.remove_expired(i64::MAX, 1);
        assert_eq!(x.producers().map(|(id, _)| id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn leader_transaction_errors() {
        let mut s = ProducerStateManager::new(0);
        let mut leo = 0;
        send(&mut s, &mut leo, txn(1, 2, 0, 1)).unwrap();
        // Idempotent batch during the transaction: INVALID_TXN_STATE.
        let err = s.check(&hdr(1, 2, 1, 1)).unwrap_err();
        assert_eq!(
            err,
            ProducerError::InvalidTxnState {
                producer_id: 1,
                producer_epoch: 2,
                txn_first_offset: 0
            }
        );
        assert_eq!(err.kafka_code(), 48);
        // Also within one request that starts the transaction.
        let fresh = ProducerStateManager::new(0);
        assert!(matches!(
            fresh.check_batches([&txn(5, 0, 0, 1), &hdr(5, 0, 1, 1)]),
            Err(ProducerError::InvalidTxnState { .. })
        ));
        assert_eq!(
            fresh.check_batches([&txn(5, 0, 0, 1), &txn(5, 0, 1, 1)]),
            Ok(CheckOutcome::Append)
        );
        // Transactional batches are sequence-checked and deduplicated.
        assert!(matches!(
            s.check(&txn(1, 2, 5, 1)),
            Err(ProducerError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            s.check(&txn(1, 2, 0, 1)),
            Ok(CheckOutcome::Duplicate { .. })
        ));

        // Markers: older epoch, older coordinator epoch.
        s.update(&marker_at(1, 2, 1), Some(end(ControlType::Commit, 4)));
        assert_eq!(
            s.check_marker(1, 1, &end(ControlType::Abort, 4)),
            Err(ProducerError::InvalidProducerEpoch {
                producer_id: 1,
                producer_epoch: 1,
                current_epoch: 2
            })
        );
        let fenced = s
            .check_marker(1, 2, &end(ControlType::Abort, 3))
            .unwrap_err();
        assert_eq!(
            fenced,
            ProducerError::TransactionCoordinatorFenced {
                producer_id: 1,
                coordinator_epoch: 3,
                current_coordinator_epoch: 4
            }
        );
        assert_eq!(fenced.kafka_code(), 52);
        assert_eq!(s.check_marker(1, 3, &end(ControlType::Abort, 4)), Ok(()));
        assert_eq!(s.check_marker(99, 0, &end(ControlType::Abort, 0)), Ok(()));

        // Coordinator batches: no sequences, epochs still checked.
        let coord = |pid, epoch| BatchHeader {
            base_sequence: -1,
            ..txn(pid, epoch, 0, 1)
        };
        assert_eq!(s.check_coordinator_batches([&coord(1, 2)]), Ok(()));
        assert_eq!(s.check_coordinator_batches([&coord(8, 0)]), Ok(()));
        assert!(matches!(
            s.check_coordinator_batches([&coord(1, 1)]),
            Err(ProducerError::InvalidProducerEpoch { .. })
        ));
        let placed = BatchHeader {
            base_offset: 2,
            ..coord(1, 2)
        };
        s.update(&placed, None);
        let e = s.get(1).unwrap();
        assert_eq!(e.current_txn_first_offset, Some(2));
        assert_eq!(
            e.last_seq(),
            Some(0),
            "a coordinator batch adds no sequence"
        );
    }

    #[test]
    fn snapshots_v2_round_trip_and_v1_still_loads() {
        let mut s = ProducerStateManager::new(0);
        let mut leo = 0;
        send(&mut s, &mut leo, txn(1, 0, 0, 2)).unwrap(); // 0..=1
        send(&mut s, &mut leo, txn(2, 0, 0, 1)).unwrap(); // 2
        s.update(&marker_at(2, 0, 3), Some(end(ControlType::Abort, 1)));
        send(&mut s, &mut leo, hdr(3, 0, 0, 1)).unwrap();
        s.advance_to(5);
        assert_eq!(s.unreplicated_txns().count(), 1);
        let bytes = s.to_snapshot_bytes();
        assert_eq!(&bytes[..2], &[0, 2]);
        assert_eq!(
            ProducerStateManager::from_snapshot_bytes(&bytes),
            Ok(s.clone())
        );
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(
                ProducerStateManager::from_snapshot_bytes(&bad).is_err(),
                "byte {i}"
            );
        }

        // A version 1 file (written by the previous release) of an idempotent producer.
        let mut v1 = Vec::new();
        v1.extend_from_slice(&1u16.to_be_bytes());
        v1.extend_from_slice(&0u32.to_be_bytes());
        v1.extend_from_slice(&10i64.to_be_bytes());
        v1.extend_from_slice(&1u32.to_be_bytes());
        v1.extend_from_slice(&7i64.to_be_bytes());
        v1.extend_from_slice(&3i16.to_be_bytes());
        v1.extend_from_slice(&1_000i64.to_be_bytes());
        v1.extend_from_slice(&9i64.to_be_bytes());
        v1.push(1);
        for v in [0i32, 1] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        for v in [8i64, 9, 1_000] {
            v1.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&v1[6..]);
        v1[2..6].copy_from_slice(&crc.to_be_bytes());
        let old = ProducerStateManager::from_snapshot_bytes(&v1).unwrap();
        let e = old.get(7).unwrap();
        assert_eq!(
            (e.producer_epoch, e.last_offset, e.last_seq()),
            (3, 9, Some(1))
        );
        assert_eq!(
            (e.current_txn_first_offset, e.coordinator_epoch),
            (None, -1)
        );
        assert_eq!(old.map_end_offset(), 10);
        assert_eq!(old.first_unstable_offset(), None);
        // Rewritten as version 2, it loads back the same.
        assert_eq!(
            ProducerStateManager::from_snapshot_bytes(&old.to_snapshot_bytes()),
            Ok(old)
        );
    }
}
