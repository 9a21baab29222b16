//! # cairn-txn — the transaction coordinator's state machine
//!
//! Owns Kafka's transactional ids (KIP-98 exactly-once, with KIP-360's producer recovery
//! and KIP-890 part 1's partition verification): which producer id and epoch each id has,
//! the partitions of its open transaction, and the transitions InitProducerId,
//! AddPartitionsToTxn (and AddOffsetsToTxn), EndTxn, the transaction timeout, marker
//! completion and transactional id expiry make. One [`TxnCoordinator`] holds the ids of
//! one `__transaction_state` partition; [`record`] is the byte format of that partition.
//!
//! ## What it must never do
//! - Read the clock, do I/O, spawn threads or draw randomness: time comes in as `now_ms`,
//!   producer ids come from the host's allocator, and work comes out as values
//!   ([`Transition`]s to append, [`MarkerJob`]s to send).
//! - Change what a client sees before the log has it: every change is prepared, written
//!   by the host, and only then applied ([`TxnCoordinator::complete`]).
//! - Send WriteTxnMarkers, append to a log or answer a client; the broker does that.
//!
//! ## Who calls it
//! The broker's transaction coordinator, one `TxnCoordinator` per led
//! `__transaction_state` partition (the coordinator epoch is that partition's leader
//! epoch), each behind a mutex. On election it replays the partition
//! ([`TxnCoordinator::replay`], in log order), then resends
//! [`TxnCoordinator::pending_markers`]. Each request handler calls one method; a
//! [`Transition`] it returns is appended with acks=all (key [`Transition::key`], value
//! [`Transition::value`], `None` a tombstone), then handed to `complete` (or to
//! `abort_pending` when the append failed), and only then is the client answered. While
//! a write is pending, other requests of the id get CONCURRENT_TRANSACTIONS. Markers of a
//! completed `PrepareCommit`/`PrepareAbort` ([`Transition::markers`]) are sent next; when
//! all are written, [`TxnCoordinator::complete_markers`] (or
//! [`TxnCoordinator::complete_marker_job`], which also checks the job is still current)
//! gives the `Complete*` transition; if that write fails, call it again (the markers are
//! already written).
//! Timers call [`TxnCoordinator::expire_timed_out`] (`transaction.abort.timed.out.
//! transaction.cleanup.interval.ms`) and [`TxnCoordinator::expire_transactional_ids`]
//! (`transactional.id.expiration.ms`).
//!
//! ## What survives a crash
//! Exactly the completed writes: replaying them rebuilds every id's metadata except
//! `last_producer_epoch` (not in the record format; -1 after loading, as in Kafka, so a
//! KIP-360 retry that spans a coordinator change is fenced). Pending writes are lost and
//! the clients retry; transactions in `Prepare*` resume their markers.
//!
//! ## Rules: state × request → result (classic protocol, Kafka's `TransactionCoordinator`)
//! Checks run in this order. InitProducerId: empty id → INVALID_REQUEST; timeout not in
//! `1..=max_timeout_ms` → INVALID_TRANSACTION_TIMEOUT; pending write → CONCURRENT; a
//! KIP-360 `expected` that is neither the current producer id nor the previous one at an
//! exhausted epoch → PRODUCER_FENCED. Add/Verify/EndTxn: unknown id or other producer id
//! → INVALID_PRODUCER_ID_MAPPING; other epoch (older or newer) → PRODUCER_FENCED; then
//! (Add/EndTxn) pending write → CONCURRENT. Then by state:
//!
//! | state | InitProducerId | AddPartitions | EndTxn commit / abort | complete_markers | timeout | id expiry |
//! |---|---|---|---|---|---|---|
//! | (unknown) | fresh pid (allocated), epoch 0, Empty | INVALID_PRODUCER_ID_MAPPING | INVALID_PRODUCER_ID_MAPPING | TRANSACTIONAL_ID_NOT_FOUND | — | — |
//! | Empty | epoch+1 → Empty ¹ | → Ongoing, start = now | INVALID_TXN_STATE | INVALID_TXN_STATE | — | tombstone ² |
//! | Ongoing | AbortFirst: PrepareAbort at epoch+1, CONCURRENT to client | → Ongoing ∪ partitions (`None` if all present) | → PrepareCommit / PrepareAbort | INVALID_TXN_STATE | PrepareAbort at epoch+1 ³ | — |
//! | PrepareCommit | CONCURRENT | CONCURRENT | CONCURRENT ⁴ | → CompleteCommit, partitions cleared | — | — |
//! | PrepareAbort | CONCURRENT | CONCURRENT | CONCURRENT ⁴ | → CompleteAbort, partitions cleared | — | — |
//! | CompleteCommit | epoch+1 → Empty ¹ | → Ongoing, start = now | AlreadyDone / INVALID_TXN_STATE | INVALID_TXN_STATE | — | tombstone ² |
//! | CompleteAbort | epoch+1 → Empty ¹ | → Ongoing, start = now | INVALID_TXN_STATE / AlreadyDone | INVALID_TXN_STATE | — | tombstone ² |
//!
//! ¹ Epochs: with no `expected`, epoch+1 and `last_producer_epoch` = -1. With
//! `expected` = the current epoch, epoch+1 and `last_producer_epoch` = the old epoch; with
//! `expected` = `last_producer_epoch`, a retry whose answer was lost, the same epoch again
//! (still written); any other expected epoch → PRODUCER_FENCED. When the current epoch is
//! exhausted (≥ `i16::MAX - 1`, which Kafka never hands out so that it can always fence
//! once more) and `expected` is absent or names it, a fresh producer id at epoch 0
//! replaces it, `prev_producer_id` records the old one and `last_producer_epoch` the old
//! epoch if `expected` was given. `prev_producer_id` is always the producer id before the
//! last InitProducerId; `next_producer_id` is always -1 (it is transactions v2's).
//! ² When `last_update_ms <= now_ms - transactional_id_expiration_ms` and no write is
//! pending (Kafka's `<=`).
//! ³ When `txn_start_ms + timeout_ms < now_ms` and no write is pending. The bump fences
//! the producer; markers carry the bumped epoch, and the fenced producer's next
//! InitProducerId bumps again.
//! ⁴ Kafka holds a pending `Complete*` while markers are written, so every EndTxn answers
//! CONCURRENT_TRANSACTIONS there (its INVALID_TXN_STATE branch is unreachable).
//!
//! Verify (AddPartitionsToTxn v4 `verifyOnly`): after the producer checks, `Prepare*` →
//! CONCURRENT; partitions not in the transaction → TRANSACTION_ABORTABLE; else `Ok`. It
//! reads the committed metadata and ignores a pending write, as Kafka does.
//!
//! Differences from Kafka, all unobservable by a client: the fence of an ongoing
//! transaction is applied only once written, so a failed fence write leaves the epoch
//! as it was (Kafka bumps in memory and remembers `hasFailedEpochFence` so as not to bump
//! twice; both retry with the same epoch); a first InitProducerId whose write fails leaves
//! no metadata behind (Kafka keeps an epoch -1 entry) and the retry allocates another
//! producer id; an exhausted epoch with an `expected` epoch matching neither the current
//! nor the last one is PRODUCER_FENCED (Kafka throws).
//!
//! Out of scope: transactions v2 (KIP-890 part 2: an epoch bump on every EndTxn, the
//! `next_producer_id` handover and `ClientTransactionVersion`, which is read and
//! ignored), KIP-939 two-phase commit, and InitProducerId without a transactional id
//! (the broker answers that from its allocator alone).
//!
//! ## Tests
//! Beside the unit tests of each rule, `sim` runs seeded fault schedules (zombie
//! producers, failed and unacknowledged writes, timeouts, expiry, failover by replaying
//! the log) and checks after every step that the coordinator equals its log, that every
//! written record is a legal transition of the one before, that no request with an older
//! epoch succeeds, and that every transaction commits exactly its added partitions or
//! aborts, never both. A failing seed prints `CAIRN_TXN_SEED=<seed>` to replay it.
//!
//! ## Example: a producer commits one transaction
//! ```
//! use cairn_txn::*;
//!
//! let mut c = TxnCoordinator::new(0, 5, TxnConfig::default());
//! let mut next_pid = 1000;
//! let mut alloc = || { next_pid += 1; next_pid };
//! let InitOutcome::Write(t) = c.init_producer_id("tx", 60_000, None, 0, &mut alloc).unwrap() else { panic!() };
//! let (pid, epoch) = t.producer_id_and_epoch().unwrap();
//! assert_eq!((pid, epoch), (1001, 0));
//! // The host appends t.key() / t.value() to __transaction_state, then:
//! c.complete(t);
//! let tp = TopicPartition::new("orders", 3);
//! let t = c.add_partitions("tx", pid, epoch, &[tp.clone()], 10).unwrap().unwrap();
//! c.complete(t);
//! assert_eq!(c.verify_partitions("tx", pid, epoch, &[tp.clone()]), Ok(()));
//! let EndOutcome::Write(t) = c.end_txn("tx", pid, epoch, true, 20).unwrap() else { panic!() };
//! let job = t.markers().unwrap();
//! assert_eq!((job.commit, job.coordinator_epoch, job.partitions.clone()), (true, 5, vec![tp]));
//! c.complete(t); // now answer EndTxn, then send WriteTxnMarkers
//! let t = c.complete_markers("tx", 30).unwrap();
//! c.complete(t);
//! assert_eq!(c.describe("tx").unwrap().state.as_str(), "CompleteCommit");
//! // A retried EndTxn is answered without a write.
//! assert_eq!(c.end_txn("tx", pid, epoch, true, 40), Ok(EndOutcome::AlreadyDone));
//! ```

pub mod coordinator;
pub mod error;
pub mod metadata;
pub mod record;

pub use coordinator::{EndOutcome, InitOutcome, MarkerJob, Transition, TxnConfig, TxnCoordinator};
pub use error::{TxnApi, TxnError};
pub use metadata::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TopicPartition, TxnMetadata, TxnState};
pub use record::{CodecError, TxnLogRecord, decode, encode_key, encode_value};

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
