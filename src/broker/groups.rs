//! The group coordinator of a single broker: the classic protocol (JoinGroup/SyncGroup
//! rebalances, static members of KIP-345, session expiry), the consumer protocol of KIP-848
//! (in `consumer`), and committed offsets, kept in memory and persisted per group under
//! `<data_dir>/.strata/groups/`.

pub mod consumer;

use super::state_files::StateFiles;
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
    /// Milliseconds since the epoch; what offsets expiry counts from.
    #[serde(default = "now_ms")]
    pub commit_timestamp: i64,
}

use crate::clock::now_ms;

#[derive(Default, Serialize, Deserialize)]
struct OffsetsFile {
    group: String,
    /// Set once the group has used group management; its offsets then expire counting from
    /// when it became empty, not from each commit (Kafka's KIP-211 rule).
    #[serde(default)]
    protocol_type: Option<String>,
    #[serde(default)]
    empty_since: Option<i64>,
    offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
}

/// Which protocol a group speaks; an empty group may switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    Classic,
    Consumer,
}

/// Coordinator settings, by their Kafka property names (defaults in `config::KAFKA_PROPERTIES`).
#[derive(Clone, Debug)]
pub struct GroupSettings {
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.consumer.session.timeout.ms`.
    pub consumer_session_timeout: Duration,
    /// `group.consumer.heartbeat.interval.ms`.
    pub consumer_heartbeat_interval: Duration,
    /// `offsets.retention.minutes`.
    pub offsets_retention: Duration,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check: Duration,
    /// fsync each commit before answering (`flush: always`); otherwise a commit survives a
    /// kill of the process, like the logs, and reaches the disk with the kernel's writeback.
    pub fsync: bool,
}

impl GroupSettings {
    pub fn from_config(c: &crate::config::Config) -> Self {
        let p = &c.props;
        let ms = |name: &str| Duration::from_millis(p.int(name).max(0) as u64);
        Self {
            min_session_timeout_ms: p.int("group.min.session.timeout.ms") as i32,
            max_session_timeout_ms: p.int("group.max.session.timeout.ms") as i32,
            consumer_session_timeout: ms("group.consumer.session.timeout.ms"),
            consumer_heartbeat_interval: ms("group.consumer.heartbeat.interval.ms"),
            offsets_retention: Duration::from_secs(
                p.int("offsets.retention.minutes").max(0) as u64 * 60,
            ),
            offsets_retention_check: ms("offsets.retention.check.interval.ms"),
            fsync: c.flush == crate::config::FlushPolicy::Always,
        }
    }
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
    pub kind: GroupKind,
    pub consumer: consumer::ConsumerGroup,
    /// When the group last became empty (ms), for offsets expiry.
    empty_since: Option<i64>,
    /// Group facts not yet written to its file (it became empty).
    dirty: bool,
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
            kind: GroupKind::Classic,
            consumer: consumer::ConsumerGroup::default(),
            empty_since: None,
            dirty: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.consumer.members.is_empty()
    }

    fn store(&mut self, offsets: Vec<(String, i32, CommittedOffset)>) {
        for (topic, partition, committed) in offsets {
            self.offsets
                .entry(topic)
                .or_default()
                .insert(partition, committed);
        }
    }

    /// Protocol type for listings: the consumer protocol's groups are "consumer" groups.
    pub fn protocol_type_name(&self) -> String {
        match self.kind {
            GroupKind::Consumer => "consumer".to_string(),
            GroupKind::Classic => self.protocol_type.clone().unwrap_or_default(),
        }
    }

    pub fn state_name(&self) -> &'static str {
        match self.kind {
            GroupKind::Consumer => self.consumer.state_name(),
            GroupKind::Classic => self.state.name(),
        }
    }

    /// Records when the group became empty, which starts its offsets' retention clock.
    fn note_emptiness(&mut self) {
        if self.is_empty() {
            if self.empty_since.is_none() {
                self.empty_since = Some(now_ms());
                self.dirty = true;
            }
        } else {
            self.empty_since = None;
        }
    }

    fn file(&self) -> OffsetsFile {
        let protocol_type = match self.kind {
            GroupKind::Consumer => Some("consumer".to_string()),
            GroupKind::Classic => self.protocol_type.clone(),
        };
        OffsetsFile {
            group: self.id.clone(),
            protocol_type,
            empty_since: self.empty_since,
            offsets: self.offsets.clone(),
        }
    }

    /// The member a static instance id belongs to.
    fn static_member(&self, instance: &str) -> Option<&str> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
            .map(|m| m.id.as_str())
    }

    /// KIP-345: a request naming an instance id must come from the member that holds it.
    fn check_instance(&self, member_id: &str, instance: Option<&str>) -> Result<(), ResponseError> {
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
    fn classic_subscriptions(&self) -> Option<HashSet<String>> {
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

pub struct GroupCoordinator {
    files: StateFiles,
    groups: Mutex<HashMap<String, Group>>,
    pub settings: GroupSettings,
    next_retention_check: Mutex<Instant>,
}

/// The topic names in a "consumer" protocol subscription (any version: they come first).
fn subscription_topics(meta: &[u8]) -> Option<Vec<String>> {
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
    pub fn open(dir: PathBuf, settings: GroupSettings) -> std::io::Result<Self> {
        let files = StateFiles::open(dir, settings.fsync)?;
        let mut groups = HashMap::new();
        for file in files.load::<OffsetsFile>()? {
            let mut g = Group::new(&file.group);
            g.offsets = file.offsets;
            g.protocol_type = file.protocol_type;
            // Members do not survive a restart: the group is empty from now on, or since it
            // was last seen empty.
            g.empty_since = Some(file.empty_since.unwrap_or_else(now_ms));
            groups.insert(file.group, g);
        }
        Ok(Self {
            files,
            groups: Mutex::new(groups),
            next_retention_check: Mutex::new(Instant::now() + settings.offsets_retention_check),
            settings,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

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

    /// Writes a group's file as it is now, or removes it once the group is gone.
    fn persist(&self, group_id: &str) -> Result<(), ResponseError> {
        self.files
            .write(group_id, || self.lock().get(group_id).map(Group::file))
    }

    /// Commits offsets. A member of an active group must name its current generation (or,
    /// in a consumer-protocol group, its member epoch); an empty group accepts commits from
    /// anyone (simple consumers with assign(), admin clients).
    pub fn commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        version: i16,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        {
            let mut groups = self.lock();
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id));
            if group.kind == GroupKind::Consumer && !group.consumer.members.is_empty() {
                let m = group
                    .consumer
                    .members
                    .get(member_id)
                    .ok_or(ResponseError::UnknownMemberId)?;
                if version < 9 {
                    // KIP-848 members commit with OffsetCommit v9 and their member epoch.
                    return Err(ResponseError::UnsupportedVersion);
                }
                if generation > m.epoch {
                    return Err(ResponseError::FencedMemberEpoch);
                }
                if generation < m.epoch {
                    return Err(ResponseError::StaleMemberEpoch);
                }
            } else if generation >= 0 || !member_id.is_empty() {
                group.check_instance(member_id, instance_id)?;
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
            } else if !group.is_empty() {
                return Err(ResponseError::UnknownMemberId);
            }
            group.store(offsets);
        }
        self.persist(group_id)
    }

    /// Offsets of a committed transaction (TxnOffsetCommit), applied at its commit marker:
    /// no member check, the producer's transaction was checked instead.
    pub fn commit_transactional(
        &self,
        group_id: &str,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), ResponseError> {
        {
            let mut groups = self.lock();
            groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id))
                .store(offsets);
        }
        self.persist(group_id)
    }

    /// TxnOffsetCommit v3+ (KIP-447): the committing member must be current, so a zombie
    /// of an older generation cannot commit through its transaction.
    pub fn check_txn_member(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if group.kind == GroupKind::Consumer {
            let m = group
                .consumer
                .members
                .get(member_id)
                .ok_or(ResponseError::UnknownMemberId)?;
            return if m.epoch == generation {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        }
        group.check_instance(member_id, instance_id)?;
        if !group.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if group.generation != generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// OffsetFetch v9 from a consumer-protocol member names its member epoch; anyone else
    /// (member id null, epoch -1) may read.
    pub fn check_fetch(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), ResponseError> {
        let Some(member_id) = member_id else {
            return Ok(());
        };
        if epoch < 0 && member_id.is_empty() {
            return Ok(());
        }
        let groups = self.lock();
        let Some(group) = groups.get(group_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if group.kind != GroupKind::Consumer {
            return Ok(());
        }
        let m = group
            .consumer
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId)?;
        match epoch.cmp(&m.epoch) {
            std::cmp::Ordering::Greater => Err(ResponseError::FencedMemberEpoch),
            std::cmp::Ordering::Less => Err(ResponseError::StaleMemberEpoch),
            std::cmp::Ordering::Equal => Ok(()),
        }
    }

    /// Committed offsets of a group.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
    ) -> BTreeMap<String, BTreeMap<i32, CommittedOffset>> {
        self.lock()
            .get(group_id)
            .map(|g| g.offsets.clone())
            .unwrap_or_default()
    }

    /// OffsetDelete: refused per topic while a member subscribes to it; allowed for any
    /// topic of an empty group. Returns each partition's result.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        let results = {
            let mut groups = self.lock();
            let group = groups
                .get_mut(group_id)
                .ok_or(ResponseError::GroupIdNotFound)?;
            let subscribed: Option<HashSet<String>> = if group.is_empty() {
                Some(HashSet::new())
            } else if group.kind == GroupKind::Consumer {
                Some(group.consumer.subscribed_topics().into_iter().collect())
            } else {
                group.classic_subscriptions()
            };
            let Some(subscribed) = subscribed else {
                return Err(ResponseError::NonEmptyGroup);
            };
            partitions
                .iter()
                .map(|(topic, p)| {
                    if subscribed.contains(topic) {
                        return Err(ResponseError::GroupSubscribedToTopic);
                    }
                    if let Some(parts) = group.offsets.get_mut(topic) {
                        parts.remove(p);
                        if parts.is_empty() {
                            group.offsets.remove(topic);
                        }
                    }
                    Ok(())
                })
                .collect()
        };
        self.persist(group_id)?;
        Ok(results)
    }

    /// Deletes groups with no members, with their committed offsets (Kafka's DeleteGroups).
    pub fn delete(&self, group_id: &str) -> Result<(), ResponseError> {
        {
            let mut groups = self.lock();
            match groups.get(group_id) {
                None => return Err(ResponseError::GroupIdNotFound),
                Some(g) if !g.is_empty() => return Err(ResponseError::NonEmptyGroup),
                Some(_) => {
                    groups.remove(group_id);
                }
            }
        }
        self.persist(group_id)
    }

    /// Forgets a deleted topic's committed offsets in every group.
    pub fn forget_topic(&self, topic: &str) {
        let touched: Vec<String> = {
            let mut groups = self.lock();
            groups
                .values_mut()
                .filter_map(|g| g.offsets.remove(topic).map(|_| g.id.clone()))
                .collect()
        };
        for group in touched {
            // persist() logs a failure; the offsets are gone from memory either way.
            let _ = self.persist(&group);
        }
    }

    /// (group id, protocol type, state, group type) of every group.
    pub fn list(&self) -> Vec<(String, String, &'static str, &'static str)> {
        let mut out: Vec<_> = self
            .lock()
            .values()
            .map(|g| {
                let kind = match g.kind {
                    GroupKind::Classic => "classic",
                    GroupKind::Consumer => "consumer",
                };
                (g.id.clone(), g.protocol_type_name(), g.state_name(), kind)
            })
            .collect();
        out.sort();
        out
    }

    /// Runs `f` on a group, if it exists.
    pub fn describe<R>(&self, group_id: &str, f: impl FnOnce(&Group) -> R) -> Option<R> {
        self.lock().get(group_id).map(f)
    }

    /// A ConsumerGroupHeartbeat (KIP-848).
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        hb: consumer::Heartbeat,
        meta: &consumer::Metadata,
    ) -> Result<consumer::HeartbeatReply, consumer::Refusal> {
        if group_id.is_empty() {
            return Err((
                ResponseError::InvalidRequest,
                "GroupId can't be empty.".to_string(),
            ));
        }
        let mut groups = self.lock();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        if group.kind == GroupKind::Classic {
            if !group.members.is_empty() {
                return Err((
                    ResponseError::GroupIdNotFound,
                    format!("Group {group_id} is not a consumer group."),
                ));
            }
            group.kind = GroupKind::Consumer;
            group.protocol_type = Some("consumer".to_string());
        }
        let reply = group.consumer.heartbeat(hb, meta, Instant::now());
        group.note_emptiness();
        reply
    }

    /// Removes members whose session expired, completes overdue rebalances, and now and
    /// then expires the offsets of groups that have been empty too long.
    pub fn expire(&self, now: Instant) {
        let mut to_write = Vec::new();
        {
            let mut groups = self.lock();
            for group in groups.values_mut() {
                let expired: Vec<String> = group
                    .members
                    .values()
                    .filter(|m| {
                        // Only members waiting in a join are kept alive during a rebalance;
                        // a dead member must not hold the rebalance up until its deadline.
                        !(group.state == GroupState::PreparingRebalance
                            && group.joined.contains(&m.id))
                            && now.duration_since(m.last_heartbeat) > m.session_timeout
                    })
                    .map(|m| m.id.clone())
                    .collect();
                for id in expired {
                    tracing::info!(group = %group.id, member = %id, "session expired");
                    group.remove_member(&id);
                }
                group.maybe_complete_join(now);
                for id in group
                    .consumer
                    .expired(now, self.settings.consumer_session_timeout)
                {
                    tracing::info!(group = %group.id, member = %id, "consumer session or revocation timed out");
                    group.consumer.remove(&id);
                }
                group.note_emptiness();
                if std::mem::take(&mut group.dirty) {
                    to_write.push(group.id.clone());
                }
            }
        }
        let check_due = {
            let mut next = self
                .next_retention_check
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = now >= *next;
            if due {
                *next = now + self.settings.offsets_retention_check;
            }
            due
        };
        if check_due {
            to_write.extend(self.expire_offsets(now_ms()));
        }
        to_write.sort();
        to_write.dedup();
        for id in to_write {
            let _ = self.persist(&id);
        }
    }

    /// Kafka's offsets expiry: in an empty group, offsets older than the retention counted
    /// from when the group became empty (or, for groups that never used group management,
    /// from the commit) are dropped, and a group left with nothing is removed.
    fn expire_offsets(&self, now: i64) -> Vec<String> {
        let retention = self.settings.offsets_retention.as_millis() as i64;
        let mut touched = Vec::new();
        let mut groups = self.lock();
        groups.retain(|id, g| {
            if !g.is_empty() {
                return true;
            }
            let managed = g.protocol_type.is_some();
            let mut changed = false;
            g.offsets.retain(|_, parts| {
                let before = parts.len();
                parts.retain(|_, c| {
                    let base = if managed {
                        g.empty_since.unwrap_or(now).max(c.commit_timestamp)
                    } else {
                        c.commit_timestamp
                    };
                    now - base < retention
                });
                changed |= parts.len() != before;
                !parts.is_empty()
            });
            if changed {
                tracing::info!(group = %id, "expired committed offsets");
            }
            let keep = !g.offsets.is_empty();
            if changed || !keep {
                touched.push(id.clone());
            }
            keep
        });
        touched
    }
}
