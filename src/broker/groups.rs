//! A classic-protocol group coordinator for one broker: JoinGroup/SyncGroup rebalances,
//! heartbeats with session expiry, and committed offsets kept in memory and persisted per
//! group under `<data_dir>/.strata/groups/`.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

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

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct OffsetsFile {
    group: String,
    offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending: HashSet<String>,
    /// Members that have joined during the current PreparingRebalance.
    joined: HashSet<String>,
    deadline: Option<Instant>,
    pub offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
    changed: Arc<Notify>,
}

impl Group {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashSet::new(),
            joined: HashSet::new(),
            deadline: None,
            offsets: BTreeMap::new(),
            changed: Arc::new(Notify::new()),
        }
    }

    fn prepare_rebalance(&mut self, delay: Duration) {
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
    fn maybe_complete_join(&mut self, now: Instant) -> bool {
        if self.state != GroupState::PreparingRebalance {
            return false;
        }
        let all_joined =
            !self.members.is_empty() && self.members.keys().all(|m| self.joined.contains(m));
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
    fn choose_protocol(&self) -> Option<String> {
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

    fn remove_member(&mut self, id: &str) {
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
        }
    }
}

pub struct GroupCoordinator {
    dir: PathBuf,
    groups: Mutex<HashMap<String, Group>>,
}

fn file_name(group: &str) -> String {
    let hex: String = group.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.yaml")
}

const MIN_SESSION_TIMEOUT_MS: i32 = 6_000;
const MAX_SESSION_TIMEOUT_MS: i32 = 1_800_000;

impl GroupCoordinator {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut groups = HashMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            match serde_yaml::from_str::<OffsetsFile>(&text) {
                Ok(file) => {
                    let mut g = Group::new(&file.group);
                    g.offsets = file.offsets;
                    groups.insert(file.group, g);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable committed offsets")
                }
            }
        }
        Ok(Self {
            dir,
            groups: Mutex::new(groups),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn join(&self, req: JoinRequest) -> JoinResult {
        if req.group_id.is_empty() {
            return JoinResult::error(ResponseError::InvalidGroupId, &req.member_id);
        }
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&req.session_timeout_ms) {
            return JoinResult::error(ResponseError::InvalidSessionTimeout, &req.member_id);
        }
        let member_id;
        let changed;
        {
            let mut groups = self.lock();
            let group = groups
                .entry(req.group_id.clone())
                .or_insert_with(|| Group::new(&req.group_id));
            if req.member_id.is_empty() {
                let id = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
                if req.require_known_member_id {
                    group.pending.insert(id.clone());
                    return JoinResult::error(ResponseError::MemberIdRequired, &id);
                }
                member_id = id;
            } else {
                if !group.members.contains_key(&req.member_id)
                    && !group.pending.remove(&req.member_id)
                {
                    return JoinResult::error(ResponseError::UnknownMemberId, &req.member_id);
                }
                member_id = req.member_id.clone();
            }
            if req.protocols.is_empty()
                || (!group.members.is_empty()
                    && group.protocol_type.as_deref() != Some(req.protocol_type.as_str())
                    && !(group.members.len() == 1 && group.members.contains_key(&member_id)))
            {
                return JoinResult::error(ResponseError::InconsistentGroupProtocol, &member_id);
            }
            if !group.members.is_empty()
                && !req.protocols.iter().any(|(n, _)| {
                    group
                        .members
                        .values()
                        .all(|m| m.id == member_id || m.protocols.iter().any(|(p, _)| p == n))
                })
            {
                return JoinResult::error(ResponseError::InconsistentGroupProtocol, &member_id);
            }
            group.protocol_type = Some(req.protocol_type.clone());
            let now = Instant::now();
            let member = Member {
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
            group.members.insert(member_id.clone(), member);
            group.prepare_rebalance(Duration::ZERO);
            group.joined.insert(member_id.clone());
            group.maybe_complete_join(now);
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
                    return JoinResult::error(ResponseError::UnknownMemberId, &member_id);
                }
                if group.state != GroupState::PreparingRebalance {
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
                    return JoinResult {
                        error: None,
                        generation: group.generation,
                        protocol_type: group.protocol_type.clone(),
                        protocol,
                        leader,
                        member_id,
                        members,
                    };
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
        assignments: Vec<(String, Bytes)>,
    ) -> Result<(Option<String>, Option<String>, Bytes), ResponseError> {
        loop {
            let changed;
            {
                let mut groups = self.lock();
                let group = groups
                    .get_mut(group_id)
                    .ok_or(ResponseError::UnknownMemberId)?;
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
    ) -> Result<(), ResponseError> {
        let mut groups = self.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or(ResponseError::UnknownMemberId)?;
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

    pub fn leave(&self, group_id: &str, member_ids: &[String]) -> Vec<Result<(), ResponseError>> {
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return member_ids
                .iter()
                .map(|_| Err(ResponseError::UnknownMemberId))
                .collect();
        };
        member_ids
            .iter()
            .map(|id| {
                if group.members.contains_key(id) {
                    group.remove_member(id);
                    Ok(())
                } else {
                    Err(ResponseError::UnknownMemberId)
                }
            })
            .collect()
    }

    /// Commits offsets; a member of an active group must name its current generation, while
    /// an empty group accepts commits from anyone (simple consumers with assign()).
    pub fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let file = {
            let mut groups = self.lock();
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id));
            if generation >= 0 || !member_id.is_empty() {
                if !group.members.contains_key(member_id) {
                    if group.state != GroupState::Empty || generation >= 0 {
                        return Err(ResponseError::UnknownMemberId);
                    }
                } else if generation != group.generation {
                    return Err(ResponseError::IllegalGeneration);
                } else if group.state == GroupState::CompletingRebalance {
                    // As Kafka: commits made while preparing a rebalance (an eager
                    // consumer's commit in its revoke callback) are kept; only between the
                    // join and the sync is the assignment too uncertain to commit against.
                    return Err(ResponseError::RebalanceInProgress);
                }
            } else if group.state != GroupState::Empty {
                return Err(ResponseError::UnknownMemberId);
            }
            for (topic, partition, committed) in offsets {
                group
                    .offsets
                    .entry(topic)
                    .or_default()
                    .insert(partition, committed);
            }
            OffsetsFile {
                group: group_id.to_string(),
                offsets: group.offsets.clone(),
            }
        };
        let yaml = serde_yaml::to_string(&file).map_err(|_| ResponseError::UnknownServerError)?;
        crate::broker::topics::write_atomically(
            &self.dir.join(file_name(group_id)),
            yaml.as_bytes(),
        )
        .map_err(|e| {
            tracing::error!(group = group_id, error = %e, "persisting committed offsets");
            ResponseError::KafkaStorageError
        })
    }

    /// Committed offsets of a group: all of them, or those of the named partitions.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
    ) -> BTreeMap<String, BTreeMap<i32, CommittedOffset>> {
        self.lock()
            .get(group_id)
            .map(|g| g.offsets.clone())
            .unwrap_or_default()
    }

    /// Deletes groups with no members, with their committed offsets (Kafka's DeleteGroups).
    pub fn delete(&self, group_id: &str) -> Result<(), ResponseError> {
        {
            let mut groups = self.lock();
            match groups.get(group_id) {
                None => return Err(ResponseError::GroupIdNotFound),
                Some(g) if !g.members.is_empty() => return Err(ResponseError::NonEmptyGroup),
                Some(_) => {
                    groups.remove(group_id);
                }
            }
        }
        match std::fs::remove_file(self.dir.join(file_name(group_id))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::error!(group = group_id, error = %e, "deleting committed offsets");
                Err(ResponseError::KafkaStorageError)
            }
            _ => Ok(()),
        }
    }

    /// Forgets a deleted topic's committed offsets in every group.
    pub fn forget_topic(&self, topic: &str) {
        let files: Vec<(String, OffsetsFile)> = {
            let mut groups = self.lock();
            groups
                .values_mut()
                .filter_map(|g| {
                    g.offsets.remove(topic)?;
                    Some((
                        g.id.clone(),
                        OffsetsFile {
                            group: g.id.clone(),
                            offsets: g.offsets.clone(),
                        },
                    ))
                })
                .collect()
        };
        for (group, file) in files {
            let written = serde_yaml::to_string(&file)
                .map_err(std::io::Error::other)
                .and_then(|y| {
                    crate::broker::topics::write_atomically(
                        &self.dir.join(file_name(&group)),
                        y.as_bytes(),
                    )
                });
            if let Err(e) = written {
                tracing::warn!(%group, error = %e, "rewriting committed offsets after a topic deletion");
            }
        }
    }

    /// (group id, protocol type, state) of every group.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let mut out: Vec<_> = self
            .lock()
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Runs `f` on a group, if it exists.
    pub fn describe<R>(&self, group_id: &str, f: impl FnOnce(&Group) -> R) -> Option<R> {
        self.lock().get(group_id).map(f)
    }

    /// Removes members whose session expired and completes overdue rebalances.
    pub fn expire(&self, now: Instant) {
        let mut groups = self.lock();
        for group in groups.values_mut() {
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|m| {
                    // Only members waiting in a join are kept alive during a rebalance; a
                    // dead member must not hold the rebalance up until its deadline.
                    !(group.state == GroupState::PreparingRebalance && group.joined.contains(&m.id))
                        && now.duration_since(m.last_heartbeat) > m.session_timeout
                })
                .map(|m| m.id.clone())
                .collect();
            for id in expired {
                tracing::info!(group = %group.id, member = %id, "session expired");
                group.remove_member(&id);
            }
            group.maybe_complete_join(now);
        }
    }
}

/// Ticks session expiry for the broker's coordinator.
pub fn spawn_expiry_task(broker: crate::broker::Broker) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            broker.groups.expire(Instant::now());
        }
    });
}
