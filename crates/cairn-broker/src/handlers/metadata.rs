//! Metadata (key 3): brokers, the controller, topics and partition leadership, from the
//! applied cluster metadata; auto-creates topics when allowed.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use super::topics::create_topic_implicitly;
use cairn_meta::TopicInfo;

/// Kafka's internal topics: clients exclude them from regex subscriptions.
const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// "Authorized operations were not requested" in Metadata responses.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub async fn handle(ctx: RequestContext, request: MetadataRequest) -> MetadataResponse {
    let broker = &ctx.broker;
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let wanted = match request.topics {
        None => None,
        Some(t) if t.is_empty() && ctx.version == 0 => None,
        Some(t) => Some(t),
    };
    let auto_create = broker.config.auto_create_topics_enable
        && (ctx.version < 4 || request.allow_auto_topic_creation);

    let mut topics = Vec::new();
    match wanted {
        None => {
            let state = broker.metadata.state();
            topics.extend(state.topics().map(|t| topic_response(t, ctx.version)));
        }
        Some(requested) => {
            for t in requested {
                let state = broker.metadata.state();
                let found = match &t.name {
                    Some(name) => state.topic(name.as_str()).cloned(),
                    None => state.topic_by_id(t.topic_id).cloned(),
                };
                let response = match (found, t.name) {
                    (Some(info), _) => topic_response(&info, ctx.version),
                    (None, Some(name)) if auto_create => {
                        match create_topic_implicitly(
                            broker,
                            name.as_str(),
                            -1,
                            -1,
                            Default::default(),
                        )
                        .await
                        {
                            Some(Ok(info)) => topic_response(&info, ctx.version),
                            // Lost a race with another creator: describe what exists.
                            Some(Err((ResponseError::TopicAlreadyExists, _))) => {
                                match broker.metadata.state().topic(name.as_str()) {
                                    Some(info) => topic_response(info, ctx.version),
                                    None => error_topic(
                                        Some(name),
                                        t.topic_id,
                                        ResponseError::UnknownTopicOrPartition,
                                    ),
                                }
                            }
                            Some(Err((code, msg))) => {
                                tracing::debug!(topic = %name.as_str(), "auto-create refused: {msg}");
                                error_topic(Some(name), t.topic_id, code)
                            }
                            // Still being created: Kafka's answer for a topic whose
                            // creation is under way; clients retry.
                            None => error_topic(
                                Some(name),
                                t.topic_id,
                                ResponseError::LeaderNotAvailable,
                            ),
                        }
                    }
                    (None, Some(name)) => {
                        let code = match cairn_meta::controller::validate_topic_name(name.as_str())
                        {
                            Ok(()) => ResponseError::UnknownTopicOrPartition,
                            Err(_) => ResponseError::InvalidTopicException,
                        };
                        error_topic(Some(name), t.topic_id, code)
                    }
                    (None, None) => error_topic(None, t.topic_id, ResponseError::UnknownTopicId),
                };
                topics.push(response);
            }
        }
    }

    let state = broker.metadata.state();
    // Fenced brokers are left out, as Kafka does: clients should not try them.
    let brokers = state
        .unfenced_brokers()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.broker_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(b.port as i32)
                .with_rack(b.rack.clone().map(StrBytes::from_string))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(
            state
                .cluster_id()
                .map(|c| StrBytes::from_string(c.to_owned())),
        )
        .with_controller_id(BrokerId(controller_id(broker)))
        .with_topics(topics)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// The `controller_id` clients are told: this broker. As in Kafka's KRaft mode, the
/// active controller (the metadata quorum's leader) is not a client endpoint: every
/// broker takes admin requests and forwards their metadata changes to it. Naming the
/// quorum leader made librdkafka wait for it after it died ("Timed out waiting for
/// controller") instead of asking a live broker.
pub fn controller_id(broker: &crate::server::Broker) -> i32 {
    broker.config.node_id
}

fn error_topic(
    name: Option<TopicName>,
    topic_id: uuid::Uuid,
    code: ResponseError,
) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code.code())
        .with_name(name)
        .with_topic_id(topic_id)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

fn topic_response(topic: &TopicInfo, _version: i16) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            // A partition without a leader (every in-sync replica fenced) is reported as
            // LEADER_NOT_AVAILABLE, so clients wait and refresh.
            let error = if p.leader < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p.partition)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(p.isr.iter().copied().map(BrokerId).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(topic.topic_id)
        .with_is_internal(INTERNAL_TOPICS.contains(&topic.name.as_str()))
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
