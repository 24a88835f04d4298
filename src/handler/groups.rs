//! FindCoordinator, the classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup)
//! and ListGroups, DescribeGroups, DeleteGroups, translated to the coordinator's calls.
//!
//! No state, no files: see `handler`.

use super::{str_bytes, Ctx, Operation, ResourceType};
use crate::broker::groups::consumer::Partitions;
use crate::broker::groups::{GroupKind, JoinRequest};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

pub(super) fn code(r: Result<(), ResponseError>) -> i16 {
    r.err().map(|e| e.code()).unwrap_or(0)
}

pub fn find_coordinator(ctx: &Ctx<'_>, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    let b = ctx.broker;
    let node = BrokerId(b.node_id);
    let listener = &ctx.session.listener;
    let host = str_bytes(&listener.advertised_host);
    // key_type 0 = group, 1 = transaction: this broker coordinates both.
    let error = if matches!(req.key_type, 0 | 1) {
        0
    } else {
        ResponseError::InvalidRequest.code()
    };
    // DESCRIBE on the group or the transactional id, as Kafka checks.
    let denied = |key: &str| match req.key_type {
        0 if !ctx.authorize(Operation::Describe, ResourceType::Group, key) => {
            Some(ResponseError::GroupAuthorizationFailed)
        }
        1 if !ctx.authorize(Operation::Describe, ResourceType::TransactionalId, key) => {
            Some(ResponseError::TransactionalIdAuthorizationFailed)
        }
        _ => None,
    };
    if ctx.version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let error = match denied(&key) {
                    Some(e) if error == 0 => e.code(),
                    _ => error,
                };
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(if error == 0 { node } else { BrokerId(-1) })
                    .with_host(if error == 0 {
                        host.clone()
                    } else {
                        str_bytes("")
                    })
                    .with_port(if error == 0 {
                        listener.advertised_port
                    } else {
                        -1
                    })
                    .with_error_code(error)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let error = match denied(&req.key) {
        Some(e) if error == 0 => e.code(),
        _ => error,
    };
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
        .with_port(listener.advertised_port)
}

#[tracing::instrument(name = "join_group", skip_all, fields(group = %req.group_id.0))]
pub async fn join(ctx: &Ctx<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let rebalance_timeout_ms = if ctx.version == 0 {
        req.session_timeout_ms
    } else {
        req.rebalance_timeout_ms
    };
    if !ctx.authorize(Operation::Read, ResourceType::Group, &req.group_id) {
        // Kafka's error answer: unknown generation, member and protocol (null from v7).
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code())
            .with_generation_id(-1)
            .with_protocol_name((ctx.version < 7).then(|| str_bytes("")));
    }
    let result = ctx
        .broker
        .groups
        .join(JoinRequest {
            group_id: req.group_id.0.to_string(),
            member_id: req.member_id.to_string(),
            instance_id: req.group_instance_id.map(|s| s.to_string()),
            client_id: ctx.client_id.to_string(),
            client_host: ctx.client_host().to_string(),
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
    if !ctx.authorize(Operation::Read, ResourceType::Group, &req.group_id) {
        return SyncGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
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
    if !ctx.authorize(Operation::Read, ResourceType::Group, &req.group_id) {
        return HeartbeatResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
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
    if !ctx.authorize(Operation::Read, ResourceType::Group, &group) {
        return LeaveGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
    }
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

pub fn list_groups(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let wanted = |filter: &[StrBytes], value: &str| {
        filter.is_empty()
            || filter
                .iter()
                .any(|s| s.as_str().eq_ignore_ascii_case(value))
    };
    // DESCRIBE on the cluster lists every group; otherwise only those the client may
    // describe.
    let all = ctx.authorize_cluster(Operation::Describe);
    let groups = ctx
        .broker
        .groups
        .list()
        .into_iter()
        .filter(|(id, _, state, kind)| {
            wanted(&req.states_filter, state)
                && wanted(&req.types_filter, kind)
                && (all || ctx.authorize(Operation::Describe, ResourceType::Group, id))
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
            if !ctx.authorize(Operation::Describe, ResourceType::Group, &gid) {
                return DescribedGroup::default()
                    .with_group_id(gid.clone())
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                    .with_authorized_operations(i32::MIN);
            }
            let ops = if req.include_authorized_operations {
                ctx.authorized_operations(ResourceType::Group, &gid)
            } else {
                i32::MIN
            };
            let described = ctx.broker.groups.describe(gid.0.as_str(), |g| {
                let base = DescribedGroup::default()
                    .with_group_id(gid.clone())
                    .with_group_state(str_bytes(g.state_name()))
                    .with_protocol_type(str_bytes(&g.protocol_type_name()))
                    .with_authorized_operations(ops);
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
                    .with_authorized_operations(ops);
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
        let r = if ctx.authorize(Operation::Delete, ResourceType::Group, &g) {
            ctx.broker.groups.delete(g.0.as_str()).await
        } else {
            Err(ResponseError::GroupAuthorizationFailed)
        };
        results.push(
            kafka_protocol::messages::delete_groups_response::DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code(r)),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
