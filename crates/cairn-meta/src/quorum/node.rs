//! [`QuorumNode`]: one voter of the metadata quorum as a synchronous state machine.
//!
//! The host (the broker's quorum shell, or the simulation) owns it on one thread and
//! repeats, in any interleaving:
//! - [`QuorumNode::tick`] every tick interval (time is only ever passed in this way);
//! - [`QuorumNode::step`] for every message a peer sent;
//! - [`QuorumNode::propose`] for a controller decision;
//! - [`QuorumNode::ready`], which does raft-rs's `Ready` cycle: persist the snapshot,
//!   entries and hard state (one synced write), apply committed entries to the
//!   [`ClusterState`], `advance`, and hand back the messages to send and what was applied.
//!
//! Messages to followers (appends) leave before the leader's own write is durable, which
//! Raft allows (thesis §10.2.1); messages that acknowledge something (votes, append
//! responses) are only returned after it is durable.

use raft::eraftpb::{EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole};
use serde::{Deserialize, Serialize};

use super::{QuorumError, QuorumStorage, TracingDrain};
use crate::{ClusterState, MetadataRecord};

/// Largest append message raft-rs builds: bounds one gRPC call (the server accepts more).
pub const MESSAGE_BYTES_MAX: u64 = 1024 * 1024;
/// Append messages in flight to one follower before raft-rs waits for acknowledgements.
pub const INFLIGHT_MESSAGES_MAX: usize = 256;

/// Settings of one voter.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id (the broker's `node.id`), never 0.
    pub node_id: u64,
    /// Every voter's id, this node's included.
    pub voters: Vec<u64>,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: usize,
    /// Ticks without a leader before a follower campaigns: drawn by raft-rs from
    /// `[election_tick, election_tick_max)` after every election.
    pub election_tick: usize,
    pub election_tick_max: usize,
    /// Applied entries between two snapshots (each snapshot compacts the log).
    pub snapshot_interval_entries: u64,
    /// Sync every write. Only in-process tests, where a "crash" cannot lose the page
    /// cache, turn this off.
    pub sync_writes: bool,
}

impl QuorumConfig {
    /// Defaults for a voter: heartbeat every 2 ticks, elections after 10–20 ticks.
    pub fn new(node_id: u64, voters: Vec<u64>) -> QuorumConfig {
        QuorumConfig {
            node_id,
            voters,
            heartbeat_tick: 2,
            election_tick: 10,
            election_tick_max: 20,
            snapshot_interval_entries: 1024,
            sync_writes: true,
        }
    }
}

/// The payload of a normal log entry: records decided against the state whose
/// [`ClusterState::applied_records`] is `base_version`. Protobuf in the entry's data
/// ([`crate::codec`]); the serde form is the JSON that earlier versions wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub base_version: u64,
    pub records: Vec<MetadataRecord>,
}

/// Where a proposal was placed in the log: it succeeded if the entry applied at `index`
/// has this `term`; an entry of another term there means the proposal was lost with its
/// leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub term: u64,
    pub index: u64,
}

/// This node cannot take proposals; `leader_id` is the leader it knows of, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not the metadata quorum leader (leader: {leader_id:?})")]
pub struct NotLeader {
    pub leader_id: Option<u64>,
}

/// What applying one committed entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The records applied; the state's version is now `version`.
    Committed { version: u64 },
    /// The entry was decided against an older state and was skipped on every node.
    Stale { base_version: u64, version: u64 },
    /// An entry without records (a new leader's first entry).
    Empty,
}

/// One committed entry applied to the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub index: u64,
    pub term: u64,
    pub outcome: ApplyOutcome,
}

/// What one [`QuorumNode::ready`] produced.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages to send, in order, each to `message.to`.
    pub messages: Vec<Message>,
    /// Entries applied, in index order.
    pub applied: Vec<Applied>,
    /// The index of a snapshot installed from the leader (the state was replaced).
    pub snapshot_installed: Option<u64>,
}

impl Output {
    /// Whether the applied state may have changed.
    pub fn state_changed(&self) -> bool {
        self.snapshot_installed.is_some()
            || self
                .applied
                .iter()
                .any(|a| matches!(a.outcome, ApplyOutcome::Committed { .. }))
    }
}

/// A node's view of the quorum, for `cairn cluster status` and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub node_id: u64,
    pub voters: Vec<u64>,
    pub leader_id: Option<u64>,
    pub term: u64,
    pub is_leader: bool,
    pub commit_index: u64,
    pub applied_index: u64,
    /// The state's version (records applied).
    pub applied_records: u64,
    /// The observers that fetched from this node (filled by the host that serves their
    /// fetches; [`QuorumNode::status`] leaves it empty).
    pub observers: Vec<ObserverStatus>,
}

impl QuorumStatus {
    /// Whether this is the status of an observer (a node outside the voters).
    pub fn is_observer(&self) -> bool {
        !self.voters.contains(&self.node_id)
    }
}

/// An observer as the voter it fetches from sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserverStatus {
    pub node_id: u64,
    /// The last index it had applied when it last fetched (its `next_index` − 1).
    pub fetched_index: u64,
    /// When it last fetched, in milliseconds since the Unix epoch.
    pub last_fetch_ms: u64,
}

/// What a voter answers an observer's fetch: committed entries only.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub leader_id: Option<u64>,
    pub term: u64,
    pub commit_index: u64,
    /// The voter's latest snapshot, when the index asked for is compacted away; the
    /// entries then follow it.
    pub snapshot: Option<raft::eraftpb::Snapshot>,
    /// Consecutive committed entries from `next_index` (or the snapshot's index + 1).
    pub entries: Vec<raft::eraftpb::Entry>,
}

/// One voter: raft-rs's `RawNode` on a [`QuorumStorage`], plus the applied
/// [`ClusterState`].
pub struct QuorumNode<S: QuorumStorage> {
    raw: RawNode<S>,
    node_id: u64,
    voters: Vec<u64>,
    state: ClusterState,
    applied_index: u64,
    snapshot_interval_entries: u64,
}

impl QuorumNode<super::RocksStorage> {
    /// Opens this voter's durable storage in the quorum directory `dir` (RocksDB, see
    /// [`super::open_voter_storage`]); see [`QuorumNode::open_with`].
    pub fn open(
        dir: &std::path::Path,
        config: &QuorumConfig,
    ) -> Result<QuorumNode<super::RocksStorage>, QuorumError> {
        let storage = super::open_voter_storage(dir, &config.voters, config.sync_writes)?;
        QuorumNode::open_with(storage, config)
    }
}

impl<S: QuorumStorage> QuorumNode<S> {
    /// Starts this voter on `storage` and rebuilds its state from the latest snapshot;
    /// committed entries after it come back through [`QuorumNode::ready`]. A one-voter
    /// quorum campaigns at once, so it leads after its first `ready`.
    pub fn open_with(storage: S, config: &QuorumConfig) -> Result<QuorumNode<S>, QuorumError> {
        assert!(config.node_id != 0, "node id 0 is reserved by raft");
        assert!(
            config.voters.contains(&config.node_id),
            "node {} is not among the voters {:?}",
            config.node_id,
            config.voters
        );
        let snapshot = storage.latest_snapshot();
        let applied_index = snapshot.get_metadata().index;
        let state = if applied_index == 0 {
            ClusterState::default()
        } else {
            decode_state(applied_index, &snapshot.data)?
        };
        let raft_config = raft::Config {
            id: config.node_id,
            election_tick: config.election_tick,
            heartbeat_tick: config.heartbeat_tick,
            min_election_tick: config.election_tick,
            max_election_tick: config.election_tick_max,
            applied: applied_index,
            max_size_per_msg: MESSAGE_BYTES_MAX,
            max_inflight_msgs: INFLIGHT_MESSAGES_MAX,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_config
            .validate()
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        let logger = slog::Logger::root(TracingDrain, slog::o!("raft_id" => config.node_id));
        let mut raw = RawNode::new(&raft_config, storage, &logger)
            .map_err(|e| QuorumError::Raft(e.to_string()))?;
        if config.voters.len() == 1 {
            raw.campaign()
                .map_err(|e| QuorumError::Raft(e.to_string()))?;
        }
        Ok(QuorumNode {
            raw,
            node_id: config.node_id,
            voters: config.voters.clone(),
            state,
            applied_index,
            snapshot_interval_entries: config.snapshot_interval_entries.max(1),
        })
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Takes in a message from a peer. A message from a node that is not a voter, or
    /// addressed to another node, is ignored and logged (returns `false`).
    pub fn step(&mut self, message: Message) -> bool {
        if message.to != self.node_id || !self.voters.contains(&message.from) {
            tracing::warn!(
                node_id = self.node_id,
                from = message.from,
                to = message.to,
                kind = ?message.get_msg_type(),
                "metadata quorum: ignoring a message from outside the configuration"
            );
            return false;
        }
        if let Err(e) = self.raw.step(message) {
            tracing::debug!(node_id = self.node_id, "metadata quorum: step: {e}");
        }
        true
    }

    /// Appends a proposal to the log if this node leads. The outcome arrives later as the
    /// [`Applied`] entry at the ticket's index.
    pub fn propose(&mut self, proposal: &Proposal) -> Result<Ticket, NotLeader> {
        if self.raw.raft.state != StateRole::Leader {
            return Err(NotLeader {
                leader_id: self.leader_id(),
            });
        }
        let data = crate::codec::encode_proposal(proposal);
        self.raw.propose(Vec::new(), data).map_err(|_| NotLeader {
            leader_id: self.leader_id(),
        })?;
        Ok(Ticket {
            term: self.raw.raft.term,
            index: self.raw.raft.raft_log.last_index(),
        })
    }

    /// Runs one `Ready` cycle if raft-rs has work: persist, apply, advance. Returns the
    /// messages to send and what was applied. An error is fatal for this node.
    pub fn ready(&mut self) -> Result<Output, QuorumError> {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return Ok(out);
        }
        let mut ready = self.raw.ready();
        out.messages.extend(ready.take_messages());

        let snapshot = (!ready.snapshot().is_empty()).then(|| ready.snapshot().clone());
        self.raw
            .store()
            .persist(snapshot.as_ref(), ready.entries(), ready.hs())?;
        if let Some(snapshot) = snapshot {
            let index = snapshot.get_metadata().index;
            assert!(
                index > self.applied_index,
                "snapshot {index} does not move past applied index {}",
                self.applied_index
            );
            self.state = decode_state(index, &snapshot.data)?;
            self.applied_index = index;
            out.snapshot_installed = Some(index);
        }
        self.apply(ready.take_committed_entries(), &mut out)?;
        out.messages.extend(ready.take_persisted_messages());

        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.store().set_commit(commit)?;
        }
        out.messages.extend(light.take_messages());
        self.apply(light.take_committed_entries(), &mut out)?;
        self.raw.advance_apply_to(self.applied_index);
        // raft-rs holds a follower in snapshot state until told how the send went. Report
        // success as soon as the snapshot leaves: if it is lost, the next append is
        // refused, the leader probes back to the compacted log and sends a new one, so a
        // lost snapshot can never stall a follower.
        for message in &out.messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.raw.report_snapshot(message.to, SnapshotStatus::Finish);
            }
        }
        self.maybe_compact()?;
        Ok(out)
    }

    fn apply(
        &mut self,
        entries: Vec<raft::eraftpb::Entry>,
        out: &mut Output,
    ) -> Result<(), QuorumError> {
        for entry in entries {
            assert_eq!(
                entry.index,
                self.applied_index + 1,
                "committed entries must apply in order"
            );
            let outcome = apply_entry(&mut self.state, &entry)?;
            self.applied_index = entry.index;
            out.applied.push(Applied {
                index: entry.index,
                term: entry.term,
                outcome,
            });
        }
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<(), QuorumError> {
        let snapshot_index = self.raw.store().latest_snapshot().get_metadata().index;
        if self.applied_index - snapshot_index < self.snapshot_interval_entries {
            return Ok(());
        }
        let data = encode_state(&self.state);
        self.raw.store().compact(self.applied_index, data)
    }

    /// The applied metadata.
    pub fn state(&self) -> &ClusterState {
        &self.state
    }

    /// Index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader this node knows of.
    pub fn leader_id(&self) -> Option<u64> {
        let leader = self.raw.raft.leader_id;
        (leader != raft::INVALID_ID).then_some(leader)
    }

    /// Tells raft-rs a peer could not be reached, so it probes instead of streaming.
    pub fn report_unreachable(&mut self, peer: u64) {
        self.raw.report_unreachable(peer);
    }

    /// Committed entries from `next_index` on, as many as fit in `max_bytes` (at least
    /// one), for an observer; the latest snapshot first when `next_index` is compacted
    /// away. Only entries this node has applied are answered: they are committed and
    /// durable here. Nothing when there is nothing newer.
    pub fn fetch(&self, next_index: u64, max_bytes: u64) -> Result<Fetched, QuorumError> {
        let store = self.raw.store();
        let snapshot = store.latest_snapshot();
        let snapshot_index = snapshot.get_metadata().index;
        let (snapshot, from) = if snapshot_index > 0 && next_index <= snapshot_index {
            (Some(snapshot), snapshot_index + 1)
        } else {
            (None, next_index.max(1))
        };
        let entries = if from <= self.applied_index {
            store
                .entries(
                    from,
                    self.applied_index + 1,
                    max_bytes,
                    raft::GetEntriesContext::empty(false),
                )
                .map_err(|e| QuorumError::Raft(format!("reading entries from {from}: {e}")))?
        } else {
            Vec::new()
        };
        Ok(Fetched {
            leader_id: self.leader_id(),
            term: self.raw.raft.term,
            commit_index: self.raw.raft.raft_log.committed,
            snapshot,
            entries,
        })
    }

    pub fn status(&self) -> QuorumStatus {
        QuorumStatus {
            node_id: self.node_id,
            voters: self.voters.clone(),
            leader_id: self.leader_id(),
            term: self.raw.raft.term,
            is_leader: self.is_leader(),
            commit_index: self.raw.raft.raft_log.committed,
            applied_index: self.applied_index,
            applied_records: self.state.applied_records(),
            observers: Vec::new(),
        }
    }
}

/// Applies one committed entry to `state`: the rule every voter and every observer
/// follows, so that all of them hold equal states at equal indexes. A normal entry's
/// [`Proposal`] applies only if `state` still has its `base_version`, else it is skipped
/// ([`ApplyOutcome::Stale`]); an empty one changes nothing. An entry of another type or
/// whose data does not decode is [`QuorumError::UndecodableEntry`], fatal for the node.
pub fn apply_entry(
    state: &mut ClusterState,
    entry: &raft::eraftpb::Entry,
) -> Result<ApplyOutcome, QuorumError> {
    let outcome = if entry.get_entry_type() != EntryType::EntryNormal {
        // Voters are fixed at creation; this node never proposes a change.
        return Err(QuorumError::UndecodableEntry {
            index: entry.index,
            term: entry.term,
            reason: format!("unsupported entry type {:?}", entry.get_entry_type()),
        });
    } else if entry.data.is_empty() {
        ApplyOutcome::Empty
    } else {
        let proposal = crate::codec::decode_proposal(&entry.data).map_err(|e| {
            QuorumError::UndecodableEntry {
                index: entry.index,
                term: entry.term,
                reason: e.to_string(),
            }
        })?;
        let version = state.applied_records();
        if proposal.base_version == version {
            for record in &proposal.records {
                state.apply(record);
            }
            ApplyOutcome::Committed {
                version: state.applied_records(),
            }
        } else {
            ApplyOutcome::Stale {
                base_version: proposal.base_version,
                version,
            }
        }
    };
    Ok(outcome)
}

/// The data of a snapshot at some index: the whole applied state.
pub fn encode_state(state: &ClusterState) -> Vec<u8> {
    crate::codec::encode_state(state)
}

/// The state a snapshot at `index` holds (see [`encode_state`]).
pub fn decode_state(index: u64, data: &[u8]) -> Result<ClusterState, QuorumError> {
    crate::codec::decode_state(data).map_err(|e| QuorumError::UndecodableSnapshot {
        index,
        reason: e.to_string(),
    })
}
