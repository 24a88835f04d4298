//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat, ConsumerGroupDescribe),
//! translated to the group coordinator.
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx, Operation, ResourceType};
use crate::broker::groups::consumer::{Heartbeat, Metadata, Partitions, TopicMeta};
use crate::broker::groups::GroupKind;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use std::collections::BTreeSet;

/// Every topic's id and size, what the server-side assignors work from.
fn topic_metadata(ctx: &Ctx<'_>) -> Metadata {
    ctx.broker
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TopicMeta {
                    id: t.id,
                    partitions: t.partition_count,
                },
            )
        })
        .collect()
}

#[tracing::instrument(name = "consumer_group_heartbeat", skip_all, fields(group = %req.group_id.0, member = %req.member_id, epoch = req.member_epoch))]
pub fn consumer_group_heartbeat(
    ctx: &Ctx<'_>,
    req: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    // READ on the group, then DESCRIBE on every subscribed topic named, as Kafka 4 checks.
    let refused = |e: ResponseError| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(e.code())
            .with_member_epoch(-1)
    };
    if !ctx.authorize(Operation::Read, ResourceType::Group, &req.group_id) {
        return refused(ResponseError::GroupAuthorizationFailed);
    }
    if req.subscribed_topic_names.as_ref().is_some_and(|ts| {
        ts.iter()
            .any(|t| !ctx.authorize(Operation::Describe, ResourceType::Topic, t))
    }) {
        return refused(ResponseError::TopicAuthorizationFailed);
    }
    let hb = Heartbeat {
        version: ctx.version,
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.map(|s| s.to_string()),
        rack_id: req.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        topics: req
            .subscribed_topic_names
            .map(|ts| ts.into_iter().map(|t| t.0.to_string()).collect()),
        regex: req.subscribed_topic_regex.map(|s| s.to_string()),
        assignor: req.server_assignor.map(|s| s.to_string()),
        owned: req.topic_partitions.map(|tps| {
            let mut owned = Partitions::new();
            for tp in tps {
                owned
                    .entry(tp.topic_id)
                    .or_default()
                    .extend(tp.partitions.iter().copied());
            }
            owned
        }),
        client_id: ctx.client_id.to_string(),
        client_host: ctx.client_host().to_string(),
        undescribable: BTreeSet::new(),
    };
    let meta = topic_metadata(ctx);
    let hb = Heartbeat {
        undescribable: meta
            .keys()
            .filter(|t| !ctx.authorize(Operation::Describe, ResourceType::Topic, t))
            .cloned()
            .collect(),
        ..hb
    };
    let groups = &ctx.broker.groups;
    let interval = groups
        .consumer_heartbeat_interval(req.group_id.0.as_str())
        .as_millis() as i32;
    match groups.consumer_heartbeat(req.group_id.0.as_str(), hb, &meta) {
        Ok(reply) => {
            let assignment = reply.assignment.map(|parts| {
                consumer_group_heartbeat_response::Assignment::default().with_topic_partitions(
                    parts
                        .into_iter()
                        .map(|(id, ps)| {
                            consumer_group_heartbeat_response::TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            });
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(&reply.member_id)))
                .with_member_epoch(reply.epoch)
                .with_heartbeat_interval_ms(interval)
                .with_assignment(assignment)
        }
        Err((e, message)) => {
            tracing::debug!(error = ?e, %message, "consumer group heartbeat refused");
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(str_bytes(&message)))
                .with_member_epoch(-1)
        }
    }
}

pub fn consumer_group_describe(
    ctx: &Ctx<'_>,
    req: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    use consumer_group_describe_response as cgd;
    let assignment = |parts: &Partitions| {
        cgd::Assignment::default().with_topic_partitions(
            parts
                .iter()
                .map(|(id, ps)| {
                    cgd::TopicPartitions::default()
                        .with_topic_id(*id)
                        .with_topic_name(TopicName(str_bytes(
                            &ctx.broker
                                .topic_ids
                                .get(id)
                                .map(|n| n.clone())
                                .unwrap_or_default(),
                        )))
                        .with_partitions(ps.iter().copied().collect())
                })
                .collect(),
        )
    };
    let groups = req
        .group_ids
        .into_iter()
        .map(|gid| {
            if !ctx.authorize(Operation::Describe, ResourceType::Group, &gid) {
                return cgd::DescribedGroup::default()
                    .with_group_id(gid.clone())
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                    .with_authorized_operations(i32::MIN);
            }
            let ops = if req.include_authorized_operations {
                ctx.authorized_operations(ResourceType::Group, &gid)
            } else {
                i32::MIN
            };
            let found = ctx.broker.groups.describe(gid.0.as_str(), |g| {
                if g.kind != GroupKind::Consumer {
                    return cgd::DescribedGroup::default()
                        .with_group_id(gid.clone())
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(str_bytes(&format!(
                            "Group {} is not a consumer group.",
                            gid.0.as_str()
                        ))))
                        .with_authorized_operations(i32::MIN);
                }
                let c = &g.consumer;
                cgd::DescribedGroup::default()
                    .with_group_id(gid.clone())
                    .with_group_state(str_bytes(c.state_name()))
                    .with_group_epoch(c.group_epoch)
                    .with_assignment_epoch(c.assignment_epoch)
                    .with_assignor_name(str_bytes(&c.assignor))
                    .with_authorized_operations(ops)
                    .with_members(
                        c.members
                            .values()
                            .map(|m| {
                                cgd::Member::default()
                                    .with_member_id(str_bytes(&m.id))
                                    .with_instance_id(m.instance_id.as_ref().map(|s| str_bytes(s)))
                                    .with_rack_id(m.rack_id.as_ref().map(|s| str_bytes(s)))
                                    .with_member_epoch(m.epoch)
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_subscribed_topic_names(
                                        m.topics.iter().map(|t| TopicName(str_bytes(t))).collect(),
                                    )
                                    .with_subscribed_topic_regex(
                                        m.regex.as_ref().map(|s| str_bytes(s)),
                                    )
                                    .with_assignment(assignment(&m.assigned))
                                    .with_target_assignment(assignment(
                                        &c.target.get(&m.id).cloned().unwrap_or_default(),
                                    ))
                                    .with_member_type(if ctx.version >= 1 { 1 } else { -1 })
                            })
                            .collect(),
                    )
            });
            // Kafka hides a group whose assignments name a topic the client may not see.
            let hides_topics = |g: &cgd::DescribedGroup| {
                g.members.iter().any(|m| {
                    m.assignment
                        .topic_partitions
                        .iter()
                        .chain(&m.target_assignment.topic_partitions)
                        .any(|tp| {
                            !ctx.authorize(Operation::Describe, ResourceType::Topic, tp.topic_name.as_str())
                        })
                })
            };
            if let Some(g) = found.as_ref().filter(|g| hides_topics(g)) {
                return cgd::DescribedGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_error_message(Some(str_bytes(
                        "The group has described topic(s) that the client is not authorized to describe.",
                    )))
                    .with_authorized_operations(i32::MIN);
            }
            found.unwrap_or_else(|| {
                cgd::DescribedGroup::default()
                    .with_group_id(gid.clone())
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "Group {} not found.",
                        gid.0.as_str()
                    ))))
                    .with_authorized_operations(i32::MIN)
            })
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
