//! [`GroupCoordinator`]: the async shell around `cairn_group`'s state machines — one per
//! `__consumer_offsets` partition this broker leads.
//!
//! ## What it owns
//! - Placement: group G belongs to partition `abs(G.hashCode()) % N` of
//!   `__consumer_offsets` (Java's `String.hashCode`, Kafka's `Utils.abs`, so that Kafka
//!   tooling computes the same partition), N being the topic's partition count, or
//!   `offsets.topic.num.partitions` before the topic exists.
//! - Loading: the first request for a partition (and the start of the broker) replays the
//!   partition's records into a fresh state machine; a partition this broker does not host
//!   answers NOT_COORDINATOR. (With replication, leadership changes will load and unload.)
//! - Persistence: after every call into a state machine its `Append` effects are encoded
//!   in Kafka's key/value formats ([`cairn_group::records`]) as one v2 batch and appended
//!   under the state machine's lock (so the log order is the state order); then, without
//!   the lock, the group committer makes them durable; only then are the call's answers
//!   delivered. An OffsetCommit is therefore answered only once its record is on disk.
//! - Delayed answers: JoinGroup and SyncGroup park a oneshot under a waiter id; effects
//!   complete it. A client that disconnects drops the receiver; the answer is discarded.
//! - Timers: a task ticks every state machine every [`TICK_INTERVAL_MS`] (session expiry,
//!   rebalance timeouts, the initial rebalance delay, offset retention).
//!
//! - A failed append or fsync turns the call's answers into COORDINATOR_NOT_AVAILABLE
//!   (clients look the coordinator up again and retry), but the state machine has already
//!   moved on; the log catches up with the next successful write of those groups, and a
//!   restart reloads what is durable. Replication will make such failures a leadership
//!   change (unload, reload) instead.
//!
//! ## Threads
//! State machines sit behind `parking_lot` mutexes held only for the synchronous call and
//! the append (page-cache write); fsync waits happen outside them.
//!
//! ## What survives a crash
//! What the group committer made durable: every acknowledged OffsetCommit, and group
//! membership as of the last completed SyncGroup. Delayed joins in flight are lost; their
//! clients time out and rejoin.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cairn_group::{
    CommitRequest, CommittedOffset, Effect, GroupConfig, GroupDescription, GroupError,
    GroupListing, GroupRecord, JoinRequest, JoinResponse, SyncRequest, SyncResponse, WaiterId,
};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};

use crate::replica_manager::Partition;
use crate::server::Broker;

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// `offsets.topic.num.partitions`: Kafka's default.
pub const OFFSETS_TOPIC_NUM_PARTITIONS_DEFAULT: i32 = 50;
/// How often timers are checked; session and rebalance timeouts fire at most this late.
pub const TICK_INTERVAL_MS: u64 = 100;
/// Largest batch of group records appended at once; larger writes (a DeleteGroups of a
/// group with many offsets) are split, staying far below the topic's `max.message.bytes`.
const APPEND_BATCH_BYTES_MAX: usize = 256 * 1024;
/// Bytes read per step while loading a partition.
const LOAD_READ_BYTES: usize = 1024 * 1024;

/// Why the coordinator cannot serve a group right now (besides the group's own errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoordinatorError {
    /// This broker does not lead the group's `__consumer_offsets` partition.
    #[error("this broker is not the coordinator of group '{group_id}'")]
    NotCoordinator { group_id: String },
    /// This broker leads the group's partition but has not opened or loaded it yet
    /// (COORDINATOR_LOAD_IN_PROGRESS: clients retry).
    #[error("the coordinator of group '{group_id}' is loading")]
    LoadInProgress { group_id: String },
    /// The partition could not be read or written.
    #[error("group coordinator storage failure: {0}")]
    Storage(String),
    #[error(transparent)]
    Group(#[from] GroupError),
}

/// Kafka's error code for a coordinator error (the one mapping, used by every handler).
pub fn coordinator_error_code(e: &CoordinatorError) -> ResponseError {
    match e {
        CoordinatorError::NotCoordinator { .. } => ResponseError::NotCoordinator,
        CoordinatorError::LoadInProgress { .. } => ResponseError::CoordinatorLoadInProgress,
        CoordinatorError::Storage(_) => ResponseError::CoordinatorNotAvailable,
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

/// One led partition: its state machine and its log.
struct Shard {
    machine: cairn_group::GroupCoordinator,
    partition: Arc<Partition>,
}

/// The broker's group coordinator.
pub struct GroupCoordinator {
    config: GroupConfig,
    /// `offsets.topic.num.partitions`, used until the topic exists.
    num_partitions_default: i32,
    shards: Mutex<HashMap<i32, Arc<Mutex<Shard>>>>,
    /// Serialises loading so a partition is replayed once.
    load_lock: tokio::sync::Mutex<()>,
    next_waiter: AtomicU64,
    waiters: Mutex<HashMap<WaiterId, Waiter>>,
    member_id_seed: u64,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig, num_partitions_default: i32) -> GroupCoordinator {
        GroupCoordinator {
            config,
            num_partitions_default,
            shards: Mutex::new(HashMap::new()),
            load_lock: tokio::sync::Mutex::new(()),
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

    /// The loaded shard of a group, loading its partition on first use.
    async fn shard(
        &self,
        broker: &Broker,
        group_id: &str,
    ) -> Result<Arc<Mutex<Shard>>, CoordinatorError> {
        let index = self.partition_of(broker, group_id);
        if let Some(s) = self.shards.lock().get(&index) {
            return Ok(s.clone());
        }
        let not_coordinator = || CoordinatorError::NotCoordinator {
            group_id: group_id.to_owned(),
        };
        let _loading = self.load_lock.lock().await;
        if let Some(s) = self.shards.lock().get(&index) {
            return Ok(s.clone());
        }
        let Some(partition) = broker.replicas.get(OFFSETS_TOPIC, index) else {
            // Led here but not open yet (the topic was just created): retriable.
            let led_here = broker
                .metadata
                .state()
                .topic(OFFSETS_TOPIC)
                .and_then(|t| t.partitions.get(index as usize).map(|p| p.leader))
                == Some(broker.config.node_id);
            return Err(if led_here {
                CoordinatorError::LoadInProgress {
                    group_id: group_id.to_owned(),
                }
            } else {
                not_coordinator()
            });
        };
        let shard = self.load(partition).await?;
        let shard = Arc::new(Mutex::new(shard));
        self.shards.lock().insert(index, shard.clone());
        Ok(shard)
    }

    /// Replays a partition's records into a new state machine, on a blocking thread (a
    /// large partition is read in full).
    async fn load(&self, partition: Arc<Partition>) -> Result<Shard, CoordinatorError> {
        let config = self.config.clone();
        let seed = self.member_id_seed;
        tokio::task::spawn_blocking(move || load_partition(config, seed, partition))
            .await
            .map_err(|e| CoordinatorError::Storage(format!("loading task failed: {e}")))?
    }

    /// Loads every hosted partition of the offsets topic (at startup).
    pub async fn load_hosted(&self, broker: &Broker) {
        let n = match broker.metadata.state().topic(OFFSETS_TOPIC) {
            Some(t) => t.partitions.len() as i32,
            None => return,
        };
        for index in 0..n {
            if broker.replicas.get(OFFSETS_TOPIC, index).is_none() {
                continue;
            }
            let _loading = self.load_lock.lock().await;
            if self.shards.lock().contains_key(&index) {
                continue;
            }
            let partition = broker.replicas.get(OFFSETS_TOPIC, index).expect("checked");
            match self.load(partition).await {
                Ok(shard) => {
                    self.shards
                        .lock()
                        .insert(index, Arc::new(Mutex::new(shard)));
                }
                Err(e) => tracing::error!(partition = index, error = %e, "loading groups failed"),
            }
        }
    }

    fn register(&self, waiter: Waiter) -> WaiterId {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        self.waiters.lock().insert(id, waiter);
        id
    }

    /// Runs `f` on the group's state machine, appends the records it emitted, makes them
    /// durable, delivers the delayed answers, and returns `f`'s result.
    async fn call<T>(
        &self,
        broker: &Broker,
        group_id: &str,
        f: impl FnOnce(&mut cairn_group::GroupCoordinator, i64) -> T,
    ) -> Result<T, CoordinatorError> {
        let shard = self.shard(broker, group_id).await?;
        let (result, effects, partition, appended) = {
            let mut s = shard.lock();
            let now_ms = crate::now_ms();
            let result = f(&mut s.machine, now_ms);
            let effects = s.machine.take_effects();
            let appended = append_records(&s.partition, &effects, now_ms);
            (result, effects, s.partition.clone(), appended)
        };
        let durable = self.make_durable(broker, partition, appended).await;
        self.deliver(effects, durable.is_ok());
        durable.map(|()| result)
    }

    async fn make_durable(
        &self,
        broker: &Broker,
        partition: Arc<Partition>,
        appended: Result<bool, String>,
    ) -> Result<(), CoordinatorError> {
        match appended {
            Ok(false) => Ok(()),
            Ok(true) => {
                if partition.uses_group_commit() {
                    broker
                        .replicas
                        .group_committer
                        .flush(partition)
                        .await
                        .map_err(|e| CoordinatorError::Storage(e.to_string()))
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(CoordinatorError::Storage(e)),
        }
    }

    fn deliver(&self, effects: Vec<Effect>, durable: bool) {
        let mut waiters = self.waiters.lock();
        for e in effects {
            match e {
                Effect::Append(_) => {}
                Effect::JoinDone { waiter, result } => {
                    if let Some(Waiter::Join(tx)) = waiters.remove(&waiter) {
                        let result = if durable {
                            result
                        } else {
                            Err(storage_failed(&result))
                        };
                        let _ = tx.send(result);
                    }
                }
                Effect::SyncDone { waiter, result } => {
                    if let Some(Waiter::Sync(tx)) = waiters.remove(&waiter) {
                        let result = if durable {
                            result
                        } else {
                            Err(storage_failed(&result))
                        };
                        let _ = tx.send(result);
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
    /// this or a later call. The waiter is removed if `f` never ran.
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
            .call(broker, &group_id, |m, now| f(m, waiter, now))
            .await;
        if let Err(e) = called {
            self.waiters.lock().remove(&waiter);
            return Err(e);
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

    pub async fn commit_offsets(
        &self,
        broker: &Broker,
        req: CommitRequest,
    ) -> Result<Vec<Result<(), GroupError>>, CoordinatorError> {
        let group_id = req.group_id.clone();
        self.call(broker, &group_id, |m, now| m.commit_offsets(&req, now))
            .await?
            .map_err(CoordinatorError::Group)
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

    /// Every group of every loaded partition.
    pub fn list_groups(&self) -> Vec<GroupListing> {
        let shards: Vec<_> = self.shards.lock().values().cloned().collect();
        shards
            .iter()
            .flat_map(|s| s.lock().machine.list_groups())
            .collect()
    }

    /// Fires the timers of every loaded partition.
    pub async fn tick(&self, broker: &Broker) {
        let shards: Vec<_> = self.shards.lock().values().cloned().collect();
        for shard in shards {
            let (effects, partition, appended) = {
                let mut s = shard.lock();
                let now_ms = crate::now_ms();
                s.machine.tick(now_ms);
                let effects = s.machine.take_effects();
                if effects.is_empty() {
                    continue;
                }
                let appended = append_records(&s.partition, &effects, now_ms);
                (effects, s.partition.clone(), appended)
            };
            let durable = self.make_durable(broker, partition, appended).await;
            if let Err(e) = &durable {
                tracing::warn!(error = %e, "persisting group timer effects failed");
            }
            self.deliver(effects, durable.is_ok());
        }
    }
}

/// Replays a partition's records into a new state machine. Blocking.
fn load_partition(
    config: GroupConfig,
    member_id_seed: u64,
    partition: Arc<Partition>,
) -> Result<Shard, CoordinatorError> {
    let started = std::time::Instant::now();
    let now_ms = crate::now_ms();
    let mut machine = cairn_group::GroupCoordinator::new(config, member_id_seed);
    let mut offset = partition.log_start_offset();
    let mut records = 0u64;
    let end = partition.high_watermark();
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
            if header.is_control() {
                continue;
            }
            let decoded = cairn_log::batch::decode_records(bytes)
                .map_err(|e| CoordinatorError::Storage(e.to_string()))?;
            for r in decoded {
                let Some(key) = &r.key else { continue };
                match GroupRecord::decode(key, r.value.as_deref()) {
                    Ok(Some(record)) => {
                        machine.replay(record, now_ms);
                        records += 1;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // A record we cannot read is skipped, loudly: refusing to load
                        // would take every group of the partition down with it.
                        tracing::error!(partition = partition.index, error = %e, "skipping an undecodable group record");
                    }
                }
            }
        }
    }
    machine.finish_loading(now_ms);
    machine.take_effects();
    tracing::info!(
        partition = partition.index,
        records,
        groups = machine.list_groups().len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "loaded group coordinator partition"
    );
    Ok(Shard { machine, partition })
}

/// The error a client gets when its answer's records could not be made durable.
fn storage_failed<T>(_: &Result<T, GroupError>) -> GroupError {
    GroupError::CoordinatorNotAvailable {
        group_id: String::new(),
    }
}

/// Appends the `Append` effects as v2 batches; reports whether anything was appended.
fn append_records(partition: &Partition, effects: &[Effect], now_ms: i64) -> Result<bool, String> {
    let mut pending: Vec<Record> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut appended = false;
    let flush = |records: &mut Vec<Record>| -> Result<(), String> {
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
        .map_err(|e| format!("encoding group records: {e}"))?;
        partition
            .append_as_leader(&mut buf, now_ms, false)
            .map_err(|e| match e {
                crate::replica_manager::AppendError::Refused(_, msg) => msg,
                crate::replica_manager::AppendError::Log(e) => e.to_string(),
            })?;
        records.clear();
        Ok(())
    };
    for e in effects {
        let Effect::Append(record) = e else { continue };
        let (key, value) = record.encode();
        pending_bytes += key.len() + value.as_ref().map_or(0, Vec::len) + 32;
        pending.push(Record {
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
        });
        appended = true;
        if pending_bytes >= APPEND_BATCH_BYTES_MAX {
            flush(&mut pending)?;
            pending_bytes = 0;
        }
    }
    flush(&mut pending)?;
    Ok(appended)
}

/// The coordinator's background task: loads hosted partitions, then ticks until shutdown.
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
