//! Topic creation and config validation shared by CreateTopics and Metadata auto-creation.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cairn_log::LogConfig;
use cairn_meta::{MetadataRecord, TopicInfo, controller};
use kafka_protocol::error::ResponseError;

use crate::errors::controller_error_code;
use crate::server::Broker;

/// A refusal: the Kafka error and a message for the client.
pub type Refusal = (ResponseError, String);

/// Checks topic-level config overrides: every key must be one the log implements, and
/// the resulting config must be valid. Keys Kafka has but Cairn does not implement are
/// refused with INVALID_CONFIG rather than stored and ignored.
pub fn validate_configs(
    broker: &Broker,
    configs: &BTreeMap<String, String>,
) -> Result<(), Refusal> {
    use crate::config::{REPLICATION_TOPIC_KEYS, validate_replication_config};
    for (key, value) in configs {
        if REPLICATION_TOPIC_KEYS.contains(&key.as_str()) {
            validate_replication_config(key, value)
                .map_err(|e| (ResponseError::InvalidConfig, e))?;
        } else if !LogConfig::KNOWN_KEYS.contains(&key.as_str()) {
            return Err((
                ResponseError::InvalidConfig,
                format!(
                    "topic config '{key}' is not supported by Cairn (supported: {}, {})",
                    LogConfig::KNOWN_KEYS.join(", "),
                    REPLICATION_TOPIC_KEYS.join(", ")
                ),
            ));
        }
    }
    let mut config = broker.replicas.base_config().clone();
    config
        .apply_props(
            configs
                .iter()
                .filter(|(k, _)| !REPLICATION_TOPIC_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    Ok(())
}

/// How long a request waits for a topic it creates implicitly (Metadata auto-creation,
/// FindCoordinator's internal topics) before answering with a retriable error while the
/// creation goes on. A healthy quorum commits in milliseconds; without a quorum, a request
/// that waited the whole propose timeout would hold up every later request on its
/// connection (a consumer's fetches queue behind its coordinator lookup). Kafka answers
/// such requests at once and creates in the background.
pub const IMPLICIT_CREATE_WAIT: Duration = Duration::from_secs(2);

/// The implicit topic creations in flight, one per name, so that clients retrying
/// while the quorum is away do not stack up proposals.
#[derive(Default)]
pub struct ImplicitCreations {
    in_flight: parking_lot::Mutex<HashMap<String, CreationWatch>>,
}

type CreationWatch = tokio::sync::watch::Receiver<Option<Result<TopicInfo, Refusal>>>;

/// Creates `name` like [`create_topic`], in the background: `None` when the creation has
/// not finished within [`IMPLICIT_CREATE_WAIT`], or at once when no quorum leader is known
/// (it continues; a later call waits for the same one), else its outcome.
pub async fn create_topic_implicitly(
    broker: &Arc<Broker>,
    name: &str,
    partitions: i32,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
) -> Option<Result<TopicInfo, Refusal>> {
    let mut outcome = {
        let mut in_flight = broker.implicit_creations.in_flight.lock();
        match in_flight.get(name) {
            Some(outcome) => outcome.clone(),
            None => {
                let (tx, rx) = tokio::sync::watch::channel(None);
                in_flight.insert(name.to_owned(), rx.clone());
                let broker = broker.clone();
                let name = name.to_owned();
                tokio::spawn(async move {
                    let result = create_topic(
                        &broker,
                        name.clone(),
                        partitions,
                        replication_factor,
                        configs,
                        false,
                        0,
                    )
                    .await;
                    // Published before the entry goes: whoever holds the watch sees it.
                    let _ = tx.send(Some(result));
                    broker.implicit_creations.in_flight.lock().remove(&name);
                });
                rx
            }
        }
    };
    // Without a known quorum leader nothing can commit soon: answer at once.
    let wait = if broker.metadata.quorum().status().leader_id.is_some() {
        IMPLICIT_CREATE_WAIT
    } else {
        Duration::ZERO
    };
    let finished = outcome.wait_for(Option::is_some);
    match tokio::time::timeout(wait, finished).await {
        Ok(Ok(result)) => result.clone(),
        // Timed out, or the task is gone (runtime shutting down): not finished.
        _ => None,
    }
}

/// Creates a topic through the metadata log and opens its partitions. `partitions` and
/// `replication_factor` of -1 mean the broker defaults; `timeout_ms` is the request's
/// (0 for the broker's propose timeout, which also caps it).
pub async fn create_topic(
    broker: &Arc<Broker>,
    name: String,
    partitions: i32,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
    validate_only: bool,
    timeout_ms: i64,
) -> Result<TopicInfo, Refusal> {
    validate_configs(broker, &configs)?;
    // The controller decides elections with the topic's min.insync.replicas; a broker-wide
    // default is stored with the topic so that every controller sees the same value.
    let mut configs = configs;
    if let Some(v) = broker.config.log_defaults.get("min.insync.replicas") {
        configs
            .entry("min.insync.replicas".to_owned())
            .or_insert_with(|| v.clone());
    }
    let partitions = if partitions == -1 {
        broker.config.num_partitions
    } else {
        partitions
    };
    let default_rf = broker.config.default_replication_factor;
    let topic_id = uuid::Uuid::new_v4();
    let start_index = topic_id.as_u128() as usize;
    let b = broker.clone();
    super::blocking(move || {
        let decide = |state: &cairn_meta::ClusterState| {
            let replication_factor = if replication_factor == -1 {
                default_rf.unwrap_or_else(|| controller::default_replication_factor(state))
            } else {
                replication_factor
            };
            controller::create_topic(state, &name, partitions, replication_factor, configs, topic_id, start_index)
        };
        if validate_only {
            let state = b.metadata.state();
            return decide(&state)
                .map(|records| match records.into_iter().next() {
                    Some(cairn_meta::MetadataRecord::CreateTopic { name, topic_id, partitions, configs }) => {
                        TopicInfo { name, topic_id, partitions, configs }
                    }
                    other => unreachable!("create_topic returns one CreateTopic record, got {other:?}"),
                })
                .map_err(|e| (controller_error_code(&e), e.to_string()));
        }
        let state = match b.metadata.propose_within(timeout_ms, decide) {
            Ok(Ok(state)) => state,
            Ok(Err(e)) => return Err((controller_error_code(&e), e.to_string())),
            Err(e) => return Err((crate::errors::metadata_error_code(&e), e.to_string())),
        };
        b.replicas
            .apply_metadata(&state, crate::now_ms())
            .map_err(|e| (ResponseError::KafkaStorageError, e.to_string()))?;
        let topic = state.topic(&name).expect("just created").clone();
        tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), topic_id = %topic.topic_id, "topic created");
        Ok(topic)
    })
    .await
}

/// Replaces topic `name`'s config overrides with what `compute` makes of the current ones,
/// validated, committed through the metadata log (unless `validate_only`) and applied to
/// the hosted partitions. Only topic resources can be altered: broker settings come from
/// the config file.
pub async fn alter_topic_configs(
    broker: &Arc<Broker>,
    resource_type: i8,
    name: String,
    validate_only: bool,
    compute: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal>
    + Send
    + 'static,
) -> Result<(), Refusal> {
    if resource_type != super::describe_configs::RESOURCE_TOPIC {
        return Err((
            ResponseError::InvalidRequest,
            "only topic configs can be altered; broker settings come from the config file"
                .to_owned(),
        ));
    }
    let b = broker.clone();
    super::blocking(move || {
        let decide = |state: &cairn_meta::ClusterState| -> Result<Vec<MetadataRecord>, Refusal> {
            let topic = state.topic(&name).ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic '{name}' does not exist"),
                )
            })?;
            let next = compute(&topic.configs)?;
            validate_configs(&b, &next)?;
            if validate_only {
                return Ok(Vec::new());
            }
            let set = next
                .iter()
                .filter(|(k, v)| topic.configs.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), Some(v.clone())));
            let removed = topic
                .configs
                .keys()
                .filter(|k| !next.contains_key(*k))
                .map(|k| (k.clone(), None));
            let mut records: Vec<MetadataRecord> = set
                .chain(removed)
                .map(|(key, value)| MetadataRecord::TopicConfig {
                    topic_id: topic.topic_id,
                    key,
                    value,
                })
                .collect();
            // A lower min.insync.replicas lets high watermarks move again: replicas kept
            // eligible (ELR) while they could not are stale from then on.
            records.extend(cairn_meta::controller::clear_stale_elr(
                state,
                topic.topic_id,
                &next,
            ));
            Ok(records)
        };
        let state = match b.metadata.propose(decide) {
            Ok(Ok(state)) => state,
            Ok(Err(refusal)) => return Err(refusal),
            Err(e) => return Err((crate::errors::metadata_error_code(&e), e.to_string())),
        };
        b.replicas
            .apply_metadata(&state, crate::now_ms())
            .map_err(|e| (ResponseError::KafkaStorageError, e.to_string()))
    })
    .await
}
