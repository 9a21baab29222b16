//! Property test of the controller's replication duties: random sequences of fencing,
//! unfencing, restarts (registration with a new incarnation, some reporting lost partition
//! logs), AlterPartition proposals (random ISRs, sometimes stale or from the wrong broker),
//! preferred leader elections, `min.insync.replicas` changes, acknowledged writes, topic
//! creations and partition reassignments (started, replaced, cancelled, completed) over a
//! 3–5 broker cluster. Every step's records are applied (a record that
//! does not apply panics), and the partition invariants are checked after each step.
//!
//! A model of *holders* tracks, per partition, the replicas guaranteed to hold every
//! acknowledged (`acks=all`) record: an acknowledgement is possible only while the ISR has
//! at least `min.insync.replicas` members and makes the holders exactly the ISR; a restart
//! that lost the partition's log removes the broker; an AlterPartition that adds a replica to
//! the ISR adds it (it caught up); a replica a reassignment removes is no holder any more
//! (its log is deleted), and one it adds holds nothing until it joins the ISR. No election
//! may ever pick a leader outside the holders: that would lose acknowledged records.

use std::collections::{BTreeMap, BTreeSet};

use cairn_meta::controller::{self, NO_LEADER, ReassignmentError, ReplicationError};
use cairn_meta::{ClusterState, MetadataRecord, PartitionRecord};
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    Fence(usize),
    Unfence(usize),
    /// Registration with a new incarnation (the broker process restarted).
    Restart(usize),
    /// A restart that lost the logs of the partitions (among all, in topic and partition
    /// order) whose bit is set in the mask, and of which the broker is a replica.
    RestartLosing(usize, u64),
    /// An `acks=all` write to a partition, if its leader may acknowledge one.
    Ack {
        topic: usize,
        partition: usize,
    },
    /// `min.insync.replicas` of a topic set (or removed: `None`).
    SetMinInsync {
        topic: usize,
        value: Option<i32>,
    },
    /// Registration with the same incarnation (a retry, or a fenced broker coming back).
    Reregister(usize),
    Alter {
        topic: usize,
        partition: usize,
        /// Which replicas the proposed ISR holds (bit i: `replicas[i]`).
        isr_mask: u8,
        /// Propose as this broker instead of the leader.
        requester: Option<usize>,
        leader_epoch_lag: i32,
        partition_epoch_lag: i32,
    },
    ElectPreferred,
    /// AlterPartitionReassignments for one partition: cancel, or move to the brokers whose
    /// bit is set in `mask` (bit i: broker i + 1; bit 6 an unregistered broker), rotated by
    /// `rotate`.
    Reassign {
        topic: usize,
        partition: usize,
        mask: u8,
        rotate: usize,
        cancel: bool,
    },
    /// The active controller's completion check.
    CompleteReassignments,
    CreateTopic {
        partitions: i32,
        replication_factor: i32,
        start_index: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..5usize).prop_map(Op::Fence),
        3 => (0..5usize).prop_map(Op::Unfence),
        2 => (0..5usize).prop_map(Op::Restart),
        2 => (0..5usize, any::<u64>()).prop_map(|(b, mask)| Op::RestartLosing(b, mask)),
        4 => (0..8usize, 0..4usize).prop_map(|(topic, partition)| Op::Ack { topic, partition }),
        1 => (0..8usize, prop::option::of(1..=3i32))
            .prop_map(|(topic, value)| Op::SetMinInsync { topic, value }),
        1 => (0..5usize).prop_map(Op::Reregister),
        6 => (
            0..8usize,
            0..4usize,
            any::<u8>(),
            prop::option::weighted(0.2, 0..5usize),
            prop_oneof![4 => Just(0), 1 => 0..3i32],
            prop_oneof![4 => Just(0), 1 => 0..3i32],
        )
            .prop_map(
                |(topic, partition, isr_mask, requester, leader_epoch_lag, partition_epoch_lag)| {
                    Op::Alter {
                        topic,
                        partition,
                        isr_mask,
                        requester,
                        leader_epoch_lag,
                        partition_epoch_lag,
                    }
                }
            ),
        2 => Just(Op::ElectPreferred),
        4 => (0..8usize, 0..4usize, any::<u8>(), any::<usize>(), prop::bool::weighted(0.2))
            .prop_map(|(topic, partition, mask, rotate, cancel)| Op::Reassign {
                topic,
                partition,
                mask: mask & 0x7f,
                rotate,
                cancel,
            }),
        3 => Just(Op::CompleteReassignments),
        1 => (1..4i32, 1..4i32, any::<usize>()).prop_map(|(partitions, replication_factor, start_index)| {
            Op::CreateTopic {
                partitions,
                replication_factor,
                start_index,
            }
        }),
    ]
}

fn broker_id(brokers: i32, index: usize) -> i32 {
    1 + (index as i32 % brokers)
}

fn incarnation(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

/// A cluster of `brokers` brokers (ids 1..=brokers, racks "a"/"b" when `racks`) and
/// `topics` topics of up to 3 partitions.
fn cluster(brokers: i32, racks: bool, topics: &[(i32, i32, usize)]) -> ClusterState {
    let mut state = ClusterState::default();
    for b in 1..=brokers {
        let rack = racks.then(|| if b % 2 == 0 { "a" } else { "b" }.to_owned());
        let records =
            controller::register_broker(&state, b, "127.0.0.1", 9092, rack, incarnation(0))
                .unwrap();
        apply(&mut state, &records);
    }
    for (i, &(partitions, rf, start)) in topics.iter().enumerate() {
        let rf = rf.min(brokers);
        let records = controller::create_topic(
            &state,
            &format!("topic-{i}"),
            partitions,
            rf,
            BTreeMap::new(),
            Uuid::from_u128(1000 + i as u128),
            start,
        )
        .unwrap();
        apply(&mut state, &records);
    }
    state
}

fn apply(state: &mut ClusterState, records: &[MetadataRecord]) {
    for r in records {
        let json = serde_json::to_string(r).unwrap();
        assert_eq!(&serde_json::from_str::<MetadataRecord>(&json).unwrap(), r);
        state.apply(r);
    }
}

fn partitions(state: &ClusterState) -> BTreeMap<(Uuid, i32), PartitionRecord> {
    state
        .topics()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| ((t.topic_id, p.partition), p.clone()))
        })
        .collect()
}

/// Per partition, the replicas guaranteed to hold every acknowledged record.
type Holders = BTreeMap<(Uuid, i32), BTreeSet<i32>>;

/// `min.insync.replicas` of the topic with id `topic_id` in `state`.
fn min_insync(state: &ClusterState, topic_id: Uuid) -> i32 {
    controller::min_insync(state.topic_by_id(topic_id).unwrap())
}

/// The invariants of every partition of `after`, reached from `before` in one step that
/// produced `records`, with `holders` as updated for that step.
fn check(
    before: &ClusterState,
    after: &ClusterState,
    records: &[MetadataRecord],
    holders: &Holders,
) {
    let old = partitions(before);
    for ((topic_id, partition), p) in partitions(after) {
        let at = format!("{topic_id}-{partition} {p:?} after {records:?}");
        let isr: BTreeSet<i32> = p.isr.iter().copied().collect();
        let elr: BTreeSet<i32> = p.elr.iter().copied().collect();
        assert!(
            !p.isr.is_empty() || p.leader == NO_LEADER,
            "empty ISR with a leader: {at}"
        );
        assert_eq!(isr.len(), p.isr.len(), "ISR repeats a broker: {at}");
        assert_eq!(elr.len(), p.elr.len(), "ELR repeats a broker: {at}");
        assert!(isr.is_disjoint(&elr), "ISR and ELR overlap: {at}");
        assert!(
            isr.iter().chain(&elr).all(|r| p.replicas.contains(r)),
            "ISR or ELR not within replicas: {at}"
        );
        if !p.elr.is_empty() {
            assert!(
                (p.isr.len() as i32) < min_insync(after, topic_id),
                "ELR kept although the ISR reaches min.insync.replicas: {at}"
            );
        }
        if p.leader != NO_LEADER {
            assert!(isr.contains(&p.leader), "leader outside the ISR: {at}");
            assert!(p.replicas.contains(&p.leader), "leader not a replica: {at}");
            assert!(!after.is_fenced(p.leader), "fenced leader: {at}");
        } else {
            assert!(
                p.isr.iter().chain(&p.elr).all(|&r| after.is_fenced(r)),
                "offline although an ISR or ELR member is unfenced: {at}"
            );
        }
        if p.isr.iter().any(|&r| after.is_fenced(r)) {
            assert_eq!(p.isr.len(), 1, "a fenced broker shares an ISR: {at}");
        }
        // No acknowledged record is lost: whoever leads, or may be elected, holds them all.
        let held = &holders[&(topic_id, partition)];
        assert!(
            p.leader == NO_LEADER || held.contains(&p.leader),
            "leader {} may miss acknowledged records (holders {held:?}): {at}",
            p.leader
        );
        assert!(
            isr.iter().chain(&elr).all(|r| held.contains(r)),
            "an ISR or ELR member may miss acknowledged records (holders {held:?}): {at}"
        );
        let Some(o) = old.get(&(topic_id, partition)) else {
            assert_eq!(
                (p.leader_epoch, p.partition_epoch),
                (0, 0),
                "new partition: {at}"
            );
            continue;
        };
        let replicas: BTreeSet<i32> = p.replicas.iter().copied().collect();
        assert_eq!(
            replicas.len(),
            p.replicas.len(),
            "replicas repeat a broker: {at}"
        );
        assert!(
            p.adding_replicas
                .iter()
                .chain(&p.removing_replicas)
                .all(|r| replicas.contains(r))
                && p.adding_replicas
                    .iter()
                    .all(|r| !p.removing_replicas.contains(r)),
            "adding or removing replicas not distinct replicas: {at}"
        );
        if o.replicas != p.replicas
            || o.adding_replicas != p.adding_replicas
            || o.removing_replicas != p.removing_replicas
        {
            assert!(
                records.iter().any(|r| matches!(
                    r,
                    MetadataRecord::PartitionReassignment { topic_id: t, partition: q }
                        if *t == topic_id && q.partition == partition
                )),
                "replicas changed without a reassignment: {at}"
            );
            assert!(
                p.partition_epoch > o.partition_epoch,
                "reassignment without a new partition epoch: {at}"
            );
        }
        // Brokers a reassignment adds are not in sync until the leader says so.
        for r in &p.isr {
            assert!(
                o.isr.contains(r)
                    || records.iter().any(|rec| matches!(
                        rec,
                        MetadataRecord::PartitionChange { topic_id: t, partition: q, .. }
                            if *t == topic_id && *q == partition
                    )),
                "{r} joined the ISR through a reassignment: {at}"
            );
        }
        assert!(
            p.leader_epoch >= o.leader_epoch,
            "leader epoch went down: {at}"
        );
        assert!(
            p.partition_epoch >= o.partition_epoch,
            "partition epoch went down: {at}"
        );
        if (o.leader, &o.isr, &o.elr, o.leader_epoch) != (p.leader, &p.isr, &p.elr, p.leader_epoch)
        {
            assert!(
                p.partition_epoch > o.partition_epoch,
                "change without a new partition epoch: {at}"
            );
        }
        if o.leader != p.leader {
            assert!(
                p.leader_epoch > o.leader_epoch,
                "new leader, same leader epoch: {at}"
            );
            if p.leader != NO_LEADER {
                assert!(
                    o.isr.contains(&p.leader) || o.elr.contains(&p.leader),
                    "unclean election: {at} (was {o:?})"
                );
            }
        }
    }
}

/// A restart of broker `b` (an index) that lost the logs of the partitions selected by
/// `lost_mask` (see [`Op::RestartLosing`]); removes it from their holders.
fn restart(
    state: &ClusterState,
    brokers: i32,
    next_incarnation: &mut u128,
    b: usize,
    lost_mask: u64,
    holders: &mut Holders,
) -> Vec<MetadataRecord> {
    let b = broker_id(brokers, b);
    *next_incarnation += 1;
    let rack = state.broker(b).unwrap().rack.clone();
    let lost: Vec<(Uuid, i32)> = partitions(state)
        .into_iter()
        .enumerate()
        .filter(|(i, (_, p))| lost_mask & (1 << (i % 64)) != 0 && p.replicas.contains(&b))
        .map(|(_, (key, _))| key)
        .collect();
    let records = controller::register_broker_with_lost(
        state,
        b,
        "127.0.0.1",
        9092,
        rack,
        incarnation(*next_incarnation),
        &lost,
    )
    .unwrap();
    for key in &lost {
        holders.get_mut(key).unwrap().remove(&b);
    }
    // It may have lost unflushed data: it keeps no leadership or ISR place that another
    // member could take, and where it is alone it leads in a new epoch. Where it lost the
    // log, it is in neither the ISR nor the ELR, and does not lead.
    let mut after = state.clone();
    apply(&mut after, &records);
    assert!(!after.is_fenced(b));
    let old = partitions(state);
    for (key, p) in partitions(&after) {
        let o = &old[&key];
        if lost.contains(&key) {
            assert!(
                !p.isr.contains(&b) && !p.elr.contains(&b) && p.leader != b,
                "{b} lost its log but is still eligible: {p:?}"
            );
        } else if o.isr == [b] {
            assert_eq!((p.leader, p.leader_epoch), (b, o.leader_epoch + 1), "{p:?}");
        } else {
            assert!(
                !p.isr.contains(&b) || o.elr.contains(&b),
                "restarted {b} stays in ISR: {p:?}"
            );
        }
    }
    records
}

/// Runs `op`; returns the records it produced (nothing when refused). Updates `holders`
/// for acknowledgements and lost logs.
fn step(
    state: &ClusterState,
    brokers: i32,
    next_incarnation: &mut u128,
    op: &Op,
    holders: &mut Holders,
) -> Vec<MetadataRecord> {
    match *op {
        Op::Fence(b) => {
            let b = broker_id(brokers, b);
            let was_fenced = state.is_fenced(b);
            let records = controller::fence_broker(state, b).unwrap();
            assert_eq!(records.is_empty(), was_fenced, "fencing {b}: {records:?}");
            records
        }
        Op::Unfence(b) => {
            let b = broker_id(brokers, b);
            let was_fenced = state.is_fenced(b);
            let records = controller::unfence_broker(state, b).unwrap();
            assert_eq!(
                records.is_empty(),
                !was_fenced,
                "unfencing {b}: {records:?}"
            );
            records
        }
        Op::Restart(b) => restart(state, brokers, next_incarnation, b, 0, holders),
        Op::RestartLosing(b, mask) => restart(state, brokers, next_incarnation, b, mask, holders),
        Op::Ack { topic, partition } => {
            let topics: Vec<_> = state.topics().collect();
            let t = topics[topic % topics.len()];
            let p = &t.partitions[partition % t.partitions.len()];
            if p.leader != NO_LEADER && p.isr.len() as i32 >= controller::min_insync(t) {
                holders.insert((t.topic_id, p.partition), p.isr.iter().copied().collect());
            }
            Vec::new()
        }
        Op::SetMinInsync { topic, value } => {
            let topics: Vec<_> = state.topics().collect();
            let t = topics[topic % topics.len()];
            let key = "min.insync.replicas".to_owned();
            let value = value.map(|v| v.to_string());
            let mut configs = t.configs.clone();
            match &value {
                Some(v) => configs.insert(key.clone(), v.clone()),
                None => configs.remove(&key),
            };
            let mut records = vec![MetadataRecord::TopicConfig {
                topic_id: t.topic_id,
                key,
                value,
            }];
            records.extend(controller::clear_stale_elr(state, t.topic_id, &configs));
            records
        }
        Op::Reregister(b) => {
            let b = broker_id(brokers, b);
            let info = state.broker(b).unwrap();
            let records = controller::register_broker(
                state,
                b,
                &info.host,
                info.port,
                info.rack.clone(),
                info.incarnation,
            )
            .unwrap();
            assert_eq!(
                records.is_empty(),
                !info.fenced,
                "re-registering {b}: {records:?}"
            );
            records
        }
        Op::Alter {
            topic,
            partition,
            isr_mask,
            requester,
            leader_epoch_lag,
            partition_epoch_lag,
        } => {
            let topics: Vec<_> = state.topics().collect();
            let t = topics[topic % topics.len()];
            let p = &t.partitions[partition % t.partitions.len()];
            let new_isr: Vec<i32> = p
                .replicas
                .iter()
                .enumerate()
                .filter(|(i, _)| isr_mask & (1 << i) != 0)
                .map(|(_, &r)| r)
                .collect();
            let requester = requester.map_or(p.leader, |b| broker_id(brokers, b));
            let result = controller::alter_partition(
                state,
                t.topic_id,
                p.partition,
                requester,
                p.leader_epoch - leader_epoch_lag,
                p.partition_epoch - partition_epoch_lag,
                new_isr.clone(),
            );
            if leader_epoch_lag != 0 {
                assert!(
                    matches!(result, Err(ReplicationError::FencedLeaderEpoch { .. })),
                    "{result:?}"
                );
            } else if requester != p.leader || p.leader == NO_LEADER {
                assert!(
                    matches!(result, Err(ReplicationError::NotLeader { .. })),
                    "{result:?}"
                );
            } else if partition_epoch_lag != 0 {
                assert!(
                    matches!(result, Err(ReplicationError::InvalidUpdateVersion { .. })),
                    "{result:?}"
                );
            } else if !new_isr.contains(&p.leader) {
                assert!(
                    matches!(result, Err(ReplicationError::InvalidIsr { .. })),
                    "{result:?}"
                );
            } else if new_isr
                .iter()
                .any(|&r| !p.isr.contains(&r) && state.is_fenced(r))
            {
                assert!(
                    matches!(result, Err(ReplicationError::IneligibleReplica { .. })),
                    "{result:?}"
                );
            } else {
                let records = result.unwrap();
                let same: BTreeSet<i32> = p.isr.iter().copied().collect();
                assert_eq!(
                    records.is_empty(),
                    same == new_isr.iter().copied().collect(),
                    "{records:?}"
                );
                if let [
                    MetadataRecord::PartitionChange {
                        leader,
                        leader_epoch,
                        partition_epoch,
                        ..
                    },
                ] = records.as_slice()
                {
                    assert_eq!(
                        (*leader, *leader_epoch, *partition_epoch),
                        (p.leader, p.leader_epoch, p.partition_epoch + 1)
                    );
                }
                // Replicas the leader adds to the ISR caught up: they hold every record.
                let held = holders.get_mut(&(t.topic_id, p.partition)).unwrap();
                held.extend(new_isr.iter().filter(|r| !p.isr.contains(r)));
                return records;
            }
            Vec::new()
        }
        Op::ElectPreferred => {
            let records = controller::elect_preferred_leaders(state).unwrap();
            let mut after = state.clone();
            apply(&mut after, &records);
            assert_eq!(
                controller::elect_preferred_leaders(&after),
                Ok(vec![]),
                "not idempotent"
            );
            records
        }
        Op::Reassign {
            topic,
            partition,
            mask,
            rotate,
            cancel,
        } => {
            let topics: Vec<_> = state.topics().collect();
            let t = topics[topic % topics.len()];
            let p = &t.partitions[partition % t.partitions.len()];
            let mut target: Vec<i32> = (0..7)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| if i == 6 { 100 } else { broker_id(brokers, i) })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if !target.is_empty() {
                let k = rotate % target.len();
                target.rotate_left(k);
            }
            let target = (!cancel).then_some(target);
            let result = controller::alter_partition_reassignment(
                state,
                t.topic_id,
                p.partition,
                target.clone(),
            );
            let original = p.original_replicas();
            match &target {
                None if !p.is_reassigning() => assert!(
                    matches!(
                        result,
                        Err(ReassignmentError::NoReassignmentInProgress { .. })
                    ),
                    "{result:?}"
                ),
                Some(target)
                    if target.is_empty()
                        || target.iter().any(|&r| {
                            state.broker(r).is_none()
                                || (state.is_fenced(r) && !p.replicas.contains(&r))
                        }) =>
                {
                    assert!(
                        matches!(result, Err(ReassignmentError::InvalidReplicas { .. })),
                        "{target:?}: {result:?}"
                    )
                }
                _ => match result {
                    Err(ReassignmentError::WouldLoseLeadership { .. }) => {}
                    Err(e) => panic!("{target:?} refused: {e}"),
                    Ok(records) => {
                        let mut after = state.clone();
                        apply(&mut after, &records);
                        let q = &after.topic_by_id(t.topic_id).unwrap().partitions
                            [p.partition as usize];
                        // The original replicas keep their members (not their order: the
                        // target's order comes first while in progress, as in Kafka).
                        let set = |v: Vec<i32>| v.into_iter().collect::<BTreeSet<i32>>();
                        match &target {
                            Some(target) => {
                                assert_eq!(&q.target_replicas(), target, "{q:?}");
                                let expected = if q.is_reassigning() {
                                    original
                                } else {
                                    target.clone()
                                };
                                assert_eq!(set(q.original_replicas()), set(expected), "{q:?}");
                            }
                            None => {
                                assert_eq!(set(q.replicas.clone()), set(original), "{q:?}");
                                assert!(!q.is_reassigning());
                            }
                        }
                        return records;
                    }
                },
            }
            Vec::new()
        }
        Op::CompleteReassignments => {
            let records = controller::complete_reassignments(state);
            let mut after = state.clone();
            apply(&mut after, &records);
            assert_eq!(
                controller::complete_reassignments(&after),
                vec![],
                "not idempotent"
            );
            for (_, p) in controller::reassignments_in_progress(&after) {
                // What is left waits for a replica to catch up, or for an in-sync one.
                let target = p.target_replicas();
                assert!(
                    p.adding_replicas.iter().any(|r| !p.isr.contains(r))
                        || !p.isr.iter().any(|r| target.contains(r))
                        || (!target.contains(&p.leader)
                            && p.isr
                                .iter()
                                .all(|&r| !target.contains(&r) || after.is_fenced(r))),
                    "{p:?} could complete"
                );
            }
            records
        }
        Op::CreateTopic {
            partitions,
            replication_factor,
            start_index,
        } => {
            let unfenced: BTreeSet<i32> = state.unfenced_brokers().map(|b| b.broker_id).collect();
            let name = format!("created-{}", state.applied_records());
            let id = Uuid::from_u128(1 << 64 | u128::from(state.applied_records()));
            match controller::create_topic(
                state,
                &name,
                partitions,
                replication_factor,
                BTreeMap::new(),
                id,
                start_index,
            ) {
                Ok(records) => {
                    let MetadataRecord::CreateTopic { partitions, .. } = &records[0] else {
                        panic!("expected CreateTopic: {records:?}")
                    };
                    for p in partitions {
                        assert!(
                            p.replicas.iter().all(|r| unfenced.contains(r)),
                            "replica on a fenced broker: {p:?}"
                        );
                    }
                    records
                }
                Err(e) => {
                    assert!(replication_factor as usize > unfenced.len(), "{e}");
                    Vec::new()
                }
            }
        }
    }
}

/// Partitions of `state` that `holders` does not know yet: every replica holds their
/// (no) records.
fn add_new_partitions(state: &ClusterState, holders: &mut Holders) {
    for (key, p) in partitions(state) {
        holders
            .entry(key)
            .or_insert_with(|| p.replicas.iter().copied().collect());
    }
}

/// Replicas that a reassignment removed no longer hold anything (their logs are deleted).
fn drop_removed_replicas(state: &ClusterState, holders: &mut Holders) {
    for (key, p) in partitions(state) {
        if let Some(held) = holders.get_mut(&key) {
            held.retain(|r| p.replicas.contains(r));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn replication_invariants_hold(
        brokers in 3..=5i32,
        racks in any::<bool>(),
        topics in prop::collection::vec((1..=3i32, 1..=3i32, any::<usize>()), 1..=3),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut state = cluster(brokers, racks, &topics);
        let mut holders = Holders::new();
        add_new_partitions(&state, &mut holders);
        check(&ClusterState::default(), &state, &[], &holders);
        let mut next_incarnation = 0;
        for op in &ops {
            let records = step(&state, brokers, &mut next_incarnation, op, &mut holders);
            let before = state.clone();
            apply(&mut state, &records);
            add_new_partitions(&state, &mut holders);
            drop_removed_replicas(&state, &mut holders);
            check(&before, &state, &records, &holders);
        }
    }
}
