//! # cairn-meta — cluster metadata
//!
//! Owns the cluster's metadata: the [`MetadataRecord`]s that describe every change (a broker
//! registered, a topic created, a partition's leader moved, a config changed), the
//! [`ClusterState`] that is a pure function of the records applied so far, the
//! [`controller`] decisions that turn an admin request into records, and the
//! [`MetadataLog`] that orders and persists records.
//!
//! This follows KRaft's shape (KIP-500, KIP-631): every broker answers Metadata,
//! DescribeConfigs and routing decisions from its local applied copy of one ordered log.
//!
//! ## What it must never do
//! - Read the clock, open sockets or spawn threads: time arrives as arguments, and the
//!   broker (the tokio shell) drives I/O other than the metadata log's own file.
//! - Apply a record that the controller did not validate: [`ClusterState::apply`] asserts
//!   the invariants the controller checked, because a record in the log that does not apply
//!   is a bug, not bad input.
//!
//! ## Today and next
//! On a single node the [`MetadataLog`] is a local append-only file (one voter, trivially
//! committed once fsynced). The metadata-quorum issue replaces the file with a Raft log
//! (raft-rs, RocksDB, tonic) and the JSON frame encoding with protobuf; the records, the
//! state and the controller stay as they are.
//!
//! ## Invariants
//! - Topic names and topic ids are unique among live topics; a deleted topic's id is never
//!   reused (ids are random v4 UUIDs).
//! - Partition indexes of a topic are exactly `0..partitions.len()`.
//! - `leader_epoch` and `partition_epoch` of a partition only grow.

pub mod controller;
mod log;
mod records;
mod state;

pub use log::{MetadataLog, MetadataLogError};
pub use records::{MetadataRecord, PartitionRecord};
pub use state::{BrokerInfo, ClusterState, PartitionState, TopicInfo};
