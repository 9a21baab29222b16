//! Metadata records: the only way cluster metadata changes.
//!
//! Records are serialised as tagged JSON objects in the single-node log; fields added later
//! carry `#[serde(default)]` so that a newer node reads an older log.

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
}

/// A partition's placement and leadership, as created or changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}
