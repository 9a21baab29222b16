//! DescribeConfigs (key 32): effective topic configs with their sources, and the broker's
//! own settings.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::server::Broker;

/// Config resource types (KIP-133).
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// Config sources (KIP-226).
pub const SOURCE_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

pub fn handle(ctx: RequestContext, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => topic_configs(&ctx.broker, resource.resource_name.as_str()),
                RESOURCE_BROKER => broker_configs(&ctx.broker, resource.resource_name.as_str()),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
            match entries {
                Ok(entries) => {
                    let wanted = resource.configuration_keys.as_ref();
                    let configs = entries
                        .into_iter()
                        .filter(|(k, _, _)| {
                            wanted.is_none_or(|w| w.iter().any(|x| x.as_str() == k))
                        })
                        .map(|(k, v, source)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_string(k))
                                .with_value(Some(StrBytes::from_string(v)))
                                .with_config_source(source)
                                .with_read_only(source != SOURCE_TOPIC && source != SOURCE_DEFAULT)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                Err((code, msg)) => result
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(msg))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

type Entries = Result<Vec<(String, String, i8)>, (ResponseError, String)>;

fn topic_configs(broker: &Broker, name: &str) -> Entries {
    let state = broker.metadata.state();
    let topic = state.topic(name).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    })?;
    let config = broker
        .replicas
        .topic_log_config(topic)
        .map_err(|e| (ResponseError::InvalidConfig, e.to_string()))?;
    let min_insync = (
        "min.insync.replicas",
        broker.replicas.min_insync_replicas(topic).to_string(),
    );
    Ok(config
        .to_props()
        .into_iter()
        .chain(std::iter::once(min_insync))
        .map(|(k, v)| {
            let source = if topic.configs.contains_key(k) {
                SOURCE_TOPIC
            } else if broker.config.log_defaults.contains_key(k) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            (k.to_owned(), v, source)
        })
        .collect())
}

fn broker_configs(broker: &Broker, name: &str) -> Entries {
    let c = &broker.config;
    if !name.is_empty() && name != c.node_id.to_string() {
        return Err((
            ResponseError::InvalidRequest,
            format!("this is broker {}, not '{name}'", c.node_id),
        ));
    }
    Ok(vec![
        (
            "node.id".into(),
            c.node_id.to_string(),
            SOURCE_STATIC_BROKER,
        ),
        (
            "num.partitions".into(),
            c.num_partitions.to_string(),
            SOURCE_STATIC_BROKER,
        ),
        (
            "default.replication.factor".into(),
            c.default_replication_factor
                .unwrap_or_else(|| {
                    cairn_meta::controller::default_replication_factor(&broker.metadata.state())
                })
                .to_string(),
            if c.default_replication_factor.is_some() {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            },
        ),
        (
            "auto.create.topics.enable".into(),
            c.auto_create_topics_enable.to_string(),
            SOURCE_STATIC_BROKER,
        ),
        (
            "socket.request.max.bytes".into(),
            c.socket_request_max_bytes.to_string(),
            SOURCE_STATIC_BROKER,
        ),
        (
            "log.retention.check.interval.ms".into(),
            c.log_retention_check_interval_ms.to_string(),
            SOURCE_STATIC_BROKER,
        ),
    ])
}
