//! # cairn-meta — cluster metadata
//!
//! Owns the cluster's metadata: the [`MetadataRecord`]s that describe every change (a broker
//! registered, a topic created, a partition's leader moved, a config changed), the
//! [`ClusterState`] that is a pure function of the records applied so far, the
//! [`controller`] decisions that turn an admin request into records, and the [`quorum`]
//! (raft-rs; its durable storage on RocksDB behind the cargo feature `rocksdb`) that
//! orders and replicates them.
//!
//! This follows KRaft's shape (KIP-500, KIP-631): every broker answers Metadata,
//! DescribeConfigs and routing decisions from its local applied copy of one ordered log.
//!
//! ## What it must never do
//! - Read the clock, open sockets or spawn threads: time arrives as arguments (Raft ticks
//!   included), messages between voters leave as values, and the broker (the shell)
//!   carries them. Storage I/O (RocksDB, the legacy log file) is the one exception.
//! - Apply a record that the controller did not validate: [`ClusterState::apply`] asserts
//!   the invariants the controller checked, because a record in the log that does not apply
//!   is a bug, not bad input. The quorum guarantees it by applying an entry only to the
//!   exact state version it was decided against (see [`quorum`]).
//!
//! ## Formats
//! Records travel and are stored as JSON (serde, `#[serde(default)]` on later fields);
//! moving them to protobuf under `proto/` is still to do. [`MetadataLog`] is the
//! single-node file the broker commits to today; once the broker runs the quorum, it is
//! read once ([`MetadataLog::read_records`]) to import it on upgrade.
//!
//! ## Invariants
//! - Topic names and topic ids are unique among live topics; a deleted topic's id is never
//!   reused (ids are random v4 UUIDs).
//! - Partition indexes of a topic are exactly `0..partitions.len()`.
//! - `leader_epoch` and `partition_epoch` of a partition only grow; every
//!   `PartitionChange` raises `partition_epoch`, every leader change raises `leader_epoch`.
//! - A partition's ISR and ELR (eligible leader replicas, KIP-966) lie within its replicas
//!   and share no broker; its leader is -1 (offline) or an unfenced ISR member; the ISR is
//!   empty only while the leader is -1 (its last member lost its log). Elections never pick
//!   a broker outside the ISR and ELR (see [`controller`] for the rules).

pub mod controller;
mod log;
pub mod quorum;
mod records;
mod state;

pub use log::{MetadataLog, MetadataLogError};
pub use records::{MetadataRecord, PartitionRecord};
pub use state::{BrokerInfo, ClusterState, PartitionState, TopicInfo};
