//! [`ClusterState`]: the metadata as of the last applied record. A pure value: built only
//! by [`ClusterState::apply`], no I/O, no clock.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::records::{MetadataRecord, PartitionRecord};

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    pub broker_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub incarnation: Uuid,
    /// Set by `FenceBroker`, cleared by `UnfenceBroker` and `RegisterBroker`. A fenced
    /// broker leads nothing and is never added to an ISR or given new replicas.
    #[serde(default)]
    pub fenced: bool,
}

/// One partition of a topic.
pub type PartitionState = PartitionRecord;

/// A live topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub name: String,
    pub topic_id: Uuid,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionState>,
    /// Topic-level overrides only (Kafka key → value); broker defaults live elsewhere.
    pub configs: BTreeMap<String, String>,
}

impl TopicInfo {
    /// Partition `index`, if the topic has it (a negative index never matches).
    pub fn partition(&self, index: i32) -> Option<&PartitionState> {
        self.partitions.get(usize::try_from(index).ok()?)
    }
}

/// The cluster metadata as of `applied_records` records.
/// Stored in quorum snapshots as protobuf ([`crate::codec::encode_state`]); snapshots of
/// earlier versions hold its serde JSON form, which is still read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    cluster_id: Option<String>,
    brokers: BTreeMap<i32, BrokerInfo>,
    topics: BTreeMap<String, TopicInfo>,
    names_by_id: HashMap<Uuid, String>,
    applied_records: u64,
    /// The first producer id not yet handed to any broker. Absent in snapshots written
    /// before producer ids existed: 0.
    #[serde(default)]
    next_producer_id: i64,
}

impl ClusterState {
    /// Rebuilds a state from what a snapshot stores ([`crate::codec::decode_state`]),
    /// checking the structure [`ClusterState::apply`] keeps: unique broker ids, topic
    /// names and topic ids, and partitions indexed `0..len`. Errors name what is wrong.
    /// The records' own invariants (leadership, epochs) are not re-checked: they were
    /// checked when the records were applied on the node that wrote the snapshot.
    pub(crate) fn from_parts(
        cluster_id: Option<String>,
        brokers: Vec<BrokerInfo>,
        topics: Vec<TopicInfo>,
        applied_records: u64,
        next_producer_id: i64,
    ) -> Result<ClusterState, String> {
        let mut state = ClusterState {
            cluster_id,
            applied_records,
            next_producer_id,
            ..ClusterState::default()
        };
        for broker in brokers {
            let id = broker.broker_id;
            if state.brokers.insert(id, broker).is_some() {
                return Err(format!("broker {id} appears twice"));
            }
        }
        for topic in topics {
            if let Some(p) = topic
                .partitions
                .iter()
                .enumerate()
                .find(|(i, p)| usize::try_from(p.partition).ok() != Some(*i))
            {
                return Err(format!(
                    "topic {}: partition {} is at index {}",
                    topic.name, p.1.partition, p.0
                ));
            }
            if let Some(other) = state.names_by_id.insert(topic.topic_id, topic.name.clone()) {
                return Err(format!(
                    "topic id {} belongs to both {other} and {}",
                    topic.topic_id, topic.name
                ));
            }
            let name = topic.name.clone();
            if state.topics.insert(name.clone(), topic).is_some() {
                return Err(format!("topic {name} appears twice"));
            }
        }
        Ok(state)
    }

    /// The first producer id no broker has been given yet.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// The cluster id, once `InitCluster` has been applied.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    pub fn brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values()
    }

    pub fn broker(&self, broker_id: i32) -> Option<&BrokerInfo> {
        self.brokers.get(&broker_id)
    }

    /// Registered brokers that are not fenced, in broker id order: the ones that may lead,
    /// join ISRs and receive new replicas.
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether `broker_id` is fenced. An unregistered broker counts as fenced: it may not
    /// lead or join an ISR either.
    pub fn is_fenced(&self, broker_id: i32) -> bool {
        self.brokers.get(&broker_id).is_none_or(|b| b.fenced)
    }

    /// Live topics in name order.
    pub fn topics(&self) -> impl Iterator<Item = &TopicInfo> {
        self.topics.values()
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, topic_id: Uuid) -> Option<&TopicInfo> {
        self.names_by_id
            .get(&topic_id)
            .and_then(|n| self.topics.get(n))
    }

    /// How many records have been applied: a version number for this state.
    pub fn applied_records(&self) -> u64 {
        self.applied_records
    }

    /// Applies one committed record.
    ///
    /// # Panics
    /// If the record contradicts the state (a duplicate topic, an unknown topic id): the
    /// controller validated it against this same state before it was committed, so a
    /// mismatch is a bug that must stop the node rather than corrupt metadata.
    pub fn apply(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::InitCluster { cluster_id } => {
                assert!(self.cluster_id.is_none(), "InitCluster applied twice");
                self.cluster_id = Some(cluster_id.clone());
            }
            MetadataRecord::RegisterBroker {
                broker_id,
                host,
                port,
                rack,
                incarnation,
            } => {
                self.brokers.insert(
                    *broker_id,
                    BrokerInfo {
                        broker_id: *broker_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        incarnation: *incarnation,
                        fenced: false,
                    },
                );
            }
            MetadataRecord::CreateTopic {
                name,
                topic_id,
                partitions,
                configs,
            } => {
                assert!(
                    !self.topics.contains_key(name),
                    "topic {name} created twice"
                );
                assert!(
                    !self.names_by_id.contains_key(topic_id),
                    "topic id {topic_id} reused"
                );
                for (i, p) in partitions.iter().enumerate() {
                    assert_eq!(p.partition as usize, i, "partitions of {name} out of order");
                    check_replicas(&format!("CreateTopic {name}-{i}"), p);
                    check_leadership(
                        &format!("CreateTopic {name}-{i}"),
                        &p.replicas,
                        p.leader,
                        &p.isr,
                        &p.elr,
                    );
                }
                self.names_by_id.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicInfo {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: partitions.clone(),
                        configs: configs.clone(),
                    },
                );
            }
            MetadataRecord::CreatePartitions {
                topic_id,
                partitions,
            } => {
                let topic = self.topic_mut(*topic_id);
                for p in partitions {
                    check_replicas(
                        &format!("CreatePartitions {}-{}", topic.name, p.partition),
                        p,
                    );
                    check_leadership(
                        &format!("CreatePartitions {}-{}", topic.name, p.partition),
                        &p.replicas,
                        p.leader,
                        &p.isr,
                        &p.elr,
                    );
                    assert_eq!(
                        p.partition as usize,
                        topic.partitions.len(),
                        "partition gap"
                    );
                    topic.partitions.push(p.clone());
                }
            }
            MetadataRecord::DeleteTopic { topic_id } => {
                let name = self
                    .names_by_id
                    .remove(topic_id)
                    .unwrap_or_else(|| panic!("DeleteTopic of unknown topic id {topic_id}"));
                self.topics.remove(&name);
            }
            MetadataRecord::TopicConfig {
                topic_id,
                key,
                value,
            } => {
                let topic = self.topic_mut(*topic_id);
                match value {
                    Some(v) => topic.configs.insert(key.clone(), v.clone()),
                    None => topic.configs.remove(key),
                };
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                leader_epoch,
                partition_epoch,
                elr,
            } => {
                let topic = self.topic_mut(*topic_id);
                let name = topic.name.clone();
                let p = usize::try_from(*partition)
                    .ok()
                    .and_then(|i| topic.partitions.get_mut(i))
                    .unwrap_or_else(|| {
                        panic!("PartitionChange of unknown partition {name}-{partition}")
                    });
                check_epochs(
                    &format!("PartitionChange of {name}-{partition}"),
                    p,
                    *leader,
                    *leader_epoch,
                    *partition_epoch,
                );
                check_leadership(
                    &format!("PartitionChange of {name}-{partition}"),
                    &p.replicas,
                    *leader,
                    isr,
                    elr,
                );
                p.leader = *leader;
                p.isr = isr.clone();
                p.elr = elr.clone();
                p.leader_epoch = *leader_epoch;
                p.partition_epoch = *partition_epoch;
            }
            MetadataRecord::PartitionReassignment {
                topic_id,
                partition: new,
            } => {
                let topic = self.topic_mut(*topic_id);
                let what = format!("PartitionReassignment of {}-{}", topic.name, new.partition);
                let p = usize::try_from(new.partition)
                    .ok()
                    .and_then(|i| topic.partitions.get_mut(i))
                    .unwrap_or_else(|| panic!("{what}: unknown partition"));
                check_epochs(&what, p, new.leader, new.leader_epoch, new.partition_epoch);
                check_replicas(&what, new);
                check_leadership(&what, &new.replicas, new.leader, &new.isr, &new.elr);
                *p = new.clone();
            }
            MetadataRecord::FenceBroker { broker_id } => {
                self.broker_mut(*broker_id).fenced = true;
            }
            MetadataRecord::UnfenceBroker { broker_id } => {
                self.broker_mut(*broker_id).fenced = false;
            }
            MetadataRecord::ProducerIds {
                broker_id,
                first_id,
                size,
            } => {
                self.broker_mut(*broker_id);
                assert_eq!(
                    *first_id, self.next_producer_id,
                    "producer id block does not start where the last one ended"
                );
                assert!(*size > 0, "empty producer id block");
                self.next_producer_id =
                    first_id.checked_add(*size).expect("producer ids exhausted");
            }
        }
        self.applied_records += 1;
    }

    fn broker_mut(&mut self, broker_id: i32) -> &mut BrokerInfo {
        self.brokers
            .get_mut(&broker_id)
            .unwrap_or_else(|| panic!("record names unknown broker {broker_id}"))
    }

    fn topic_mut(&mut self, topic_id: Uuid) -> &mut TopicInfo {
        let name = self
            .names_by_id
            .get(&topic_id)
            .unwrap_or_else(|| panic!("record names unknown topic id {topic_id}"));
        self.topics
            .get_mut(name)
            .expect("names_by_id and topics agree")
    }
}

/// Panics (naming `what`) unless a partition at `current` may move to `leader`,
/// `leader_epoch` and `partition_epoch`: the partition epoch grows, the leader epoch never
/// falls, and a new leader comes with a new leader epoch.
fn check_epochs(
    what: &str,
    current: &PartitionRecord,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
) {
    assert!(
        partition_epoch > current.partition_epoch,
        "{what} has partition epoch {partition_epoch}, not above the current {}",
        current.partition_epoch
    );
    assert!(
        leader_epoch >= current.leader_epoch,
        "{what} lowers the leader epoch from {} to {leader_epoch}",
        current.leader_epoch
    );
    assert!(
        leader == current.leader || leader_epoch > current.leader_epoch,
        "{what}: new leader {leader} without a new leader epoch"
    );
}

/// Panics (naming `what`) unless `p`'s replicas and reassignment state are legal: the
/// replicas are non-empty, distinct broker ids (0 or more); the adding and removing
/// replicas are distinct replicas and share none; a reassignment keeps at least one target
/// replica.
fn check_replicas(what: &str, p: &PartitionRecord) {
    let distinct = |v: &[i32]| v.iter().collect::<std::collections::BTreeSet<_>>().len() == v.len();
    assert!(
        !p.replicas.is_empty() && distinct(&p.replicas) && p.replicas.iter().all(|&r| r >= 0),
        "{what}: replicas {:?} are empty, repeat a broker or name a negative id",
        p.replicas
    );
    assert!(
        distinct(&p.adding_replicas)
            && distinct(&p.removing_replicas)
            && p.adding_replicas
                .iter()
                .chain(&p.removing_replicas)
                .all(|r| p.replicas.contains(r))
            && p.adding_replicas
                .iter()
                .all(|r| !p.removing_replicas.contains(r)),
        "{what}: adding {:?} and removing {:?} replicas must be distinct replicas of {:?}",
        p.adding_replicas,
        p.removing_replicas,
        p.replicas
    );
    assert!(
        p.removing_replicas.len() < p.replicas.len(),
        "{what}: every replica of {:?} is being removed",
        p.replicas
    );
}

/// Panics (naming `what`) unless `leader`, `isr` and `elr` are a legal leadership of a
/// partition on `replicas`: the leader is -1 or in the ISR; the ISR is empty only when the
/// leader is -1; the ISR and the ELR lie within the replicas and share no broker.
fn check_leadership(what: &str, replicas: &[i32], leader: i32, isr: &[i32], elr: &[i32]) {
    assert!(
        isr.iter().chain(elr).all(|r| replicas.contains(r)),
        "{what}: ISR {isr:?} or ELR {elr:?} not within the replicas {replicas:?}"
    );
    assert!(
        !isr.is_empty() || leader == -1,
        "{what}: ISR is empty but the leader is {leader}"
    );
    assert!(
        leader == -1 || isr.contains(&leader),
        "{what}: leader {leader} is not in ISR {isr:?}"
    );
    assert!(
        elr.iter().all(|r| !isr.contains(r)),
        "{what}: ELR {elr:?} overlaps ISR {isr:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(i: i32) -> PartitionRecord {
        PartitionRecord {
            partition: i,
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            elr: vec![],
            adding_replicas: vec![],
            removing_replicas: vec![],
        }
    }

    #[test]
    fn topic_lifecycle() {
        let mut state = ClusterState::default();
        let id = Uuid::from_u128(7);
        state.apply(&MetadataRecord::CreateTopic {
            name: "orders".into(),
            topic_id: id,
            partitions: vec![partition(0)],
            configs: BTreeMap::new(),
        });
        state.apply(&MetadataRecord::CreatePartitions {
            topic_id: id,
            partitions: vec![partition(1), partition(2)],
        });
        state.apply(&MetadataRecord::TopicConfig {
            topic_id: id,
            key: "retention.ms".into(),
            value: Some("1000".into()),
        });
        let t = state.topic("orders").unwrap();
        assert_eq!(t.partitions.len(), 3);
        assert_eq!(
            t.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert_eq!(state.topic_by_id(id).unwrap().name, "orders");
        state.apply(&MetadataRecord::DeleteTopic { topic_id: id });
        assert!(state.topic("orders").is_none());
        assert!(state.topic_by_id(id).is_none());
        assert_eq!(state.applied_records(), 4);
    }

    #[test]
    #[should_panic(expected = "created twice")]
    fn duplicate_topic_is_a_bug() {
        let mut state = ClusterState::default();
        for n in 0..2 {
            state.apply(&MetadataRecord::CreateTopic {
                name: "a".into(),
                topic_id: Uuid::from_u128(n),
                partitions: vec![],
                configs: BTreeMap::new(),
            });
        }
    }

    fn one_partition_topic() -> (ClusterState, Uuid) {
        let mut state = ClusterState::default();
        state.apply(&MetadataRecord::RegisterBroker {
            broker_id: 1,
            host: "h".into(),
            port: 1,
            rack: None,
            incarnation: Uuid::nil(),
        });
        let id = Uuid::from_u128(7);
        state.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            topic_id: id,
            partitions: vec![partition(0)],
            configs: BTreeMap::new(),
        });
        (state, id)
    }

    fn change(topic_id: Uuid, partition: i32, partition_epoch: i32) -> MetadataRecord {
        MetadataRecord::PartitionChange {
            topic_id,
            partition,
            leader: -1,
            isr: vec![1],
            leader_epoch: 1,
            partition_epoch,
            elr: vec![],
        }
    }

    #[test]
    fn fencing_and_partition_changes_apply() {
        let (mut state, id) = one_partition_topic();
        assert!(!state.is_fenced(1));
        assert!(state.is_fenced(2), "unregistered counts as fenced");
        state.apply(&MetadataRecord::FenceBroker { broker_id: 1 });
        assert!(state.is_fenced(1));
        assert_eq!(state.unfenced_brokers().count(), 0);
        state.apply(&change(id, 0, 1));
        let p = &state.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (-1, 1, 1));
        state.apply(&MetadataRecord::UnfenceBroker { broker_id: 1 });
        assert!(!state.is_fenced(1));
        state.apply(&MetadataRecord::FenceBroker { broker_id: 1 });
        state.apply(&MetadataRecord::RegisterBroker {
            broker_id: 1,
            host: "h".into(),
            port: 1,
            rack: None,
            incarnation: Uuid::from_u128(1),
        });
        assert!(!state.is_fenced(1), "registering unfences");
    }

    #[test]
    #[should_panic(expected = "not above the current")]
    fn a_partition_epoch_that_does_not_grow_is_a_bug() {
        let (mut state, id) = one_partition_topic();
        state.apply(&change(id, 0, 0));
    }

    #[test]
    #[should_panic(expected = "unknown partition")]
    fn a_change_of_an_unknown_partition_is_a_bug() {
        let (mut state, id) = one_partition_topic();
        state.apply(&change(id, 1, 1));
    }

    #[test]
    #[should_panic(expected = "unknown topic id")]
    fn a_change_of_an_unknown_topic_is_a_bug() {
        let (mut state, _) = one_partition_topic();
        state.apply(&change(Uuid::from_u128(8), 0, 1));
    }

    #[test]
    #[should_panic(expected = "unknown broker")]
    fn fencing_an_unknown_broker_is_a_bug() {
        let (mut state, _) = one_partition_topic();
        state.apply(&MetadataRecord::FenceBroker { broker_id: 2 });
    }

    fn change_to(
        topic_id: Uuid,
        leader: i32,
        isr: Vec<i32>,
        elr: Vec<i32>,
        leader_epoch: i32,
    ) -> MetadataRecord {
        MetadataRecord::PartitionChange {
            topic_id,
            partition: 0,
            leader,
            isr,
            leader_epoch,
            partition_epoch: 1,
            elr,
        }
    }

    /// Topic "t" with one partition on brokers 1, 2 and 3, led by 1.
    fn three_replicas() -> (ClusterState, Uuid) {
        let mut state = ClusterState::default();
        let id = Uuid::from_u128(7);
        state.apply(&MetadataRecord::CreateTopic {
            name: "t".into(),
            topic_id: id,
            partitions: vec![PartitionRecord {
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                ..partition(0)
            }],
            configs: BTreeMap::new(),
        });
        (state, id)
    }

    #[test]
    fn an_empty_isr_and_an_elr_apply_to_an_offline_partition() {
        let (mut state, id) = three_replicas();
        state.apply(&change_to(id, -1, vec![], vec![2], 1));
        let p = &state.topic("t").unwrap().partitions[0];
        assert_eq!(
            (p.leader, p.isr.as_slice(), p.elr.as_slice()),
            (-1, &[][..], &[2][..])
        );
    }

    #[test]
    #[should_panic(expected = "ISR is empty but the leader is 1")]
    fn an_empty_isr_with_a_leader_is_a_bug() {
        let (mut state, id) = three_replicas();
        state.apply(&change_to(id, 1, vec![], vec![], 0));
    }

    #[test]
    #[should_panic(expected = "overlaps ISR")]
    fn an_elr_member_in_the_isr_is_a_bug() {
        let (mut state, id) = three_replicas();
        state.apply(&change_to(id, 1, vec![1, 2], vec![2], 0));
    }

    #[test]
    #[should_panic(expected = "not within the replicas")]
    fn an_elr_member_outside_the_replicas_is_a_bug() {
        let (mut state, id) = three_replicas();
        state.apply(&change_to(id, 1, vec![1], vec![4], 0));
    }

    #[test]
    #[should_panic(expected = "is not in ISR")]
    fn a_leader_outside_the_isr_is_a_bug() {
        let (mut state, id) = three_replicas();
        state.apply(&change_to(id, 2, vec![1], vec![], 1));
    }

    #[test]
    #[should_panic(expected = "without a new leader epoch")]
    fn a_new_leader_in_the_same_epoch_is_a_bug() {
        let (mut state, id) = three_replicas();
        state.apply(&change_to(id, 2, vec![2, 3], vec![], 0));
    }
}
