//! AlterConfigs (key 33, the legacy whole-set form): the request's configs replace all of
//! a topic's overrides; keys it does not name return to their defaults.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use super::topics::alter_topic_configs;

pub async fn handle(ctx: RequestContext, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let result = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let configs: Vec<(String, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = alter_topic_configs(
            &ctx.broker,
            resource.resource_type,
            resource.resource_name.to_string(),
            request.validate_only,
            move |_| {
                configs
                    .into_iter()
                    .map(|(k, v)| match v {
                        Some(v) => Ok((k, v)),
                        None => Err((
                            ResponseError::InvalidConfig,
                            format!("config '{k}' has a null value"),
                        )),
                    })
                    .collect()
            },
        )
        .await;
        responses.push(match outcome {
            Ok(()) => result,
            Err((code, msg)) => result
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(msg))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}
