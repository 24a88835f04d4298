//! OffsetCommit, OffsetFetch (single and batched, `require_stable`) and OffsetDelete,
//! translated to the group coordinator's committed offsets.
//!
//! No state, no files: see `handler`.

use super::groups::code;
use super::{str_bytes, Ctx, Operation, ResourceType};
use crate::broker::groups::CommittedOffset;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;

#[tracing::instrument(name = "offset_commit", skip_all, fields(group = %req.group_id.0))]
pub async fn offset_commit(ctx: &Ctx<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let broker = ctx.broker;
    if !ctx.authorize(Operation::Read, ResourceType::Group, &req.group_id) {
        return OffsetCommitResponse::default().with_topics(every_partition(
            &req,
            ResponseError::GroupAuthorizationFailed,
        ));
    }
    let mut offsets = Vec::new();
    let mut unknown = Vec::new();
    let mut denied = Vec::new();
    for t in &req.topics {
        let topic = broker.topic(t.name.0.as_str());
        if !ctx.authorize(Operation::Read, ResourceType::Topic, &t.name) {
            denied.push(t.name.0.to_string());
            continue;
        }
        for p in &t.partitions {
            if topic
                .as_ref()
                .and_then(|tp| tp.partition(p.partition_index))
                .is_none()
            {
                unknown.push((t.name.0.to_string(), p.partition_index));
                continue;
            }
            offsets.push((
                t.name.0.to_string(),
                p.partition_index,
                CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    commit_timestamp: crate::clock::now_ms(),
                },
            ));
        }
    }
    let result = broker
        .groups
        .commit(
            req.group_id.0.as_str(),
            req.generation_id_or_member_epoch,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            ctx.version,
            offsets,
        )
        .await;
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            let c = if denied.contains(&name) {
                                ResponseError::TopicAuthorizationFailed.code()
                            } else if unknown.contains(&(name.clone(), p.partition_index)) {
                                ResponseError::UnknownTopicOrPartition.code()
                            } else {
                                code(result)
                            };
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(c)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The same error for every partition of a commit.
fn every_partition(
    req: &OffsetCommitRequest,
    error: ResponseError,
) -> Vec<OffsetCommitResponseTopic> {
    req.topics
        .iter()
        .map(|t| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error.code())
                        })
                        .collect(),
                )
        })
        .collect()
}

/// (partition, committed offset, leader epoch, metadata, error code).
type OffsetRow = (i32, i64, i32, Option<String>, i16);

/// Committed offsets of one group, per topic. With `require_stable`, a partition whose
/// offset waits in an open transaction answers UNSTABLE_OFFSET_COMMIT (KIP-447), so the
/// client retries once the transaction has ended.
fn lookup(
    ctx: &Ctx<'_>,
    group: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Vec<(String, Vec<OffsetRow>)> {
    let committed = ctx.broker.groups.fetch_offsets(group);
    // Topics the client may not describe: TOPIC_AUTHORIZATION_FAILED when named, left out
    // when every topic was asked for, as Kafka does.
    let describable = |t: &str| ctx.authorize(Operation::Describe, ResourceType::Topic, t);
    let pending = if require_stable {
        ctx.broker.txns.pending_offsets(group)
    } else {
        Default::default()
    };
    let rows = match wanted {
        Some(list) => list
            .into_iter()
            .map(|(topic, parts)| {
                let have = committed.get(&topic);
                let allowed = describable(&topic);
                let rows = parts
                    .into_iter()
                    .map(|p| match have.and_then(|m| m.get(&p)) {
                        _ if !allowed => (
                            p,
                            -1,
                            -1,
                            None,
                            ResponseError::TopicAuthorizationFailed.code(),
                        ),
                        Some(c) => (p, c.offset, c.leader_epoch, c.metadata.clone(), 0),
                        None => (p, -1, -1, Some(String::new()), 0),
                    })
                    .collect();
                (topic, rows)
            })
            .collect(),
        None => committed
            .into_iter()
            .filter(|(topic, _)| describable(topic))
            .map(|(topic, parts)| {
                let rows = parts
                    .into_iter()
                    .map(|(p, c)| (p, c.offset, c.leader_epoch, c.metadata, 0))
                    .collect();
                (topic, rows)
            })
            .collect(),
    };
    if pending.is_empty() {
        return rows;
    }
    rows.into_iter()
        .map(|(topic, rows)| {
            let rows = rows
                .into_iter()
                .map(|row| {
                    if pending.contains(&(topic.clone(), row.0)) {
                        (
                            row.0,
                            -1,
                            -1,
                            None,
                            ResponseError::UnstableOffsetCommit.code(),
                        )
                    } else {
                        row
                    }
                })
                .collect();
            (topic, rows)
        })
        .collect()
}

pub fn offset_fetch(ctx: &Ctx<'_>, req: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                if !ctx.authorize(Operation::Describe, ResourceType::Group, &g.group_id) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(ResponseError::GroupAuthorizationFailed.code());
                }
                if let Err(e) = ctx.broker.groups.check_fetch(
                    g.group_id.0.as_str(),
                    g.member_id.as_deref(),
                    g.member_epoch,
                ) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_error_code(e.code());
                }
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let topics = lookup(ctx, g.group_id.0.as_str(), wanted, req.require_stable)
                    .into_iter()
                    .map(|(topic, rows)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(str_bytes(&topic)))
                            .with_topic_id(
                                ctx.broker.topic(&topic).map(|t| t.id).unwrap_or_default(),
                            )
                            .with_partitions(
                                rows.into_iter()
                                    .map(|(p, off, epoch, meta, err)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_error_code(err)
                                            .with_committed_offset(off)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(meta.map(|m| str_bytes(&m)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if !ctx.authorize(Operation::Describe, ResourceType::Group, &req.group_id) {
        return OffsetFetchResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let topics = lookup(ctx, req.group_id.0.as_str(), wanted, req.require_stable)
        .into_iter()
        .map(|(topic, rows)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(str_bytes(&topic)))
                .with_partitions(
                    rows.into_iter()
                        .map(|(p, off, epoch, meta, err)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_error_code(err)
                                .with_committed_offset(off)
                                .with_committed_leader_epoch(epoch)
                                .with_metadata(meta.map(|m| str_bytes(&m)))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

pub async fn offset_delete(ctx: &Ctx<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    if !ctx.authorize(Operation::Delete, ResourceType::Group, &req.group_id) {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
    // As Kafka: a topic (or partition) this broker does not have answers
    // UNKNOWN_TOPIC_OR_PARTITION and is left out of the deletion; one the client may not
    // read answers TOPIC_AUTHORIZATION_FAILED.
    let readable = |t: &str| ctx.authorize(Operation::Read, ResourceType::Topic, t);
    let exists = |t: &str, p: i32| {
        readable(t)
            && ctx
                .broker
                .topic(t)
                .is_some_and(|topic| topic.partition(p).is_some())
    };
    let partitions: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| exists(t.name.0.as_str(), p.partition_index))
                .map(|p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    match ctx
        .broker
        .groups
        .delete_offsets(req.group_id.0.as_str(), &partitions)
        .await
    {
        Err(e) => OffsetDeleteResponse::default().with_error_code(e.code()),
        Ok(results) => {
            let mut results = results.into_iter();
            let topics = req
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let r = if !readable(t.name.0.as_str()) {
                                Err(ResponseError::TopicAuthorizationFailed)
                            } else if exists(t.name.0.as_str(), p.partition_index) {
                                results.next().unwrap_or(Ok(()))
                            } else {
                                Err(ResponseError::UnknownTopicOrPartition)
                            };
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code(r))
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            OffsetDeleteResponse::default().with_topics(topics)
        }
    }
}
