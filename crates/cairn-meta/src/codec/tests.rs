//! Round trips of every record, proposal and snapshot; the JSON of earlier versions decoding
//! to the same values; versions newer than this node's; bytes that are not a payload.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use raft::eraftpb::{Entry, HardState};

use super::*;
use crate::quorum::{ApplyOutcome, MemStorage, QuorumConfig, QuorumNode, QuorumStorage};

fn uuid() -> impl Strategy<Value = Uuid> {
    prop_oneof![Just(Uuid::nil()), any::<u128>().prop_map(Uuid::from_u128)]
}

/// Any text, empty included, with control characters and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "(?s).{0,12}"]
}

fn ids() -> impl Strategy<Value = Vec<i32>> {
    vec(any::<i32>(), 0..5)
}

fn configs() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map(text(), text(), 0..4)
}

fn partition_record() -> impl Strategy<Value = PartitionRecord> {
    (
        any::<i32>(),
        (ids(), ids(), ids(), ids(), ids()),
        (any::<i32>(), any::<i32>(), any::<i32>()),
    )
        .prop_map(
            |(
                partition,
                (replicas, isr, elr, adding_replicas, removing_replicas),
                (leader, leader_epoch, partition_epoch),
            )| PartitionRecord {
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
                elr,
                adding_replicas,
                removing_replicas,
            },
        )
}

/// Every variant, with arbitrary field values.
fn record() -> impl Strategy<Value = MetadataRecord> {
    prop_oneof![
        text().prop_map(|cluster_id| MetadataRecord::InitCluster { cluster_id }),
        (
            any::<i32>(),
            text(),
            any::<u16>(),
            proptest::option::of(text()),
            uuid()
        )
            .prop_map(|(broker_id, host, port, rack, incarnation)| {
                MetadataRecord::RegisterBroker {
                    broker_id,
                    host,
                    port,
                    rack,
                    incarnation,
                }
            }),
        (text(), uuid(), vec(partition_record(), 0..4), configs()).prop_map(
            |(name, topic_id, partitions, configs)| MetadataRecord::CreateTopic {
                name,
                topic_id,
                partitions,
                configs,
            }
        ),
        (uuid(), vec(partition_record(), 0..4)).prop_map(|(topic_id, partitions)| {
            MetadataRecord::CreatePartitions {
                topic_id,
                partitions,
            }
        }),
        uuid().prop_map(|topic_id| MetadataRecord::DeleteTopic { topic_id }),
        (uuid(), text(), proptest::option::of(text())).prop_map(|(topic_id, key, value)| {
            MetadataRecord::TopicConfig {
                topic_id,
                key,
                value,
            }
        }),
        (
            uuid(),
            (any::<i32>(), any::<i32>(), any::<i32>(), any::<i32>()),
            ids(),
            ids()
        )
            .prop_map(
                |(topic_id, (partition, leader, leader_epoch, partition_epoch), isr, elr)| {
                    MetadataRecord::PartitionChange {
                        topic_id,
                        partition,
                        leader,
                        isr,
                        leader_epoch,
                        partition_epoch,
                        elr,
                    }
                }
            ),
        any::<i32>().prop_map(|broker_id| MetadataRecord::FenceBroker { broker_id }),
        any::<i32>().prop_map(|broker_id| MetadataRecord::UnfenceBroker { broker_id }),
        (uuid(), partition_record()).prop_map(|(topic_id, partition)| {
            MetadataRecord::PartitionReassignment {
                topic_id,
                partition,
            }
        }),
        (any::<i32>(), any::<i64>(), any::<i64>()).prop_map(|(broker_id, first_id, size)| {
            MetadataRecord::ProducerIds {
                broker_id,
                first_id,
                size,
            }
        }),
    ]
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (any::<u64>(), vec(record(), 0..6)).prop_map(|(base_version, records)| Proposal {
        base_version,
        records,
    })
}

fn broker(broker_id: i32) -> impl Strategy<Value = BrokerInfo> {
    (
        text(),
        any::<u16>(),
        proptest::option::of(text()),
        uuid(),
        any::<bool>(),
    )
        .prop_map(move |(host, port, rack, incarnation, fenced)| BrokerInfo {
            broker_id,
            host,
            port,
            rack,
            incarnation,
            fenced,
        })
}

/// Any state with the structure `ClusterState::apply` keeps (unique names and ids,
/// partitions indexed by position); the records' own invariants are not the codec's.
fn cluster_state() -> impl Strategy<Value = ClusterState> {
    let brokers = vec(any::<i32>(), 0..5).prop_flat_map(|ids| {
        let ids: std::collections::BTreeSet<i32> = ids.into_iter().collect();
        ids.into_iter().map(broker).collect::<Vec<_>>()
    });
    let topics = btree_map(
        text(),
        (uuid(), vec(partition_record(), 0..4), configs()),
        0..5,
    )
    .prop_filter("topic ids are unique", |topics| {
        let ids: std::collections::BTreeSet<_> = topics.values().map(|t| t.0).collect();
        ids.len() == topics.len()
    })
    .prop_map(|topics| {
        topics
            .into_iter()
            .map(|(name, (topic_id, mut partitions, configs))| {
                for (i, p) in partitions.iter_mut().enumerate() {
                    p.partition = i as i32;
                }
                TopicInfo {
                    name,
                    topic_id,
                    partitions,
                    configs,
                }
            })
            .collect::<Vec<_>>()
    });
    (
        proptest::option::of(text()),
        brokers,
        topics,
        any::<u64>(),
        any::<i64>(),
    )
        .prop_map(
            |(cluster_id, brokers, topics, applied_records, next_producer_id)| {
                ClusterState::from_parts(
                    cluster_id,
                    brokers,
                    topics,
                    applied_records,
                    next_producer_id,
                )
                .expect("generated states are well formed")
            },
        )
}

/// A valid payload of each kind, and mangled versions of it.
fn mangle() -> impl Strategy<Value = (usize, Vec<(usize, u8)>)> {
    (any::<usize>(), vec((any::<usize>(), 1..=255u8), 1..4))
}

/// Decodes `bytes` as every payload kind; none may panic.
fn decode_everything(bytes: &[u8]) {
    let _ = decode_proposal(bytes);
    let _ = decode_records(bytes);
    let _ = decode_state(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn proposals_round_trip_and_their_json_decodes_the_same(p in proposal()) {
        let bytes = encode_proposal(&p);
        prop_assert_eq!(bytes[0], FORMAT_PROTOBUF);
        prop_assert_eq!(&decode_proposal(&bytes).unwrap(), &p);
        // What earlier versions wrote for the same proposal.
        let json = serde_json::to_vec(&p).unwrap();
        prop_assert_eq!(&decode_proposal(&json).unwrap(), &p);
    }

    #[test]
    fn each_record_round_trips_alone(r in record()) {
        let records = vec![r];
        prop_assert_eq!(&decode_records(&encode_records(&records)).unwrap(), &records);
        let json = serde_json::to_vec(&records).unwrap();
        prop_assert_eq!(&decode_records(&json).unwrap(), &records);
    }

    #[test]
    fn snapshots_round_trip_and_their_json_decodes_the_same(state in cluster_state()) {
        let bytes = encode_state(&state);
        prop_assert_eq!(&decode_state(&bytes).unwrap(), &state);
        let json = serde_json::to_vec(&state).unwrap();
        prop_assert_eq!(&decode_state(&json).unwrap(), &state);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
        for first in [FORMAT_PROTOBUF, b'{', b'['] {
            let mut framed = vec![first];
            framed.extend_from_slice(&bytes);
            decode_everything(&framed);
        }
    }

    #[test]
    fn truncated_or_flipped_payloads_never_panic(
        p in proposal(),
        state in cluster_state(),
        (cut, flips) in mangle(),
    ) {
        let payloads = [
            encode_proposal(&p),
            encode_records(&p.records),
            encode_state(&state),
            serde_json::to_vec(&p).unwrap(),
            serde_json::to_vec(&state).unwrap(),
        ];
        for payload in payloads {
            decode_everything(&payload[..cut % (payload.len() + 1)]);
            let mut flipped = payload.clone();
            for &(at, mask) in &flips {
                let at = at % flipped.len();
                flipped[at] ^= mask;
            }
            decode_everything(&flipped);
        }
    }
}

#[test]
fn every_record_type_is_generated_and_has_a_version() {
    // The strategies above cover every variant: a new variant without a strategy, a proto
    // case or a version entry fails here.
    let mut seen = std::collections::BTreeSet::new();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = record();
    for _ in 0..2000 {
        let r = strategy.new_tree(&mut runner).unwrap().current();
        let pb = record_to_pb(&r);
        let name = kind(pb.record.as_ref().unwrap()).0;
        // The name errors give is the domain variant's.
        assert!(
            format!("{r:?}").starts_with(&format!("{name} ")),
            "{name}: {r:?}"
        );
        seen.insert(name);
    }
    let all: std::collections::BTreeSet<_> = RECORD_VERSIONS.iter().map(|v| v.0).collect();
    assert_eq!(seen, all);
}

#[test]
fn topic_config_removal_and_empty_value_stay_distinct() {
    let id = Uuid::from_u128(9);
    let set_empty = MetadataRecord::TopicConfig {
        topic_id: id,
        key: "cleanup.policy".into(),
        value: Some(String::new()),
    };
    let removed = MetadataRecord::TopicConfig {
        topic_id: id,
        key: "cleanup.policy".into(),
        value: None,
    };
    let a = encode_records(std::slice::from_ref(&set_empty));
    let b = encode_records(std::slice::from_ref(&removed));
    assert_ne!(a, b);
    assert_eq!(decode_records(&a).unwrap(), vec![set_empty]);
    assert_eq!(decode_records(&b).unwrap(), vec![removed]);
}

/// A `Proposal` holding one hand-built record message.
fn proposal_with(record: pb::MetadataRecord) -> Vec<u8> {
    frame(&pb::Proposal {
        base_version: 3,
        records: vec![record],
    })
}

#[test]
fn a_record_version_newer_than_this_node_reads_is_an_error_naming_it() {
    let mut record = record_to_pb(&MetadataRecord::FenceBroker { broker_id: 4 });
    let newest = kind(record.record.as_ref().unwrap()).1;
    // The newest version decodes...
    assert_eq!(
        decode_proposal(&proposal_with(record.clone())).unwrap(),
        Proposal {
            base_version: 3,
            records: vec![MetadataRecord::FenceBroker { broker_id: 4 }],
        }
    );
    // ...the next one does not.
    record.version = newest + 1;
    let err = decode_proposal(&proposal_with(record))
        .unwrap_err()
        .to_string();
    assert!(err.contains("record 0"), "{err}");
    assert!(err.contains("FenceBroker"), "{err}");
    assert!(
        err.contains(&format!("version {} is newer", newest + 1)),
        "{err}"
    );
    assert!(err.contains("upgrade this node"), "{err}");

    let mut snapshot = encode_state(&ClusterState::default());
    // Field 1 (version), varint: a version this node does not know.
    snapshot.extend_from_slice(&[0x08, SNAPSHOT_VERSION as u8 + 1]);
    let err = decode_state(&snapshot).unwrap_err().to_string();
    assert!(
        err.contains("ClusterStateSnapshot version 1 is newer"),
        "{err}"
    );
}

#[test]
fn a_record_type_this_node_does_not_know_is_an_error() {
    // A MetadataRecord whose oneof case is field 99 (a record type added later), version 0:
    // tag 99 << 3 | varint = 0x318, as the varint 0x98 0x06, then the value 1.
    let unknown = [0x98, 0x06, 0x01];
    // Proposal field 2 (records), length-delimited.
    let mut bytes = vec![FORMAT_PROTOBUF, 0x12, unknown.len() as u8];
    bytes.extend_from_slice(&unknown);
    let err = decode_proposal(&bytes).unwrap_err().to_string();
    assert!(err.contains("record 0"), "{err}");
    assert!(err.contains("record type this node does not know"), "{err}");
}

#[test]
fn malformed_fields_are_errors_naming_the_field() {
    let mut record = record_to_pb(&MetadataRecord::DeleteTopic {
        topic_id: Uuid::from_u128(1),
    });
    if let Some(Record::DeleteTopic(r)) = &mut record.record {
        r.topic_id.truncate(3);
    }
    let err = decode_proposal(&proposal_with(record))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DeleteTopic v0: topic_id is 3 bytes, not a 16-byte UUID"),
        "{err}"
    );

    let mut record = record_to_pb(&MetadataRecord::RegisterBroker {
        broker_id: 1,
        host: "h".into(),
        port: 9092,
        rack: None,
        incarnation: Uuid::nil(),
    });
    if let Some(Record::RegisterBroker(r)) = &mut record.record {
        r.port = 70_000;
    }
    let err = decode_proposal(&proposal_with(record))
        .unwrap_err()
        .to_string();
    assert!(err.contains("port 70000 does not fit"), "{err}");

    let record = pb::MetadataRecord {
        version: 0,
        record: Some(Record::PartitionReassignment(pb::PartitionReassignment {
            topic_id: Uuid::nil().as_bytes().to_vec(),
            partition: None,
        })),
    };
    let err = decode_proposal(&proposal_with(record))
        .unwrap_err()
        .to_string();
    assert!(err.contains("partition is missing"), "{err}");

    let err = decode_state(&[]).unwrap_err().to_string();
    assert!(err.contains("empty payload"), "{err}");
    let err = decode_proposal(b"\x07abc").unwrap_err().to_string();
    assert!(err.contains("unknown format byte 0x07"), "{err}");
    let err = decode_proposal(&[FORMAT_PROTOBUF, 0x12, 0x05])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("proposal: "), "{err}");
}

#[test]
fn a_snapshot_with_repeated_topics_or_misplaced_partitions_is_an_error() {
    let topic = |name: &str, id: u128, partition: i32| pb::TopicState {
        name: name.into(),
        topic_id: Uuid::from_u128(id).as_bytes().to_vec(),
        partitions: vec![partition_to_pb(&one_replica_partition(partition))],
        configs: BTreeMap::new(),
    };
    let snapshot = |topics| {
        frame(&pb::ClusterStateSnapshot {
            topics,
            ..Default::default()
        })
    };
    assert!(decode_state(&snapshot(vec![topic("a", 1, 0), topic("b", 2, 0)])).is_ok());
    let err = decode_state(&snapshot(vec![topic("a", 1, 0), topic("b", 1, 0)])).unwrap_err();
    assert!(err.to_string().contains("belongs to both a and b"), "{err}");
    let err = decode_state(&snapshot(vec![topic("a", 1, 0), topic("a", 2, 0)])).unwrap_err();
    assert!(err.to_string().contains("topic a appears twice"), "{err}");
    let err = decode_state(&snapshot(vec![topic("a", 1, 1)])).unwrap_err();
    assert!(
        err.to_string().contains("partition 1 is at index 0"),
        "{err}"
    );
}

/// A realistic state: `brokers` brokers, `topics` topics of 6 partitions × 3 replicas
/// with one config override each, built by applying records.
fn realistic_state(brokers: i32, topics: u128) -> ClusterState {
    let mut state = ClusterState::default();
    state.apply(&MetadataRecord::InitCluster {
        cluster_id: "q5c0bHkXQeW2iYlBkBu4fA".into(),
    });
    for b in 0..brokers {
        state.apply(&MetadataRecord::RegisterBroker {
            broker_id: b,
            host: format!("broker-{b}.cairn.internal"),
            port: 9092,
            rack: Some(format!("rack-{}", b % 3)),
            incarnation: Uuid::from_u128(0xfeed_0000 + b as u128),
        });
    }
    for t in 0..topics {
        state.apply(&create_topic(t, brokers));
    }
    state
}

fn create_topic(t: u128, brokers: i32) -> MetadataRecord {
    let partitions = (0..6)
        .map(|p| {
            let replicas: Vec<i32> = (0..3).map(|r| (p + r) % brokers).collect();
            PartitionRecord {
                partition: p,
                isr: replicas.clone(),
                leader: replicas[0],
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
                elr: vec![],
                adding_replicas: vec![],
                removing_replicas: vec![],
            }
        })
        .collect();
    MetadataRecord::CreateTopic {
        name: format!("orders-{t:03}"),
        topic_id: Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 + t),
        partitions,
        configs: BTreeMap::from([("retention.ms".into(), "604800000".into())]),
    }
}

/// Prints payload sizes (`cargo test -p cairn-meta codec::tests::sizes -- --nocapture`).
/// Only equality is asserted: sizes are reported, not gated.
#[test]
fn sizes_of_typical_payloads() {
    let proposal = Proposal {
        base_version: 42,
        records: vec![create_topic(7, 3)],
    };
    let json = serde_json::to_vec(&proposal).unwrap();
    let proto = encode_proposal(&proposal);
    assert_eq!(decode_proposal(&proto).unwrap(), proposal);
    println!(
        "proposal, CreateTopic of 6 partitions x 3 replicas: JSON {} bytes, protobuf {} bytes",
        json.len(),
        proto.len()
    );
    let change = Proposal {
        base_version: 42,
        records: vec![MetadataRecord::PartitionChange {
            topic_id: Uuid::from_u128(7),
            partition: 3,
            leader: 2,
            isr: vec![2, 0],
            leader_epoch: 5,
            partition_epoch: 9,
            elr: vec![],
        }],
    };
    println!(
        "proposal, one PartitionChange: JSON {} bytes, protobuf {} bytes",
        serde_json::to_vec(&change).unwrap().len(),
        encode_proposal(&change).len()
    );
    let state = realistic_state(5, 100);
    let json = serde_json::to_vec(&state).unwrap();
    let proto = encode_state(&state);
    assert_eq!(decode_state(&proto).unwrap(), state);
    println!(
        "snapshot, 5 brokers and 100 topics of 6 partitions x 3 replicas: JSON {} bytes, \
         protobuf {} bytes",
        json.len(),
        proto.len()
    );
}

/// A proposal as the JSON version wrote it, byte for byte (records from before ELRs and
/// reassignments existed: their fields absent), decodes to what its protobuf form does.
#[test]
fn a_json_entry_of_an_earlier_version_decodes_like_the_protobuf_one() {
    let json = br#"{"base_version":7,"records":[{"type":"RegisterBroker","broker_id":1,"host":"h1","port":9092,"incarnation":"00000000-0000-0000-0000-00000000000a"},{"type":"CreateTopic","name":"t","topic_id":"00000000-0000-0000-0000-000000000007","partitions":[{"partition":0,"replicas":[1],"isr":[1],"leader":1,"leader_epoch":0,"partition_epoch":0}]},{"type":"TopicConfig","topic_id":"00000000-0000-0000-0000-000000000007","key":"k","value":""},{"type":"TopicConfig","topic_id":"00000000-0000-0000-0000-000000000007","key":"k","value":null},{"type":"PartitionChange","topic_id":"00000000-0000-0000-0000-000000000007","partition":0,"leader":-1,"isr":[1],"leader_epoch":1,"partition_epoch":1}]}"#;
    let t = Uuid::from_u128(7);
    let expected = Proposal {
        base_version: 7,
        records: vec![
            MetadataRecord::RegisterBroker {
                broker_id: 1,
                host: "h1".into(),
                port: 9092,
                rack: None,
                incarnation: Uuid::from_u128(10),
            },
            MetadataRecord::CreateTopic {
                name: "t".into(),
                topic_id: t,
                partitions: vec![one_replica_partition(0)],
                configs: BTreeMap::new(),
            },
            MetadataRecord::TopicConfig {
                topic_id: t,
                key: "k".into(),
                value: Some(String::new()),
            },
            MetadataRecord::TopicConfig {
                topic_id: t,
                key: "k".into(),
                value: None,
            },
            MetadataRecord::PartitionChange {
                topic_id: t,
                partition: 0,
                leader: -1,
                isr: vec![1],
                leader_epoch: 1,
                partition_epoch: 1,
                elr: vec![],
            },
        ],
    };
    let from_json = decode_proposal(json).unwrap();
    assert_eq!(from_json, expected);
    assert_eq!(
        decode_proposal(&encode_proposal(&from_json)).unwrap(),
        expected
    );
    // The forwarded-records form of the same version: a JSON array.
    let records = serde_json::to_vec(&expected.records).unwrap();
    assert_eq!(decode_records(&records).unwrap(), expected.records);
}

/// A snapshot as the JSON version wrote it (before producer ids and fencing existed:
/// those fields absent) decodes to what its protobuf form does.
#[test]
fn a_json_snapshot_of_an_earlier_version_decodes_like_the_protobuf_one() {
    let json = br#"{"cluster_id":"c1","brokers":{"1":{"broker_id":1,"host":"h1","port":9092,"rack":"r1","incarnation":"00000000-0000-0000-0000-00000000000a"}},"topics":{"t":{"name":"t","topic_id":"00000000-0000-0000-0000-000000000007","partitions":[{"partition":0,"replicas":[1],"isr":[1],"leader":1,"leader_epoch":0,"partition_epoch":0}],"configs":{"retention.ms":"1000"}}},"names_by_id":{"00000000-0000-0000-0000-000000000007":"t"},"applied_records":3}"#;
    let mut expected = ClusterState::default();
    expected.apply(&MetadataRecord::InitCluster {
        cluster_id: "c1".into(),
    });
    expected.apply(&MetadataRecord::RegisterBroker {
        broker_id: 1,
        host: "h1".into(),
        port: 9092,
        rack: Some("r1".into()),
        incarnation: Uuid::from_u128(10),
    });
    let MetadataRecord::CreateTopic { partitions, .. } = create_topic(0, 1) else {
        unreachable!()
    };
    expected.apply(&MetadataRecord::CreateTopic {
        name: "t".into(),
        topic_id: Uuid::from_u128(7),
        partitions: partitions[..1]
            .iter()
            .map(|p| PartitionRecord {
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                ..p.clone()
            })
            .collect(),
        configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
    });
    let from_json = decode_state(json).unwrap();
    assert_eq!(from_json, expected);
    assert_eq!(decode_state(&encode_state(&from_json)).unwrap(), expected);
}

/// A voter whose storage was written by the JSON version (a JSON snapshot, JSON entries
/// after it) opens to the same state, keeps committing in protobuf, and reopens again.
#[test]
fn a_node_opens_a_log_written_in_json_and_continues_in_protobuf() {
    let disk = MemStorage::new(&[1]);
    // What the JSON version left: a snapshot at index 2 of 1 broker and 3 topics, then
    // entries 3 (a topic) and 4 (a stale proposal, skipped).
    let entry = |index: u64, data: Vec<u8>| Entry {
        index,
        term: 1,
        data: data.into(),
        ..Default::default()
    };
    let snapshot_state = realistic_state(3, 3);
    let mut hard_state = HardState {
        term: 1,
        vote: 1,
        commit: 2,
        ..Default::default()
    };
    let first = Proposal {
        base_version: 0,
        records: vec![MetadataRecord::InitCluster {
            cluster_id: "c".into(),
        }],
    };
    disk.persist(
        None,
        &[
            entry(1, serde_json::to_vec(&first).unwrap()),
            entry(2, Vec::new()),
        ],
        Some(&hard_state),
    )
    .unwrap();
    disk.set_commit(2).unwrap();
    disk.compact(2, serde_json::to_vec(&snapshot_state).unwrap())
        .unwrap();
    let mut after = snapshot_state.clone();
    let more = Proposal {
        base_version: after.applied_records(),
        records: vec![create_topic(50, 3)],
    };
    after.apply(&more.records[0]);
    let stale = Proposal {
        base_version: 0,
        records: vec![create_topic(51, 3)],
    };
    hard_state.commit = 4;
    disk.persist(
        None,
        &[
            entry(3, serde_json::to_vec(&more).unwrap()),
            entry(4, serde_json::to_vec(&stale).unwrap()),
        ],
        Some(&hard_state),
    )
    .unwrap();

    let mut config = QuorumConfig::new(1, vec![1]);
    config.snapshot_interval_entries = 3;
    let mut node = QuorumNode::open_with(disk.clone(), &config).unwrap();
    let out = node.ready().unwrap();
    assert_eq!(node.state(), &after);
    assert!(out.applied.iter().any(|a| a.index == 4
        && matches!(
            a.outcome,
            ApplyOutcome::Stale {
                base_version: 0,
                ..
            }
        )));

    // New entries are protobuf; enough of them for a protobuf snapshot.
    for t in 60..64 {
        let p = Proposal {
            base_version: node.state().applied_records(),
            records: vec![create_topic(t, 3)],
        };
        node.propose(&p).unwrap();
        node.ready().unwrap();
        after.apply(&p.records[0]);
    }
    assert_eq!(node.state(), &after);
    let snapshot = disk.latest_snapshot();
    assert_eq!(snapshot.data[0], FORMAT_PROTOBUF, "compacted in protobuf");
    drop(node);
    let mut node = QuorumNode::open_with(disk, &config).unwrap();
    node.ready().unwrap();
    assert_eq!(node.state(), &after);
}

/// Partition `partition` with broker 1 as its only replica, leader and ISR, epochs 0.
fn one_replica_partition(partition: i32) -> PartitionRecord {
    PartitionRecord {
        partition,
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
