//! The broker's transaction coordinator: the I/O around [`cairn_txn::TxnCoordinator`].
//!
//! The coordinator of transactional id T is the leader of partition
//! `abs(T.hashCode()) % N` of `__transaction_state` (Java's hash, as for groups), a
//! compacted internal topic created on the first FindCoordinator for a transactional id
//! with `transaction.state.log.num.partitions` partitions (Kafka: 50) and the default
//! replication factor. Every partition led here has a [`Shard`]: the pure state machine of
//! `cairn-txn`, loaded by replaying the partition (once its high watermark has reached its
//! log end, so nothing the previous leader acknowledged is missed) and served only while
//! this broker leads the partition at the epoch it was loaded at. That leader epoch is the
//! *coordinator epoch* written into every marker, which fences a deposed coordinator at
//! the partitions (TRANSACTION_COORDINATOR_FENCED).
//!
//! ## Writes
//! Every state change is prepared by the state machine, appended to the partition as one
//! record (key: TransactionLogKey, value: TransactionLogValue, Kafka's formats) and applied
//! to memory only once the high watermark has passed it, i.e. once every in-sync replica
//! holds it durably; while it is pending, other requests for the same id get
//! CONCURRENT_TRANSACTIONS. A failed write is forgotten (the client retries); the log and a
//! later load agree with memory either way.
//!
//! ## Markers
//! After PrepareCommit/PrepareAbort is written (EndTxn, a timeout, or an InitProducerId
//! fencing an open transaction), a task sends WriteTxnMarkers to the leader of every
//! partition of the transaction — this broker included, over the same TCP path — retrying
//! with backoff until each has written its marker, then writes CompleteCommit or
//! CompleteAbort. A coordinator that loses its partition stops; the new leader resumes
//! every prepared transaction from the log when it loads ([`cairn_txn::TxnCoordinator::pending_markers`]).
//!
//! ## Timers
//! [`run`] ticks every `transaction.abort.timed.out.transaction.cleanup.interval.ms`
//! (Kafka: 10 s): it loads partitions newly led here (so prepared transactions complete
//! even if their producer is gone), aborts transactions older than their timeout (bumping
//! the producer epoch, which fences the producer, as Kafka does) and removes transactional
//! ids idle longer than `transactional.id.expiration.ms`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use cairn_txn::{MarkerJob, TopicPartition, Transition, TxnError};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::group_coordinator::{CaughtUp, led_and_caught_up, led_at, partition_for};
use crate::replica_manager::{AppendError, Partition};
use crate::server::Broker;

/// The internal topic holding transaction state.
pub const TXN_TOPIC: &str = "__transaction_state";
/// How long a request waits for its partition to load before COORDINATOR_LOAD_IN_PROGRESS.
const LOAD_WAIT_MS: u64 = 5_000;
/// How long a state write may wait for the in-sync replicas.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1 << 20;
/// How long AddPartitionsToTxn waits for the id's previous state change (usually the
/// completion of its last transaction) before answering CONCURRENT_TRANSACTIONS.
/// AddOffsetsToTxn does not wait: librdkafka's `send_offsets_to_transaction` can hang when
/// the coordinator moves while its request is in flight, so it is kept short.
const CONCURRENT_WAIT: Duration = Duration::from_millis(100);
/// Pause between rounds of marker retries.
const MARKER_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// How long one WriteTxnMarkers round trip may take.
const MARKER_REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// Why a transaction request failed, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnFailure {
    pub code: ResponseError,
    pub message: String,
}

impl TxnFailure {
    fn new(code: ResponseError, message: impl Into<String>) -> TxnFailure {
        TxnFailure {
            code,
            message: message.into(),
        }
    }

    fn not_coordinator(id: &str) -> TxnFailure {
        TxnFailure::new(
            ResponseError::NotCoordinator,
            format!("this broker is not the transaction coordinator of '{id}'"),
        )
    }
}

impl From<TxnError> for TxnFailure {
    fn from(e: TxnError) -> TxnFailure {
        let code = ResponseError::try_from_code(e.kafka_code())
            .unwrap_or(ResponseError::UnknownServerError);
        TxnFailure::new(code, e.to_string())
    }
}

/// PRODUCER_FENCED exists for clients from the versions
/// [`cairn_txn::TxnApi::first_version_with_fenced`] names (KIP-588); older ones get
/// INVALID_PRODUCER_EPOCH, as Kafka's KafkaApis does.
pub fn fenced_for_version(
    code: ResponseError,
    api: cairn_txn::TxnApi,
    version: i16,
) -> ResponseError {
    if code == ResponseError::ProducerFenced && version < api.first_version_with_fenced() {
        ResponseError::InvalidProducerEpoch
    } else {
        code
    }
}

/// One `__transaction_state` partition led here: its state machine and its log.
struct Shard {
    index: i32,
    partition: Arc<Partition>,
    /// The leader epoch this shard was loaded at, also the coordinator epoch.
    leader_epoch: i32,
    machine: Mutex<cairn_txn::TxnCoordinator>,
    unloaded: AtomicBool,
    /// Woken whenever a state write completes or fails (a pending change is over).
    changed: tokio::sync::Notify,
}

impl Shard {
    fn servable(&self) -> bool {
        !self.unloaded.load(Ordering::Acquire) && led_at(&self.partition, self.leader_epoch)
    }
}

/// The broker's transaction coordinator.
pub struct TxnCoordinatorService {
    shards: Mutex<HashMap<i32, Arc<Shard>>>,
    /// One lock per partition, serialising its loading so that it is replayed once.
    load_locks: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
}

impl Default for TxnCoordinatorService {
    fn default() -> Self {
        Self::new()
    }
}

impl TxnCoordinatorService {
    pub fn new() -> TxnCoordinatorService {
        TxnCoordinatorService {
            shards: Mutex::new(HashMap::new()),
            load_locks: Mutex::new(HashMap::new()),
        }
    }

    /// Partitions of `__transaction_state`: the topic's own count once it exists.
    pub fn num_partitions(&self, broker: &Broker) -> i32 {
        broker
            .metadata
            .state()
            .topic(TXN_TOPIC)
            .map(|t| t.partitions.len() as i32)
            .unwrap_or(broker.config.transaction_state_num_partitions)
    }

    /// The `__transaction_state` partition coordinating `transactional_id`.
    pub fn partition_of(&self, broker: &Broker, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.num_partitions(broker))
    }

    fn servable_shard(&self, broker: &Broker, index: i32) -> Option<Arc<Shard>> {
        let shard = self.shards.lock().get(&index).cloned()?;
        let current = broker.replicas.get(TXN_TOPIC, index);
        if shard.servable() && current.is_some_and(|p| Arc::ptr_eq(&p, &shard.partition)) {
            Some(shard)
        } else {
            self.unload(&shard);
            None
        }
    }

    fn unload(&self, shard: &Arc<Shard>) {
        let was = shard.unloaded.swap(true, Ordering::AcqRel);
        let mut shards = self.shards.lock();
        if shards
            .get(&shard.index)
            .is_some_and(|s| Arc::ptr_eq(s, shard))
        {
            shards.remove(&shard.index);
        }
        if !was {
            tracing::info!(
                partition = shard.index,
                "unloaded transaction coordinator partition (no longer led here at its epoch)"
            );
        }
    }

    /// The shard coordinating `transactional_id`, loading its partition if needed.
    async fn shard(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
    ) -> Result<Arc<Shard>, TxnFailure> {
        let index = self.partition_of(broker, transactional_id);
        if let Some(s) = self.servable_shard(broker, index) {
            return Ok(s);
        }
        let deadline = Instant::now() + Duration::from_millis(LOAD_WAIT_MS);
        self.load_index(broker, index, deadline)
            .await
            .map_err(|e| match e.code {
                ResponseError::NotCoordinator => TxnFailure::not_coordinator(transactional_id),
                _ => e,
            })
    }

    /// Loads partition `index` if this broker leads it, then resumes the markers of every
    /// prepared transaction in it.
    async fn load_index(
        &self,
        broker: &Arc<Broker>,
        index: i32,
        deadline: Instant,
    ) -> Result<Arc<Shard>, TxnFailure> {
        let not_coordinator = || {
            TxnFailure::new(
                ResponseError::NotCoordinator,
                format!("{TXN_TOPIC} partition {index} is not led here"),
            )
        };
        let load_in_progress = || {
            TxnFailure::new(
                ResponseError::CoordinatorLoadInProgress,
                format!("{TXN_TOPIC} partition {index} is still loading"),
            )
        };
        let lock = self.load_locks.lock().entry(index).or_default().clone();
        let Ok(_loading) = tokio::time::timeout_at(deadline, lock.lock()).await else {
            return Err(load_in_progress());
        };
        if let Some(s) = self.servable_shard(broker, index) {
            return Ok(s);
        }
        let (partition, leader_epoch, end) = led_and_caught_up(broker, TXN_TOPIC, index, deadline)
            .await
            .map_err(|e| match e {
                CaughtUp::NotLeader => not_coordinator(),
                CaughtUp::Waiting => load_in_progress(),
                CaughtUp::Storage(e) => TxnFailure::new(ResponseError::CoordinatorNotAvailable, e),
            })?;
        let config = broker.config.txn.clone();
        let p = partition.clone();
        let machine =
            tokio::task::spawn_blocking(move || load_partition(config, &p, leader_epoch, end))
                .await
                .map_err(|e| {
                    TxnFailure::new(
                        ResponseError::CoordinatorNotAvailable,
                        format!("loading task failed: {e}"),
                    )
                })??;
        if !led_at(&partition, leader_epoch) {
            return Err(not_coordinator());
        }
        let resume = machine.pending_markers();
        let shard = Arc::new(Shard {
            index,
            partition,
            leader_epoch,
            machine: Mutex::new(machine),
            unloaded: AtomicBool::new(false),
            changed: tokio::sync::Notify::new(),
        });
        self.shards.lock().insert(index, shard.clone());
        for job in resume {
            tracing::info!(partition = index, transactional_id = %job.transactional_id, commit = job.commit, "resuming the markers of a prepared transaction");
            spawn_markers(broker.clone(), shard.clone(), job);
        }
        Ok(shard)
    }

    /// Loads every partition of `__transaction_state` led here and not loaded yet.
    async fn load_hosted(&self, broker: &Arc<Broker>) {
        let n = match broker.metadata.state().topic(TXN_TOPIC) {
            Some(t) => t.partitions.len() as i32,
            None => return,
        };
        for index in 0..n {
            let led = broker
                .replicas
                .get(TXN_TOPIC, index)
                .is_some_and(|p| p.is_leader());
            if !led || self.servable_shard(broker, index).is_some() {
                continue;
            }
            if let Err(e) = self.load_index(broker, index, Instant::now()).await {
                tracing::debug!(partition = index, error = %e.message, "not loading transactions yet");
            }
        }
    }

    /// InitProducerId with a transactional id: the producer id and epoch to use.
    pub async fn init_producer_id(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnFailure> {
        let shard = self.shard(broker, transactional_id).await?;
        // The state machine takes ids synchronously: get one first (ids come in blocks,
        // so an unused one costs nothing).
        let fresh = broker
            .replicas
            .producer_ids
            .next_id_for(broker)
            .await
            .map_err(|e| TxnFailure::new(ResponseError::CoordinatorLoadInProgress, e.0))?;
        let outcome = {
            let mut m = shard.machine.lock();
            let mut alloc = || fresh;
            m.init_producer_id(
                transactional_id,
                timeout_ms,
                expected,
                crate::now_ms(),
                &mut alloc,
            )?
        };
        match outcome {
            cairn_txn::InitOutcome::Write(t) => {
                let answer = t
                    .new
                    .as_ref()
                    .map(|m| (m.producer_id, m.producer_epoch))
                    .expect("an InitProducerId transition is never a tombstone");
                write(broker, &shard, t).await?;
                Ok(answer)
            }
            cairn_txn::InitOutcome::AbortFirst(t) => {
                write_then_mark(broker, &shard, t).await?;
                Err(TxnFailure::new(
                    ResponseError::ConcurrentTransactions,
                    format!("the open transaction of '{transactional_id}' is being aborted; retry"),
                ))
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition);
    /// `wait_for_previous`: wait up to [`CONCURRENT_WAIT`] for the previous transaction to
    /// complete instead of answering CONCURRENT_TRANSACTIONS at once.
    pub async fn add_partitions(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
        wait_for_previous: bool,
    ) -> Result<(), TxnFailure> {
        let shard = self.shard(broker, transactional_id).await?;
        // The previous transaction's markers and completion usually take a few
        // milliseconds after EndTxn is answered, and the producer's next AddPartitionsToTxn
        // arrives at once: instead of CONCURRENT_TRANSACTIONS (which librdkafka and the
        // Java client retry only after 20 ms), wait a little for the change to finish.
        let deadline = Instant::now()
            + if wait_for_previous {
                CONCURRENT_WAIT
            } else {
                Duration::ZERO
            };
        let mut role = shard.partition.subscribe_role();
        let t = loop {
            let changed = shard.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            role.borrow_and_update();
            let t = shard.machine.lock().add_partitions(
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                crate::now_ms(),
            );
            match t {
                Err(TxnError::ConcurrentTransactions { .. })
                    if Instant::now() < deadline && shard.servable() =>
                {
                    // A leadership change ends the wait at once: the client must learn
                    // of the new coordinator, not sit on the old one.
                    tokio::select! {
                        _ = changed => {}
                        _ = role.changed() => {}
                        _ = tokio::time::sleep_until(deadline) => {}
                    }
                }
                Err(_) if !shard.servable() => {
                    return Err(TxnFailure::not_coordinator(transactional_id));
                }
                t => break t?,
            }
        };
        match t {
            Some(t) => write(broker, &shard, t).await,
            None => Ok(()),
        }
    }

    /// AddPartitionsToTxn v4+ with `verify_only` (KIP-890 part 1, sent by partition
    /// leaders): whether the producer's ongoing transaction already holds `partitions`.
    pub async fn verify_partitions(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<(), TxnFailure> {
        let shard = self.shard(broker, transactional_id).await?;
        let verified = shard.machine.lock().verify_partitions(
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        );
        Ok(verified?)
    }

    /// EndTxn: answered once PrepareCommit/PrepareAbort is durable; the markers follow.
    pub async fn end_txn(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), TxnFailure> {
        let shard = self.shard(broker, transactional_id).await?;
        let outcome = shard.machine.lock().end_txn(
            transactional_id,
            producer_id,
            producer_epoch,
            commit,
            crate::now_ms(),
        )?;
        match outcome {
            cairn_txn::EndOutcome::Write(t) => write_then_mark(broker, &shard, t).await,
            cairn_txn::EndOutcome::AlreadyDone => Ok(()),
        }
    }

    /// DescribeTransactions: the state of `transactional_id` if coordinated here.
    pub async fn describe(
        &self,
        broker: &Arc<Broker>,
        transactional_id: &str,
    ) -> Result<cairn_txn::TxnMetadata, TxnFailure> {
        let shard = self.shard(broker, transactional_id).await?;
        let m = shard.machine.lock();
        m.describe(transactional_id).cloned().ok_or_else(|| {
            TxnFailure::new(
                ResponseError::TransactionalIdNotFound,
                format!("no transactional id '{transactional_id}'"),
            )
        })
    }

    /// ListTransactions: every transaction of every partition loaded here.
    pub fn list(&self) -> Vec<cairn_txn::TxnMetadata> {
        let shards: Vec<_> = self.shards.lock().values().cloned().collect();
        shards
            .iter()
            .filter(|s| s.servable())
            .flat_map(|s| s.machine.lock().list().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// Number of transactions per state, for the metrics.
    pub fn count_by_state(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for m in self.list() {
            *counts.entry(m.state.as_str()).or_default() += 1;
        }
        counts
    }

    /// One timer round: abort timed-out transactions, expire idle transactional ids.
    pub async fn expire(&self, broker: &Arc<Broker>) {
        let shards: Vec<_> = self.shards.lock().values().cloned().collect();
        let now_ms = crate::now_ms();
        for shard in shards {
            if !shard.servable() {
                self.unload(&shard);
                continue;
            }
            let (aborts, expired) = {
                let mut m = shard.machine.lock();
                (
                    m.expire_timed_out(now_ms),
                    m.expire_transactional_ids(now_ms),
                )
            };
            for t in aborts {
                let (broker, shard) = (broker.clone(), shard.clone());
                tokio::spawn(async move {
                    let id = t.transactional_id.clone();
                    tracing::info!(partition = shard.index, transactional_id = %id, "aborting a transaction past its timeout (the producer is fenced)");
                    match write_then_mark(&broker, &shard, t).await {
                        Ok(()) => {}
                        Err(e) => {
                            tracing::warn!(transactional_id = %id, error = %e.message, "could not write the abort of a timed-out transaction; retrying at the next check")
                        }
                    }
                });
            }
            for t in expired {
                let id = t.transactional_id.clone();
                tracing::info!(partition = shard.index, transactional_id = %id, "removing a transactional id idle past transactional.id.expiration.ms");
                if let Err(e) = write(broker, &shard, t).await {
                    tracing::warn!(transactional_id = %id, error = %e.message, "could not expire a transactional id; retrying at the next check");
                }
            }
        }
    }
}

/// Appends a transition as one record and waits until the in-sync replicas have it;
/// then applies it to memory, or forgets it on failure.
async fn write(broker: &Arc<Broker>, shard: &Arc<Shard>, t: Transition) -> Result<(), TxnFailure> {
    let now_ms = crate::now_ms();
    let appended = if shard.servable() {
        append_record(&shard.partition, t.key(), t.value(), now_ms)
    } else {
        Err(AppendError::Refused(
            ResponseError::NotLeaderOrFollower,
            "no longer the leader".to_owned(),
        ))
    };
    let result = match appended {
        Ok((end, needs_group_commit)) => {
            let committer = broker.replicas.group_committer.clone();
            match tokio::time::timeout(
                WRITE_TIMEOUT,
                crate::handlers::produce::replicated(
                    committer,
                    shard.partition.clone(),
                    end,
                    needs_group_commit,
                ),
            )
            .await
            {
                Ok(Ok(())) if shard.servable() => Ok(()),
                Ok(Ok(())) => Err((
                    ResponseError::NotLeaderOrFollower,
                    "leadership moved".to_owned(),
                )),
                Ok(Err(e)) => Err(e),
                Err(_) => Err((
                    ResponseError::RequestTimedOut,
                    "not replicated in time".to_owned(),
                )),
            }
        }
        Err(AppendError::Refused(code, msg)) => Err((code, msg)),
        Err(AppendError::Log(e)) => Err((crate::errors::log_error_code(&e), e.to_string())),
    };
    let mut m = shard.machine.lock();
    shard.changed.notify_waiters();
    match result {
        Ok(()) => {
            m.complete(t);
            Ok(())
        }
        Err((code, msg)) => {
            m.abort_pending(&t);
            // Kafka's mapping in TransactionStateManager.appendTransactionToLog.
            let client_code = match code {
                ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
                    ResponseError::NotCoordinator
                }
                ResponseError::UnknownTopicOrPartition
                | ResponseError::NotEnoughReplicas
                | ResponseError::NotEnoughReplicasAfterAppend
                | ResponseError::RequestTimedOut => ResponseError::CoordinatorNotAvailable,
                _ => ResponseError::UnknownServerError,
            };
            tracing::info!(partition = shard.index, transactional_id = %t.transactional_id, error = ?code, "transaction state write failed: {msg}");
            Err(TxnFailure::new(
                client_code,
                format!("writing the transaction state failed: {msg}"),
            ))
        }
    }
}

/// [`write`], then (for a PrepareCommit/PrepareAbort) the markers in the background.
async fn write_then_mark(
    broker: &Arc<Broker>,
    shard: &Arc<Shard>,
    t: Transition,
) -> Result<(), TxnFailure> {
    let job = t.markers();
    write(broker, shard, t).await?;
    if let Some(job) = job {
        spawn_markers(broker.clone(), shard.clone(), job);
    }
    Ok(())
}

/// Appends one `__transaction_state` record as leader; returns the offset after it and
/// whether the group committer must make it durable.
fn append_record(
    partition: &Partition,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    now_ms: i64,
) -> Result<(i64, bool), AppendError> {
    let record = crate::group_coordinator::coordinator_record(key, value, now_ms);
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        std::iter::once(&record),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| {
        AppendError::Refused(
            ResponseError::UnknownServerError,
            format!("encoding a transaction record: {e}"),
        )
    })?;
    let appended = partition.append_as_leader(&buf, now_ms, true)?;
    Ok((appended.info.last_offset + 1, appended.needs_group_commit))
}

/// Replays a partition's records below `end` into a new state machine. Blocking.
fn load_partition(
    config: cairn_txn::TxnConfig,
    partition: &Partition,
    coordinator_epoch: i32,
    end: i64,
) -> Result<cairn_txn::TxnCoordinator, TxnFailure> {
    let storage = |e: cairn_log::LogError| {
        TxnFailure::new(
            ResponseError::CoordinatorNotAvailable,
            format!("reading {TXN_TOPIC}-{}: {e}", partition.index),
        )
    };
    let started = std::time::Instant::now();
    let mut machine = cairn_txn::TxnCoordinator::new(partition.index, coordinator_epoch, config);
    let mut offset = partition.log_start_offset();
    let mut records = 0u64;
    while offset < end {
        let info = partition
            .read(offset, LOAD_READ_BYTES, true)
            .map_err(storage)?;
        if info.records.is_empty() {
            break;
        }
        for batch in cairn_log::Batches::new(&info.records) {
            let (header, bytes) = batch.map_err(storage)?;
            offset = header.last_offset() + 1;
            if header.is_control() {
                continue;
            }
            for r in cairn_log::batch::decode_records(bytes).map_err(storage)? {
                let Some(key) = &r.key else { continue };
                match cairn_txn::decode(key, r.value.as_deref()) {
                    Ok(record) => {
                        machine.replay(record);
                        records += 1;
                    }
                    Err(e) => {
                        // Refusing to load would take every transaction of the partition
                        // down with it; the record is skipped, loudly.
                        tracing::error!(partition = partition.index, offset = header.base_offset + i64::from(r.offset_delta), error = %e, "skipping an undecodable transaction record");
                    }
                }
            }
        }
    }
    tracing::info!(
        partition = partition.index,
        coordinator_epoch,
        records,
        end_offset = offset,
        transactions = machine.list().count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "loaded transaction coordinator partition"
    );
    Ok(machine)
}

/// Sends the markers of `job` in the background, then writes the transaction's completion.
fn spawn_markers(broker: Arc<Broker>, shard: Arc<Shard>, job: MarkerJob) {
    tokio::spawn(async move {
        let id = job.transactional_id.clone();
        if !send_markers(&broker, &shard, &job).await {
            tracing::info!(transactional_id = %id, "stopped sending transaction markers: this broker no longer coordinates the transaction (the new coordinator resumes them)");
            return;
        }
        loop {
            if !shard.servable() {
                return;
            }
            let t = shard.machine.lock().complete_markers(&id, crate::now_ms());
            match t {
                Ok(t) => match write(&broker, &shard, t).await {
                    Ok(()) => {
                        tracing::debug!(transactional_id = %id, commit = job.commit, "transaction completed");
                        return;
                    }
                    Err(e) => {
                        tracing::info!(transactional_id = %id, error = %e.message, "writing the transaction's completion failed; retrying")
                    }
                },
                Err(TxnError::ConcurrentTransactions { .. }) => {}
                Err(e) => {
                    tracing::warn!(transactional_id = %id, error = %e, "cannot complete the transaction after its markers");
                    return;
                }
            }
            tokio::time::sleep(MARKER_RETRY_BACKOFF).await;
        }
    });
}

/// Sends WriteTxnMarkers to the leaders of the job's partitions until every partition has
/// its marker; `false` if this broker stopped coordinating the transaction first.
async fn send_markers(broker: &Arc<Broker>, shard: &Arc<Shard>, job: &MarkerJob) -> bool {
    let mut remaining: Vec<TopicPartition> = job.partitions.clone();
    let mut connections: HashMap<i32, crate::client::Connection> = HashMap::new();
    let mut round = 0u32;
    while !remaining.is_empty() {
        if !shard.servable() {
            return false;
        }
        if round > 0 {
            tokio::time::sleep(MARKER_RETRY_BACKOFF).await;
        }
        round += 1;
        let state = broker.metadata.state();
        // Leader → partitions; partitions of deleted topics need no marker.
        let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        remaining.retain(|tp| {
            let Some(p) = state
                .topic(&tp.topic)
                .and_then(|t| t.partition(tp.partition))
            else {
                tracing::info!(topic = %tp.topic, partition = tp.partition, transactional_id = %job.transactional_id, "no marker for a partition that no longer exists");
                return false;
            };
            by_leader.entry(p.leader).or_default().push(tp.clone());
            true
        });
        for (leader, partitions) in by_leader {
            let Some(b) = state.broker(leader).filter(|b| !b.fenced) else {
                continue;
            };
            let addr = format!("{}:{}", b.host, b.port);
            let conn = match connections.entry(leader) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    match crate::client::Connection::connect_as(
                        &addr,
                        MARKER_REQUEST_TIMEOUT,
                        "cairn-txn-coordinator",
                    )
                    .await
                    {
                        Ok(c) => e.insert(c),
                        Err(err) => {
                            if round % 50 == 1 {
                                tracing::info!(leader, error = %err, transactional_id = %job.transactional_id, "cannot reach a partition leader for transaction markers; retrying");
                            }
                            continue;
                        }
                    }
                }
            };
            let request = marker_request(job, &partitions);
            match conn.send(&request).await {
                Ok(response) => {
                    for m in response.markers {
                        for t in m.topics {
                            for p in t.partitions {
                                let tp = TopicPartition {
                                    topic: t.name.as_str().to_owned(),
                                    partition: p.partition_index,
                                };
                                match ResponseError::try_from_code(p.error_code) {
                                    None => remaining.retain(|r| r != &tp),
                                    Some(
                                        e @ (ResponseError::InvalidProducerEpoch
                                        | ResponseError::TransactionCoordinatorFenced),
                                    ) => {
                                        // Kafka gives up on the transaction here: a newer
                                        // producer epoch or coordinator owns the partition.
                                        tracing::error!(topic = %tp.topic, partition = tp.partition, transactional_id = %job.transactional_id, error = ?e, "a partition refused the transaction marker for good; a newer coordinator or producer epoch owns it");
                                        remaining.retain(|r| r != &tp);
                                    }
                                    Some(e) => {
                                        if round % 50 == 1 {
                                            tracing::info!(topic = %tp.topic, partition = tp.partition, transactional_id = %job.transactional_id, error = ?e, "transaction marker not written yet; retrying");
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::info!(leader, error = %e, transactional_id = %job.transactional_id, "WriteTxnMarkers failed; reconnecting");
                    connections.remove(&leader);
                }
            }
        }
    }
    true
}

fn marker_request(job: &MarkerJob, partitions: &[TopicPartition]) -> WriteTxnMarkersRequest {
    let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        topics.entry(&tp.topic).or_default().push(tp.partition);
    }
    WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(job.producer_id))
            .with_producer_epoch(job.producer_epoch)
            .with_transaction_result(job.commit)
            .with_coordinator_epoch(job.coordinator_epoch)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(name, indexes)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                            .with_partition_indexes(indexes)
                    })
                    .collect(),
            ),
    ])
}

/// How often partitions newly led here are loaded (and their prepared transactions
/// resumed) without waiting for a client to ask.
const LOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The coordinator's background task: loads partitions led here and runs the timers until
/// shutdown.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(broker.config.txn_timeout_check_interval_ms.max(100));
    let mut next_expiry = Instant::now() + interval;
    loop {
        broker.txn_coordinator.load_hosted(&broker).await;
        if Instant::now() >= next_expiry {
            broker.txn_coordinator.expire(&broker).await;
            next_expiry = Instant::now() + interval;
        }
        tokio::select! {
            _ = tokio::time::sleep(LOAD_INTERVAL.min(interval)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
