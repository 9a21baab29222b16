//! [`ObserverState`]: the applied metadata of an observer — a broker outside the voters
//! that follows the committed metadata log (KRaft's observers) — and the file that keeps
//! it across restarts.
//!
//! An observer has no Raft node. The host fetches committed entries (or a snapshot) from
//! a voter ([`super::QuorumNode::fetch`] answers there) and hands them to
//! [`ObserverState::apply_fetched`], which applies them with exactly the voters' rule
//! ([`super::apply_entry`], [`super::decode_state`]): same decoding, same
//! [`ApplyOutcome::Stale`](super::ApplyOutcome::Stale) skips, same fatal errors. So an
//! observer at index `i` holds the state every voter holds at `i`.
//!
//! ## On-disk format (`<dir>/observer.snapshot`)
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `CAIRNOB1` (format version 1) |
//! | 8 | applied index, big-endian u64 |
//! | 8 | term of the entry at that index, big-endian u64 |
//! | 8 | payload length `n`, big-endian u64 |
//! | 4 | CRC-32 (IEEE) of the 24 bytes above and the payload, big-endian |
//! | n | the state, encoded as a quorum snapshot's data ([`super::encode_state`]) |
//!
//! ## What survives a crash
//! [`ObserverState::persist`] writes the whole state to `observer.snapshot.tmp`,
//! fdatasyncs it, renames it over `observer.snapshot` and fsyncs the directory: after a
//! crash the file holds either the previous or the new state, whole. It runs after a
//! fetched batch is applied, so the file never holds more than was applied; whatever was
//! applied but not yet written is fetched again. A file that does not check out (magic,
//! length or CRC) is [`QuorumError::ObserverCorrupt`], never a silent reset.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use raft::eraftpb::Entry;

use super::QuorumError;
use super::node::{Applied, Fetched, Output, apply_entry, decode_state, encode_state};
use crate::ClusterState;

/// The observer's state file, in the directory given to [`ObserverState::open`].
pub const OBSERVER_FILE: &str = "observer.snapshot";
const TMP_SUFFIX: &str = ".tmp";
const MAGIC: &[u8; 8] = b"CAIRNOB1";
const HEADER_BYTES: usize = 8 + 8 + 8 + 8 + 4;

/// An observer's applied metadata; see the module docs.
pub struct ObserverState {
    path: PathBuf,
    state: ClusterState,
    applied_index: u64,
    applied_term: u64,
    sync_writes: bool,
}

impl ObserverState {
    /// Loads the state persisted in `dir` (empty at index 0 when there is none yet).
    /// `sync_writes` off only for in-process tests.
    pub fn open(dir: &Path, sync_writes: bool) -> Result<ObserverState, QuorumError> {
        let io = |op: &'static str| {
            let dir = dir.to_owned();
            move |e: std::io::Error| QuorumError::Storage {
                dir,
                op,
                reason: e.to_string(),
            }
        };
        std::fs::create_dir_all(dir).map_err(io("create directory"))?;
        let path = dir.join(OBSERVER_FILE);
        // A crash between writing the temporary file and renaming it leaves it behind;
        // the real file is whole, so it is simply dropped.
        let tmp = tmp_path(&path);
        if tmp.exists() {
            std::fs::remove_file(&tmp).map_err(io("remove a leftover temporary file"))?;
        }
        let mut observer = ObserverState {
            path,
            state: ClusterState::default(),
            applied_index: 0,
            applied_term: 0,
            sync_writes,
        };
        let bytes = match std::fs::read(&observer.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(observer),
            Err(e) => return Err(io("read")(e)),
        };
        let (index, term, payload) =
            decode_file(&bytes).map_err(|reason| QuorumError::ObserverCorrupt {
                path: observer.path.clone(),
                reason,
            })?;
        observer.state =
            decode_state(index, payload).map_err(|e| QuorumError::ObserverCorrupt {
                path: observer.path.clone(),
                reason: e.to_string(),
            })?;
        observer.applied_index = index;
        observer.applied_term = term;
        Ok(observer)
    }

    /// The applied metadata.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// Index of the last applied entry (or installed snapshot); 0 before any.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Term of the last applied entry.
    pub fn applied_term(&self) -> u64 {
        self.applied_term
    }

    /// The index to fetch from next.
    pub fn next_index(&self) -> u64 {
        self.applied_index + 1
    }

    /// Applies what a voter answered: its snapshot when it is newer than the applied
    /// index (the state is replaced), then the entries that follow the applied index, in
    /// order; then, if anything changed, persists the state. Entries at or below the
    /// applied index are skipped (a repeated answer); a gap stops the batch (it is asked
    /// again from the applied index). Errors are fatal, as on a voter.
    pub fn apply_fetched(&mut self, fetched: &Fetched) -> Result<Output, QuorumError> {
        let mut out = Output::default();
        if let Some(snapshot) = &fetched.snapshot {
            let meta = snapshot.get_metadata();
            if meta.index > self.applied_index {
                self.state = decode_state(meta.index, &snapshot.data)?;
                self.applied_index = meta.index;
                self.applied_term = meta.term;
                out.snapshot_installed = Some(meta.index);
            }
        }
        self.apply(&fetched.entries, &mut out)?;
        if out.snapshot_installed.is_some() || !out.applied.is_empty() {
            self.persist()?;
        }
        Ok(out)
    }

    fn apply(&mut self, entries: &[Entry], out: &mut Output) -> Result<(), QuorumError> {
        let start = self.applied_index;
        for entry in entries.iter().filter(|e| e.index > start) {
            if entry.index != self.applied_index + 1 {
                tracing::warn!(
                    applied_index = self.applied_index,
                    entry_index = entry.index,
                    "metadata observer: a fetched batch skips entries; asking again"
                );
                break;
            }
            let outcome = apply_entry(&mut self.state, entry)?;
            self.applied_index = entry.index;
            self.applied_term = entry.term;
            out.applied.push(Applied {
                index: entry.index,
                term: entry.term,
                outcome,
            });
        }
        Ok(())
    }

    /// Writes the whole state atomically (temporary file, fdatasync, rename, directory
    /// fsync); see the module docs.
    pub fn persist(&self) -> Result<(), QuorumError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let io = |op: &'static str| {
            move |e: std::io::Error| QuorumError::Storage {
                dir: dir.to_owned(),
                op,
                reason: e.to_string(),
            }
        };
        let bytes = encode_file(
            self.applied_index,
            self.applied_term,
            &encode_state(&self.state),
        );
        let tmp = tmp_path(&self.path);
        let mut file = File::create(&tmp).map_err(io("create"))?;
        file.write_all(&bytes).map_err(io("write"))?;
        if self.sync_writes {
            file.sync_data().map_err(io("fdatasync"))?;
        }
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(io("rename"))?;
        if self.sync_writes {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("fsync directory"))?;
        }
        Ok(())
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(TMP_SUFFIX);
    path.with_file_name(name)
}

fn encode_file(index: u64, term: u64, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&index.to_be_bytes());
    bytes.extend_from_slice(&term.to_be_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[8..32]);
    crc.update(payload);
    bytes.extend_from_slice(&crc.finalize().to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// (index, term, payload) of a state file, or why it does not check out.
fn decode_file(bytes: &[u8]) -> Result<(u64, u64, &[u8]), String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!(
            "{} bytes, shorter than the {HEADER_BYTES}-byte header",
            bytes.len()
        ));
    }
    if &bytes[0..8] != MAGIC {
        return Err("not an observer snapshot (bad magic)".into());
    }
    let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let (index, term, len) = (u64_at(8), u64_at(16), u64_at(24));
    let crc = u32::from_be_bytes(bytes[32..36].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() as u64 != len {
        return Err(format!(
            "payload of {} bytes where the header says {len}",
            payload.len()
        ));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[8..32]);
    hasher.update(payload);
    if hasher.finalize() != crc {
        return Err("CRC mismatch".into());
    }
    Ok((index, term, payload))
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::{EntryType, Message};

    use super::*;
    use crate::MetadataRecord;
    use crate::quorum::{ApplyOutcome, MemStorage, Proposal, QuorumConfig, QuorumNode};

    fn create_topic(n: u128) -> MetadataRecord {
        MetadataRecord::CreateTopic {
            name: format!("t{n}"),
            topic_id: uuid::Uuid::from_u128(n),
            partitions: vec![],
            configs: Default::default(),
        }
    }

    /// A one-voter quorum (it leads after its first `ready`) with `n` topics created, and
    /// one stale proposal in between (decided against an older version).
    fn one_voter(snapshot_interval: u64, n: u128) -> QuorumNode<MemStorage> {
        let mut config = QuorumConfig::new(1, vec![1]);
        config.snapshot_interval_entries = snapshot_interval;
        config.sync_writes = false;
        let mut node = QuorumNode::open_with(MemStorage::new(&[1]), &config).unwrap();
        node.ready().unwrap();
        for i in 0..n {
            let base_version = node.state().applied_records();
            for proposal in [
                Proposal {
                    base_version,
                    records: vec![create_topic(i)],
                },
                // Same base version: stale once the first applied.
                Proposal {
                    base_version,
                    records: vec![create_topic(1000 + i)],
                },
            ] {
                node.propose(&proposal).unwrap();
            }
            let out = node.ready().unwrap();
            assert!(
                out.applied
                    .iter()
                    .any(|a| matches!(a.outcome, ApplyOutcome::Stale { .. }))
            );
        }
        node
    }

    /// Fetches from `node` into `observer` until it has applied everything `node` has.
    fn catch_up(node: &QuorumNode<MemStorage>, observer: &mut ObserverState) -> Vec<Output> {
        let mut outs = Vec::new();
        while observer.applied_index() < node.applied_index() {
            let fetched = node.fetch(observer.next_index(), 64).unwrap();
            assert!(fetched.snapshot.is_some() || !fetched.entries.is_empty());
            outs.push(observer.apply_fetched(&fetched).unwrap());
        }
        outs
    }

    #[test]
    fn fetch_answers_a_snapshot_when_the_index_is_compacted_away() {
        let node = one_voter(3, 6);
        let snapshot_index = node.fetch(1, u64::MAX).unwrap().snapshot.map(|s| {
            let meta = s.get_metadata();
            meta.index
        });
        let snapshot_index = snapshot_index.expect("index 1 is compacted: a snapshot");
        assert!(snapshot_index >= 3);
        let fetched = node.fetch(1, u64::MAX).unwrap();
        assert_eq!(
            fetched.entries.first().map(|e| e.index),
            (snapshot_index < node.applied_index()).then_some(snapshot_index + 1),
            "entries follow the snapshot"
        );
        assert_eq!(
            fetched.entries.last().map_or(snapshot_index, |e| e.index),
            node.applied_index()
        );
        // Past the snapshot: entries only; at the end: nothing.
        let tail = node.fetch(snapshot_index + 1, u64::MAX).unwrap();
        assert!(tail.snapshot.is_none());
        let nothing = node.fetch(node.applied_index() + 1, u64::MAX).unwrap();
        assert!(nothing.snapshot.is_none() && nothing.entries.is_empty());
        assert_eq!(nothing.leader_id, Some(1));
        assert_eq!(nothing.commit_index, node.applied_index());

        // An observer starting empty converges on exactly the voter's state.
        let dir = tempfile::tempdir().unwrap();
        let mut observer = ObserverState::open(dir.path(), false).unwrap();
        let outs = catch_up(&node, &mut observer);
        assert_eq!(outs[0].snapshot_installed, Some(snapshot_index));
        assert_eq!(observer.state(), node.state());
        assert_eq!(observer.applied_index(), node.applied_index());
    }

    #[test]
    fn fetch_answers_committed_entries_only() {
        // Three voters in memory; messages are delivered by hand.
        let voters = vec![1, 2, 3];
        let mut nodes: Vec<QuorumNode<MemStorage>> = voters
            .iter()
            .map(|&id| {
                let mut config = QuorumConfig::new(id, voters.clone());
                config.sync_writes = false;
                // Node 1 times out first and is elected.
                if id == 1 {
                    config.election_tick = 3;
                    config.election_tick_max = 4;
                }
                QuorumNode::open_with(MemStorage::new(&voters), &config).unwrap()
            })
            .collect();
        let deliver = |nodes: &mut Vec<QuorumNode<MemStorage>>, messages: Vec<Message>| {
            let mut queue = messages;
            while !queue.is_empty() {
                for m in std::mem::take(&mut queue) {
                    nodes[m.to as usize - 1].step(m);
                }
                for n in nodes.iter_mut() {
                    queue.extend(n.ready().unwrap().messages);
                }
            }
        };
        for _ in 0..100 {
            if nodes[0].is_leader() {
                break;
            }
            let mut messages = Vec::new();
            for n in nodes.iter_mut() {
                n.tick();
                messages.extend(n.ready().unwrap().messages);
            }
            deliver(&mut nodes, messages);
        }
        assert!(nodes[0].is_leader(), "node 1 was elected");
        let committed = nodes[0].applied_index();
        let proposal = Proposal {
            base_version: nodes[0].state().applied_records(),
            records: vec![create_topic(1)],
        };
        let ticket = nodes[0].propose(&proposal).unwrap();
        // The leader appends (and persists) the entry, but no follower has it yet.
        let held_back = nodes[0].ready().unwrap().messages;
        let fetched = nodes[0].fetch(committed + 1, u64::MAX).unwrap();
        assert!(
            fetched.entries.is_empty(),
            "uncommitted entry {} answered",
            ticket.index
        );
        assert_eq!(fetched.commit_index, committed);
        // Once a majority has it, it is committed and answered.
        deliver(&mut nodes, held_back);
        let fetched = nodes[0].fetch(committed + 1, u64::MAX).unwrap();
        assert_eq!(
            fetched.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![ticket.index]
        );
        assert_eq!(fetched.leader_id, Some(1));
        // A follower answers the same committed entries (any voter can serve).
        let from_follower = nodes[1].fetch(1, u64::MAX).unwrap();
        let from_leader = nodes[0].fetch(1, u64::MAX).unwrap();
        assert_eq!(from_follower.entries, from_leader.entries);
    }

    #[test]
    fn observer_persists_restarts_and_refuses_a_corrupt_file() {
        let node = one_voter(1_000, 5);
        let dir = tempfile::tempdir().unwrap();
        let mut observer = ObserverState::open(dir.path(), true).unwrap();
        let outs = catch_up(&node, &mut observer);
        // The voters' apply rule: the stale proposals are skipped here too.
        let stale = outs
            .iter()
            .flat_map(|o| &o.applied)
            .filter(|a| matches!(a.outcome, ApplyOutcome::Stale { .. }))
            .count();
        assert_eq!(stale, 5);
        assert_eq!(observer.state(), node.state());
        let (index, term) = (observer.applied_index(), observer.applied_term());
        drop(observer);

        // A restart serves the persisted state without any voter.
        let reopened = ObserverState::open(dir.path(), true).unwrap();
        assert_eq!(reopened.state(), node.state());
        assert_eq!(
            (reopened.applied_index(), reopened.applied_term()),
            (index, term)
        );
        // A repeated answer changes nothing and writes nothing.
        let mut reopened = reopened;
        let again = reopened
            .apply_fetched(&node.fetch(1, u64::MAX).unwrap())
            .unwrap();
        assert!(again.applied.is_empty() && again.snapshot_installed.is_none());
        drop(reopened);

        // A leftover temporary file (crash before the rename) is dropped.
        std::fs::write(dir.path().join("observer.snapshot.tmp"), b"half").unwrap();
        ObserverState::open(dir.path(), true).unwrap();
        assert!(!dir.path().join("observer.snapshot.tmp").exists());

        // One flipped byte: a fatal error naming the file and the way out.
        let path = dir.path().join(OBSERVER_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        match ObserverState::open(dir.path(), true) {
            Err(e @ QuorumError::ObserverCorrupt { .. }) => {
                let message = e.to_string();
                assert!(message.contains(&path.display().to_string()), "{message}");
                assert!(message.contains("CRC"), "{message}");
                assert!(message.contains("delete the file"), "{message}");
            }
            Err(other) => panic!("expected corruption, got {other}"),
            Ok(_) => panic!("a corrupt file was accepted"),
        }
        // Cut short: also refused.
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            ObserverState::open(dir.path(), true),
            Err(QuorumError::ObserverCorrupt { .. })
        ));
    }

    #[test]
    fn observer_stops_on_an_undecodable_entry_as_a_voter_does() {
        let dir = tempfile::tempdir().unwrap();
        let mut observer = ObserverState::open(dir.path(), false).unwrap();
        let bad = |entry_type: EntryType, data: &[u8]| {
            let mut entry = Entry {
                index: 1,
                term: 1,
                data: data.to_vec().into(),
                ..Default::default()
            };
            entry.set_entry_type(entry_type);
            Fetched {
                entries: vec![entry],
                ..Fetched::default()
            }
        };
        for fetched in [
            bad(EntryType::EntryNormal, b"{not json"),
            bad(EntryType::EntryConfChange, b""),
        ] {
            assert!(matches!(
                observer.apply_fetched(&fetched),
                Err(QuorumError::UndecodableEntry { index: 1, .. })
            ));
        }
        assert_eq!(observer.applied_index(), 0);
        assert!(!dir.path().join(OBSERVER_FILE).exists());
    }
}
