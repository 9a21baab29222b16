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
//! ## Replication (KRaft's `ReplicationControlManager`)
//! Each partition has `replicas` (fixed here), an ISR (in-sync replicas, never empty, always
//! within `replicas`) and a leader that is either -1 (offline) or an unfenced ISR member.
//! The functions below refuse with a [`ReplicationError`] and emit
//! [`MetadataRecord::PartitionChange`]s under these rules:
//! - **Epochs.** Every change bumps `partition_epoch` by one; a change of leader (to or
//!   from -1 included) bumps `leader_epoch` by one. Neither ever decreases.
//! - **Election.** A new leader is the first broker in `replicas` order that is in the
//!   (new) ISR and unfenced; if there is none the leader becomes -1. A broker outside the
//!   ISR is never elected (no unclean election), so a partition whose only ISR member is
//!   fenced stays offline until that broker is back.
//! - **ISR shrink on fencing.** A fenced broker leaves every ISR, except that an ISR is
//!   never shrunk to empty: its last member stays (Kafka keeps it, so it can lead again).
//! - [`fence_broker`] (session expired, controlled shutdown): `FenceBroker` plus the ISR
//!   shrinks and leader moves above.
//! - [`unfence_broker`]: `UnfenceBroker`; the broker becomes leader of every offline
//!   partition whose ISR contains it.
//! - [`register_broker`]: `RegisterBroker` (which leaves the broker unfenced). A new
//!   incarnation means the broker restarted and may have lost unflushed data: it leaves
//!   ISRs and leaderships exactly as when fenced, except where it is the ISR's only member,
//!   where it becomes (or stays) leader with a bumped `leader_epoch` so followers truncate.
//! - [`alter_partition`]: the leader's ISR shrink/expand (AlterPartition), checked against
//!   its leader epoch and the partition epoch it last saw.
//! - [`elect_preferred_leaders`] (`auto.leader.rebalance.enable`): moves leadership back to
//!   `replicas[0]` where it is unfenced and in the ISR, and elects a leader for offline
//!   partitions that have an unfenced ISR member.
//!
//! Every function returns records that apply, in order, to the state it was given.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::records::{MetadataRecord, PartitionRecord};
use crate::state::ClusterState;

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
    let replication_factor = topic.partitions[0].replicas.len() as i32;
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

/// The first broker in `replicas` order that is in `isr` and `eligible`, else
/// [`NO_LEADER`]: Kafka's clean leader election.
fn elect(replicas: &[i32], isr: &[i32], eligible: impl Fn(i32) -> bool) -> i32 {
    replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && eligible(*r))
        .unwrap_or(NO_LEADER)
}

/// The `PartitionChange` that gives partition `p` of `topic_id` leader `leader` and ISR
/// `isr`, or `None` if nothing changes and `bump_leader_epoch` is false. The partition
/// epoch grows by one; the leader epoch when the leader changes or `bump_leader_epoch`.
fn change(
    topic_id: Uuid,
    p: &PartitionRecord,
    leader: i32,
    isr: Vec<i32>,
    bump_leader_epoch: bool,
) -> Option<MetadataRecord> {
    let leader_changed = leader != p.leader;
    if !leader_changed && !bump_leader_epoch && isr == p.isr {
        return None;
    }
    Some(MetadataRecord::PartitionChange {
        topic_id,
        partition: p.partition,
        leader,
        isr,
        leader_epoch: p.leader_epoch + i32::from(leader_changed || bump_leader_epoch),
        partition_epoch: p.partition_epoch + 1,
    })
}

/// Every partition of every live topic, in topic name and partition order.
fn all_partitions(state: &ClusterState) -> impl Iterator<Item = (Uuid, &PartitionRecord)> {
    state
        .topics()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, p)))
}

/// The partition changes when `broker_id` can no longer be trusted as a replica: it leaves
/// every ISR it is in unless it is the last member, and partitions it led elect another
/// unfenced ISR member or go offline. With `restarted` (a new incarnation that is
/// registering, hence unfenced), an ISR it is the last member of keeps it as leader, with a
/// bumped leader epoch.
fn leave_isrs(state: &ClusterState, broker_id: i32, restarted: bool) -> Vec<MetadataRecord> {
    all_partitions(state)
        .filter(|(_, p)| p.isr.contains(&broker_id))
        .filter_map(|(topic_id, p)| {
            if p.isr.iter().all(|&r| r == broker_id) {
                return if restarted {
                    change(topic_id, p, broker_id, p.isr.clone(), true)
                } else {
                    change(topic_id, p, NO_LEADER, p.isr.clone(), false)
                };
            }
            let isr: Vec<i32> = p.isr.iter().copied().filter(|&r| r != broker_id).collect();
            let leader = if p.leader == broker_id || p.leader == NO_LEADER {
                elect(&p.replicas, &isr, |r| r != broker_id && !state.is_fenced(r))
            } else {
                p.leader
            };
            change(topic_id, p, leader, isr, false)
        })
        .collect()
}

/// The partition changes when `broker_id` becomes able to lead: it leads every offline
/// partition whose ISR contains it.
fn lead_offline(state: &ClusterState, broker_id: i32) -> Vec<MetadataRecord> {
    all_partitions(state)
        .filter(|(_, p)| p.leader == NO_LEADER && p.isr.contains(&broker_id))
        .filter_map(|(topic_id, p)| change(topic_id, p, broker_id, p.isr.clone(), false))
        .collect()
}

/// The records that fence `broker_id`: its heartbeat session expired, or it is in
/// controlled shutdown. `FenceBroker`, then a `PartitionChange` for every partition whose
/// ISR contains it: it leaves the ISR unless it is the last member, and where it led, the
/// first replica that is in the new ISR and unfenced leads instead (-1 if none). Fencing a
/// fenced broker returns no records.
pub fn fence_broker(
    state: &ClusterState,
    broker_id: i32,
) -> Result<Vec<MetadataRecord>, ReplicationError> {
    if known_broker(state, broker_id)?.fenced {
        return Ok(Vec::new());
    }
    let mut records = vec![MetadataRecord::FenceBroker { broker_id }];
    records.extend(leave_isrs(state, broker_id, false));
    Ok(records)
}

/// The records that unfence `broker_id` (its heartbeats resumed and it caught up):
/// `UnfenceBroker`, then it becomes leader of every offline partition (leader -1) whose ISR
/// contains it. Unfencing an unfenced broker returns no records.
pub fn unfence_broker(
    state: &ClusterState,
    broker_id: i32,
) -> Result<Vec<MetadataRecord>, ReplicationError> {
    if !known_broker(state, broker_id)?.fenced {
        return Ok(Vec::new());
    }
    let mut records = vec![MetadataRecord::UnfenceBroker { broker_id }];
    records.extend(lead_offline(state, broker_id));
    Ok(records)
}

/// The records that register broker `broker_id` (on every start; `incarnation` is new for
/// each process). The broker is unfenced afterwards.
/// - First registration: `RegisterBroker`.
/// - A different incarnation (the broker restarted and may have lost unflushed data):
///   `RegisterBroker` plus the partition changes fencing it would make (it leaves ISRs where
///   others remain, and leadership moves to the first other unfenced ISR member in replica
///   order, or -1), except that where it is the ISR's only member it becomes (or stays)
///   leader with a bumped leader epoch, so that followers truncate to what it has.
/// - The same incarnation: nothing if the broker is unfenced and its host, port and rack
///   are unchanged; `RegisterBroker` if they changed; and if it was fenced, `RegisterBroker`
///   plus leadership of every offline partition whose ISR contains it (as
///   [`unfence_broker`]).
pub fn register_broker(
    state: &ClusterState,
    broker_id: i32,
    host: &str,
    port: u16,
    rack: Option<String>,
    incarnation: Uuid,
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
    let Some(previous) = previous else {
        return Ok(vec![record]);
    };
    let mut records = Vec::new();
    if previous.incarnation != incarnation {
        records.push(record);
        records.extend(leave_isrs(state, broker_id, true));
    } else if previous.fenced {
        records.push(record);
        records.extend(lead_offline(state, broker_id));
    } else if previous.host != host || previous.port != port || previous.rack != rack {
        records.push(record);
    }
    Ok(records)
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
/// leader and leader epoch and `partition_epoch + 1`, or no record if the ISR (as a set) is
/// unchanged. The ISR is stored in the order given.
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
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
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
    if members == p.isr.iter().copied().collect() {
        return Ok(Vec::new());
    }
    Ok(change(topic_id, p, p.leader, new_isr, false)
        .into_iter()
        .collect())
}

/// The records of a preferred leader election (`auto.leader.rebalance.enable`, or an
/// ElectLeaders request for every partition): each partition whose preferred replica
/// (`replicas[0]`) is unfenced, in the ISR and not the leader gets it as leader; each
/// offline partition (leader -1) whose preferred replica cannot lead gets the first
/// unfenced ISR member in replica order, if any. Epochs are bumped as for any leader change.
pub fn elect_preferred_leaders(
    state: &ClusterState,
) -> Result<Vec<MetadataRecord>, ReplicationError> {
    Ok(all_partitions(state)
        .filter_map(|(topic_id, p)| {
            let eligible = |r: i32| !state.is_fenced(r);
            let preferred = *p.replicas.first()?;
            let leader = if p.isr.contains(&preferred) && eligible(preferred) {
                preferred
            } else if p.leader == NO_LEADER {
                elect(&p.replicas, &p.isr, eligible)
            } else {
                p.leader
            };
            change(topic_id, p, leader, p.isr.clone(), false)
        })
        .collect())
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
        };
        let json = serde_json::to_string(&change).unwrap();
        assert!(json.contains(r#""type":"PartitionChange""#), "{json}");
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&json).unwrap(),
            change
        );
    }
}
