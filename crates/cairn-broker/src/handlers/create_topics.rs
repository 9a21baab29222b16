//! CreateTopics (key 19), including `validate_only`.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use super::describe_configs::{SOURCE_DEFAULT, SOURCE_TOPIC};
use super::topics::create_topic;

pub async fn handle(ctx: RequestContext, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = if !topic.assignments.is_empty() {
            Err((
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignment is not supported yet; omit assignments".to_owned(),
            ))
        } else {
            let mut configs = BTreeMap::new();
            let mut null_value = None;
            for c in &topic.configs {
                match &c.value {
                    Some(v) => {
                        configs.insert(c.name.to_string(), v.to_string());
                    }
                    None => null_value = Some(c.name.to_string()),
                }
            }
            match null_value {
                Some(key) => Err((
                    ResponseError::InvalidConfig,
                    format!("config '{key}' has a null value"),
                )),
                None => {
                    create_topic(
                        &ctx.broker,
                        topic.name.to_string(),
                        topic.num_partitions,
                        topic.replication_factor as i32,
                        configs,
                        request.validate_only,
                        i64::from(request.timeout_ms),
                    )
                    .await
                }
            }
        };
        results.push(match outcome {
            Ok(info) => {
                let configs = ctx.broker.replicas.topic_log_config(&info).map(|c| {
                    c.to_props()
                        .into_iter()
                        .map(|(k, v)| {
                            let source = if info.configs.contains_key(k) {
                                SOURCE_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            };
                            CreatableTopicConfigs::default()
                                .with_name(StrBytes::from_static_str(k))
                                .with_value(Some(StrBytes::from_string(v)))
                                .with_config_source(source)
                        })
                        .collect()
                });
                result
                    .with_topic_id(info.topic_id)
                    .with_num_partitions(info.partitions.len() as i32)
                    .with_replication_factor(
                        info.partitions.first().map_or(0, |p| p.replicas.len()) as i16,
                    )
                    .with_configs(configs.ok())
            }
            Err((code, msg)) => result
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(msg)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}
