//! [`QuorumStorage`]: what a voter keeps durable, as raft-rs's [`raft::Storage`] plus the
//! writes the driver core makes; and [`MemStorage`], its in-memory implementation.
//!
//! ## Contract (every implementation)
//! - The log holds exactly the indexes `snapshot.index + 1 ..= last_index`, no gaps.
//! - [`QuorumStorage::persist`] is atomic and durable when it returns: an installed
//!   snapshot (replacing the whole log), new entries (replacing any conflicting tail) and
//!   the hard state, together. The node sends the messages that acknowledge them (votes,
//!   append responses) only afterwards.
//! - [`QuorumStorage::compact`] replaces the log up to an applied index by a snapshot of
//!   the state at that index, atomically.
//!
//! [`MemStorage`] keeps its "disk" behind a shared handle: dropping a node and opening a
//! new one on a clone of the same `MemStorage` is a crash and restart that loses nothing
//! written, which is what the deterministic simulation needs. The RocksDB implementation
//! (`RocksStorage`) is the durable one.

use std::sync::{Arc, Mutex};

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::QuorumError;

/// The durable state of one voter; see the module docs for the contract.
pub trait QuorumStorage: raft::Storage {
    /// The latest snapshot (index 0 and no data before the first compaction).
    fn latest_snapshot(&self) -> Snapshot;

    /// Persists, atomically and durably, an installed snapshot, new entries and the hard
    /// state (any of them may be absent).
    ///
    /// # Panics
    /// If `entries` would leave a gap or overwrite the snapshot: raft-rs never asks that.
    fn persist(
        &self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), QuorumError>;

    /// Records a newer commit index. Need not be synced: raft-rs never relies on a
    /// durable commit index, it is recomputed from the quorum.
    fn set_commit(&self, commit: u64) -> Result<(), QuorumError>;

    /// Replaces the log up to `index` (applied, hence committed) by a snapshot holding
    /// `data`.
    ///
    /// # Panics
    /// If `index` is not in the log or beyond the commit index.
    fn compact(&self, index: u64, data: Vec<u8>) -> Result<(), QuorumError>;
}

/// An in-memory [`QuorumStorage`] whose contents outlive the node using it (clones share
/// them). For tests and the simulation; nothing survives the process.
#[derive(Clone)]
pub struct MemStorage {
    durable: Arc<Mutex<Durable>>,
}

struct Durable {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// `entries[0].index == snapshot.index + 1`.
    entries: Vec<Entry>,
}

impl Durable {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn last_index(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }
}

impl MemStorage {
    /// An empty voter of a quorum of `voters`.
    pub fn new(voters: &[u64]) -> MemStorage {
        let conf_state = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().set_conf_state(conf_state.clone());
        MemStorage {
            durable: Arc::new(Mutex::new(Durable {
                hard_state: HardState::default(),
                conf_state,
                snapshot,
                entries: Vec::new(),
            })),
        }
    }

    /// Replaces everything by `snapshot` (the base of a rewritten file): no entries, its
    /// configuration, a commit index at least its index.
    pub(crate) fn reset(&self, snapshot: Snapshot) {
        let mut d = self.lock();
        d.entries.clear();
        d.conf_state = snapshot.get_metadata().get_conf_state().clone();
        d.hard_state.commit = d.hard_state.commit.max(snapshot.get_metadata().index);
        d.snapshot = snapshot;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Durable> {
        self.durable
            .lock()
            .expect("no panic while holding the storage lock")
    }
}

impl QuorumStorage for MemStorage {
    fn latest_snapshot(&self) -> Snapshot {
        self.lock().snapshot.clone()
    }

    fn persist(
        &self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), QuorumError> {
        let mut d = self.lock();
        if let Some(snapshot) = snapshot {
            let meta = snapshot.get_metadata();
            assert!(
                meta.index >= d.snapshot_index(),
                "installing snapshot {} older than the current {}",
                meta.index,
                d.snapshot_index()
            );
            d.entries.clear();
            d.hard_state.term = d.hard_state.term.max(meta.term);
            d.hard_state.commit = meta.index;
            d.conf_state = meta.get_conf_state().clone();
            d.snapshot = snapshot.clone();
        }
        if let Some(first) = entries.first() {
            let first_index = first.index;
            assert!(
                first_index > d.snapshot_index() && first_index <= d.last_index() + 1,
                "append at {first_index} with snapshot {} and last index {}",
                d.snapshot_index(),
                d.last_index()
            );
            let keep = (first_index - d.snapshot_index() - 1) as usize;
            d.entries.truncate(keep);
            for (i, entry) in entries.iter().enumerate() {
                assert_eq!(
                    entry.index,
                    first_index + i as u64,
                    "entries to append have a gap"
                );
                d.entries.push(entry.clone());
            }
        }
        if let Some(hard_state) = hard_state {
            d.hard_state = hard_state.clone();
        }
        Ok(())
    }

    fn set_commit(&self, commit: u64) -> Result<(), QuorumError> {
        let mut d = self.lock();
        d.hard_state.commit = d.hard_state.commit.max(commit);
        Ok(())
    }

    fn compact(&self, index: u64, data: Vec<u8>) -> Result<(), QuorumError> {
        let mut d = self.lock();
        assert!(
            index <= d.hard_state.commit,
            "snapshot at {index} beyond commit {}",
            d.hard_state.commit
        );
        assert!(
            index > d.snapshot_index() && index <= d.last_index(),
            "snapshot at {index} outside the log ({}, {}]",
            d.snapshot_index(),
            d.last_index()
        );
        let drop_count = (index - d.snapshot_index()) as usize;
        let term = d.entries[drop_count - 1].term;
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot.mut_metadata().set_conf_state(d.conf_state.clone());
        d.entries.drain(..drop_count);
        d.snapshot = snapshot;
        Ok(())
    }
}

impl raft::Storage for MemStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let d = self.lock();
        Ok(RaftState::new(d.hard_state.clone(), d.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let d = self.lock();
        if low <= d.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= d.last_index() + 1,
            "entries up to {high} asked, last index {}",
            d.last_index()
        );
        let offset = d.snapshot_index() + 1;
        let mut entries = d.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let d = self.lock();
        let snapshot_index = d.snapshot_index();
        if idx == snapshot_index {
            return Ok(d.snapshot.get_metadata().term);
        }
        if idx < snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        d.entries
            .get((idx - snapshot_index - 1) as usize)
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.lock().snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.lock().last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let d = self.lock();
        if d.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(d.snapshot.clone())
    }
}
