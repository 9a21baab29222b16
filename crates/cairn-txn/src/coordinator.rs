//! [`TxnCoordinator`]: the transactions of one `__transaction_state` partition, and the
//! rules of InitProducerId, AddPartitionsToTxn, EndTxn, marker completion, the transaction
//! timeout and transactional id expiry (Kafka's `TransactionCoordinator` with
//! `TransactionMetadata`'s transitions, classic protocol).
//!
//! Every change is two-phase: an operation checks the request against the committed
//! metadata and returns a [`Transition`] (the whole new metadata, or a tombstone) while
//! the id is marked as having a pending write; the host appends it and reports back with
//! [`TxnCoordinator::complete`] or [`TxnCoordinator::abort_pending`]. The committed map is
//! therefore always exactly what replaying the partition gives (except the in-memory
//! `last_producer_epoch`, which the record format lacks).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::TxnError;
use crate::metadata::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TopicPartition, TxnMetadata, TxnState};
use crate::record::{self, TxnLogRecord};

/// The coordinator's settings, Kafka's broker configs of the same meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` a producer may
    /// ask for (Kafka's default 900000, 15 minutes).
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: how long an id with no open transaction is kept
    /// after its last change (Kafka's default 604800000, 7 days).
    pub transactional_id_expiration_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            max_timeout_ms: 900_000,
            transactional_id_expiration_ms: 604_800_000,
        }
    }
}

/// Transaction markers to write: one WriteTxnMarkers entry per partition leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The epoch the markers carry; after a fence or a timeout it is the bumped epoch, so
    /// that the partition leaders fence the old producer too.
    pub producer_epoch: i16,
    pub commit: bool,
    /// The leader epoch of the `__transaction_state` partition, so partition leaders
    /// refuse markers from a deposed coordinator (TRANSACTION_COORDINATOR_FENCED).
    pub coordinator_epoch: i32,
    /// In order; empty when the transaction had no partition, then
    /// [`TxnCoordinator::complete_markers`] may be called at once.
    pub partitions: Vec<TopicPartition>,
}

/// A prepared change of one transactional id: append [`Transition::key`] and
/// [`Transition::value`] to `__transaction_state` with acks=all, then hand it back to
/// [`TxnCoordinator::complete`] (or [`TxnCoordinator::abort_pending`] when the append
/// failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub transactional_id: String,
    /// The metadata once written; `None` is a tombstone (the id expired).
    pub new: Option<TxnMetadata>,
    /// The epoch of the coordinator that prepared it.
    pub coordinator_epoch: i32,
    /// Which pending write of its coordinator this is.
    write_id: u64,
}

impl Transition {
    /// The record key.
    pub fn key(&self) -> Vec<u8> {
        record::encode_key(&self.transactional_id)
    }

    /// The record value; `None` for a tombstone.
    pub fn value(&self) -> Option<Vec<u8>> {
        self.new.as_ref().map(record::encode_value)
    }

    /// The markers to write once this transition is complete: `Some` for a transition to
    /// `PrepareCommit` or `PrepareAbort`.
    pub fn markers(&self) -> Option<MarkerJob> {
        let m = self.new.as_ref()?;
        marker_job(m, self.coordinator_epoch)
    }

    /// The producer id and epoch the transition writes (an InitProducerId answer).
    pub fn producer_id_and_epoch(&self) -> Option<(i64, i16)> {
        self.new.as_ref().map(|m| (m.producer_id, m.producer_epoch))
    }
}

fn marker_job(m: &TxnMetadata, coordinator_epoch: i32) -> Option<MarkerJob> {
    let commit = match m.state {
        TxnState::PrepareCommit => true,
        TxnState::PrepareAbort => false,
        _ => return None,
    };
    Some(MarkerJob {
        transactional_id: m.transactional_id.clone(),
        producer_id: m.producer_id,
        producer_epoch: m.producer_epoch,
        commit,
        coordinator_epoch,
        partitions: m.partitions.iter().cloned().collect(),
    })
}

/// What InitProducerId must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Write it, then answer the client with its producer id and epoch
    /// ([`Transition::producer_id_and_epoch`]).
    Write(Transition),
    /// A transaction is open: write this abort (`PrepareAbort` with the epoch bumped,
    /// which fences the old producer), then write its markers, and answer the client
    /// CONCURRENT_TRANSACTIONS so that it retries and gets a second bump.
    AbortFirst(Transition),
}

/// What EndTxn must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Write `PrepareCommit`/`PrepareAbort`, answer the client once it is written, then
    /// write the markers ([`Transition::markers`]).
    Write(Transition),
    /// A retry of an EndTxn whose outcome is already complete: answer success.
    AlreadyDone,
}

/// One transactional id: its committed metadata and its pending write.
#[derive(Debug, Clone)]
struct Entry {
    /// What the log holds; `None` while the first InitProducerId of the id is pending.
    current: Option<TxnMetadata>,
    pending: Option<Pending>,
}

#[derive(Debug, Clone)]
struct Pending {
    write_id: u64,
    new: Option<TxnMetadata>,
}

/// Kafka refuses to hand out the last epochs so that it can always fence once more.
fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The transactions of one `__transaction_state` partition this broker leads.
#[derive(Debug, Clone)]
pub struct TxnCoordinator {
    partition: i32,
    coordinator_epoch: i32,
    config: TxnConfig,
    entries: BTreeMap<String, Entry>,
    next_write_id: u64,
}

impl TxnCoordinator {
    /// A coordinator for `__transaction_state` partition `partition`, led at leader epoch
    /// `coordinator_epoch`; empty until [`TxnCoordinator::replay`] loads it.
    pub fn new(partition: i32, coordinator_epoch: i32, config: TxnConfig) -> Self {
        TxnCoordinator {
            partition,
            coordinator_epoch,
            config,
            entries: BTreeMap::new(),
            next_write_id: 0,
        }
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    /// Replays one record read from the partition while loading (in log order). Later
    /// records win; tombstones remove. Kafka never writes `Dead` or `PrepareEpochFence`:
    /// a `Dead` value is read as a removal and a `PrepareEpochFence` one as the
    /// `PrepareAbort` it was heading for.
    pub fn replay(&mut self, record: TxnLogRecord) {
        match record.metadata {
            None => {
                self.entries.remove(&record.transactional_id);
            }
            Some(m) if m.state == TxnState::Dead => {
                self.entries.remove(&record.transactional_id);
            }
            Some(mut m) => {
                if m.state == TxnState::PrepareEpochFence {
                    m.state = TxnState::PrepareAbort;
                }
                m.transactional_id.clone_from(&record.transactional_id);
                self.entries.insert(
                    record.transactional_id,
                    Entry {
                        current: Some(m),
                        pending: None,
                    },
                );
            }
        }
    }

    /// Transactions in `PrepareCommit`/`PrepareAbort` with no pending write, whose markers
    /// must be (re)sent: after loading, all of them.
    pub fn pending_markers(&self) -> Vec<MarkerJob> {
        self.entries
            .values()
            .filter(|e| e.pending.is_none())
            .filter_map(|e| marker_job(e.current.as_ref()?, self.coordinator_epoch))
            .collect()
    }

    /// InitProducerId with a transactional id. `expected` is KIP-360's producer id and
    /// epoch sent by a client recovering from an error, or `None`. `alloc_producer_id`
    /// gives a fresh producer id when one is needed (a new id, or epoch exhaustion).
    pub fn init_producer_id(
        &mut self,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: i64,
        alloc_producer_id: &mut dyn FnMut() -> i64,
    ) -> Result<InitOutcome, TxnError> {
        if id.is_empty() {
            return Err(TxnError::InvalidRequest {
                reason: "empty transactional id",
            });
        }
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout {
                timeout_ms,
                max_timeout_ms: self.config.max_timeout_ms,
            });
        }
        if let Some((pid, epoch)) = expected
            && (pid < 0 || epoch < 0)
        {
            // KafkaApis refuses a pair of which only one half is -1; both -1 is `None`.
            return Err(TxnError::InvalidRequest {
                reason: "expected producer id and epoch must both be set or both be -1",
            });
        }
        let mut alloc = || {
            let pid = alloc_producer_id();
            assert!(pid >= 0, "allocated producer id {pid} is negative");
            pid
        };
        let coordinator_epoch = self.coordinator_epoch;
        let entry = self.entries.get(id);
        if entry.is_some_and(|e| e.pending.is_some()) {
            return Err(concurrent(id));
        }
        let Some(m) = entry.and_then(|e| e.current.as_ref()) else {
            // A new transactional id: any expected pair is accepted (Kafka's metadata
            // would still have epoch -1), the client gets a fresh id at epoch 0.
            let new = TxnMetadata {
                transactional_id: id.to_string(),
                producer_id: alloc(),
                prev_producer_id: NO_PRODUCER_ID,
                next_producer_id: NO_PRODUCER_ID,
                producer_epoch: 0,
                last_producer_epoch: NO_PRODUCER_EPOCH,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                txn_start_ms: -1,
                last_update_ms: now_ms,
            };
            return Ok(InitOutcome::Write(self.prepare(id, Some(new))));
        };
        if let Some((pid, epoch)) = expected {
            // Kafka's isValidProducerId: the expected id is the current one (the epoch is
            // checked below), or the previous one at an exhausted epoch (a retry of the
            // InitProducerId that rotated the id).
            let valid = m.producer_epoch == NO_PRODUCER_EPOCH
                || pid == m.producer_id
                || (pid == m.prev_producer_id && is_epoch_exhausted(epoch));
            if !valid {
                return Err(fenced(m, pid, epoch));
            }
        }
        match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => Err(concurrent(id)),
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let mut new = m.clone();
                new.prev_producer_id = m.producer_id;
                new.next_producer_id = NO_PRODUCER_ID;
                new.state = TxnState::Empty;
                new.timeout_ms = timeout_ms;
                new.partitions.clear();
                new.txn_start_ms = -1;
                new.last_update_ms = now_ms;
                let rotate = is_epoch_exhausted(m.producer_epoch)
                    && expected.is_none_or(|(_, epoch)| epoch == m.producer_epoch);
                if rotate {
                    new.producer_id = alloc();
                    new.producer_epoch = 0;
                    new.last_producer_epoch = if expected.is_some() {
                        m.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                } else {
                    let (epoch, last) = match expected {
                        None => (m.producer_epoch + 1, NO_PRODUCER_EPOCH),
                        Some((_, e))
                            if m.producer_epoch == NO_PRODUCER_EPOCH || e == m.producer_epoch =>
                        {
                            (m.producer_epoch + 1, m.producer_epoch)
                        }
                        // A retry of a bump whose answer was lost: the same epoch again.
                        Some((_, e)) if e == m.last_producer_epoch => {
                            (m.producer_epoch, m.last_producer_epoch)
                        }
                        Some((pid, e)) => return Err(fenced(m, pid, e)),
                    };
                    new.producer_epoch = epoch;
                    new.last_producer_epoch = last;
                }
                Ok(InitOutcome::Write(self.prepare(id, Some(new))))
            }
            TxnState::Ongoing => {
                let new = fence_abort(m, now_ms).ok_or_else(|| TxnError::InvalidTxnState {
                    transactional_id: id.to_string(),
                    state: m.state,
                    operation: "fence a producer at epoch i16::MAX",
                })?;
                debug_assert!(marker_job(&new, coordinator_epoch).is_some());
                Ok(InitOutcome::AbortFirst(self.prepare(id, Some(new))))
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                unreachable!("{id} is {}: never stored", m.state)
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's `__consumer_offsets`
    /// partition). `None`: every partition is already in the ongoing transaction.
    pub fn add_partitions(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
        now_ms: i64,
    ) -> Result<Option<Transition>, TxnError> {
        let m = self.owned_by(id, producer_id, epoch)?;
        if self.has_pending_write(id) {
            return Err(concurrent(id));
        }
        let new = match m.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => return Err(concurrent(id)),
            TxnState::Ongoing if partitions.iter().all(|p| m.partitions.contains(p)) => {
                return Ok(None);
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Ongoing => {
                let mut new = m.clone();
                if m.state != TxnState::Ongoing {
                    new.txn_start_ms = now_ms;
                }
                new.state = TxnState::Ongoing;
                new.partitions.extend(partitions.iter().cloned());
                new.last_update_ms = now_ms;
                new.next_producer_id = NO_PRODUCER_ID;
                new
            }
            TxnState::Dead | TxnState::PrepareEpochFence => {
                unreachable!("{id} is {}: never stored", m.state)
            }
        };
        Ok(Some(self.prepare(id, Some(new))))
    }

    /// AddPartitionsToTxn v4 `verifyOnly` (KIP-890 part 1), asked by a partition leader
    /// before it appends a transactional batch: `Ok` iff the producer's transaction holds
    /// every partition. Like Kafka it reads the committed metadata and ignores a pending
    /// write.
    pub fn verify_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<(), TxnError> {
        let m = self.owned_by(id, producer_id, epoch)?;
        if m.state.is_prepare() {
            return Err(concurrent(id));
        }
        let missing: Vec<TopicPartition> = partitions
            .iter()
            .filter(|p| !m.partitions.contains(p))
            .cloned()
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(TxnError::TransactionAbortable {
                transactional_id: id.to_string(),
                missing,
            })
        }
    }

    /// EndTxn from the producer (classic protocol: its epoch must be the current one).
    pub fn end_txn(
        &mut self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<EndOutcome, TxnError> {
        let m = self.owned_by(id, producer_id, epoch)?;
        if self.has_pending_write(id) {
            return Err(concurrent(id));
        }
        let invalid = |operation| TxnError::InvalidTxnState {
            transactional_id: id.to_string(),
            state: m.state,
            operation,
        };
        let operation = if commit { "commit" } else { "abort" };
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut new = m.clone();
                new.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                new.last_update_ms = now_ms;
                new.next_producer_id = NO_PRODUCER_ID;
                Ok(EndOutcome::Write(self.prepare(id, Some(new))))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                Ok(EndOutcome::AlreadyDone)
            }
            (TxnState::CompleteCommit, false) | (TxnState::CompleteAbort, true) => {
                Err(invalid(operation))
            }
            // Kafka holds a pending Complete* state while markers are written, so any EndTxn
            // gets CONCURRENT_TRANSACTIONS until they are.
            (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => Err(concurrent(id)),
            (TxnState::Empty, _) => Err(invalid(operation)),
            (TxnState::Dead | TxnState::PrepareEpochFence, _) => {
                unreachable!("{id} is {}: never stored", m.state)
            }
        }
    }

    /// After every partition's marker is written: the transition to
    /// `CompleteCommit`/`CompleteAbort`, with the partitions cleared.
    pub fn complete_markers(&mut self, id: &str, now_ms: i64) -> Result<Transition, TxnError> {
        let m = self
            .committed(id)
            .ok_or_else(|| TxnError::TransactionalIdNotFound {
                transactional_id: id.to_string(),
            })?;
        if self.has_pending_write(id) {
            return Err(concurrent(id));
        }
        let state = match m.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            state => {
                return Err(TxnError::InvalidTxnState {
                    transactional_id: id.to_string(),
                    state,
                    operation: "complete markers",
                });
            }
        };
        let mut new = m.clone();
        new.state = state;
        new.partitions.clear();
        new.last_update_ms = now_ms;
        Ok(self.prepare(id, Some(new)))
    }

    /// [`TxnCoordinator::complete_markers`] checked against `job`: refuses
    /// (INVALID_TXN_STATE) when the id is no longer preparing the outcome of the job's
    /// producer id and epoch (a job from before a fence, say). Transactions of one
    /// producer epoch cannot be told apart, so the host must still run one job per
    /// prepared transaction.
    pub fn complete_marker_job(
        &mut self,
        job: &MarkerJob,
        now_ms: i64,
    ) -> Result<Transition, TxnError> {
        let id = job.transactional_id.as_str();
        if let Some(m) = self.committed(id) {
            let matches = m.producer_id == job.producer_id
                && m.producer_epoch == job.producer_epoch
                && marker_job(m, self.coordinator_epoch).is_some_and(|j| j.commit == job.commit);
            if !matches {
                return Err(TxnError::InvalidTxnState {
                    transactional_id: id.to_string(),
                    state: m.state,
                    operation: "complete markers of an older transaction",
                });
            }
        }
        self.complete_markers(id, now_ms)
    }

    /// Ongoing transactions whose start + timeout is before `now_ms` and that have no
    /// pending write: for each, a transition aborting it with the producer epoch bumped
    /// (Kafka's timeout abort fences the producer; the markers carry the bumped epoch).
    pub fn expire_timed_out(&mut self, now_ms: i64) -> Vec<Transition> {
        let expired: Vec<TxnMetadata> = self
            .entries
            .values()
            .filter(|e| e.pending.is_none())
            .filter_map(|e| e.current.as_ref())
            .filter(|m| {
                m.state == TxnState::Ongoing
                    && m.txn_start_ms.saturating_add(i64::from(m.timeout_ms)) < now_ms
            })
            .filter_map(|m| fence_abort(m, now_ms))
            .collect();
        expired
            .into_iter()
            .map(|new| {
                let id = new.transactional_id.clone();
                self.prepare(&id, Some(new))
            })
            .collect()
    }

    /// Ids in `Empty`/`CompleteCommit`/`CompleteAbort` with no pending write whose last
    /// change is `transactional_id_expiration_ms` or more before `now_ms`: a tombstone for
    /// each.
    pub fn expire_transactional_ids(&mut self, now_ms: i64) -> Vec<Transition> {
        let deadline_ms = now_ms.saturating_sub(self.config.transactional_id_expiration_ms);
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.pending.is_none())
            .filter(|(_, e)| {
                e.current.as_ref().is_some_and(|m| {
                    m.state.is_expiration_allowed() && m.last_update_ms <= deadline_ms
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        expired.iter().map(|id| self.prepare(id, None)).collect()
    }

    /// The write of `t` is durable: it becomes the id's committed metadata (a tombstone
    /// removes the id). A transition of another coordinator epoch is ignored.
    ///
    /// # Panics
    /// When `t` is not this coordinator's pending write for its id (completed twice, or
    /// never prepared): the log and the coordinator would disagree.
    pub fn complete(&mut self, t: Transition) {
        if t.coordinator_epoch != self.coordinator_epoch {
            return;
        }
        let entry = self.take_pending(&t);
        match t.new {
            None => {
                self.entries.remove(&t.transactional_id);
            }
            Some(new) => {
                entry.current = Some(new);
            }
        }
    }

    /// The write of `t` failed: the id keeps its committed metadata and takes requests
    /// again. A transition of another coordinator epoch is ignored.
    ///
    /// # Panics
    /// When `t` is not this coordinator's pending write for its id.
    pub fn abort_pending(&mut self, t: &Transition) {
        if t.coordinator_epoch != self.coordinator_epoch {
            return;
        }
        let entry = self.take_pending(t);
        if entry.current.is_none() {
            self.entries.remove(&t.transactional_id);
        }
    }

    /// The committed metadata of `id` (DescribeTransactions).
    pub fn describe(&self, id: &str) -> Option<&TxnMetadata> {
        self.committed(id)
    }

    /// Every committed transactional id, in id order (ListTransactions).
    pub fn list(&self) -> impl Iterator<Item = &TxnMetadata> {
        self.entries.values().filter_map(|e| e.current.as_ref())
    }

    /// Whether a write of `id` is pending.
    pub fn has_pending_write(&self, id: &str) -> bool {
        self.entries.get(id).is_some_and(|e| e.pending.is_some())
    }

    fn committed(&self, id: &str) -> Option<&TxnMetadata> {
        self.entries.get(id)?.current.as_ref()
    }

    /// The committed metadata of `id` if `producer_id` and `epoch` own it.
    fn owned_by(&self, id: &str, producer_id: i64, epoch: i16) -> Result<&TxnMetadata, TxnError> {
        if id.is_empty() {
            return Err(TxnError::InvalidRequest {
                reason: "empty transactional id",
            });
        }
        let m = self
            .committed(id)
            .filter(|m| m.producer_id == producer_id)
            .ok_or_else(|| TxnError::InvalidProducerIdMapping {
                transactional_id: id.to_string(),
                producer_id,
            })?;
        if m.producer_epoch != epoch {
            return Err(fenced(m, producer_id, epoch));
        }
        Ok(m)
    }

    fn prepare(&mut self, id: &str, new: Option<TxnMetadata>) -> Transition {
        let write_id = self.next_write_id;
        self.next_write_id += 1;
        if let Some(new) = &new {
            assert_eq!(new.transactional_id, id);
            assert!(new.producer_id >= 0 && new.producer_epoch >= 0, "{new:?}");
            assert!(
                new.state != TxnState::Empty || new.partitions.is_empty(),
                "{new:?}"
            );
        }
        let entry = self.entries.entry(id.to_string()).or_insert(Entry {
            current: None,
            pending: None,
        });
        assert!(entry.pending.is_none(), "{id} already has a pending write");
        entry.pending = Some(Pending {
            write_id,
            new: new.clone(),
        });
        Transition {
            transactional_id: id.to_string(),
            new,
            coordinator_epoch: self.coordinator_epoch,
            write_id,
        }
    }

    fn take_pending(&mut self, t: &Transition) -> &mut Entry {
        let entry = self.entries.get_mut(&t.transactional_id);
        let entry = entry.unwrap_or_else(|| panic!("{} has no pending write", t.transactional_id));
        let pending = entry.pending.take();
        assert!(
            pending
                .as_ref()
                .is_some_and(|p| p.write_id == t.write_id && p.new == t.new),
            "{} has pending write {pending:?}, not {t:?}",
            t.transactional_id
        );
        entry
    }
}

/// The abort that fences `m`'s producer: `PrepareAbort` at the next epoch (Kafka's
/// `prepareFenceProducerEpoch` followed at once by the abort). `None` at `i16::MAX`,
/// which no producer is ever given.
fn fence_abort(m: &TxnMetadata, now_ms: i64) -> Option<TxnMetadata> {
    let mut new = m.clone();
    new.producer_epoch = m.producer_epoch.checked_add(1)?;
    new.last_producer_epoch = NO_PRODUCER_EPOCH;
    new.state = TxnState::PrepareAbort;
    new.last_update_ms = now_ms;
    new.next_producer_id = NO_PRODUCER_ID;
    Some(new)
}

fn concurrent(id: &str) -> TxnError {
    TxnError::ConcurrentTransactions {
        transactional_id: id.to_string(),
    }
}

fn fenced(m: &TxnMetadata, producer_id: i64, producer_epoch: i16) -> TxnError {
    TxnError::ProducerFenced {
        transactional_id: m.transactional_id.clone(),
        producer_id,
        producer_epoch,
        current_epoch: m.producer_epoch,
    }
}
