//! # cairn-group — the group coordinator's state machines
//!
//! Owns consumer groups of the classic protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup; Kafka's protocol guide and KIP-62, KIP-345, KIP-394, KIP-814) and the
//! offsets they commit (OffsetCommit, OffsetFetch, OffsetDelete, DeleteGroups, expiry by
//! `offsets.retention.minutes`, KIP-211), including offsets committed inside a producer's
//! transaction (TxnOffsetCommit, KIP-98 and KIP-447), which stay pending until the
//! transaction's COMMIT or ABORT marker decides them. One [`GroupCoordinator`] holds the groups of one
//! `__consumer_offsets` partition; [`records`] is the byte format of that partition.
//!
//! ## What it must never do
//! - Read the clock, do I/O, spawn threads or draw randomness: time comes in as `now_ms`,
//!   timers fire in [`GroupCoordinator::tick`], randomness for member ids is a seed, and
//!   work comes out as [`Effect`]s (records to append, delayed answers to deliver).
//! - Know Kafka's numeric error codes: it answers [`GroupError`]s, the broker maps them.
//!
//! ## Who calls it
//! The broker's `group_coordinator` module, one coordinator per led `__consumer_offsets`
//! partition, each behind a mutex; every request handler calls one method, then drains
//! the effects, appends the records, waits until they are durable, and only then
//! delivers the answers. KIP-848 (server-side assignment) will be a second group type
//! beside the classic one, sharing the offsets and the records.
//!
//! ## Example: one member joins, syncs and commits
//! ```
//! use bytes::Bytes;
//! use cairn_group::*;
//!
//! let config = GroupConfig { initial_rebalance_delay_ms: 0, ..GroupConfig::default() };
//! let mut c = GroupCoordinator::new(config, 7);
//! let join = |member_id: &str| JoinRequest {
//!     group_id: "g".into(),
//!     member_id: member_id.into(),
//!     group_instance_id: None,
//!     client_id: "c".into(),
//!     client_host: "/127.0.0.1".into(),
//!     session_timeout_ms: 10_000,
//!     rebalance_timeout_ms: 10_000,
//!     protocol_type: "consumer".into(),
//!     protocols: vec![("range".into(), Bytes::new())],
//!     require_known_member_id: true,
//! };
//! // KIP-394: the first join only hands out a member id.
//! c.join_group(1, join(""), 0);
//! let member_id = match c.take_effects().pop() {
//!     Some(Effect::JoinDone { result: Err(GroupError::MemberIdRequired { member_id }), .. }) => member_id,
//!     other => panic!("{other:?}"),
//! };
//! // The second join starts a rebalance out of Empty; it completes when the (zero)
//! // initial delay fires.
//! c.join_group(2, join(&member_id), 0);
//! c.tick(0);
//! let Some(Effect::JoinDone { waiter: 2, result: Ok(joined) }) = c.take_effects().pop() else { panic!() };
//! assert_eq!((joined.generation_id, joined.leader_id.as_str()), (1, member_id.as_str()));
//! c.sync_group(3, SyncRequest {
//!     group_id: "g".into(), generation_id: 1, member_id: member_id.clone(),
//!     group_instance_id: None, protocol_type: None, protocol_name: None,
//!     assignments: vec![(member_id.clone(), Bytes::from_static(b"all"))],
//! }, 1);
//! let effects = c.take_effects();
//! assert!(matches!(effects[0], Effect::Append(_)), "group metadata is written first");
//! assert!(matches!(&effects[1], Effect::SyncDone { waiter: 3, result: Ok(r) } if r.assignment == "all"));
//! let commit = CommitRequest {
//!     group_id: "g".into(), generation_id: 1, member_id, group_instance_id: None,
//!     retention_time_ms: -1,
//!     offsets: vec![OffsetCommit { topic: "t".into(), partition: 0, offset: 5, leader_epoch: -1, metadata: None }],
//! };
//! assert_eq!(c.commit_offsets(&commit, 2), Ok(vec![Ok(())]));
//! assert_eq!(c.fetch_offsets("g", Some(&[("t".into(), 0)]))[0].1.as_ref().unwrap().offset, 5);
//! ```

pub mod coordinator;
pub mod error;
pub mod records;

pub use coordinator::{
    CommitRequest, CommittedOffset, Effect, GroupConfig, GroupCoordinator, GroupDescription,
    GroupListing, GroupState, JoinRequest, JoinResponse, JoinedMember, MemberDescription,
    OffsetCommit, StableOffset, SyncRequest, SyncResponse, TxnCommitRequest, TxnOffsetWrite,
    WaiterId,
};
pub use error::GroupError;
pub use records::{GroupRecord, GroupValue, MemberValue, OffsetValue, RecordFormatError};

#[cfg(test)]
mod tests;
