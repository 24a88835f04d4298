//! DescribeConfigs (v1–v4): TOPIC, BROKER (this broker's id, or the empty name for the
//! cluster-wide dynamic defaults) and GROUP resources, with synonyms and types as Kafka
//! reports them. AlterConfigs (v0–v2) and IncrementalAlterConfigs (v0–v1) for the same
//! resources (see `broker::dynamic_configs`).
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx, Operation, ResourceType};
use crate::broker::configs::{self, ConfigEntry, ConfigType};
use crate::broker::dynamic_configs::{Change, Op, BROKER, GROUP, TOPIC};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

/// DESCRIBE_CONFIGS or ALTER_CONFIGS on the topic, the group, or (for broker resources)
/// the cluster, with the error Kafka answers for each.
fn config_access(
    ctx: &Ctx<'_>,
    op: Operation,
    resource_type: i8,
    name: &str,
) -> Result<(), (ResponseError, String)> {
    let (rt, name, error) = match resource_type {
        TOPIC => (
            ResourceType::Topic,
            name,
            ResponseError::TopicAuthorizationFailed,
        ),
        GROUP => (
            ResourceType::Group,
            name,
            ResponseError::GroupAuthorizationFailed,
        ),
        _ => (
            ResourceType::Cluster,
            crate::security::authorizer::acl::CLUSTER_NAME,
            ResponseError::ClusterAuthorizationFailed,
        ),
    };
    if ctx.authorize(op, rt, name) {
        Ok(())
    } else {
        Err((error, "Authorization failed.".to_string()))
    }
}

#[tracing::instrument(name = "describe_configs", skip_all, fields(n = req.resources.len()))]
pub fn describe_configs(ctx: &Ctx<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let broker = ctx.broker;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.to_string();
            let access = config_access(ctx, Operation::DescribeConfigs, r.resource_type, &name);
            let entries = access.and_then(|()| match r.resource_type {
                TOPIC => match broker.topic(&name) {
                    Some(topic) => Ok(configs::describe_topic(&topic, &broker.config)),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("The topic '{name}' does not exist."),
                    )),
                },
                BROKER if name.is_empty() => Ok(configs::describe_cluster_defaults(&broker.config)),
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
                GROUP => Ok(configs::describe_group(
                    &broker.config,
                    &broker.groups.group_configs(&name),
                )),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("Unsupported resource type {other} in DescribeConfigs"),
                )),
            });
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
    // Kafka never shows a password's value, nor its synonyms'.
    let sensitive = e.config_type == ConfigType::Password;
    let shown = |v: &str| (!sensitive).then(|| str_bytes(v));
    let synonyms = if synonyms {
        e.synonyms
            .iter()
            .map(|s| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(&s.name))
                    .with_value(shown(&s.value))
                    .with_source(s.source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut out = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(&e.name))
        .with_value(shown(&e.value))
        .with_read_only(e.read_only)
        .with_config_source(e.source as i8)
        .with_is_sensitive(sensitive)
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

/// Resources named more than once in one request: Kafka refuses each of them.
fn repeated(resources: &[(i8, String)]) -> Vec<bool> {
    resources
        .iter()
        .map(|r| resources.iter().filter(|o| *o == r).count() > 1)
        .collect()
}

async fn alter_each(
    ctx: &Ctx<'_>,
    resources: Vec<(i8, String, Change)>,
    validate_only: bool,
) -> Vec<(i8, String, Result<(), (ResponseError, String)>)> {
    let keys: Vec<(i8, String)> = resources.iter().map(|(t, n, _)| (*t, n.clone())).collect();
    let dup = repeated(&keys);
    let mut out = Vec::with_capacity(resources.len());
    for ((resource_type, name, change), dup) in resources.into_iter().zip(dup) {
        let result = if dup {
            Err((
                ResponseError::InvalidRequest,
                "Each resource must appear at most once.".to_string(),
            ))
        } else if let Err(denied) =
            config_access(ctx, Operation::AlterConfigs, resource_type, &name)
        {
            Err(denied)
        } else {
            ctx.broker
                .alter_configs(resource_type, &name, change, validate_only)
                .await
        };
        if let Err((e, m)) = &result {
            tracing::info!(resource_type, name = %name, error = ?e, message = %m, "config change refused");
        }
        out.push((resource_type, name, result));
    }
    out
}

/// Applies the changes and answers each resource through `answer` (resource type, name,
/// error code, error message): AlterConfigs and IncrementalAlterConfigs differ only in the
/// response type.
async fn alter_and_answer<R>(
    ctx: &Ctx<'_>,
    resources: Vec<(i8, String, Change)>,
    validate_only: bool,
    answer: impl Fn(i8, StrBytes, i16, Option<StrBytes>) -> R,
) -> Vec<R> {
    alter_each(ctx, resources, validate_only)
        .await
        .into_iter()
        .map(|(t, name, result)| match result {
            // Kafka sends a null message on success (the crate's default is empty).
            Ok(()) => answer(t, str_bytes(&name), 0, None),
            Err((e, m)) => answer(t, str_bytes(&name), e.code(), Some(str_bytes(&m))),
        })
        .collect()
}

#[tracing::instrument(name = "alter_configs", skip_all, fields(n = req.resources.len()))]
pub async fn alter_configs(ctx: &Ctx<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let resources = req
        .resources
        .into_iter()
        .map(|r| {
            let configs = r
                .configs
                .into_iter()
                .map(|c| (c.name.to_string(), c.value.map(|v| v.to_string())))
                .collect();
            (
                r.resource_type,
                r.resource_name.to_string(),
                Change::Replace(configs),
            )
        })
        .collect();
    let responses = alter_and_answer(ctx, resources, req.validate_only, |t, name, code, m| {
        alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(t)
            .with_resource_name(name)
            .with_error_code(code)
            .with_error_message(m)
    })
    .await;
    AlterConfigsResponse::default().with_responses(responses)
}

#[tracing::instrument(name = "incremental_alter_configs", skip_all, fields(n = req.resources.len()))]
pub async fn incremental_alter_configs(
    ctx: &Ctx<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let resources = req
        .resources
        .into_iter()
        .map(|r| {
            let ops = r
                .configs
                .into_iter()
                .map(|c| Op {
                    name: c.name.to_string(),
                    op: c.config_operation,
                    value: c.value.map(|v| v.to_string()),
                })
                .collect();
            (
                r.resource_type,
                r.resource_name.to_string(),
                Change::Incremental(ops),
            )
        })
        .collect();
    let responses = alter_and_answer(ctx, resources, req.validate_only, |t, name, code, m| {
        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(t)
            .with_resource_name(name)
            .with_error_code(code)
            .with_error_message(m)
    })
    .await;
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
