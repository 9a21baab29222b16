//! Controller decisions: validate a request against the current [`ClusterState`] and
//! return the records that carry it out. Pure functions (no I/O, no clock); the caller
//! commits the records to the metadata log and only then applies them, in order.
//!
//! ## Admin requests
//! [`create_topic`], [`create_partitions`] and [`delete_topic`] refuse with a
//! [`ControllerError`]. New replicas go to *unfenced* brokers only; when brokers declare
//! racks, each partition's replicas spread across racks (Kafka's rack-aware assignment:
//! brokers ordered by alternating racks, then round-robin; a broker without a rack counts
//! as one more rack). Leaders spread round-robin over that order from `start_index`.
//! [`default_replication_factor`] and [`default_min_insync_replicas`] give the defaults for
//! a request that leaves them to the broker.
//!
//! ## Replication (KRaft's `ReplicationControlManager`, with KIP-966's ELR)
//! Each partition has `replicas` (fixed here), an ISR (in-sync replicas, within
//! `replicas`), an ELR (eligible leader replicas: outside the ISR, known to hold every
//! committed record) and a leader that is either -1 (offline) or an unfenced ISR member.
//! `min_insync` below is [`min_insync`]: the topic's `min.insync.replicas` config, else
//! [`default_min_insync_replicas`] of its replication factor. The ELR rests on one promise
//! of the brokers: **a leader does not advance its high watermark while its ISR has fewer
//! than `min_insync` members**, so a replica that leaves the ISR then still holds every
//! committed record. The functions below refuse with a [`ReplicationError`] and emit
//! [`MetadataRecord::PartitionChange`]s under these rules:
//! - **Epochs.** Every change bumps `partition_epoch` by one; a change of leader (to or
//!   from -1 included) bumps `leader_epoch` by one. Neither ever decreases.
//! - **Election.** A new leader is the first broker in `replicas` order that is in the
//!   (new) ISR and unfenced; if there is none, the first unfenced ELR member in replica
//!   order, which becomes the ISR alone and leaves the ELR (the previous ISR members, which
//!   hold every committed record too, join the ELR); if there is none either the leader
//!   becomes -1. A broker outside the ISR and ELR is never elected (no unclean election).
//! - **ELR.** Disjoint from the ISR, in replica order, and empty whenever the ISR has
//!   `min_insync` members or more (the high watermark may advance again, so former members
//!   would become stale): every change is normalised so. [`clear_stale_elr`] gives the
//!   changes that go with lowering `min.insync.replicas`.
//! - **ISR shrink on fencing.** A fenced broker leaves every ISR except as its last member
//!   (Kafka keeps it, so it can lead again), and joins the ELR where the ISR is left below
//!   `min_insync`.
//! - **Lost logs.** A broker that registers reporting a partition's log missing (a
//!   replaced disk) leaves its ISR even as the last member, and its ELR: it holds nothing
//!   and is not elected there until the leader adds it back to the ISR after it
//!   re-replicated. The ISR is empty only then, with leader -1. A partition left with
//!   leader -1 and an empty ISR and ELR stays offline: no replica is known to hold its
//!   committed records, and unclean election is not implemented.
//! - [`fence_broker`] (session expired, controlled shutdown): `FenceBroker` plus the ISR
//!   shrinks, ELR joins and leader moves above.
//! - [`unfence_broker`]: `UnfenceBroker`; the broker becomes leader of every offline
//!   partition whose ISR or ELR contains it.
//! - [`register_broker_with_lost`] ([`register_broker`] reports no lost log):
//!   `RegisterBroker` (which leaves the broker unfenced). A new incarnation means the broker
//!   restarted: where it lost the log, see above; elsewhere it leaves ISRs and leaderships
//!   exactly as when fenced, except where it is the ISR's only member, where it becomes (or
//!   stays) leader with a bumped `leader_epoch` so followers truncate; and it leads offline
//!   partitions whose ELR contains it.
//! - [`alter_partition`]: the leader's ISR shrink/expand (AlterPartition), checked against
//!   its leader epoch and the partition epoch it last saw. New ISR members leave the ELR.
//! - [`elect_preferred_leaders`] (`auto.leader.rebalance.enable`): moves leadership back to
//!   `replicas[0]` where it is unfenced and in the ISR, and elects a leader for offline
//!   partitions that have an unfenced ISR or ELR member; [`elect_preferred_leader`] does
//!   the same for one partition of an ElectLeaders request, with Kafka's per-partition
//!   refusals ([`ElectionError`]).
//!
//! ## Reassignment (KIP-455)
//! [`alter_partition_reassignment`] starts, replaces or cancels moving a partition to
//! *target* replicas; [`complete_reassignments`] finishes the ones that may finish. Both
//! emit [`MetadataRecord::PartitionReassignment`]s, which replace the whole partition:
//! - While in progress, `replicas` is the target followed by the original replicas not in
//!   it; `adding_replicas` = target − original, `removing_replicas` = original − target.
//!   New replicas copy the leader's log as followers; the leader adds them to the ISR
//!   through [`alter_partition`] once caught up.
//! - It completes once every adding replica is in the ISR: replicas = target, ISR ∩
//!   target, ELR ∩ target; where the leader is removed, the first unfenced in-sync target
//!   replica leads (a clean election). It never leaves a partition without an in-sync
//!   replica, or without a leader while it has one: it waits instead.
//! - Cancelling returns to the original replicas (adding replicas leave the ISR and ELR),
//!   under the same rule.
//! - The topic's replication factor (for its default `min.insync.replicas`) is partition
//!   0's original replica count while a reassignment is in progress.
//!
//! Every function returns records that apply, in order, to the state it was given.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::records::{MetadataRecord, PartitionRecord};
use crate::state::{ClusterState, TopicInfo};

/// Longest legal topic name (Kafka's limit, so that `<name>-<partition>` directory names
/// stay under common file-name limits).
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// Most partitions one topic may have; bounds the work one CreateTopics can ask for.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;
/// The `leader` of a partition that has none (offline).
pub const NO_LEADER: i32 = -1;

/// Why the controller refused a request. The broker maps each to a Kafka error code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControllerError {
    #[error("topic '{name}' already exists")]
    TopicAlreadyExists { name: String },
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopic { name: String, reason: &'static str },
    #[error("invalid number of partitions {partitions}: {reason}")]
    InvalidPartitions { partitions: i32, reason: String },
    #[error("replication factor {replication_factor} is invalid: {reason}")]
    InvalidReplicationFactor {
        replication_factor: i32,
        reason: String,
    },
    #[error("topic '{name}' does not exist")]
    UnknownTopic { name: String },
}

/// Why the controller refused a replication request (broker registration, fencing,
/// AlterPartition). Separate from [`ControllerError`] so that code matching that enum
/// exhaustively keeps compiling. The Kafka error code each maps to is named on the variant.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplicationError {
    /// Kafka: INVALID_REQUEST (broker ids are non-negative; -1 means "no leader").
    #[error("invalid broker id {broker_id}: broker ids must be 0 or more")]
    InvalidBrokerId { broker_id: i32 },
    /// Kafka: BROKER_ID_NOT_REGISTERED.
    #[error("broker {broker_id} is not registered")]
    UnknownBroker { broker_id: i32 },
    /// Kafka: UNKNOWN_TOPIC_ID.
    #[error("no topic has id {topic_id}")]
    UnknownTopicId { topic_id: Uuid },
    /// Kafka: UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic {topic_id} has no partition {partition}")]
    UnknownPartition { topic_id: Uuid, partition: i32 },
    /// Kafka: FENCED_LEADER_EPOCH. The requester's leader epoch is not the partition's:
    /// leadership moved (or the requester is ahead of this state) since it last looked.
    #[error(
        "leader epoch {requested} does not match the partition's current leader epoch {current}"
    )]
    FencedLeaderEpoch { requested: i32, current: i32 },
    /// Kafka: NOT_LEADER_OR_FOLLOWER (Kafka's controller answers INVALID_REQUEST).
    #[error("broker {broker_id} is not the leader of the partition (the leader is {leader})")]
    NotLeader { broker_id: i32, leader: i32 },
    /// Kafka: INVALID_UPDATE_VERSION. The proposal was made against an older version of the
    /// partition; the leader must refresh its metadata and propose again.
    #[error(
        "partition epoch {requested} does not match the current partition epoch {current}: \
         the proposal is stale"
    )]
    InvalidUpdateVersion { requested: i32, current: i32 },
    /// Kafka: INVALID_REQUEST. The proposed ISR is empty, repeats a broker, names a broker
    /// that is not a replica, or leaves out the leader.
    #[error("invalid ISR {isr:?}: {reason}")]
    InvalidIsr { isr: Vec<i32>, reason: String },
    /// Kafka: INELIGIBLE_REPLICA. The proposed ISR adds a fenced or unregistered broker.
    #[error("broker {broker_id} may not join the ISR: it is fenced or not registered")]
    IneligibleReplica { broker_id: i32 },
}

/// Checks a topic name the way Kafka does: 1–249 characters of `[a-zA-Z0-9._-]`, not `.`
/// or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |reason| {
        Err(ControllerError::InvalidTopic {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("the name is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return invalid("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// The unfenced brokers in Kafka's rack-alternating order: racks sorted by name (a broker
/// without a rack forms one more rack, ordered first), brokers by id within a rack, then
/// one broker from each rack in turn. Returns the brokers and each one's rack.
fn rack_alternated(state: &ClusterState) -> (Vec<i32>, BTreeMap<i32, Option<&str>>) {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    let mut rack_of = BTreeMap::new();
    for b in state.unfenced_brokers() {
        by_rack
            .entry(b.rack.as_deref())
            .or_default()
            .push(b.broker_id);
        rack_of.insert(b.broker_id, b.rack.as_deref());
    }
    let mut out = Vec::with_capacity(rack_of.len());
    for round in 0.. {
        let before = out.len();
        out.extend(by_rack.values().filter_map(|brokers| brokers.get(round)));
        if out.len() == before {
            break;
        }
    }
    (out, rack_of)
}

/// Places `partitions` new partitions numbered from `first_partition` on the unfenced
/// brokers (Kafka's `assignReplicasToBrokersRackAware` with a fixed start index): the
/// leader of partition `p` is broker `(p + start_index) % n` of the rack-alternated list,
/// so leaders spread round-robin; each further replica is taken at a shift from it that
/// grows every `n` partitions, skipping a broker whose rack already holds a replica while
/// some rack holds none, and a broker that already holds one.
fn assign(
    state: &ClusterState,
    first_partition: i32,
    partitions: i32,
    replication_factor: i32,
    start_index: usize,
) -> Result<Vec<PartitionRecord>, ControllerError> {
    let (brokers, rack_of) = rack_alternated(state);
    let n = brokers.len();
    if replication_factor < 1 || replication_factor as usize > n {
        return Err(ControllerError::InvalidReplicationFactor {
            replication_factor,
            reason: format!("it must be between 1 and the number of unfenced brokers ({n})"),
        });
    }
    let racks = rack_of.values().collect::<BTreeSet<_>>().len();
    let start = start_index % n;
    let mut shift = start;
    let mut out = Vec::with_capacity(partitions as usize);
    for p in first_partition..first_partition + partitions {
        let p_index = p as usize;
        if p_index > 0 && p_index % n == 0 {
            shift += 1;
        }
        let first = (p_index + start) % n;
        let mut replicas = vec![brokers[first]];
        let mut racks_used = BTreeSet::from([rack_of[&brokers[first]]]);
        let mut k = 0;
        while replicas.len() < replication_factor as usize {
            let offset = 1 + (shift * racks + k) % (n - 1);
            let broker = brokers[(first + offset) % n];
            let rack = rack_of[&broker];
            k += 1;
            if racks_used.contains(&rack) && racks_used.len() < racks {
                continue;
            }
            if replicas.contains(&broker) {
                continue;
            }
            replicas.push(broker);
            racks_used.insert(rack);
        }
        out.push(PartitionRecord {
            partition: p,
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            elr: Vec::new(),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        });
    }
    Ok(out)
}

/// The replication factor of a topic created without one (Kafka's
/// `default.replication.factor`, chosen for the cluster's size): 3, or the number of
/// unfenced brokers if fewer, and at least 1 (so that a single-node cluster, or one whose
/// brokers are all fenced, still names a valid factor; creation then fails on placement if
/// no broker is unfenced).
pub fn default_replication_factor(state: &ClusterState) -> i32 {
    let unfenced = state.unfenced_brokers().count();
    i32::try_from(unfenced).unwrap_or(i32::MAX).clamp(1, 3)
}

/// Producer ids a broker takes from the controller at a time (Kafka's
/// `AllocateProducerIds` hands out 1000).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// The record that gives `broker_id` the next block of [`PRODUCER_ID_BLOCK_SIZE`]
/// producer ids (KIP-730). Refused for a broker that is not registered or is fenced.
pub fn allocate_producer_ids(
    state: &ClusterState,
    broker_id: i32,
) -> Result<Vec<MetadataRecord>, ReplicationError> {
    match state.broker(broker_id) {
        None => Err(ReplicationError::UnknownBroker { broker_id }),
        Some(b) if b.fenced => Err(ReplicationError::IneligibleReplica { broker_id }),
        Some(_) => Ok(vec![MetadataRecord::ProducerIds {
            broker_id,
            first_id: state.next_producer_id(),
            size: PRODUCER_ID_BLOCK_SIZE,
        }]),
    }
}

/// The `min.insync.replicas` that goes with replication factor `replication_factor`: 2
/// from 3 replicas up (one replica may be down while `acks=all` writes still reach two),
/// 1 below (a partition with one or two replicas could not take writes with one down).
pub fn default_min_insync_replicas(replication_factor: i32) -> i32 {
    if replication_factor >= 3 { 2 } else { 1 }
}

/// The records that create topic `name`. `configs` must already be validated by the
/// caller (the broker knows the log's config keys).
pub fn create_topic(
    state: &ClusterState,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
    topic_id: Uuid,
    start_index: usize,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    validate_topic_name(name)?;
    if state.topic(name).is_some() {
        return Err(ControllerError::TopicAlreadyExists {
            name: name.to_owned(),
        });
    }
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(ControllerError::InvalidPartitions {
            partitions,
            reason: format!("it must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
        });
    }
    let partitions = assign(state, 0, partitions, replication_factor, start_index)?;
    Ok(vec![MetadataRecord::CreateTopic {
        name: name.to_owned(),
        topic_id,
        partitions,
        configs,
    }])
}

/// The records that grow topic `name` to `new_total` partitions.
pub fn create_partitions(
    state: &ClusterState,
    name: &str,
    new_total: i32,
    start_index: usize,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = state
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic {
            name: name.to_owned(),
        })?;
    let current = topic.partitions.len() as i32;
    if new_total <= current || new_total > PARTITIONS_PER_TOPIC_MAX {
        return Err(ControllerError::InvalidPartitions {
            partitions: new_total,
            reason: format!(
                "topic '{name}' has {current}; the new count must be larger and at most {PARTITIONS_PER_TOPIC_MAX}"
            ),
        });
    }
    let replication_factor = replication_factor(topic);
    let partitions = assign(
        state,
        current,
        new_total - current,
        replication_factor,
        start_index,
    )?;
    Ok(vec![MetadataRecord::CreatePartitions {
        topic_id: topic.topic_id,
        partitions,
    }])
}

/// The records that delete topic `name`.
pub fn delete_topic(
    state: &ClusterState,
    name: &str,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = state
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic {
            name: name.to_owned(),
        })?;
    Ok(vec![MetadataRecord::DeleteTopic {
        topic_id: topic.topic_id,
    }])
}

/// The registered broker `broker_id`, or [`ReplicationError::UnknownBroker`].
fn known_broker(
    state: &ClusterState,
    broker_id: i32,
) -> Result<&crate::state::BrokerInfo, ReplicationError> {
    state
        .broker(broker_id)
        .ok_or(ReplicationError::UnknownBroker { broker_id })
}

/// The `min.insync.replicas` in force for `configs` on a topic of `replication_factor`
/// replicas: the config if it is set to a whole number of at least 1, else
/// [`default_min_insync_replicas`].
fn min_insync_of(configs: &BTreeMap<String, String>, replication_factor: i32) -> i32 {
    configs
        .get("min.insync.replicas")
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|&m| m >= 1)
        .unwrap_or_else(|| default_min_insync_replicas(replication_factor))
}

/// The `min.insync.replicas` of `topic` that the controller's ELR rules rely on: the topic's
/// `min.insync.replicas` config if it is set to a whole number of at least 1, else
/// [`default_min_insync_replicas`] of its replication factor. A leader must not advance its
/// high watermark while its ISR has fewer members than this, or ELR members could miss
/// committed records: brokers must use this same value.
pub fn min_insync(topic: &TopicInfo) -> i32 {
    min_insync_of(&topic.configs, replication_factor(topic))
}

/// A topic's replication factor: the replica count of its first partition, without the
/// replicas a reassignment in progress adds (so that starting or cancelling a
/// reassignment leaves the topic's default `min.insync.replicas` as it is; completing one
/// that changes partition 0's replica count may change it, see
/// [`complete_reassignments`]).
pub fn replication_factor(topic: &TopicInfo) -> i32 {
    topic
        .partitions
        .first()
        .map_or(1, |p| p.replicas.len() - p.adding_replicas.len()) as i32
}

/// The first broker in `replicas` order that is in `among` and `eligible`, else
/// [`NO_LEADER`].
fn elect(replicas: &[i32], among: &[i32], eligible: impl Fn(i32) -> bool) -> i32 {
    replicas
        .iter()
        .copied()
        .find(|r| among.contains(r) && eligible(*r))
        .unwrap_or(NO_LEADER)
}

/// A partition's next leadership, before [`change`] normalises the ELR.
struct Next {
    leader: i32,
    isr: Vec<i32>,
    elr: Vec<i32>,
    /// Bump the leader epoch even if the leader stays (a restarted sole ISR member).
    bump_leader_epoch: bool,
}

impl Next {
    /// The partition as it is.
    fn unchanged(p: &PartitionRecord) -> Next {
        Next {
            leader: p.leader,
            isr: p.isr.clone(),
            elr: p.elr.clone(),
            bump_leader_epoch: false,
        }
    }
}

/// Leader election over a partition's next `isr` and `elr`: the first `eligible` ISR member
/// in replica order (Kafka's clean election); else the first `eligible` ELR member, which
/// becomes the ISR alone and leaves the ELR, while the previous ISR members (which hold
/// every committed record too) join the ELR; else [`NO_LEADER`] with `isr` and `elr` as
/// given.
fn elect_leader(
    p: &PartitionRecord,
    isr: Vec<i32>,
    elr: Vec<i32>,
    eligible: impl Fn(i32) -> bool,
) -> Next {
    let leader = elect(&p.replicas, &isr, &eligible);
    if leader != NO_LEADER {
        return Next {
            leader,
            isr,
            elr,
            bump_leader_epoch: false,
        };
    }
    let leader = elect(&p.replicas, &elr, &eligible);
    if leader != NO_LEADER {
        let elr = elr
            .into_iter()
            .filter(|&r| r != leader)
            .chain(isr)
            .collect();
        return Next {
            leader,
            isr: vec![leader],
            elr,
            bump_leader_epoch: false,
        };
    }
    Next {
        leader: NO_LEADER,
        isr,
        elr,
        bump_leader_epoch: false,
    }
}

/// The `PartitionChange` that takes partition `p` of `topic` to `next`, or `None` if
/// nothing changes. The ELR is normalised first: ISR members and repeats leave it, it is
/// put in replica order, and it is cleared when the ISR has at least [`min_insync`]
/// members (the high watermark may advance again, so ELR members would become stale). The
/// partition epoch grows by one; the leader epoch when the leader changes or
/// `next.bump_leader_epoch`.
fn change(topic: &TopicInfo, p: &PartitionRecord, next: Next) -> Option<MetadataRecord> {
    let Next {
        leader,
        isr,
        elr,
        bump_leader_epoch,
    } = next;
    let elr: Vec<i32> = if isr.len() as i32 >= min_insync(topic) {
        Vec::new()
    } else {
        p.replicas
            .iter()
            .copied()
            .filter(|r| elr.contains(r) && !isr.contains(r))
            .collect()
    };
    let leader_changed = leader != p.leader;
    if !leader_changed && !bump_leader_epoch && isr == p.isr && elr == p.elr {
        return None;
    }
    Some(MetadataRecord::PartitionChange {
        topic_id: topic.topic_id,
        partition: p.partition,
        leader,
        isr,
        leader_epoch: p.leader_epoch + i32::from(leader_changed || bump_leader_epoch),
        partition_epoch: p.partition_epoch + 1,
        elr,
    })
}

/// Every partition of every live topic, in topic name and partition order.
fn all_partitions(state: &ClusterState) -> impl Iterator<Item = (&TopicInfo, &PartitionRecord)> {
    state
        .topics()
        .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
}

/// Partition `p`'s next leadership when `broker_id`, a member of its ISR, can no longer be
/// trusted as an in-sync replica (fenced, or `restarted`: a new incarnation registering).
/// - It is the last ISR member: with `restarted` it stays and leads with a bumped leader
///   epoch (so followers truncate to what it has); fenced, it stays in the ISR and an
///   unfenced ELR member takes over if there is one (see [`elect_leader`]), else the
///   partition is offline.
/// - Otherwise it leaves the ISR, and joins the ELR if the ISR is left below
///   [`min_insync`] (the high watermark is then frozen, so it holds every committed record).
///   Where it led, or the partition was offline, [`elect_leader`] picks another broker.
fn leave_isr(state: &ClusterState, p: &PartitionRecord, broker_id: i32, restarted: bool) -> Next {
    let others = |r: i32| r != broker_id && !state.is_fenced(r);
    if p.isr.iter().all(|&r| r == broker_id) {
        return if restarted {
            Next {
                leader: broker_id,
                bump_leader_epoch: true,
                ..Next::unchanged(p)
            }
        } else {
            elect_leader(p, p.isr.clone(), p.elr.clone(), others)
        };
    }
    let isr: Vec<i32> = p.isr.iter().copied().filter(|&r| r != broker_id).collect();
    let mut elr = p.elr.clone();
    elr.push(broker_id);
    if p.leader == broker_id || p.leader == NO_LEADER {
        elect_leader(p, isr, elr, others)
    } else {
        Next {
            leader: p.leader,
            isr,
            elr,
            bump_leader_epoch: false,
        }
    }
}

/// Partition `p`'s next leadership when `broker_id` reported at registration that it lost
/// the partition's log: it leaves the ISR even as its last member (the ISR may become
/// empty) and the ELR; where it led, or the partition was offline, [`elect_leader`] picks
/// another unfenced broker (ISR first, then ELR), else the partition is offline.
fn lose_replica(state: &ClusterState, p: &PartitionRecord, broker_id: i32) -> Next {
    let isr: Vec<i32> = p.isr.iter().copied().filter(|&r| r != broker_id).collect();
    let elr: Vec<i32> = p.elr.iter().copied().filter(|&r| r != broker_id).collect();
    if p.leader == broker_id || p.leader == NO_LEADER {
        elect_leader(p, isr, elr, |r| r != broker_id && !state.is_fenced(r))
    } else {
        Next {
            leader: p.leader,
            isr,
            elr,
            bump_leader_epoch: false,
        }
    }
}

/// Partition `p`'s next leadership when `broker_id` becomes able to lead (unfenced, or
/// registered): if `p` is offline and `broker_id` is in its ISR or ELR, the election of
/// [`elect_leader`] counting `broker_id` as unfenced (it leads, from the ELR with the ISR
/// to itself alone, since no other member is unfenced).
fn lead_if_offline(state: &ClusterState, p: &PartitionRecord, broker_id: i32) -> Next {
    if p.leader != NO_LEADER || !(p.isr.contains(&broker_id) || p.elr.contains(&broker_id)) {
        return Next::unchanged(p);
    }
    elect_leader(p, p.isr.clone(), p.elr.clone(), |r| {
        r == broker_id || !state.is_fenced(r)
    })
}

/// The records that fence `broker_id`: its heartbeat session expired, or it is in
/// controlled shutdown. `FenceBroker`, then a `PartitionChange` for every partition whose
/// ISR contains it: it leaves the ISR unless it is the last member, and joins the ELR if
/// the ISR is left with fewer than [`min_insync`] members. Where it led, the first replica
/// in the new ISR that is unfenced leads instead; else the first unfenced ELR member, with
/// the ISR set to it alone (the previous ISR members join the ELR); else -1. Partitions
/// where it is only in the ELR keep it there. Fencing a fenced broker returns no records.
pub fn fence_broker(
    state: &ClusterState,
    broker_id: i32,
) -> Result<Vec<MetadataRecord>, ReplicationError> {
    if known_broker(state, broker_id)?.fenced {
        return Ok(Vec::new());
    }
    let mut records = vec![MetadataRecord::FenceBroker { broker_id }];
    records.extend(
        all_partitions(state)
            .filter(|(_, p)| p.isr.contains(&broker_id))
            .filter_map(|(t, p)| change(t, p, leave_isr(state, p, broker_id, false))),
    );
    Ok(records)
}

/// The records that unfence `broker_id` (its heartbeats resumed and it caught up):
/// `UnfenceBroker`, then it becomes leader of every offline partition (leader -1) whose ISR
/// contains it, or whose ELR contains it (the ISR then becomes itself alone and it leaves
/// the ELR). Unfencing an unfenced broker returns no records.
pub fn unfence_broker(
    state: &ClusterState,
    broker_id: i32,
) -> Result<Vec<MetadataRecord>, ReplicationError> {
    if !known_broker(state, broker_id)?.fenced {
        return Ok(Vec::new());
    }
    let mut records = vec![MetadataRecord::UnfenceBroker { broker_id }];
    records.extend(
        all_partitions(state)
            .filter_map(|(t, p)| change(t, p, lead_if_offline(state, p, broker_id))),
    );
    Ok(records)
}

/// [`register_broker_with_lost`] for a broker that lost no partition log.
pub fn register_broker(
    state: &ClusterState,
    broker_id: i32,
    host: &str,
    port: u16,
    rack: Option<String>,
    incarnation: Uuid,
) -> Result<Vec<MetadataRecord>, ReplicationError> {
    register_broker_with_lost(state, broker_id, host, port, rack, incarnation, &[])
}

/// The records that register broker `broker_id` (on every start; `incarnation` is new for
/// each process). `lost` names the partitions (topic id, partition) whose log the broker
/// found missing at startup (a replaced or wiped disk): it holds none of their records.
/// The broker is unfenced afterwards.
/// - First registration: `RegisterBroker`.
/// - A different incarnation (the broker restarted): `RegisterBroker` plus, per partition:
///   - in `lost`: it leaves the ISR even as its last member (the ISR may become empty) and
///     the ELR; where it led or the partition was offline, the first unfenced member of the
///     new ISR in replica order leads, else the first unfenced ELR member (with the ISR set
///     to it alone), else -1. It is never elected for that partition until it is back in
///     the ISR through [`alter_partition`], after re-replicating from the leader. A
///     partition left with leader -1 and an empty ISR and ELR stays offline: no replica is
///     known to hold its committed records, and unclean election is not implemented.
///   - in its ISR with others: it leaves it as when fenced ([`fence_broker`]: joins the ELR
///     if the ISR is left below [`min_insync`], leadership moves to another unfenced ISR
///     member, else an unfenced ELR member, else -1).
///   - the ISR's only member: it becomes (or stays) leader with a bumped leader epoch, so
///     that followers truncate to what it has.
///   - offline (leader -1) with it in the ELR: it leads, with the ISR set to it alone.
/// - The same incarnation (a retry: `lost` was already reported and is ignored): nothing if
///   the broker is unfenced and its host, port and rack are unchanged; `RegisterBroker` if
///   they changed; and if it was fenced, `RegisterBroker` plus leadership of every offline
///   partition whose ISR or ELR contains it (as [`unfence_broker`]).
///
/// Entries of `lost` that name no partition of a live topic, or a partition `broker_id` is
/// no replica of, are ignored.
pub fn register_broker_with_lost(
    state: &ClusterState,
    broker_id: i32,
    host: &str,
    port: u16,
    rack: Option<String>,
    incarnation: Uuid,
    lost: &[(Uuid, i32)],
) -> Result<Vec<MetadataRecord>, ReplicationError> {
    if broker_id < 0 {
        return Err(ReplicationError::InvalidBrokerId { broker_id });
    }
    let previous = state.broker(broker_id);
    let record = MetadataRecord::RegisterBroker {
        broker_id,
        host: host.to_owned(),
        port,
        rack: rack.clone(),
        incarnation,
    };
    let mut records = Vec::new();
    match previous {
        Some(previous) if previous.incarnation == incarnation => {
            if previous.fenced {
                records.push(record);
                records.extend(
                    all_partitions(state)
                        .filter_map(|(t, p)| change(t, p, lead_if_offline(state, p, broker_id))),
                );
            } else if previous.host != host || previous.port != port || previous.rack != rack {
                records.push(record);
            }
        }
        _ => {
            records.push(record);
            let lost: BTreeSet<(Uuid, i32)> = lost.iter().copied().collect();
            records.extend(all_partitions(state).filter_map(|(t, p)| {
                let next = if lost.contains(&(t.topic_id, p.partition)) {
                    lose_replica(state, p, broker_id)
                } else if p.isr.contains(&broker_id) {
                    leave_isr(state, p, broker_id, true)
                } else {
                    lead_if_offline(state, p, broker_id)
                };
                change(t, p, next)
            }));
        }
    }
    Ok(records)
}

/// The records to commit with a change of topic `topic_id`'s configs to `new_configs`
/// (after its `TopicConfig` records, in the same batch): where `min.insync.replicas` falls
/// to or below a partition's ISR size, its leader may advance the high watermark again, so
/// the partition's ELR is cleared. Nothing for an unknown topic or when no ELR is affected.
pub fn clear_stale_elr(
    state: &ClusterState,
    topic_id: Uuid,
    new_configs: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let Some(topic) = state.topic_by_id(topic_id) else {
        return Vec::new();
    };
    let min = min_insync_of(new_configs, replication_factor(topic));
    topic
        .partitions
        .iter()
        .filter(|p| !p.elr.is_empty() && p.isr.len() as i32 >= min)
        .filter_map(|p| {
            change(
                topic,
                p,
                Next {
                    elr: Vec::new(),
                    ..Next::unchanged(p)
                },
            )
        })
        .collect()
}

/// The record for an AlterPartition from `requester_broker_id`: the leader of partition
/// `partition` of `topic_id` proposes ISR `new_isr`, against the `leader_epoch` and
/// `partition_epoch` it knows. Refused when the leader epoch differs
/// ([`ReplicationError::FencedLeaderEpoch`]), the requester does not lead the partition
/// ([`ReplicationError::NotLeader`]), the partition epoch differs
/// ([`ReplicationError::InvalidUpdateVersion`]: a stale proposal), the ISR is empty,
/// repeats a broker, is not within the replicas or lacks the leader
/// ([`ReplicationError::InvalidIsr`]), or adds a fenced or unregistered broker
/// ([`ReplicationError::IneligibleReplica`]). Otherwise one `PartitionChange` with the same
/// leader and leader epoch and `partition_epoch + 1`, or no record if the ISR (as a set)
/// and the ELR are unchanged. The ISR is stored in the order given. Members of the new ISR
/// leave the ELR, and the ELR is cleared when the new ISR has at least [`min_insync`]
/// members (the high watermark may advance again).
pub fn alter_partition(
    state: &ClusterState,
    topic_id: Uuid,
    partition: i32,
    requester_broker_id: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    new_isr: Vec<i32>,
) -> Result<Vec<MetadataRecord>, ReplicationError> {
    let topic = state
        .topic_by_id(topic_id)
        .ok_or(ReplicationError::UnknownTopicId { topic_id })?;
    let p = topic
        .partition(partition)
        .ok_or(ReplicationError::UnknownPartition {
            topic_id,
            partition,
        })?;
    if leader_epoch != p.leader_epoch {
        return Err(ReplicationError::FencedLeaderEpoch {
            requested: leader_epoch,
            current: p.leader_epoch,
        });
    }
    if requester_broker_id != p.leader || p.leader == NO_LEADER {
        return Err(ReplicationError::NotLeader {
            broker_id: requester_broker_id,
            leader: p.leader,
        });
    }
    if partition_epoch != p.partition_epoch {
        return Err(ReplicationError::InvalidUpdateVersion {
            requested: partition_epoch,
            current: p.partition_epoch,
        });
    }
    let invalid = |reason: String| {
        Err(ReplicationError::InvalidIsr {
            isr: new_isr.clone(),
            reason,
        })
    };
    if new_isr.is_empty() {
        return invalid("it is empty".into());
    }
    let members: BTreeSet<i32> = new_isr.iter().copied().collect();
    if members.len() != new_isr.len() {
        return invalid("it names a broker twice".into());
    }
    if let Some(r) = new_isr.iter().find(|r| !p.replicas.contains(r)) {
        return invalid(format!(
            "broker {r} is not a replica (replicas {:?})",
            p.replicas
        ));
    }
    if !members.contains(&p.leader) {
        return invalid(format!("it leaves out the leader {}", p.leader));
    }
    if let Some(&r) = new_isr
        .iter()
        .find(|&&r| !p.isr.contains(&r) && state.is_fenced(r))
    {
        return Err(ReplicationError::IneligibleReplica { broker_id: r });
    }
    // Same ISR as a set: keep the stored order, so that only an ELR change is recorded.
    let isr = if members == p.isr.iter().copied().collect() {
        p.isr.clone()
    } else {
        new_isr
    };
    Ok(change(
        topic,
        p,
        Next {
            isr,
            ..Next::unchanged(p)
        },
    )
    .into_iter()
    .collect())
}

/// The records of a preferred leader election (`auto.leader.rebalance.enable`, or an
/// ElectLeaders request for every partition): each partition whose preferred replica
/// (`replicas[0]`) is unfenced, in the ISR and not the leader gets it as leader; each
/// offline partition (leader -1) whose preferred replica cannot lead gets the first
/// unfenced ISR member in replica order, else the first unfenced ELR member (with the ISR
/// set to it alone), if any. Epochs are bumped as for any leader change.
pub fn elect_preferred_leaders(
    state: &ClusterState,
) -> Result<Vec<MetadataRecord>, ReplicationError> {
    Ok(all_partitions(state)
        .filter_map(|(t, p)| change(t, p, preferred_election(state, p)))
        .collect())
}

/// Partition `p` after a preferred leader election (see [`elect_preferred_leaders`]).
fn preferred_election(state: &ClusterState, p: &PartitionRecord) -> Next {
    let eligible = |r: i32| !state.is_fenced(r);
    match p.replicas.first() {
        Some(&preferred) if p.isr.contains(&preferred) && eligible(preferred) => Next {
            leader: preferred,
            ..Next::unchanged(p)
        },
        Some(_) if p.leader == NO_LEADER => elect_leader(p, p.isr.clone(), p.elr.clone(), eligible),
        _ => Next::unchanged(p),
    }
}

/// Why one partition of an ElectLeaders request (preferred election) elected nobody.
/// The Kafka error code each maps to is named on the variant.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElectionError {
    /// Kafka: UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownTopicOrPartition { topic: String, partition: i32 },
    /// Kafka: ELECTION_NOT_NEEDED. The preferred replica already leads.
    #[error("the preferred replica {leader} already leads {topic}-{partition}")]
    NotNeeded {
        topic: String,
        partition: i32,
        leader: i32,
    },
    /// Kafka: PREFERRED_LEADER_NOT_AVAILABLE. The preferred replica is fenced or out of
    /// the ISR, and the partition has a leader (or no replica can lead it).
    #[error(
        "the preferred replica {preferred} of {topic}-{partition} cannot lead now (fenced, or not in the ISR {isr:?})"
    )]
    PreferredNotAvailable {
        topic: String,
        partition: i32,
        preferred: i32,
        isr: Vec<i32>,
    },
}

/// The records of a preferred leader election of partition `partition` of topic `topic`
/// (an ElectLeaders request naming it), decided as in [`elect_preferred_leaders`]:
/// Kafka's ELECTION_NOT_NEEDED when the preferred replica leads already,
/// PREFERRED_LEADER_NOT_AVAILABLE when the election changes nothing.
pub fn elect_preferred_leader(
    state: &ClusterState,
    topic: &str,
    partition: i32,
) -> Result<Vec<MetadataRecord>, ElectionError> {
    let (t, p) = state
        .topic(topic)
        .and_then(|t| Some((t, t.partition(partition)?)))
        .ok_or_else(|| ElectionError::UnknownTopicOrPartition {
            topic: topic.to_owned(),
            partition,
        })?;
    if p.leader != NO_LEADER && p.replicas.first() == Some(&p.leader) {
        return Err(ElectionError::NotNeeded {
            topic: topic.to_owned(),
            partition,
            leader: p.leader,
        });
    }
    match change(t, p, preferred_election(state, p)) {
        Some(record) => Ok(vec![record]),
        None => Err(ElectionError::PreferredNotAvailable {
            topic: topic.to_owned(),
            partition,
            preferred: p.replicas.first().copied().unwrap_or(NO_LEADER),
            isr: p.isr.clone(),
        }),
    }
}

/// Why the controller refused a partition reassignment (AlterPartitionReassignments).
/// Separate from [`ControllerError`] and [`ReplicationError`] so that code matching those
/// exhaustively keeps compiling. The Kafka error code each maps to is named on the variant.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReassignmentError {
    /// Kafka: UNKNOWN_TOPIC_OR_PARTITION.
    #[error("no topic has id {topic_id}")]
    UnknownTopicId { topic_id: Uuid },
    /// Kafka: UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition { topic: String, partition: i32 },
    /// Kafka: INVALID_REPLICA_ASSIGNMENT. The target is empty, repeats a broker, names a
    /// broker that is not registered, or adds a fenced one.
    #[error("invalid replica assignment {replicas:?}: {reason}")]
    InvalidReplicas { replicas: Vec<i32>, reason: String },
    /// Kafka: NO_REASSIGNMENT_IN_PROGRESS (a cancellation when none is in progress).
    #[error("no reassignment of {topic}-{partition} is in progress")]
    NoReassignmentInProgress { topic: String, partition: i32 },
    /// Kafka: INVALID_REPLICA_ASSIGNMENT. Moving to `replicas` now would leave the
    /// partition without an in-sync replica, or without a leader while it has one.
    #[error("{topic}-{partition} cannot move to replicas {replicas:?} now: {reason}")]
    WouldLoseLeadership {
        topic: String,
        partition: i32,
        replicas: Vec<i32>,
        reason: String,
    },
}

/// Partition `p` of `topic` placed on `replicas` (with reassignment state `adding` and
/// `removing`): the ISR and ELR keep only members among `replicas`; the leader stays if
/// it is among them, else the first unfenced member of the new ISR in replica order leads
/// (a clean election, with the leader epoch bumped). The ELR is put in replica order and
/// cleared when the new ISR reaches `min.insync.replicas` (as the topic will have it).
/// The partition epoch grows by one. Refused (with the reason) when that would leave no
/// in-sync replica where there was one, or no leader where there was one.
fn place(
    state: &ClusterState,
    topic: &TopicInfo,
    p: &PartitionRecord,
    replicas: Vec<i32>,
    adding: Vec<i32>,
    removing: Vec<i32>,
) -> Result<PartitionRecord, String> {
    let isr: Vec<i32> = p
        .isr
        .iter()
        .copied()
        .filter(|r| replicas.contains(r))
        .collect();
    if isr.is_empty() && !p.isr.is_empty() {
        return Err(format!(
            "none of the in-sync replicas {:?} would remain",
            p.isr
        ));
    }
    let leader = if p.leader != NO_LEADER && replicas.contains(&p.leader) {
        p.leader
    } else {
        elect(&replicas, &isr, |r| !state.is_fenced(r))
    };
    if leader == NO_LEADER && p.leader != NO_LEADER {
        return Err(format!(
            "no unfenced in-sync replica would remain to lead (in-sync among them: {isr:?})"
        ));
    }
    let replication_factor = if p.partition == 0 {
        (replicas.len() - adding.len()) as i32
    } else {
        replication_factor(topic)
    };
    let elr = if isr.len() as i32 >= min_insync_of(&topic.configs, replication_factor) {
        Vec::new()
    } else {
        replicas
            .iter()
            .copied()
            .filter(|r| p.elr.contains(r) && !isr.contains(r))
            .collect()
    };
    Ok(PartitionRecord {
        partition: p.partition,
        leader,
        leader_epoch: p.leader_epoch + i32::from(leader != p.leader),
        partition_epoch: p.partition_epoch + 1,
        replicas,
        isr,
        elr,
        adding_replicas: adding,
        removing_replicas: removing,
    })
}

/// The completed form of `p`'s reassignment, if it may complete: one is in progress,
/// every adding replica is in the ISR, and [`place`] on the target replicas succeeds (an
/// in-sync replica remains, and a leader if there is one now).
fn completed(
    state: &ClusterState,
    topic: &TopicInfo,
    p: &PartitionRecord,
) -> Option<PartitionRecord> {
    if !p.is_reassigning() || !p.adding_replicas.iter().all(|r| p.isr.contains(r)) {
        return None;
    }
    place(state, topic, p, p.target_replicas(), Vec::new(), Vec::new()).ok()
}

/// The records that take partition `old` of `topic` to `new`: a `PartitionReassignment`,
/// and where `new` changes partition 0's replica count so that the topic's
/// `min.insync.replicas` (a default that follows the replication factor) falls to or below
/// other partitions' ISR sizes, the `PartitionChange`s that clear their ELRs (as
/// [`clear_stale_elr`]). Nothing if `new` is `old` but for its epochs.
fn reassignment_records(
    topic: &TopicInfo,
    old: &PartitionRecord,
    new: PartitionRecord,
) -> Vec<MetadataRecord> {
    let unchanged = old.replicas == new.replicas
        && old.isr == new.isr
        && old.elr == new.elr
        && old.leader == new.leader
        && old.adding_replicas == new.adding_replicas
        && old.removing_replicas == new.removing_replicas;
    if unchanged {
        return Vec::new();
    }
    let min_after = if new.partition == 0 {
        min_insync_of(
            &topic.configs,
            (new.replicas.len() - new.adding_replicas.len()) as i32,
        )
    } else {
        min_insync(topic)
    };
    let mut records = vec![MetadataRecord::PartitionReassignment {
        topic_id: topic.topic_id,
        partition: new,
    }];
    if min_after < min_insync(topic) {
        records.extend(
            topic
                .partitions
                .iter()
                .filter(|q| q.partition != old.partition)
                .filter(|q| !q.elr.is_empty() && q.isr.len() as i32 >= min_after)
                .filter_map(|q| {
                    change(
                        topic,
                        q,
                        Next {
                            elr: Vec::new(),
                            ..Next::unchanged(q)
                        },
                    )
                }),
        );
    }
    records
}

/// The records that start, replace or cancel a reassignment of partition `partition` of
/// topic `topic_id` (AlterPartitionReassignments, KIP-455).
///
/// - `Some(target)`: the partition moves to `target` (validated: non-empty, no broker
///   twice, every broker registered, brokers that do not host it yet unfenced; else
///   [`ReassignmentError::InvalidReplicas`]). The *original* replicas are the current
///   ones, or those before the reassignment in progress, which `target` replaces. While in
///   progress the replicas are `target` followed by the original ones not in it, the
///   adding replicas `target` minus the original ones, the removing replicas the original
///   ones minus `target`; replicas of a replaced reassignment that are in neither leave at
///   once. The ISR and ELR keep only replicas; a leader no longer among them is replaced by
///   the first unfenced in-sync one (leader epoch bumped). A reassignment that adds no
///   replica (a shrink, or a new replica order) completes at once when it can (see
///   [`complete_reassignments`]). A target equal to the replicas with nothing in
///   progress gives no record.
/// - `None`: cancels the reassignment in progress
///   ([`ReassignmentError::NoReassignmentInProgress`] if there is none): the replicas go
///   back to the original ones (in their current order), dropping the adding replicas
///   from the ISR and ELR.
///
/// Refused with [`ReassignmentError::WouldLoseLeadership`] when the move would leave the
/// partition without an in-sync replica, or without a leader while it has one. Every
/// record bumps the partition epoch.
pub fn alter_partition_reassignment(
    state: &ClusterState,
    topic_id: Uuid,
    partition: i32,
    target: Option<Vec<i32>>,
) -> Result<Vec<MetadataRecord>, ReassignmentError> {
    let topic = state
        .topic_by_id(topic_id)
        .ok_or(ReassignmentError::UnknownTopicId { topic_id })?;
    let p = topic
        .partition(partition)
        .ok_or_else(|| ReassignmentError::UnknownPartition {
            topic: topic.name.clone(),
            partition,
        })?;
    let original = p.original_replicas();
    let refused = |replicas: &[i32], reason: String| ReassignmentError::WouldLoseLeadership {
        topic: topic.name.clone(),
        partition,
        replicas: replicas.to_vec(),
        reason,
    };
    let next = match target {
        None => {
            if !p.is_reassigning() {
                return Err(ReassignmentError::NoReassignmentInProgress {
                    topic: topic.name.clone(),
                    partition,
                });
            }
            place(state, topic, p, original.clone(), Vec::new(), Vec::new())
                .map_err(|reason| refused(&original, reason))?
        }
        Some(target) => {
            validate_target(state, p, &target)?;
            let replicas: Vec<i32> = target
                .iter()
                .copied()
                .chain(original.iter().copied().filter(|r| !target.contains(r)))
                .collect();
            let adding = target
                .iter()
                .copied()
                .filter(|r| !original.contains(r))
                .collect();
            let removing = original
                .iter()
                .copied()
                .filter(|r| !target.contains(r))
                .collect();
            let moving = place(state, topic, p, replicas, adding, removing)
                .map_err(|reason| refused(&target, reason))?;
            match completed(state, topic, &moving) {
                // One record straight from `p` to the completed form: epochs from `p`.
                Some(done) => PartitionRecord {
                    leader_epoch: p.leader_epoch + i32::from(done.leader != p.leader),
                    partition_epoch: p.partition_epoch + 1,
                    ..done
                },
                None => moving,
            }
        }
    };
    Ok(reassignment_records(topic, p, next))
}

/// Checks a reassignment target of partition `p` (see [`alter_partition_reassignment`]).
fn validate_target(
    state: &ClusterState,
    p: &PartitionRecord,
    target: &[i32],
) -> Result<(), ReassignmentError> {
    let invalid = |reason: String| {
        Err(ReassignmentError::InvalidReplicas {
            replicas: target.to_vec(),
            reason,
        })
    };
    if target.is_empty() {
        return invalid("it is empty".into());
    }
    let mut seen = BTreeSet::new();
    for &r in target {
        if !seen.insert(r) {
            return invalid(format!("it names broker {r} twice"));
        }
        match state.broker(r) {
            None => return invalid(format!("broker {r} is not registered")),
            Some(b) if b.fenced && !p.replicas.contains(&r) => {
                return invalid(format!(
                    "broker {r} is fenced and may not receive new replicas"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The records that complete every reassignment that may complete (run by the active
/// controller at every check; nothing when none is in progress, without cloning the
/// state). A reassignment completes once every adding replica is in the ISR: the replicas
/// become the target, the ISR and ELR keep only target replicas, the adding and removing
/// replicas are cleared; where the leader is being removed, the first unfenced in-sync
/// target replica leads (leader epoch bumped). It waits while that would leave no in-sync
/// replica, or no leader where there is one (for instance while every in-sync target
/// replica is fenced). Records apply in order; a completion that changes partition 0's
/// replica count comes with the ELR clears of [`reassignment_records`].
pub fn complete_reassignments(state: &ClusterState) -> Vec<MetadataRecord> {
    let ready: Vec<(Uuid, usize)> = all_partitions(state)
        .filter(|(t, p)| completed(state, t, p).is_some())
        .map(|(t, p)| (t.topic_id, p.partition as usize))
        .collect();
    if ready.is_empty() {
        return Vec::new();
    }
    let mut working = state.clone();
    let mut records = Vec::new();
    for (topic_id, index) in ready {
        let topic = working.topic_by_id(topic_id).expect("listed above");
        let p = &topic.partitions[index];
        let Some(done) = completed(&working, topic, p) else {
            continue;
        };
        let batch = reassignment_records(topic, p, done);
        for r in &batch {
            working.apply(r);
        }
        records.extend(batch);
    }
    records
}

/// Partitions with a reassignment in progress, in topic name and partition order: (topic,
/// partition).
pub fn reassignments_in_progress(
    state: &ClusterState,
) -> impl Iterator<Item = (&TopicInfo, &PartitionRecord)> {
    all_partitions(state).filter(|(_, p)| p.is_reassigning())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(brokers: i32) -> ClusterState {
        let mut s = ClusterState::default();
        for b in 1..=brokers {
            s.apply(&MetadataRecord::RegisterBroker {
                broker_id: b,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
                incarnation: Uuid::nil(),
            });
        }
        s
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let mut s = cluster(2);
        let mut blocks = Vec::new();
        for broker in [1, 2, 1] {
            for r in allocate_producer_ids(&s, broker).unwrap() {
                if let MetadataRecord::ProducerIds { first_id, size, .. } = r {
                    blocks.push((first_id, size));
                }
                s.apply(&r);
            }
        }
        assert_eq!(blocks, vec![(0, 1000), (1000, 1000), (2000, 1000)]);
        assert_eq!(s.next_producer_id(), 3000);
        assert!(allocate_producer_ids(&s, 9).is_err());
        // Survives a JSON round trip (snapshots).
        let json = serde_json::to_string(&s).unwrap();
        let back: ClusterState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.next_producer_id(), 3000);
    }

    #[test]
    fn names_follow_kafka_rules() {
        for ok in ["a", "orders.v1", "A_b-c", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "é", "a/b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leaders_spread_round_robin() {
        let s = cluster(3);
        let recs = create_topic(&s, "t", 6, 2, BTreeMap::new(), Uuid::nil(), 0).unwrap();
        let MetadataRecord::CreateTopic { partitions, .. } = &recs[0] else {
            panic!("expected CreateTopic")
        };
        let leaders: Vec<i32> = partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(partitions[2].replicas, vec![3, 1]);
    }

    #[test]
    fn refusals() {
        let mut s = cluster(1);
        assert!(matches!(
            create_topic(&s, "t", 1, 2, BTreeMap::new(), Uuid::nil(), 0),
            Err(ControllerError::InvalidReplicationFactor { .. })
        ));
        assert!(matches!(
            create_topic(&s, "t", 0, 1, BTreeMap::new(), Uuid::nil(), 0),
            Err(ControllerError::InvalidPartitions { .. })
        ));
        for r in create_topic(&s, "t", 2, 1, BTreeMap::new(), Uuid::nil(), 0).unwrap() {
            s.apply(&r);
        }
        assert!(matches!(
            create_topic(&s, "t", 1, 1, BTreeMap::new(), Uuid::from_u128(1), 0),
            Err(ControllerError::TopicAlreadyExists { .. })
        ));
        assert!(matches!(
            create_partitions(&s, "t", 2, 0),
            Err(ControllerError::InvalidPartitions { .. })
        ));
        let grow = create_partitions(&s, "t", 4, 0).unwrap();
        for r in &grow {
            s.apply(r);
        }
        assert_eq!(s.topic("t").unwrap().partitions.len(), 4);
        assert!(matches!(
            delete_topic(&s, "nope"),
            Err(ControllerError::UnknownTopic { .. })
        ));
    }

    fn apply(s: &mut ClusterState, records: &[MetadataRecord]) {
        for r in records {
            s.apply(r);
        }
    }

    /// Decides with `decide` against `s`, which must succeed, and applies the records.
    fn run<E: std::fmt::Debug>(
        s: &mut ClusterState,
        decide: impl FnOnce(&ClusterState) -> Result<Vec<MetadataRecord>, E>,
    ) {
        let records = decide(s).unwrap();
        apply(s, &records);
    }

    /// `brokers` brokers and topic "t" with one partition on `replicas` (leader first).
    fn with_partition(brokers: i32, replicas: &[i32]) -> (ClusterState, Uuid) {
        let mut s = cluster(brokers);
        let id = Uuid::from_u128(42);
        s.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            topic_id: id,
            partitions: vec![PartitionRecord {
                partition: 0,
                replicas: replicas.to_vec(),
                isr: replicas.to_vec(),
                leader: replicas[0],
                leader_epoch: 0,
                partition_epoch: 0,
                elr: vec![],
                adding_replicas: vec![],
                removing_replicas: vec![],
            }],
            configs: BTreeMap::new(),
        });
        (s, id)
    }

    fn p0(s: &ClusterState) -> &PartitionRecord {
        &s.topic("t").unwrap().partitions[0]
    }

    /// (leader, isr, leader_epoch, partition_epoch) of partition t-0.
    fn summary(s: &ClusterState) -> (i32, Vec<i32>, i32, i32) {
        let p = p0(s);
        (p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch)
    }

    #[test]
    fn fencing_the_leader_moves_leadership_and_shrinks_the_isr() {
        let (mut s, id) = with_partition(3, &[1, 2, 3]);
        let recs = fence_broker(&s, 1).unwrap();
        assert_eq!(recs[0], MetadataRecord::FenceBroker { broker_id: 1 });
        assert_eq!(
            recs[1],
            MetadataRecord::PartitionChange {
                topic_id: id,
                partition: 0,
                leader: 2,
                isr: vec![2, 3],
                leader_epoch: 1,
                partition_epoch: 1,
                elr: vec![],
            }
        );
        apply(&mut s, &recs);
        assert!(s.is_fenced(1));
        assert_eq!(
            s.unfenced_brokers()
                .map(|b| b.broker_id)
                .collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(fence_broker(&s, 1), Ok(vec![]), "already fenced");
        // A follower leaving: ISR shrinks, leader and leader epoch stay.
        run(&mut s, |s| fence_broker(s, 3));
        assert_eq!(summary(&s), (2, vec![2], 1, 2));
        assert_eq!(
            fence_broker(&s, 9),
            Err(ReplicationError::UnknownBroker { broker_id: 9 })
        );
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_goes_offline_until_it_returns() {
        let (mut s, _) = with_partition(3, &[1, 2]);
        run(&mut s, |s| fence_broker(s, 2));
        assert_eq!(summary(&s), (1, vec![1], 0, 1));
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(
            summary(&s),
            (NO_LEADER, vec![1], 1, 2),
            "never an empty ISR"
        );
        // Broker 2 coming back does not lead: it is not in the ISR (no unclean election).
        let recs = unfence_broker(&s, 2).unwrap();
        assert_eq!(recs, vec![MetadataRecord::UnfenceBroker { broker_id: 2 }]);
        apply(&mut s, &recs);
        assert_eq!(summary(&s), (NO_LEADER, vec![1], 1, 2));
        assert_eq!(elect_preferred_leaders(&s), Ok(vec![]));
        // Broker 1 coming back leads again.
        run(&mut s, |s| unfence_broker(s, 1));
        assert_eq!(summary(&s), (1, vec![1], 2, 3));
        assert_eq!(unfence_broker(&s, 1), Ok(vec![]), "already unfenced");
    }

    #[test]
    fn fenced_brokers_get_no_new_replicas() {
        let mut s = cluster(3);
        run(&mut s, |s| fence_broker(s, 2));
        let recs = create_topic(&s, "t", 4, 2, BTreeMap::new(), Uuid::nil(), 0).unwrap();
        let MetadataRecord::CreateTopic { partitions, .. } = &recs[0] else {
            panic!("expected CreateTopic")
        };
        assert!(partitions.iter().all(|p| !p.replicas.contains(&2)));
        assert!(matches!(
            create_topic(&s, "u", 1, 3, BTreeMap::new(), Uuid::nil(), 0),
            Err(ControllerError::InvalidReplicationFactor { .. })
        ));
    }

    #[test]
    fn replicas_spread_across_racks() {
        let mut s = ClusterState::default();
        // Racks a: 1, 2; b: 3, 4; c: 5, 6. Ids do not follow racks on purpose.
        for (b, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")] {
            s.apply(&MetadataRecord::RegisterBroker {
                broker_id: b,
                host: "h".into(),
                port: 9092,
                rack: Some(rack.into()),
                incarnation: Uuid::nil(),
            });
        }
        let rack = |b: i32| s.broker(b).unwrap().rack.clone().unwrap();
        for rf in 1..=3 {
            let recs = create_topic(&s, "t", 12, rf, BTreeMap::new(), Uuid::nil(), 5).unwrap();
            let MetadataRecord::CreateTopic { partitions, .. } = &recs[0] else {
                panic!("expected CreateTopic")
            };
            let mut leaders = BTreeMap::<i32, usize>::new();
            for p in partitions {
                let racks: BTreeSet<String> = p.replicas.iter().map(|&b| rack(b)).collect();
                assert_eq!(racks.len(), rf as usize, "{p:?}");
                *leaders.entry(p.leader).or_default() += 1;
            }
            assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2; 6]);
        }
        // RF 4 over 3 racks: every rack used, no broker twice.
        let recs = create_topic(&s, "t", 6, 4, BTreeMap::new(), Uuid::nil(), 0).unwrap();
        let MetadataRecord::CreateTopic { partitions, .. } = &recs[0] else {
            panic!("expected CreateTopic")
        };
        for p in partitions {
            let brokers: BTreeSet<i32> = p.replicas.iter().copied().collect();
            let racks: BTreeSet<String> = p.replicas.iter().map(|&b| rack(b)).collect();
            assert_eq!((brokers.len(), racks.len()), (4, 3), "{p:?}");
        }
    }

    #[test]
    fn defaults_follow_the_cluster_size() {
        assert_eq!(default_replication_factor(&ClusterState::default()), 1);
        assert_eq!(default_replication_factor(&cluster(1)), 1);
        assert_eq!(default_replication_factor(&cluster(2)), 2);
        assert_eq!(default_replication_factor(&cluster(5)), 3);
        let mut s = cluster(3);
        run(&mut s, |s| fence_broker(s, 3));
        assert_eq!(default_replication_factor(&s), 2);
        assert_eq!(default_min_insync_replicas(1), 1);
        assert_eq!(default_min_insync_replicas(2), 1);
        assert_eq!(default_min_insync_replicas(3), 2);
        assert_eq!(default_min_insync_replicas(5), 2);
    }

    #[test]
    fn registering_again_with_a_new_incarnation_moves_leadership_away() {
        let (mut s, _) = with_partition(3, &[1, 2, 3]);
        let same = register_broker(&s, 1, "127.0.0.1", 9092, None, Uuid::nil());
        assert_eq!(same, Ok(vec![]), "same incarnation, same address");
        let moved = register_broker(&s, 1, "10.0.0.1", 9092, None, Uuid::nil()).unwrap();
        assert_eq!(moved.len(), 1, "only the new address: {moved:?}");
        let restarted = Uuid::from_u128(1);
        let recs = register_broker(&s, 1, "127.0.0.1", 9092, None, restarted).unwrap();
        assert!(matches!(recs[0], MetadataRecord::RegisterBroker { .. }));
        apply(&mut s, &recs);
        assert_eq!(summary(&s), (2, vec![2, 3], 1, 1));
        assert!(!s.is_fenced(1));
        assert_eq!(s.broker(1).unwrap().incarnation, restarted);
        assert_eq!(
            register_broker(&s, -1, "h", 1, None, restarted),
            Err(ReplicationError::InvalidBrokerId { broker_id: -1 })
        );
    }

    #[test]
    fn a_restarted_sole_isr_member_stays_leader_with_a_new_epoch() {
        let (mut s, _) = with_partition(3, &[1, 2]);
        run(&mut s, |s| fence_broker(s, 2));
        assert_eq!(summary(&s), (1, vec![1], 0, 1));
        let recs = register_broker(&s, 1, "127.0.0.1", 9092, None, Uuid::from_u128(1)).unwrap();
        apply(&mut s, &recs);
        assert_eq!(
            summary(&s),
            (1, vec![1], 1, 2),
            "followers truncate to epoch 1"
        );
        // Offline, then the sole member restarts: it leads again.
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(summary(&s), (NO_LEADER, vec![1], 2, 3));
        let recs = register_broker(&s, 1, "127.0.0.1", 9092, None, Uuid::from_u128(2)).unwrap();
        apply(&mut s, &recs);
        assert_eq!(summary(&s), (1, vec![1], 3, 4));
        assert!(!s.is_fenced(1));
    }

    #[test]
    fn a_fenced_broker_registering_again_is_unfenced_and_leads_offline_partitions() {
        let (mut s, _) = with_partition(2, &[1]);
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(summary(&s), (NO_LEADER, vec![1], 1, 1));
        let recs = register_broker(&s, 1, "127.0.0.1", 9092, None, Uuid::nil()).unwrap();
        assert_eq!(recs.len(), 2, "{recs:?}");
        apply(&mut s, &recs);
        assert_eq!(summary(&s), (1, vec![1], 2, 2));
        assert!(!s.is_fenced(1));
    }

    #[test]
    fn alter_partition_checks_the_leader_and_the_epochs() {
        let (mut s, id) = with_partition(4, &[1, 2, 3]);
        let alter = |s: &ClusterState, broker, le, pe, isr: &[i32]| {
            alter_partition(s, id, 0, broker, le, pe, isr.to_vec())
        };
        let shrink = alter(&s, 1, 0, 0, &[1, 2]).unwrap();
        assert_eq!(
            shrink,
            vec![MetadataRecord::PartitionChange {
                topic_id: id,
                partition: 0,
                leader: 1,
                isr: vec![1, 2],
                leader_epoch: 0,
                partition_epoch: 1,
                elr: vec![],
            }]
        );
        apply(&mut s, &shrink);
        // The same proposal again is stale now.
        assert_eq!(
            alter(&s, 1, 0, 0, &[1]),
            Err(ReplicationError::InvalidUpdateVersion {
                requested: 0,
                current: 1
            })
        );
        assert_eq!(
            alter(&s, 2, 0, 1, &[1]),
            Err(ReplicationError::NotLeader {
                broker_id: 2,
                leader: 1
            })
        );
        assert_eq!(
            alter(&s, 1, 1, 1, &[1]),
            Err(ReplicationError::FencedLeaderEpoch {
                requested: 1,
                current: 0
            })
        );
        for bad in [&[][..], &[1, 4], &[2, 3], &[1, 1]] {
            assert!(
                matches!(
                    alter(&s, 1, 0, 1, bad),
                    Err(ReplicationError::InvalidIsr { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(alter(&s, 1, 0, 1, &[2, 1]), Ok(vec![]), "same ISR");
        run(&mut s, |s| fence_broker(s, 3));
        assert_eq!(
            alter(&s, 1, 0, 1, &[1, 2, 3]),
            Err(ReplicationError::IneligibleReplica { broker_id: 3 })
        );
        run(&mut s, |s| unfence_broker(s, 3));
        run(&mut s, |s| alter(s, 1, 0, 1, &[1, 2, 3]));
        assert_eq!(summary(&s), (1, vec![1, 2, 3], 0, 2));
        assert_eq!(
            alter_partition(&s, Uuid::from_u128(9), 0, 1, 0, 2, vec![1]),
            Err(ReplicationError::UnknownTopicId {
                topic_id: Uuid::from_u128(9)
            })
        );
        assert_eq!(
            alter_partition(&s, id, 1, 1, 0, 2, vec![1]),
            Err(ReplicationError::UnknownPartition {
                topic_id: id,
                partition: 1
            })
        );
        // After fencing the leader, its old epoch is refused.
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(
            alter(&s, 1, 0, 3, &[1, 2, 3]),
            Err(ReplicationError::FencedLeaderEpoch {
                requested: 0,
                current: 1
            })
        );
    }

    #[test]
    fn preferred_leaders_come_back() {
        let (mut s, id) = with_partition(3, &[1, 2, 3]);
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(summary(&s), (2, vec![2, 3], 1, 1));
        run(&mut s, |s| unfence_broker(s, 1));
        // Not preferred again until it rejoins the ISR.
        assert_eq!(elect_preferred_leaders(&s), Ok(vec![]));
        run(&mut s, |s| {
            alter_partition(s, id, 0, 2, 1, 1, vec![2, 3, 1])
        });
        let recs = elect_preferred_leaders(&s).unwrap();
        assert_eq!(recs.len(), 1);
        apply(&mut s, &recs);
        assert_eq!(summary(&s), (1, vec![2, 3, 1], 2, 3));
        assert_eq!(elect_preferred_leaders(&s), Ok(vec![]));
    }

    #[test]
    fn elect_preferred_leader_answers_per_partition() {
        let (mut s, id) = with_partition(3, &[1, 2, 3]);
        let topic = s.topic_by_id(id).unwrap().name.clone();
        let not_needed = elect_preferred_leader(&s, &topic, 0);
        assert!(
            matches!(not_needed, Err(ElectionError::NotNeeded { leader: 1, .. })),
            "{not_needed:?}"
        );
        for (name, partition) in [(topic.as_str(), 1), (topic.as_str(), -1), ("nope", 0)] {
            assert!(matches!(
                elect_preferred_leader(&s, name, partition),
                Err(ElectionError::UnknownTopicOrPartition { .. })
            ));
        }
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(summary(&s), (2, vec![2, 3], 1, 1));
        // Back but not in the ISR: the preferred replica cannot lead yet.
        run(&mut s, |s| unfence_broker(s, 1));
        let unavailable = elect_preferred_leader(&s, &topic, 0);
        assert!(
            matches!(
                unavailable,
                Err(ElectionError::PreferredNotAvailable { preferred: 1, .. })
            ),
            "{unavailable:?}"
        );
        run(&mut s, |s| {
            alter_partition(s, id, 0, 2, 1, 1, vec![2, 3, 1])
        });
        let recs = elect_preferred_leader(&s, &topic, 0).unwrap();
        assert_eq!(recs, elect_preferred_leaders(&s).unwrap());
        apply(&mut s, &recs);
        assert_eq!(summary(&s), (1, vec![2, 3, 1], 2, 3));
        assert!(matches!(
            elect_preferred_leader(&s, &topic, 0),
            Err(ElectionError::NotNeeded { .. })
        ));
    }

    #[test]
    fn old_records_and_snapshots_still_read() {
        let broker: crate::state::BrokerInfo = serde_json::from_str(
            r#"{"broker_id":1,"host":"h","port":1,"rack":null,"incarnation":"00000000-0000-0000-0000-000000000000"}"#,
        )
        .unwrap();
        assert!(!broker.fenced);
        let change = MetadataRecord::PartitionChange {
            topic_id: Uuid::nil(),
            partition: 0,
            leader: NO_LEADER,
            isr: vec![1],
            leader_epoch: 1,
            partition_epoch: 2,
            elr: vec![],
        };
        let json = serde_json::to_string(&change).unwrap();
        assert!(json.contains(r#""type":"PartitionChange""#), "{json}");
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&json).unwrap(),
            change
        );
    }

    /// (leader, isr, elr) of partition t-0.
    fn leadership(s: &ClusterState) -> (i32, Vec<i32>, Vec<i32>) {
        let p = p0(s);
        (p.leader, p.isr.clone(), p.elr.clone())
    }

    fn restart(
        s: &mut ClusterState,
        broker_id: i32,
        n: u128,
        lost: &[(Uuid, i32)],
    ) -> Vec<MetadataRecord> {
        let records = register_broker_with_lost(
            s,
            broker_id,
            "127.0.0.1",
            9092,
            None,
            Uuid::from_u128(n),
            lost,
        )
        .unwrap();
        apply(s, &records);
        records
    }

    #[test]
    fn min_insync_is_the_topic_config_or_the_default() {
        let (mut s, id) = with_partition(3, &[1, 2, 3]);
        assert_eq!(
            min_insync(s.topic("t").unwrap()),
            2,
            "default for 3 replicas"
        );
        for (value, expected) in [
            ("3", 3),
            ("1", 1),
            (" 2 ", 2),
            ("0", 2),
            ("-1", 2),
            ("x", 2),
        ] {
            s.apply(&MetadataRecord::TopicConfig {
                topic_id: id,
                key: "min.insync.replicas".into(),
                value: Some(value.into()),
            });
            assert_eq!(min_insync(s.topic("t").unwrap()), expected, "{value:?}");
        }
        let (s, _) = with_partition(3, &[1, 2]);
        assert_eq!(
            min_insync(s.topic("t").unwrap()),
            1,
            "default for 2 replicas"
        );
    }

    #[test]
    fn a_broker_fenced_below_min_insync_joins_the_elr() {
        let (mut s, _) = with_partition(4, &[1, 2, 3]);
        // ISR {1,2,3} -> {2,3}: still at min.insync.replicas=2, no ELR.
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(leadership(&s), (2, vec![2, 3], vec![]));
        // {2,3} -> {3}: below, so 2 holds every committed record and joins the ELR.
        run(&mut s, |s| fence_broker(s, 2));
        assert_eq!(leadership(&s), (3, vec![3], vec![2]));
        assert_eq!(summary(&s).2, 2, "leader epoch bumped twice");
        // The last member stays in the ISR; nobody unfenced is eligible: offline.
        run(&mut s, |s| fence_broker(s, 3));
        assert_eq!(leadership(&s), (NO_LEADER, vec![3], vec![2]));
        // Broker 1 is neither in the ISR nor the ELR: it never leads.
        run(&mut s, |s| unfence_broker(s, 1));
        assert_eq!(leadership(&s), (NO_LEADER, vec![3], vec![2]));
        assert_eq!(elect_preferred_leaders(&s), Ok(vec![]));
        // Broker 2 comes back: it leads alone, and 3 (which holds everything too) moves to
        // the ELR.
        let (_, _, le, pe) = summary(&s);
        let recs = unfence_broker(&s, 2).unwrap();
        assert_eq!(
            recs[1],
            MetadataRecord::PartitionChange {
                topic_id: p0_id(&s),
                partition: 0,
                leader: 2,
                isr: vec![2],
                leader_epoch: le + 1,
                partition_epoch: pe + 1,
                elr: vec![3],
            }
        );
        apply(&mut s, &recs);
        // 3 returns and is only in the ELR: it follows.
        run(&mut s, |s| unfence_broker(s, 3));
        assert_eq!(leadership(&s), (2, vec![2], vec![3]));
    }

    fn set_min_insync(s: &mut ClusterState, topic_id: Uuid, value: &str) {
        s.apply(&MetadataRecord::TopicConfig {
            topic_id,
            key: "min.insync.replicas".into(),
            value: Some(value.into()),
        });
    }

    fn p0_id(s: &ClusterState) -> Uuid {
        s.topic("t").unwrap().topic_id
    }

    #[test]
    fn with_min_insync_1_fenced_brokers_do_not_join_the_elr() {
        let (mut s, _) = with_partition(3, &[1, 2]);
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(leadership(&s), (2, vec![2], vec![]));
    }

    #[test]
    fn fencing_the_last_isr_member_elects_an_unfenced_elr_member() {
        let (mut s, _) = with_partition(3, &[1, 2, 3]);
        run(&mut s, |s| fence_broker(s, 3));
        run(&mut s, |s| fence_broker(s, 2));
        assert_eq!(leadership(&s), (1, vec![1], vec![2]));
        // 2 is back but still catching up (not yet in the ISR): it stays in the ELR.
        run(&mut s, |s| unfence_broker(s, 2));
        assert_eq!(leadership(&s), (1, vec![1], vec![2]));
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(leadership(&s), (2, vec![2], vec![1]));
    }

    #[test]
    fn alter_partition_takes_isr_members_out_of_the_elr_and_clears_it_at_min_insync() {
        let (mut s, id) = with_partition(3, &[1, 2, 3]);
        set_min_insync(&mut s, id, "3");
        run(&mut s, |s| fence_broker(s, 3));
        run(&mut s, |s| fence_broker(s, 2));
        assert_eq!(leadership(&s), (1, vec![1], vec![2, 3]));
        run(&mut s, |s| unfence_broker(s, 2));
        run(&mut s, |s| unfence_broker(s, 3));
        let (_, _, le, pe) = summary(&s);
        // A shrink or same-size change below min.insync.replicas keeps the others.
        run(&mut s, |s| alter_partition(s, id, 0, 1, le, pe, vec![1]));
        assert_eq!(leadership(&s), (1, vec![1], vec![2, 3]));
        // 2 caught up: in the ISR, out of the ELR.
        run(&mut s, |s| alter_partition(s, id, 0, 1, le, pe, vec![1, 2]));
        assert_eq!(leadership(&s), (1, vec![1, 2], vec![3]));
        assert_eq!(summary(&s).3, pe + 1);
        // At min.insync.replicas=2 the high watermark may advance again, so 3 is no longer
        // known to hold every committed record. (A config change should come with
        // `clear_stale_elr`; without it, the next AlterPartition clears the ELR, even one
        // that leaves the ISR as it is.)
        set_min_insync(&mut s, id, "2");
        run(&mut s, |s| {
            alter_partition(s, id, 0, 1, le, pe + 1, vec![2, 1])
        });
        assert_eq!(leadership(&s), (1, vec![1, 2], vec![]));
        assert_eq!(summary(&s).3, pe + 2);
    }

    #[test]
    fn elect_preferred_leaders_uses_the_elr_for_offline_partitions() {
        let mut s = cluster(3);
        let id = Uuid::from_u128(42);
        s.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            topic_id: id,
            partitions: vec![PartitionRecord {
                partition: 0,
                replicas: vec![1, 2, 3],
                isr: vec![1],
                leader: NO_LEADER,
                leader_epoch: 3,
                partition_epoch: 5,
                elr: vec![3],
                adding_replicas: vec![],
                removing_replicas: vec![],
            }],
            configs: BTreeMap::new(),
        });
        // Not a state the controller leaves (an offline partition with an unfenced ELR
        // member), but the preferred election repairs it.
        s.apply(&MetadataRecord::FenceBroker { broker_id: 1 });
        let recs = elect_preferred_leaders(&s).unwrap();
        assert_eq!(
            recs,
            vec![MetadataRecord::PartitionChange {
                topic_id: id,
                partition: 0,
                leader: 3,
                isr: vec![3],
                leader_epoch: 4,
                partition_epoch: 6,
                elr: vec![1],
            }]
        );
        apply(&mut s, &recs);
        assert_eq!(elect_preferred_leaders(&s), Ok(vec![]));
    }

    /// The simulation's scenario: broker 3's disk is replaced while ISR = {2, 3}; 2 and then
    /// 3 are fenced; both restart, 3 empty. Broker 2, which holds every acknowledged record,
    /// must lead; 3 must not until it has re-replicated and rejoined the ISR.
    #[test]
    fn a_broker_that_lost_its_disk_is_never_elected_while_empty() {
        for two_first in [true, false] {
            let (mut s, id) = with_partition(3, &[1, 2, 3]);
            run(&mut s, |s| fence_broker(s, 1));
            assert_eq!(leadership(&s), (2, vec![2, 3], vec![]));
            // 3 is killed (its disk will be replaced), then 2 is killed and fenced first.
            run(&mut s, |s| fence_broker(s, 2));
            assert_eq!(leadership(&s), (3, vec![3], vec![2]));
            run(&mut s, |s| fence_broker(s, 3));
            assert_eq!(leadership(&s), (NO_LEADER, vec![3], vec![2]));
            if two_first {
                restart(&mut s, 2, 1, &[]);
                assert_eq!(
                    leadership(&s),
                    (2, vec![2], vec![3]),
                    "2 leads from the ELR"
                );
                restart(&mut s, 3, 1, &[(id, 0)]);
            } else {
                restart(&mut s, 3, 1, &[(id, 0)]);
                assert_eq!(
                    leadership(&s),
                    (NO_LEADER, vec![], vec![2]),
                    "the empty 3 leaves the ISR even as its last member, and does not lead"
                );
                assert_eq!(elect_preferred_leaders(&s), Ok(vec![]));
                restart(&mut s, 2, 1, &[]);
            }
            assert_eq!(
                leadership(&s),
                (2, vec![2], vec![]),
                "two_first {two_first}"
            );
            // 3 re-replicates from 2 and rejoins the ISR; only then may it lead.
            assert_eq!(elect_preferred_leaders(&s), Ok(vec![]));
            let (_, _, le, pe) = summary(&s);
            run(&mut s, |s| alter_partition(s, id, 0, 2, le, pe, vec![2, 3]));
            run(&mut s, |s| fence_broker(s, 2));
            assert_eq!(leadership(&s), (3, vec![3], vec![2]));
        }
    }

    #[test]
    fn a_lost_log_moves_leadership_to_the_isr_then_the_elr() {
        // The leader lost its log while others are in sync: the next ISR member leads.
        let (mut s, id) = with_partition(3, &[1, 2, 3]);
        let recs = restart(&mut s, 1, 1, &[(id, 0)]);
        assert!(matches!(recs[0], MetadataRecord::RegisterBroker { .. }));
        assert_eq!(leadership(&s), (2, vec![2, 3], vec![]));
        assert_eq!(summary(&s).2, 1, "new leader epoch");
        // A follower that lost its log just leaves the ISR (and does not join the ELR).
        restart(&mut s, 3, 1, &[(id, 0)]);
        assert_eq!(leadership(&s), (2, vec![2], vec![]));
        // The sole member lost its log while leading: nobody may lead.
        restart(&mut s, 2, 1, &[(id, 0)]);
        assert_eq!(leadership(&s), (NO_LEADER, vec![], vec![]));
        assert_eq!(summary(&s).2, 2);
        // It stays offline: no unclean election, whoever comes back.
        for b in 1..=3 {
            run(&mut s, |s| fence_broker(s, b));
            run(&mut s, |s| unfence_broker(s, b));
            restart(&mut s, b, 2, &[]);
        }
        assert_eq!(elect_preferred_leaders(&s), Ok(vec![]));
        assert_eq!(leadership(&s), (NO_LEADER, vec![], vec![]));
    }

    #[test]
    fn a_lost_log_of_the_last_isr_member_elects_an_elr_member() {
        let (mut s, id) = with_partition(3, &[1, 2, 3]);
        set_min_insync(&mut s, id, "3");
        run(&mut s, |s| fence_broker(s, 3));
        run(&mut s, |s| fence_broker(s, 2));
        run(&mut s, |s| unfence_broker(s, 2));
        assert_eq!(leadership(&s), (1, vec![1], vec![2, 3]));
        restart(&mut s, 1, 1, &[(id, 0)]);
        assert_eq!(leadership(&s), (2, vec![2], vec![3]));
        // An ELR member that lost its log leaves the ELR.
        restart(&mut s, 3, 1, &[(id, 0)]);
        assert_eq!(leadership(&s), (2, vec![2], vec![]));
    }

    #[test]
    fn lost_logs_are_read_once_per_incarnation_and_unknown_ones_ignored() {
        let (mut s, id) = with_partition(3, &[1, 2, 3]);
        let lost = [(id, 0), (id, 7), (Uuid::from_u128(9), 0)];
        restart(&mut s, 1, 1, &lost);
        assert_eq!(leadership(&s), (2, vec![2, 3], vec![]));
        let (_, _, le, pe) = summary(&s);
        run(&mut s, |s| {
            alter_partition(s, id, 0, 2, le, pe, vec![2, 3, 1])
        });
        // A retry of the same registration changes nothing.
        let retry =
            register_broker_with_lost(&s, 1, "127.0.0.1", 9092, None, Uuid::from_u128(1), &lost);
        assert_eq!(retry, Ok(vec![]));
        // A partition it is no replica of is ignored.
        let (mut s, id) = with_partition(3, &[2, 3]);
        let recs = restart(&mut s, 1, 1, &[(id, 0)]);
        assert_eq!(recs.len(), 1, "{recs:?}");
    }

    #[test]
    fn a_restarted_broker_that_keeps_its_log_stays_eligible() {
        let (mut s, _) = with_partition(3, &[1, 2, 3]);
        run(&mut s, |s| fence_broker(s, 3));
        // 2 restarts without being fenced: it leaves the ISR, which falls below
        // min.insync.replicas=2, so it joins the ELR (acks=all records are on its disk).
        restart(&mut s, 2, 1, &[]);
        assert_eq!(leadership(&s), (1, vec![1], vec![2]));
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(leadership(&s), (2, vec![2], vec![1]));
    }

    #[test]
    fn lowering_min_insync_clears_stale_elrs() {
        let (mut s, id) = with_partition(3, &[1, 2, 3]);
        run(&mut s, |s| fence_broker(s, 3));
        run(&mut s, |s| fence_broker(s, 2));
        assert_eq!(leadership(&s), (1, vec![1], vec![2]));
        let mut configs = BTreeMap::new();
        configs.insert("min.insync.replicas".to_owned(), "3".to_owned());
        assert_eq!(clear_stale_elr(&s, id, &configs), vec![]);
        configs.insert("min.insync.replicas".to_owned(), "1".to_owned());
        let recs = clear_stale_elr(&s, id, &configs);
        assert_eq!(recs.len(), 1);
        apply(&mut s, &recs);
        assert_eq!(leadership(&s), (1, vec![1], vec![]));
        assert_eq!(clear_stale_elr(&s, Uuid::from_u128(9), &configs), vec![]);
    }

    #[test]
    fn records_without_an_elr_still_read() {
        let change: MetadataRecord = serde_json::from_str(
            r#"{"type":"PartitionChange","topic_id":"00000000-0000-0000-0000-000000000000","partition":0,"leader":-1,"isr":[1],"leader_epoch":1,"partition_epoch":2}"#,
        )
        .unwrap();
        assert!(
            matches!(change, MetadataRecord::PartitionChange { ref elr, .. } if elr.is_empty())
        );
        let p: PartitionRecord = serde_json::from_str(
            r#"{"partition":0,"replicas":[1],"isr":[1],"leader":1,"leader_epoch":0,"partition_epoch":0}"#,
        )
        .unwrap();
        assert!(p.elr.is_empty());
    }

    /// (replicas, adding, removing, leader, isr) of partition t-0.
    fn placement(s: &ClusterState) -> (Vec<i32>, Vec<i32>, Vec<i32>, i32, Vec<i32>) {
        let p = p0(s);
        (
            p.replicas.clone(),
            p.adding_replicas.clone(),
            p.removing_replicas.clone(),
            p.leader,
            p.isr.clone(),
        )
    }

    fn reassign(s: &mut ClusterState, target: Option<Vec<i32>>) {
        let id = p0_id(s);
        run(s, |s| alter_partition_reassignment(s, id, 0, target));
    }

    #[test]
    fn a_reassignment_adds_then_completes_once_the_new_replicas_are_in_sync() {
        let (mut s, id) = with_partition(3, &[1, 2]);
        reassign(&mut s, Some(vec![2, 3]));
        assert_eq!(
            placement(&s),
            (vec![2, 3, 1], vec![3], vec![1], 1, vec![1, 2])
        );
        assert_eq!((summary(&s).2, summary(&s).3), (0, 1), "epochs");
        assert_eq!(complete_reassignments(&s), vec![], "3 is not in sync yet");
        // A replica being added is a follower like any other: the leader adds it.
        run(&mut s, |s| {
            alter_partition(s, id, 0, 1, 0, 1, vec![1, 2, 3])
        });
        let recs = complete_reassignments(&s);
        assert_eq!(recs.len(), 1, "{recs:?}");
        apply(&mut s, &recs);
        assert_eq!(placement(&s), (vec![2, 3], vec![], vec![], 2, vec![2, 3]));
        assert_eq!(
            (summary(&s).2, summary(&s).3),
            (1, 3),
            "leader moved: epoch bumped"
        );
        assert_eq!(complete_reassignments(&s), vec![]);
        assert_eq!(reassignments_in_progress(&s).count(), 0);
    }

    #[test]
    fn cancelling_returns_to_the_original_replicas() {
        let (mut s, id) = with_partition(3, &[1, 2]);
        assert_eq!(
            alter_partition_reassignment(&s, id, 0, None),
            Err(ReassignmentError::NoReassignmentInProgress {
                topic: "t".into(),
                partition: 0
            })
        );
        reassign(&mut s, Some(vec![3, 2]));
        assert_eq!(
            placement(&s),
            (vec![3, 2, 1], vec![3], vec![1], 1, vec![1, 2])
        );
        // 3 caught up and even leads, then the reassignment is cancelled.
        run(&mut s, |s| {
            alter_partition(s, id, 0, 1, 0, 1, vec![1, 2, 3])
        });
        run(&mut s, elect_preferred_leaders);
        assert_eq!(placement(&s).3, 3);
        reassign(&mut s, None);
        assert_eq!(placement(&s), (vec![2, 1], vec![], vec![], 2, vec![1, 2]));
        assert!(alter_partition_reassignment(&s, id, 0, None).is_err());
    }

    #[test]
    fn a_new_target_replaces_the_reassignment_in_progress() {
        let (mut s, _) = with_partition(4, &[1, 2]);
        reassign(&mut s, Some(vec![3, 4]));
        assert_eq!(
            placement(&s),
            (vec![3, 4, 1, 2], vec![3, 4], vec![1, 2], 1, vec![1, 2])
        );
        // 4 is dropped at once; the original replicas are still 1 and 2.
        reassign(&mut s, Some(vec![1, 3]));
        assert_eq!(
            placement(&s),
            (vec![1, 3, 2], vec![3], vec![2], 1, vec![1, 2])
        );
    }

    #[test]
    fn a_shrink_or_reorder_completes_at_once() {
        let (mut s, _) = with_partition(3, &[1, 2, 3]);
        let recs = alter_partition_reassignment(&s, p0_id(&s), 0, Some(vec![2, 1])).unwrap();
        assert_eq!(recs.len(), 1, "{recs:?}");
        apply(&mut s, &recs);
        assert_eq!(placement(&s), (vec![2, 1], vec![], vec![], 1, vec![1, 2]));
        assert_eq!(summary(&s).3, 1, "one partition epoch");
        // The same replicas again: nothing to do.
        assert_eq!(
            alter_partition_reassignment(&s, p0_id(&s), 0, Some(vec![2, 1])),
            Ok(vec![])
        );
        reassign(&mut s, Some(vec![1, 2]));
        assert_eq!(placement(&s), (vec![1, 2], vec![], vec![], 1, vec![1, 2]));
    }

    #[test]
    fn reassignment_targets_are_validated() {
        let (mut s, id) = with_partition(4, &[1, 2]);
        run(&mut s, |s| fence_broker(s, 4));
        for (target, why) in [
            (vec![], "it is empty"),
            (vec![1, 1], "twice"),
            (vec![1, 9], "not registered"),
            (vec![1, -1], "not registered"),
            (vec![1, 4], "fenced"),
        ] {
            match alter_partition_reassignment(&s, id, 0, Some(target.clone())) {
                Err(e @ ReassignmentError::InvalidReplicas { .. }) => {
                    assert!(e.to_string().contains(why), "{target:?}: {e}")
                }
                other => panic!("{target:?}: {other:?}"),
            }
        }
        assert!(matches!(
            alter_partition_reassignment(&s, id, 1, Some(vec![1])),
            Err(ReassignmentError::UnknownPartition { .. })
        ));
        assert!(matches!(
            alter_partition_reassignment(&s, Uuid::from_u128(9), 0, Some(vec![1])),
            Err(ReassignmentError::UnknownTopicId { .. })
        ));
    }

    #[test]
    fn a_reassignment_never_leaves_a_partition_without_an_in_sync_leader() {
        // Shrinking to a replica outside the ISR waits until it is back in sync.
        let (mut s, id) = with_partition(3, &[1, 2, 3]);
        run(&mut s, |s| alter_partition(s, id, 0, 1, 0, 0, vec![1, 2]));
        reassign(&mut s, Some(vec![3]));
        assert_eq!(
            placement(&s),
            (vec![3, 1, 2], vec![], vec![1, 2], 1, vec![1, 2])
        );
        assert_eq!(complete_reassignments(&s), vec![]);
        run(&mut s, |s| {
            alter_partition(s, id, 0, 1, 0, 2, vec![1, 2, 3])
        });
        let recs = complete_reassignments(&s);
        apply(&mut s, &recs);
        assert_eq!(placement(&s), (vec![3], vec![], vec![], 3, vec![3]));
        // Cancelling when only adding replicas are in sync is refused.
        let (mut s, id) = with_partition(3, &[1, 2]);
        reassign(&mut s, Some(vec![1, 3]));
        run(&mut s, |s| alter_partition(s, id, 0, 1, 0, 1, vec![1, 3]));
        run(&mut s, |s| fence_broker(s, 1));
        assert_eq!(placement(&s).3, 3);
        assert!(matches!(
            alter_partition_reassignment(&s, id, 0, None),
            Err(ReassignmentError::WouldLoseLeadership { .. })
        ));
        // A move off the leader waits while the in-sync target replicas are fenced.
        let (mut s, id) = with_partition(3, &[1, 2]);
        reassign(&mut s, Some(vec![2, 3]));
        run(&mut s, |s| {
            alter_partition(s, id, 0, 1, 0, 1, vec![1, 2, 3])
        });
        run(&mut s, |s| fence_broker(s, 2));
        run(&mut s, |s| fence_broker(s, 3));
        assert_eq!(placement(&s).3, 1);
        assert_eq!(complete_reassignments(&s), vec![]);
        run(&mut s, |s| unfence_broker(s, 3));
        // 3 left the ISR when fenced: it must catch up again first.
        assert_eq!(complete_reassignments(&s), vec![]);
        let (_, _, le, pe) = summary(&s);
        run(&mut s, |s| alter_partition(s, id, 0, 1, le, pe, vec![1, 3]));
        let recs = complete_reassignments(&s);
        apply(&mut s, &recs);
        assert_eq!(placement(&s), (vec![2, 3], vec![], vec![], 3, vec![3]));
    }

    #[test]
    fn completing_a_replication_factor_change_of_partition_0_keeps_elrs_consistent() {
        // Partition 0 goes from 3 replicas to 2: the default min.insync.replicas falls from
        // 2 to 1, so partition 1's ELR (kept while its ISR was below 2) is cleared.
        let mut s = cluster(3);
        let id = Uuid::from_u128(42);
        let p = |i: i32| PartitionRecord {
            partition: i,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            elr: vec![],
            adding_replicas: vec![],
            removing_replicas: vec![],
        };
        s.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            topic_id: id,
            partitions: vec![p(0), p(1)],
            configs: BTreeMap::new(),
        });
        run(&mut s, |s| fence_broker(s, 3));
        run(&mut s, |s| fence_broker(s, 2));
        let p1 = &s.topic("t").unwrap().partitions[1];
        assert_eq!((p1.isr.clone(), p1.elr.clone()), (vec![1], vec![2]));
        run(&mut s, |s| unfence_broker(s, 2));
        let (_, _, le, pe) = summary(&s);
        run(&mut s, |s| alter_partition(s, id, 0, 1, le, pe, vec![1, 2]));
        assert_eq!(min_insync(s.topic("t").unwrap()), 2);
        reassign(&mut s, Some(vec![1, 2]));
        assert_eq!(min_insync(s.topic("t").unwrap()), 1);
        assert!(s.topic("t").unwrap().partitions[1].elr.is_empty());
    }

    #[test]
    fn reassignment_state_reads_from_old_json_and_is_left_out_when_empty() {
        let (s, _) = with_partition(3, &[1, 2]);
        let json = serde_json::to_string(p0(&s)).unwrap();
        assert!(!json.contains("adding_replicas"), "{json}");
        let mut p = p0(&s).clone();
        p.adding_replicas = vec![3];
        p.replicas.push(3);
        let record = MetadataRecord::PartitionReassignment {
            topic_id: Uuid::nil(),
            partition: p,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&json).unwrap(),
            record
        );
    }
}
