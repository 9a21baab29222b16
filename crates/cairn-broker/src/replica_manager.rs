//! [`ReplicaManager`]: the partitions this broker hosts, each a [`Partition`] with its log
//! and high watermark, kept in step with the applied cluster metadata.
//!
//! ## Roles
//! Each partition is leader or follower as the latest applied metadata says
//! ([`Partition::apply_record`]): a new leader epoch on this broker makes it leader (its
//! leader-epoch cache gets the epoch's start offset), a new leader elsewhere makes it a
//! follower, which the replica fetchers ([`crate::replication::fetcher`]) truncate with
//! OffsetForLeaderEpoch and then feed with the leader's batches.
//!
//! ## High watermark
//! On the leader, the smallest of its own *durable* end and every ISR follower's log end
//! offset (see [`crate::replication::isr`]). The leader's durable end is the recovery point
//! under `FlushPolicy::GroupCommit` (the default: a record counts only once fsynced here,
//! and followers fsync before they fetch further, so `acks=all` means "on disk on every
//! in-sync replica") and the log end offset under the other policies (durability comes
//! from replication, as in Kafka). A single replica is the same rule with an ISR of one.
//! On a follower, the leader's high watermark as of the last fetch, capped by its own log
//! end offset.
//!
//! ## Locks
//! `role` may be taken before `log`, never the other way round: appends and truncations
//! check the role under its lock so that no batch of an old leader lands in the log of a
//! replica that has become leader.
//!
//! ## On disk
//! A partition lives in `<data_dir>/<topic>-<partition>/`, which also holds
//! `partition.metadata` (`topic_id: <uuid>`, Kafka's format) so that a directory left by a
//! deleted topic is never served as the data of a new topic with the same name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};

use cairn_log::{
    AbortedTxn, AppendInfo, EndTxnMarker, FlushPolicy, FlushTicket, LogConfig, LogError,
    PartitionLog, ReadInfo,
};
use cairn_meta::{ClusterState, PartitionRecord, TopicInfo};
use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

use crate::group_commit::GroupCommitter;
use crate::replication::fetcher::Fetchers;
use crate::replication::isr::LeaderView;

const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Pause before proposing another ISR change after one was refused or not committed.
pub const ISR_CHANGE_RETRY_BACKOFF_MS: i64 = 1_000;

/// What a leader append did, read under the same lock as the append itself.
pub struct LeaderAppend {
    pub info: AppendInfo,
    pub log_start_offset: i64,
    /// The records become durable and visible only through the group committer.
    pub needs_group_commit: bool,
}

/// Why a leader append failed.
#[derive(Debug)]
pub enum AppendError {
    /// Refused before touching the log (not the leader, too few in-sync replicas).
    Refused(ResponseError, String),
    Log(LogError),
}

impl From<LogError> for AppendError {
    fn from(e: LogError) -> AppendError {
        AppendError::Log(e)
    }
}

/// Leadership and replica set of a partition, as of the applied metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// -1: no leader (offline).
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// What this replica's role became after a metadata change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    Unchanged,
    BecameLeader,
    BecameFollower {
        leader: i32,
        leader_epoch: i32,
    },
    /// The partition has no leader: stop fetching.
    LeaderUnavailable,
}

/// An ISR change the leader asks the controller for (Kafka's AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

struct Role {
    info: ReplicaInfo,
    /// The followers as seen by this replica while it leads.
    view: LeaderView,
    /// Where the current leader epoch began in this replica's log (when leading).
    epoch_start_offset: i64,
    /// An ISR change is proposed and not yet committed or refused.
    isr_change_pending: bool,
    /// After a refused ISR change, no new proposal before this time (ms).
    isr_change_retry_at_ms: i64,
    /// The topic's `min.insync.replicas`.
    min_insync: i32,
}

/// One hosted partition.
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    node_id: i32,
    leader_epoch: AtomicI32,
    role: Mutex<Role>,
    log: Mutex<PartitionLog>,
    high_watermark: AtomicI64,
    /// Whether a group-commit request nobody waits for is already queued.
    flush_requested: AtomicBool,
    /// Carries the high watermark; fetches parked in the purgatory wait on it.
    hw_tx: watch::Sender<i64>,
    /// Carries the log end offset; followers' fetches parked at the leader wait on it.
    leo_tx: watch::Sender<i64>,
    /// Changes whenever leadership, the leader epoch or the ISR changes; parked produces
    /// wait on it.
    role_tx: watch::Sender<u64>,
}

impl Partition {
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.lock().log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.lock().log_end_offset()
    }

    /// The leadership and replica set this replica acts on.
    pub fn info(&self) -> ReplicaInfo {
        self.role.lock().info.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.role.lock().info.leader == self.node_id
    }

    /// The topic's `min.insync.replicas`.
    pub fn min_insync_replicas(&self) -> i32 {
        self.role.lock().min_insync
    }

    /// Whether appends wait for the group committer to become durable and visible.
    pub fn uses_group_commit(&self) -> bool {
        matches!(
            self.log.lock().config().flush_policy,
            FlushPolicy::GroupCommit
        )
    }

    /// Appends a produce request's batches (patched in place), as leader. Refused with
    /// NOT_LEADER_OR_FOLLOWER unless this replica leads; with `acks=all`
    /// (`check_min_insync`), refused with NOT_ENOUGH_REPLICAS while the ISR is smaller
    /// than `min.insync.replicas`.
    pub fn append_as_leader(
        &self,
        records: &[u8],
        now_ms: i64,
        check_min_insync: bool,
    ) -> Result<LeaderAppend, AppendError> {
        self.append_leader_with(check_min_insync, |log, leader_epoch| {
            log.append_as_leader(records, leader_epoch, now_ms)
        })
    }

    /// Appends batches a coordinator writes into its own partition (the group coordinator's
    /// transactional offset commits in `__consumer_offsets`), as leader: checked like
    /// [`Partition::append_as_leader`] (without the `min.insync.replicas` refusal: the
    /// coordinator checks the ISR once the records are replicated), except that the
    /// producer's sequence numbers are not checked — a coordinator's batch carries base
    /// sequence -1 — while its epoch still is (an older epoch is refused), and a
    /// transactional batch starts the producer's transaction in this partition
    /// (`PartitionLog::append_as_coordinator`, Kafka's `AppendOrigin.COORDINATOR`).
    pub fn append_as_coordinator(
        &self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<LeaderAppend, AppendError> {
        self.append_leader_with(false, |log, leader_epoch| {
            log.append_as_coordinator(records, leader_epoch, now_ms)
        })
    }

    /// Appends an end-transaction marker (COMMIT or ABORT) for `producer_id` as leader,
    /// for WriteTxnMarkers. Markers are written like `acks=all` produces: refused below
    /// `min.insync.replicas`, and the caller waits for the high watermark to pass them.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        now_ms: i64,
    ) -> Result<LeaderAppend, AppendError> {
        self.append_leader_with(true, |log, leader_epoch| {
            log.append_marker_as_leader(producer_id, producer_epoch, marker, leader_epoch, now_ms)
        })
    }

    /// The leader append shared by produces, coordinators and markers: checks leadership
    /// (and `min.insync.replicas` when asked) under the role lock, then runs `append` on
    /// the log with the current leader epoch.
    fn append_leader_with(
        &self,
        check_min_insync: bool,
        append: impl FnOnce(&mut PartitionLog, i32) -> Result<AppendInfo, LogError>,
    ) -> Result<LeaderAppend, AppendError> {
        let role = self.role.lock();
        if role.info.leader != self.node_id {
            return Err(AppendError::Refused(
                ResponseError::NotLeaderOrFollower,
                format!(
                    "broker {} is not the leader of {}-{} (leader: {})",
                    self.node_id, self.topic, self.index, role.info.leader
                ),
            ));
        }
        if check_min_insync && (role.info.isr.len() as i32) < role.min_insync {
            return Err(AppendError::Refused(
                ResponseError::NotEnoughReplicas,
                format!(
                    "{}-{} has {} in-sync replicas {:?}, fewer than min.insync.replicas={}",
                    self.topic,
                    self.index,
                    role.info.isr.len(),
                    role.info.isr,
                    role.min_insync
                ),
            ));
        }
        let mut log = self.log.lock();
        let info = append(&mut log, role.info.leader_epoch)?;
        drop(role);
        let log_start_offset = log.log_start_offset();
        let leo = log.log_end_offset();
        let needs_group_commit = matches!(log.config().flush_policy, FlushPolicy::GroupCommit);
        drop(log);
        self.leo_tx.send_replace(leo);
        if !needs_group_commit {
            self.update_leader_high_watermark();
        }
        Ok(LeaderAppend {
            info,
            log_start_offset,
            needs_group_commit,
        })
    }

    /// The last stable offset (LSO): the high watermark, or the first offset of the
    /// earliest transaction not yet decided below it if lower. `read_committed` consumers
    /// read up to here.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        self.log.lock().last_stable_offset(hw)
    }

    /// Reads whole batches from `fetch_offset` up to the last stable offset, for a
    /// `read_committed` consumer, with the aborted transactions overlapping what was read
    /// (the client drops their records). Also returns the last stable offset.
    pub fn read_committed(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<(ReadInfo, i64, Vec<AbortedTxn>), LogError> {
        let hw = self.high_watermark();
        let mut log = self.log.lock();
        let lso = log.last_stable_offset(hw);
        let read = log.read(fetch_offset, max_bytes, lso, min_one_batch)?;
        let mut upper = fetch_offset;
        for batch in cairn_log::Batches::new(&read.records) {
            match batch {
                Ok((h, _)) => upper = h.last_offset() + 1,
                Err(_) => break,
            }
        }
        let aborted = if upper > fetch_offset {
            log.collect_aborted_transactions(fetch_offset, upper.min(lso))?
        } else {
            Vec::new()
        };
        Ok((read, lso, aborted))
    }

    /// Appends batches fetched from the leader of `leader_epoch`; refused (`Ok(None)`)
    /// when this replica no longer follows that epoch. The caller makes them durable with
    /// [`Partition::flush_as_follower`] before it fetches again, so that the next fetch
    /// offset (what the leader counts for the high watermark) reports durable data.
    pub fn append_as_follower(
        &self,
        records: &[u8],
        leader_epoch: i32,
    ) -> Result<Option<AppendInfo>, LogError> {
        let role = self.role.lock();
        if role.info.leader == self.node_id || role.info.leader_epoch != leader_epoch {
            return Ok(None);
        }
        let info = self.log.lock().append_as_follower(records)?;
        Ok(Some(info))
    }

    /// Under group commit, fdatasyncs what a follower appended (without holding the log's
    /// lock while the disk works). Blocking.
    pub fn flush_as_follower(&self) -> Result<(), LogError> {
        let ticket = {
            let log = self.log.lock();
            if !matches!(log.config().flush_policy, FlushPolicy::GroupCommit) {
                return Ok(());
            }
            log.begin_flush()
        };
        if let Some(ticket) = ticket {
            ticket.sync().map_err(|source| LogError::Io {
                op: "fdatasync replicated batches",
                path: self.log.lock().dir().to_owned(),
                source,
            })?;
            self.complete_flush(&ticket);
        }
        Ok(())
    }

    /// Truncates a follower's log to `offset` (see `PartitionLog::truncate_to`), unless this
    /// replica no longer follows `leader_epoch`. The high watermark is capped by the new
    /// end. Returns the log end offset after it, or `None` when refused.
    pub fn truncate_as_follower(
        &self,
        offset: i64,
        leader_epoch: i32,
    ) -> Result<Option<i64>, LogError> {
        let role = self.role.lock();
        if role.info.leader == self.node_id || role.info.leader_epoch != leader_epoch {
            return Ok(None);
        }
        let mut log = self.log.lock();
        if offset < log.log_end_offset() {
            tracing::info!(topic = %self.topic, partition = self.index, from = log.log_end_offset(), to = offset, leader_epoch, "follower truncating its log to the leader's");
        }
        log.truncate_to(offset)?;
        let leo = log.log_end_offset();
        drop(log);
        drop(role);
        self.cap_high_watermark(leo);
        Ok(Some(leo))
    }

    /// Empties a follower's log and restarts it at `offset` (the leader's log start, when
    /// the follower's log ends before it).
    pub fn restart_as_follower_at(&self, offset: i64, leader_epoch: i32) -> Result<bool, LogError> {
        let role = self.role.lock();
        if role.info.leader == self.node_id || role.info.leader_epoch != leader_epoch {
            return Ok(false);
        }
        tracing::info!(topic = %self.topic, partition = self.index, offset, "follower log ends before the leader's log start; starting over there");
        self.log.lock().truncate_fully_and_start_at(offset)?;
        drop(role);
        self.cap_high_watermark(offset);
        self.maybe_increment_high_watermark(offset);
        Ok(true)
    }

    /// A follower's high watermark after a fetch: the leader's, capped by its own end.
    pub fn update_follower_high_watermark(&self, leader_hw: i64) {
        let leo = self.log_end_offset();
        self.maybe_increment_high_watermark(leader_hw.min(leo));
    }

    /// Lowers the high watermark to `offset` if it is above (after a truncation).
    fn cap_high_watermark(&self, offset: i64) {
        let previous = self.high_watermark.fetch_min(offset, Ordering::AcqRel);
        if previous > offset {
            self.hw_tx.send_replace(offset);
        }
    }

    /// The end of what this replica has made durable under its flush policy.
    fn durable_end(&self) -> i64 {
        let log = self.log.lock();
        match log.config().flush_policy {
            FlushPolicy::GroupCommit => log.recovery_point(),
            _ => log.log_end_offset(),
        }
    }

    /// As leader, moves the high watermark to what the ISR allows. While the ISR has fewer
    /// than `min.insync.replicas` members (capped by the replica count) the high watermark
    /// stays where it is (KIP-966): replicas that left the ISR then still hold everything
    /// committed, so the controller may elect one of them (its ELR) without a consumer
    /// ever having seen a record that the new leader lacks.
    pub fn update_leader_high_watermark(&self) -> bool {
        let durable = self.durable_end();
        let role = self.role.lock();
        if role.info.leader != self.node_id {
            return false;
        }
        let min_isr = (role.min_insync as usize).min(role.info.replicas.len().max(1));
        if role.info.isr.len() < min_isr {
            return false;
        }
        let hw = role
            .view
            .high_watermark(self.node_id, &role.info.isr, durable);
        drop(role);
        hw.is_some_and(|hw| self.maybe_increment_high_watermark(hw))
    }

    /// As leader, records a follower's fetch from `fetch_offset`: updates the high
    /// watermark and returns an ISR expansion to propose when the follower caught up.
    pub fn on_follower_fetch(
        &self,
        replica: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<Option<IsrProposal>, ResponseError> {
        let leo = self.log_end_offset();
        let mut role = self.role.lock();
        if role.info.leader != self.node_id {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        if !role.view.on_fetch(replica, fetch_offset, leo, now_ms) {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        drop(role);
        self.update_leader_high_watermark();
        let hw = self.high_watermark();
        let mut role = self.role.lock();
        if role.isr_change_pending
            || role.info.leader != self.node_id
            || now_ms < role.isr_change_retry_at_ms
        {
            return Ok(None);
        }
        let joining = role
            .view
            .caught_up(&role.info.isr, hw, role.epoch_start_offset);
        if joining.is_empty() {
            return Ok(None);
        }
        role.isr_change_pending = true;
        let mut new_isr = role.info.isr.clone();
        new_isr.extend(joining);
        Ok(Some(self.proposal(&role, new_isr)))
    }

    /// As leader, an ISR shrink to propose when followers lag more than `lag_max_ms`.
    pub fn isr_shrink(&self, now_ms: i64, lag_max_ms: i64) -> Option<IsrProposal> {
        let mut role = self.role.lock();
        if role.info.leader != self.node_id
            || role.isr_change_pending
            || now_ms < role.isr_change_retry_at_ms
        {
            return None;
        }
        let lagging = role
            .view
            .lagging(self.node_id, &role.info.isr, now_ms, lag_max_ms);
        if lagging.is_empty() {
            return None;
        }
        role.isr_change_pending = true;
        let new_isr = role
            .info
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        Some(self.proposal(&role, new_isr))
    }

    fn proposal(&self, role: &Role, new_isr: Vec<i32>) -> IsrProposal {
        IsrProposal {
            topic_id: self.topic_id,
            partition: self.index,
            leader_epoch: role.info.leader_epoch,
            partition_epoch: role.info.partition_epoch,
            new_isr,
        }
    }

    /// The proposal returned by [`Partition::on_follower_fetch`] or
    /// [`Partition::isr_shrink`] was decided; after a refusal or a failure the next
    /// proposal waits [`ISR_CHANGE_RETRY_BACKOFF_MS`].
    pub fn isr_change_done(&self, committed: bool, now_ms: i64) {
        let mut role = self.role.lock();
        role.isr_change_pending = false;
        if !committed {
            role.isr_change_retry_at_ms = now_ms + ISR_CHANGE_RETRY_BACKOFF_MS;
        }
    }

    /// Brings the role in line with the partition's committed record. Blocking (the
    /// leader-epoch cache is written when this replica becomes leader).
    pub fn apply_record(
        &self,
        record: &PartitionRecord,
        min_insync: i32,
        now_ms: i64,
    ) -> Result<RoleChange, LogError> {
        let me = self.node_id;
        let new = ReplicaInfo {
            leader: record.leader,
            leader_epoch: record.leader_epoch,
            partition_epoch: record.partition_epoch,
            replicas: record.replicas.clone(),
            isr: record.isr.clone(),
        };
        let mut role = self.role.lock();
        role.min_insync = min_insync;
        if role.info == new {
            return Ok(RoleChange::Unchanged);
        }
        let old = std::mem::replace(&mut role.info, new.clone());
        if new.partition_epoch != old.partition_epoch {
            role.isr_change_pending = false;
        }
        let leadership_changed = old.leader != new.leader || old.leader_epoch != new.leader_epoch;
        let change = if !leadership_changed {
            role.view.set_replicas(me, &new.replicas);
            for r in &old.isr {
                if !new.isr.contains(r) {
                    role.view.reset(*r);
                }
            }
            RoleChange::Unchanged
        } else if new.leader == me {
            let mut log = self.log.lock();
            log.assign_leader_epoch_start(new.leader_epoch)?;
            role.epoch_start_offset = log.log_end_offset();
            drop(log);
            role.view = LeaderView::new(me, &new.replicas, &new.isr, now_ms);
            tracing::info!(topic = %self.topic, partition = self.index, leader_epoch = new.leader_epoch, isr = ?new.isr, start_offset = role.epoch_start_offset, "became leader");
            RoleChange::BecameLeader
        } else if new.leader >= 0 {
            tracing::info!(topic = %self.topic, partition = self.index, leader = new.leader, leader_epoch = new.leader_epoch, "became follower");
            RoleChange::BecameFollower {
                leader: new.leader,
                leader_epoch: new.leader_epoch,
            }
        } else {
            tracing::warn!(topic = %self.topic, partition = self.index, isr = ?new.isr, "partition has no leader (every in-sync replica is fenced)");
            RoleChange::LeaderUnavailable
        };
        self.leader_epoch.store(new.leader_epoch, Ordering::Release);
        drop(role);
        if leadership_changed || old.isr != new.isr {
            self.role_tx.send_modify(|g| *g += 1);
        }
        if new.leader == me {
            // A smaller ISR may let the high watermark move.
            self.update_leader_high_watermark();
        }
        Ok(change)
    }

    /// A receiver that changes whenever leadership, the leader epoch or the ISR changes.
    pub fn subscribe_role(&self) -> watch::Receiver<u64> {
        self.role_tx.subscribe()
    }

    /// A receiver that changes whenever the log end offset moves on the leader.
    pub fn subscribe_log_end(&self) -> watch::Receiver<i64> {
        self.leo_tx.subscribe()
    }

    /// Reads whole batches from `fetch_offset` up to the log end offset, for a follower.
    pub fn read_for_follower(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
    ) -> Result<ReadInfo, LogError> {
        let log = self.log.lock();
        let leo = log.log_end_offset();
        log.read(fetch_offset, max_bytes, leo, true)
    }

    /// Reads whole batches from `fetch_offset`, never past the high watermark.
    pub fn read(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<ReadInfo, LogError> {
        let hw = self.high_watermark();
        self.log
            .lock()
            .read(fetch_offset, max_bytes, hw, min_one_batch)
    }

    pub fn with_log<T>(&self, f: impl FnOnce(&mut PartitionLog) -> T) -> T {
        f(&mut self.log.lock())
    }

    pub fn begin_flush(&self) -> Option<FlushTicket> {
        self.log.lock().begin_flush()
    }

    /// Marks a flush as requested; `false` if one was already pending.
    pub fn mark_flush_requested(&self) -> bool {
        !self.flush_requested.swap(true, Ordering::AcqRel)
    }

    /// Called by the group committer just before it takes this partition's ticket.
    pub fn clear_flush_requested(&self) {
        self.flush_requested.store(false, Ordering::Release);
    }

    /// After a group-commit fsync: the recovery point moves up to the ticket's offset (a
    /// ticket from before a truncation is ignored by the log), and with it, on a leader,
    /// the high watermark as far as the ISR allows.
    pub fn complete_flush(&self, ticket: &FlushTicket) {
        self.log.lock().complete_flush_ticket(ticket);
        self.update_leader_high_watermark();
    }

    /// Moves the high watermark forward (never back) and wakes parked fetches; reports
    /// whether it moved.
    pub fn maybe_increment_high_watermark(&self, offset: i64) -> bool {
        let previous = self.high_watermark.fetch_max(offset, Ordering::AcqRel);
        if offset > previous {
            self.hw_tx.send_replace(offset);
            true
        } else {
            false
        }
    }

    /// A receiver that changes whenever the high watermark moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// After retention or DeleteRecords the high watermark may never be below the log start.
    fn clamp_high_watermark_to_log_start(&self) {
        let start = self.log.lock().log_start_offset();
        self.maybe_increment_high_watermark(start);
    }
}

/// What [`ReplicaManager::apply_metadata`] has done, under its lock.
struct Applied {
    /// The metadata version applied last; an older state is ignored.
    version: u64,
    /// Set by [`ReplicaManager::shutdown`]: from then on no log is opened. An apply that
    /// reopened a partition the shutdown had just closed would map the same index files
    /// twice, and the close trimming them under the other mapping is a SIGBUS.
    shut_down: bool,
}

/// The partitions this broker hosts, by topic name and partition index.
pub struct ReplicaManager {
    node_id: i32,
    data_dir: PathBuf,
    base_config: LogConfig,
    partitions: RwLock<HashMap<(String, i32), Arc<Partition>>>,
    pub group_committer: GroupCommitter,
    /// One replica fetcher per leader this broker follows.
    pub fetchers: Fetchers,
    /// Serialises [`ReplicaManager::apply_metadata`] with itself and with
    /// [`ReplicaManager::shutdown`].
    applied: Mutex<Applied>,
    /// Producer ids this broker hands out (InitProducerId).
    pub producer_ids: crate::producer_ids::ProducerIdManager,
}

impl ReplicaManager {
    pub fn new(
        node_id: i32,
        data_dir: &Path,
        base_config: LogConfig,
        group_committer: GroupCommitter,
    ) -> ReplicaManager {
        ReplicaManager {
            node_id,
            data_dir: data_dir.to_owned(),
            base_config,
            partitions: RwLock::new(HashMap::new()),
            group_committer,
            fetchers: Fetchers::new(node_id),
            applied: Mutex::new(Applied {
                version: 0,
                shut_down: false,
            }),
            producer_ids: crate::producer_ids::ProducerIdManager::new(),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    pub fn base_config(&self) -> &LogConfig {
        &self.base_config
    }

    /// The effective log config of a topic: broker defaults, then the topic's overrides.
    pub fn topic_log_config(&self, topic: &TopicInfo) -> Result<LogConfig, LogError> {
        let mut config = self.base_config.clone();
        config.apply_props(topic.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        Ok(config)
    }

    /// The topic's `min.insync.replicas`, exactly as the controller reads it
    /// (`cairn_meta::controller::min_insync`): the high watermark is held while the ISR is
    /// below it, which is what makes the controller's ELR elections safe, so both sides
    /// must agree. A broker-wide `--set min.insync.replicas` is stored with each topic at
    /// creation.
    pub fn min_insync_replicas(&self, topic: &TopicInfo) -> i32 {
        cairn_meta::controller::min_insync(topic)
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .get(&(topic.to_owned(), partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Brings hosted partitions in line with `state`: opens logs of new partitions placed
    /// on this broker, applies changed configs, deletes logs of deleted topics (and of
    /// partitions moved away), and makes each partition leader or follower as `state`
    /// says, starting and stopping replica fetchers. Blocking. A state older than one
    /// already applied is ignored.
    pub fn apply_metadata(&self, state: &ClusterState, now_ms: i64) -> Result<(), LogError> {
        let mut applied = self.applied.lock();
        if applied.shut_down || state.applied_records() < applied.version {
            return Ok(());
        }
        applied.version = state.applied_records();
        self.fetchers.set_brokers(
            state
                .brokers()
                .map(|b| (b.broker_id, format!("{}:{}", b.host, b.port))),
        );
        // Partitions no longer in the metadata (deleted topics) go first, so that a topic
        // deleted and re-created under the same name gets a fresh directory.
        let node_id = self.node_id;
        let stale: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write();
            let keys: Vec<_> = partitions
                .iter()
                .filter(|(_, p)| {
                    state.topic(&p.topic).is_none_or(|t| {
                        t.topic_id != p.topic_id
                            || t.partitions
                                .get(p.index as usize)
                                .is_none_or(|r| !r.replicas.contains(&node_id))
                    })
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        for partition in stale {
            self.fetchers.unfollow(&partition.topic, partition.index);
            // No longer a replica (topic deleted, or reassigned away): it leads nothing, so
            // produces parked on it (acks=all) answer NOT_LEADER_OR_FOLLOWER now instead of
            // timing out, and nothing more is appended or served through held handles.
            partition.role.lock().info.leader = -1;
            partition.role_tx.send_modify(|g| *g += 1);
            tracing::info!(topic = %partition.topic, partition = partition.index, "deleting partition log");
            let partition = Arc::try_unwrap(partition);
            match partition {
                Ok(p) => p.log.into_inner().delete()?,
                // A request still holds it: delete the directory through the shared handle.
                Err(p) => {
                    let dir = p.log.lock().dir().to_owned();
                    remove_dir_logged(&dir);
                }
            }
        }
        for topic in state.topics() {
            let config = self.topic_log_config(topic)?;
            let min_insync = self.min_insync_replicas(topic);
            for p in &topic.partitions {
                if !p.replicas.contains(&self.node_id) {
                    continue;
                }
                let partition = match self.get(&topic.name, p.partition) {
                    Some(existing) => {
                        existing.with_log(|log| {
                            if log.config() != &config {
                                log.update_config(config.clone());
                            }
                        });
                        existing
                    }
                    None => {
                        let partition = Arc::new(self.open_partition(
                            topic,
                            p.partition,
                            config.clone(),
                            now_ms,
                        )?);
                        self.partitions
                            .write()
                            .insert((topic.name.clone(), p.partition), partition.clone());
                        partition
                    }
                };
                match partition.apply_record(p, min_insync, now_ms)? {
                    RoleChange::Unchanged => {}
                    RoleChange::BecameLeader | RoleChange::LeaderUnavailable => {
                        self.fetchers.unfollow(&topic.name, p.partition)
                    }
                    RoleChange::BecameFollower {
                        leader,
                        leader_epoch,
                    } => self
                        .fetchers
                        .follow(partition.clone(), leader, leader_epoch),
                }
            }
        }
        Ok(())
    }

    fn open_partition(
        &self,
        topic: &TopicInfo,
        index: i32,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Partition, LogError> {
        let dir = self.data_dir.join(format!("{}-{}", topic.name, index));
        let marker = dir.join(PARTITION_METADATA_FILE);
        let expected = format!("version: 0\ntopic_id: {}\n", topic.topic_id);
        match std::fs::read_to_string(&marker) {
            Ok(found) if found == expected => {}
            Ok(found) => {
                tracing::warn!(dir = %dir.display(), %found, "directory belongs to another topic id (a deleted topic); removing it");
                remove_dir_logged(&dir);
            }
            Err(_) => {}
        }
        let mut log = PartitionLog::open(&dir, config, now_ms)?;
        if !marker.exists() {
            write_file_durably(&marker, expected.as_bytes()).map_err(|source| LogError::Io {
                op: "write partition.metadata",
                path: marker.clone(),
                source,
            })?;
        }
        // Whatever recovery kept is now durable.
        log.flush()?;
        // The high watermark starts at the log start: what may be served is decided by
        // the role (a leader's ISR, a follower's leader), not by what this disk holds,
        // which can include records that were never committed.
        let hw = log.log_start_offset();
        let leo = log.log_end_offset();
        let (hw_tx, _) = watch::channel(hw);
        let (leo_tx, _) = watch::channel(leo);
        let (role_tx, _) = watch::channel(0);
        tracing::debug!(topic = %topic.name, partition = index, log_start_offset = hw, log_end_offset = leo, "partition opened");
        Ok(Partition {
            topic: topic.name.clone(),
            topic_id: topic.topic_id,
            index,
            node_id: self.node_id,
            leader_epoch: AtomicI32::new(-1),
            // No role until `apply_record`: never leader, so nothing is appended or served
            // before the metadata says what this replica is.
            role: Mutex::new(Role {
                info: ReplicaInfo {
                    leader: -1,
                    leader_epoch: -1,
                    partition_epoch: -1,
                    replicas: Vec::new(),
                    isr: Vec::new(),
                },
                view: LeaderView::default(),
                epoch_start_offset: leo,
                isr_change_pending: false,
                isr_change_retry_at_ms: 0,
                min_insync: 1,
            }),
            log: Mutex::new(log),
            high_watermark: AtomicI64::new(hw),
            flush_requested: AtomicBool::new(false),
            hw_tx,
            leo_tx,
            role_tx,
        })
    }

    /// `flush.ms` / `flush.messages` for logs with the interval policy. Blocking; run often
    /// (every [`crate::server::FLUSH_CHECK_INTERVAL`]) so `flush.ms` keeps its meaning.
    pub fn flush_by_policy(&self, now_ms: i64) {
        for partition in self.all() {
            if let Err(e) = partition.with_log(|log| log.maybe_flush_by_policy(now_ms)) {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "interval flush failed");
            }
        }
    }

    /// Retention (`retention.ms`, `retention.bytes`) and compaction for every hosted
    /// partition. Blocking. Compaction rewrites segments without holding the log's lock,
    /// so appends and fetches continue meanwhile; only the swap takes the lock.
    pub fn enforce_retention_and_compact(&self, now_ms: i64) {
        for partition in self.all() {
            let retention = partition.with_log(|log| log.delete_old_segments(now_ms));
            match retention {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(topic = %partition.topic, partition = partition.index, segments = deleted, "retention deleted segments")
                }
                Err(e) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "retention failed")
                }
            }
            partition.clamp_high_watermark_to_log_start();
            // The log forgets completed transactions only when told the high watermark
            // (cairn-log's LSO contract); the cleaner stops at the first unstable offset.
            partition.last_stable_offset();
            let Some(task) = partition.with_log(|log| log.prepare_clean(now_ms)) else {
                continue;
            };
            let started = std::time::Instant::now();
            let cleaned = task
                .run()
                .and_then(|cleaned| partition.with_log(|log| log.finish_clean(cleaned)));
            match cleaned {
                Ok(stats) => tracing::info!(
                    topic = %partition.topic,
                    partition = partition.index,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    ?stats,
                    "compaction pass done"
                ),
                Err(e) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "compaction failed")
                }
            }
        }
    }

    /// Forgets idempotent producers idle for `expiration_ms` (`producer.id.expiration.ms`)
    /// in every hosted log, leader or follower. Returns how many were removed.
    pub fn remove_expired_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.all()
            .iter()
            .map(|p| p.with_log(|log| log.remove_expired_producers(now_ms, expiration_ms)))
            .sum()
    }

    /// Flushes and closes every log, writing clean-shutdown markers. Blocking. Waits for
    /// a metadata apply in progress; later ones do nothing.
    pub fn shutdown(&self) {
        let mut applied = self.applied.lock();
        applied.shut_down = true;
        let partitions: Vec<_> = self.partitions.write().drain().map(|(_, p)| p).collect();
        for partition in partitions {
            let name = format!("{}-{}", partition.topic, partition.index);
            match Arc::try_unwrap(partition) {
                Ok(p) => {
                    if let Err(e) = p.log.into_inner().close() {
                        tracing::warn!(partition = %name, error = %e, "closing the log failed; the next start recovers it");
                    }
                }
                Err(p) => {
                    if let Err(e) = p.log.lock().flush() {
                        tracing::warn!(partition = %name, error = %e, "flush at shutdown failed");
                    }
                }
            }
        }
    }
}

/// Partitions whose log this broker should have but does not: it is in their ISR or ELR
/// (so the controller could elect it) and their directory is missing or belongs to
/// another topic id (a replaced or wiped disk). A partition still at leader epoch 0 and
/// partition epoch 0 is left out: it was just created, and a crash before its directory
/// was made lost nothing.
pub fn lost_partitions(data_dir: &Path, node_id: i32, state: &ClusterState) -> Vec<(Uuid, i32)> {
    let mut lost = Vec::new();
    for topic in state.topics() {
        for p in &topic.partitions {
            let eligible = p.isr.contains(&node_id) || p.elr.contains(&node_id);
            if !eligible || (p.leader_epoch == 0 && p.partition_epoch == 0) {
                continue;
            }
            let marker = data_dir
                .join(format!("{}-{}", topic.name, p.partition))
                .join(PARTITION_METADATA_FILE);
            let expected = format!("version: 0\ntopic_id: {}\n", topic.topic_id);
            if std::fs::read_to_string(&marker).ok().as_deref() != Some(expected.as_str()) {
                lost.push((topic.topic_id, p.partition));
            }
        }
    }
    lost
}

fn remove_dir_logged(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove directory");
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync and rename.
pub(crate) fn write_file_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}
