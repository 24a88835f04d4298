//! FindCoordinator and the classic group protocol, translated to the coordinator's calls.
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx};
use crate::broker::groups::consumer::{Heartbeat, Metadata, Partitions, TopicMeta};
use crate::broker::groups::{CommittedOffset, GroupKind, JoinRequest};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
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
use kafka_protocol::protocol::StrBytes;

fn code(r: Result<(), ResponseError>) -> i16 {
    r.err().map(|e| e.code()).unwrap_or(0)
}

pub fn find_coordinator(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let b = ctx.broker;
    let node = BrokerId(b.node_id);
    let host = str_bytes(&b.advertised_host);
    // key_type 0 = group, 1 = transaction: this broker coordinates both.
    let error = if matches!(req.key_type, 0 | 1) {
        0
    } else {
        ResponseError::InvalidRequest.code()
    };
    if ctx.version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(if error == 0 { node } else { BrokerId(-1) })
                    .with_host(if error == 0 {
                        host.clone()
                    } else {
                        str_bytes("")
                    })
                    .with_port(if error == 0 { b.advertised_port } else { -1 })
                    .with_error_code(error)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    if error != 0 {
        return FindCoordinatorResponse::default()
            .with_error_code(error)
            .with_node_id(BrokerId(-1))
            .with_host(str_bytes(""))
            .with_port(-1);
    }
    FindCoordinatorResponse::default()
        .with_node_id(node)
        .with_host(host)
        .with_port(b.advertised_port)
}

#[tracing::instrument(name = "join_group", skip_all, fields(group = %req.group_id.0))]
pub async fn join(ctx: &Ctx<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let rebalance_timeout_ms = if ctx.version == 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    };
    let result = ctx
        .broker
        .groups
        .join(JoinRequest {
            group_id: req.group_id.0.to_string(),
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.map(|s| s.to_string()),
            client_id: ctx.client_id.to_string(),
            client_host: ctx.client_host.to_string(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_known_member_id: ctx.version >= 4,
        })
        .await;
    JoinGroupResponse::default()
        .with_error_code(result.error.map(|e| e.code()).unwrap_or(0))
        .with_generation_id(result.generation)
        .with_protocol_type(result.protocol_type.map(|s| str_bytes(&s)))
        .with_protocol_name(Some(str_bytes(result.protocol.as_deref().unwrap_or(""))))
        .with_leader(str_bytes(&result.leader))
        .with_member_id(str_bytes(&result.member_id))
        .with_skip_assignment(result.skip_assignment && ctx.version >= 9)
        .with_members(
            result
                .members
                .into_iter()
                .map(|(id, instance, meta)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&id))
                        .with_group_instance_id(instance.map(|s| str_bytes(&s)))
                        .with_metadata(meta)
                })
                .collect(),
        )
}

#[tracing::instrument(name = "sync_group", skip_all, fields(group = %req.group_id.0))]
pub async fn sync(ctx: &Ctx<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    match ctx
        .broker
        .groups
        .sync(
            req.group_id.0.as_str(),
            req.generation_id,
            req.member_id.as_str(),
            req.group_instance_id.as_deref(),
            assignments,
        )
        .await
    {
        Ok((ptype, proto, assignment)) => SyncGroupResponse::default()
            .with_protocol_type(ptype.map(|s| str_bytes(&s)))
            .with_protocol_name(proto.map(|s| str_bytes(&s)))
            .with_assignment(assignment),
        Err(e) => SyncGroupResponse::default().with_error_code(e.code()),
    }
}

pub fn heartbeat(ctx: &Ctx<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let r = ctx.broker.groups.heartbeat(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
    );
    HeartbeatResponse::default().with_error_code(code(r))
}

pub fn leave(ctx: &Ctx<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let group = req.group_id.0.to_string();
    if ctx.version < 3 {
        let r = ctx
            .broker
            .groups
            .leave(&group, &[(req.member_id.to_string(), None)]);
        return LeaveGroupResponse::default()
            .with_error_code(code(r.into_iter().next().unwrap_or(Ok(()))));
    }
    let ids: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|s| s.to_string()),
            )
        })
        .collect();
    let results = ctx.broker.groups.leave(&group, &ids);
    LeaveGroupResponse::default().with_members(
        req.members
            .into_iter()
            .zip(results)
            .map(|(m, r)| {
                MemberResponse::default()
                    .with_member_id(m.member_id)
                    .with_group_instance_id(m.group_instance_id)
                    .with_error_code(code(r))
            })
            .collect(),
    )
}

#[tracing::instrument(name = "offset_commit", skip_all, fields(group = %req.group_id.0))]
pub async fn offset_commit(ctx: &Ctx<'_>, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let broker = ctx.broker;
    let mut offsets = Vec::new();
    let mut unknown = Vec::new();
    for t in &req.topics {
        let topic = broker.topic(t.name.0.as_str());
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
                            let c = if unknown.contains(&(name.clone(), p.partition_index)) {
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
                let rows = parts
                    .into_iter()
                    .map(|p| match have.and_then(|m| m.get(&p)) {
                        Some(c) => (p, c.offset, c.leader_epoch, c.metadata.clone(), 0),
                        None => (p, -1, -1, Some(String::new()), 0),
                    })
                    .collect();
                (topic, rows)
            })
            .collect(),
        None => committed
            .into_iter()
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

pub fn list_groups(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let wanted = |filter: &[StrBytes], value: &str| {
        filter.is_empty()
            || filter
                .iter()
                .any(|s| s.as_str().eq_ignore_ascii_case(value))
    };
    let groups = ctx
        .broker
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state, kind)| {
            wanted(&req.states_filter, state) && wanted(&req.types_filter, kind)
        })
        .map(|(id, ptype, state, kind)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&id)))
                .with_protocol_type(str_bytes(&ptype))
                .with_group_state(str_bytes(state))
                .with_group_type(str_bytes(kind))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

/// A "consumer" protocol subscription (version 0): the topic names.
fn encode_subscription(topics: &[String]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

/// A "consumer" protocol assignment (version 0): partitions by topic name.
fn encode_assignment(parts: &[(String, Vec<i32>)]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(parts.len() as i32);
    for (t, ps) in parts {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1);
    b.freeze()
}

/// Topic ids to names, for describing assignments.
fn named(ctx: &Ctx<'_>, parts: &Partitions) -> Vec<(String, Vec<i32>)> {
    parts
        .iter()
        .filter_map(|(id, ps)| {
            let name = ctx.broker.topic_ids.get(id).map(|n| n.clone())?;
            Some((name, ps.iter().copied().collect()))
        })
        .collect()
}

pub fn describe_groups(ctx: &Ctx<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|gid| {
            let described = ctx.broker.groups.describe(gid.0.as_str(), |g| {
                let base = DescribedGroup::default()
                    .with_group_id(gid.clone())
                    .with_group_state(str_bytes(g.state_name()))
                    .with_protocol_type(str_bytes(&g.protocol_type_name()))
                    .with_authorized_operations(i32::MIN);
                if g.kind == GroupKind::Consumer {
                    // Shown in the classic shape, as Kafka does for consumer-protocol groups.
                    return base
                        .with_protocol_data(str_bytes(&g.consumer.assignor))
                        .with_members(
                            g.consumer
                                .members
                                .values()
                                .map(|m| {
                                    DescribedGroupMember::default()
                                        .with_member_id(str_bytes(&m.id))
                                        .with_group_instance_id(
                                            m.instance_id.as_ref().map(|s| str_bytes(s)),
                                        )
                                        .with_client_id(str_bytes(&m.client_id))
                                        .with_client_host(str_bytes(&m.client_host))
                                        .with_member_metadata(encode_subscription(&m.topics))
                                        .with_member_assignment(encode_assignment(&named(
                                            ctx,
                                            &m.assigned,
                                        )))
                                })
                                .collect(),
                        );
                }
                base.with_protocol_data(str_bytes(g.protocol.as_deref().unwrap_or("")))
                    .with_members(
                        g.members
                            .values()
                            .map(|m| {
                                let meta = m
                                    .protocols
                                    .iter()
                                    .find(|(n, _)| Some(n.as_str()) == g.protocol.as_deref())
                                    .map(|(_, b)| b.clone())
                                    .unwrap_or_default();
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(&m.id))
                                    .with_group_instance_id(
                                        m.instance_id.as_ref().map(|s| str_bytes(s)),
                                    )
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_member_metadata(meta)
                                    .with_member_assignment(m.assignment.clone())
                            })
                            .collect(),
                    )
            });
            described.unwrap_or_else(|| {
                // Dead, as Kafka reports a group it does not have; v6 (KIP-1043) says so
                // with GROUP_ID_NOT_FOUND too.
                let mut g = DescribedGroup::default()
                    .with_group_id(gid.clone())
                    .with_group_state(str_bytes("Dead"))
                    .with_authorized_operations(i32::MIN);
                if ctx.version >= 6 {
                    g = g
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(str_bytes(&format!(
                            "Group {} not found.",
                            gid.0.as_str()
                        ))));
                }
                g
            })
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub async fn delete_groups(ctx: &Ctx<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        let r = ctx.broker.groups.delete(g.0.as_str()).await;
        results.push(
            kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code(r)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub async fn offset_delete(ctx: &Ctx<'_>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    // As Kafka: a topic (or partition) this broker does not have answers
    // UNKNOWN_TOPIC_OR_PARTITION and is left out of the deletion.
    let exists = |t: &str, p: i32| {
        ctx.broker
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
                            let r = if exists(t.name.0.as_str(), p.partition_index) {
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
        client_host: ctx.client_host.to_string(),
    };
    let meta = topic_metadata(ctx);
    let groups = &ctx.broker.groups;
    let interval = groups.settings.consumer_heartbeat_interval.as_millis() as i32;
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
                    .with_authorized_operations(i32::MIN)
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
