//! Property test of the controller's replication duties: random sequences of fencing,
//! unfencing, restarts (registration with a new incarnation), AlterPartition proposals
//! (random ISRs, sometimes stale or from the wrong broker), preferred leader elections and
//! topic creations over a 3–5 broker cluster. Every step's records are applied (a record
//! that does not apply panics), and the partition invariants are checked after each step.

use std::collections::{BTreeMap, BTreeSet};

use cairn_meta::controller::{self, NO_LEADER, ReplicationError};
use cairn_meta::{ClusterState, MetadataRecord, PartitionRecord};
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    Fence(usize),
    Unfence(usize),
    /// Registration with a new incarnation (the broker process restarted).
    Restart(usize),
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

/// The invariants of every partition of `after`, reached from `before` in one step that
/// produced `records`.
fn check(before: &ClusterState, after: &ClusterState, records: &[MetadataRecord]) {
    let old = partitions(before);
    for ((topic_id, partition), p) in partitions(after) {
        let at = format!("{topic_id}-{partition} {p:?} after {records:?}");
        let isr: BTreeSet<i32> = p.isr.iter().copied().collect();
        assert!(!p.isr.is_empty(), "empty ISR: {at}");
        assert_eq!(isr.len(), p.isr.len(), "ISR repeats a broker: {at}");
        assert!(
            isr.iter().all(|r| p.replicas.contains(r)),
            "ISR not within replicas: {at}"
        );
        if p.leader != NO_LEADER {
            assert!(isr.contains(&p.leader), "leader outside the ISR: {at}");
            assert!(p.replicas.contains(&p.leader), "leader not a replica: {at}");
            assert!(!after.is_fenced(p.leader), "fenced leader: {at}");
        } else {
            assert!(
                p.isr.iter().all(|&r| after.is_fenced(r)),
                "offline although an ISR member is unfenced: {at}"
            );
        }
        if p.isr.iter().any(|&r| after.is_fenced(r)) {
            assert_eq!(p.isr.len(), 1, "a fenced broker shares an ISR: {at}");
        }
        let Some(o) = old.get(&(topic_id, partition)) else {
            assert_eq!(
                (p.leader_epoch, p.partition_epoch),
                (0, 0),
                "new partition: {at}"
            );
            continue;
        };
        assert_eq!(o.replicas, p.replicas, "replicas changed: {at}");
        assert!(
            p.leader_epoch >= o.leader_epoch,
            "leader epoch went down: {at}"
        );
        assert!(
            p.partition_epoch >= o.partition_epoch,
            "partition epoch went down: {at}"
        );
        if (o.leader, &o.isr, o.leader_epoch) != (p.leader, &p.isr, p.leader_epoch) {
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
                    o.isr.contains(&p.leader),
                    "unclean election: {at} (was {o:?})"
                );
            }
        }
    }
}

/// Runs `op`; returns the records it produced (nothing when refused).
fn step(
    state: &ClusterState,
    brokers: i32,
    next_incarnation: &mut u128,
    op: &Op,
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
        Op::Restart(b) => {
            let b = broker_id(brokers, b);
            *next_incarnation += 1;
            let rack = state.broker(b).unwrap().rack.clone();
            let records = controller::register_broker(
                state,
                b,
                "127.0.0.1",
                9092,
                rack,
                incarnation(*next_incarnation),
            )
            .unwrap();
            // It may have lost unflushed data: it keeps no leadership or ISR place that
            // another member could take, and where it is alone it leads in a new epoch.
            let mut after = state.clone();
            apply(&mut after, &records);
            assert!(!after.is_fenced(b));
            let old = partitions(state);
            for (key, p) in partitions(&after) {
                let o = &old[&key];
                if o.isr == [b] {
                    assert_eq!((p.leader, p.leader_epoch), (b, o.leader_epoch + 1), "{p:?}");
                } else {
                    assert!(!p.isr.contains(&b), "restarted {b} stays in ISR: {p:?}");
                }
            }
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
        check(&ClusterState::default(), &state, &[]);
        let mut next_incarnation = 0;
        for op in &ops {
            let records = step(&state, brokers, &mut next_incarnation, op);
            let before = state.clone();
            apply(&mut state, &records);
            check(&before, &state, &records);
        }
    }
}
