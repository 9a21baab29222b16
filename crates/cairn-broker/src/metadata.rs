//! [`MetadataManager`]: this node's applied copy of the cluster metadata and the one door
//! through which changes are proposed.
//!
//! Every change goes through the metadata quorum ([`crate::quorum`]): the caller's
//! `decide` runs against the latest applied state, its records are proposed with that
//! state's version, and [`MetadataManager::propose`] returns once they are committed by a
//! majority of voters and applied locally. A single node is a one-voter quorum; with
//! `--voters`, a node that does not lead forwards its proposal to the leader (the active
//! controller) over gRPC. An observer (a node outside `--voters`) forwards every proposal.
//!
//! ## Registration
//! Every start registers this broker with a new incarnation and waits for it (up to
//! [`STARTUP_TIMEOUT_MS`]). An observer that restarts with metadata it persisted waits
//! only [`OBSERVER_OFFLINE_START_MS`]: if no voter registered it by then it starts
//! serving with that metadata, and [`MetadataManager::finish_registration`] is retried in
//! the background until a leader commits the registration.
//!
//! ## Files (`<data_dir>/__cluster_metadata/`)
//! - `quorum/rocksdb/`: the voter's Raft log, hard state and snapshots (see
//!   `cairn_meta::quorum::RocksStorage`). A `quorum/quorum.wal` of an earlier version is
//!   moved into it on start and kept as `quorum.wal.migrated`.
//! - `observer.snapshot`: an observer's applied state (see
//!   `cairn_meta::quorum::ObserverState`), replaced atomically after every applied batch.
//! - `metadata.log`: the single-node log of earlier versions. On the first start of a
//!   one-voter quorum its records are imported as the first entry, and the file is renamed
//!   to `metadata.log.imported` (kept as a backup, never read again).
//!
//! ## Threads
//! `open` and `propose` block (fsync, waiting for a commit): call them from a blocking
//! thread. `state` never blocks on a commit in progress.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_meta::quorum::Proposal;
use cairn_meta::{ClusterState, MetadataLog, MetadataLogError, MetadataRecord};
use parking_lot::Mutex;

use crate::quorum::{Quorum, QuorumSettings, QuorumStartError, Submitted};

/// How long a proposal may wait for a commit before the request fails with a timeout
/// (less than clients' default request timeout of 30 s, so they see our error).
pub const PROPOSE_TIMEOUT_MS: u64 = 15_000;
/// How long a starting broker waits for a quorum to register itself.
pub const STARTUP_TIMEOUT_MS: u64 = 120_000;
/// Pause before asking again when no leader is known yet.
const NO_LEADER_RETRY_MS: u64 = 20;
/// How long a restarted observer that holds persisted metadata waits for its
/// registration before it serves with that metadata anyway (no voter reachable).
pub const OBSERVER_OFFLINE_START_MS: u64 = 10_000;
/// Name of the quorum's directory under the metadata directory.
pub use crate::quorum::QUORUM_DIR;
const LEGACY_LOG: &str = "metadata.log";
const LEGACY_LOG_IMPORTED: &str = "metadata.log.imported";

/// Why a metadata change (or opening the metadata) failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error(transparent)]
    Start(#[from] QuorumStartError),
    #[error("importing the single-node metadata log: {0}")]
    Import(#[from] MetadataLogError),
    #[error("metadata change not committed within {timeout_ms} ms ({reason})")]
    Timeout { timeout_ms: u64, reason: String },
    #[error(
        "metadata changed concurrently while this request was decided; retry (state version {version})"
    )]
    Conflict { version: u64 },
    #[error("metadata quorum stopped: {0}")]
    Stopped(String),
    #[error("metadata: {0}")]
    Io(String),
}

/// A controller decision that may be asked again when another change got in first: the
/// records to commit, a refusal, or `None` when it cannot decide a second time.
type Decide<'a, E> = dyn FnMut(&ClusterState) -> Option<Result<Vec<MetadataRecord>, E>> + 'a;

/// Applied metadata plus the quorum that orders changes to it.
pub struct MetadataManager {
    quorum: Quorum,
    /// Serialises this node's proposals so that each decides on the state the previous
    /// one produced.
    propose_lock: Mutex<()>,
    /// A registration not committed yet (an observer that started offline).
    pending_registration: Mutex<Option<PendingRegistration>>,
}

/// A registration left to retry, with the partitions found lost at start.
type PendingRegistration = (Registration, Vec<(uuid::Uuid, i32)>);

/// What registering this broker proposes, kept to retry it.
#[derive(Clone)]
struct Registration {
    node_id: i32,
    host: String,
    port: u16,
    rack: Option<String>,
    incarnation: uuid::Uuid,
}

impl MetadataManager {
    /// Opens a one-voter quorum under `dir`, names the cluster on first start and
    /// registers this broker (a new incarnation whenever its address changed).
    pub fn open(
        dir: &Path,
        node_id: i32,
        host: &str,
        port: u16,
    ) -> Result<MetadataManager, MetadataError> {
        let settings = QuorumSettings {
            node_id: node_id as u64,
            voters: Default::default(),
            controller_listen: None,
        };
        Self::open_quorum(dir, node_id, (host, port, None), &settings, &|_| Vec::new())
    }

    /// Like [`MetadataManager::open`], as one voter of the quorum `settings` describes.
    /// Waits (up to [`STARTUP_TIMEOUT_MS`]) for a leader to register this broker.
    /// `lost` names the partitions this broker should hold but whose logs are gone (see
    /// [`crate::replica_manager::lost_partitions`]); they are reported at registration so
    /// that the controller never elects this broker for them before it re-replicates.
    pub fn open_quorum(
        dir: &Path,
        node_id: i32,
        (host, port, rack): (&str, u16, Option<String>),
        settings: &QuorumSettings,
        lost: &dyn Fn(&ClusterState) -> Vec<(uuid::Uuid, i32)>,
    ) -> Result<MetadataManager, MetadataError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| MetadataError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let fresh = !dir.join(QUORUM_DIR).exists();
        let quorum = Quorum::start(dir, settings)?;
        let manager = MetadataManager {
            quorum,
            propose_lock: Mutex::new(()),
            pending_registration: Mutex::new(None),
        };
        let deadline = Instant::now() + Duration::from_millis(STARTUP_TIMEOUT_MS);
        let legacy = dir.join(LEGACY_LOG);
        if fresh && !settings.is_observer() && settings.voters.len() <= 1 && legacy.exists() {
            manager.import_legacy_log(dir, deadline)?;
        }
        let registration = Registration {
            node_id,
            host: host.to_owned(),
            port,
            rack,
            // A new incarnation on every start: the controller then moves leaderships
            // away from (or, where it is the only in-sync replica, bumps the epoch of)
            // partitions this broker led, since it may have lost records it had not
            // fsynced.
            incarnation: uuid::Uuid::new_v4(),
        };
        let offline_start =
            manager.quorum.is_observer() && manager.quorum.status().applied_index > 0;
        if !offline_start {
            manager.register(&registration, lost, deadline)?;
            return Ok(manager);
        }
        // An observer with persisted metadata: serve with it if no voter answers soon.
        let lost_now = lost(&manager.state());
        let deadline = Instant::now() + Duration::from_millis(OBSERVER_OFFLINE_START_MS);
        let lost_at_start = lost_now.clone();
        match manager.register(&registration, &|_| lost_at_start.clone(), deadline) {
            Ok(()) => {}
            Err(MetadataError::Timeout { reason, .. }) => {
                tracing::warn!(
                    applied_index = manager.quorum.status().applied_index,
                    "metadata observer: not registered within {OBSERVER_OFFLINE_START_MS} ms ({reason}); \
                     serving with the metadata persisted here and registering in the background"
                );
                *manager.pending_registration.lock() = Some((registration, lost_now));
            }
            Err(e) => return Err(e),
        }
        Ok(manager)
    }

    /// Registers this broker (and names the cluster on its first start).
    fn register(
        &self,
        r: &Registration,
        lost: &dyn Fn(&ClusterState) -> Vec<(uuid::Uuid, i32)>,
        deadline: Instant,
    ) -> Result<(), MetadataError> {
        let mut cluster_id = None;
        self.commit(deadline, &mut |state: &ClusterState| {
            let mut records = Vec::new();
            if state.cluster_id().is_none() {
                records.push(MetadataRecord::InitCluster {
                    cluster_id: cluster_id.get_or_insert_with(new_cluster_id).clone(),
                });
            }
            let lost = lost(state);
            if !lost.is_empty() {
                tracing::warn!(partitions = ?lost, "logs of partitions this broker replicates are missing; reporting them lost so that it re-replicates them before it can lead them");
            }
            match cairn_meta::controller::register_broker_with_lost(
                state,
                r.node_id,
                &r.host,
                r.port,
                r.rack.clone(),
                r.incarnation,
                &lost,
            ) {
                Ok(registration) => records.extend(registration),
                Err(e) => return Some(Err(e)),
            }
            Some(Ok(records))
        })?
        .map_err(|e| MetadataError::Io(format!("registering this broker: {e}")))?;
        Ok(())
    }

    /// Whether this broker still has to register (an observer that started offline).
    pub fn registration_pending(&self) -> bool {
        self.pending_registration.lock().is_some()
    }

    /// Tries, for up to [`PROPOSE_TIMEOUT_MS`], to commit a registration left pending at
    /// start; `Ok(())` once none is pending. Blocking.
    pub fn finish_registration(&self) -> Result<(), MetadataError> {
        let Some((registration, lost)) = self.pending_registration.lock().clone() else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_millis(PROPOSE_TIMEOUT_MS);
        // Lost partitions as judged at start, before the partition logs were opened (a
        // retry of an incarnation that did commit ignores them).
        self.register(&registration, &|_| lost.clone(), deadline)?;
        tracing::info!("metadata observer: registered with the controller");
        *self.pending_registration.lock() = None;
        Ok(())
    }

    /// Commits the records of the earlier single-node `metadata.log` as the quorum's first
    /// change, then renames the file so that it is never imported twice.
    fn import_legacy_log(&self, dir: &Path, deadline: Instant) -> Result<(), MetadataError> {
        let records = MetadataLog::read_records(dir)?;
        tracing::info!(
            records = records.len(),
            "importing the single-node metadata log into the metadata quorum"
        );
        let mut records = Some(records);
        self.commit(deadline, &mut |state: &ClusterState| {
            // Once: a retry finds the records applied (version > 0) and has nothing to do.
            let records = if state.applied_records() == 0 {
                records.take().unwrap_or_default()
            } else {
                Vec::new()
            };
            Some(Ok::<_, std::convert::Infallible>(records))
        })?
        .unwrap_or_else(|never| match never {});
        std::fs::rename(dir.join(LEGACY_LOG), dir.join(LEGACY_LOG_IMPORTED)).map_err(|e| {
            MetadataError::Io(format!("cannot rename the imported metadata log: {e}"))
        })?;
        Ok(())
    }

    /// The latest applied metadata; cheap to call, never blocks on a commit in progress.
    pub fn state(&self) -> Arc<ClusterState> {
        self.quorum.state()
    }

    /// The quorum this node votes in.
    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    /// Validates and commits a change atomically with respect to other proposals:
    /// `decide` sees the latest state and returns the records to commit (or its refusal).
    /// Returns once the records are committed and applied on this node. Blocking: call
    /// from a blocking thread.
    pub fn propose<E>(
        &self,
        decide: impl FnOnce(&ClusterState) -> Result<Vec<MetadataRecord>, E>,
    ) -> Result<Result<Arc<ClusterState>, E>, MetadataError> {
        self.propose_within(PROPOSE_TIMEOUT_MS as i64, decide)
    }

    /// [`Self::propose`] with the caller's timeout (an admin request's `timeout_ms`): at
    /// most [`PROPOSE_TIMEOUT_MS`]; 0 or less means that default.
    pub fn propose_within<E>(
        &self,
        timeout_ms: i64,
        decide: impl FnOnce(&ClusterState) -> Result<Vec<MetadataRecord>, E>,
    ) -> Result<Result<Arc<ClusterState>, E>, MetadataError> {
        let timeout_ms = match u64::try_from(timeout_ms) {
            Ok(ms) if ms > 0 => ms.min(PROPOSE_TIMEOUT_MS),
            _ => PROPOSE_TIMEOUT_MS,
        };
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let mut decide = Some(decide);
        self.commit(deadline, &mut |state: &ClusterState| {
            decide.take().map(|decide| decide(state))
        })
    }

    /// Decides on the latest state and commits, deciding again when another change got
    /// in first, until `deadline`. `decide` returns `None` when it cannot decide again.
    fn commit<E>(
        &self,
        deadline: Instant,
        decide: &mut Decide<'_, E>,
    ) -> Result<Result<Arc<ClusterState>, E>, MetadataError> {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let timeout_ms = |reason: &str| MetadataError::Timeout {
            timeout_ms: timeout.as_millis() as u64,
            reason: reason.to_owned(),
        };
        // The caller's deadline also bounds the wait for an earlier proposal of this node
        // (one that waits for a quorum holds the lock until its own deadline).
        let Some(_serial) = self.propose_lock.try_lock_until(deadline) else {
            return Err(timeout_ms(
                "an earlier metadata change of this broker is still waiting for the quorum",
            ));
        };
        let mut last_stale_version = None;
        let mut unsent: Option<Proposal> = None;
        loop {
            if let Some(fatal) = self.quorum.fatal() {
                return Err(MetadataError::Stopped(fatal));
            }
            if Instant::now() >= deadline {
                return Err(timeout_ms("no quorum leader committed it"));
            }
            // A proposal that reached no leader is sent again as it is: it was decided on
            // a state no leader has refused as stale (a one-shot `decide` cannot decide
            // again, and "no leader yet" is not a conflict).
            let proposal = match unsent.take() {
                Some(proposal) => proposal,
                None => {
                    // On a follower, first catch up with what the leader has applied, so
                    // that the decision is not refused as stale.
                    let state = match self.quorum.leader_version(deadline) {
                        Some(version) => self.quorum.wait_for_version(version, deadline),
                        None => self.state(),
                    };
                    let records = match decide(&state) {
                        Some(Ok(records)) => records,
                        Some(Err(e)) => return Ok(Err(e)),
                        None => {
                            return Err(MetadataError::Conflict {
                                version: last_stale_version.unwrap_or(state.applied_records()),
                            });
                        }
                    };
                    if records.is_empty() {
                        return Ok(Ok(state));
                    }
                    Proposal {
                        base_version: state.applied_records(),
                        records,
                    }
                }
            };
            match self.quorum.submit(proposal.clone(), deadline) {
                Submitted::Committed { version } => {
                    let state = self.quorum.wait_for_version(version, deadline);
                    if state.applied_records() < version {
                        return Err(timeout_ms("committed, but not yet applied on this node"));
                    }
                    return Ok(Ok(state));
                }
                Submitted::Stale { version } => {
                    // Catch up with the leader before deciding again.
                    self.quorum.wait_for_version(version, deadline);
                    last_stale_version = Some(version);
                }
                Submitted::NotLeader { .. } => {
                    unsent = Some(proposal);
                    std::thread::sleep(Duration::from_millis(NO_LEADER_RETRY_MS));
                }
                Submitted::TimedOut => return Err(timeout_ms("no quorum")),
            }
        }
    }
}

/// A cluster id in Kafka's form: a random UUID as 22 characters of URL-safe base64.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = uuid::Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| {
            let shift = 128i32 - 6 * (i + 1);
            let sextet = if shift >= 0 {
                (value >> shift) & 0x3f
            } else {
                (value << -shift) & 0x3f
            };
            ALPHABET[sextet as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_node_commits_restarts_and_imports_the_old_log() {
        let dir = tempfile::tempdir().unwrap();
        // An earlier version's single-node log with one topic.
        {
            let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
            log.append(&[
                MetadataRecord::InitCluster {
                    cluster_id: "old-cluster".into(),
                },
                MetadataRecord::CreateTopic {
                    name: "legacy".into(),
                    topic_id: uuid::Uuid::from_u128(1),
                    partitions: vec![],
                    configs: Default::default(),
                },
            ])
            .unwrap();
        }
        let m = MetadataManager::open(dir.path(), 1, "127.0.0.1", 9092).unwrap();
        assert_eq!(m.state().cluster_id(), Some("old-cluster"));
        assert!(m.state().topic("legacy").is_some());
        assert!(dir.path().join(LEGACY_LOG_IMPORTED).exists());
        let started = Instant::now();
        let state = m
            .propose(|s| {
                cairn_meta::controller::create_topic(
                    s,
                    "fresh",
                    3,
                    1,
                    Default::default(),
                    uuid::Uuid::from_u128(2),
                    0,
                )
            })
            .unwrap()
            .unwrap();
        eprintln!("one-node topic creation took {:?}", started.elapsed());
        assert_eq!(state.topic("fresh").unwrap().partitions.len(), 3);
        let refused = m
            .propose(|s| cairn_meta::controller::delete_topic(s, "nope"))
            .unwrap();
        assert!(refused.is_err());
        let before = m.state();
        drop(m);
        let m = MetadataManager::open(dir.path(), 1, "127.0.0.1", 9092).unwrap();
        let after = m.state();
        // Everything survives; the restart registered a new incarnation of the broker.
        assert_eq!(after.cluster_id(), before.cluster_id());
        assert_eq!(
            after.topics().map(|t| &t.name).collect::<Vec<_>>(),
            before.topics().map(|t| &t.name).collect::<Vec<_>>()
        );
        assert_ne!(
            after.broker(1).unwrap().incarnation,
            before.broker(1).unwrap().incarnation
        );
    }
}
