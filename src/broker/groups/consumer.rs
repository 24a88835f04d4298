//! The consumer group protocol of KIP-848: members heartbeat with their epoch; the broker
//! computes a target assignment with a server-side assignor (see `assignor`) whenever the
//! group epoch moves, and moves each member towards it one epoch at a time, revoking
//! partitions before anyone else is given them (Kafka's CurrentAssignmentBuilder).
//!
//! # Files
//! None: members, epochs and assignments live in memory only; the group's file (see
//! `offsets`) records that it is a "consumer" group and its committed offsets.
//!
//! # Crash consistency
//! After a restart the group is empty: members get UNKNOWN_MEMBER_ID or FENCED_MEMBER_EPOCH,
//! rejoin at epoch 0 and are assigned afresh.

use super::assignor::{self, ASSIGNORS};
use kafka_protocol::error::ResponseError;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Partitions by topic id.
pub type Partitions = BTreeMap<Uuid, BTreeSet<i32>>;

/// What the assignors need to know of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicMeta {
    pub id: Uuid,
    pub partitions: i32,
}

/// Every topic of the broker by name.
pub type Metadata = BTreeMap<String, TopicMeta>;

/// A static member that left with epoch -2 keeps its assignment until it rejoins or its
/// session expires.
pub const LEAVE_STATIC_EPOCH: i32 = -2;
pub const LEAVE_EPOCH: i32 = -1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Stable,
    /// Told to give up partitions; keeps its epoch until it confirms.
    UnrevokedPartitions,
    /// At the new epoch but waiting for partitions other members still hold.
    UnreleasedPartitions,
}

#[derive(Clone, Debug)]
pub struct ConsumerMember {
    pub id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub epoch: i32,
    pub previous_epoch: i32,
    pub state: MemberState,
    pub topics: Vec<String>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    pub rebalance_timeout: Duration,
    pub assigned: Partitions,
    pub revoking: Partitions,
    revoke_deadline: Option<Instant>,
    last_heartbeat: Instant,
    /// Left with epoch -2: a static member expected back under the same instance id.
    left: bool,
}

impl ConsumerMember {
    fn new(id: String, now: Instant) -> Self {
        Self {
            id,
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            epoch: 0,
            previous_epoch: -1,
            state: MemberState::Stable,
            topics: Vec::new(),
            regex: None,
            assignor: None,
            rebalance_timeout: Duration::from_secs(300),
            assigned: Partitions::new(),
            revoking: Partitions::new(),
            revoke_deadline: None,
            last_heartbeat: now,
            left: false,
        }
    }

    /// Topic names this member subscribes to, by list and by pattern (`hidden`: topics left
    /// out of the patterns' resolution).
    fn subscribes(
        &self,
        topic: &str,
        patterns: &BTreeMap<String, regex::Regex>,
        hidden: &BTreeSet<String>,
    ) -> bool {
        self.topics.iter().any(|t| t == topic)
            || (!hidden.contains(topic)
                && self
                    .regex
                    .as_ref()
                    .and_then(|r| patterns.get(r))
                    .is_some_and(|re| re.is_match(topic)))
    }
}

/// One ConsumerGroupHeartbeat, with Kafka's "null means unchanged" fields as options.
pub struct Heartbeat {
    pub version: i16,
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i32,
    pub topics: Option<Vec<String>>,
    pub regex: Option<String>,
    pub assignor: Option<String>,
    pub owned: Option<Partitions>,
    pub client_id: String,
    pub client_host: String,
    /// Topics the heartbeating client may not DESCRIBE: Kafka resolves the group's regular
    /// expressions without them, in the context of the member that heartbeats.
    pub undescribable: BTreeSet<String>,
}

pub struct HeartbeatReply {
    pub member_id: String,
    pub epoch: i32,
    /// Sent when the member joined, sent a full request, or its assignment changed.
    pub assignment: Option<Partitions>,
}

pub type Refusal = (ResponseError, String);

fn refuse<T>(e: ResponseError, msg: impl Into<String>) -> Result<T, Refusal> {
    Err((e, msg.into()))
}

#[derive(Default)]
pub struct ConsumerGroup {
    pub members: BTreeMap<String, ConsumerMember>,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub target: BTreeMap<String, Partitions>,
    /// The subscribed topics as of the last target assignment; a change bumps the epoch.
    subscribed: Metadata,
    /// Topics the regular expressions match but the last heartbeating member may not see.
    regex_hidden: BTreeSet<String>,
    pub assignor: String,
}

impl ConsumerGroup {
    /// Kafka's names: Empty, Assigning, Reconciling, Stable.
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.subscribed.keys().cloned().collect()
    }

    fn bump(&mut self) {
        self.group_epoch += 1;
    }

    /// Removes a member and frees its partitions; the others learn at their next heartbeat.
    pub fn remove(&mut self, id: &str) -> bool {
        if self.members.remove(id).is_none() {
            return false;
        }
        self.target.remove(id);
        self.bump();
        true
    }

    /// Members whose session or revocation deadline passed.
    pub fn expired(&self, now: Instant, session_timeout: Duration) -> Vec<String> {
        self.members
            .values()
            .filter(|m| {
                now.duration_since(m.last_heartbeat) > session_timeout
                    || m.revoke_deadline.is_some_and(|d| now > d)
            })
            .map(|m| m.id.clone())
            .collect()
    }

    pub fn heartbeat(
        &mut self,
        hb: Heartbeat,
        meta: &Metadata,
        now: Instant,
    ) -> Result<HeartbeatReply, Refusal> {
        if hb.member_epoch == LEAVE_EPOCH || hb.member_epoch == LEAVE_STATIC_EPOCH {
            return self.leave(hb);
        }
        if hb.member_epoch < 0 {
            return refuse(ResponseError::InvalidRequest, "MemberEpoch is invalid.");
        }
        if hb.member_epoch == 0 {
            if hb.rebalance_timeout_ms == -1 {
                return refuse(
                    ResponseError::InvalidRequest,
                    "RebalanceTimeoutMs must be provided in first request.",
                );
            }
            if hb.topics.is_none() && hb.regex.is_none() {
                return refuse(
                    ResponseError::InvalidRequest,
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                );
            }
            if hb.owned.as_ref().is_some_and(|o| !o.is_empty()) {
                return refuse(
                    ResponseError::InvalidRequest,
                    "TopicPartitions must be empty when (re-)joining.",
                );
            }
        }
        if hb.version >= 1 && hb.member_id.is_empty() {
            return refuse(ResponseError::InvalidRequest, "MemberId can't be empty.");
        }
        if let Some(a) = &hb.assignor {
            if !ASSIGNORS.contains(&a.as_str()) {
                return refuse(
                    ResponseError::UnsupportedAssignor,
                    format!(
                        "ServerAssignor {a} is not supported. Supported assignors: uniform, range."
                    ),
                );
            }
        }
        if let Some(r) = &hb.regex {
            if let Err(e) = compile(r) {
                return refuse(ResponseError::InvalidRegularExpression, e);
            }
        }

        let member_id = self.find_or_create(&hb, now)?;
        let Some(member) = self.members.get_mut(&member_id) else {
            return refuse(ResponseError::UnknownMemberId, "Unknown member.");
        };
        let before = member.assigned.clone();
        let mut changed = false;
        if hb.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout = Duration::from_millis(hb.rebalance_timeout_ms as u64);
        }
        if let Some(topics) = hb.topics.clone() {
            let mut sorted = topics;
            sorted.sort();
            sorted.dedup();
            changed |= member.topics != sorted;
            member.topics = sorted;
        }
        if let Some(r) = hb.regex.clone() {
            let r = (!r.is_empty()).then_some(r);
            changed |= member.regex != r;
            member.regex = r;
        }
        if let Some(a) = hb.assignor.clone() {
            changed |= member.assignor.as_deref() != Some(a.as_str());
            member.assignor = Some(a);
        }
        if hb.rack_id.is_some() {
            member.rack_id = hb.rack_id.clone();
        }
        member.client_id = hb.client_id.clone();
        member.client_host = hb.client_host.clone();
        member.last_heartbeat = now;
        if changed {
            self.bump();
        }

        let patterns = self.patterns();
        let hidden: BTreeSet<String> = hb
            .undescribable
            .iter()
            .filter(|t| patterns.values().any(|re| re.is_match(t)))
            .cloned()
            .collect();
        if hidden != self.regex_hidden {
            self.regex_hidden = hidden;
            self.bump();
        }
        let subscribed = self.subscription_metadata(meta);
        if subscribed != self.subscribed {
            self.subscribed = subscribed;
            self.bump();
        }
        if self.group_epoch > self.assignment_epoch {
            self.assign();
        }
        self.reconcile(&member_id, hb.owned.as_ref(), now);

        let member = &self.members[&member_id];
        let full = hb.member_epoch == 0
            || (hb.rebalance_timeout_ms != -1 && hb.topics.is_some() && hb.owned.is_some());
        Ok(HeartbeatReply {
            member_id,
            epoch: member.epoch,
            assignment: (full || member.assigned != before).then(|| member.assigned.clone()),
        })
    }

    fn leave(&mut self, hb: Heartbeat) -> Result<HeartbeatReply, Refusal> {
        let id = match &hb.instance_id {
            Some(instance) => {
                let Some(m) = self
                    .members
                    .values()
                    .find(|m| m.instance_id.as_ref() == Some(instance))
                else {
                    return refuse(
                        ResponseError::UnknownMemberId,
                        format!("Instance id {instance} is unknown."),
                    );
                };
                if m.id != hb.member_id {
                    return refuse(
                        ResponseError::FencedInstanceId,
                        format!("Instance id {instance} belongs to another member."),
                    );
                }
                m.id.clone()
            }
            None => {
                if !self.members.contains_key(&hb.member_id) {
                    return refuse(ResponseError::UnknownMemberId, "Unknown member.");
                }
                hb.member_id.clone()
            }
        };
        if hb.member_epoch == LEAVE_STATIC_EPOCH && hb.instance_id.is_some() {
            // Kept with its assignment, so a restart of the same instance gets it back.
            if let Some(m) = self.members.get_mut(&id) {
                m.left = true;
            }
        } else {
            self.remove(&id);
        }
        Ok(HeartbeatReply {
            member_id: id,
            epoch: hb.member_epoch,
            assignment: None,
        })
    }

    /// The member this heartbeat speaks for, after the epoch and instance-id checks.
    fn find_or_create(&mut self, hb: &Heartbeat, now: Instant) -> Result<String, Refusal> {
        if let Some(instance) = &hb.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_ref() == Some(instance))
                .map(|m| (m.id.clone(), m.left));
            if hb.member_epoch == 0 {
                let id = if hb.member_id.is_empty() {
                    Uuid::new_v4().to_string()
                } else {
                    hb.member_id.clone()
                };
                match holder {
                    Some((old, left)) if old != id && !left => refuse(
                        ResponseError::UnreleasedInstanceId,
                        format!("Static member {old} with instance id {instance} is present in the group."),
                    ),
                    Some((old, _)) => {
                        // The restarted instance takes over its predecessor's assignment.
                        let Some(mut m) = self.members.remove(&old) else {
                            return refuse(ResponseError::UnknownMemberId, "Unknown member.");
                        };
                        if let Some(t) = self.target.remove(&old) {
                            self.target.insert(id.clone(), t);
                        }
                        m.id = id.clone();
                        m.left = false;
                        m.last_heartbeat = now;
                        self.members.insert(id.clone(), m);
                        Ok(id)
                    }
                    None => {
                        let mut m = ConsumerMember::new(id.clone(), now);
                        m.instance_id = Some(instance.clone());
                        self.members.insert(id.clone(), m);
                        self.bump();
                        Ok(id)
                    }
                }
            } else {
                match holder {
                    None => refuse(
                        ResponseError::UnknownMemberId,
                        format!("Instance id {instance} is unknown."),
                    ),
                    Some((old, _)) if old != hb.member_id => refuse(
                        ResponseError::FencedInstanceId,
                        format!("Instance id {instance} belongs to another member."),
                    ),
                    Some(_) => self.check_epoch(hb),
                }
            }
        } else if hb.member_epoch == 0 {
            let id = if hb.member_id.is_empty() {
                Uuid::new_v4().to_string()
            } else {
                hb.member_id.clone()
            };
            match self.members.get_mut(&id) {
                Some(m) => {
                    // A fenced member rejoining under its id has dropped its partitions.
                    m.assigned.clear();
                    m.revoking.clear();
                    m.revoke_deadline = None;
                    m.state = MemberState::Stable;
                    m.previous_epoch = -1;
                    m.epoch = 0;
                }
                None => {
                    self.members
                        .insert(id.clone(), ConsumerMember::new(id.clone(), now));
                    self.bump();
                }
            }
            Ok(id)
        } else {
            self.check_epoch(hb)
        }
    }

    /// Kafka's epoch fencing: the current epoch, or the previous one from a member that
    /// missed a response and owns nothing it was not given.
    fn check_epoch(&self, hb: &Heartbeat) -> Result<String, Refusal> {
        let Some(m) = self.members.get(&hb.member_id) else {
            return refuse(
                ResponseError::UnknownMemberId,
                format!("Member {} is not a member of the group.", hb.member_id),
            );
        };
        let fenced = || {
            refuse(
                ResponseError::FencedMemberEpoch,
                format!(
                    "The consumer group member has a smaller or larger member epoch ({}) than the one known by the group coordinator ({}).",
                    hb.member_epoch, m.epoch
                ),
            )
        };
        if hb.member_epoch > m.epoch {
            return fenced();
        }
        if hb.member_epoch < m.epoch {
            let subset = hb.owned.as_ref().is_some_and(|owned| {
                owned.iter().all(|(t, ps)| {
                    let given = m.assigned.get(t);
                    ps.iter().all(|p| given.is_some_and(|g| g.contains(p)))
                })
            });
            if hb.member_epoch != m.previous_epoch || !subset {
                return fenced();
            }
        }
        Ok(m.id.clone())
    }

    /// The topics some member subscribes to, with their ids and sizes.
    fn subscription_metadata(&self, meta: &Metadata) -> Metadata {
        let patterns = self.patterns();
        meta.iter()
            .filter(|(name, _)| {
                self.members
                    .values()
                    .any(|m| m.subscribes(name, &patterns, &self.regex_hidden))
            })
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect()
    }

    fn patterns(&self) -> BTreeMap<String, regex::Regex> {
        self.members
            .values()
            .filter_map(|m| m.regex.clone())
            .filter_map(|r| compile(&r).ok().map(|re| (r, re)))
            .collect()
    }

    /// Computes the target assignment for the current group epoch.
    fn assign(&mut self) {
        // The assignor most members asked for, or the default.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        let chosen = votes
            .iter()
            .max_by_key(|(name, n)| (**n, std::cmp::Reverse(**name)))
            .map(|(name, _)| name.to_string())
            .unwrap_or_else(|| ASSIGNORS[0].to_string());
        let patterns = self.patterns();
        let subs: assignor::Subscriptions = self
            .members
            .values()
            .map(|m| {
                let topics = self
                    .subscribed
                    .iter()
                    .filter(|(name, _)| m.subscribes(name, &patterns, &self.regex_hidden))
                    .map(|(n, t)| (n.clone(), t.clone()))
                    .collect();
                (m.id.clone(), topics)
            })
            .collect();
        self.target = if chosen == "range" {
            assignor::range(&subs)
        } else {
            assignor::uniform(&subs, &self.target)
        };
        self.assignor = chosen;
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves one member towards its target (Kafka's CurrentAssignmentBuilder).
    fn reconcile(&mut self, id: &str, owned: Option<&Partitions>, now: Instant) {
        let Some(m) = self.members.get(id) else {
            return;
        };
        match m.state {
            MemberState::Stable if m.epoch == self.assignment_epoch => return,
            MemberState::UnrevokedPartitions => {
                let still_owns = owned.is_none_or(|o| intersects(o, &m.revoking));
                if still_owns {
                    return;
                }
            }
            _ => {}
        }
        let target = self.target.get(id).cloned().unwrap_or_default();
        let held = self.held_by_others(id);
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        let mut kept = Partitions::new();
        let mut revoke = Partitions::new();
        for (t, ps) in &m.assigned {
            for p in ps {
                let dest = if target.get(t).is_some_and(|s| s.contains(p)) {
                    &mut kept
                } else {
                    &mut revoke
                };
                dest.entry(*t).or_default().insert(*p);
            }
        }
        let mut unreleased = false;
        let mut gained = kept.clone();
        for (t, ps) in &target {
            for p in ps {
                if kept.get(t).is_some_and(|s| s.contains(p)) {
                    continue;
                }
                if held.get(t).is_some_and(|s| s.contains(p)) {
                    unreleased = true;
                } else {
                    gained.entry(*t).or_default().insert(*p);
                }
            }
        }
        if !revoke.is_empty() && owned.is_none_or(|o| intersects(o, &revoke)) {
            m.state = MemberState::UnrevokedPartitions;
            m.assigned = kept;
            m.revoking = revoke;
            m.revoke_deadline = Some(now + m.rebalance_timeout);
        } else {
            m.state = if unreleased {
                MemberState::UnreleasedPartitions
            } else {
                MemberState::Stable
            };
            if m.epoch != self.assignment_epoch {
                m.previous_epoch = m.epoch;
                m.epoch = self.assignment_epoch;
            }
            m.assigned = gained;
            m.revoking.clear();
            m.revoke_deadline = None;
        }
    }

    /// Partitions assigned to, or still being revoked from, members other than `id`.
    fn held_by_others(&self, id: &str) -> Partitions {
        let mut held = Partitions::new();
        for m in self.members.values().filter(|m| m.id != id) {
            for set in [&m.assigned, &m.revoking] {
                for (t, ps) in set {
                    held.entry(*t).or_default().extend(ps.iter().copied());
                }
            }
        }
        held
    }
}

fn intersects(a: &Partitions, b: &Partitions) -> bool {
    a.iter()
        .any(|(t, ps)| b.get(t).is_some_and(|bs| ps.iter().any(|p| bs.contains(p))))
}

/// Compiles a subscription pattern as Kafka does: RE2 syntax, matching whole topic names.
pub(crate) fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            format!("SubscribedTopicRegex {pattern} is not a valid regular expression: {e}")
        })
}

#[cfg(test)]
pub(super) mod tests;
