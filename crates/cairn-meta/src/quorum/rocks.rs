//! [`RocksStorage`]: the durable [`QuorumStorage`](super::QuorumStorage) — raft-rs's
//! [`raft::Storage`] over RocksDB — the Raft log, the hard and
//! conf state, and the latest snapshot of one voter.
//!
//! Every voter stores its quorum here: [`open_voter_storage`] opens it in
//! `<data-dir>/__cluster_metadata/quorum/rocksdb/`, first moving in the write-ahead file
//! (`super::FileStorage`) that Cairn used before.
//!
//! ## On-disk format (`<dir>/`, a RocksDB database)
//! Three column families; integers are big-endian so that RocksDB's byte order is index
//! order, and every value is a raft-rs protobuf message (rust-protobuf encoding):
//!
//! | column family | key | value |
//! |---|---|---|
//! | `log` | entry index, u64 BE (8 bytes) | `eraftpb::Entry` |
//! | `state` | `hard_state` | `eraftpb::HardState` (term, vote, commit) |
//! | `state` | `conf_state` | `eraftpb::ConfState` (the voters) |
//! | `snapshot` | `latest` | CRC-32 (IEEE) of the rest, u32 BE, then `eraftpb::Snapshot` |
//!
//! The snapshot's data is a [`ClusterState`](crate::ClusterState) in protobuf (see
//! [`crate::codec`]). RocksDB checksums its own blocks; the snapshot carries one more CRC
//! because a wrong snapshot silently replaces all metadata, where a wrong entry fails to
//! decode.
//!
//! ## Invariants
//! - The log holds exactly the indexes `snapshot.index + 1 ..= last_index`, no gaps.
//! - `hard_state.commit >= snapshot.index`: only applied (hence committed) state is
//!   snapshotted.
//!
//! ## What survives a crash
//! Every `persist` is one RocksDB write batch, written with
//! `WriteOptions::set_sync(true)` (unless the caller turned syncing off for in-process
//! tests), so entries, hard state and an installed snapshot are on disk together before
//! the node sends the messages that acknowledge them (votes, append responses). A crash
//! loses at most a write that had not returned. Compaction writes the new snapshot and
//! deletes the entries it covers in one batch too.
//!
//! ## Bad input
//! A directory that does not open, a log with a gap, an entry or state that does not
//! decode, or a snapshot that fails its checksum is a [`QuorumError`] naming the directory;
//! nothing is ever reset silently.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};
use rocksdb::{
    ColumnFamilyDescriptor, DB, Direction, IteratorMode, Options, WriteBatch, WriteOptions,
};

use super::{QuorumError, QuorumStorage};

const CF_LOG: &str = "log";
const CF_STATE: &str = "state";
const CF_SNAPSHOT: &str = "snapshot";
const KEY_HARD_STATE: &[u8] = b"hard_state";
const KEY_CONF_STATE: &[u8] = b"conf_state";
const KEY_SNAPSHOT: &[u8] = b"latest";

/// The persistent state of one Raft voter. Used only from the thread that owns its
/// [`raft::RawNode`]; the interior mutability is for raft-rs's `&self` reads.
pub struct RocksStorage {
    db: DB,
    dir: PathBuf,
    sync_writes: bool,
    cache: RefCell<Cache>,
}

/// What raft-rs asks for on every step, kept in memory: all of it is also on disk.
struct Cache {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    /// Term of every entry in the log, `terms[0]` being `snapshot.index + 1`.
    terms: VecDeque<u64>,
}

impl Cache {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn last_index(&self) -> u64 {
        self.snapshot_index() + self.terms.len() as u64
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RocksStorage {
    /// Opens (or creates) the storage in `dir`. A new directory starts with `voters` as
    /// its configuration; an existing one must have been created with the same voters.
    pub fn open(
        dir: &Path,
        voters: &[u64],
        sync_writes: bool,
    ) -> Result<RocksStorage, QuorumError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Metadata is small: a small memtable and few open files keep a node's footprint low.
        options.set_write_buffer_size(4 * 1024 * 1024);
        options.set_max_open_files(64);
        options.set_keep_log_file_num(2);
        let cfs = [CF_LOG, CF_STATE, CF_SNAPSHOT]
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&options, dir, cfs).map_err(|e| QuorumError::Storage {
            dir: dir.to_owned(),
            op: "open",
            reason: e.to_string(),
        })?;
        let mut storage = RocksStorage {
            db,
            dir: dir.to_owned(),
            sync_writes,
            cache: RefCell::new(Cache {
                hard_state: HardState::default(),
                conf_state: ConfState::default(),
                snapshot: Snapshot::default(),
                terms: VecDeque::new(),
            }),
        };
        storage.load(voters)?;
        Ok(storage)
    }

    fn corrupt(&self, what: impl Into<String>) -> QuorumError {
        QuorumError::Corrupt {
            dir: self.dir.clone(),
            reason: what.into(),
        }
    }

    fn io(&self, op: &'static str, e: rocksdb::Error) -> QuorumError {
        QuorumError::Storage {
            dir: self.dir.clone(),
            op,
            reason: e.to_string(),
        }
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created on open")
    }

    fn load(&mut self, voters: &[u64]) -> Result<(), QuorumError> {
        let state_cf = self.cf(CF_STATE);
        let hard_state = match self
            .db
            .get_cf(state_cf, KEY_HARD_STATE)
            .map_err(|e| self.io("read hard state", e))?
        {
            Some(bytes) => HardState::parse_from_bytes(&bytes)
                .map_err(|e| self.corrupt(format!("hard state does not decode: {e}")))?,
            None => HardState::default(),
        };
        let conf_state = match self
            .db
            .get_cf(state_cf, KEY_CONF_STATE)
            .map_err(|e| self.io("read conf state", e))?
        {
            Some(bytes) => ConfState::parse_from_bytes(&bytes)
                .map_err(|e| self.corrupt(format!("conf state does not decode: {e}")))?,
            None => {
                // A new voter: the configuration is the one it was started with, written
                // before raft-rs sees it so that a restart finds the same.
                let conf_state = ConfState {
                    voters: voters.to_vec(),
                    ..Default::default()
                };
                let mut batch = WriteBatch::default();
                batch.put_cf(
                    state_cf,
                    KEY_CONF_STATE,
                    conf_state.write_to_bytes().expect("ConfState encodes"),
                );
                self.write(batch)?;
                conf_state
            }
        };
        let mut configured: Vec<u64> = conf_state.voters.clone();
        configured.sort_unstable();
        let mut wanted = voters.to_vec();
        wanted.sort_unstable();
        if configured != wanted {
            return Err(QuorumError::VotersChanged {
                dir: self.dir.clone(),
                stored: configured,
                configured: wanted,
            });
        }
        let snapshot = match self
            .db
            .get_cf(self.cf(CF_SNAPSHOT), KEY_SNAPSHOT)
            .map_err(|e| self.io("read snapshot", e))?
        {
            Some(bytes) => self.decode_snapshot(&bytes)?,
            None => {
                let mut snapshot = Snapshot::default();
                snapshot.mut_metadata().set_conf_state(conf_state.clone());
                snapshot
            }
        };
        let snapshot_index = snapshot.get_metadata().index;
        let mut terms = VecDeque::new();
        let log = self.db.iterator_cf(self.cf(CF_LOG), IteratorMode::Start);
        for (expected, item) in (snapshot_index + 1..).zip(log) {
            let (key, value) = item.map_err(|e| self.io("read log", e))?;
            let index = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| self.corrupt(format!("log key of {} bytes", key.len())))?,
            );
            let entry = Entry::parse_from_bytes(&value)
                .map_err(|e| self.corrupt(format!("log entry {index} does not decode: {e}")))?;
            if index != expected || entry.index != index {
                return Err(self.corrupt(format!(
                    "log entry {index} (claims {}) where {expected} was expected after snapshot {snapshot_index}",
                    entry.index
                )));
            }
            terms.push_back(entry.term);
        }
        if hard_state.commit < snapshot_index {
            return Err(self.corrupt(format!(
                "commit index {} is behind snapshot index {snapshot_index}",
                hard_state.commit
            )));
        }
        *self.cache.get_mut() = Cache {
            hard_state,
            conf_state,
            snapshot,
            terms,
        };
        Ok(())
    }

    fn decode_snapshot(&self, bytes: &[u8]) -> Result<Snapshot, QuorumError> {
        if bytes.len() < 4 {
            return Err(self.corrupt("snapshot shorter than its checksum"));
        }
        let (crc, body) = bytes.split_at(4);
        let crc = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
        if crc32fast::hash(body) != crc {
            return Err(self.corrupt("snapshot fails its CRC-32"));
        }
        Snapshot::parse_from_bytes(body)
            .map_err(|e| self.corrupt(format!("snapshot does not decode: {e}")))
    }

    fn write(&self, batch: WriteBatch) -> Result<(), QuorumError> {
        let mut options = WriteOptions::default();
        options.set_sync(self.sync_writes);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| self.io("write", e))
    }

    /// The directory of this storage.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The voters this storage was created with.
    pub fn voters(&self) -> Vec<u64> {
        self.cache.borrow().conf_state.voters.clone()
    }

    /// Commit index as last persisted.
    pub fn commit_index(&self) -> u64 {
        self.cache.borrow().hard_state.commit
    }
}

impl QuorumStorage for RocksStorage {
    fn latest_snapshot(&self) -> Snapshot {
        self.cache.borrow().snapshot.clone()
    }

    /// Persists, in one synced write: an installed snapshot (replacing the whole log), new
    /// entries (replacing any conflicting tail) and the hard state. Returns only once all
    /// of it is durable.
    ///
    /// # Panics
    /// If `entries` would leave a gap or overwrite the snapshot: raft-rs never asks that.
    fn persist(
        &self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), QuorumError> {
        if snapshot.is_none() && entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut cache = self.cache.borrow_mut();
        let mut batch = WriteBatch::default();
        let log_cf = self.cf(CF_LOG);
        let state_cf = self.cf(CF_STATE);
        let mut next = Cache {
            hard_state: cache.hard_state.clone(),
            conf_state: cache.conf_state.clone(),
            snapshot: cache.snapshot.clone(),
            // Cloned, not taken: on a failed write the cache must stay as the disk is.
            terms: cache.terms.clone(),
        };
        if let Some(snapshot) = snapshot {
            let meta = snapshot.get_metadata();
            assert!(
                meta.index >= next.snapshot_index(),
                "installing snapshot {} older than the current {}",
                meta.index,
                next.snapshot_index()
            );
            batch.delete_range_cf(log_cf, index_key(0), index_key(u64::MAX));
            batch.put_cf(
                self.cf(CF_SNAPSHOT),
                KEY_SNAPSHOT,
                encode_snapshot(snapshot),
            );
            next.terms.clear();
            next.hard_state.term = next.hard_state.term.max(meta.term);
            next.hard_state.commit = meta.index;
            next.conf_state = meta.get_conf_state().clone();
            next.snapshot = snapshot.clone();
            batch.put_cf(
                state_cf,
                KEY_CONF_STATE,
                next.conf_state.write_to_bytes().expect("encodes"),
            );
        }
        if let Some(first) = entries.first() {
            let first_index = first.index;
            assert!(
                first_index > next.snapshot_index() && first_index <= next.last_index() + 1,
                "append at {first_index} with snapshot {} and last index {}",
                next.snapshot_index(),
                next.last_index()
            );
            if first_index <= next.last_index() {
                batch.delete_range_cf(
                    log_cf,
                    index_key(first_index),
                    index_key(next.last_index() + 1),
                );
                next.terms
                    .truncate((first_index - next.snapshot_index() - 1) as usize);
            }
            for (i, entry) in entries.iter().enumerate() {
                assert_eq!(
                    entry.index,
                    first_index + i as u64,
                    "entries to append have a gap"
                );
                batch.put_cf(
                    log_cf,
                    index_key(entry.index),
                    entry.write_to_bytes().expect("Entry encodes"),
                );
                next.terms.push_back(entry.term);
            }
        }
        if let Some(hard_state) = hard_state {
            next.hard_state = hard_state.clone();
        }
        batch.put_cf(
            state_cf,
            KEY_HARD_STATE,
            next.hard_state.write_to_bytes().expect("encodes"),
        );
        self.write(batch)?;
        *cache = next;
        Ok(())
    }

    /// Records a new commit index (from a `LightReady`). Not synced: a lost commit index
    /// is recomputed from the quorum, and raft-rs never relies on it being durable.
    fn set_commit(&self, commit: u64) -> Result<(), QuorumError> {
        let mut cache = self.cache.borrow_mut();
        if cache.hard_state.commit >= commit {
            return Ok(());
        }
        cache.hard_state.commit = commit;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_STATE),
            KEY_HARD_STATE,
            cache.hard_state.write_to_bytes().expect("encodes"),
        );
        let mut options = WriteOptions::default();
        options.set_sync(false);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| self.io("write commit index", e))
    }

    /// Replaces the log up to `index` (applied, hence committed) by a snapshot holding
    /// `data`, in one synced write.
    ///
    /// # Panics
    /// If `index` is not in the log or beyond the commit index.
    fn compact(&self, index: u64, data: Vec<u8>) -> Result<(), QuorumError> {
        let mut cache = self.cache.borrow_mut();
        assert!(
            index <= cache.hard_state.commit,
            "snapshot at {index} beyond commit {}",
            cache.hard_state.commit
        );
        assert!(
            index > cache.snapshot_index() && index <= cache.last_index(),
            "snapshot at {index} outside the log ({}, {}]",
            cache.snapshot_index(),
            cache.last_index()
        );
        let term = cache.terms[(index - cache.snapshot_index() - 1) as usize];
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta: &mut SnapshotMetadata = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(cache.conf_state.clone());
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.cf(CF_SNAPSHOT),
            KEY_SNAPSHOT,
            encode_snapshot(&snapshot),
        );
        batch.delete_range_cf(self.cf(CF_LOG), index_key(0), index_key(index + 1));
        self.write(batch)?;
        let drop_count = (index - cache.snapshot_index()) as usize;
        cache.terms.drain(..drop_count);
        cache.snapshot = snapshot;
        Ok(())
    }
}

/// Where a voter's RocksDB lives inside its quorum directory.
const ROCKSDB_DIR: &str = "rocksdb";
/// What the write-ahead file of an older Cairn (`super::FileStorage`) is renamed to once
/// its contents are in RocksDB; kept so that nothing is deleted behind the operator's back.
const MIGRATED_WAL: &str = "quorum.wal.migrated";
const WAL: &str = "quorum.wal";
const MIGRATING_DIR: &str = "rocksdb.migrating";

/// Opens the voter storage of the quorum directory `dir` (RocksDB in `dir/rocksdb`),
/// first moving into it the write-ahead file `dir/quorum.wal` that Cairn kept before it
/// stored the quorum in RocksDB.
///
/// The move is crash-safe: the copy is built in `dir/rocksdb.migrating` (synced), renamed
/// to `dir/rocksdb` and the directory synced; only then is `quorum.wal` renamed to
/// `quorum.wal.migrated`. A crash before the first rename redoes the copy; after it, the
/// RocksDB copy wins and the file is only renamed. Progress and the copied figures are
/// logged.
pub fn open_voter_storage(
    dir: &Path,
    voters: &[u64],
    sync_writes: bool,
) -> Result<RocksStorage, QuorumError> {
    let io = |op: &'static str| {
        move |e: std::io::Error| QuorumError::Storage {
            dir: dir.to_owned(),
            op,
            reason: e.to_string(),
        }
    };
    std::fs::create_dir_all(dir).map_err(io("create directory"))?;
    let rocks_dir = dir.join(ROCKSDB_DIR);
    let wal = dir.join(WAL);
    if wal.exists() {
        if !rocks_dir.exists() {
            let migrating = dir.join(MIGRATING_DIR);
            if migrating.exists() {
                std::fs::remove_dir_all(&migrating)
                    .map_err(io("remove an interrupted migration"))?;
            }
            tracing::info!(
                "metadata quorum: moving {} into RocksDB at {}",
                wal.display(),
                rocks_dir.display()
            );
            let (entries, snapshot_index) = copy_file_storage(dir, &migrating, voters)?;
            std::fs::rename(&migrating, &rocks_dir).map_err(io("rename the migrated database"))?;
            sync_dir(dir).map_err(io("sync directory"))?;
            tracing::info!(
                "metadata quorum: moved snapshot at index {snapshot_index} and {entries} log entries into RocksDB"
            );
        }
        std::fs::rename(&wal, dir.join(MIGRATED_WAL)).map_err(io("rename the migrated file"))?;
        sync_dir(dir).map_err(io("sync directory"))?;
    }
    RocksStorage::open(&rocks_dir, voters, sync_writes)
}

/// Whether the quorum directory `dir` holds a voter's storage (RocksDB, or the write-ahead
/// file of an older Cairn that [`open_voter_storage`] would move into it).
pub fn holds_voter_storage(dir: &Path) -> bool {
    dir.join(ROCKSDB_DIR).exists() || dir.join(WAL).exists()
}

/// Copies the whole `FileStorage` in `from` into a new RocksDB at `to`, synced. Returns
/// the number of entries and the snapshot index copied.
fn copy_file_storage(from: &Path, to: &Path, voters: &[u64]) -> Result<(usize, u64), QuorumError> {
    use raft::Storage as _;
    let file = super::FileStorage::open(from, voters, true)?;
    let raft_error = |e: raft::Error| QuorumError::Corrupt {
        dir: from.to_owned(),
        reason: format!("reading the write-ahead file to migrate it: {e}"),
    };
    let state = file.initial_state().map_err(raft_error)?;
    let snapshot = file.latest_snapshot();
    let (first, last) = (
        file.first_index().map_err(raft_error)?,
        file.last_index().map_err(raft_error)?,
    );
    let entries = if last >= first {
        file.entries(first, last + 1, None, GetEntriesContext::empty(false))
            .map_err(raft_error)?
    } else {
        Vec::new()
    };
    let rocks = RocksStorage::open(to, voters, true)?;
    let snapshot_index = snapshot.get_metadata().index;
    rocks.persist(
        (snapshot_index > 0).then_some(&snapshot),
        &entries,
        Some(&state.hard_state),
    )?;
    Ok((entries.len(), snapshot_index))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let body = snapshot.write_to_bytes().expect("Snapshot encodes");
    let mut value = Vec::with_capacity(4 + body.len());
    value.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    value.extend_from_slice(&body);
    value
}

fn store_error(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

impl raft::Storage for RocksStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let cache = self.cache.borrow();
        Ok(RaftState::new(
            cache.hard_state.clone(),
            cache.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        let (first, last) = {
            let cache = self.cache.borrow();
            (cache.snapshot_index() + 1, cache.last_index())
        };
        if low < first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= last + 1,
            "entries up to {high} asked, last index {last}"
        );
        let mut entries = Vec::with_capacity((high - low) as usize);
        let mut bytes_total = 0u64;
        let iter = self.db.iterator_cf(
            self.cf(CF_LOG),
            IteratorMode::From(&index_key(low), Direction::Forward),
        );
        for item in iter {
            let (key, value) = item.map_err(store_error)?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(store_error)?);
            if index >= high {
                break;
            }
            bytes_total += value.len() as u64;
            // Always at least one entry, then stop before exceeding the limit.
            if !entries.is_empty() && max_size.is_some_and(|max| bytes_total > max) {
                break;
            }
            let entry = Entry::parse_from_bytes(&value).map_err(store_error)?;
            assert_eq!(entry.index, index, "log entry stored under another index");
            entries.push(entry);
        }
        assert!(
            !entries.is_empty() || low == high,
            "log entries [{low}, {high}) missing from RocksDB"
        );
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let cache = self.cache.borrow();
        let snapshot_index = cache.snapshot_index();
        if idx == snapshot_index {
            return Ok(cache.snapshot.get_metadata().term);
        }
        if idx < snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        cache
            .terms
            .get((idx - snapshot_index - 1) as usize)
            .copied()
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.cache.borrow().snapshot_index() + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.cache.borrow().last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let cache = self.cache.borrow();
        if cache.snapshot_index() < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(cache.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 3].into(),
            ..Default::default()
        }
    }

    #[test]
    fn append_overwrite_compact_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStorage::open(dir.path(), &[1, 2, 3], true).unwrap();
            assert_eq!(s.first_index().unwrap(), 1);
            assert_eq!(s.last_index().unwrap(), 0);
            assert_eq!(s.term(0).unwrap(), 0);
            let hs = HardState {
                term: 2,
                vote: 1,
                commit: 2,
                ..Default::default()
            };
            s.persist(
                None,
                &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>(),
                Some(&hs),
            )
            .unwrap();
            // A new leader overwrites the uncommitted tail from index 4.
            s.persist(None, &[entry(4, 2)], None).unwrap();
            assert_eq!(s.last_index().unwrap(), 4);
            assert_eq!(s.term(4).unwrap(), 2);
            assert_eq!(
                s.entries(2, 5, None::<u64>, GetEntriesContext::empty(false))
                    .unwrap()
                    .len(),
                3
            );
            assert_eq!(
                s.entries(2, 5, Some(1u64), GetEntriesContext::empty(false))
                    .unwrap()
                    .len(),
                1
            );
            s.compact(2, b"state".to_vec()).unwrap();
            assert_eq!(s.first_index().unwrap(), 3);
            assert_eq!(s.term(2).unwrap(), 1);
            assert!(s.term(1).is_err());
        }
        let s = RocksStorage::open(dir.path(), &[3, 2, 1], true).unwrap();
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.last_index().unwrap(), 4);
        assert_eq!(s.term(4).unwrap(), 2);
        let state = s.initial_state().unwrap();
        assert_eq!(
            (
                state.hard_state.term,
                state.hard_state.vote,
                state.hard_state.commit
            ),
            (2, 1, 2)
        );
        assert_eq!(&s.snapshot(0, 2).unwrap().data[..], b"state");
        // RocksDB locks its directory: close before opening it again.
        drop(s);
        assert!(matches!(
            RocksStorage::open(dir.path(), &[1, 2], true),
            Err(QuorumError::VotersChanged { .. })
        ));
    }

    #[test]
    fn installing_a_snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStorage::open(dir.path(), &[1], true).unwrap();
        s.persist(None, &[entry(1, 1), entry(2, 1)], None).unwrap();
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 10;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().mut_conf_state().voters = vec![1];
        s.persist(Some(&snap), &[entry(11, 3)], None).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (11, 11)
        );
        assert_eq!(s.commit_index(), 10);
        drop(s);
        let s = RocksStorage::open(dir.path(), &[1], true).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (11, 11)
        );
        assert_eq!(s.term(10).unwrap(), 3);
    }

    #[test]
    fn a_snapshot_that_fails_its_checksum_stops_the_node() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStorage::open(dir.path(), &[1], true).unwrap();
            let hs = HardState {
                commit: 1,
                ..Default::default()
            };
            s.persist(None, &[entry(1, 1)], Some(&hs)).unwrap();
            s.compact(1, b"x".to_vec()).unwrap();
            // Flip a byte of the stored snapshot behind the checksum's back.
            let mut bytes =
                s.db.get_cf(s.cf(CF_SNAPSHOT), KEY_SNAPSHOT)
                    .unwrap()
                    .unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            s.db.put_cf(s.cf(CF_SNAPSHOT), KEY_SNAPSHOT, bytes).unwrap();
        }
        match RocksStorage::open(dir.path(), &[1], true) {
            Err(QuorumError::Corrupt { reason, .. }) => assert!(reason.contains("CRC"), "{reason}"),
            Err(other) => panic!("expected corruption, got {other}"),
            Ok(_) => panic!("expected corruption"),
        }
    }

    #[test]
    fn a_write_ahead_file_of_an_older_cairn_moves_into_rocksdb() {
        let dir = tempfile::tempdir().unwrap();
        let hs = HardState {
            term: 4,
            vote: 2,
            commit: 7,
            ..Default::default()
        };
        {
            let file = super::super::FileStorage::open(dir.path(), &[1, 2, 3], true).unwrap();
            file.persist(
                None,
                &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>(),
                None,
            )
            .unwrap();
            let committed = HardState {
                commit: 5,
                ..Default::default()
            };
            file.persist(None, &[], Some(&committed)).unwrap();
            file.compact(3, b"state at 3".to_vec()).unwrap();
            file.persist(
                None,
                &(6..=8).map(|i| entry(i, 4)).collect::<Vec<_>>(),
                Some(&hs),
            )
            .unwrap();
        }
        let check = |s: &RocksStorage| {
            assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (4, 8));
            assert_eq!(s.term(3).unwrap(), 1);
            assert_eq!(s.term(8).unwrap(), 4);
            let entries = s
                .entries(4, 9, None::<u64>, GetEntriesContext::empty(false))
                .unwrap();
            assert_eq!(
                entries,
                (4..=8)
                    .map(|i| entry(i, if i <= 5 { 1 } else { 4 }))
                    .collect::<Vec<_>>()
            );
            assert_eq!(s.initial_state().unwrap().hard_state, hs);
            assert_eq!(&s.latest_snapshot().data[..], b"state at 3");
            assert_eq!(s.voters(), vec![1, 2, 3]);
        };
        check(&open_voter_storage(dir.path(), &[1, 2, 3], true).unwrap());
        assert!(!dir.path().join(WAL).exists());
        assert!(dir.path().join(MIGRATED_WAL).exists());
        // Reopening reads RocksDB only.
        check(&open_voter_storage(dir.path(), &[1, 2, 3], true).unwrap());
    }

    #[test]
    fn an_interrupted_move_is_redone_and_a_finished_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let write_wal = |data: &[u8]| {
            let file = super::super::FileStorage::open(dir.path(), &[1], true).unwrap();
            let mut e = entry(1, 1);
            e.data = data.to_vec().into();
            file.persist(None, &[e], None).unwrap();
        };
        write_wal(b"first");
        // A crash left half a copy behind: it is thrown away and the copy made again.
        std::fs::create_dir_all(dir.path().join(MIGRATING_DIR)).unwrap();
        std::fs::write(dir.path().join(MIGRATING_DIR).join("junk"), b"x").unwrap();
        let s = open_voter_storage(dir.path(), &[1], true).unwrap();
        let first = |s: &RocksStorage| {
            s.entries(1, 2, None::<u64>, GetEntriesContext::empty(false))
                .unwrap()[0]
                .data
                .to_vec()
        };
        assert_eq!(first(&s), b"first");
        drop(s);
        assert!(!dir.path().join(MIGRATING_DIR).exists());
        // A crash after the database was renamed but before the file was: the database
        // wins, the file is only renamed.
        std::fs::rename(dir.path().join(MIGRATED_WAL), dir.path().join(WAL)).unwrap();
        let s = open_voter_storage(dir.path(), &[1], true).unwrap();
        assert_eq!(first(&s), b"first");
        assert!(!dir.path().join(WAL).exists());
    }
}
