//! CreatePartitions (key 37): grow a topic's partition count.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::errors::controller_error_code;

pub async fn handle(
    ctx: RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if topic.assignments.is_some() {
            results.push(
                result
                    .with_error_code(ResponseError::InvalidReplicaAssignment.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "manual replica assignment is not supported yet",
                    ))),
            );
            continue;
        }
        let name = topic.name.to_string();
        let count = topic.count;
        let validate_only = request.validate_only;
        let timeout_ms = i64::from(request.timeout_ms);
        let start_index = uuid::Uuid::new_v4().as_u128() as usize;
        let b = ctx.broker.clone();
        let outcome = super::blocking(move || {
            let decide = |s: &cairn_meta::ClusterState| {
                cairn_meta::controller::create_partitions(s, &name, count, start_index)
            };
            if validate_only {
                return decide(&b.metadata.state())
                    .map(|_| ())
                    .map_err(|e| (controller_error_code(&e), e.to_string()));
            }
            let state = match b.metadata.propose_within(timeout_ms, decide) {
                Ok(Ok(state)) => state,
                Ok(Err(e)) => return Err((controller_error_code(&e), e.to_string())),
                Err(e) => return Err((crate::errors::metadata_error_code(&e), e.to_string())),
            };
            tracing::info!(topic = %name, partitions = count, "partitions added");
            b.replicas
                .apply_metadata(&state, crate::now_ms())
                .map_err(|e| (ResponseError::KafkaStorageError, e.to_string()))
        })
        .await;
        results.push(match outcome {
            Ok(()) => result,
            Err((code, msg)) => result
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(msg))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
