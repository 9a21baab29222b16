//! Metadata records: the only way cluster metadata changes.
//!
//! ## Encoding
//! In the metadata quorum's log and snapshots, and between voters, records are protobuf
//! messages (`proto/cairn/metadata.proto`; [`crate::codec`] converts). Each record carries
//! a version: fields are only ever added, a field added later means "as before" when absent
//! (an empty list, an absent `optional`), and a version newer than this node reads is a
//! decode error naming the record type, never a silent misreading. A new field or record
//! type therefore needs a proto field, its conversion in [`crate::codec`], and a decision
//! whether it raises the record's version (see [`crate::codec::RECORD_VERSIONS`]).
//!
//! The serde derives are the JSON form that versions before protobuf wrote (the legacy
//! single-node `metadata.log`, and quorum entries and snapshots in existing data
//! directories), still read on upgrade; fields added to it later carry `#[serde(default)]`.
//!
//! ## Replication records (KRaft's `PartitionChangeRecord`, `FenceBrokerRecord`,
//! `UnfenceBrokerRecord`)
//! - [`MetadataRecord::PartitionChange`] replaces the leader, ISR, ELR and epochs of one
//!   partition; its replica list never changes. `leader == -1` means the partition has no
//!   leader (offline) because no unfenced broker is left in its ISR or ELR. Every
//!   `PartitionChange` carries a `partition_epoch` larger than the partition's current one,
//!   and a `leader_epoch` that is bumped whenever the leader changes (to -1 included), or
//!   when the same leader restarted and its followers must truncate.
//! - [`MetadataRecord::FenceBroker`] / [`MetadataRecord::UnfenceBroker`] mark a registered
//!   broker as unable / able to lead or join ISRs. A fenced broker leads nothing, gets no new
//!   replicas and is never added to an ISR. `RegisterBroker` leaves the broker unfenced.
//!
//! The controller ([`crate::controller`]) emits a `FenceBroker` or `UnfenceBroker` together
//! with the `PartitionChange`s it implies, in one batch decided against one state.
//!
//! ## Reassignment records (KIP-455; KRaft folds them into `PartitionChangeRecord`)
//! - [`MetadataRecord::PartitionReassignment`] replaces a partition's whole
//!   [`PartitionRecord`]: replicas, reassignment state ([`PartitionRecord::adding_replicas`],
//!   [`PartitionRecord::removing_replicas`]) and leadership, under the same epoch rules as
//!   `PartitionChange`. It starts, replaces, cancels and completes reassignments; a new
//!   variant rather than new `PartitionChange` fields, so that logs written before it read
//!   unchanged and records written without a reassignment stay as they were.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The first record of every metadata log: names the cluster.
    InitCluster { cluster_id: String },
    /// A broker announced itself (on every start; `incarnation` is new each time).
    RegisterBroker {
        broker_id: i32,
        host: String,
        port: u16,
        #[serde(default)]
        rack: Option<String>,
        incarnation: Uuid,
    },
    /// A topic came into being with its partitions and topic-level config overrides.
    CreateTopic {
        name: String,
        topic_id: Uuid,
        partitions: Vec<PartitionRecord>,
        #[serde(default)]
        configs: BTreeMap<String, String>,
    },
    /// Partitions appended to an existing topic (CreatePartitions).
    CreatePartitions {
        topic_id: Uuid,
        partitions: Vec<PartitionRecord>,
    },
    /// A topic and all its partitions are gone.
    DeleteTopic { topic_id: Uuid },
    /// A topic-level config override set (`Some`) or removed (`None`).
    TopicConfig {
        topic_id: Uuid,
        key: String,
        value: Option<String>,
    },
    /// New leader, ISR, ELR and epochs of one existing partition; its replicas are
    /// unchanged. `leader` is -1 when no broker leads it (offline). `partition_epoch` is
    /// strictly larger than the partition's current one; neither epoch ever decreases.
    PartitionChange {
        topic_id: Uuid,
        partition: i32,
        leader: i32,
        isr: Vec<i32>,
        leader_epoch: i32,
        partition_epoch: i32,
        /// The partition's new eligible leader replicas (see [`PartitionRecord::elr`]).
        /// Absent in records written before ELRs existed: empty.
        #[serde(default)]
        elr: Vec<i32>,
    },
    /// A registered broker may no longer lead partitions, join ISRs or receive new replicas
    /// (its heartbeat session expired, or it is shutting down).
    FenceBroker { broker_id: i32 },
    /// A fenced broker is back: it may lead and join ISRs again.
    UnfenceBroker { broker_id: i32 },
    /// A partition's replicas change (a reassignment starts, is replaced, is cancelled or
    /// completes, KIP-455): `partition` is its new placement, reassignment state and
    /// leadership as a whole. `partition.partition_epoch` is strictly larger than the
    /// current one; the leader epoch grows when the leader changes.
    PartitionReassignment {
        topic_id: Uuid,
        partition: PartitionRecord,
    },
    /// Producer ids `first_id .. first_id + size` now belong to `broker_id`, which hands
    /// them out to idempotent and transactional producers (InitProducerId). Kafka's
    /// `ProducerIdsRecord` (KIP-730): ids are never reused, across restarts and controller
    /// changes, because the next block always starts after the last one committed.
    ProducerIds {
        broker_id: i32,
        first_id: i64,
        size: i64,
    },
}

/// A partition's placement and leadership, as created or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub partition: i32,
    pub replicas: Vec<i32>,
    /// In-sync replicas. Empty only while `leader` is -1, after the last one reported that
    /// it lost its log (see [`crate::controller`]).
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Eligible leader replicas (KIP-966): replicas outside the ISR known to hold every
    /// committed record, because they left the ISR while it was below
    /// `min.insync.replicas` (when the high watermark cannot advance). They may be elected
    /// when no ISR member can lead. Disjoint from the ISR, within the replicas, in replica
    /// order; empty whenever the ISR has `min.insync.replicas` members or more. Absent in
    /// records and snapshots written before ELRs existed: empty.
    #[serde(default)]
    pub elr: Vec<i32>,
    /// Replicas a reassignment in progress adds (KIP-455): in `replicas`, not in the
    /// original replica set. They copy the leader's log and join the ISR like any follower;
    /// the reassignment completes once all of them are in the ISR. Absent (empty) when no
    /// reassignment is in progress, and in records written before reassignments existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// Replicas a reassignment in progress removes: in `replicas` (they keep serving until
    /// it completes), not in its target. Disjoint from `adding_replicas`. The target is
    /// `replicas` without these, the original replica set `replicas` without
    /// `adding_replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

impl PartitionRecord {
    /// Whether a reassignment is in progress (some replica is being added or removed).
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas a reassignment in progress moves to (`replicas` without
    /// `removing_replicas`), in replica order; `replicas` when none is in progress.
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// The replicas before the reassignment in progress (`replicas` without
    /// `adding_replicas`), in replica order; `replicas` when none is in progress.
    pub fn original_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding_replicas.contains(r))
            .collect()
    }
}
