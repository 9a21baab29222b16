//! # quorum — the metadata Raft group
//!
//! Owns consensus on the metadata log: [`QuorumStorage`] (raft-rs's `Storage` plus the
//! driver's writes: [`RocksStorage`] on RocksDB, durable, what every voter uses, opened by
//! [`open_voter_storage`]; [`FileStorage`], the write-ahead file of older Cairns, read
//! once to move it into RocksDB; [`MemStorage`] in memory, for tests) and
//! [`QuorumNode`], the synchronous driver core around raft-rs's `RawNode` that the
//! broker's shell ticks, steps and drains. It owns no socket, thread or clock: time comes
//! in as [`QuorumNode::tick`] calls, messages come in through [`QuorumNode::step`] and go
//! out as values in [`Output::messages`]; the shell carries them (tonic between processes,
//! a seeded in-memory network in the simulation tests of `sim`).
//!
//! ## Raft (Ongaro & Ousterhout 2014; raft-rs) in KRaft's shape (KIP-500, KIP-595)
//! Every controller-eligible node is a voter; the Raft leader is the active controller.
//! One node is a one-voter quorum running exactly this code. `docs/glossary.md` maps
//! Raft's words (term, index, commit) to Kafka's (epoch, offset, high watermark).
//!
//! ## Entries and optimistic concurrency
//! A normal entry carries a [`Proposal`]: the records a controller decision produced and
//! `base_version`, the [`ClusterState::applied_records`](crate::ClusterState::applied_records)
//! of the state the decision was made against. An entry applies only if the state it is
//! applied to still has that version; otherwise every node skips it identically
//! ([`ApplyOutcome::Stale`]) and the proposer decides again on the newer state. This is
//! what lets any node decide (`decide` runs wherever the request arrived) while the
//! records in the log always apply cleanly: [`ClusterState::apply`](crate::ClusterState::apply)
//! only ever sees records validated against exactly the state they are applied to. Empty
//! entries (the one a new leader appends) change nothing.
//!
//! ## Invariants (checked after every step by the simulation tests)
//! - At most one leader per term.
//! - An entry, once applied anywhere at index `i`, is the entry every node applies at `i`.
//! - Two nodes that applied up to the same index hold equal [`ClusterState`]s, so every
//!   node's applied history is a prefix of the longest one.
//!
//! ## What survives a crash
//! Everything [`QuorumStorage::persist`] returned from (entries, hard state, an installed
//! snapshot), synced before any message acknowledging it leaves the node. The applied
//! state is not stored on its own: on open it is the latest snapshot, and raft-rs replays
//! the committed entries after it.

mod file;
mod node;
mod observer;
mod rocks;
mod storage;

#[cfg(test)]
mod sim;

use std::path::PathBuf;

pub use file::FileStorage;
pub use node::{
    Applied, ApplyOutcome, Fetched, NotLeader, ObserverStatus, Output, Proposal, QuorumConfig,
    QuorumNode, QuorumStatus, Ticket, apply_entry, decode_state, encode_state,
};
pub use observer::{OBSERVER_FILE, ObserverState};
pub use raft::eraftpb::{
    Entry as RaftEntry, EntryType as RaftEntryType, Message as RaftMessage,
    Snapshot as RaftSnapshot,
};
pub use rocks::{RocksStorage, holds_voter_storage, open_voter_storage};
pub use storage::{MemStorage, QuorumStorage};

/// Failures of the quorum's storage and log. All of them stop the node: none is retried
/// and nothing is reset behind the operator's back.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error(
        "metadata quorum storage {dir}: {op} failed: {reason}; check the disk, then restart the node"
    )]
    Storage {
        dir: PathBuf,
        op: &'static str,
        reason: String,
    },
    #[error(
        "metadata quorum storage {dir} is corrupt: {reason}; restore the directory from a backup, or, \
         if the other voters hold a majority, delete it so this node rejoins empty and receives a snapshot"
    )]
    Corrupt { dir: PathBuf, reason: String },
    #[error(
        "metadata quorum storage {dir} was created with voters {stored:?} but is started with {configured:?}; \
         changing the voters of an existing quorum is not supported"
    )]
    VotersChanged {
        dir: PathBuf,
        stored: Vec<u64>,
        configured: Vec<u64>,
    },
    #[error(
        "metadata observer snapshot {} is corrupt: {reason}; delete the file and restart the broker: \
         as an observer it fetches the metadata again from the voters",
        path.display()
    )]
    ObserverCorrupt { path: PathBuf, reason: String },
    #[error("metadata log entry {index} (term {term}) does not decode: {reason}")]
    UndecodableEntry {
        index: u64,
        term: u64,
        reason: String,
    },
    #[error("metadata snapshot at index {index} does not decode: {reason}")]
    UndecodableSnapshot { index: u64, reason: String },
    #[error("raft: {0}")]
    Raft(String),
}

/// Encodes a Raft message for the wire (rust-protobuf, raft-rs's own encoding).
pub fn encode_message(message: &RaftMessage) -> Vec<u8> {
    use protobuf::Message as _;
    message.write_to_bytes().expect("raft messages encode")
}

/// Decodes a Raft message received from a peer.
pub fn decode_message(bytes: &[u8]) -> Result<RaftMessage, String> {
    use protobuf::Message as _;
    RaftMessage::parse_from_bytes(bytes).map_err(|e| e.to_string())
}

/// A slog drain that forwards raft-rs's log lines to `tracing` (target `raft`).
pub(crate) struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        use slog::KV as _;
        let mut kv = KvString(String::new());
        let _ = values.serialize(record, &mut kv);
        let _ = record.kv().serialize(record, &mut kv);
        let message = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{message}{}", kv.0)
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{message}{}", kv.0),
            slog::Level::Info => tracing::info!(target: "raft", "{message}{}", kv.0),
            slog::Level::Debug => tracing::debug!(target: "raft", "{message}{}", kv.0),
            slog::Level::Trace => tracing::trace!(target: "raft", "{message}{}", kv.0),
        }
        Ok(())
    }
}

struct KvString(String);

impl slog::Serializer for KvString {
    fn emit_arguments(&mut self, key: slog::Key, val: &std::fmt::Arguments<'_>) -> slog::Result {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}
