//! CreateTopics, DeleteTopics, DescribeCluster.
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx, Operation, ResourceType};
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
    // CREATE on the cluster covers every topic; otherwise CREATE on each topic.
    let cluster_create = ctx.authorize_cluster(Operation::Create);
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
        } else if !cluster_create && !ctx.authorize(Operation::Create, ResourceType::Topic, &name) {
            Err((
                ResponseError::TopicAuthorizationFailed,
                "Authorization failed.".into(),
            ))
        } else {
            let shape = if t.assignments.is_empty() {
                Ok((t.num_partitions, t.replication_factor))
            } else if t.num_partitions != -1 || t.replication_factor != -1 {
                Err((
                    ResponseError::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set. \
                     Both cannot be used at the same time."
                        .into(),
                ))
            } else {
                let assignment: Vec<(i32, Vec<i32>)> = t
                    .assignments
                    .iter()
                    .map(|a| {
                        (
                            a.partition_index,
                            a.broker_ids.iter().map(|b| b.0).collect(),
                        )
                    })
                    .collect();
                manual_assignment(&assignment, broker.node_id)
            };
            match shape {
                Err(e) => Err(e),
                Ok((partitions, replication_factor)) => {
                    let configs = t
                        .configs
                        .iter()
                        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                        .collect();
                    broker
                        .create_topic(
                            &name,
                            partitions,
                            replication_factor,
                            configs,
                            req.validate_only,
                        )
                        .await
                }
            }
        };
        let entry = CreatableTopicResult::default().with_name(TopicName(str_bytes(&name)));
        results.push(match result {
            Ok(topic) => {
                let created = entry
                    .with_topic_id(if req.validate_only {
                        Uuid::nil()
                    } else {
                        topic.id
                    })
                    .with_num_partitions(topic.partition_count)
                    .with_replication_factor(1);
                // Without DESCRIBE_CONFIGS the configs stay out, as Kafka leaves them.
                if !ctx.authorize(Operation::DescribeConfigs, ResourceType::Topic, &name) {
                    created.with_topic_config_error_code(
                        ResponseError::TopicAuthorizationFailed.code(),
                    )
                } else {
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
                    created.with_configs(Some(configs))
                }
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
    if !broker.config.props.bool("delete.topic.enable") {
        // As Kafka's controller: every topic gets the error, older versions INVALID_REQUEST.
        let error = if ctx.version < 3 {
            ResponseError::InvalidRequest
        } else {
            ResponseError::TopicDeletionDisabled
        };
        let results = targets
            .into_iter()
            .map(|(name, id)| {
                DeletableTopicResult::default()
                    .with_name(name.map(|n| TopicName(str_bytes(&n))))
                    .with_topic_id(id)
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes("Topic deletion is disabled.")))
            })
            .collect();
        return DeleteTopicsResponse::default().with_responses(results);
    }
    let mut results = Vec::new();
    for (name, id) in targets {
        let by_id = name.is_none();
        let resolved = match &name {
            Some(n) => Some(n.clone()),
            None => broker.topic_by_id(id).map(|t| t.name.clone()),
        };
        let outcome = match &resolved {
            Some(n) if !ctx.authorize(Operation::Delete, ResourceType::Topic, n) => {
                Err(ResponseError::TopicAuthorizationFailed)
            }
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

pub fn describe_cluster(ctx: &Ctx<'_>, req: DescribeClusterRequest) -> DescribeClusterResponse {
    let b = ctx.broker;
    let ops = ctx.cluster_authorized_operations(req.include_cluster_authorized_operations);
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(str_bytes(&b.config.cluster_id))
        .with_controller_id(BrokerId(b.node_id))
        .with_cluster_authorized_operations(ops)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(b.node_id))
            .with_host(str_bytes(&ctx.session.listener.advertised_host))
            .with_port(ctx.session.listener.advertised_port)])
}

/// Checks a CreateTopics manual assignment as Kafka does (partitions 0..n, each with the
/// same number of distinct replicas) and that every partition names this broker, the one
/// that will hold it; returns (partitions, replication factor).
fn manual_assignment(
    assignment: &[(i32, Vec<i32>)],
    node_id: i32,
) -> Result<(i32, i16), (ResponseError, String)> {
    let invalid = |m: String| Err((ResponseError::InvalidReplicaAssignment, m));
    let mut indexes: Vec<i32> = assignment.iter().map(|(p, _)| *p).collect();
    indexes.sort_unstable();
    if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
        return invalid(format!(
            "Partitions must be numbered 0 to {} with no gaps or repeats, got {indexes:?}.",
            assignment.len().saturating_sub(1)
        ));
    }
    let Some((_, first)) = assignment.first() else {
        return invalid("The manual partition assignment is empty.".into());
    };
    for (p, replicas) in assignment {
        if replicas.is_empty() {
            return invalid(format!("Partition {p} has no replicas."));
        }
        if replicas.len() != first.len() {
            return invalid("All partitions should have the same number of replicas.".into());
        }
        let mut distinct = replicas.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != replicas.len() {
            return invalid(format!(
                "Partition {p} names a broker more than once: {replicas:?}."
            ));
        }
        if !replicas.contains(&node_id) {
            return invalid(format!(
                "The manual partition assignment of partition {p} does not name broker \
                 {node_id}, the only broker: {replicas:?}."
            ));
        }
    }
    let rf = i16::try_from(first.len()).unwrap_or(i16::MAX);
    Ok((assignment.len() as i32, rf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_assignment_must_name_this_broker_in_every_partition() {
        assert_eq!(
            manual_assignment(&[(1, vec![0]), (0, vec![0])], 0),
            Ok((2, 1))
        );
        assert_eq!(
            manual_assignment(&[(0, vec![0, 1, 2]), (1, vec![2, 0, 1])], 0),
            Ok((2, 3))
        );
        for bad in [
            vec![(0, vec![1])],
            vec![(0, vec![0]), (2, vec![0])],
            vec![(0, vec![0]), (0, vec![0])],
            vec![(0, vec![])],
            vec![(0, vec![0, 0])],
            vec![(0, vec![0]), (1, vec![0, 1])],
        ] {
            let got = manual_assignment(&bad, 0);
            assert!(
                matches!(got, Err((ResponseError::InvalidReplicaAssignment, _))),
                "{bad:?} gave {got:?}"
            );
        }
    }
}
