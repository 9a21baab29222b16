//! DeleteTopics (key 20), by name (all versions) or by topic id (v6+).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::errors::controller_error_code;

pub async fn handle(ctx: RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let state = ctx.broker.metadata.state();
    // v0-5 name topics in `topic_names`; v6 in `topics` by name or id.
    let targets: Vec<(Option<String>, uuid::Uuid)> = if ctx.version >= 6 {
        request
            .topics
            .iter()
            .map(|t| match &t.name {
                Some(n) => (Some(n.to_string()), t.topic_id),
                None => (
                    state.topic_by_id(t.topic_id).map(|i| i.name.clone()),
                    t.topic_id,
                ),
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| (Some(n.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, topic_id) in targets {
        let result = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(StrBytes::from_string(n))))
            .with_topic_id(topic_id);
        let Some(name) = name else {
            responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
            continue;
        };
        let b = ctx.broker.clone();
        let timeout_ms = i64::from(request.timeout_ms);
        let outcome = super::blocking(move || {
            let state = match b.metadata.propose_within(timeout_ms, |s| {
                cairn_meta::controller::delete_topic(s, &name)
            }) {
                Ok(Ok(state)) => state,
                Ok(Err(e)) => return Err((controller_error_code(&e), e.to_string())),
                Err(e) => return Err((crate::errors::metadata_error_code(&e), e.to_string())),
            };
            tracing::info!(topic = %name, "topic deleted");
            b.replicas
                .apply_metadata(&state, crate::now_ms())
                .map_err(|e| (ResponseError::KafkaStorageError, e.to_string()))
        })
        .await;
        responses.push(match outcome {
            Ok(()) => result,
            Err((code, msg)) => result
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(msg))),
        });
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
