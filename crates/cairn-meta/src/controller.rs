//! Controller decisions: validate an admin request against the current [`ClusterState`]
//! and return the records that carry it out. Pure functions; the caller commits the
//! records to the metadata log and only then applies them.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::records::{MetadataRecord, PartitionRecord};
use crate::state::ClusterState;

/// Longest legal topic name (Kafka's limit, so that `<name>-<partition>` directory names
/// stay under common file-name limits).
pub const TOPIC_NAME_LEN_MAX: usize = 249;
/// Most partitions one topic may have; bounds the work one CreateTopics can ask for.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// Why the controller refused a request. The broker maps each to a Kafka error code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControllerError {
    #[error("topic '{name}' already exists")]
    TopicAlreadyExists { name: String },
    #[error("invalid topic name '{name}': {reason}")]
    InvalidTopic { name: String, reason: &'static str },
    #[error("invalid number of partitions {partitions}: {reason}")]
    InvalidPartitions { partitions: i32, reason: String },
    #[error("replication factor {replication_factor} is invalid: {reason}")]
    InvalidReplicationFactor {
        replication_factor: i32,
        reason: String,
    },
    #[error("topic '{name}' does not exist")]
    UnknownTopic { name: String },
}

/// Checks a topic name the way Kafka does: 1–249 characters of `[a-zA-Z0-9._-]`, not `.`
/// or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |reason| {
        Err(ControllerError::InvalidTopic {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("the name is empty");
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return invalid("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Places `partitions` new partitions numbered from `first_partition` on the registered
/// brokers, round-robin from `start_index` so leaders spread evenly.
fn assign(
    state: &ClusterState,
    first_partition: i32,
    partitions: i32,
    replication_factor: i32,
    start_index: usize,
) -> Result<Vec<PartitionRecord>, ControllerError> {
    let brokers: Vec<i32> = state.brokers().map(|b| b.broker_id).collect();
    if replication_factor < 1 || replication_factor as usize > brokers.len() {
        return Err(ControllerError::InvalidReplicationFactor {
            replication_factor,
            reason: format!(
                "it must be between 1 and the number of registered brokers ({})",
                brokers.len()
            ),
        });
    }
    Ok((0..partitions)
        .map(|i| {
            let p = first_partition + i;
            let replicas: Vec<i32> = (0..replication_factor as usize)
                .map(|r| brokers[(start_index + p as usize + r) % brokers.len()])
                .collect();
            PartitionRecord {
                partition: p,
                leader: replicas[0],
                isr: replicas.clone(),
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
            }
        })
        .collect())
}

/// The records that create topic `name`. `configs` must already be validated by the
/// caller (the broker knows the log's config keys).
pub fn create_topic(
    state: &ClusterState,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
    topic_id: Uuid,
    start_index: usize,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    validate_topic_name(name)?;
    if state.topic(name).is_some() {
        return Err(ControllerError::TopicAlreadyExists {
            name: name.to_owned(),
        });
    }
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err(ControllerError::InvalidPartitions {
            partitions,
            reason: format!("it must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
        });
    }
    let partitions = assign(state, 0, partitions, replication_factor, start_index)?;
    Ok(vec![MetadataRecord::CreateTopic {
        name: name.to_owned(),
        topic_id,
        partitions,
        configs,
    }])
}

/// The records that grow topic `name` to `new_total` partitions.
pub fn create_partitions(
    state: &ClusterState,
    name: &str,
    new_total: i32,
    start_index: usize,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = state
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic {
            name: name.to_owned(),
        })?;
    let current = topic.partitions.len() as i32;
    if new_total <= current || new_total > PARTITIONS_PER_TOPIC_MAX {
        return Err(ControllerError::InvalidPartitions {
            partitions: new_total,
            reason: format!(
                "topic '{name}' has {current}; the new count must be larger and at most {PARTITIONS_PER_TOPIC_MAX}"
            ),
        });
    }
    let replication_factor = topic.partitions[0].replicas.len() as i32;
    let partitions = assign(
        state,
        current,
        new_total - current,
        replication_factor,
        start_index,
    )?;
    Ok(vec![MetadataRecord::CreatePartitions {
        topic_id: topic.topic_id,
        partitions,
    }])
}

/// The records that delete topic `name`.
pub fn delete_topic(
    state: &ClusterState,
    name: &str,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = state
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic {
            name: name.to_owned(),
        })?;
    Ok(vec![MetadataRecord::DeleteTopic {
        topic_id: topic.topic_id,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(brokers: i32) -> ClusterState {
        let mut s = ClusterState::default();
        for b in 1..=brokers {
            s.apply(&MetadataRecord::RegisterBroker {
                broker_id: b,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
                incarnation: Uuid::nil(),
            });
        }
        s
    }

    #[test]
    fn names_follow_kafka_rules() {
        for ok in ["a", "orders.v1", "A_b-c", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "é", "a/b", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leaders_spread_round_robin() {
        let s = cluster(3);
        let recs = create_topic(&s, "t", 6, 2, BTreeMap::new(), Uuid::nil(), 0).unwrap();
        let MetadataRecord::CreateTopic { partitions, .. } = &recs[0] else {
            panic!("expected CreateTopic")
        };
        let leaders: Vec<i32> = partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(partitions[2].replicas, vec![3, 1]);
    }

    #[test]
    fn refusals() {
        let mut s = cluster(1);
        assert!(matches!(
            create_topic(&s, "t", 1, 2, BTreeMap::new(), Uuid::nil(), 0),
            Err(ControllerError::InvalidReplicationFactor { .. })
        ));
        assert!(matches!(
            create_topic(&s, "t", 0, 1, BTreeMap::new(), Uuid::nil(), 0),
            Err(ControllerError::InvalidPartitions { .. })
        ));
        for r in create_topic(&s, "t", 2, 1, BTreeMap::new(), Uuid::nil(), 0).unwrap() {
            s.apply(&r);
        }
        assert!(matches!(
            create_topic(&s, "t", 1, 1, BTreeMap::new(), Uuid::from_u128(1), 0),
            Err(ControllerError::TopicAlreadyExists { .. })
        ));
        assert!(matches!(
            create_partitions(&s, "t", 2, 0),
            Err(ControllerError::InvalidPartitions { .. })
        ));
        let grow = create_partitions(&s, "t", 4, 0).unwrap();
        for r in &grow {
            s.apply(r);
        }
        assert_eq!(s.topic("t").unwrap().partitions.len(), 4);
        assert!(matches!(
            delete_topic(&s, "nope"),
            Err(ControllerError::UnknownTopic { .. })
        ));
    }
}
