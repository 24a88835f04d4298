//! CreateTopics, DeleteTopics, DescribeCluster.
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, TopicName,
};
use uuid::Uuid;

#[tracing::instrument(name = "create_topics", skip_all, fields(n = req.topics.len(), validate_only = req.validate_only))]
pub async fn create_topics(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let broker = ctx.broker;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let duplicate = results
            .iter()
            .any(|r: &CreatableTopicResult| r.name.0.as_str() == name);
        let result = if duplicate {
            Err((
                ResponseError::InvalidRequest,
                format!("Create topics request had duplicate topic {name}"),
            ))
        } else if !t.assignments.is_empty() {
            Err((
                ResponseError::InvalidRequest,
                "Manual replica assignment is not supported by a single broker".into(),
            ))
        } else {
            let configs = t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            broker
                .create_topic(
                    &name,
                    t.num_partitions,
                    t.replication_factor,
                    configs,
                    req.validate_only,
                )
                .await
        };
        let entry = CreatableTopicResult::default().with_name(TopicName(str_bytes(&name)));
        results.push(match result {
            Ok(topic) => {
                let configs = topic
                    .all_configs(&broker.config)
                    .into_iter()
                    .map(|(k, v, set)| {
                        CreatableTopicConfigs::default()
                            .with_name(str_bytes(&k))
                            .with_value(Some(str_bytes(&v)))
                            // 1 = dynamic topic config, 5 = default.
                            .with_config_source(if set { 1 } else { 5 })
                    })
                    .collect();
                entry
                    .with_topic_id(if req.validate_only {
                        Uuid::nil()
                    } else {
                        topic.id
                    })
                    .with_num_partitions(topic.partition_count)
                    .with_replication_factor(1)
                    .with_configs(Some(configs))
            }
            Err((code, msg)) => entry
                .with_error_code(code.code())
                .with_error_message(Some(str_bytes(&msg)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

#[tracing::instrument(name = "delete_topics", skip_all)]
pub async fn delete_topics(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let broker = ctx.broker;
    // v6 names topics by name or id in `topics`; earlier versions by name in `topic_names`.
    let targets: Vec<(Option<String>, Uuid)> = if ctx.version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect()
    };
    let mut results = Vec::new();
    for (name, id) in targets {
        let by_id = name.is_none();
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => broker.topic_by_id(id).map(|t| t.name.clone()),
        };
        let outcome = match &resolved {
            Some(n) => broker.delete_topic(n).await,
            None => Err(ResponseError::UnknownTopicId),
        };
        let mut entry =
            DeletableTopicResult::default().with_name(resolved.map(|n| TopicName(str_bytes(&n))));
        match outcome {
            Ok(deleted_id) => entry = entry.with_topic_id(deleted_id),
            Err(e) => {
                let e = if by_id && e == ResponseError::UnknownTopicOrPartition {
                    ResponseError::UnknownTopicId
                } else {
                    e
                };
                entry = entry.with_topic_id(id).with_error_code(e.code());
            }
        }
        results.push(entry);
    }
    DeleteTopicsResponse::default().with_responses(results)
}

pub fn describe_cluster(ctx: &Ctx<'_>, _req: DescribeClusterRequest) -> DescribeClusterResponse {
    let b = ctx.broker;
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(str_bytes(&b.config.cluster_id))
        .with_controller_id(BrokerId(b.node_id))
        .with_cluster_authorized_operations(i32::MIN)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(b.node_id))
            .with_host(str_bytes(&b.advertised_host))
            .with_port(b.advertised_port)])
}
