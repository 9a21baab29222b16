//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT topic configs;
//! changes commit to the metadata log and take effect on the partitions at once.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use super::topics::{Refusal, alter_topic_configs};

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;
/// List-valued topic configs, the only ones APPEND and SUBTRACT apply to.
const LIST_KEYS: &[&str] = &["cleanup.policy"];

pub async fn handle(
    ctx: RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let result = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        // APPEND and SUBTRACT start from the effective value: the topic's override, else
        // the broker default (as Kafka does).
        let defaults: BTreeMap<String, String> = ctx
            .broker
            .replicas
            .base_config()
            .to_props()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        let ops: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let outcome = alter_topic_configs(
            &ctx.broker,
            resource.resource_type,
            resource.resource_name.to_string(),
            request.validate_only,
            move |current| apply_ops(current, &defaults, &ops),
        )
        .await;
        responses.push(match outcome {
            Ok(()) => result,
            Err((code, msg)) => result
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(msg))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The topic's overrides after `ops`. `defaults` are the broker-wide values a list key
/// starts from when the topic does not override it.
fn apply_ops(
    current: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut next = current.clone();
    for (key, op, value) in ops {
        let need_value = || {
            value.clone().ok_or_else(|| {
                (
                    ResponseError::InvalidConfig,
                    format!("'{key}' needs a value"),
                )
            })
        };
        match *op {
            OP_SET => {
                next.insert(key.clone(), need_value()?);
            }
            OP_DELETE => {
                next.remove(key);
            }
            OP_APPEND | OP_SUBTRACT if LIST_KEYS.contains(&key.as_str()) => {
                let value = need_value()?;
                let mut items: Vec<String> = next
                    .get(key)
                    .or_else(|| defaults.get(key))
                    .map(|v| {
                        v.split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default();
                for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if *op == OP_APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_owned());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                next.insert(key.clone(), items.join(","));
            }
            OP_APPEND | OP_SUBTRACT => {
                return Err((
                    ResponseError::InvalidConfig,
                    format!("'{key}' is not a list; APPEND and SUBTRACT do not apply"),
                ));
            }
            other => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {other}"),
                ));
            }
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(list: &[(&str, i8, Option<&str>)]) -> Vec<(String, i8, Option<String>)> {
        list.iter()
            .map(|(k, op, v)| (k.to_string(), *op, v.map(str::to_owned)))
            .collect()
    }

    fn map(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn append_and_subtract_start_from_the_default() {
        let defaults = map(&[("cleanup.policy", "delete")]);
        let appended = apply_ops(
            &BTreeMap::new(),
            &defaults,
            &ops(&[("cleanup.policy", OP_APPEND, Some("compact"))]),
        )
        .unwrap();
        assert_eq!(appended, map(&[("cleanup.policy", "delete,compact")]));
        let subtracted = apply_ops(
            &appended,
            &defaults,
            &ops(&[("cleanup.policy", OP_SUBTRACT, Some("delete"))]),
        )
        .unwrap();
        assert_eq!(subtracted, map(&[("cleanup.policy", "compact")]));
    }

    #[test]
    fn set_delete_and_refusals() {
        let current = map(&[("retention.ms", "1")]);
        let next = apply_ops(
            &current,
            &BTreeMap::new(),
            &ops(&[
                ("retention.ms", OP_DELETE, None),
                ("segment.bytes", OP_SET, Some("1048576")),
            ]),
        )
        .unwrap();
        assert_eq!(next, map(&[("segment.bytes", "1048576")]));
        let not_a_list = apply_ops(
            &current,
            &BTreeMap::new(),
            &ops(&[("retention.ms", OP_APPEND, Some("2"))]),
        );
        assert_eq!(not_a_list.unwrap_err().0, ResponseError::InvalidConfig);
        let no_value = apply_ops(
            &current,
            &BTreeMap::new(),
            &ops(&[("retention.ms", OP_SET, None)]),
        );
        assert_eq!(no_value.unwrap_err().0, ResponseError::InvalidConfig);
    }
}
