//! [`ReplicaManager`]: the partitions this broker hosts, each a [`Partition`] with its log
//! and high watermark, kept in step with the applied cluster metadata.
//!
//! ## High watermark on a single replica
//! With `FlushPolicy::GroupCommit` (the default) the high watermark is the log's recovery
//! point: consumers see a record only once it is fsynced, so nothing a consumer has read
//! can disappear in a power cut and have its offset reused. With the other policies the
//! high watermark is the log end offset, as in Kafka (durability comes from the policy).
//! The replication issue generalises this to the smallest durable offset in the ISR.
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
    AppendInfo, FlushPolicy, FlushTicket, LogConfig, LogError, PartitionLog, ReadInfo,
};
use cairn_meta::{ClusterState, TopicInfo};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

use crate::group_commit::GroupCommitter;

const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// What a leader append did, read under the same lock as the append itself.
pub struct LeaderAppend {
    pub info: AppendInfo,
    pub log_start_offset: i64,
    /// The records become durable and visible only through the group committer.
    pub needs_group_commit: bool,
}

/// One hosted partition.
pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    leader_epoch: AtomicI32,
    log: Mutex<PartitionLog>,
    high_watermark: AtomicI64,
    /// Whether a group-commit request nobody waits for is already queued.
    flush_requested: AtomicBool,
    /// Carries the high watermark; fetches parked in the purgatory wait on it.
    hw_tx: watch::Sender<i64>,
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

    /// Whether appends wait for the group committer to become durable and visible.
    pub fn uses_group_commit(&self) -> bool {
        matches!(
            self.log.lock().config().flush_policy,
            FlushPolicy::GroupCommit
        )
    }

    /// Appends a produce request's batches (patched in place), as leader.
    pub fn append_as_leader(
        &self,
        records: &mut [u8],
        now_ms: i64,
    ) -> Result<LeaderAppend, LogError> {
        let mut log = self.log.lock();
        let info = log.append_as_leader(records, self.leader_epoch(), now_ms)?;
        let log_start_offset = log.log_start_offset();
        let needs_group_commit = matches!(log.config().flush_policy, FlushPolicy::GroupCommit);
        if !needs_group_commit {
            let leo = log.log_end_offset();
            drop(log);
            self.maybe_increment_high_watermark(leo);
        }
        Ok(LeaderAppend {
            info,
            log_start_offset,
            needs_group_commit,
        })
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

    /// After a group-commit fsync: the recovery point and (for group commit) the high
    /// watermark move up to the ticket's offset (a ticket from before a truncation is
    /// ignored by the log).
    pub fn complete_flush(&self, ticket: &FlushTicket) {
        let mut log = self.log.lock();
        log.complete_flush_ticket(ticket);
        let visible = log.recovery_point();
        drop(log);
        self.maybe_increment_high_watermark(visible);
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

/// The partitions this broker hosts, by topic name and partition index.
pub struct ReplicaManager {
    node_id: i32,
    data_dir: PathBuf,
    base_config: LogConfig,
    partitions: RwLock<HashMap<(String, i32), Arc<Partition>>>,
    pub group_committer: GroupCommitter,
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
        }
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
    /// on this broker, applies changed configs, deletes logs of deleted topics. Blocking.
    pub fn apply_metadata(&self, state: &ClusterState, now_ms: i64) -> Result<(), LogError> {
        // Partitions no longer in the metadata (deleted topics) go first, so that a topic
        // deleted and re-created under the same name gets a fresh directory.
        let stale: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write();
            let keys: Vec<_> = partitions
                .iter()
                .filter(|(_, p)| {
                    state.topic(&p.topic).is_none_or(|t| {
                        t.topic_id != p.topic_id || t.partitions.len() <= p.index as usize
                    })
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        for partition in stale {
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
            for p in &topic.partitions {
                if !p.replicas.contains(&self.node_id) {
                    continue;
                }
                if let Some(existing) = self.get(&topic.name, p.partition) {
                    existing
                        .leader_epoch
                        .store(p.leader_epoch, Ordering::Release);
                    existing.with_log(|log| {
                        if log.config() != &config {
                            log.update_config(config.clone());
                        }
                    });
                    continue;
                }
                let partition = self.open_partition(
                    topic,
                    p.partition,
                    p.leader_epoch,
                    config.clone(),
                    now_ms,
                )?;
                self.partitions
                    .write()
                    .insert((topic.name.clone(), p.partition), Arc::new(partition));
            }
        }
        Ok(())
    }

    fn open_partition(
        &self,
        topic: &TopicInfo,
        index: i32,
        leader_epoch: i32,
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
        // Whatever recovery kept is now made durable, so it may be served.
        log.flush()?;
        let hw = log.log_end_offset();
        let (hw_tx, _) = watch::channel(hw);
        tracing::debug!(topic = %topic.name, partition = index, log_start_offset = log.log_start_offset(), log_end_offset = hw, "partition opened");
        Ok(Partition {
            topic: topic.name.clone(),
            topic_id: topic.topic_id,
            index,
            leader_epoch: AtomicI32::new(leader_epoch),
            log: Mutex::new(log),
            high_watermark: AtomicI64::new(hw),
            flush_requested: AtomicBool::new(false),
            hw_tx,
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

    /// Flushes and closes every log, writing clean-shutdown markers. Blocking.
    pub fn shutdown(&self) {
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
