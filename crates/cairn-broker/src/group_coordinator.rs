//! [`GroupCoordinator`]: the async shell around `cairn_group`'s state machines — one per
//! `__consumer_offsets` partition this broker leads.
//!
//! ## What it owns
//! - Placement: group G belongs to partition `abs(G.hashCode()) % N` of
//!   `__consumer_offsets` (Java's `String.hashCode`, Kafka's `Utils.abs`, so that Kafka
//!   tooling computes the same partition), N being the topic's partition count, or
//!   `offsets.topic.num.partitions` before the topic exists. The coordinator of G is the
//!   current leader of that partition (FindCoordinator answers with it).
//! - Loading and unloading (failover): a *shard* — the state machine of one partition —
//!   is served only while this broker leads the partition at the leader epoch the shard
//!   was loaded at. Every request checks that first; a shard whose partition moved away
//!   (or whose epoch changed) is unloaded — dropped, its parked joins and syncs answered
//!   NOT_COORDINATOR — and the request answered NOT_COORDINATOR, so that clients look the
//!   coordinator up again. The timer task unloads such shards too, so parked joins never
//!   hang on a broker that lost leadership. A partition that is led here but not loaded is
//!   loaded by the first request for it (and at startup, if led then): the loader waits,
//!   bounded per request ([`LOAD_WAIT_MS`]; meanwhile COORDINATOR_LOAD_IN_PROGRESS, which
//!   clients retry), until the partition's high watermark reaches its log end offset —
//!   a new leader's high watermark lags until its followers have caught up, and everything
//!   the previous coordinator had committed is below that log end offset — and then
//!   replays the records below the high watermark into a fresh state machine. A partition
//!   this broker does not lead answers NOT_COORDINATOR.
//! - Persistence: after every call into a state machine its `Append` effects are encoded
//!   in Kafka's key/value formats ([`cairn_group::records`]) as v2 batches and appended
//!   under the state machine's lock (so the log order is the state order; refused unless
//!   the shard's leader epoch is still current); then, without the lock, the leader-side
//!   group committer makes them durable here and the call waits — like an `acks=all`
//!   produce — until the high watermark passes them (every in-sync replica has them), at
//!   most [`OFFSETS_COMMIT_TIMEOUT_MS`] (Kafka's `offsets.commit.timeout.ms`); only then
//!   are the call's answers delivered. An OffsetCommit is therefore answered only once its
//!   record is on disk on every in-sync replica of its partition.
//! - Transactional offsets (TxnOffsetCommit): the state machine's
//!   [`Effect::AppendTxnOffsets`] is appended as ONE transactional batch of the producer
//!   (base sequence -1) with [`Partition::append_as_coordinator`] and acknowledged like an
//!   OffsetCommit; if it is not appended or not replicated, its offsets stop being pending.
//!   The WriteTxnMarkers handler calls [`GroupCoordinator::complete_txn`] once a marker is
//!   in the partition; loading replays transactional batches as pending offsets and
//!   control batches as markers (`replay_batch`).
//! - Delayed answers: JoinGroup and SyncGroup park a oneshot under a waiter id, tagged
//!   with the shard it was handed to; effects complete it, unloading that shard drops it
//!   (NOT_COORDINATOR). A client that disconnects drops the receiver; the answer is
//!   discarded.
//! - Timers: a task ticks every state machine every [`TICK_INTERVAL_MS`] (session expiry,
//!   rebalance timeouts, the initial rebalance delay, offset retention), after unloading
//!   the shards of partitions no longer led here.
//!
//! - A failed append or fsync, a high watermark that does not pass the records in time,
//!   or an ISR below `min.insync.replicas` after the wait turn the call's answers into
//!   COORDINATOR_NOT_AVAILABLE (REQUEST_TIMED_OUT for an OffsetCommit that timed out;
//!   NOT_COORDINATOR if leadership moved meanwhile): clients look the coordinator up again
//!   and retry. The state machine has already moved on; the log catches up with the next
//!   successful write of those groups, and a reload (restart, failover) replays what the
//!   ISR has.
//!
//! ## Threads
//! State machines sit behind `parking_lot` mutexes held only for the synchronous call and
//! the append (page-cache write); fsync and high-watermark waits happen outside them.
//! Loading is serialised per partition (an async mutex each).
//!
//! ## What survives a crash
//! What reached the high watermark of the offsets partition: every acknowledged
//! OffsetCommit, and group membership as of the last completed SyncGroup, is on disk on
//! every in-sync replica, so it survives this broker's crash both here (restart) and on
//! the replica the controller elects leader instead (failover: that broker loads the
//! partition and becomes the coordinator). Records appended but not acknowledged may or
//! may not survive. Delayed joins in flight are lost; their clients time out or get
//! NOT_COORDINATOR, find the new coordinator and rejoin.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn_group::{
    CommitRequest, CommittedOffset, Effect, GroupConfig, GroupDescription, GroupError,
    GroupListing, GroupRecord, JoinRequest, JoinResponse, StableOffset, SyncRequest, SyncResponse,
    TxnCommitRequest, TxnOffsetWrite, WaiterId,
};
use kafka_protocol::error::{ParseResponseErrorCode, ResponseError};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::replica_manager::Partition;
use crate::server::Broker;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// `offsets.topic.num.partitions`: Kafka's default.
pub const OFFSETS_TOPIC_NUM_PARTITIONS_DEFAULT: i32 = 50;
/// How often timers are checked; session and rebalance timeouts fire at most this late.
pub const TICK_INTERVAL_MS: u64 = 100;
/// `offsets.commit.timeout.ms` (Kafka's default): how long a write of group records waits
/// for the high watermark to pass it.
pub const OFFSETS_COMMIT_TIMEOUT_MS: u64 = 5_000;
/// How long one request waits for a partition led here to become loadable (its high
/// watermark to reach its log end offset, or another request's load to finish) before it
/// is answered COORDINATOR_LOAD_IN_PROGRESS.
pub const LOAD_WAIT_MS: u64 = 1_000;
/// Largest batch of group records appended at once; larger writes (a DeleteGroups of a
/// group with many offsets) are split, staying far below the topic's `max.message.bytes`.
const APPEND_BATCH_BYTES_MAX: usize = 256 * 1024;
/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1024 * 1024;

/// Why the coordinator cannot serve a group right now (besides the group's own errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    /// This broker does not lead the group's `__consumer_offsets` partition (or no longer
    /// at the epoch its state was loaded at).
    #[error("this broker is not the coordinator of group '{group_id}'")]
    NotCoordinator { group_id: String },
    /// This broker leads the group's partition but has not opened or loaded it yet
    /// (COORDINATOR_LOAD_IN_PROGRESS: clients retry).
    #[error("the coordinator of group '{group_id}' is loading")]
    LoadInProgress { group_id: String },
    /// The partition could not be read or written.
    #[error("group coordinator storage failure: {0}")]
    Storage(String),
    /// The records were appended but not replicated as required (too few in-sync
    /// replicas, or not in time for a request other than OffsetCommit).
    #[error("group coordinator not available: {0}")]
    Unavailable(String),
    /// An OffsetCommit's records did not reach the high watermark within
    /// [`OFFSETS_COMMIT_TIMEOUT_MS`] (REQUEST_TIMED_OUT).
    #[error("{0}")]
    TimedOut(String),
    /// The log refused a TxnOffsetCommit's batch for its producer (an epoch older than the
    /// producer's current one: INVALID_PRODUCER_EPOCH; the producer is fenced).
    #[error("transactional offset commit refused: {0}")]
    Producer(#[from] cairn_log::ProducerError),
    /// A TxnOffsetCommit's batch is larger than the offsets topic accepts
    /// (INVALID_COMMIT_OFFSET_SIZE): commit fewer partitions or shorter metadata at once.
    #[error("{0}")]
    CommitTooLarge(String),
    #[error(transparent)]
    Group(#[from] GroupError),
}

/// Kafka's error code for a coordinator error (the one mapping, used by every handler).
pub fn coordinator_error_code(e: &CoordinatorError) -> ResponseError {
    match e {
        CoordinatorError::NotCoordinator { .. } => ResponseError::NotCoordinator,
        CoordinatorError::LoadInProgress { .. } => ResponseError::CoordinatorLoadInProgress,
        CoordinatorError::Storage(_) | CoordinatorError::Unavailable(_) => {
            ResponseError::CoordinatorNotAvailable
        }
        CoordinatorError::TimedOut(_) => ResponseError::RequestTimedOut,
        CoordinatorError::Producer(p) => p
            .kafka_code()
            .err()
            .unwrap_or(ResponseError::UnknownServerError),
        CoordinatorError::CommitTooLarge(_) => ResponseError::InvalidCommitOffsetSize,
        CoordinatorError::Group(g) => group_error_code(g),
    }
}

/// Kafka's error code for a group state machine refusal.
pub fn group_error_code(e: &GroupError) -> ResponseError {
    match e {
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::UnknownMemberId { .. } => ResponseError::UnknownMemberId,
        GroupError::MemberIdRequired { .. } => ResponseError::MemberIdRequired,
        GroupError::IllegalGeneration { .. } => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress { .. } => ResponseError::RebalanceInProgress,
        GroupError::FencedInstanceId { .. } => ResponseError::FencedInstanceId,
        GroupError::InconsistentGroupProtocol { .. } => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout { .. } => ResponseError::InvalidSessionTimeout,
        GroupError::GroupMaxSizeReached { .. } => ResponseError::GroupMaxSizeReached,
        GroupError::CoordinatorNotAvailable { .. } => ResponseError::CoordinatorNotAvailable,
        GroupError::GroupIdNotFound { .. } => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup { .. } => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic { .. } => ResponseError::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge { .. } => ResponseError::OffsetMetadataTooLarge,
        GroupError::UnstableOffsetCommit { .. } => ResponseError::UnstableOffsetCommit,
        GroupError::MemberMetadataTooLarge { .. } => ResponseError::InvalidRequest,
    }
}

/// Java's `String.hashCode` over UTF-16 code units.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group (Kafka's `Utils.abs(hash) % n`).
pub fn partition_for(group_id: &str, num_partitions: i32) -> i32 {
    assert!(num_partitions > 0);
    let h = java_string_hash(group_id);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % num_partitions
}

enum Waiter {
    Join(oneshot::Sender<Result<JoinResponse, GroupError>>),
    Sync(oneshot::Sender<Result<SyncResponse, GroupError>>),
}

/// A parked answer and the shard it was handed to (0: not handed to any yet).
struct Parked {
    shard_id: u64,
    waiter: Waiter,
}

/// One led partition: its state machine and its log.
struct Shard {
    /// Unique per load (tags the waiters parked in this state machine).
    id: u64,
    index: i32,
    machine: cairn_group::GroupCoordinator,
    partition: Arc<Partition>,
    /// The leader epoch this shard was loaded at: it is served only while it is current.
    leader_epoch: i32,
    /// Set (under the shard's lock) when unloaded: no call runs on it any more.
    unloaded: bool,
}

impl Shard {
    fn servable(&self) -> bool {
        !self.unloaded && led_at(&self.partition, self.leader_epoch)
    }
}

/// Whether this broker leads `partition` at `leader_epoch`.
pub(crate) fn led_at(partition: &Partition, leader_epoch: i32) -> bool {
    partition.is_leader() && partition.leader_epoch() == leader_epoch
}

/// How a call's records ended up, for its delayed answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Replicated (or nothing to write): deliver the answers.
    Done,
    /// Leadership moved: drop the answers (their requests get NOT_COORDINATOR).
    NotCoordinator,
    /// Not replicated: answer COORDINATOR_NOT_AVAILABLE.
    Failed,
}

impl Outcome {
    fn of(r: &Result<(), CoordinatorError>) -> Outcome {
        match r {
            Ok(()) => Outcome::Done,
            Err(CoordinatorError::NotCoordinator { .. }) => Outcome::NotCoordinator,
            Err(_) => Outcome::Failed,
        }
    }
}

/// The broker's group coordinator.
pub struct GroupCoordinator {
    config: GroupConfig,
    /// `offsets.topic.num.partitions`, used until the topic exists.
    num_partitions_default: i32,
    shards: Mutex<HashMap<i32, Arc<Mutex<Shard>>>>,
    /// One lock per partition, serialising its loading so that it is replayed once.
    load_locks: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
    next_shard: AtomicU64,
    next_waiter: AtomicU64,
    waiters: Mutex<HashMap<WaiterId, Parked>>,
    member_id_seed: u64,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig, num_partitions_default: i32) -> GroupCoordinator {
        GroupCoordinator {
            config,
            num_partitions_default,
            shards: Mutex::new(HashMap::new()),
            load_locks: Mutex::new(HashMap::new()),
            next_shard: AtomicU64::new(1),
            next_waiter: AtomicU64::new(1),
            waiters: Mutex::new(HashMap::new()),
            member_id_seed: uuid::Uuid::new_v4().as_u128() as u64,
        }
    }

    /// Partitions of the offsets topic: the topic's own count once it exists.
    pub fn num_partitions(&self, broker: &Broker) -> i32 {
        broker
            .metadata
            .state()
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32)
            .unwrap_or(self.num_partitions_default)
    }

    /// The partition coordinating `group_id`.
    pub fn partition_of(&self, broker: &Broker, group_id: &str) -> i32 {
        partition_for(group_id, self.num_partitions(broker))
    }

    /// The loaded shard of partition `index` if it may still be served; a shard that may
    /// not (leadership or epoch changed, partition reopened) is unloaded.
    fn servable_shard(&self, broker: &Broker, index: i32) -> Option<Arc<Mutex<Shard>>> {
        let shard = self.shards.lock().get(&index).cloned()?;
        let current = broker.replicas.get(OFFSETS_TOPIC, index);
        let servable = {
            let s = shard.lock();
            s.servable() && current.is_some_and(|p| Arc::ptr_eq(&p, &s.partition))
        };
        if servable {
            Some(shard)
        } else {
            self.unload(&shard);
            None
        }
    }

    /// The shard serving a group: its partition's index and state, loading the partition
    /// if this broker leads it and has not loaded it at the current epoch.
    async fn shard(
        &self,
        broker: &Broker,
        group_id: &str,
    ) -> Result<(i32, Arc<Mutex<Shard>>), CoordinatorError> {
        let index = self.partition_of(broker, group_id);
        if let Some(s) = self.servable_shard(broker, index) {
            return Ok((index, s));
        }
        let deadline = Instant::now() + Duration::from_millis(LOAD_WAIT_MS);
        self.load_index(broker, index, group_id, deadline)
            .await
            .map(|s| (index, s))
    }

    /// Loads partition `index` if this broker leads it, waiting until `deadline` at most
    /// for another load of it to finish and for its high watermark to catch up.
    async fn load_index(
        &self,
        broker: &Broker,
        index: i32,
        group_id: &str,
        deadline: Instant,
    ) -> Result<Arc<Mutex<Shard>>, CoordinatorError> {
        let not_coordinator = || CoordinatorError::NotCoordinator {
            group_id: group_id.to_owned(),
        };
        let load_in_progress = || CoordinatorError::LoadInProgress {
            group_id: group_id.to_owned(),
        };
        let lock = self.load_locks.lock().entry(index).or_default().clone();
        let Ok(_loading) = tokio::time::timeout_at(deadline, lock.lock()).await else {
            return Err(load_in_progress());
        };
        if let Some(s) = self.servable_shard(broker, index) {
            return Ok(s);
        }
        let (partition, leader_epoch, end) =
            led_and_caught_up(broker, OFFSETS_TOPIC, index, deadline)
                .await
                .map_err(|e| match e {
                    CaughtUp::NotLeader => not_coordinator(),
                    CaughtUp::Waiting => load_in_progress(),
                    CaughtUp::Storage(e) => CoordinatorError::Storage(e),
                })?;
        let id = self.next_shard.fetch_add(1, Ordering::Relaxed);
        let config = self.config.clone();
        let seed = self.member_id_seed;
        let p = partition.clone();
        let machine = tokio::task::spawn_blocking(move || load_partition(config, seed, &p, end))
            .await
            .map_err(|e| CoordinatorError::Storage(format!("loading task failed: {e}")))??;
        if !led_at(&partition, leader_epoch) {
            return Err(not_coordinator());
        }
        let shard = Arc::new(Mutex::new(Shard {
            id,
            index,
            machine,
            partition,
            leader_epoch,
            unloaded: false,
        }));
        self.shards.lock().insert(index, shard.clone());
        Ok(shard)
    }

    /// Loads every partition of the offsets topic led here (at startup); partitions not
    /// loadable at once are left to the first request for them.
    pub async fn load_hosted(&self, broker: &Broker) {
        let n = match broker.metadata.state().topic(OFFSETS_TOPIC) {
            Some(t) => t.partitions.len() as i32,
            None => return,
        };
        for index in 0..n {
            let led = broker
                .replicas
                .get(OFFSETS_TOPIC, index)
                .is_some_and(|p| p.is_leader());
            if !led {
                continue;
            }
            match self.load_index(broker, index, "", Instant::now()).await {
                Ok(_) => {}
                Err(e @ CoordinatorError::Storage(_)) => {
                    tracing::error!(partition = index, error = %e, "loading groups failed")
                }
                Err(e) => {
                    tracing::debug!(partition = index, error = %e, "not loading groups yet")
                }
            }
        }
    }

    /// Drops a shard (if still the loaded one of its partition) and answers the joins and
    /// syncs parked in it with NOT_COORDINATOR.
    fn unload(&self, shard: &Arc<Mutex<Shard>>) {
        let (id, index, was_unloaded) = {
            let mut s = shard.lock();
            let was = std::mem::replace(&mut s.unloaded, true);
            (s.id, s.index, was)
        };
        {
            let mut shards = self.shards.lock();
            if shards.get(&index).is_some_and(|s| Arc::ptr_eq(s, shard)) {
                shards.remove(&index);
            }
        }
        // Dropping the senders answers the parked requests NOT_COORDINATOR.
        let dropped: Vec<Parked> = {
            let mut waiters = self.waiters.lock();
            let ids: Vec<WaiterId> = waiters
                .iter()
                .filter(|(_, p)| p.shard_id == id)
                .map(|(w, _)| *w)
                .collect();
            ids.iter().filter_map(|w| waiters.remove(w)).collect()
        };
        if !was_unloaded {
            tracing::info!(
                partition = index,
                parked = dropped.len(),
                "unloaded group coordinator partition (no longer led here at its epoch)"
            );
        }
    }

    fn register(&self, waiter: Waiter) -> WaiterId {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        self.waiters.lock().insert(
            id,
            Parked {
                shard_id: 0,
                waiter,
            },
        );
        id
    }

    /// Runs `f` on the group's state machine, appends the records it emitted, waits until
    /// they are replicated, delivers the delayed answers, and returns `f`'s result. A
    /// replication timeout is COORDINATOR_NOT_AVAILABLE.
    async fn call<T>(
        &self,
        broker: &Broker,
        group_id: &str,
        f: impl FnOnce(&mut cairn_group::GroupCoordinator, i64) -> T,
    ) -> Result<T, CoordinatorError> {
        self.call_parking(broker, group_id, None, f)
            .await
            .map_err(unavailable_on_timeout)
    }

    /// [`GroupCoordinator::call`], tagging `waiter` (if any) with the shard `f` runs on; a
    /// replication timeout is [`CoordinatorError::TimedOut`].
    async fn call_parking<T>(
        &self,
        broker: &Broker,
        group_id: &str,
        waiter: Option<WaiterId>,
        f: impl FnOnce(&mut cairn_group::GroupCoordinator, i64) -> T,
    ) -> Result<T, CoordinatorError> {
        let (_, shard) = self.shard(broker, group_id).await?;
        let called = {
            let mut s = shard.lock();
            if s.servable() {
                if let Some(w) = waiter {
                    if let Some(p) = self.waiters.lock().get_mut(&w) {
                        p.shard_id = s.id;
                    }
                }
                let now_ms = crate::now_ms();
                let result = f(&mut s.machine, now_ms);
                let effects = s.machine.take_effects();
                let appended = append_records(&s.partition, &effects, now_ms);
                Some((
                    result,
                    effects,
                    s.partition.clone(),
                    s.leader_epoch,
                    appended,
                ))
            } else {
                None
            }
        };
        let Some((result, effects, partition, leader_epoch, appended)) = called else {
            self.unload(&shard);
            return Err(CoordinatorError::NotCoordinator {
                group_id: group_id.to_owned(),
            });
        };
        let durable = self
            .make_durable(broker, &partition, leader_epoch, appended, group_id)
            .await;
        if matches!(durable, Err(CoordinatorError::NotCoordinator { .. })) {
            self.unload(&shard);
        }
        if Outcome::of(&durable) == Outcome::Failed {
            // Kafka's `failPendingTxnOffsetCommit`: the producer is told to retry (or
            // aborts), so the offsets of a batch that did not make it stop being pending.
            let mut s = shard.lock();
            for e in &effects {
                if let Effect::AppendTxnOffsets(w) = e {
                    s.machine.txn_offsets_not_written(w);
                }
            }
        }
        self.deliver(effects, Outcome::of(&durable));
        durable.map(|()| result)
    }

    /// Waits (at most [`OFFSETS_COMMIT_TIMEOUT_MS`]) until the appended records are below
    /// the high watermark: flushed here first under group commit, then on every in-sync
    /// replica.
    async fn make_durable(
        &self,
        broker: &Broker,
        partition: &Arc<Partition>,
        leader_epoch: i32,
        appended: Result<Option<i64>, CoordinatorError>,
        group_id: &str,
    ) -> Result<(), CoordinatorError> {
        let end = match appended {
            Ok(None) => return Ok(()),
            Ok(Some(end)) => end,
            Err(e) => {
                if !led_at(partition, leader_epoch) {
                    return Err(CoordinatorError::NotCoordinator {
                        group_id: group_id.to_owned(),
                    });
                }
                return Err(e);
            }
        };
        let timeout = Duration::from_millis(OFFSETS_COMMIT_TIMEOUT_MS);
        match tokio::time::timeout(
            timeout,
            replicated(broker, partition, leader_epoch, end, group_id),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(CoordinatorError::TimedOut(format!(
                "group records of {}-{} were not replicated to the in-sync replicas within {OFFSETS_COMMIT_TIMEOUT_MS} ms",
                partition.topic, partition.index
            ))),
        }
    }

    fn deliver(&self, effects: Vec<Effect>, outcome: Outcome) {
        fn answer<T>(outcome: Outcome, result: Result<T, GroupError>) -> Result<T, GroupError> {
            if outcome == Outcome::Done {
                result
            } else {
                Err(storage_failed(&result))
            }
        }
        let mut waiters = self.waiters.lock();
        for e in effects {
            // NOT_COORDINATOR: dropping the sender is the answer.
            match e {
                Effect::Append(_) | Effect::AppendTxnOffsets(_) => {}
                Effect::JoinDone { waiter, result } => {
                    if let Some(Parked {
                        waiter: Waiter::Join(tx),
                        ..
                    }) = waiters.remove(&waiter)
                    {
                        if outcome != Outcome::NotCoordinator {
                            let _ = tx.send(answer(outcome, result));
                        }
                    }
                }
                Effect::SyncDone { waiter, result } => {
                    if let Some(Parked {
                        waiter: Waiter::Sync(tx),
                        ..
                    }) = waiters.remove(&waiter)
                    {
                        if outcome != Outcome::NotCoordinator {
                            let _ = tx.send(answer(outcome, result));
                        }
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ one method per API

    pub async fn join_group(
        &self,
        broker: &Broker,
        req: JoinRequest,
    ) -> Result<JoinResponse, CoordinatorError> {
        let group_id = req.group_id.clone();
        self.parked(broker, group_id, Waiter::Join, |m, waiter, now| {
            m.join_group(waiter, req, now)
        })
        .await
    }

    pub async fn sync_group(
        &self,
        broker: &Broker,
        req: SyncRequest,
    ) -> Result<SyncResponse, CoordinatorError> {
        let group_id = req.group_id.clone();
        self.parked(broker, group_id, Waiter::Sync, |m, waiter, now| {
            m.sync_group(waiter, req, now)
        })
        .await
    }

    /// A request whose answer the state machine may delay (JoinGroup, SyncGroup): parks a
    /// waiter made by `park`, runs `f` with its id, and awaits the answer delivered by
    /// this or a later call (or NOT_COORDINATOR when the shard is unloaded first). The
    /// waiter is removed if `f` never ran.
    async fn parked<T>(
        &self,
        broker: &Broker,
        group_id: String,
        park: impl FnOnce(oneshot::Sender<Result<T, GroupError>>) -> Waiter,
        f: impl FnOnce(&mut cairn_group::GroupCoordinator, WaiterId, i64),
    ) -> Result<T, CoordinatorError> {
        let (tx, rx) = oneshot::channel();
        let waiter = self.register(park(tx));
        let called = self
            .call_parking(broker, &group_id, Some(waiter), |m, now| f(m, waiter, now))
            .await;
        if let Err(e) = called {
            self.waiters.lock().remove(&waiter);
            return Err(unavailable_on_timeout(e));
        }
        match rx.await {
            Ok(result) => result.map_err(CoordinatorError::Group),
            Err(_) => Err(CoordinatorError::NotCoordinator { group_id }),
        }
    }

    pub async fn heartbeat(
        &self,
        broker: &Broker,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), CoordinatorError> {
        self.call(broker, group_id, |m, now| {
            m.heartbeat(group_id, member_id, group_instance_id, generation_id, now)
        })
        .await?
        .map_err(CoordinatorError::Group)
    }

    pub async fn leave_group(
        &self,
        broker: &Broker,
        group_id: &str,
        members: Vec<(String, Option<String>)>,
    ) -> Result<Vec<Result<(), GroupError>>, CoordinatorError> {
        self.call(broker, group_id, |m, now| {
            m.leave_group(group_id, &members, now)
        })
        .await?
        .map_err(CoordinatorError::Group)
    }

    /// Answered once the commit's records are below the high watermark; REQUEST_TIMED_OUT
    /// if they are not within [`OFFSETS_COMMIT_TIMEOUT_MS`] (Kafka's OffsetCommit).
    pub async fn commit_offsets(
        &self,
        broker: &Broker,
        req: CommitRequest,
    ) -> Result<Vec<Result<(), GroupError>>, CoordinatorError> {
        let group_id = req.group_id.clone();
        self.call_parking(broker, &group_id, None, |m, now| {
            m.commit_offsets(&req, now)
        })
        .await?
        .map_err(CoordinatorError::Group)
    }

    /// TxnOffsetCommit: answered once the transactional batch of the offsets is below the
    /// high watermark (REQUEST_TIMED_OUT if not within [`OFFSETS_COMMIT_TIMEOUT_MS`], like
    /// OffsetCommit); the offsets stay pending until [`GroupCoordinator::complete_txn`].
    pub async fn txn_commit_offsets(
        &self,
        broker: &Broker,
        req: TxnCommitRequest,
    ) -> Result<Vec<Result<(), GroupError>>, CoordinatorError> {
        let group_id = req.group_id.clone();
        self.call_parking(broker, &group_id, None, |m, now| {
            m.txn_commit_offsets(&req, now)
        })
        .await?
        .map_err(CoordinatorError::Group)
    }

    /// The hook of the transaction markers: a COMMIT (`commit`) or ABORT marker of
    /// `producer_id` has been appended to `__consumer_offsets` partition
    /// `offsets_partition`. The pending transactional offsets of that producer in the
    /// groups of that partition become committed (unless a plain commit of the same
    /// partition was written after them) or are dropped (Kafka's `handleTxnCompletion`).
    ///
    /// The WriteTxnMarkers handler calls it after the marker is in the log and awaits it
    /// before it answers, so that the producer's next transaction cannot commit offsets
    /// before this one is decided here. It waits for a load of the partition in progress:
    /// a load that started before the marker was appended may not have read it, and is
    /// completed here once it is installed; a load that starts later reads the marker
    /// itself. A partition not loaded here (not led, or not loaded yet) needs nothing: its
    /// next load replays the marker from the log. Returns how many offsets became
    /// committed.
    pub async fn complete_txn(
        &self,
        offsets_partition: i32,
        producer_id: i64,
        commit: bool,
    ) -> usize {
        let lock = self
            .load_locks
            .lock()
            .entry(offsets_partition)
            .or_default()
            .clone();
        let _loading = lock.lock().await;
        let Some(shard) = self.shards.lock().get(&offsets_partition).cloned() else {
            return 0;
        };
        let mut s = shard.lock();
        if !s.servable() {
            // Unloaded by the next request; the new leader's load reads the marker.
            return 0;
        }
        let materialised = s.machine.complete_txn(producer_id, commit);
        tracing::debug!(
            partition = offsets_partition,
            producer_id,
            commit,
            materialised,
            "transaction marker applied to group offsets"
        );
        materialised
    }

    pub async fn fetch_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<((String, i32), Option<CommittedOffset>)>, CoordinatorError> {
        self.call(broker, group_id, |m, _| {
            m.fetch_offsets(group_id, partitions.as_deref())
        })
        .await
    }

    /// OffsetFetch with `require_stable`: partitions with a pending transactional offset
    /// answer UNSTABLE_OFFSET_COMMIT.
    pub async fn fetch_stable_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<((String, i32), StableOffset)>, CoordinatorError> {
        self.call(broker, group_id, |m, _| {
            m.fetch_stable_offsets(group_id, partitions.as_deref())
        })
        .await
    }

    pub async fn delete_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Result<(), GroupError>>, CoordinatorError> {
        self.call(broker, group_id, |m, _| {
            m.delete_offsets(group_id, &partitions)
        })
        .await?
        .map_err(CoordinatorError::Group)
    }

    pub async fn delete_group(
        &self,
        broker: &Broker,
        group_id: &str,
    ) -> Result<(), CoordinatorError> {
        self.call(broker, group_id, |m, now| m.delete_group(group_id, now))
            .await?
            .map_err(CoordinatorError::Group)
    }

    pub async fn describe_group(
        &self,
        broker: &Broker,
        group_id: &str,
    ) -> Result<Option<GroupDescription>, CoordinatorError> {
        self.call(broker, group_id, |m, _| m.describe_group(group_id))
            .await
    }

    /// Every group of every loaded partition still led here at its epoch.
    pub fn list_groups(&self) -> Vec<GroupListing> {
        let shards: Vec<_> = self.shards.lock().values().cloned().collect();
        shards
            .iter()
            .flat_map(|s| {
                let s = s.lock();
                if s.servable() {
                    s.machine.list_groups()
                } else {
                    Vec::new()
                }
            })
            .collect()
    }

    /// `(group, topic, partition, committed offset)` of every group this broker
    /// coordinates (shards still led here), for the lag metrics.
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let shards: Vec<_> = self.shards.lock().values().cloned().collect();
        let mut out = Vec::new();
        for shard in shards {
            let s = shard.lock();
            if !s.servable() {
                continue;
            }
            for group in s.machine.list_groups() {
                for ((topic, partition), committed) in
                    s.machine.fetch_offsets(&group.group_id, None)
                {
                    if let Some(c) = committed {
                        out.push((group.group_id.clone(), topic, partition, c.offset));
                    }
                }
            }
        }
        out
    }

    /// Unloads the shards of partitions no longer led here at their epoch, then fires the
    /// timers of the others and waits for their records to be replicated.
    pub async fn tick(&self, broker: &Broker) {
        let shards: Vec<_> = self.shards.lock().values().cloned().collect();
        let mut writes = Vec::new();
        for shard in shards {
            let current = {
                let s = shard.lock();
                broker
                    .replicas
                    .get(OFFSETS_TOPIC, s.index)
                    .is_some_and(|p| Arc::ptr_eq(&p, &s.partition))
            };
            let (effects, partition, leader_epoch, appended) = {
                let mut s = shard.lock();
                if !current || !s.servable() {
                    drop(s);
                    self.unload(&shard);
                    continue;
                }
                let now_ms = crate::now_ms();
                s.machine.tick(now_ms);
                let effects = s.machine.take_effects();
                if effects.is_empty() {
                    continue;
                }
                let appended = append_records(&s.partition, &effects, now_ms);
                (effects, s.partition.clone(), s.leader_epoch, appended)
            };
            writes.push(async move {
                let durable = self
                    .make_durable(broker, &partition, leader_epoch, appended, "")
                    .await;
                if let Err(e) = &durable {
                    tracing::warn!(partition = partition.index, error = %e, "persisting group timer effects failed");
                }
                if matches!(durable, Err(CoordinatorError::NotCoordinator { .. })) {
                    self.unload(&shard);
                }
                self.deliver(effects, Outcome::of(&durable));
            });
        }
        futures_util::future::join_all(writes).await;
    }
}

/// A replication timeout outside OffsetCommit: COORDINATOR_NOT_AVAILABLE.
fn unavailable_on_timeout(e: CoordinatorError) -> CoordinatorError {
    match e {
        CoordinatorError::TimedOut(msg) => CoordinatorError::Unavailable(msg),
        e => e,
    }
}

/// A coordinator's partition (`topic`-`index`) if this broker leads it, once its high
/// watermark has caught up (see [`caught_up`]): the partition, the leader epoch it is led
/// at and the high watermark. Led here but not open yet (the topic was just created) is
/// [`CaughtUp::Waiting`]; not led here is [`CaughtUp::NotLeader`].
pub(crate) async fn led_and_caught_up(
    broker: &Broker,
    topic: &str,
    index: i32,
    deadline: Instant,
) -> Result<(Arc<Partition>, i32, i64), CaughtUp> {
    let Some(partition) = broker.replicas.get(topic, index) else {
        let led_here = broker
            .metadata
            .state()
            .topic(topic)
            .and_then(|t| t.partition(index).map(|p| p.leader))
            == Some(broker.config.node_id);
        return Err(if led_here {
            CaughtUp::Waiting
        } else {
            CaughtUp::NotLeader
        });
    };
    let info = partition.info();
    if info.leader != broker.config.node_id {
        return Err(CaughtUp::NotLeader);
    }
    let end = caught_up(broker, &partition, info.leader_epoch, deadline).await?;
    Ok((partition, info.leader_epoch, end))
}

/// Waits (until `deadline`) for the high watermark of a partition led here at
/// `leader_epoch` to reach its log end offset, i.e. for everything the previous
/// leader may have acknowledged to be readable; returns the high watermark.
pub(crate) async fn caught_up(
    broker: &Broker,
    partition: &Arc<Partition>,
    leader_epoch: i32,
    deadline: Instant,
) -> Result<i64, CaughtUp> {
    let target = partition.log_end_offset();
    let mut hw = partition.subscribe();
    let mut role = partition.subscribe_role();
    if partition.high_watermark() < target && partition.uses_group_commit() {
        // The leader's own part of the high watermark is its durable end.
        broker
            .replicas
            .group_committer
            .flush(partition.clone())
            .await
            .map_err(|e| CaughtUp::Storage(e.to_string()))?;
    }
    loop {
        hw.borrow_and_update();
        let now = partition.high_watermark();
        if now >= target {
            return Ok(now);
        }
        if !led_at(partition, leader_epoch) {
            return Err(CaughtUp::NotLeader);
        }
        tokio::select! {
            changed = hw.changed() => if changed.is_err() {
                return Err(CaughtUp::NotLeader);
            },
            _ = role.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!(partition = partition.index, high_watermark = now, target, "group coordinator partition not loadable yet: high watermark behind");
                return Err(CaughtUp::Waiting);
            }
        }
    }
}

/// Why a partition led here cannot be loaded yet.
pub(crate) enum CaughtUp {
    NotLeader,
    /// The high watermark has not reached the log end offset yet.
    Waiting,
    Storage(String),
}

/// Waits until the high watermark of a partition led here at `leader_epoch` reaches
/// `end` (the offset after appended records), first making them durable here under group
/// commit; then checks `min.insync.replicas` (as an `acks=all` produce does).
async fn replicated(
    broker: &Broker,
    partition: &Arc<Partition>,
    leader_epoch: i32,
    end: i64,
    group_id: &str,
) -> Result<(), CoordinatorError> {
    let not_coordinator = || CoordinatorError::NotCoordinator {
        group_id: group_id.to_owned(),
    };
    let mut role = partition.subscribe_role();
    let mut hw = partition.subscribe();
    if partition.uses_group_commit() {
        broker
            .replicas
            .group_committer
            .flush(partition.clone())
            .await
            .map_err(|e| CoordinatorError::Storage(e.to_string()))?;
    }
    loop {
        hw.borrow_and_update();
        if partition.high_watermark() >= end {
            break;
        }
        if !led_at(partition, leader_epoch) {
            return Err(not_coordinator());
        }
        tokio::select! {
            changed = hw.changed() => if changed.is_err() {
                return Err(not_coordinator());
            },
            _ = role.changed() => {}
        }
    }
    let isr = partition.info().isr;
    let min_insync = partition.min_insync_replicas();
    if (isr.len() as i32) < min_insync {
        return Err(CoordinatorError::Unavailable(format!(
            "group records of {}-{} appended, but the ISR {isr:?} is below min.insync.replicas={min_insync}",
            partition.topic, partition.index
        )));
    }
    Ok(())
}

/// Replays a partition's records below `end` (its high watermark) into a new state
/// machine. Blocking.
fn load_partition(
    config: GroupConfig,
    member_id_seed: u64,
    partition: &Partition,
    end: i64,
) -> Result<cairn_group::GroupCoordinator, CoordinatorError> {
    let started = std::time::Instant::now();
    let now_ms = crate::now_ms();
    let mut machine = cairn_group::GroupCoordinator::new(config, member_id_seed);
    let mut offset = partition.log_start_offset();
    let mut records = 0u64;
    while offset < end {
        let info = partition
            .read(offset, LOAD_READ_BYTES, true)
            .map_err(|e| CoordinatorError::Storage(e.to_string()))?;
        if info.records.is_empty() {
            break;
        }
        for batch in cairn_log::Batches::new(&info.records) {
            let (header, bytes) = batch.map_err(|e| CoordinatorError::Storage(e.to_string()))?;
            offset = header.last_offset() + 1;
            records += replay_batch(&mut machine, &header, bytes, partition.index, now_ms)?;
        }
    }
    machine.finish_loading(now_ms);
    machine.take_effects();
    tracing::info!(
        partition = partition.index,
        leader_epoch = partition.leader_epoch(),
        records,
        end_offset = offset,
        groups = machine.list_groups().len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "loaded group coordinator partition"
    );
    Ok(machine)
}

/// Replays one batch of the offsets partition (in log order) into `machine`; returns how
/// many group records it applied.
///
/// - A plain batch: each record is replayed as it is.
/// - A transactional batch (a TxnOffsetCommit): its offsets are held pending for the
///   batch's producer id.
/// - A control batch (a transaction marker, Kafka's loader): the producer's pending offsets
///   are committed (COMMIT) or dropped (ABORT). Pending offsets without a marker yet stay
///   pending after the load; their marker arrives through
///   [`GroupCoordinator::complete_txn`].
fn replay_batch(
    machine: &mut cairn_group::GroupCoordinator,
    header: &cairn_log::BatchHeader,
    bytes: &[u8],
    partition_index: i32,
    now_ms: i64,
) -> Result<u64, CoordinatorError> {
    if header.is_control() {
        match cairn_log::parse_marker(bytes) {
            Ok(Some(marker)) => {
                let commit = marker.control == cairn_log::ControlType::Commit;
                machine.complete_txn(header.producer_id, commit);
            }
            other => {
                tracing::warn!(partition = partition_index, base_offset = header.base_offset, marker = ?other, "skipping a control batch that is not a COMMIT or ABORT marker");
            }
        }
        return Ok(0);
    }
    let decoded = cairn_log::batch::decode_records(bytes)
        .map_err(|e| CoordinatorError::Storage(e.to_string()))?;
    let mut records = 0;
    for r in decoded {
        let Some(key) = &r.key else { continue };
        match GroupRecord::decode(key, r.value.as_deref()) {
            Ok(Some(record)) => {
                if header.is_transactional() {
                    machine.replay_txn_offset(header.producer_id, record, now_ms);
                } else {
                    machine.replay(record, now_ms);
                }
                records += 1;
            }
            Ok(None) => {}
            Err(e) => {
                // A record we cannot read is skipped, loudly: refusing to load would take
                // every group of the partition down with it.
                tracing::error!(partition = partition_index, error = %e, "skipping an undecodable group record");
            }
        }
    }
    Ok(records)
}

/// A plain (non-transactional) keyed record a coordinator writes to its own partition;
/// `None` as value is a tombstone.
pub(crate) fn coordinator_record(key: Vec<u8>, value: Option<Vec<u8>>, now_ms: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(Bytes::from(key)),
        value: value.map(Bytes::from),
        headers: Default::default(),
    }
}

/// The error a client gets when its answer's records could not be replicated.
fn storage_failed<T>(_: &Result<T, GroupError>) -> GroupError {
    GroupError::CoordinatorNotAvailable {
        group_id: String::new(),
    }
}

/// Appends the `Append` effects as v2 batches, and each `AppendTxnOffsets` as one
/// transactional batch of its producer, in effect order; reports the offset after the last
/// appended record (`None`: nothing to append).
fn append_records(
    partition: &Partition,
    effects: &[Effect],
    now_ms: i64,
) -> Result<Option<i64>, CoordinatorError> {
    let mut pending: Vec<Record> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut end = None;
    let flush =
        |records: &mut Vec<Record>, end: &mut Option<i64>| -> Result<(), CoordinatorError> {
            if records.is_empty() {
                return Ok(());
            }
            for (i, r) in records.iter_mut().enumerate() {
                r.offset = i as i64;
            }
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression: Compression::None,
                },
            )
            .map_err(|e| CoordinatorError::Storage(format!("encoding group records: {e}")))?;
            let appended = partition
                .append_as_leader(&buf, now_ms, false)
                .map_err(|e| CoordinatorError::Storage(append_error_message(e)))?;
            *end = Some(appended.info.last_offset + 1);
            records.clear();
            Ok(())
        };
    for e in effects {
        let record = match e {
            Effect::Append(record) => record,
            Effect::AppendTxnOffsets(write) => {
                // Log order is effect order: the plain records before it go first.
                flush(&mut pending, &mut end)?;
                pending_bytes = 0;
                end = Some(append_txn_offsets(partition, write, now_ms)?);
                continue;
            }
            Effect::JoinDone { .. } | Effect::SyncDone { .. } => continue,
        };
        let (key, value) = record.encode();
        pending_bytes += key.len() + value.as_ref().map_or(0, Vec::len) + 32;
        pending.push(coordinator_record(key, value, now_ms));
        if pending_bytes >= APPEND_BATCH_BYTES_MAX {
            flush(&mut pending, &mut end)?;
            pending_bytes = 0;
        }
    }
    flush(&mut pending, &mut end)?;
    Ok(end)
}

/// The text of a failed append, for the coordinator's errors.
fn append_error_message(e: crate::replica_manager::AppendError) -> String {
    match e {
        crate::replica_manager::AppendError::Refused(_, msg) => msg,
        crate::replica_manager::AppendError::Log(e) => e.to_string(),
    }
}

/// One transactional batch of a TxnOffsetCommit: attributes' transactional bit set, the
/// request's producer id and epoch, base sequence -1 (a coordinator's batch is not
/// sequenced), records in the OffsetCommitKey/Value format of plain commits. Appended with
/// [`Partition::append_as_coordinator`], which starts the producer's transaction in the
/// partition; reports the offset after it.
fn append_txn_offsets(
    partition: &Partition,
    write: &TxnOffsetWrite,
    now_ms: i64,
) -> Result<i64, CoordinatorError> {
    let records: Vec<Record> = write
        .records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let (key, value) = record.encode();
            Record {
                transactional: true,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: write.producer_id,
                producer_epoch: write.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: now_ms,
                key: Some(Bytes::from(key)),
                value: value.map(Bytes::from),
                headers: Default::default(),
            }
        })
        .collect();
    assert!(
        !records.is_empty(),
        "a transactional offset write has records"
    );
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| CoordinatorError::Storage(format!("encoding transactional offsets: {e}")))?;
    match partition.append_as_coordinator(&buf, now_ms) {
        Ok(appended) => Ok(appended.info.last_offset + 1),
        Err(crate::replica_manager::AppendError::Log(cairn_log::LogError::Producer(e))) => {
            Err(CoordinatorError::Producer(e))
        }
        Err(crate::replica_manager::AppendError::Log(
            e @ cairn_log::LogError::RecordTooLarge { .. },
        )) => Err(CoordinatorError::CommitTooLarge(format!(
            "the transactional offset commit of group '{}' ({} partitions) does not fit in one batch: {e}",
            write.group_id,
            write.records.len()
        ))),
        Err(e) => Err(CoordinatorError::Storage(append_error_message(e))),
    }
}

/// The coordinator's background task: loads partitions led here, then ticks until
/// shutdown.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    broker.group_coordinator.load_hosted(&broker).await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(TICK_INTERVAL_MS)) => {}
            _ = shutdown.changed() => return,
        }
        broker.group_coordinator.tick(&broker).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_group::{OffsetCommit, OffsetValue};

    /// One v2 batch as the log stores it: plain (`producer_id` -1), transactional, or a
    /// control batch whose single record has `key`.
    fn encoded_batch(
        producer_id: i64,
        control: bool,
        keys_values: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Vec<u8> {
        let records: Vec<Record> = keys_values
            .into_iter()
            .enumerate()
            .map(|(i, (key, value))| Record {
                transactional: producer_id >= 0,
                control,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id,
                producer_epoch: if producer_id >= 0 { 0 } else { -1 },
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: 1,
                key: Some(Bytes::from(key)),
                value: value.map(Bytes::from),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    fn offset(topic: &str, partition: i32, offset: i64) -> (Vec<u8>, Option<Vec<u8>>) {
        GroupRecord::Offset {
            group_id: "g".into(),
            topic: topic.into(),
            partition,
            value: Some(OffsetValue {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 1,
                expire_timestamp_ms: None,
            }),
        }
        .encode()
    }

    /// A COMMIT (type 1) or ABORT (type 0) marker's key and value (version, coordinator
    /// epoch), as Kafka writes them.
    fn marker(commit: bool) -> (Vec<u8>, Option<Vec<u8>>) {
        (
            vec![0, 0, 0, u8::from(commit)],
            Some(vec![0, 0, 0, 0, 0, 5]),
        )
    }

    fn replay_all(batches: &[Vec<u8>]) -> cairn_group::GroupCoordinator {
        let mut m = cairn_group::GroupCoordinator::new(GroupConfig::default(), 1);
        for b in batches {
            for batch in cairn_log::Batches::new(b) {
                let (header, bytes) = batch.unwrap();
                replay_batch(&mut m, &header, bytes, 0, 1).unwrap();
            }
        }
        m.finish_loading(1);
        m.check_invariants();
        m
    }

    fn stable(
        m: &cairn_group::GroupCoordinator,
        tps: &[(&str, i32)],
    ) -> Vec<Result<Option<i64>, GroupError>> {
        let tps: Vec<(String, i32)> = tps.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        m.fetch_stable_offsets("g", Some(&tps))
            .into_iter()
            .map(|(_, r)| r.map(|c| c.map(|c| c.offset)))
            .collect()
    }

    /// The loader holds transactional batches pending per producer and lets each control
    /// batch decide its producer's offsets, in log order; the state it builds is the one the
    /// live coordinator had.
    #[test]
    fn replaying_transactional_batches_and_markers_matches_the_live_coordinator() {
        let log = vec![
            encoded_batch(-1, false, vec![offset("t", 0, 5), offset("t", 3, 1)]),
            encoded_batch(7, false, vec![offset("t", 0, 10), offset("t", 1, 11)]),
            encoded_batch(8, false, vec![offset("t", 2, 20)]),
            encoded_batch(9, false, vec![offset("t", 3, 30)]),
            // A plain commit of t-3 after producer 9's: it stays when 9 commits.
            encoded_batch(-1, false, vec![offset("t", 3, 2)]),
            encoded_batch(7, true, vec![marker(true)]),
            encoded_batch(8, true, vec![marker(false)]),
            encoded_batch(9, true, vec![marker(true)]),
            encoded_batch(10, false, vec![offset("t", 4, 40)]),
        ];
        let loaded = replay_all(&log);
        let tps = [("t", 0), ("t", 1), ("t", 2), ("t", 3), ("t", 4)];
        let got = stable(&loaded, &tps);
        assert_eq!(
            got[..4],
            [Ok(Some(10)), Ok(Some(11)), Ok(None), Ok(Some(2))]
        );
        assert!(
            matches!(got[4], Err(GroupError::UnstableOffsetCommit { .. })),
            "no marker yet: pending"
        );

        // The same history, live.
        let mut live = cairn_group::GroupCoordinator::new(GroupConfig::default(), 1);
        let plain = |offsets: &[(i32, i64)]| CommitRequest {
            group_id: "g".into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            retention_time_ms: -1,
            offsets: offsets
                .iter()
                .map(|(p, o)| OffsetCommit {
                    topic: "t".into(),
                    partition: *p,
                    offset: *o,
                    leader_epoch: -1,
                    metadata: None,
                })
                .collect(),
        };
        let txn = |producer_id: i64, offsets: &[(i32, i64)]| TxnCommitRequest {
            group_id: "g".into(),
            producer_id,
            producer_epoch: 0,
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
            offsets: plain(offsets).offsets,
        };
        live.commit_offsets(&plain(&[(0, 5), (3, 1)]), 1).unwrap();
        live.txn_commit_offsets(&txn(7, &[(0, 10), (1, 11)]), 1)
            .unwrap();
        live.txn_commit_offsets(&txn(8, &[(2, 20)]), 1).unwrap();
        live.txn_commit_offsets(&txn(9, &[(3, 30)]), 1).unwrap();
        live.commit_offsets(&plain(&[(3, 2)]), 1).unwrap();
        live.complete_txn(7, true);
        live.complete_txn(8, false);
        live.complete_txn(9, true);
        live.txn_commit_offsets(&txn(10, &[(4, 40)]), 1).unwrap();
        assert_eq!(stable(&live, &tps), got);
        assert_eq!(
            live.fetch_offsets("g", None),
            loaded.fetch_offsets("g", None)
        );
        // The pending offset's marker arrives after the load, through the hook.
        let mut loaded = loaded;
        assert_eq!(loaded.complete_txn(10, true), 1);
        assert_eq!(stable(&loaded, &[("t", 4)]), [Ok(Some(40))]);
    }

    #[test]
    fn partition_matches_kafka() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("ab"), 97 * 31 + 98);
        assert_eq!(partition_for("a", 50), 97 % 50);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Kafka's abs maps it to 0.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
    }
}
