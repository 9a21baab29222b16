//! [`MetadataManager`]: this node's applied copy of the cluster metadata and the one door
//! through which changes are proposed.
//!
//! On a single node the proposal is committed by appending to the local
//! [`MetadataLog`] (fsynced) and then applied; the metadata-quorum issue puts a Raft
//! group behind the same [`MetadataManager::propose`].

use std::path::Path;
use std::sync::Arc;

use cairn_meta::{ClusterState, MetadataLog, MetadataLogError, MetadataRecord};
use parking_lot::{Mutex, RwLock};

/// Applied metadata plus the log that orders changes to it.
pub struct MetadataManager {
    log: Mutex<MetadataLog>,
    state: RwLock<Arc<ClusterState>>,
}

impl MetadataManager {
    /// Opens the metadata log under `dir`, names the cluster on first start and registers
    /// this broker (a new incarnation on every start).
    pub fn open(
        dir: &Path,
        node_id: i32,
        host: &str,
        port: u16,
    ) -> Result<MetadataManager, MetadataLogError> {
        let (mut log, mut state) = MetadataLog::open(dir)?;
        let mut records = Vec::new();
        if state.cluster_id().is_none() {
            records.push(MetadataRecord::InitCluster {
                cluster_id: new_cluster_id(),
            });
        }
        let current = state.broker(node_id);
        if current.is_none_or(|b| b.host != host || b.port != port) {
            records.push(MetadataRecord::RegisterBroker {
                broker_id: node_id,
                host: host.to_owned(),
                port,
                rack: None,
                incarnation: uuid::Uuid::new_v4(),
            });
        }
        if !records.is_empty() {
            log.append(&records)?;
            for r in &records {
                state.apply(r);
            }
        }
        Ok(MetadataManager {
            log: Mutex::new(log),
            state: RwLock::new(Arc::new(state)),
        })
    }

    /// The latest applied metadata; cheap to call, never blocks on a commit in progress.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.read().clone()
    }

    /// Validates and commits a change atomically with respect to other proposals:
    /// `decide` sees the latest state and returns the records to commit (or its refusal).
    /// Blocking: call from a blocking thread.
    pub fn propose<E>(
        &self,
        decide: impl FnOnce(&ClusterState) -> Result<Vec<MetadataRecord>, E>,
    ) -> Result<Result<Arc<ClusterState>, E>, MetadataLogError> {
        let mut log = self.log.lock();
        let current = self.state();
        let records = match decide(&current) {
            Ok(records) => records,
            Err(e) => return Ok(Err(e)),
        };
        if records.is_empty() {
            return Ok(Ok(current));
        }
        log.append(&records)?;
        let mut next = (*current).clone();
        for r in &records {
            next.apply(r);
        }
        let next = Arc::new(next);
        *self.state.write() = next.clone();
        Ok(Ok(next))
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
