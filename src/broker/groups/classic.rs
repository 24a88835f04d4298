//! The classic group protocol: JoinGroup, SyncGroup, Heartbeat and LeaveGroup. A group
//! moves Empty → PreparingRebalance (members (re)join) → CompletingRebalance (the leader
//! computes the assignment) → Stable (SyncGroup hands it out); static members (KIP-345)
//! keep their place across restarts under their instance id.
//!
//! # Files
//! None: members, generations and assignments live in memory only. The group's file (see
//! `offsets`) records just its protocol type and when it became empty.
//!
//! # Crash consistency
//! A restart forgets every member: clients find the group empty, rejoin and rebalance,
//! as after a coordinator failover in Kafka.

use super::{Group, GroupCoordinator, GroupKind};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heartbeat: Instant,
}

impl Group {
    /// The member a static instance id belongs to.
    pub(super) fn static_member(&self, instance: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.as_str())
    }

    /// KIP-345: a request naming an instance id must come from the member that holds it.
    pub(super) fn check_instance(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), ResponseError> {
        let Some(instance) = instance else {
            return Ok(());
        };
        match self.static_member(instance) {
            Some(id) if id == member_id => Ok(()),
            Some(_) => Err(ResponseError::FencedInstanceId),
            None => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Topics the classic members subscribe to, read from their "consumer" protocol
    /// metadata (version, then an array of topic names).
    pub(super) fn classic_subscriptions(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let mut topics = HashSet::new();
        for m in self.members.values() {
            let meta = m
                .protocols
                .iter()
                .find(|(n, _)| Some(n) == self.protocol.as_ref())
                .or(m.protocols.first())
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            topics.extend(subscription_topics(&meta)?);
        }
        Some(topics)
    }

    pub(super) fn prepare_rebalance(&mut self, delay: Duration) {
        if self.state != GroupState::PreparingRebalance {
            self.state = GroupState::PreparingRebalance;
            self.joined.clear();
            let longest = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or(delay);
            self.deadline = Some(Instant::now() + longest.max(delay));
        }
    }

    /// Ends the join phase once every member has rejoined or the deadline passed; members
    /// that did not rejoin are dropped.
    pub(super) fn maybe_complete_join(&mut self, now: Instant) -> bool {
        if self.state != GroupState::PreparingRebalance {
            return false;
        }
        // With no member left the rebalance has nobody to wait for: the group is empty.
        let all_joined = self.members.keys().all(|m| self.joined.contains(m));
        let expired = self.deadline.is_some_and(|d| now >= d);
        if !all_joined && !expired {
            return false;
        }
        let joined = std::mem::take(&mut self.joined);
        self.members.retain(|id, _| joined.contains(id));
        self.generation += 1;
        self.deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
        } else {
            self.state = GroupState::CompletingRebalance;
            self.protocol = self.choose_protocol();
            if !self
                .leader
                .as_ref()
                .is_some_and(|l| self.members.contains_key(l))
            {
                self.leader = self.members.keys().next().cloned();
            }
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                m.last_heartbeat = now;
            }
        }
        self.changed.notify_waiters();
        true
    }

    /// The first protocol of the first member's list that every member supports.
    pub(super) fn choose_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .find(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .cloned()
    }

    /// Removes members whose session expired and completes a rebalance whose deadline
    /// passed. Only members waiting in a join are kept alive during a rebalance: a dead
    /// member must not hold the rebalance up until its deadline.
    pub(super) fn expire_classic(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                !(self.state == GroupState::PreparingRebalance && self.joined.contains(&m.id))
                    && now.duration_since(m.last_heartbeat) > m.session_timeout
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "session expired");
            self.remove_member(&id);
        }
        self.pending.retain(|_, until| now < *until);
        self.maybe_complete_join(now);
    }

    /// A sign of life from a member other than a heartbeat (an offset commit).
    pub(super) fn touch(&mut self, id: &str) {
        if let Some(m) = self.members.get_mut(id) {
            m.last_heartbeat = Instant::now();
        }
    }

    pub(super) fn remove_member(&mut self, id: &str) {
        if self.members.remove(id).is_none() {
            return;
        }
        self.joined.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.state = GroupState::Empty;
                    self.generation += 1;
                    self.protocol = None;
                } else {
                    self.prepare_rebalance(Duration::ZERO);
                }
            }
            GroupState::PreparingRebalance => {
                self.maybe_complete_join(Instant::now());
            }
            GroupState::Empty => {}
        }
        self.changed.notify_waiters();
    }
}

pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a member without an id is first sent one with MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
}

pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only: (member id, instance id, metadata for the chosen protocol).
    pub members: Vec<(String, Option<String>, Bytes)>,
    /// A restarted static leader of a stable group keeps the current assignment (KIP-814).
    pub skip_assignment: bool,
}

impl JoinResult {
    fn error(e: ResponseError, member_id: &str) -> Self {
        Self {
            error: Some(e),
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }

    /// The answer once the join phase is over; the leader gets everyone's metadata.
    fn joined(group: &Group, member_id: String, skip_assignment: bool) -> Self {
        let leader = group.leader.clone().unwrap_or_default();
        let protocol = group.protocol.clone();
        let members = if leader == member_id {
            group
                .members
                .values()
                .map(|m| {
                    let meta = m
                        .protocols
                        .iter()
                        .find(|(n, _)| Some(n) == protocol.as_ref())
                        .map(|(_, b)| b.clone())
                        .unwrap_or_default();
                    (m.id.clone(), m.instance_id.clone(), meta)
                })
                .collect()
        } else {
            Vec::new()
        };
        Self {
            error: None,
            generation: group.generation,
            protocol_type: group.protocol_type.clone(),
            protocol,
            skip_assignment: skip_assignment && leader == member_id,
            leader,
            member_id,
            members,
        }
    }
}

/// The topic names in a "consumer" protocol subscription (any version: they come first).
pub(crate) fn subscription_topics(meta: &[u8]) -> Option<Vec<String>> {
    let mut buf = meta.get(2..)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = buf.split_at_checked(n)?;
        buf = rest;
        Some(head)
    };
    let count = i32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = i16::from_be_bytes(take(2)?.try_into().ok()?);
        let name = take(len.max(0) as usize)?;
        topics.push(String::from_utf8_lossy(name).into_owned());
    }
    Some(topics)
}

impl GroupCoordinator {
    pub async fn join(&self, req: JoinRequest) -> JoinResult {
        if req.group_id.is_empty() {
            return JoinResult::error(ResponseError::InvalidGroupId, &req.member_id);
        }
        let s = &self.settings;
        if !(s.min_session_timeout_ms..=s.max_session_timeout_ms).contains(&req.session_timeout_ms)
        {
            return JoinResult::error(ResponseError::InvalidSessionTimeout, &req.member_id);
        }
        let member_id;
        let changed;
        {
            let mut groups = self.lock();
            let group = groups
                .entry(req.group_id.clone())
                .or_insert_with(|| Group::new(&req.group_id));
            if group.kind == GroupKind::Consumer {
                if !group.consumer.members.is_empty() {
                    // The group speaks the consumer protocol; mixing is not supported.
                    return JoinResult::error(
                        ResponseError::InconsistentGroupProtocol,
                        &req.member_id,
                    );
                }
                group.kind = GroupKind::Classic;
            }
            let now = Instant::now();
            let mut replaced = None;
            if let Some(instance) = req.instance_id.as_deref() {
                let holder = group.static_member(instance).map(str::to_string);
                if req.member_id.is_empty() {
                    // A static member needs no MEMBER_ID_REQUIRED round trip: its instance
                    // id already identifies it, and a new id fences its predecessor.
                    member_id = format!("{instance}-{}", uuid::Uuid::new_v4());
                    replaced = holder;
                } else {
                    match holder {
                        Some(id) if id == req.member_id => member_id = id,
                        Some(_) => {
                            return JoinResult::error(
                                ResponseError::FencedInstanceId,
                                &req.member_id,
                            )
                        }
                        None => {
                            return JoinResult::error(
                                ResponseError::UnknownMemberId,
                                &req.member_id,
                            )
                        }
                    }
                }
            } else if req.member_id.is_empty() {
                let id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
                if req.require_known_member_id {
                    let session = Duration::from_millis(req.session_timeout_ms as u64);
                    group.pending.insert(id.clone(), Instant::now() + session);
                    return JoinResult::error(ResponseError::MemberIdRequired, &id);
                }
                member_id = id;
            } else {
                if !group.members.contains_key(&req.member_id)
                    && group.pending.remove(&req.member_id).is_none()
                {
                    return JoinResult::error(ResponseError::UnknownMemberId, &req.member_id);
                }
                member_id = req.member_id.clone();
            }
            let others_exist = group
                .members
                .keys()
                .any(|id| *id != member_id && Some(id) != replaced.as_ref());
            if req.protocols.is_empty()
                || (others_exist
                    && group.protocol_type.as_deref() != Some(req.protocol_type.as_str()))
            {
                return JoinResult::error(ResponseError::InconsistentGroupProtocol, &member_id);
            }
            if others_exist
                && !req.protocols.iter().any(|(n, _)| {
                    group.members.values().all(|m| {
                        m.id == member_id
                            || Some(&m.id) == replaced.as_ref()
                            || m.protocols.iter().any(|(p, _)| p == n)
                    })
                })
            {
                return JoinResult::error(ResponseError::InconsistentGroupProtocol, &member_id);
            }
            group.protocol_type = Some(req.protocol_type.clone());
            let mut member = Member {
                id: member_id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: Duration::from_millis(req.session_timeout_ms as u64),
                rebalance_timeout: Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64),
                protocols: req.protocols.clone(),
                assignment: Bytes::new(),
                last_heartbeat: now,
            };
            if let Some(old_id) = &replaced {
                if let Some(old) = group.members.remove(old_id) {
                    tracing::info!(group = %group.id, old = %old_id, new = %member_id, "static member replaced");
                    member.assignment = old.assignment.clone();
                    if group.leader.as_ref() == Some(old_id) {
                        group.leader = Some(member_id.clone());
                    }
                    if group.joined.remove(old_id) {
                        group.joined.insert(member_id.clone());
                    }
                    let same_protocols = old.protocols == member.protocols;
                    group.members.insert(member_id.clone(), member);
                    match group.state {
                        GroupState::Stable if same_protocols => {
                            // Back with the assignment it had: no rebalance (KIP-345).
                            group.changed.notify_waiters();
                            return JoinResult::joined(group, member_id, true);
                        }
                        GroupState::PreparingRebalance => {}
                        _ => group.prepare_rebalance(Duration::ZERO),
                    }
                    group.changed.notify_waiters();
                } else {
                    group.members.insert(member_id.clone(), member);
                    group.prepare_rebalance(Duration::ZERO);
                }
            } else {
                group.members.insert(member_id.clone(), member);
                group.prepare_rebalance(Duration::ZERO);
            }
            group.joined.insert(member_id.clone());
            group.maybe_complete_join(now);
            group.note_emptiness();
            changed = group.changed.clone();
        }
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let deadline = {
                let mut groups = self.lock();
                let Some(group) = groups.get_mut(&req.group_id) else {
                    return JoinResult::error(ResponseError::UnknownMemberId, &member_id);
                };
                group.maybe_complete_join(Instant::now());
                if !group.members.contains_key(&member_id) {
                    let fenced = req
                        .instance_id
                        .as_deref()
                        .is_some_and(|i| group.static_member(i).is_some());
                    let e = if fenced {
                        ResponseError::FencedInstanceId
                    } else {
                        ResponseError::UnknownMemberId
                    };
                    return JoinResult::error(e, &member_id);
                }
                if group.state != GroupState::PreparingRebalance {
                    return JoinResult::joined(group, member_id, false);
                }
                group.deadline
            };
            let sleep_until =
                deadline.unwrap_or_else(|| Instant::now() + Duration::from_millis(100));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(sleep_until)) => {}
            }
        }
    }

    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<(Option<String>, Option<String>, Bytes), ResponseError> {
        loop {
            let changed;
            {
                let mut groups = self.lock();
                let group = groups
                    .get_mut(group_id)
                    .ok_or(ResponseError::UnknownMemberId)?;
                group.check_instance(member_id, instance_id)?;
                if !group.members.contains_key(member_id) {
                    return Err(ResponseError::UnknownMemberId);
                }
                if generation != group.generation {
                    return Err(ResponseError::IllegalGeneration);
                }
                match group.state {
                    GroupState::PreparingRebalance | GroupState::Empty => {
                        return Err(ResponseError::RebalanceInProgress)
                    }
                    GroupState::CompletingRebalance => {
                        if group.leader.as_deref() == Some(member_id) {
                            let given: HashMap<_, _> = assignments.iter().cloned().collect();
                            for m in group.members.values_mut() {
                                m.assignment = given.get(&m.id).cloned().unwrap_or_default();
                            }
                            group.state = GroupState::Stable;
                            group.changed.notify_waiters();
                        }
                    }
                    GroupState::Stable => {}
                }
                if group.state == GroupState::Stable {
                    let m = group
                        .members
                        .get(member_id)
                        .ok_or(ResponseError::UnknownMemberId)?;
                    return Ok((
                        group.protocol_type.clone(),
                        group.protocol.clone(),
                        m.assignment.clone(),
                    ));
                }
                changed = group.changed.clone();
            }
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // Re-check after registering, then wait (bounded so a lost wake-up costs little).
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        let mut groups = self.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        group.check_instance(member_id, instance_id)?;
        let state = group.state;
        let current = group.generation;
        let member = group
            .members
            .get_mut(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        member.last_heartbeat = Instant::now();
        if state == GroupState::PreparingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        if generation != current {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Removes members, named by member id or (static members, v3+) by instance id.
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<Result<(), ResponseError>> {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return members
                .iter()
                .map(|_| Err(ResponseError::UnknownMemberId))
                .collect();
        };
        let results = members
            .iter()
            .map(|(id, instance)| {
                let id = match instance.as_deref() {
                    Some(instance) => match group.static_member(instance) {
                        Some(holder) if id.is_empty() || holder == id => holder.to_string(),
                        Some(_) => return Err(ResponseError::FencedInstanceId),
                        None => return Err(ResponseError::UnknownMemberId),
                    },
                    None => id.clone(),
                };
                if group.members.contains_key(&id) {
                    group.remove_member(&id);
                    Ok(())
                } else {
                    Err(ResponseError::UnknownMemberId)
                }
            })
            .collect();
        group.note_emptiness();
        results
    }
}

#[cfg(test)]
mod tests;
