//! [`FileStorage`]: a durable [`QuorumStorage`] in one append-only write-ahead file — how
//! Cairn stored a voter's quorum before `RocksStorage`. Kept to read such a file once and
//! move it into RocksDB ([`super::open_voter_storage`]); nothing opens it otherwise. The whole state is also held in memory (a [`MemStorage`]): the metadata log is
//! small and compacted every `snapshot_interval_entries`.
//!
//! ## On-disk format (`<dir>/quorum.wal`)
//! A sequence of frames, each:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length `n`, big-endian u32 (at most [`FRAME_BYTES_MAX`]) |
//! | 4 | CRC-32 (IEEE) of the payload, big-endian |
//! | n | sub-records, each `tag: u8`, `len: u32 BE`, `len` bytes |
//!
//! Sub-record tags: 1 installed snapshot, 2 base snapshot (the file's first frame after a
//! rewrite), 3 log entry, 4 hard state, 5 commit index (u64 BE); snapshots, entries and
//! hard states are raft-rs protobuf messages. A frame replays exactly as the
//! [`QuorumStorage`] call that wrote it: base, then installed snapshot, entries (replacing
//! any conflicting tail) and hard state together, then the commit index.
//!
//! ## What survives a crash
//! One `persist` is one frame followed by `fdatasync`: it is on disk whole or, cut short
//! by a crash, dropped as a torn tail on open (logged). A bad frame followed by more data
//! is corruption: open fails naming the file and offset, it never resets. A compaction
//! rewrites the file (base snapshot, remaining entries, hard state) to `quorum.wal.tmp`,
//! syncs it, renames it over `quorum.wal` and syncs the directory.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage as _};

use super::{MemStorage, QuorumError, QuorumStorage};

/// Largest frame accepted on open: far above any metadata snapshot or Raft batch.
pub const FRAME_BYTES_MAX: u32 = 256 * 1024 * 1024;
const FRAME_HEADER_BYTES: usize = 8;
const FILE_NAME: &str = "quorum.wal";
const TMP_NAME: &str = "quorum.wal.tmp";
const TAG_INSTALL: u8 = 1;
const TAG_BASE: u8 = 2;
const TAG_ENTRY: u8 = 3;
const TAG_HARD_STATE: u8 = 4;
const TAG_COMMIT: u8 = 5;

/// A voter's durable state in one write-ahead file; see the module docs.
pub struct FileStorage {
    mem: MemStorage,
    dir: PathBuf,
    file: RefCell<File>,
    sync_writes: bool,
}

#[derive(Default)]
struct Frame {
    base: Option<Snapshot>,
    install: Option<Snapshot>,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
    commit: Option<u64>,
}

impl Frame {
    fn encode(&self) -> Vec<u8> {
        let mut payload = Vec::new();
        let mut put = |tag: u8, bytes: &[u8]| {
            payload.push(tag);
            payload.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            payload.extend_from_slice(bytes);
        };
        let encoded = |m: &dyn protobuf::Message| m.write_to_bytes().expect("raft messages encode");
        if let Some(s) = &self.base {
            put(TAG_BASE, &encoded(s));
        }
        if let Some(s) = &self.install {
            put(TAG_INSTALL, &encoded(s));
        }
        for e in &self.entries {
            put(TAG_ENTRY, &encoded(e));
        }
        if let Some(h) = &self.hard_state {
            put(TAG_HARD_STATE, &encoded(h));
        }
        if let Some(c) = self.commit {
            put(TAG_COMMIT, &c.to_be_bytes());
        }
        assert!(
            payload.len() <= FRAME_BYTES_MAX as usize,
            "quorum frame of {} bytes exceeds FRAME_BYTES_MAX",
            payload.len()
        );
        let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame
    }

    fn decode(mut payload: &[u8]) -> Result<Frame, String> {
        let mut frame = Frame::default();
        while !payload.is_empty() {
            if payload.len() < 5 {
                return Err("sub-record header cut short".into());
            }
            let tag = payload[0];
            let len = u32::from_be_bytes(payload[1..5].try_into().expect("4 bytes")) as usize;
            let bytes = payload
                .get(5..5 + len)
                .ok_or("sub-record runs past its frame")?;
            payload = &payload[5 + len..];
            let bad = |e: protobuf::ProtobufError| format!("tag {tag}: {e}");
            match tag {
                TAG_BASE => frame.base = Some(Snapshot::parse_from_bytes(bytes).map_err(bad)?),
                TAG_INSTALL => {
                    frame.install = Some(Snapshot::parse_from_bytes(bytes).map_err(bad)?)
                }
                TAG_ENTRY => frame
                    .entries
                    .push(Entry::parse_from_bytes(bytes).map_err(bad)?),
                TAG_HARD_STATE => {
                    frame.hard_state = Some(HardState::parse_from_bytes(bytes).map_err(bad)?)
                }
                TAG_COMMIT => {
                    let b: [u8; 8] = bytes.try_into().map_err(|_| "commit of wrong size")?;
                    frame.commit = Some(u64::from_be_bytes(b));
                }
                other => return Err(format!("unknown sub-record tag {other}")),
            }
        }
        Ok(frame)
    }
}

impl FileStorage {
    /// Opens (or creates) the storage in `dir`. A new one starts with `voters` as its
    /// configuration; an existing one must have been created with the same voters.
    pub fn open(dir: &Path, voters: &[u64], sync_writes: bool) -> Result<FileStorage, QuorumError> {
        let io = |op: &'static str| {
            let dir = dir.to_owned();
            move |e: std::io::Error| QuorumError::Storage {
                dir,
                op,
                reason: e.to_string(),
            }
        };
        std::fs::create_dir_all(dir).map_err(io("create directory"))?;
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;
        let corrupt = |position: usize, reason: String| QuorumError::Corrupt {
            dir: dir.to_owned(),
            reason: format!("{} at byte {position}: {reason}", path.display()),
        };

        let mem = MemStorage::new(voters);
        let mut position = 0usize;
        let mut frames = 0u64;
        while position < bytes.len() {
            let rest = &bytes[position..];
            let torn = |reason: &str| {
                tracing::warn!(
                    path = %path.display(),
                    position,
                    dropped_bytes = rest.len(),
                    "metadata quorum: truncating a torn tail ({reason})"
                );
            };
            if rest.len() < FRAME_HEADER_BYTES {
                torn("partial frame header");
                break;
            }
            let len = u32::from_be_bytes(rest[0..4].try_into().expect("4 bytes"));
            let crc = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
            if len > FRAME_BYTES_MAX {
                return Err(corrupt(
                    position,
                    format!("frame length {len} exceeds {FRAME_BYTES_MAX}"),
                ));
            }
            let end = FRAME_HEADER_BYTES + len as usize;
            if rest.len() < end {
                torn("partial frame payload");
                break;
            }
            let payload = &rest[FRAME_HEADER_BYTES..end];
            if crc32fast::hash(payload) != crc {
                if rest.len() == end {
                    torn("CRC mismatch in the last frame");
                    break;
                }
                return Err(corrupt(position, "CRC mismatch".into()));
            }
            let frame = Frame::decode(payload).map_err(|reason| corrupt(position, reason))?;
            if frames == 0 && frame.base.is_none() {
                return Err(corrupt(
                    position,
                    "the first frame is not a base snapshot".into(),
                ));
            }
            if let Some(base) = frame.base {
                let mut stored: Vec<u64> = base.get_metadata().get_conf_state().voters.clone();
                stored.sort_unstable();
                let mut wanted = voters.to_vec();
                wanted.sort_unstable();
                if stored != wanted {
                    return Err(QuorumError::VotersChanged {
                        dir: dir.to_owned(),
                        stored,
                        configured: wanted,
                    });
                }
                mem.reset(base);
            }
            mem.persist(
                frame.install.as_ref(),
                &frame.entries,
                frame.hard_state.as_ref(),
            )?;
            if let Some(commit) = frame.commit {
                mem.set_commit(commit)?;
            }
            frames += 1;
            position += end;
        }
        if position < bytes.len() {
            file.set_len(position as u64).map_err(io("truncate"))?;
            file.sync_data().map_err(io("fdatasync"))?;
        }
        let storage = FileStorage {
            mem,
            dir: dir.to_owned(),
            file: RefCell::new(file),
            sync_writes,
        };
        if frames == 0 {
            // A new voter: its configuration goes to disk before raft-rs sees it.
            storage.rewrite()?;
        }
        Ok(storage)
    }

    fn io(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> QuorumError + '_ {
        move |e| QuorumError::Storage {
            dir: self.dir.clone(),
            op,
            reason: e.to_string(),
        }
    }

    fn append(&self, frame: &Frame, sync: bool) -> Result<(), QuorumError> {
        let mut file = self.file.borrow_mut();
        file.write_all(&frame.encode()).map_err(self.io("write"))?;
        if sync && self.sync_writes {
            file.sync_data().map_err(self.io("fdatasync"))?;
        }
        Ok(())
    }

    /// Replaces the file by one frame holding the whole current state.
    fn rewrite(&self) -> Result<(), QuorumError> {
        let state = self
            .mem
            .initial_state()
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let snapshot = self.mem.latest_snapshot();
        let first = snapshot.get_metadata().index + 1;
        let last = self
            .mem
            .last_index()
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let entries = if last >= first {
            self.mem
                .entries(
                    first,
                    last + 1,
                    None::<u64>,
                    GetEntriesContext::empty(false),
                )
                .map_err(|e| QuorumError::Raft(e.to_string()))?
        } else {
            Vec::new()
        };
        let frame = Frame {
            base: Some(snapshot),
            entries,
            hard_state: Some(state.hard_state),
            ..Frame::default()
        };
        let tmp = self.dir.join(TMP_NAME);
        let mut file = File::create(&tmp).map_err(self.io("create"))?;
        file.write_all(&frame.encode()).map_err(self.io("write"))?;
        file.sync_all().map_err(self.io("fsync"))?;
        std::fs::rename(&tmp, self.dir.join(FILE_NAME)).map_err(self.io("rename"))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io("fsync directory"))?;
        let file = OpenOptions::new()
            .append(true)
            .open(self.dir.join(FILE_NAME))
            .map_err(self.io("reopen"))?;
        *self.file.borrow_mut() = file;
        Ok(())
    }
}

impl QuorumStorage for FileStorage {
    fn latest_snapshot(&self) -> Snapshot {
        self.mem.latest_snapshot()
    }

    fn persist(
        &self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), QuorumError> {
        if snapshot.is_none() && entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let frame = Frame {
            install: snapshot.cloned(),
            entries: entries.to_vec(),
            hard_state: hard_state.cloned(),
            ..Frame::default()
        };
        self.append(&frame, true)?;
        self.mem.persist(snapshot, entries, hard_state)
    }

    fn set_commit(&self, commit: u64) -> Result<(), QuorumError> {
        let frame = Frame {
            commit: Some(commit),
            ..Frame::default()
        };
        self.append(&frame, false)?;
        self.mem.set_commit(commit)
    }

    fn compact(&self, index: u64, data: Vec<u8>) -> Result<(), QuorumError> {
        self.mem.compact(index, data)?;
        self.rewrite()
    }
}

impl raft::Storage for FileStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        self.mem.snapshot(request_index, to)
    }
}

#[cfg(test)]
mod tests {
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
    fn reopens_after_appends_overwrites_compaction_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = FileStorage::open(dir.path(), &[1, 2, 3], true).unwrap();
            let hs = HardState {
                term: 2,
                vote: 1,
                commit: 2,
                ..Default::default()
            };
            let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 1)).collect();
            s.persist(None, &entries, Some(&hs)).unwrap();
            s.persist(None, &[entry(4, 2)], None).unwrap();
            s.compact(2, b"state".to_vec()).unwrap();
            s.persist(None, &[entry(5, 2)], None).unwrap();
            s.set_commit(3).unwrap();
        }
        // A crash in the middle of the next append leaves half a frame.
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 0, 0, 90, 1, 2, 3]).unwrap();
        drop(f);
        let s = FileStorage::open(dir.path(), &[3, 1, 2], true).unwrap();
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (3, 5));
        assert_eq!(
            (s.term(2).unwrap(), s.term(4).unwrap(), s.term(5).unwrap()),
            (1, 2, 2)
        );
        let hs = s.initial_state().unwrap().hard_state;
        assert_eq!((hs.term, hs.vote, hs.commit), (2, 1, 3));
        assert_eq!(&s.latest_snapshot().data[..], b"state");
        drop(s);
        assert!(matches!(
            FileStorage::open(dir.path(), &[1, 2], true),
            Err(QuorumError::VotersChanged { .. })
        ));
    }

    #[test]
    fn corruption_before_the_tail_stops_the_node() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = FileStorage::open(dir.path(), &[1], true).unwrap();
            s.persist(None, &[entry(1, 1)], None).unwrap();
            s.persist(None, &[entry(2, 1)], None).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[FRAME_HEADER_BYTES + 3] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        match FileStorage::open(dir.path(), &[1], true) {
            Err(QuorumError::Corrupt { reason, .. }) => assert!(reason.contains("CRC"), "{reason}"),
            Err(other) => panic!("expected corruption, got {other}"),
            Ok(_) => panic!("expected corruption"),
        }
    }

    #[test]
    fn a_one_voter_quorum_on_files_restores_its_state() {
        use crate::quorum::{ApplyOutcome, Proposal, QuorumConfig, QuorumNode};
        let dir = tempfile::tempdir().unwrap();
        let mut config = QuorumConfig::new(1, vec![1]);
        config.snapshot_interval_entries = 3;
        let open = || FileStorage::open(dir.path(), &[1], true).unwrap();
        let mut node = QuorumNode::open_with(open(), &config).unwrap();
        node.ready().unwrap();
        for n in 0..7u128 {
            let proposal = Proposal {
                base_version: node.state().applied_records(),
                records: vec![crate::MetadataRecord::CreateTopic {
                    name: format!("t{n}"),
                    topic_id: uuid::Uuid::from_u128(n),
                    partitions: vec![],
                    configs: Default::default(),
                }],
            };
            let ticket = node.propose(&proposal).unwrap();
            let out = node.ready().unwrap();
            let applied = out
                .applied
                .iter()
                .find(|a| a.index == ticket.index)
                .unwrap();
            assert!(matches!(applied.outcome, ApplyOutcome::Committed { .. }));
        }
        let before = node.state().clone();
        drop(node);
        let mut node = QuorumNode::open_with(open(), &config).unwrap();
        node.ready().unwrap();
        assert_eq!(node.state(), &before);
        assert_eq!(node.state().topics().count(), 7);
    }
}
