//! Unit tests (one event, exact outputs) and a seeded property test of many members.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use proptest::prelude::*;

use crate::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 20_000;

fn config(initial_delay_ms: i32) -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: initial_delay_ms,
        ..GroupConfig::default()
    }
}

fn join_req(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: instance.map(Into::into),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(p.to_string())))
            .collect(),
        require_known_member_id: instance.is_none(),
    }
}

fn sync_req(member_id: &str, generation_id: i32, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        group_id: "g".into(),
        generation_id,
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: None,
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
            .collect(),
    }
}

fn commit_req(member_id: &str, generation_id: i32, offset: i64) -> CommitRequest {
    CommitRequest {
        group_id: "g".into(),
        generation_id,
        member_id: member_id.into(),
        group_instance_id: None,
        retention_time_ms: -1,
        offsets: vec![OffsetCommit {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: 3,
            metadata: Some("m".into()),
        }],
    }
}

fn joins(effects: &[Effect]) -> BTreeMap<WaiterId, Result<JoinResponse, GroupError>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::JoinDone { waiter, result } => Some((*waiter, result.clone())),
            _ => None,
        })
        .collect()
}

fn syncs(effects: &[Effect]) -> BTreeMap<WaiterId, Result<SyncResponse, GroupError>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SyncDone { waiter, result } => Some((*waiter, result.clone())),
            _ => None,
        })
        .collect()
}

/// KIP-394 first join: returns the member id handed out.
fn get_member_id(c: &mut GroupCoordinator, waiter: WaiterId, now_ms: i64) -> String {
    c.join_group(waiter, join_req("", None, &["range"]), now_ms);
    match joins(&c.take_effects()).remove(&waiter) {
        Some(Err(GroupError::MemberIdRequired { member_id })) => member_id,
        other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
    }
}

/// Builds a Stable group of `n` dynamic members at generation 1; returns their ids
/// (leader first).
fn stable_group(c: &mut GroupCoordinator, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n)
        .map(|i| get_member_id(c, 100 + i as u64, 0))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        c.join_group(i as u64, join_req(id, None, &["range"]), 0);
    }
    c.tick(3_000);
    let answers = joins(&c.take_effects());
    assert_eq!(answers.len(), n);
    let leader = answers[&0].as_ref().unwrap().leader_id.clone();
    let assignments: Vec<(&str, &str)> = ids.iter().map(|id| (id.as_str(), "a")).collect();
    c.sync_group(1000, sync_req(&leader, 1, &assignments), 3_001);
    let effects = c.take_effects();
    assert!(matches!(
        effects[0],
        Effect::Append(GroupRecord::Group { .. })
    ));
    let mut ordered = vec![leader.clone()];
    ordered.extend(ids.into_iter().filter(|id| *id != leader));
    c.check_invariants();
    ordered
}

#[test]
fn kip394_join_then_initial_delay_then_generation_one() {
    let mut c = GroupCoordinator::new(config(3_000), 1);
    let a = get_member_id(&mut c, 1, 0);
    c.join_group(2, join_req(&a, None, &["range"]), 10);
    assert!(
        c.take_effects().is_empty(),
        "parked until the initial delay ends"
    );
    assert_eq!(
        c.group_state("g"),
        Some((GroupState::PreparingRebalance, 0))
    );
    // A second member during the delay extends it once more (generation 0).
    let b = get_member_id(&mut c, 3, 1_000);
    c.join_group(4, join_req(&b, None, &["range"]), 1_000);
    c.tick(3_010);
    assert!(c.take_effects().is_empty(), "extended by one more delay");
    c.tick(6_010);
    let answers = joins(&c.take_effects());
    let ra = answers[&2].as_ref().unwrap();
    let rb = answers[&4].as_ref().unwrap();
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    assert_eq!(ra.leader_id, a, "the first member to join leads");
    assert_eq!(ra.members.len(), 2, "the leader sees every member");
    assert!(rb.members.is_empty());
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    assert_eq!(
        c.group_state("g"),
        Some((GroupState::CompletingRebalance, 1))
    );
    c.check_invariants();
}

#[test]
fn sync_completes_with_each_members_assignment_after_the_group_record() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let a = get_member_id(&mut c, 1, 0);
    let b = get_member_id(&mut c, 2, 0);
    c.join_group(3, join_req(&a, None, &["range"]), 0);
    c.join_group(4, join_req(&b, None, &["range"]), 0);
    c.tick(0);
    c.take_effects();
    // The follower syncs first and waits for the leader.
    c.sync_group(5, sync_req(&b, 1, &[]), 1);
    assert!(c.take_effects().is_empty());
    c.sync_group(6, sync_req(&a, 1, &[(&a, "pa"), (&b, "pb")]), 2);
    let effects = c.take_effects();
    assert!(matches!(
        effects[0],
        Effect::Append(GroupRecord::Group { .. })
    ));
    let answers = syncs(&effects);
    assert_eq!(answers[&5].as_ref().unwrap().assignment, "pb");
    assert_eq!(answers[&6].as_ref().unwrap().assignment, "pa");
    assert_eq!(c.group_state("g"), Some((GroupState::Stable, 1)));
}

#[test]
fn commit_validation_follows_kafka() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let ids = stable_group(&mut c, 2);
    assert_eq!(
        c.commit_offsets(&commit_req(&ids[0], 1, 10), 5),
        Ok(vec![Ok(())])
    );
    assert!(matches!(
        c.commit_offsets(&commit_req(&ids[0], 0, 11), 5),
        Err(GroupError::IllegalGeneration {
            generation_id: 0,
            current_generation_id: 1
        })
    ));
    assert!(matches!(
        c.commit_offsets(&commit_req("stranger", 1, 11), 5),
        Err(GroupError::UnknownMemberId { .. })
    ));
    // Generation -1 (admin / manual assignment) is refused while the group has members.
    assert!(matches!(
        c.commit_offsets(&commit_req("", -1, 11), 5),
        Err(GroupError::UnknownMemberId { .. })
    ));
    // A rejoin starts PreparingRebalance: commits of the current generation still pass.
    c.join_group(50, join_req(&ids[1], None, &["range", "roundrobin"]), 6);
    assert_eq!(
        c.group_state("g"),
        Some((GroupState::PreparingRebalance, 1))
    );
    assert_eq!(
        c.commit_offsets(&commit_req(&ids[0], 1, 12), 7),
        Ok(vec![Ok(())])
    );
    assert!(matches!(
        c.heartbeat("g", &ids[0], None, 1, 7),
        Err(GroupError::RebalanceInProgress { .. })
    ));
    c.join_group(51, join_req(&ids[0], None, &["range"]), 8);
    let answers = joins(&c.take_effects());
    assert_eq!(answers[&50].as_ref().unwrap().generation_id, 2);
    // CompletingRebalance: REBALANCE_IN_PROGRESS for the new generation, ILLEGAL for old.
    assert!(matches!(
        c.commit_offsets(&commit_req(&ids[0], 2, 13), 9),
        Err(GroupError::RebalanceInProgress { .. })
    ));
    assert!(matches!(
        c.commit_offsets(&commit_req(&ids[0], 1, 13), 9),
        Err(GroupError::IllegalGeneration { .. })
    ));
    let fetched = c.fetch_offsets("g", Some(&[("t".into(), 0), ("t".into(), 1)]));
    assert_eq!(
        fetched[0].1,
        Some(CommittedOffset {
            offset: 12,
            leader_epoch: 3,
            metadata: "m".into()
        })
    );
    assert_eq!(fetched[1].1, None);
    // A group that does not exist: generation ≥ 0 is ILLEGAL_GENERATION, -1 creates it.
    let mut other = commit_req("m", 4, 1);
    other.group_id = "h".into();
    assert!(matches!(
        c.commit_offsets(&other, 10),
        Err(GroupError::IllegalGeneration { .. })
    ));
    other.generation_id = -1;
    other.member_id.clear();
    assert_eq!(c.commit_offsets(&other, 10), Ok(vec![Ok(())]));
    c.check_invariants();
}

#[test]
fn protocol_selection_by_vote_and_inconsistent_protocols() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let a = get_member_id(&mut c, 1, 0);
    let b = get_member_id(&mut c, 2, 0);
    let d = get_member_id(&mut c, 3, 0);
    c.join_group(4, join_req(&a, None, &["range", "cooperative-sticky"]), 0);
    c.join_group(5, join_req(&b, None, &["cooperative-sticky", "range"]), 0);
    c.join_group(6, join_req(&d, None, &["cooperative-sticky", "range"]), 0);
    c.tick(0);
    let answers = joins(&c.take_effects());
    assert_eq!(
        answers[&4].as_ref().unwrap().protocol_name.as_deref(),
        Some("cooperative-sticky")
    );
    let e = get_member_id(&mut c, 7, 1);
    c.join_group(8, join_req(&e, None, &["roundrobin"]), 1);
    assert!(matches!(
        joins(&c.take_effects())[&8],
        Err(GroupError::InconsistentGroupProtocol { .. })
    ));
}

#[test]
fn session_timeout_removes_a_silent_member_and_rebalances() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let ids = stable_group(&mut c, 2);
    // Only the leader heartbeats.
    for t in (2_000..=12_000).step_by(2_000) {
        assert_eq!(c.heartbeat("g", &ids[0], None, 1, t), Ok(()));
        c.tick(t);
    }
    c.tick(13_002);
    assert_eq!(
        c.group_state("g"),
        Some((GroupState::PreparingRebalance, 1))
    );
    assert!(matches!(
        c.heartbeat("g", &ids[1], None, 1, 13_003),
        Err(GroupError::UnknownMemberId { .. })
    ));
    c.join_group(9, join_req(&ids[0], None, &["range"]), 13_004);
    let answers = joins(&c.take_effects());
    let r = answers[&9].as_ref().unwrap();
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
    c.check_invariants();
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let ids = stable_group(&mut c, 2);
    c.join_group(9, join_req(&ids[0], None, &["range"]), 100);
    assert!(c.take_effects().is_empty());
    // The other member heartbeats (told to rejoin) but never does.
    for t in (1_000..=20_000).step_by(1_000) {
        let _ = c.heartbeat("g", &ids[1], None, 1, t);
        c.tick(t);
    }
    c.tick(20_100);
    let answers = joins(&c.take_effects());
    let r = answers[&9].as_ref().unwrap();
    assert_eq!((r.generation_id, r.members.len()), (2, 1));
}

#[test]
fn a_member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let a = get_member_id(&mut c, 1, 0);
    let b = get_member_id(&mut c, 2, 0);
    c.join_group(3, join_req(&a, None, &["range"]), 0);
    c.join_group(4, join_req(&b, None, &["range"]), 0);
    c.tick(0);
    let answers = joins(&c.take_effects());
    let leader = answers[&3].as_ref().unwrap().leader_id.clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    c.sync_group(5, sync_req(&leader, 1, &[(&a, "pa"), (&b, "pb")]), 1);
    c.take_effects();
    // The follower heartbeats (so its session never expires) but never syncs.
    let mut t = 0;
    while t < i64::from(REBALANCE_MS) {
        t += 1_000;
        let _ = c.heartbeat("g", &leader, None, 1, t);
        let _ = c.heartbeat("g", &follower, None, 1, t);
        c.tick(t);
    }
    assert_eq!(
        c.group_state("g"),
        Some((GroupState::PreparingRebalance, 1))
    );
    assert!(matches!(
        c.heartbeat("g", &follower, None, 1, t),
        Err(GroupError::UnknownMemberId { .. })
    ));
    c.check_invariants();
}

#[test]
fn static_member_restart_keeps_generation_and_fences_old_id() {
    let mut c = GroupCoordinator::new(config(0), 1);
    c.join_group(1, join_req("", Some("i1"), &["range"]), 0);
    c.join_group(2, join_req("", Some("i2"), &["range"]), 0);
    c.tick(0);
    let answers = joins(&c.take_effects());
    let r1 = answers[&1].as_ref().unwrap().clone();
    let r2 = answers[&2].as_ref().unwrap().clone();
    let leader = r1.leader_id.clone();
    c.sync_group(
        3,
        sync_req(&leader, 1, &[(&r1.member_id, "p1"), (&r2.member_id, "p2")]),
        1,
    );
    c.take_effects();
    // Instance i2 restarts: new member id, same generation, no rebalance, its assignment.
    c.join_group(4, join_req("", Some("i2"), &["range"]), 2);
    let effects = c.take_effects();
    assert!(matches!(
        effects[0],
        Effect::Append(GroupRecord::Group { .. })
    ));
    let rejoined = joins(&effects)[&4].clone().unwrap();
    assert_ne!(rejoined.member_id, r2.member_id);
    assert_eq!(rejoined.generation_id, 1);
    assert_eq!(c.group_state("g"), Some((GroupState::Stable, 1)));
    let mut s = sync_req(&rejoined.member_id, 1, &[]);
    s.group_instance_id = Some("i2".into());
    c.sync_group(5, s, 3);
    assert_eq!(
        syncs(&c.take_effects())[&5].as_ref().unwrap().assignment,
        "p2"
    );
    assert!(matches!(
        c.heartbeat("g", &r2.member_id, Some("i2"), 1, 4),
        Err(GroupError::FencedInstanceId { .. })
    ));
    // Static members leave by instance id.
    let left = c.leave_group(
        "g",
        &[(String::new(), Some("i2".into())), ("x".into(), None)],
        5,
    );
    assert!(matches!(
        &left.unwrap()[..],
        [Ok(()), Err(GroupError::UnknownMemberId { .. })]
    ));
    assert_eq!(
        c.group_state("g"),
        Some((GroupState::PreparingRebalance, 1))
    );
    c.check_invariants();
}

#[test]
fn everyone_leaving_empties_the_group_then_offsets_expire() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let ids = stable_group(&mut c, 2);
    c.commit_offsets(&commit_req(&ids[0], 1, 10), 10).unwrap();
    c.take_effects();
    let members: Vec<_> = ids.iter().map(|id| (id.clone(), None)).collect();
    assert_eq!(c.leave_group("g", &members, 20), Ok(vec![Ok(()), Ok(())]));
    assert_eq!(c.group_state("g"), Some((GroupState::Empty, 2)));
    assert!(
        c.take_effects().iter().any(|e| matches!(e, Effect::Append(GroupRecord::Group { value: Some(v), .. }) if v.members.is_empty())),
        "the empty group is persisted"
    );
    let retention = c.config().offsets_retention_ms;
    c.tick(20 + retention - 1);
    assert!(c.fetch_offsets("g", None)[0].1.is_some());
    c.tick(20 + retention + 600_000);
    assert_eq!(
        c.group_state("g"),
        None,
        "expired offsets take the empty group with them"
    );
    let effects = c.take_effects();
    assert!(effects.contains(&Effect::Append(GroupRecord::Offset {
        group_id: "g".into(),
        topic: "t".into(),
        partition: 0,
        value: None
    })));
    assert_eq!(
        effects.last(),
        Some(&Effect::Append(GroupRecord::Group {
            group_id: "g".into(),
            value: None
        }))
    );
}

#[test]
fn delete_groups_and_offset_delete() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let ids = stable_group(&mut c, 1);
    assert!(matches!(
        c.delete_group("g", 1),
        Err(GroupError::NonEmptyGroup { .. })
    ));
    // The subscription metadata "range" does not parse as a consumer subscription, so
    // the group counts as subscribed to everything.
    c.commit_offsets(&commit_req(&ids[0], 1, 10), 1).unwrap();
    assert!(matches!(
        &c.delete_offsets("g", &[("t".into(), 0)]).unwrap()[..],
        [Err(GroupError::GroupSubscribedToTopic { .. })]
    ));
    c.leave_group("g", &[(ids[0].clone(), None)], 2).unwrap();
    assert_eq!(c.delete_offsets("g", &[("t".into(), 0)]), Ok(vec![Ok(())]));
    assert!(c.fetch_offsets("g", None).is_empty());
    assert_eq!(c.delete_group("g", 3), Ok(()));
    assert!(matches!(
        c.delete_group("g", 3),
        Err(GroupError::GroupIdNotFound { .. })
    ));
}

#[test]
fn group_max_size_counts_pending_members() {
    let mut c = GroupCoordinator::new(
        GroupConfig {
            max_size: 2,
            ..config(0)
        },
        1,
    );
    get_member_id(&mut c, 1, 0);
    get_member_id(&mut c, 2, 0);
    c.join_group(3, join_req("", None, &["range"]), 0);
    assert!(matches!(
        joins(&c.take_effects())[&3],
        Err(GroupError::GroupMaxSizeReached { max_size: 2, .. })
    ));
}

#[test]
fn oversized_metadata_assignments_and_commit_metadata_are_refused() {
    let small = GroupConfig {
        member_metadata_max_bytes: 64,
        offset_metadata_max_bytes: 8,
        ..config(0)
    };
    let mut c = GroupCoordinator::new(small, 1);
    let mut big = join_req("", None, &["range"]);
    big.protocols[0].1 = Bytes::from(vec![0u8; 100]);
    c.join_group(1, big, 0);
    assert!(matches!(
        joins(&c.take_effects())[&1],
        Err(GroupError::MemberMetadataTooLarge {
            bytes: 105,
            max_bytes: 64,
            ..
        })
    ));
    let ids = stable_group(&mut c, 1);
    // A fresh rebalance, then a leader assignment over the bound.
    c.join_group(2, join_req(&ids[0], None, &["range", "roundrobin"]), 10);
    let generation = joins(&c.take_effects())[&2].as_ref().unwrap().generation_id;
    let huge = "x".repeat(65);
    c.sync_group(3, sync_req(&ids[0], generation, &[(&ids[0], &huge)]), 11);
    assert!(matches!(
        syncs(&c.take_effects())[&3],
        Err(GroupError::MemberMetadataTooLarge {
            what: "assignment",
            ..
        })
    ));
    assert_eq!(
        c.group_state("g"),
        Some((GroupState::CompletingRebalance, generation))
    );
    c.sync_group(4, sync_req(&ids[0], generation, &[(&ids[0], "ok")]), 12);
    c.take_effects();
    let mut commit = commit_req(&ids[0], generation, 1);
    commit.offsets[0].metadata = Some("123456789".into());
    commit.offsets.push(OffsetCommit {
        topic: "t".into(),
        partition: 1,
        offset: 2,
        leader_epoch: -1,
        metadata: None,
    });
    let results = c.commit_offsets(&commit, 13).unwrap();
    assert!(matches!(
        &results[..],
        [
            Err(GroupError::OffsetMetadataTooLarge {
                bytes: 9,
                max_bytes: 8
            }),
            Ok(())
        ]
    ));
    assert_eq!(
        c.fetch_offsets("g", None).len(),
        1,
        "only the valid partition is stored"
    );
    c.check_invariants();
}

#[test]
fn invalid_session_timeout_and_unknown_member_on_new_group() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut r = join_req("", None, &["range"]);
    r.session_timeout_ms = 10;
    c.join_group(1, r, 0);
    assert!(matches!(
        joins(&c.take_effects())[&1],
        Err(GroupError::InvalidSessionTimeout { .. })
    ));
    c.join_group(2, join_req("ghost", None, &["range"]), 0);
    assert!(matches!(
        joins(&c.take_effects())[&2],
        Err(GroupError::UnknownMemberId { .. })
    ));
    assert_eq!(c.group_state("g"), None);
}

#[test]
fn replaying_the_emitted_records_rebuilds_groups_and_offsets() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut records = Vec::new();
    let ids = stable_group(&mut c, 3);
    // stable_group drained its effects; take the group record again from a rejoin-free
    // path: commit, then a static-free describe compare.
    c.commit_offsets(&commit_req(&ids[1], 1, 42), 5).unwrap();
    let described = c.describe_group("g").unwrap();
    // Persist what a sync would have: use the coordinator's own record of the group.
    c.sync_group(7, sync_req(&ids[0], 1, &[]), 6);
    records.extend(c.take_effects().into_iter().filter_map(|e| match e {
        Effect::Append(r) => Some(r),
        _ => None,
    }));
    let mut reloaded = GroupCoordinator::new(config(0), 2);
    // Round-trip through bytes as the broker does.
    let stable = GroupCoordinator::group_record_for_tests(&c, "g");
    for r in std::iter::once(stable).chain(records) {
        let (k, v) = r.encode();
        let decoded = GroupRecord::decode(&k, v.as_deref()).unwrap().unwrap();
        reloaded.replay(decoded, 100);
    }
    reloaded.finish_loading(100);
    reloaded.check_invariants();
    assert_eq!(reloaded.describe_group("g"), Some(described));
    assert_eq!(
        reloaded.fetch_offsets("g", None),
        c.fetch_offsets("g", None)
    );
    // Reloaded members must heartbeat within their session or are removed.
    assert_eq!(reloaded.heartbeat("g", &ids[0], None, 1, 5_000), Ok(()));
    reloaded.tick(100 + i64::from(SESSION_MS) + 1);
    assert_eq!(
        reloaded.group_state("g"),
        Some((GroupState::PreparingRebalance, 1))
    );
}

// ---------------------------------------------------------------------------------------
// Transactional offset commits (TxnOffsetCommit, markers, require_stable).

/// What the broker writes to the offsets partition, in log order.
#[derive(Debug, Clone)]
enum Logged {
    Plain(GroupRecord),
    /// One transactional batch of a producer.
    Txn(i64, Vec<GroupRecord>),
    /// A COMMIT (true) or ABORT marker of a producer.
    Marker(i64, bool),
}

fn txn_req(producer_id: i64, offsets: &[(&str, i32, i64)]) -> TxnCommitRequest {
    TxnCommitRequest {
        group_id: "g".into(),
        producer_id,
        producer_epoch: 0,
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        offsets: offsets
            .iter()
            .map(|(topic, partition, offset)| OffsetCommit {
                topic: topic.to_string(),
                partition: *partition,
                offset: *offset,
                leader_epoch: 2,
                metadata: Some("txn".into()),
            })
            .collect(),
    }
}

fn plain_req(offsets: &[(&str, i32, i64)]) -> CommitRequest {
    CommitRequest {
        group_id: "g".into(),
        generation_id: -1,
        member_id: String::new(),
        group_instance_id: None,
        retention_time_ms: -1,
        offsets: txn_req(0, offsets).offsets,
    }
}

/// Moves the coordinator's records to the log as the broker appends them.
fn drain(c: &mut GroupCoordinator, log: &mut Vec<Logged>) {
    for e in c.take_effects() {
        match e {
            Effect::Append(r) => log.push(Logged::Plain(r)),
            Effect::AppendTxnOffsets(w) => log.push(Logged::Txn(w.producer_id, w.records)),
            Effect::JoinDone { .. } | Effect::SyncDone { .. } => {}
        }
    }
}

/// A marker reaches the log, then the coordinator (the WriteTxnMarkers hook).
fn complete(c: &mut GroupCoordinator, log: &mut Vec<Logged>, producer_id: i64, commit: bool) {
    log.push(Logged::Marker(producer_id, commit));
    c.complete_txn(producer_id, commit);
    c.check_invariants();
}

/// Loads a new coordinator from the log, records round-tripped through their bytes.
fn reload(log: &[Logged]) -> GroupCoordinator {
    let mut c = GroupCoordinator::new(config(0), 2);
    let decoded = |r: &GroupRecord| {
        let (k, v) = r.encode();
        GroupRecord::decode(&k, v.as_deref()).unwrap().unwrap()
    };
    for entry in log {
        match entry {
            Logged::Plain(r) => c.replay(decoded(r), 100),
            Logged::Txn(producer_id, records) => {
                for r in records {
                    c.replay_txn_offset(*producer_id, decoded(r), 100);
                }
            }
            Logged::Marker(producer_id, commit) => {
                c.complete_txn(*producer_id, *commit);
            }
        }
    }
    c.finish_loading(100);
    c.check_invariants();
    c
}

fn committed(c: &GroupCoordinator, topic: &str, partition: i32) -> Option<i64> {
    c.fetch_offsets("g", Some(&[(topic.to_owned(), partition)]))[0]
        .1
        .as_ref()
        .map(|o| o.offset)
}

type Stable = Vec<((String, i32), Result<Option<i64>, GroupError>)>;

fn stable(c: &GroupCoordinator, partitions: &[(&str, i32)]) -> Stable {
    let tps: Vec<(String, i32)> = partitions
        .iter()
        .map(|(t, p)| (t.to_string(), *p))
        .collect();
    c.fetch_stable_offsets("g", Some(&tps))
        .into_iter()
        .map(|(tp, r)| (tp, r.map(|o| o.map(|o| o.offset))))
        .collect()
}

/// The live coordinator and one reloaded from `log` answer alike, stable or not.
fn assert_reload_matches(c: &GroupCoordinator, log: &[Logged], partitions: &[(&str, i32)]) {
    let reloaded = reload(log);
    assert_eq!(stable(&reloaded, partitions), stable(c, partitions));
    assert_eq!(
        reloaded.fetch_offsets("g", None),
        c.fetch_offsets("g", None)
    );
    assert_eq!(reloaded.list_groups(), c.list_groups());
}

#[test]
fn txn_offsets_are_pending_until_the_commit_marker() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut log = Vec::new();
    assert_eq!(
        c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10)]), 1),
        Ok(vec![Ok(())])
    );
    c.check_invariants();
    // One transactional batch of producer 7, in the OffsetCommit record format.
    let effects = c.take_effects();
    let [Effect::AppendTxnOffsets(w)] = effects.as_slice() else {
        panic!("{effects:?}")
    };
    assert_eq!(
        (w.group_id.as_str(), w.producer_id, w.producer_epoch),
        ("g", 7, 0)
    );
    assert_eq!(
        w.records,
        vec![GroupRecord::Offset {
            group_id: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: Some(OffsetValue {
                offset: 10,
                leader_epoch: 2,
                metadata: "txn".into(),
                commit_timestamp_ms: 1,
                expire_timestamp_ms: None,
            }),
        }]
    );
    log.push(Logged::Txn(7, w.records.clone()));
    // Pending: invisible to OffsetFetch, unstable with require_stable.
    assert_eq!(committed(&c, "t", 0), None);
    assert!(matches!(
        &stable(&c, &[("t", 0)])[0].1,
        Err(GroupError::UnstableOffsetCommit { partition: 0, .. })
    ));
    assert_reload_matches(&c, &log, &[("t", 0)]);
    // Another producer's marker changes nothing.
    complete(&mut c, &mut log, 8, true);
    assert_eq!(committed(&c, "t", 0), None);
    complete(&mut c, &mut log, 7, true);
    assert_eq!(committed(&c, "t", 0), Some(10));
    assert_eq!(stable(&c, &[("t", 0)])[0].1, Ok(Some(10)));
    assert_eq!(c.take_effects(), vec![], "a marker writes nothing more");
    assert_reload_matches(&c, &log, &[("t", 0)]);
    // A second marker of the same producer is a no-op.
    assert_eq!(c.complete_txn(7, true), 0);
}

#[test]
fn abort_marker_drops_pending_offsets() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut log = Vec::new();
    c.commit_offsets(&plain_req(&[("t", 0, 5)]), 1).unwrap();
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10), ("t", 1, 11)]), 2)
        .unwrap();
    drain(&mut c, &mut log);
    assert_reload_matches(&c, &log, &[("t", 0), ("t", 1)]);
    complete(&mut c, &mut log, 7, false);
    assert_eq!(committed(&c, "t", 0), Some(5));
    assert_eq!(committed(&c, "t", 1), None);
    assert_eq!(
        stable(&c, &[("t", 0), ("t", 1)]),
        vec![(("t".into(), 0), Ok(Some(5))), (("t".into(), 1), Ok(None))]
    );
    assert_reload_matches(&c, &log, &[("t", 0), ("t", 1)]);
}

#[test]
fn the_later_record_wins_between_a_plain_and_a_transactional_commit() {
    // Transaction first, plain commit after it: the plain one is newer and stays.
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut log = Vec::new();
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10), ("t", 1, 11)]), 1)
        .unwrap();
    c.commit_offsets(&plain_req(&[("t", 0, 20)]), 2).unwrap();
    drain(&mut c, &mut log);
    assert_eq!(committed(&c, "t", 0), Some(20));
    complete(&mut c, &mut log, 7, true);
    assert_eq!(committed(&c, "t", 0), Some(20));
    assert_eq!(committed(&c, "t", 1), Some(11));
    assert_reload_matches(&c, &log, &[("t", 0), ("t", 1)]);

    // Plain commit first, transaction after it: the transaction's offset is newer.
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut log = Vec::new();
    c.commit_offsets(&plain_req(&[("t", 0, 20)]), 1).unwrap();
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10)]), 2)
        .unwrap();
    drain(&mut c, &mut log);
    assert_eq!(committed(&c, "t", 0), Some(20), "pending is not visible");
    complete(&mut c, &mut log, 7, true);
    assert_eq!(committed(&c, "t", 0), Some(10));
    assert_reload_matches(&c, &log, &[("t", 0)]);

    // Two producers on one partition: each marker decides its own offset.
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut log = Vec::new();
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10)]), 1)
        .unwrap();
    c.txn_commit_offsets(&txn_req(8, &[("t", 0, 30)]), 2)
        .unwrap();
    drain(&mut c, &mut log);
    complete(&mut c, &mut log, 8, true);
    assert_eq!(committed(&c, "t", 0), Some(30));
    assert!(
        stable(&c, &[("t", 0)])[0].1.is_err(),
        "producer 7 still open"
    );
    // Producer 7 wrote before producer 8: committing it later does not go back.
    complete(&mut c, &mut log, 7, true);
    assert_eq!(committed(&c, "t", 0), Some(30));
    assert_reload_matches(&c, &log, &[("t", 0)]);
}

#[test]
fn txn_commit_member_checks_follow_kip_447() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let ids = stable_group(&mut c, 2);
    let managed = |member: &str, generation_id: i32, instance: Option<&str>| TxnCommitRequest {
        generation_id,
        member_id: member.into(),
        group_instance_id: instance.map(Into::into),
        ..txn_req(7, &[("t", 0, 10)])
    };
    assert_eq!(
        c.txn_commit_offsets(&managed(&ids[1], 1, None), 1),
        Ok(vec![Ok(())])
    );
    assert_eq!(
        c.txn_commit_offsets(&managed(&ids[1], 2, None), 1),
        Err(GroupError::IllegalGeneration {
            generation_id: 2,
            current_generation_id: 1
        })
    );
    assert!(matches!(
        c.txn_commit_offsets(&managed("nobody", 1, None), 1),
        Err(GroupError::UnknownMemberId { .. })
    ));
    assert!(matches!(
        c.txn_commit_offsets(&managed(&ids[1], 1, Some("unknown-instance")), 1),
        Err(GroupError::UnknownMemberId { .. })
    ));
    // Without member fields (v0–v2, or a producer without the consumer's metadata) the
    // group's members are not checked, unlike OffsetCommit.
    assert_eq!(
        c.txn_commit_offsets(&txn_req(8, &[("t", 1, 1)]), 1),
        Ok(vec![Ok(())])
    );
    assert!(matches!(
        c.commit_offsets(&plain_req(&[("t", 1, 1)]), 1),
        Err(GroupError::UnknownMemberId { .. })
    ));
    // A rebalance does not refuse it either (Kafka checks only member and generation).
    c.join_group(50, join_req(&ids[0], None, &["range"]), 2);
    assert_eq!(
        c.group_state("g"),
        Some((GroupState::PreparingRebalance, 1))
    );
    assert_eq!(
        c.txn_commit_offsets(&managed(&ids[1], 1, None), 2),
        Ok(vec![Ok(())])
    );
    c.check_invariants();

    // A static member: another member id with its instance id is fenced.
    let mut c = GroupCoordinator::new(config(0), 1);
    c.join_group(1, join_req("", Some("i"), &["range"]), 0);
    c.tick(0);
    let member = match joins(&c.take_effects()).remove(&1) {
        Some(Ok(j)) => j.member_id,
        other => panic!("{other:?}"),
    };
    c.sync_group(2, sync_req(&member, 1, &[(&member, "a")]), 1);
    c.take_effects();
    assert!(matches!(
        c.txn_commit_offsets(&managed("other", 1, Some("i")), 2),
        Err(GroupError::FencedInstanceId { .. })
    ));
    assert_eq!(
        c.txn_commit_offsets(&managed(&member, 1, Some("i")), 2),
        Ok(vec![Ok(())])
    );

    // A missing group: a member-less commit creates it Empty; a member's commit is refused
    // and leaves nothing behind.
    let mut c = GroupCoordinator::new(config(0), 1);
    assert!(matches!(
        c.txn_commit_offsets(&managed("m", 1, None), 1),
        Err(GroupError::UnknownMemberId { .. })
    ));
    assert_eq!(c.list_groups(), vec![]);
    assert_eq!(c.take_effects(), vec![]);
    assert_eq!(
        c.txn_commit_offsets(
            &TxnCommitRequest {
                group_id: String::new(),
                ..txn_req(7, &[])
            },
            1
        ),
        Err(GroupError::InvalidGroupId)
    );
}

#[test]
fn txn_commit_refuses_oversized_metadata_per_partition() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut req = txn_req(7, &[("t", 0, 10), ("t", 1, 11)]);
    req.offsets[0].metadata = Some("x".repeat(c.config().offset_metadata_max_bytes + 1));
    let results = c.txn_commit_offsets(&req, 1).unwrap();
    assert!(matches!(
        results[0],
        Err(GroupError::OffsetMetadataTooLarge { .. })
    ));
    assert_eq!(results[1], Ok(()));
    let effects = c.take_effects();
    let [Effect::AppendTxnOffsets(w)] = effects.as_slice() else {
        panic!("{effects:?}")
    };
    assert_eq!(w.records.len(), 1, "only the accepted partition is written");
    // Nothing accepted: nothing written.
    req.offsets.truncate(1);
    assert!(c.txn_commit_offsets(&req, 2).unwrap()[0].is_err());
    assert_eq!(c.take_effects(), vec![]);
}

#[test]
fn require_stable_reports_only_partitions_with_pending_offsets() {
    let mut c = GroupCoordinator::new(config(0), 1);
    c.commit_offsets(&plain_req(&[("t", 0, 5), ("t", 1, 6)]), 1)
        .unwrap();
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10), ("u", 0, 1)]), 2)
        .unwrap();
    let got = stable(&c, &[("t", 0), ("t", 1), ("u", 0), ("u", 1)]);
    assert!(matches!(
        got[0].1,
        Err(GroupError::UnstableOffsetCommit { .. })
    ));
    assert_eq!(got[1].1, Ok(Some(6)));
    assert!(matches!(
        got[2].1,
        Err(GroupError::UnstableOffsetCommit { .. })
    ));
    assert_eq!(got[3].1, Ok(None));
    // All partitions: those with a committed offset, the pending-only one not listed.
    let all: Vec<_> = c
        .fetch_stable_offsets("g", None)
        .into_iter()
        .map(|(tp, r)| (tp, r.is_ok()))
        .collect();
    assert_eq!(all, vec![(("t".into(), 0), false), (("t".into(), 1), true)]);
    // Without require_stable: committed offsets only.
    assert_eq!(committed(&c, "t", 0), Some(5));
    assert_eq!(committed(&c, "u", 0), None);
}

#[test]
fn deleting_a_group_or_an_offset_drops_pending_offsets() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut log = Vec::new();
    c.commit_offsets(&plain_req(&[("t", 1, 5)]), 1).unwrap();
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10), ("t", 1, 11)]), 2)
        .unwrap();
    drain(&mut c, &mut log);
    assert_eq!(c.delete_group("g", 3), Ok(()));
    let effects = c.take_effects();
    // Tombstones for the committed and the pending-only partition, then the group's.
    let tombstones: Vec<_> = effects
        .iter()
        .map(|e| match e {
            Effect::Append(GroupRecord::Offset {
                topic,
                partition,
                value: None,
                ..
            }) => format!("{topic}-{partition}"),
            Effect::Append(GroupRecord::Group { value: None, .. }) => "group".into(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(tombstones, ["t-1", "t-0", "group"]);
    log.extend(effects.into_iter().filter_map(|e| match e {
        Effect::Append(r) => Some(Logged::Plain(r)),
        _ => None,
    }));
    complete(&mut c, &mut log, 7, true);
    assert_eq!(c.list_groups(), vec![]);
    assert_eq!(committed(&c, "t", 0), None);
    assert_reload_matches(&c, &log, &[("t", 0), ("t", 1)]);
    // Even if compaction removed the group tombstone, the offset tombstones win.
    let compacted: Vec<_> = log
        .iter()
        .filter(|l| !matches!(l, Logged::Plain(GroupRecord::Group { .. })))
        .cloned()
        .collect();
    assert_eq!(reload(&compacted).fetch_offsets("g", None), vec![]);

    // OffsetDelete writes a tombstone for a pending-only partition and drops it.
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut log = Vec::new();
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10)]), 1)
        .unwrap();
    drain(&mut c, &mut log);
    assert_eq!(c.delete_offsets("g", &[("t".into(), 0)]), Ok(vec![Ok(())]));
    drain(&mut c, &mut log);
    assert!(matches!(
        log.last(),
        Some(Logged::Plain(GroupRecord::Offset { value: None, .. }))
    ));
    assert_eq!(stable(&c, &[("t", 0)])[0].1, Ok(None));
    complete(&mut c, &mut log, 7, true);
    assert_eq!(committed(&c, "t", 0), None);
    assert_reload_matches(&c, &log, &[("t", 0)]);
}

#[test]
fn an_open_transaction_keeps_its_offset_and_group_from_expiring() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let retention = c.config().offsets_retention_ms;
    c.commit_offsets(&plain_req(&[("t", 0, 5)]), 0).unwrap();
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10), ("t", 1, 11)]), 0)
        .unwrap();
    c.take_effects();
    c.tick(retention + 1);
    assert_eq!(
        c.take_effects(),
        vec![],
        "nothing expires under an open transaction"
    );
    assert_eq!(committed(&c, "t", 0), Some(5));
    c.complete_txn(7, false);
    c.tick(2 * retention + 2);
    assert_eq!(committed(&c, "t", 0), None);
    assert_eq!(c.list_groups(), vec![], "the emptied group is removed");
    c.check_invariants();
}

#[test]
fn a_txn_write_that_failed_forgets_only_its_own_pending_offsets() {
    let mut c = GroupCoordinator::new(config(0), 1);
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10)]), 1)
        .unwrap();
    let Some(Effect::AppendTxnOffsets(first)) = c.take_effects().pop() else {
        panic!()
    };
    // The producer retried (another partition too) before the first attempt failed.
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 12), ("t", 1, 1)]), 2)
        .unwrap();
    let Some(Effect::AppendTxnOffsets(second)) = c.take_effects().pop() else {
        panic!()
    };
    c.txn_offsets_not_written(&first);
    c.check_invariants();
    assert!(
        stable(&c, &[("t", 0)])[0].1.is_err(),
        "the retry stays pending"
    );
    c.txn_offsets_not_written(&second);
    c.check_invariants();
    assert_eq!(
        stable(&c, &[("t", 0), ("t", 1)]),
        vec![(("t".into(), 0), Ok(None)), (("t".into(), 1), Ok(None))]
    );
    assert_eq!(c.complete_txn(7, true), 0);
}

#[test]
fn pending_offsets_survive_a_reload_and_are_decided_by_a_later_marker() {
    let mut c = GroupCoordinator::new(config(0), 1);
    let mut log = Vec::new();
    c.commit_offsets(&plain_req(&[("t", 0, 1), ("t", 1, 1)]), 1)
        .unwrap();
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 10)]), 2)
        .unwrap();
    c.txn_commit_offsets(&txn_req(8, &[("t", 1, 20)]), 3)
        .unwrap();
    c.txn_commit_offsets(&txn_req(9, &[("t", 2, 30)]), 4)
        .unwrap();
    drain(&mut c, &mut log);
    complete(&mut c, &mut log, 9, true);
    // Producer 7 commits a second batch in the same transaction.
    c.txn_commit_offsets(&txn_req(7, &[("t", 0, 11)]), 5)
        .unwrap();
    drain(&mut c, &mut log);
    let tps = [("t", 0), ("t", 1), ("t", 2)];
    assert_reload_matches(&c, &log, &tps);
    // Failover: the new coordinator loads the log; the open transactions stay pending and
    // their markers come later through the hook, after a plain commit of t-1.
    let mut reloaded = reload(&log);
    for m in [&mut c, &mut reloaded] {
        m.commit_offsets(&plain_req(&[("t", 1, 2)]), 6).unwrap();
        m.complete_txn(7, true);
        m.complete_txn(8, true);
        m.check_invariants();
    }
    assert_eq!(stable(&reloaded, &tps), stable(&c, &tps));
    assert_eq!(
        stable(&c, &tps),
        vec![
            (("t".into(), 0), Ok(Some(11))),
            (("t".into(), 1), Ok(Some(2))),
            (("t".into(), 2), Ok(Some(30))),
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Property test: simulated clients drive the coordinator with random timing.

/// What a simulated consumer knows.
#[derive(Debug, Clone, Default)]
struct Client {
    member_id: String,
    generation_id: i32,
    instance: Option<String>,
    /// A JoinGroup or SyncGroup is in flight under this waiter id.
    in_flight: Option<WaiterId>,
    /// Leader of its last join: the members to assign to.
    leader_of: Option<Vec<String>>,
    /// Has an assignment for `generation_id`.
    synced: bool,
    alive: bool,
}

#[derive(Debug, Clone)]
enum Op {
    /// Client i takes its next protocol step (join, sync or heartbeat as it needs).
    Step(usize),
    /// Client i commits with what it believes is its generation.
    Commit(usize),
    /// Client i leaves the group.
    Leave(usize),
    /// Client i crashes (stops talking) or comes back (fresh, or static with instance id).
    Crash(usize),
    Restart(usize),
    /// Time passes.
    Advance(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..5usize).prop_map(Op::Step),
        2 => (0..5usize).prop_map(Op::Commit),
        1 => (0..5usize).prop_map(Op::Leave),
        1 => (0..5usize).prop_map(Op::Crash),
        1 => (0..5usize).prop_map(Op::Restart),
        3 => (1..15_000u32).prop_map(Op::Advance),
    ]
}

struct Sim {
    c: GroupCoordinator,
    clients: Vec<Client>,
    now_ms: i64,
    next_waiter: WaiterId,
    /// waiter → (client, is_join).
    waiters: BTreeMap<WaiterId, (usize, bool)>,
    /// Highest generation any JoinGroup answer carried.
    max_generation: i32,
    /// Per generation: the partitions delivered by SyncGroup answers, to whom.
    delivered: BTreeMap<i32, BTreeMap<String, String>>,
    /// Per generation: the leader named by join answers.
    leaders: BTreeMap<i32, String>,
}

const PARTITIONS: usize = 6;

impl Sim {
    fn new(statics: bool) -> Sim {
        let clients = (0..5)
            .map(|i| Client {
                instance: (statics && i % 2 == 0).then(|| format!("instance-{i}")),
                alive: true,
                ..Client::default()
            })
            .collect();
        Sim {
            c: GroupCoordinator::new(config(500), 9),
            clients,
            now_ms: 0,
            next_waiter: 1,
            waiters: BTreeMap::new(),
            max_generation: 0,
            delivered: BTreeMap::new(),
            leaders: BTreeMap::new(),
        }
    }

    fn waiter(&mut self, client: usize, join: bool) -> WaiterId {
        let w = self.next_waiter;
        self.next_waiter += 1;
        self.waiters.insert(w, (client, join));
        self.clients[client].in_flight = Some(w);
        w
    }

    fn join(&mut self, i: usize) {
        let cl = &self.clients[i];
        let mut r = join_req(&cl.member_id, cl.instance.as_deref(), &["range"]);
        r.group_instance_id = cl.instance.clone();
        r.require_known_member_id = cl.instance.is_none();
        let w = self.waiter(i, true);
        self.c.join_group(w, r, self.now_ms);
    }

    fn step(&mut self, i: usize) {
        let cl = self.clients[i].clone();
        if !cl.alive || cl.in_flight.is_some() {
            return;
        }
        if cl.member_id.is_empty() && cl.instance.is_none() || cl.generation_id == 0 {
            return self.join(i);
        }
        if !cl.synced {
            let assignments: Vec<(String, Bytes)> = match &cl.leader_of {
                Some(members) => (0..PARTITIONS)
                    .map(|p| (members[p % members.len()].clone(), p))
                    .fold(BTreeMap::<String, String>::new(), |mut m, (id, p)| {
                        m.entry(id).or_default().push_str(&format!("{p},"));
                        m
                    })
                    .into_iter()
                    .map(|(id, a)| (id, Bytes::from(a)))
                    .collect(),
                None => Vec::new(),
            };
            let mut s = sync_req(&cl.member_id, cl.generation_id, &[]);
            s.group_instance_id = cl.instance.clone();
            s.assignments = assignments;
            let w = self.waiter(i, false);
            self.c.sync_group(w, s, self.now_ms);
            return;
        }
        match self.c.heartbeat(
            "g",
            &cl.member_id,
            cl.instance.as_deref(),
            cl.generation_id,
            self.now_ms,
        ) {
            Ok(()) => {}
            Err(GroupError::UnknownMemberId { .. }) | Err(GroupError::FencedInstanceId { .. }) => {
                self.reset(i)
            }
            Err(_) => self.join(i),
        }
    }

    fn reset(&mut self, i: usize) {
        let cl = &mut self.clients[i];
        cl.member_id.clear();
        cl.generation_id = 0;
        cl.synced = false;
        cl.leader_of = None;
    }

    fn commit(&mut self, i: usize) {
        let cl = self.clients[i].clone();
        if !cl.alive || cl.generation_id == 0 {
            return;
        }
        let mut r = commit_req(&cl.member_id, cl.generation_id, 1);
        r.group_instance_id = cl.instance.clone();
        let (state, generation) = self.c.group_state("g").expect("a member's group exists");
        if self.c.commit_offsets(&r, self.now_ms).is_ok() {
            // No commit from a stale generation: it names the newest generation handed out.
            assert_eq!(cl.generation_id, generation);
            assert_eq!(
                cl.generation_id, self.max_generation,
                "stale commit accepted"
            );
            assert!(matches!(
                state,
                GroupState::Stable | GroupState::PreparingRebalance
            ));
        }
    }

    fn drain(&mut self) {
        for e in self.c.take_effects() {
            match e {
                Effect::Append(_) | Effect::AppendTxnOffsets(_) => {}
                Effect::JoinDone { waiter, result } => {
                    let Some((i, is_join)) = self.waiters.remove(&waiter) else {
                        continue; // answered to a client that has since restarted
                    };
                    assert!(is_join);
                    if self.clients[i].in_flight == Some(waiter) {
                        self.clients[i].in_flight = None;
                    }
                    match result {
                        Ok(r) => {
                            assert!(
                                r.generation_id >= self.max_generation
                                    || r.generation_id == self.clients[i].generation_id
                            );
                            self.max_generation = self.max_generation.max(r.generation_id);
                            let leader = self
                                .leaders
                                .entry(r.generation_id)
                                .or_insert(r.leader_id.clone());
                            assert!(
                                *leader == r.leader_id || r.skip_assignment || r.members.is_empty(),
                                "one leader per generation"
                            );
                            let cl = &mut self.clients[i];
                            cl.synced = cl.generation_id == r.generation_id
                                && cl.member_id == r.member_id
                                && cl.synced;
                            cl.member_id = r.member_id.clone();
                            cl.generation_id = r.generation_id;
                            cl.leader_of = (!r.members.is_empty() && !r.skip_assignment)
                                .then(|| r.members.iter().map(|m| m.member_id.clone()).collect());
                            if r.skip_assignment {
                                cl.synced = false;
                            }
                        }
                        Err(GroupError::MemberIdRequired { member_id }) => {
                            self.clients[i].member_id = member_id;
                        }
                        Err(GroupError::UnknownMemberId { .. })
                        | Err(GroupError::FencedInstanceId { .. }) => self.reset(i),
                        Err(_) => {}
                    }
                }
                Effect::SyncDone { waiter, result } => {
                    let Some((i, is_join)) = self.waiters.remove(&waiter) else {
                        continue; // answered to a client that has since restarted
                    };
                    assert!(!is_join);
                    if self.clients[i].in_flight == Some(waiter) {
                        self.clients[i].in_flight = None;
                    }
                    match result {
                        Ok(r) => {
                            let cl = &mut self.clients[i];
                            cl.synced = true;
                            // Every partition is delivered at most once per generation.
                            let seen = self.delivered.entry(cl.generation_id).or_default();
                            for p in std::str::from_utf8(&r.assignment)
                                .unwrap()
                                .split(',')
                                .filter(|s| !s.is_empty())
                            {
                                if let Some(owner) = seen.get(p) {
                                    assert!(
                                        owner == &cl.member_id || cl.instance.is_some(),
                                        "partition {p} delivered to {owner} and {} in generation {}",
                                        cl.member_id,
                                        cl.generation_id
                                    );
                                }
                                seen.insert(p.to_owned(), cl.member_id.clone());
                            }
                        }
                        Err(GroupError::UnknownMemberId { .. })
                        | Err(GroupError::FencedInstanceId { .. }) => self.reset(i),
                        Err(_) => {
                            // Rejoin with the member id it has.
                            let cl = &mut self.clients[i];
                            cl.synced = false;
                            cl.leader_of = None;
                            cl.generation_id = 0;
                        }
                    }
                }
            }
        }
        self.c.check_invariants();
    }

    fn apply(&mut self, op: &Op) {
        if self.c.group_state("g").is_none() {
            // An Empty group without offsets is removed (as Kafka does when it expires
            // offsets); a new incarnation starts again at generation 0.
            self.max_generation = 0;
            self.leaders.clear();
            self.delivered.clear();
        }
        match *op {
            Op::Step(i) => self.step(i),
            Op::Commit(i) => self.commit(i),
            Op::Leave(i) => {
                let cl = self.clients[i].clone();
                if cl.alive && !cl.member_id.is_empty() && cl.in_flight.is_none() {
                    let _ = self.c.leave_group(
                        "g",
                        &[(cl.member_id.clone(), cl.instance.clone())],
                        self.now_ms,
                    );
                    self.reset(i);
                }
            }
            Op::Crash(i) => self.clients[i].alive = false,
            Op::Restart(i) => {
                if !self.clients[i].alive {
                    self.waiters.retain(|_, (c, _)| *c != i);
                    let instance = self.clients[i].instance.clone();
                    self.clients[i] = Client {
                        instance,
                        alive: true,
                        ..Client::default()
                    };
                }
            }
            Op::Advance(ms) => {
                self.now_ms += i64::from(ms);
                self.c.tick(self.now_ms);
            }
        }
        self.drain();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Random joins, syncs, heartbeats, commits, leaves, crashes, restarts and time; the
    /// invariants hold after every event, and once everyone behaves the group converges to
    /// one Stable generation containing exactly the live clients.
    #[test]
    fn random_membership_keeps_invariants_and_converges(
        statics in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let mut sim = Sim::new(statics);
        for op in &ops {
            sim.apply(op);
        }
        // Liveness: every live client steps every 1 s for a while.
        for _ in 0..200 {
            for i in 0..sim.clients.len() {
                sim.apply(&Op::Step(i));
            }
            sim.apply(&Op::Advance(1_000));
        }
        let live: BTreeSet<String> = sim
            .clients
            .iter()
            .filter(|c| c.alive)
            .map(|c| c.member_id.clone())
            .collect();
        if live.is_empty() {
            prop_assert!(matches!(sim.c.group_state("g"), None | Some((GroupState::Empty, _))));
        } else {
            let (state, generation) = sim.c.group_state("g").unwrap();
            prop_assert_eq!(state, GroupState::Stable);
            let described: BTreeSet<String> = sim
                .c
                .describe_group("g")
                .unwrap()
                .members
                .into_iter()
                .map(|m| m.member_id)
                .collect();
            prop_assert_eq!(&described, &live);
            for c in sim.clients.iter().filter(|c| c.alive) {
                prop_assert!(c.synced && c.generation_id == generation, "{c:?} at generation {generation}");
            }
        }
    }
}
