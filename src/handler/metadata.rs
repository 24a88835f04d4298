//! Metadata: one broker that leads every partition; topics auto-created when allowed.
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx, Operation, ResourceType};
use crate::broker::topics::validate_name;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use uuid::Uuid;

fn topic_entry(ctx: &Ctx<'_>, t: &crate::broker::Topic, with_ops: bool) -> MetadataResponseTopic {
    let node = BrokerId(ctx.broker.node_id);
    let ops = if with_ops {
        ctx.authorized_operations(ResourceType::Topic, &t.name)
    } else {
        i32::MIN
    };
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&t.name))))
        .with_topic_id(t.id)
        .with_topic_authorized_operations(ops)
        .with_partitions(
            (0..t.partition_count)
                .map(|i| {
                    MetadataResponsePartition::default()
                        .with_partition_index(i)
                        .with_leader_id(node)
                        .with_leader_epoch(0)
                        .with_replica_nodes(vec![node])
                        .with_isr_nodes(vec![node])
                })
                .collect(),
        )
}

fn error_entry(name: Option<&str>, id: Uuid, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        .with_topic_id(id)
        .with_error_code(error.code())
        .with_topic_authorized_operations(i32::MIN)
}

pub async fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let broker = ctx.broker;
    let auto_create = broker.config.props.bool("auto.create.topics.enable")
        && (ctx.version < 4 || req.allow_auto_topic_creation);
    let with_ops = req.include_topic_authorized_operations;
    let describable = |name: &str| ctx.authorize(Operation::Describe, ResourceType::Topic, name);
    // Auto-creation needs CREATE on the cluster or on the topic.
    let may_create = |name: &str| {
        ctx.authorize_cluster(Operation::Create)
            || ctx.authorize(Operation::Create, ResourceType::Topic, name)
    };
    let mut topics = Vec::new();
    // v0: an empty list means every topic; v1+: null means every topic.
    let all = match &req.topics {
        None => true,
        Some(list) => list.is_empty() && ctx.version == 0,
    };
    if all {
        topics = broker
            .topics()
            .iter()
            .filter(|t| describable(&t.name))
            .map(|t| topic_entry(ctx, t, with_ops))
            .collect();
    } else {
        for requested in req.topics.unwrap_or_default() {
            let name = requested.name.as_ref().map(|n| n.0.to_string());
            let Some(name) = name else {
                // Lookup by topic id (v10+).
                match broker.topic_by_id(requested.topic_id) {
                    Some(t) if !describable(&t.name) => topics.push(error_entry(
                        None,
                        requested.topic_id,
                        ResponseError::TopicAuthorizationFailed,
                    )),
                    Some(t) => topics.push(topic_entry(ctx, &t, with_ops)),
                    None => topics.push(error_entry(
                        None,
                        requested.topic_id,
                        ResponseError::UnknownTopicId,
                    )),
                }
                continue;
            };
            if let Err(reason) = validate_name(&name) {
                tracing::debug!(topic = %name, %reason, "metadata for an invalid topic name");
                topics.push(error_entry(
                    Some(&name),
                    Uuid::nil(),
                    ResponseError::InvalidTopicException,
                ));
                continue;
            }
            if !describable(&name) {
                topics.push(error_entry(
                    Some(&name),
                    Uuid::nil(),
                    ResponseError::TopicAuthorizationFailed,
                ));
                continue;
            }
            match broker.topic(&name) {
                Some(t) => topics.push(topic_entry(ctx, &t, with_ops)),
                None if auto_create && !may_create(&name) => topics.push(error_entry(
                    Some(&name),
                    Uuid::nil(),
                    ResponseError::TopicAuthorizationFailed,
                )),
                None if auto_create => {
                    match broker.create_topic(&name, -1, -1, Vec::new(), false).await {
                        Ok(t) => topics.push(topic_entry(ctx, &t, with_ops)),
                        Err((ResponseError::TopicAlreadyExists, _)) => match broker.topic(&name) {
                            Some(t) => topics.push(topic_entry(ctx, &t, with_ops)),
                            None => topics.push(error_entry(
                                Some(&name),
                                Uuid::nil(),
                                ResponseError::UnknownTopicOrPartition,
                            )),
                        },
                        Err((code, msg)) => {
                            tracing::warn!(topic = %name, %msg, "auto-creation failed");
                            topics.push(error_entry(Some(&name), Uuid::nil(), code));
                        }
                    }
                }
                None => topics.push(error_entry(
                    Some(&name),
                    Uuid::nil(),
                    ResponseError::UnknownTopicOrPartition,
                )),
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.node_id))
            .with_host(str_bytes(&ctx.session.listener.advertised_host))
            .with_port(ctx.session.listener.advertised_port)])
        .with_cluster_id(Some(str_bytes(&broker.config.cluster_id)))
        .with_controller_id(BrokerId(broker.node_id))
        // Only v8–v10 have the field; v11 (KIP-700) moved it to DescribeCluster.
        .with_cluster_authorized_operations(ctx.cluster_authorized_operations(
            req.include_cluster_authorized_operations && (8..=10).contains(&ctx.version),
        ))
        .with_topics(topics)
}
