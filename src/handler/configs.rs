//! DescribeConfigs (v1–v4): TOPIC, BROKER (this broker's id, or the empty name for the
//! cluster-wide dynamic defaults, of which there are none yet) and GROUP resources, with
//! synonyms and types as Kafka reports them.
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx};
use crate::broker::configs::{self, ConfigEntry};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

/// Kafka's `ConfigResource.Type` codes.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const GROUP: i8 = 32;

#[tracing::instrument(name = "describe_configs", skip_all, fields(n = req.resources.len()))]
pub fn describe_configs(ctx: &Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = ctx.broker;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let entries = match r.resource_type {
                TOPIC => match broker.topic(&name) {
                    Some(topic) => Ok(configs::describe_topic(&topic, &broker.config)),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("The topic '{name}' does not exist."),
                    )),
                },
                BROKER if name.is_empty() => Ok(Vec::new()),
                BROKER if name.parse::<i32>().ok() == Some(broker.node_id) => {
                    Ok(configs::describe_broker(&broker.config))
                }
                BROKER => Err((
                    ResponseError::InvalidRequest,
                    format!(
                        "Unexpected broker id, expected {} or empty string, but received {name}",
                        broker.node_id
                    ),
                )),
                GROUP => Ok(configs::describe_group(&broker.config)),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("Unsupported resource type {other} in DescribeConfigs"),
                )),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match entries {
                Ok(entries) => {
                    let wanted = r
                        .configuration_keys
                        .map(|keys| keys.iter().map(|k| k.to_string()).collect::<Vec<String>>());
                    let configs = entries
                        .into_iter()
                        .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(&e.name)))
                        .map(|e| {
                            entry(
                                e,
                                req.include_synonyms,
                                req.include_documentation,
                                ctx.version,
                            )
                        })
                        .collect();
                    result.with_configs(configs)
                }
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn entry(
    e: ConfigEntry,
    synonyms: bool,
    documentation: bool,
    version: i16,
) -> DescribeConfigsResourceResult {
    let synonyms = if synonyms {
        e.synonyms
            .iter()
            .map(|s| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(&s.name))
                    .with_value(Some(str_bytes(&s.value)))
                    .with_source(s.source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut out = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(&e.name))
        .with_value(Some(str_bytes(&e.value)))
        .with_read_only(e.read_only)
        .with_config_source(e.source as i8)
        .with_is_sensitive(false)
        .with_synonyms(synonyms);
    if version >= 3 {
        out = out.with_config_type(e.config_type as i8);
        if documentation {
            out = out.with_documentation(Some(str_bytes(&format!(
                "Kafka's `{}`; see Kafka's configuration reference.",
                e.name
            ))));
        }
    }
    out
}
