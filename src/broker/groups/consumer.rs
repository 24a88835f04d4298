//! The consumer group protocol of KIP-848: the broker computes a target assignment with a
//! server-side assignor and moves each member towards it one epoch at a time, revoking
//! partitions before anyone else is given them.

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

/// The assignors this broker offers, the first being the default (Kafka's order).
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

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

    /// Topic names this member subscribes to, by list and by pattern.
    fn subscribes(&self, topic: &str, patterns: &BTreeMap<String, regex::Regex>) -> bool {
        self.topics.iter().any(|t| t == topic)
            || self
                .regex
                .as_ref()
                .and_then(|r| patterns.get(r))
                .is_some_and(|re| re.is_match(topic))
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
            .filter(|(name, _)| self.members.values().any(|m| m.subscribes(name, &patterns)))
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
        let subs: BTreeMap<String, Vec<(String, TopicMeta)>> = self
            .members
            .values()
            .map(|m| {
                let topics = self
                    .subscribed
                    .iter()
                    .filter(|(name, _)| m.subscribes(name, &patterns))
                    .map(|(n, t)| (n.clone(), t.clone()))
                    .collect();
                (m.id.clone(), topics)
            })
            .collect();
        self.target = if chosen == "range" {
            range(&subs)
        } else {
            uniform(&subs, &self.target)
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
fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            format!("SubscribedTopicRegex {pattern} is not a valid regular expression: {e}")
        })
}

/// Each topic's partitions split into contiguous ranges over its subscribers, sorted by
/// member id, so co-partitioned topics line up.
fn range(subs: &BTreeMap<String, Vec<(String, TopicMeta)>>) -> BTreeMap<String, Partitions> {
    let mut out: BTreeMap<String, Partitions> = subs
        .keys()
        .map(|m| (m.clone(), Partitions::new()))
        .collect();
    let mut topics: BTreeMap<&str, (&TopicMeta, Vec<&str>)> = BTreeMap::new();
    for (member, ts) in subs {
        for (name, t) in ts {
            topics
                .entry(name)
                .or_insert_with(|| (t, Vec::new()))
                .1
                .push(member);
        }
    }
    for (t, members) in topics.values() {
        let n = members.len() as i32;
        let (per, extra) = (t.partitions / n, t.partitions % n);
        let mut next = 0;
        for (i, member) in members.iter().enumerate() {
            let count = per + i32::from((i as i32) < extra);
            let set: BTreeSet<i32> = (next..next + count).collect();
            next += count;
            if let Some(a) = out.get_mut(*member) {
                if !set.is_empty() {
                    a.insert(t.id, set);
                }
            }
        }
    }
    out
}

/// A balanced assignment that keeps as much of the previous one as balance allows.
fn uniform(
    subs: &BTreeMap<String, Vec<(String, TopicMeta)>>,
    previous: &BTreeMap<String, Partitions>,
) -> BTreeMap<String, Partitions> {
    let mut eligible: BTreeMap<(Uuid, i32), Vec<&str>> = BTreeMap::new();
    for (member, ts) in subs {
        for (_, t) in ts {
            for p in 0..t.partitions {
                eligible.entry((t.id, p)).or_default().push(member);
            }
        }
    }
    let members = subs.len().max(1);
    let ceiling = eligible.len().div_ceil(members);
    let mut owner: BTreeMap<(Uuid, i32), &str> = BTreeMap::new();
    let mut count: BTreeMap<&str, usize> = subs.keys().map(|m| (m.as_str(), 0)).collect();
    // Keep previous owners while they stay subscribed and under the ceiling.
    for (member, parts) in previous {
        let Some(member) = subs.get_key_value(member).map(|(k, _)| k.as_str()) else {
            continue;
        };
        for (t, ps) in parts {
            for p in ps {
                let key = (*t, *p);
                let ok = eligible.get(&key).is_some_and(|e| e.contains(&member));
                if ok && !owner.contains_key(&key) && count[member] < ceiling {
                    owner.insert(key, member);
                    *count.entry(member).or_default() += 1;
                }
            }
        }
    }
    // Give the rest to the least loaded eligible member, scarcest partitions first.
    let mut free: Vec<(&(Uuid, i32), &Vec<&str>)> = eligible
        .iter()
        .filter(|(k, _)| !owner.contains_key(*k))
        .collect();
    free.sort_by_key(|(k, e)| (e.len(), **k));
    for (key, candidates) in free {
        if let Some(m) = candidates.iter().min_by_key(|m| (count[**m], **m)) {
            owner.insert(*key, m);
            *count.entry(m).or_default() += 1;
        }
    }
    // Even out: move a partition from a member with two more than a subscriber of it.
    for _ in 0..eligible.len() {
        let mut moved = false;
        let keys: Vec<(Uuid, i32)> = owner.keys().copied().collect();
        for key in keys {
            let from = owner[&key];
            let Some(to) = eligible[&key]
                .iter()
                .copied()
                .filter(|m| count[*m] + 1 < count[from])
                .min_by_key(|m| (count[*m], *m))
            else {
                continue;
            };
            owner.insert(key, to);
            *count.entry(from).or_default() -= 1;
            *count.entry(to).or_default() += 1;
            moved = true;
        }
        if !moved {
            break;
        }
    }
    let mut out: BTreeMap<String, Partitions> = subs
        .keys()
        .map(|m| (m.clone(), Partitions::new()))
        .collect();
    for ((t, p), m) in owner {
        if let Some(a) = out.get_mut(m) {
            a.entry(t).or_default().insert(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(topics: &[(&str, i32)]) -> Metadata {
        topics
            .iter()
            .map(|(n, p)| {
                (
                    n.to_string(),
                    TopicMeta {
                        id: Uuid::new_v5(&Uuid::NAMESPACE_OID, n.as_bytes()),
                        partitions: *p,
                    },
                )
            })
            .collect()
    }

    fn join(id: &str, topics: &[&str]) -> Heartbeat {
        Heartbeat {
            version: 1,
            member_id: id.into(),
            member_epoch: 0,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 30_000,
            topics: Some(topics.iter().map(|s| s.to_string()).collect()),
            regex: None,
            assignor: None,
            owned: Some(Partitions::new()),
            client_id: "c".into(),
            client_host: "h".into(),
        }
    }

    fn beat(id: &str, epoch: i32, owned: &Partitions) -> Heartbeat {
        Heartbeat {
            member_epoch: epoch,
            rebalance_timeout_ms: -1,
            topics: None,
            owned: Some(owned.clone()),
            ..join(id, &[])
        }
    }

    fn count(p: &Partitions) -> usize {
        p.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn a_second_member_gets_partitions_only_after_the_first_revokes_them() {
        let m = meta(&[("t", 6)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::default();
        let a = g.heartbeat(join("a", &["t"]), &m, now).unwrap();
        let a_owned = a.assignment.unwrap();
        assert_eq!(count(&a_owned), 6);
        let b = g.heartbeat(join("b", &["t"]), &m, now).unwrap();
        assert_eq!(
            count(b.assignment.as_ref().unwrap()),
            0,
            "nothing is free yet"
        );
        assert_eq!(g.state_name(), "Reconciling");
        // a is told to keep three; its epoch stays until it confirms.
        let a2 = g.heartbeat(beat("a", a.epoch, &a_owned), &m, now).unwrap();
        let kept = a2.assignment.unwrap();
        assert_eq!(count(&kept), 3);
        assert_eq!(a2.epoch, a.epoch);
        let a3 = g.heartbeat(beat("a", a.epoch, &kept), &m, now).unwrap();
        assert!(a3.epoch > a.epoch);
        let b2 = g
            .heartbeat(beat("b", b.epoch, &Partitions::new()), &m, now)
            .unwrap();
        let b_owned = b2.assignment.unwrap();
        assert_eq!(count(&b_owned), 3);
        assert!(!intersects(&b_owned, &kept));
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn wrong_epochs_are_fenced_and_unknown_members_refused() {
        let m = meta(&[("t", 2)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::default();
        let a = g.heartbeat(join("a", &["t"]), &m, now).unwrap();
        let owned = a.assignment.unwrap();
        let e = g.heartbeat(beat("a", a.epoch + 5, &owned), &m, now).err();
        assert_eq!(e.map(|e| e.0), Some(ResponseError::FencedMemberEpoch));
        let e = g.heartbeat(beat("zz", 3, &owned), &m, now).err();
        assert_eq!(e.map(|e| e.0), Some(ResponseError::UnknownMemberId));
    }

    #[test]
    fn uniform_is_balanced_and_sticky_and_range_is_contiguous() {
        let m = meta(&[("a", 4), ("b", 3)]);
        let subs: BTreeMap<String, Vec<(String, TopicMeta)>> = ["m1", "m2", "m3"]
            .iter()
            .map(|id| {
                (
                    id.to_string(),
                    m.iter().map(|(n, t)| (n.clone(), t.clone())).collect(),
                )
            })
            .collect();
        let first = uniform(&subs, &BTreeMap::new());
        let sizes: Vec<usize> = first.values().map(count).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 7);
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        let mut two = subs.clone();
        two.remove("m3");
        let second = uniform(&two, &first);
        for id in ["m1", "m2"] {
            for (t, ps) in &first[id] {
                assert!(
                    ps.iter().all(|p| second[id][t].contains(p)),
                    "{id} kept its partitions"
                );
            }
        }
        let r = range(&subs);
        let ida = m["a"].id;
        assert_eq!(r["m1"][&ida], BTreeSet::from([0, 1]));
        assert_eq!(r["m2"][&ida], BTreeSet::from([2]));
    }

    #[test]
    fn a_restarted_static_member_takes_over_its_assignment() {
        let m = meta(&[("t", 4)]);
        let now = Instant::now();
        let mut g = ConsumerGroup::default();
        let mut j = join("a", &["t"]);
        j.instance_id = Some("i1".into());
        let a = g.heartbeat(j, &m, now).unwrap();
        let mut j2 = join("a2", &["t"]);
        j2.instance_id = Some("i1".into());
        let e = g.heartbeat(j2, &m, now).err();
        assert_eq!(e.map(|e| e.0), Some(ResponseError::UnreleasedInstanceId));
        let mut leave = beat("a", LEAVE_STATIC_EPOCH, &Partitions::new());
        leave.instance_id = Some("i1".into());
        g.heartbeat(leave, &m, now).unwrap();
        let mut j3 = join("a3", &["t"]);
        j3.instance_id = Some("i1".into());
        let back = g.heartbeat(j3, &m, now).unwrap();
        assert_eq!(back.epoch, a.epoch);
        assert_eq!(back.assignment, a.assignment);
    }
}
