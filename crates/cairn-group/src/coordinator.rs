//! [`GroupCoordinator`]: the groups of one `__consumer_offsets` partition — membership,
//! generations and committed offsets — as a synchronous state machine.
//!
//! The host (the broker's async shell) calls one method per request with the current time,
//! calls [`GroupCoordinator::tick`] periodically, and after every call drains
//! [`GroupCoordinator::take_effects`]: records to append to the partition, then delayed
//! JoinGroup/SyncGroup answers to deliver. It must append (and make durable) the records of
//! one drain before delivering that drain's answers: a SyncGroup answer then never gets
//! ahead of the group metadata it depends on, and an OffsetCommit answer never gets ahead
//! of its offset record.
//!
//! ## The protocol (Kafka's `GroupCoordinator`, KIP-62, KIP-134, KIP-345, KIP-394, KIP-814)
//! ```text
//!            join (first member)            all joined / rebalance timeout
//!   Empty ───────────────────────▶ PreparingRebalance ───────────────────▶ CompletingRebalance
//!     ▲                                  ▲      │ nobody rejoined                 │ leader's SyncGroup
//!     └──────────────────────────────────┼──────┘ (generation+1, Empty)           ▼
//!                                        └──── join / leave / session expiry ── Stable
//! ```
//! - Completing a join increments the generation; the leader gets every member's metadata
//!   for the protocol chosen by vote among the protocols all members support.
//! - A rebalance out of Empty waits `group.initial.rebalance.delay.ms`, extended (within
//!   the rebalance timeout) while new members keep arriving, so a starting fleet lands in
//!   one generation.
//! - Members awaiting a JoinGroup or SyncGroup answer need no heartbeat; others are
//!   removed when their session timeout passes without one. A member that got the join
//!   answer but sends no SyncGroup within the rebalance timeout is removed too.
//! - A static member (`group.instance.id`) rejoining with a new member id replaces its old
//!   id (the old one is fenced: FENCED_INSTANCE_ID); in Stable with unchanged protocols it
//!   gets the current generation back without a rebalance.
//!
//! ## Invariants (checked by [`GroupCoordinator::check_invariants`] in tests)
//! - An Empty group has no members; a group with members has a leader among them. (A
//!   group whose members all left during the join phase is PreparingRebalance with none
//!   until the phase ends.)
//! - Answers waiting for a join exist only in PreparingRebalance, for a sync only in
//!   CompletingRebalance.
//! - Generations only grow; an offset commit naming a generation is accepted only for the
//!   current generation, from a current member, outside CompletingRebalance.
//!
//! ## Transactional offsets (TxnOffsetCommit; Kafka's `GroupMetadataManager`, KIP-98, KIP-447)
//! A producer's offsets are held *pending* per producer id, invisible to OffsetFetch (and
//! UNSTABLE_OFFSET_COMMIT with `require_stable`), and written as one transactional batch
//! ([`Effect::AppendTxnOffsets`]). The producer's COMMIT marker makes each of them the
//! committed offset unless the partition's committed offset was written after it (the
//! later record wins); ABORT drops them ([`GroupCoordinator::complete_txn`]). A plain
//! tombstone (OffsetDelete, DeleteGroups, which also write tombstones for partitions that
//! only have pending offsets) drops them too; an offset with a transaction open on it does
//! not expire, nor does its group.
//!
//! ## What survives a crash
//! Exactly what reached the log through [`Effect::Append`] and
//! [`Effect::AppendTxnOffsets`]: committed offsets, transactional offsets with the markers
//! that decided them (or pending, without one), and each group's membership as of its last
//! completed generation (written when the leader's assignment arrives and when the group
//! becomes Empty). [`GroupCoordinator::replay`], [`GroupCoordinator::replay_txn_offset`] and
//! [`GroupCoordinator::complete_txn`] rebuild the groups from those records in log order;
//! members of a reloaded group must heartbeat within their session timeout or are removed.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::error::GroupError;
use crate::records::{GroupRecord, GroupValue, MemberValue, OffsetValue, subscription_topics};

/// The host's handle for a request whose answer may be delayed (JoinGroup, SyncGroup).
pub type WaiterId = u64;

/// Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Broker settings the coordinator obeys (Kafka's names and defaults).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`: members (including those between their two KIP-394 joins).
    pub max_size: usize,
    /// `offsets.retention.minutes` in ms.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// How long a new member may wait in a join before it is dropped (Kafka's 5 minutes).
    pub new_member_join_timeout_ms: i64,
    /// Largest protocol metadata or assignment one member may send: the group's record must
    /// fit in a batch of the offsets topic, and a member must not make the group unbounded.
    pub member_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            new_member_join_timeout_ms: 300_000,
            member_metadata_max_bytes: 1024 * 1024,
        }
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty on a member's first join.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394: JoinGroup v4+ of a dynamic member.
    pub require_known_member_id: bool,
}

/// A member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A successful JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub member_id: String,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: String,
    /// KIP-814: a static leader that rejoined gets the members but need not assign.
    pub skip_assignment: bool,
    /// Every member, for the leader only.
    pub members: Vec<JoinedMember>,
}

/// A SyncGroup request, decoded.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment, member id → assignment; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// A successful SyncGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// One partition's commit in an OffsetCommit.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// An OffsetCommit request, decoded.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub group_id: String,
    /// -1 for commits from outside group management (admin tools, manual assignment).
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// OffsetCommit v2–v4 `retention_time_ms`; -1 means the broker's retention.
    pub retention_time_ms: i64,
    pub offsets: Vec<OffsetCommit>,
}

/// A TxnOffsetCommit request, decoded (KIP-98; v3 adds the member fields, KIP-447).
#[derive(Debug, Clone)]
pub struct TxnCommitRequest {
    pub group_id: String,
    /// The transactional producer whose transaction the offsets belong to.
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// -1, with an empty `member_id` and no instance id, before v3 or from a producer that
    /// does not pass the consumer's group metadata: the member is not checked.
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub offsets: Vec<OffsetCommit>,
}

/// Transactional offset records the host appends as ONE transactional batch of
/// `producer_id` (attributes' transactional bit set, base sequence -1), so that the
/// producer's COMMIT or ABORT marker later decides them as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnOffsetWrite {
    pub group_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub records: Vec<GroupRecord>,
    /// The write's place in the partition's order (see [`StoredOffset`]): it names the
    /// pending offsets to forget if the batch is not written.
    write_order: u64,
}

/// A committed offset as OffsetFetch answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
}

/// One partition's answer to an OffsetFetch with `require_stable`: its committed offset
/// (`None` if none), or [`GroupError::UnstableOffsetCommit`].
pub type StableOffset = Result<Option<CommittedOffset>, GroupError>;

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Metadata for the selected protocol; empty unless the group is Stable.
    pub metadata: Bytes,
    /// Empty unless the group is Stable.
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    /// Empty unless the group is Stable (Kafka's rule).
    pub protocol_name: String,
    pub generation_id: i32,
    pub members: Vec<MemberDescription>,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// Work for the host, in the order it must be done.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Append this record to the partition (before delivering answers of the same drain).
    Append(GroupRecord),
    /// Append these records as one transactional batch (after the records before it). If
    /// it is not written or not replicated, the host calls
    /// [`GroupCoordinator::txn_offsets_not_written`].
    AppendTxnOffsets(TxnOffsetWrite),
    /// Answer a parked JoinGroup.
    JoinDone {
        waiter: WaiterId,
        result: Result<JoinResponse, GroupError>,
    },
    /// Answer a parked SyncGroup.
    SyncDone {
        waiter: WaiterId,
        result: Result<SyncResponse, GroupError>,
    },
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<WaiterId>,
    awaiting_sync: Option<WaiterId>,
    /// Joined but not yet through a completed join: bounded by the new-member timeout.
    is_new: bool,
    heartbeat_deadline_ms: i64,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// The join phase's timer: a plain rebalance timeout, or the initial delay out of Empty.
#[derive(Debug, Clone, Copy)]
struct JoinTimer {
    deadline_ms: i64,
    /// `Some(remaining)` for the initial delay: how much more it may be extended.
    initial_remaining_ms: Option<i64>,
}

#[derive(Debug, Clone)]
struct Group {
    group_id: String,
    state: GroupState,
    state_since_ms: i64,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → member id.
    static_members: BTreeMap<String, String>,
    /// KIP-394: member ids handed out, not yet joined with → their deadline.
    pending_members: BTreeMap<String, i64>,
    new_member_added: bool,
    join_timer: Option<JoinTimer>,
    /// Members that got this generation's JoinGroup answer but have not sent SyncGroup,
    /// and when they must have (the rebalance timeout after the join completed): those
    /// still missing then are removed, as Kafka's coordinator does since 3.x.
    pending_sync: BTreeMap<String, ()>,
    sync_deadline_ms: Option<i64>,
    /// Topics the members subscribe to, for the `consumer` protocol (OffsetDelete, expiry).
    subscribed_topics: Option<Vec<String>>,
    offsets: BTreeMap<(String, i32), StoredOffset>,
    /// Transactional commits awaiting their producer's COMMIT or ABORT marker: producer id
    /// → partition → offset (Kafka's `pendingTransactionalOffsetCommits`). Not visible to
    /// OffsetFetch; never empty maps.
    pending_txn_offsets: BTreeMap<i64, BTreeMap<(String, i32), StoredOffset>>,
}

/// An offset as held by the coordinator, committed or pending.
///
/// `write_order` orders the offset's record among every offset record of the partition:
/// replay applies records in log order and the host appends records under the state
/// machine's lock in the order they were applied, so comparing two `write_order`s compares
/// the log offsets of their records — the rule by which Kafka decides, when a transaction
/// commits, whether its offset or a plain commit of the same partition is the newer one
/// (`CommitRecordMetadataAndOffset.olderThan`: the later record wins).
#[derive(Debug, Clone)]
struct StoredOffset {
    value: OffsetValue,
    write_order: u64,
}

impl Group {
    fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_owned(),
            state: GroupState::Empty,
            state_since_ms: now_ms,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            new_member_added: false,
            join_timer: None,
            pending_sync: BTreeMap::new(),
            sync_deadline_ms: None,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            pending_txn_offsets: BTreeMap::new(),
        }
    }

    fn has_pending_txn_offset(&self, tp: &(String, i32)) -> bool {
        self.pending_txn_offsets
            .values()
            .any(|p| p.contains_key(tp))
    }

    /// Drops every producer's pending offset of `tp` (a plain tombstone deletes them too,
    /// as in Kafka's `OffsetMetadataManager.replay`); reports whether there was one.
    fn remove_pending_txn_offsets(&mut self, tp: &(String, i32)) -> bool {
        let mut removed = false;
        self.pending_txn_offsets.retain(|_, p| {
            removed |= p.remove(tp).is_some();
            !p.is_empty()
        });
        removed
    }

    fn transition(&mut self, to: GroupState, now_ms: i64) {
        use GroupState::*;
        let ok = matches!(
            (self.state, to),
            (Empty, PreparingRebalance)
                | (PreparingRebalance, CompletingRebalance | Empty)
                | (CompletingRebalance, PreparingRebalance | Stable)
                | (Stable, PreparingRebalance)
                | (Empty, Dead)
                | (Dead, Dead)
        );
        assert!(
            ok,
            "group {}: illegal transition {:?} -> {to:?}",
            self.group_id, self.state
        );
        self.state = to;
        self.state_since_ms = now_ms;
    }

    fn unknown_member(&self, member_id: &str) -> GroupError {
        GroupError::UnknownMemberId {
            group_id: self.group_id.clone(),
            member_id: member_id.to_owned(),
        }
    }

    /// Kafka's `validateCurrentMember`: the instance id (if any) maps to this member id,
    /// and the member exists.
    fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), GroupError> {
        if let Some(instance) = group_instance_id {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => {
                    return Err(GroupError::FencedInstanceId {
                        group_instance_id: instance.to_owned(),
                        member_id: member_id.to_owned(),
                        current_member_id: current.clone(),
                    });
                }
                Some(_) => {}
                None => return Err(self.unknown_member(member_id)),
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(self.unknown_member(member_id));
        }
        Ok(())
    }

    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            candidates.retain(|c| m.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && self
                .candidate_protocols()
                .iter()
                .any(|c| protocols.iter().any(|(n, _)| n == c))
    }

    /// Kafka's vote: each member votes for its most preferred protocol that every member
    /// supports; most votes wins, ties go to the leader's preference.
    fn select_protocol(&self) -> String {
        let candidates = self.candidate_protocols();
        assert!(
            !candidates.is_empty(),
            "group {} has no common protocol",
            self.group_id
        );
        let mut votes = vec![0usize; candidates.len()];
        for m in self.members.values() {
            let pick = m
                .protocols
                .iter()
                .find_map(|(n, _)| candidates.iter().position(|c| c == n))
                .expect("every member supports every candidate");
            votes[pick] += 1;
        }
        let best = *votes.iter().max().expect("non-empty");
        let leader_order = self
            .leader_id
            .as_ref()
            .and_then(|l| self.members.get(l))
            .map(|l| {
                l.protocols
                    .iter()
                    .map(|(n, _)| n.clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        leader_order
            .iter()
            .find(|n| {
                candidates
                    .iter()
                    .position(|c| c == *n)
                    .is_some_and(|i| votes[i] == best)
            })
            .cloned()
            .unwrap_or_else(|| {
                candidates[votes.iter().position(|v| *v == best).expect("max")].clone()
            })
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn current_members_for_leader(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    fn join_response(&self, member_id: &str, skip_assignment: bool) -> JoinResponse {
        let is_leader = self.leader_id.as_deref() == Some(member_id);
        JoinResponse {
            member_id: member_id.to_owned(),
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone().unwrap_or_default(),
            skip_assignment: skip_assignment && is_leader,
            members: if is_leader {
                self.current_members_for_leader()
            } else {
                Vec::new()
            },
        }
    }

    fn to_record(&self) -> GroupRecord {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupRecord::Group {
            group_id: self.group_id.clone(),
            value: Some(GroupValue {
                protocol_type: self.protocol_type.clone().unwrap_or_default(),
                generation_id: self.generation_id,
                protocol_name: self.protocol_name.clone(),
                leader_id: self.leader_id.clone(),
                current_state_timestamp_ms: self.state_since_ms,
                members: self
                    .members
                    .values()
                    .map(|m| MemberValue {
                        member_id: m.member_id.clone(),
                        group_instance_id: m.group_instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        session_timeout_ms: m.session_timeout_ms,
                        subscription: m.metadata(&protocol),
                        assignment: m.assignment.clone(),
                    })
                    .collect(),
            }),
        }
    }

    fn compute_subscribed_topics(&mut self) {
        self.subscribed_topics = None;
        if self.protocol_type.as_deref() != Some("consumer") {
            return;
        }
        let Some(protocol) = self.protocol_name.clone() else {
            return;
        };
        let mut topics = Vec::new();
        for m in self.members.values() {
            match subscription_topics(&m.metadata(&protocol)) {
                Some(t) => topics.extend(t),
                None => return,
            }
        }
        topics.sort();
        topics.dedup();
        self.subscribed_topics = Some(topics);
    }

    fn is_subscribed_to(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.iter().any(|t| t == topic),
            None => true,
        }
    }
}

/// The groups of one `__consumer_offsets` partition.
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    effects: Vec<Effect>,
    member_id_seed: u64,
    member_id_counter: u64,
    next_offset_expiry_check_ms: i64,
    /// The next [`StoredOffset::write_order`].
    next_write_order: u64,
    /// producer id → groups that hold (or held) pending offsets of it (Kafka's
    /// `openGroupsForProducer`); may name groups since removed or completed, never misses one.
    open_txn_groups: BTreeMap<i64, BTreeSet<String>>,
}

impl GroupCoordinator {
    /// An empty coordinator. `member_id_seed` makes member ids unique across restarts (the
    /// host passes a random number; tests a fixed one).
    pub fn new(config: GroupConfig, member_id_seed: u64) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: BTreeMap::new(),
            effects: Vec::new(),
            member_id_seed,
            member_id_counter: 0,
            next_offset_expiry_check_ms: i64::MIN,
            next_write_order: 0,
            open_txn_groups: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Everything the host must do since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    fn stored(&mut self, value: OffsetValue) -> StoredOffset {
        let write_order = self.next_write_order;
        self.next_write_order += 1;
        StoredOffset { value, write_order }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.member_id_counter += 1;
        // Shaped like Kafka's `clientId-UUID`.
        let a = self.member_id_seed;
        let b = self.member_id_counter;
        format!(
            "{client_id}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            a as u16,
            (b >> 48) as u16,
            b & 0xffff_ffff_ffff
        )
    }

    fn join_done(&mut self, waiter: WaiterId, result: Result<JoinResponse, GroupError>) {
        self.effects.push(Effect::JoinDone { waiter, result });
    }

    // ---------------------------------------------------------------- JoinGroup

    /// JoinGroup: the answer comes as an [`Effect::JoinDone`] for `waiter`, now or when the
    /// join phase completes.
    pub fn join_group(&mut self, waiter: WaiterId, req: JoinRequest, now_ms: i64) {
        if let Err(e) = self.join_checks(&req) {
            self.join_done(waiter, Err(e));
            return;
        }
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                let e = GroupError::UnknownMemberId {
                    group_id: req.group_id.clone(),
                    member_id: req.member_id.clone(),
                };
                self.join_done(waiter, Err(e));
                return;
            }
            if req.protocol_type.is_empty() || req.protocols.is_empty() {
                let e = GroupError::InconsistentGroupProtocol {
                    group_id: req.group_id.clone(),
                };
                self.join_done(waiter, Err(e));
                return;
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(&req.group_id, now_ms));
        }
        let group = &self.groups[&req.group_id];
        if group.state == GroupState::Dead {
            let e = GroupError::CoordinatorNotAvailable {
                group_id: req.group_id.clone(),
            };
            self.join_done(waiter, Err(e));
            return;
        }
        if !group.supports_protocols(&req.protocol_type, &req.protocols) {
            let e = GroupError::InconsistentGroupProtocol {
                group_id: req.group_id.clone(),
            };
            self.join_done(waiter, Err(e));
            return;
        }
        if req.member_id.is_empty() {
            self.join_unknown_member(waiter, req, now_ms);
        } else {
            self.join_known_member(waiter, req, now_ms);
        }
    }

    fn join_checks(&self, req: &JoinRequest) -> Result<(), GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Err(GroupError::InvalidSessionTimeout {
                session_timeout_ms: req.session_timeout_ms,
                min_ms: self.config.min_session_timeout_ms,
                max_ms: self.config.max_session_timeout_ms,
            });
        }
        let metadata_bytes: usize = req.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
        if metadata_bytes > self.config.member_metadata_max_bytes {
            return Err(GroupError::MemberMetadataTooLarge {
                what: "protocol metadata",
                bytes: metadata_bytes,
                max_bytes: self.config.member_metadata_max_bytes,
            });
        }
        Ok(())
    }

    fn group_full(&self, group: &Group) -> bool {
        group.members.len() + group.pending_members.len() >= self.config.max_size
    }

    fn join_unknown_member(&mut self, waiter: WaiterId, req: JoinRequest, now_ms: i64) {
        let new_id = self.new_member_id(&req.client_id);
        let group = self.groups.get(&req.group_id).expect("checked");
        if let Some(instance) = &req.group_instance_id {
            if let Some(old_id) = group.static_members.get(instance).cloned() {
                self.replace_static_member(waiter, req, old_id, new_id, now_ms);
                return;
            }
        }
        if self.group_full(group) {
            let e = GroupError::GroupMaxSizeReached {
                group_id: req.group_id.clone(),
                max_size: self.config.max_size,
            };
            self.join_done(waiter, Err(e));
            return;
        }
        if req.require_known_member_id && req.group_instance_id.is_none() {
            let group = self.groups.get_mut(&req.group_id).expect("checked");
            group
                .pending_members
                .insert(new_id.clone(), now_ms + i64::from(req.session_timeout_ms));
            self.join_done(
                waiter,
                Err(GroupError::MemberIdRequired { member_id: new_id }),
            );
            return;
        }
        self.add_member_and_rebalance(waiter, req, new_id, now_ms);
    }

    fn join_known_member(&mut self, waiter: WaiterId, req: JoinRequest, now_ms: i64) {
        let group = self.groups.get_mut(&req.group_id).expect("checked");
        if group.pending_members.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            self.add_member_and_rebalance(waiter, req, id, now_ms);
            return;
        }
        if let Err(e) = group.validate_member(&req.member_id, req.group_instance_id.as_deref()) {
            self.join_done(waiter, Err(e));
            return;
        }
        let member = &group.members[&req.member_id];
        let same_protocols = member.protocols == req.protocols;
        let is_leader = group.leader_id.as_deref() == Some(req.member_id.as_str());
        match group.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(waiter, req, now_ms),
            GroupState::CompletingRebalance if same_protocols => {
                // A duplicate join (e.g. after a lost answer): give the generation back.
                let response = group.join_response(&req.member_id, false);
                touch(
                    group.members.get_mut(&req.member_id).expect("valid"),
                    now_ms,
                );
                self.join_done(waiter, Ok(response));
            }
            GroupState::Stable if same_protocols && !is_leader => {
                let response = group.join_response(&req.member_id, false);
                touch(
                    group.members.get_mut(&req.member_id).expect("valid"),
                    now_ms,
                );
                self.join_done(waiter, Ok(response));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(waiter, req, now_ms)
            }
            GroupState::Empty | GroupState::Dead => {
                unreachable!("a validated member implies a group with members")
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        waiter: WaiterId,
        req: JoinRequest,
        member_id: String,
        now_ms: i64,
    ) {
        let deadline = now_ms + self.config.new_member_join_timeout_ms;
        let group = self.groups.get_mut(&req.group_id).expect("checked");
        if group.state == GroupState::PreparingRebalance && group.generation_id == 0 {
            group.new_member_added = true;
        }
        if group.members.is_empty() {
            group.protocol_type = Some(req.protocol_type.clone());
        }
        if group.leader_id.is_none() {
            group.leader_id = Some(member_id.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        group.members.insert(
            member_id.clone(),
            Member {
                member_id,
                group_instance_id: req.group_instance_id,
                client_id: req.client_id,
                client_host: req.client_host,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                session_timeout_ms: req.session_timeout_ms,
                protocol_type: req.protocol_type,
                protocols: req.protocols,
                assignment: Bytes::new(),
                awaiting_join: Some(waiter),
                awaiting_sync: None,
                is_new: true,
                heartbeat_deadline_ms: deadline,
            },
        );
        self.maybe_prepare_rebalance(&req.group_id, now_ms);
    }

    fn update_member_and_rebalance(&mut self, waiter: WaiterId, req: JoinRequest, now_ms: i64) {
        let group = self.groups.get_mut(&req.group_id).expect("checked");
        let member = group.members.get_mut(&req.member_id).expect("validated");
        member.protocols = req.protocols;
        member.protocol_type = req.protocol_type;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        let previous = member.awaiting_join.replace(waiter);
        if let Some(previous) = previous {
            // The client gave up on its earlier JoinGroup; that answer goes nowhere useful.
            let e = GroupError::RebalanceInProgress {
                group_id: req.group_id.clone(),
            };
            self.join_done(previous, Err(e));
        }
        self.maybe_prepare_rebalance(&req.group_id, now_ms);
    }

    /// KIP-345: a known `group.instance.id` joined without a member id (a restarted static
    /// member). Its old member id is replaced, fencing whatever still uses it.
    fn replace_static_member(
        &mut self,
        waiter: WaiterId,
        req: JoinRequest,
        old_id: String,
        new_id: String,
        now_ms: i64,
    ) {
        let group_id = req.group_id.clone();
        let instance = req.group_instance_id.clone().expect("static");
        let group = self.groups.get_mut(&group_id).expect("checked");
        let mut member = group
            .members
            .remove(&old_id)
            .expect("static map is consistent");
        if group.pending_sync.remove(&old_id).is_some() {
            group.pending_sync.insert(new_id.clone(), ());
        }
        let fenced = || GroupError::FencedInstanceId {
            group_instance_id: instance.clone(),
            member_id: old_id.clone(),
            current_member_id: new_id.clone(),
        };
        let mut answers = Vec::new();
        if let Some(w) = member.awaiting_join.take() {
            answers.push(Effect::JoinDone {
                waiter: w,
                result: Err(fenced()),
            });
        }
        if let Some(w) = member.awaiting_sync.take() {
            answers.push(Effect::SyncDone {
                waiter: w,
                result: Err(fenced()),
            });
        }
        member.protocols.clone_from(&req.protocols);
        member.member_id = new_id.clone();
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.session_timeout_ms = req.session_timeout_ms;
        member.awaiting_join = Some(waiter);
        touch(&mut member, now_ms);
        group.members.insert(new_id.clone(), member);
        group.static_members.insert(instance, new_id.clone());
        if group.leader_id.as_deref() == Some(old_id.as_str()) {
            group.leader_id = Some(new_id.clone());
        }
        self.effects.extend(answers);
        let group = self.groups.get_mut(&group_id).expect("checked");
        match group.state {
            GroupState::Stable => {
                let unchanged =
                    group.protocol_name.as_deref() == Some(group.select_protocol().as_str());
                if unchanged {
                    // No rebalance: persist the new member id, answer with the current
                    // generation (the leader's answer lists members but skips assignment).
                    let member = group.members.get_mut(&new_id).expect("inserted");
                    member.awaiting_join = None;
                    let response = group.join_response(&new_id, true);
                    let record = group.to_record();
                    self.effects.push(Effect::Append(record));
                    self.join_done(waiter, Ok(response));
                } else {
                    self.maybe_prepare_rebalance(&group_id, now_ms);
                }
            }
            GroupState::CompletingRebalance => self.prepare_rebalance(&group_id, now_ms),
            GroupState::PreparingRebalance => self.try_complete_join(&group_id, now_ms),
            GroupState::Empty | GroupState::Dead => {
                unreachable!("a group with a static member has members")
            }
        }
    }

    fn maybe_prepare_rebalance(&mut self, group_id: &str, now_ms: i64) {
        let state = self.groups[group_id].state;
        if matches!(
            state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(group_id, now_ms);
        }
        self.try_complete_join(group_id, now_ms);
    }

    fn prepare_rebalance(&mut self, group_id: &str, now_ms: i64) {
        let initial_delay_ms = i64::from(self.config.initial_rebalance_delay_ms);
        let group = self.groups.get_mut(group_id).expect("exists");
        group.pending_sync.clear();
        group.sync_deadline_ms = None;
        if group.state == GroupState::CompletingRebalance {
            let mut answers = Vec::new();
            for m in group.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.awaiting_sync.take() {
                    answers.push(Effect::SyncDone {
                        waiter: w,
                        result: Err(GroupError::RebalanceInProgress {
                            group_id: group_id.to_owned(),
                        }),
                    });
                }
            }
            self.effects.extend(answers);
        }
        let group = self.groups.get_mut(group_id).expect("exists");
        let rebalance_timeout_ms = group
            .members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        group.join_timer = Some(if group.state == GroupState::Empty {
            JoinTimer {
                deadline_ms: now_ms + initial_delay_ms,
                initial_remaining_ms: Some((rebalance_timeout_ms - initial_delay_ms).max(0)),
            }
        } else {
            JoinTimer {
                deadline_ms: now_ms + rebalance_timeout_ms,
                initial_remaining_ms: None,
            }
        });
        group.transition(GroupState::PreparingRebalance, now_ms);
    }

    fn try_complete_join(&mut self, group_id: &str, now_ms: i64) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        let ready = group.state == GroupState::PreparingRebalance
            && group
                .join_timer
                .is_some_and(|t| t.initial_remaining_ms.is_none())
            && group.all_members_joined();
        if ready {
            self.complete_join(group_id, now_ms);
        }
    }

    /// The join phase ends: members that did not rejoin are removed, the generation moves
    /// on, and every member that did gets its answer.
    fn complete_join(&mut self, group_id: &str, now_ms: i64) {
        let group = self.groups.get_mut(group_id).expect("exists");
        assert_eq!(group.state, GroupState::PreparingRebalance);
        group.join_timer = None;
        group.new_member_added = false;
        let gone: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in gone {
            let m = group.members.remove(&id).expect("listed");
            if let Some(instance) = &m.group_instance_id {
                group.static_members.remove(instance);
            }
        }
        if group
            .leader_id
            .as_ref()
            .is_none_or(|l| !group.members.contains_key(l))
        {
            group.leader_id = group.members.keys().next().cloned();
        }
        group.generation_id += 1;
        if group.members.is_empty() {
            group.protocol_name = None;
            group.subscribed_topics = None;
            group.transition(GroupState::Empty, now_ms);
            let record = group.to_record();
            self.effects.push(Effect::Append(record));
            return;
        }
        group.protocol_name = Some(group.select_protocol());
        group.compute_subscribed_topics();
        group.transition(GroupState::CompletingRebalance, now_ms);
        group.pending_sync = group.members.keys().map(|id| (id.clone(), ())).collect();
        let rebalance_timeout_ms = group
            .members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        group.sync_deadline_ms = Some(now_ms + rebalance_timeout_ms);
        let mut answers = Vec::new();
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let response = group.join_response(&id, false);
            let m = group.members.get_mut(&id).expect("listed");
            m.is_new = false;
            touch(m, now_ms);
            let waiter = m
                .awaiting_join
                .take()
                .expect("all remaining members joined");
            answers.push(Effect::JoinDone {
                waiter,
                result: Ok(response),
            });
        }
        self.effects.extend(answers);
    }

    // ---------------------------------------------------------------- SyncGroup

    /// SyncGroup: the answer comes as an [`Effect::SyncDone`] for `waiter`, now or when
    /// the leader's assignment arrives.
    pub fn sync_group(&mut self, waiter: WaiterId, req: SyncRequest, now_ms: i64) {
        let result = self.sync_inner(waiter, &req, now_ms);
        if let Err(e) = result {
            self.effects.push(Effect::SyncDone {
                waiter,
                result: Err(e),
            });
        }
    }

    fn sync_inner(
        &mut self,
        waiter: WaiterId,
        req: &SyncRequest,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let max_bytes = self.config.member_metadata_max_bytes;
        let group =
            self.groups
                .get_mut(&req.group_id)
                .ok_or_else(|| GroupError::UnknownMemberId {
                    group_id: req.group_id.clone(),
                    member_id: req.member_id.clone(),
                })?;
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable {
                group_id: req.group_id.clone(),
            });
        }
        group.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
        if req.generation_id != group.generation_id {
            return Err(GroupError::IllegalGeneration {
                generation_id: req.generation_id,
                current_generation_id: group.generation_id,
            });
        }
        let inconsistent = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| group.protocol_type.as_ref() != Some(t))
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|n| group.protocol_name.as_ref() != Some(n));
        if inconsistent {
            return Err(GroupError::InconsistentGroupProtocol {
                group_id: req.group_id.clone(),
            });
        }
        match group.state {
            GroupState::Empty => Err(group.unknown_member(&req.member_id)),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress {
                group_id: req.group_id.clone(),
            }),
            GroupState::Stable => {
                group.pending_sync.remove(&req.member_id);
                let m = group.members.get_mut(&req.member_id).expect("validated");
                touch(m, now_ms);
                let response = SyncResponse {
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    assignment: group.members[&req.member_id].assignment.clone(),
                };
                self.effects.push(Effect::SyncDone {
                    waiter,
                    result: Ok(response),
                });
                Ok(())
            }
            GroupState::CompletingRebalance => {
                let is_leader = group.leader_id.as_deref() == Some(req.member_id.as_str());
                if is_leader {
                    for (_, a) in &req.assignments {
                        if a.len() > max_bytes {
                            return Err(GroupError::MemberMetadataTooLarge {
                                what: "assignment",
                                bytes: a.len(),
                                max_bytes,
                            });
                        }
                    }
                }
                group.pending_sync.remove(&req.member_id);
                let m = group.members.get_mut(&req.member_id).expect("validated");
                touch(m, now_ms);
                if let Some(previous) = m.awaiting_sync.replace(waiter) {
                    self.effects.push(Effect::SyncDone {
                        waiter: previous,
                        result: Err(GroupError::RebalanceInProgress {
                            group_id: req.group_id.clone(),
                        }),
                    });
                }
                if is_leader {
                    let group = self.groups.get_mut(&req.group_id).expect("exists");
                    for m in group.members.values_mut() {
                        m.assignment = req
                            .assignments
                            .iter()
                            .find(|(id, _)| *id == m.member_id)
                            .map(|(_, a)| a.clone())
                            .unwrap_or_default();
                    }
                    group.transition(GroupState::Stable, now_ms);
                    let record = group.to_record();
                    self.effects.push(Effect::Append(record));
                    let group = &self.groups[&req.group_id];
                    let mut answers = Vec::new();
                    for m in group.members.values() {
                        if let Some(w) = m.awaiting_sync {
                            answers.push(Effect::SyncDone {
                                waiter: w,
                                result: Ok(SyncResponse {
                                    protocol_type: group.protocol_type.clone(),
                                    protocol_name: group.protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                }),
                            });
                        }
                    }
                    let group = self.groups.get_mut(&req.group_id).expect("exists");
                    for m in group.members.values_mut() {
                        m.awaiting_sync = None;
                    }
                    self.effects.extend(answers);
                }
                Ok(())
            }
            GroupState::Dead => unreachable!("checked above"),
        }
    }

    // ---------------------------------------------------------------- Heartbeat, LeaveGroup

    /// Heartbeat: keeps a member's session alive and tells it whether to rejoin.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| GroupError::UnknownMemberId {
                group_id: group_id.to_owned(),
                member_id: member_id.to_owned(),
            })?;
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable {
                group_id: group_id.to_owned(),
            });
        }
        group.validate_member(member_id, group_instance_id)?;
        if generation_id != group.generation_id {
            return Err(GroupError::IllegalGeneration {
                generation_id,
                current_generation_id: group.generation_id,
            });
        }
        match group.state {
            GroupState::Empty => Err(group.unknown_member(member_id)),
            GroupState::PreparingRebalance => {
                touch(group.members.get_mut(member_id).expect("validated"), now_ms);
                Err(GroupError::RebalanceInProgress {
                    group_id: group_id.to_owned(),
                })
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                touch(group.members.get_mut(member_id).expect("validated"), now_ms);
                Ok(())
            }
            GroupState::Dead => unreachable!("checked above"),
        }
    }

    /// LeaveGroup (KIP-345 batch): each (member id, instance id) leaves; a member id of ""
    /// with an instance id removes that static member. The outer error is the group's.
    pub fn leave_group(
        &mut self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let Some(group) = self.groups.get(group_id) else {
            return Ok(members
                .iter()
                .map(|(m, _)| {
                    Err(GroupError::UnknownMemberId {
                        group_id: group_id.to_owned(),
                        member_id: m.clone(),
                    })
                })
                .collect());
        };
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable {
                group_id: group_id.to_owned(),
            });
        }
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance) in members {
            let group = self.groups.get_mut(group_id).expect("exists");
            let target = if member_id.is_empty() {
                match instance.as_ref().and_then(|i| group.static_members.get(i)) {
                    Some(id) => Ok(id.clone()),
                    None => Err(group.unknown_member(member_id)),
                }
            } else if instance.is_none() && group.pending_members.remove(member_id).is_some() {
                results.push(Ok(()));
                self.try_complete_join(group_id, now_ms);
                continue;
            } else {
                group
                    .validate_member(member_id, instance.as_deref())
                    .map(|()| member_id.clone())
            };
            match target {
                Ok(id) => {
                    self.remove_member_and_update_group(group_id, &id, now_ms);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        Ok(results)
    }

    fn remove_member_and_update_group(&mut self, group_id: &str, member_id: &str, now_ms: i64) {
        let group = self.groups.get_mut(group_id).expect("exists");
        let m = group.members.remove(member_id).expect("validated");
        group.pending_sync.remove(member_id);
        if let Some(instance) = &m.group_instance_id {
            group.static_members.remove(instance);
        }
        if group.leader_id.as_deref() == Some(member_id) {
            group.leader_id = group.members.keys().next().cloned();
        }
        let unknown = || GroupError::UnknownMemberId {
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
        };
        if let Some(w) = m.awaiting_join {
            self.effects.push(Effect::JoinDone {
                waiter: w,
                result: Err(unknown()),
            });
        }
        if let Some(w) = m.awaiting_sync {
            self.effects.push(Effect::SyncDone {
                waiter: w,
                result: Err(unknown()),
            });
        }
        match self.groups[group_id].state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(group_id, now_ms)
            }
            GroupState::PreparingRebalance => self.try_complete_join(group_id, now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    // ---------------------------------------------------------------- offsets

    /// OffsetCommit: validates the member and generation (Kafka's rules), stores each
    /// partition's offset and emits its record. The outer error applies to every partition.
    pub fn commit_offsets(
        &mut self,
        req: &CommitRequest,
        now_ms: i64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let managed =
            req.generation_id >= 0 || !req.member_id.is_empty() || req.group_instance_id.is_some();
        let group = match self.groups.get_mut(&req.group_id) {
            Some(g) => g,
            None if !managed => self
                .groups
                .entry(req.group_id.clone())
                .or_insert_with(|| Group::new(&req.group_id, now_ms)),
            None => {
                return Err(GroupError::IllegalGeneration {
                    generation_id: req.generation_id,
                    current_generation_id: -1,
                });
            }
        };
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable {
                group_id: req.group_id.clone(),
            });
        }
        if managed {
            group.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
            if req.generation_id != group.generation_id {
                return Err(GroupError::IllegalGeneration {
                    generation_id: req.generation_id,
                    current_generation_id: group.generation_id,
                });
            }
        } else if group.state != GroupState::Empty {
            return Err(group.unknown_member(&req.member_id));
        }
        match group.state {
            GroupState::Empty => {}
            GroupState::Stable | GroupState::PreparingRebalance => {
                touch(
                    group.members.get_mut(&req.member_id).expect("validated"),
                    now_ms,
                );
            }
            GroupState::CompletingRebalance => {
                return Err(GroupError::RebalanceInProgress {
                    group_id: req.group_id.clone(),
                });
            }
            GroupState::Dead => unreachable!("checked above"),
        }
        let mut results = Vec::with_capacity(req.offsets.len());
        for c in &req.offsets {
            let metadata = c.metadata.clone().unwrap_or_default();
            if metadata.len() > self.config.offset_metadata_max_bytes {
                results.push(Err(GroupError::OffsetMetadataTooLarge {
                    bytes: metadata.len(),
                    max_bytes: self.config.offset_metadata_max_bytes,
                }));
                continue;
            }
            let value = OffsetValue {
                offset: c.offset,
                leader_epoch: c.leader_epoch,
                metadata,
                commit_timestamp_ms: now_ms,
                expire_timestamp_ms: (req.retention_time_ms > 0)
                    .then(|| now_ms.saturating_add(req.retention_time_ms)),
            };
            let write_order = self.next_write_order;
            self.next_write_order += 1;
            group.offsets.insert(
                (c.topic.clone(), c.partition),
                StoredOffset {
                    value: value.clone(),
                    write_order,
                },
            );
            self.effects.push(Effect::Append(GroupRecord::Offset {
                group_id: req.group_id.clone(),
                topic: c.topic.clone(),
                partition: c.partition,
                value: Some(value),
            }));
            results.push(Ok(()));
        }
        Ok(results)
    }

    // ------------------------------------------------------- transactional offsets

    /// TxnOffsetCommit (Kafka's `handleTxnCommitOffsets` and `storeOffsets` with a producer
    /// id): checks the member like OffsetCommit when the request names one (KIP-447), holds
    /// each accepted offset as *pending* for `producer_id` — invisible to OffsetFetch until
    /// [`complete_txn`](Self::complete_txn) commits it — and emits their records as one
    /// [`Effect::AppendTxnOffsets`]. Unlike OffsetCommit, a request without member fields is
    /// accepted whatever the group's state (older producers cannot send them), and
    /// CompletingRebalance does not refuse it. A missing group is created Empty. The outer
    /// error applies to every partition.
    pub fn txn_commit_offsets(
        &mut self,
        req: &TxnCommitRequest,
        now_ms: i64,
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let managed =
            req.generation_id >= 0 || !req.member_id.is_empty() || req.group_instance_id.is_some();
        if managed {
            let fresh;
            let group = match self.groups.get(&req.group_id) {
                Some(g) => g,
                None => {
                    fresh = Group::new(&req.group_id, now_ms);
                    &fresh
                }
            };
            group.validate_member(&req.member_id, req.group_instance_id.as_deref())?;
            if req.generation_id != group.generation_id {
                return Err(GroupError::IllegalGeneration {
                    generation_id: req.generation_id,
                    current_generation_id: group.generation_id,
                });
            }
        }
        let write_order = self.next_write_order;
        let mut results = Vec::with_capacity(req.offsets.len());
        let mut accepted = Vec::new();
        for c in &req.offsets {
            let metadata = c.metadata.clone().unwrap_or_default();
            if metadata.len() > self.config.offset_metadata_max_bytes {
                results.push(Err(GroupError::OffsetMetadataTooLarge {
                    bytes: metadata.len(),
                    max_bytes: self.config.offset_metadata_max_bytes,
                }));
                continue;
            }
            accepted.push((
                (c.topic.clone(), c.partition),
                OffsetValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata,
                    commit_timestamp_ms: now_ms,
                    expire_timestamp_ms: None,
                },
            ));
            results.push(Ok(()));
        }
        if accepted.is_empty() {
            return Ok(results);
        }
        // One order for the whole batch: Kafka compares batch base offsets.
        self.next_write_order += 1;
        let group = self
            .groups
            .entry(req.group_id.clone())
            .or_insert_with(|| Group::new(&req.group_id, now_ms));
        let pending = group
            .pending_txn_offsets
            .entry(req.producer_id)
            .or_default();
        let mut records = Vec::with_capacity(accepted.len());
        for (tp, value) in accepted {
            records.push(GroupRecord::Offset {
                group_id: req.group_id.clone(),
                topic: tp.0.clone(),
                partition: tp.1,
                value: Some(value.clone()),
            });
            pending.insert(tp, StoredOffset { value, write_order });
        }
        self.open_txn_groups
            .entry(req.producer_id)
            .or_default()
            .insert(req.group_id.clone());
        self.effects.push(Effect::AppendTxnOffsets(TxnOffsetWrite {
            group_id: req.group_id.clone(),
            producer_id: req.producer_id,
            producer_epoch: req.producer_epoch,
            records,
            write_order,
        }));
        Ok(results)
    }

    /// The batch of `write` was not appended, or not replicated in time: its pending offsets
    /// are forgotten (Kafka's `failPendingTxnOffsetCommit`), unless a later write of the same
    /// producer replaced them. The producer retries or aborts.
    pub fn txn_offsets_not_written(&mut self, write: &TxnOffsetWrite) {
        let Some(group) = self.groups.get_mut(&write.group_id) else {
            return;
        };
        let Some(pending) = group.pending_txn_offsets.get_mut(&write.producer_id) else {
            return;
        };
        pending.retain(|_, s| s.write_order != write.write_order);
        if pending.is_empty() {
            group.pending_txn_offsets.remove(&write.producer_id);
        }
    }

    /// A COMMIT (`commit`) or ABORT marker of `producer_id` is in the partition's log (Kafka's
    /// `handleTxnCompletion`, and its loader on a control batch): every pending offset of
    /// that producer, in every group of this partition, becomes the committed offset on
    /// COMMIT — unless the partition's committed offset was written after it (a later plain
    /// OffsetCommit wins, by log order) — and is dropped on ABORT. Writes nothing: the
    /// marker itself is the record. Returns how many offsets became committed.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool) -> usize {
        let mut materialised = 0;
        let Some(groups) = self.open_txn_groups.remove(&producer_id) else {
            return 0;
        };
        for group_id in groups {
            let Some(group) = self.groups.get_mut(&group_id) else {
                continue;
            };
            let Some(pending) = group.pending_txn_offsets.remove(&producer_id) else {
                continue;
            };
            if !commit {
                continue;
            }
            for (tp, p) in pending {
                let newer = group
                    .offsets
                    .get(&tp)
                    .is_none_or(|current| current.write_order < p.write_order);
                if newer {
                    group.offsets.insert(tp, p);
                    materialised += 1;
                }
            }
        }
        materialised
    }

    /// OffsetFetch with `require_stable` (v7+, KIP-447): like
    /// [`fetch_offsets`](Self::fetch_offsets), but a partition with a pending transactional
    /// offset answers [`GroupError::UnstableOffsetCommit`] — the consumer retries until the
    /// transaction is decided.
    pub fn fetch_stable_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<((String, i32), StableOffset)> {
        let group = self.groups.get(group_id);
        self.fetch_offsets(group_id, partitions)
            .into_iter()
            .map(|(tp, committed)| {
                let result = if group.is_some_and(|g| g.has_pending_txn_offset(&tp)) {
                    Err(GroupError::UnstableOffsetCommit {
                        group_id: group_id.to_owned(),
                        topic: tp.0.clone(),
                        partition: tp.1,
                    })
                } else {
                    Ok(committed)
                };
                (tp, result)
            })
            .collect()
    }

    /// OffsetFetch: the committed offset of each asked partition (`None` if none), or of
    /// every partition with one when `partitions` is `None`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Vec<((String, i32), Option<CommittedOffset>)> {
        let group = self.groups.get(group_id);
        let committed = |tp: &(String, i32)| {
            group
                .and_then(|g| g.offsets.get(tp))
                .map(|s| &s.value)
                .map(|v| CommittedOffset {
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata.clone(),
                })
        };
        match partitions {
            Some(tps) => tps.iter().map(|tp| (tp.clone(), committed(tp))).collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .keys()
                        .map(|tp| (tp.clone(), committed(tp)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// OffsetDelete: removes committed offsets of partitions the group does not consume.
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        let not_found = || GroupError::GroupIdNotFound {
            group_id: group_id.to_owned(),
        };
        let group = self.groups.get_mut(group_id).ok_or_else(not_found)?;
        let deletable_by_topic = match group.state {
            GroupState::Dead => return Err(not_found()),
            GroupState::Empty => false,
            _ if group.protocol_type.as_deref() == Some("consumer") => true,
            _ => {
                return Err(GroupError::NonEmptyGroup {
                    group_id: group_id.to_owned(),
                });
            }
        };
        let mut results = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            if deletable_by_topic && group.is_subscribed_to(topic) {
                results.push(Err(GroupError::GroupSubscribedToTopic {
                    group_id: group_id.to_owned(),
                    topic: topic.clone(),
                }));
                continue;
            }
            let tp = (topic.clone(), *partition);
            let committed = group.offsets.remove(&tp).is_some();
            // A tombstone deletes the pending transactional offsets of the partition too
            // (Kafka writes one if either exists).
            let pending = group.remove_pending_txn_offsets(&tp);
            if committed || pending {
                self.effects.push(Effect::Append(GroupRecord::Offset {
                    group_id: group_id.to_owned(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                }));
            }
            results.push(Ok(()));
        }
        Ok(results)
    }

    /// DeleteGroups: an Empty group and its offsets are removed (tombstones emitted).
    pub fn delete_group(&mut self, group_id: &str, now_ms: i64) -> Result<(), GroupError> {
        let group = self
            .groups
            .get(group_id)
            .ok_or_else(|| GroupError::GroupIdNotFound {
                group_id: group_id.to_owned(),
            })?;
        match group.state {
            GroupState::Dead => Err(GroupError::GroupIdNotFound {
                group_id: group_id.to_owned(),
            }),
            GroupState::Empty => {
                self.remove_group(group_id, now_ms);
                Ok(())
            }
            _ => Err(GroupError::NonEmptyGroup {
                group_id: group_id.to_owned(),
            }),
        }
    }

    /// Tombstones for every offset and the group, then the group is gone (Dead).
    fn remove_group(&mut self, group_id: &str, now_ms: i64) {
        let mut group = self.groups.remove(group_id).expect("exists");
        assert!(group.members.is_empty(), "only an Empty group is removed");
        // Pending transactional offsets go with the group. Partitions that have only those
        // get a tombstone too (Kafka's `deleteAllOffsets`): once compaction has removed the
        // group's tombstone, no transactional record may bring the offset back on a reload.
        let pending_only: BTreeSet<(String, i32)> = group
            .pending_txn_offsets
            .values()
            .flat_map(|p| p.keys())
            .filter(|tp| !group.offsets.contains_key(*tp))
            .cloned()
            .collect();
        for (topic, partition) in group.offsets.keys().chain(pending_only.iter()) {
            self.effects.push(Effect::Append(GroupRecord::Offset {
                group_id: group_id.to_owned(),
                topic: topic.clone(),
                partition: *partition,
                value: None,
            }));
        }
        group.transition(GroupState::Dead, now_ms);
        self.effects.push(Effect::Append(GroupRecord::Group {
            group_id: group_id.to_owned(),
            value: None,
        }));
        // Waiters of pending members get nothing: they have no parked request.
    }

    // ---------------------------------------------------------------- queries

    /// DescribeGroups for one group (`None`: no such group, Kafka shows it as Dead).
    pub fn describe_group(&self, group_id: &str) -> Option<GroupDescription> {
        let g = self.groups.get(group_id)?;
        let stable = g.state == GroupState::Stable;
        let protocol = g.protocol_name.clone().unwrap_or_default();
        Some(GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable {
                protocol.clone()
            } else {
                String::new()
            },
            generation_id: g.generation_id,
            members: g
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// ListGroups: every group of this partition.
    pub fn list_groups(&self) -> Vec<GroupListing> {
        self.groups
            .values()
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect()
    }

    /// The group's state and generation, if it exists.
    pub fn group_state(&self, group_id: &str) -> Option<(GroupState, i32)> {
        self.groups
            .get(group_id)
            .map(|g| (g.state, g.generation_id))
    }

    // ---------------------------------------------------------------- time

    /// Fires every timer due at `now_ms`: the end of a join phase (rebalance timeout or
    /// initial delay), session expiry of members and of KIP-394 pending ids, and offset
    /// expiry (every `offsets.retention.check.interval.ms`).
    pub fn tick(&mut self, now_ms: i64) {
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in &ids {
            self.expire_pending_members(id, now_ms);
            self.expire_members(id, now_ms);
            self.fire_join_timer(id, now_ms);
            self.expire_pending_sync(id, now_ms);
        }
        if now_ms >= self.next_offset_expiry_check_ms {
            self.next_offset_expiry_check_ms =
                now_ms + self.config.offsets_retention_check_interval_ms;
            for id in &ids {
                self.expire_offsets(id, now_ms);
            }
        }
    }

    fn expire_pending_members(&mut self, group_id: &str, now_ms: i64) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let before = group.pending_members.len();
        group
            .pending_members
            .retain(|_, deadline| *deadline > now_ms);
        if group.pending_members.len() != before {
            self.try_complete_join(group_id, now_ms);
        }
    }

    fn expire_members(&mut self, group_id: &str, now_ms: i64) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let mut expired = Vec::new();
        for m in group.members.values_mut() {
            if m.heartbeat_deadline_ms > now_ms {
                continue;
            }
            // Members waiting on an answer satisfy their heartbeats, unless they are new
            // (a new member's wait is bounded by the new-member join timeout).
            let waiting = (m.awaiting_join.is_some() && !m.is_new) || m.awaiting_sync.is_some();
            if waiting {
                touch(m, now_ms);
            } else {
                expired.push(m.member_id.clone());
            }
        }
        for id in expired {
            if self.groups[group_id].members.contains_key(&id) {
                self.remove_member_and_update_group(group_id, &id, now_ms);
            }
        }
    }

    fn expire_pending_sync(&mut self, group_id: &str, now_ms: i64) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let due = group.sync_deadline_ms.is_some_and(|d| d <= now_ms);
        if !due {
            return;
        }
        group.sync_deadline_ms = None;
        let missing: Vec<String> = std::mem::take(&mut group.pending_sync)
            .into_keys()
            .collect();
        if !matches!(
            group.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) {
            return;
        }
        for id in missing {
            if self.groups[group_id].members.contains_key(&id) {
                self.remove_member_and_update_group(group_id, &id, now_ms);
            }
        }
    }

    fn fire_join_timer(&mut self, group_id: &str, now_ms: i64) {
        let initial_delay_ms = i64::from(self.config.initial_rebalance_delay_ms);
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let Some(timer) = group.join_timer else {
            return;
        };
        if group.state != GroupState::PreparingRebalance || timer.deadline_ms > now_ms {
            return;
        }
        match timer.initial_remaining_ms {
            Some(remaining) if group.new_member_added && remaining > 0 && initial_delay_ms > 0 => {
                group.new_member_added = false;
                let delay = initial_delay_ms.min(remaining);
                group.join_timer = Some(JoinTimer {
                    deadline_ms: now_ms + delay,
                    initial_remaining_ms: Some((remaining - delay).max(0)),
                });
            }
            _ => self.complete_join(group_id, now_ms),
        }
    }

    fn expire_offsets(&mut self, group_id: &str, now_ms: i64) {
        let retention_ms = self.config.offsets_retention_ms;
        let group = self.groups.get_mut(group_id).expect("exists");
        // Retention counts from when the group became Empty, or (standalone groups and
        // Stable consumer groups, for topics no member subscribes to) from the commit.
        let empty_since: Option<Option<i64>> = match (&group.protocol_type, group.state) {
            (Some(_), GroupState::Empty) => Some(Some(group.state_since_ms)),
            (None, _) => Some(None),
            (Some(t), GroupState::Stable)
                if t == "consumer" && group.subscribed_topics.is_some() =>
            {
                Some(None)
            }
            _ => None,
        };
        let Some(empty_since) = empty_since else {
            return;
        };
        let base = |v: &OffsetValue| empty_since.unwrap_or(v.commit_timestamp_ms);
        let subscribed = if group.state == GroupState::Stable {
            group.subscribed_topics.clone().unwrap_or_default()
        } else {
            Vec::new()
        };
        let expired: Vec<(String, i32)> = group
            .offsets
            .iter()
            .map(|(tp, s)| (tp, &s.value))
            .filter(|(tp, v)| {
                // An offset with a transaction still open on it stays (Kafka).
                !subscribed.contains(&tp.0)
                    && !group.has_pending_txn_offset(tp)
                    && match v.expire_timestamp_ms {
                        Some(expire) => now_ms >= expire,
                        None => now_ms - base(v) >= retention_ms,
                    }
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in &expired {
            group.offsets.remove(tp);
            self.effects.push(Effect::Append(GroupRecord::Offset {
                group_id: group_id.to_owned(),
                topic: tp.0.clone(),
                partition: tp.1,
                value: None,
            }));
        }
        let group = &self.groups[group_id];
        if group.state == GroupState::Empty
            && group.offsets.is_empty()
            && group.pending_txn_offsets.is_empty()
            && group.pending_members.is_empty()
        {
            self.remove_group(group_id, now_ms);
        }
    }

    // ---------------------------------------------------------------- loading

    /// Applies one record read back from the partition, in log order.
    pub fn replay(&mut self, record: GroupRecord, now_ms: i64) {
        match record {
            GroupRecord::Offset {
                group_id,
                topic,
                partition,
                value,
            } => {
                let stored = value.map(|v| self.stored(v));
                let group = self
                    .groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(&group_id, now_ms));
                let tp = (topic, partition);
                match stored {
                    Some(s) => {
                        group.offsets.insert(tp, s);
                    }
                    None => {
                        group.offsets.remove(&tp);
                        group.remove_pending_txn_offsets(&tp);
                    }
                }
            }
            GroupRecord::Group {
                group_id,
                value: None,
            } => {
                self.groups.remove(&group_id);
            }
            GroupRecord::Group {
                group_id,
                value: Some(v),
            } => {
                let group = self
                    .groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(&group_id, now_ms));
                let protocol = v.protocol_name.clone().unwrap_or_default();
                group.generation_id = v.generation_id;
                group.protocol_type =
                    (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
                group.protocol_name = v.protocol_name.clone();
                group.leader_id = v.leader_id.clone();
                group.state_since_ms = if v.current_state_timestamp_ms >= 0 {
                    v.current_state_timestamp_ms
                } else {
                    now_ms
                };
                group.members.clear();
                group.static_members.clear();
                for m in v.members {
                    if let Some(i) = &m.group_instance_id {
                        group.static_members.insert(i.clone(), m.member_id.clone());
                    }
                    group.members.insert(
                        m.member_id.clone(),
                        Member {
                            member_id: m.member_id,
                            group_instance_id: m.group_instance_id,
                            client_id: m.client_id,
                            client_host: m.client_host,
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            session_timeout_ms: m.session_timeout_ms,
                            protocol_type: v.protocol_type.clone(),
                            protocols: vec![(protocol.clone(), m.subscription)],
                            assignment: m.assignment,
                            awaiting_join: None,
                            awaiting_sync: None,
                            is_new: false,
                            heartbeat_deadline_ms: now_ms,
                        },
                    );
                }
                group.state = if group.members.is_empty() {
                    GroupState::Empty
                } else {
                    GroupState::Stable
                };
                if group
                    .leader_id
                    .as_ref()
                    .is_some_and(|l| !group.members.contains_key(l))
                {
                    group.leader_id = group.members.keys().next().cloned();
                }
                group.compute_subscribed_topics();
            }
        }
    }

    /// Applies one record of a transactional batch of `producer_id` read back from the
    /// partition, in log order: an offset is held pending until the producer's marker is
    /// replayed with [`complete_txn`](Self::complete_txn) (or arrives later through the
    /// host); a tombstone drops that producer's pending offset (Kafka's loader). Other
    /// records are replayed as usual.
    pub fn replay_txn_offset(&mut self, producer_id: i64, record: GroupRecord, now_ms: i64) {
        let GroupRecord::Offset {
            group_id,
            topic,
            partition,
            value,
        } = record
        else {
            return self.replay(record, now_ms);
        };
        let stored = value.map(|v| self.stored(v));
        let group = self
            .groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(&group_id, now_ms));
        let tp = (topic, partition);
        match stored {
            Some(s) => {
                group
                    .pending_txn_offsets
                    .entry(producer_id)
                    .or_default()
                    .insert(tp, s);
                self.open_txn_groups
                    .entry(producer_id)
                    .or_default()
                    .insert(group_id);
            }
            None => {
                if let Some(pending) = group.pending_txn_offsets.get_mut(&producer_id) {
                    pending.remove(&tp);
                    if pending.is_empty() {
                        group.pending_txn_offsets.remove(&producer_id);
                    }
                }
            }
        }
    }

    /// After the last [`replay`](Self::replay): every reloaded member's session starts now.
    pub fn finish_loading(&mut self, now_ms: i64) {
        for g in self.groups.values_mut() {
            for m in g.members.values_mut() {
                touch(m, now_ms);
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn group_record_for_tests(&self, group_id: &str) -> GroupRecord {
        self.groups[group_id].to_record()
    }

    /// Asserts the invariants listed in the module docs (for tests and debug builds).
    pub fn check_invariants(&self) {
        for g in self.groups.values() {
            assert_ne!(g.state, GroupState::Dead, "dead groups are removed");
            // Everyone may leave during the initial delay: PreparingRebalance with no
            // members until the timer fires, as in Kafka.
            assert!(
                if g.members.is_empty() {
                    matches!(g.state, GroupState::Empty | GroupState::PreparingRebalance)
                } else {
                    g.state != GroupState::Empty
                },
                "group {}: members {:?} in state {:?}",
                g.group_id,
                g.members.keys().collect::<Vec<_>>(),
                g.state
            );
            if !g.members.is_empty() {
                let leader = g
                    .leader_id
                    .as_ref()
                    .expect("a group with members has a leader");
                assert!(
                    g.members.contains_key(leader),
                    "leader {leader} is a member"
                );
            }
            for (instance, id) in &g.static_members {
                assert_eq!(
                    g.members[id].group_instance_id.as_deref(),
                    Some(instance.as_str())
                );
            }
            for m in g.members.values() {
                if m.awaiting_join.is_some() {
                    assert_eq!(g.state, GroupState::PreparingRebalance);
                }
                if m.awaiting_sync.is_some() {
                    assert_eq!(g.state, GroupState::CompletingRebalance);
                }
                if let Some(i) = &m.group_instance_id {
                    assert_eq!(g.static_members.get(i), Some(&m.member_id));
                }
            }
            if matches!(
                g.state,
                GroupState::CompletingRebalance | GroupState::Stable
            ) {
                assert!(g.protocol_name.is_some());
            }
            for id in g.pending_sync.keys() {
                assert!(g.members.contains_key(id), "pending sync {id} is a member");
            }
            assert_eq!(
                g.state == GroupState::PreparingRebalance,
                g.join_timer.is_some()
            );
            for (producer_id, pending) in &g.pending_txn_offsets {
                assert!(!pending.is_empty(), "no empty pending map");
                assert!(
                    self.open_txn_groups
                        .get(producer_id)
                        .is_some_and(|gs| gs.contains(&g.group_id)),
                    "group {} with pending offsets of producer {producer_id} is indexed",
                    g.group_id
                );
                for s in pending.values().chain(g.offsets.values()) {
                    assert!(s.write_order < self.next_write_order);
                }
            }
        }
    }
}

/// Completes a member's heartbeat: its session restarts now.
fn touch(m: &mut Member, now_ms: i64) {
    m.heartbeat_deadline_ms = now_ms + i64::from(m.session_timeout_ms);
}
