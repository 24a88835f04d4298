//! The group coordinator of a single broker: the map of groups, what of them is persisted,
//! the expiry loop, and the dispatch of each request to the protocol the group speaks —
//! the classic JoinGroup/SyncGroup protocol (`classic`) or KIP-848's consumer protocol
//! (`consumer`, with the server-side assignors in `assignor`). Committed offsets are in
//! `offsets`.
//!
//! # Files
//! One YAML file per group under `<data_dir>/.strata/groups/` (format in `offsets`): its
//! committed offsets, its protocol type and when it became empty. It is written, off the
//! async threads, before a change to it is answered, and removed when the group is
//! deleted or expires. Members and rebalances live in memory only.
//!
//! # Crash consistency
//! Each file is replaced whole by a rename (see `state_files`), so a crash leaves a group's
//! previous or new file, never a mix; a change answered before the crash is on disk
//! (fsynced too with `flush: always`). After a restart every group is empty: members
//! rejoin, and the offsets' retention counts from when the group was last seen empty.

mod assignor;
pub(crate) mod classic;
pub mod consumer;
mod offsets;

pub use classic::{GroupState, JoinRequest, JoinResult, Member};
pub use offsets::CommittedOffset;

use super::state_files::StateFiles;
use crate::clock::now_ms;
use kafka_protocol::error::ResponseError;
use offsets::OffsetsFile;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Which protocol a group speaks; an empty group may switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    Classic,
    Consumer,
}

impl GroupKind {
    /// The states a group of this protocol can be in, as Kafka names them (`/metrics`
    /// writes one gauge per state).
    pub fn states(self) -> &'static [&'static str] {
        match self {
            GroupKind::Classic => &[
                "Empty",
                "PreparingRebalance",
                "CompletingRebalance",
                "Stable",
            ],
            GroupKind::Consumer => &["Empty", "Assigning", "Reconciling", "Stable"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GroupKind::Classic => "classic",
            GroupKind::Consumer => "consumer",
        }
    }
}

/// One group as `/metrics` shows it.
pub struct GroupMetrics {
    pub id: String,
    pub kind: GroupKind,
    pub state: &'static str,
    pub members: usize,
    /// (topic, partition, committed offset).
    pub offsets: Vec<(String, i32, i64)>,
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

/// One group: the classic protocol's state (`state` to `changed`, driven by `classic`),
/// the consumer protocol's (`consumer`), and the committed offsets both share (`offsets`).
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, not yet joined, with when they are
    /// forgotten (a session timeout later, as Kafka drops a pending member).
    pending: HashMap<String, Instant>,
    /// Members that have joined during the current PreparingRebalance.
    joined: HashSet<String>,
    /// When the current join phase ends whether or not everyone rejoined.
    deadline: Option<Instant>,
    pub offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
    /// Wakes joins and syncs parked until the rebalance moves on.
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
            pending: HashMap::new(),
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
}

/// The groups of this broker. One std `Mutex` over the map suffices: every critical
/// section is short and never held across an await or a file write.
pub struct GroupCoordinator {
    files: StateFiles,
    groups: Mutex<HashMap<String, Group>>,
    pub settings: GroupSettings,
    next_retention_check: Mutex<Instant>,
    /// Configs set on single groups (IncrementalAlterConfigs on a GROUP resource), by group
    /// id; they win over `settings` for that group. Persisted by the broker.
    overrides: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

/// How often the expiry loop looks at sessions and rebalance deadlines.
const EXPIRY_TICK: Duration = Duration::from_millis(250);

impl GroupCoordinator {
    pub fn open(dir: PathBuf, settings: GroupSettings) -> std::io::Result<Self> {
        let files = StateFiles::open(dir, settings.fsync)?;
        let groups = files
            .load::<OffsetsFile>()?
            .into_iter()
            .map(|file| (file.group.clone(), Group::from_file(file)))
            .collect();
        Ok(Self {
            files,
            groups: Mutex::new(groups),
            next_retention_check: Mutex::new(Instant::now() + settings.offsets_retention_check),
            settings,
            overrides: Mutex::new(HashMap::new()),
        })
    }

    /// The configs set on one group (empty when none are).
    pub fn group_configs(&self, group_id: &str) -> BTreeMap<String, String> {
        self.overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(group_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the configs set on one group; an empty set removes them.
    pub fn set_group_configs(&self, group_id: &str, configs: BTreeMap<String, String>) {
        let mut all = self.overrides.lock().unwrap_or_else(|p| p.into_inner());
        if configs.is_empty() {
            all.remove(group_id);
        } else {
            all.insert(group_id.to_string(), configs);
        }
    }

    /// Every group's own configs, as persisted.
    pub fn all_group_configs(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn group_ms(&self, group_id: &str, name: &str) -> Option<Duration> {
        self.overrides
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(group_id)
            .and_then(|c| c.get(name))
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_millis)
    }

    /// A consumer group's session timeout: its own `consumer.session.timeout.ms`, else the
    /// broker's `group.consumer.session.timeout.ms`.
    pub fn consumer_session_timeout(&self, group_id: &str) -> Duration {
        self.group_ms(group_id, "consumer.session.timeout.ms")
            .unwrap_or(self.settings.consumer_session_timeout)
    }

    /// A consumer group's heartbeat interval, likewise.
    pub fn consumer_heartbeat_interval(&self, group_id: &str) -> Duration {
        self.group_ms(group_id, "consumer.heartbeat.interval.ms")
            .unwrap_or(self.settings.consumer_heartbeat_interval)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a group's file as it is now, or removes it once the group is gone; returns
    /// once the file is in place.
    async fn persist(&self, group_id: &str) -> Result<(), ResponseError> {
        self.files
            .write(group_id, || self.lock().get(group_id).map(Group::file))
            .await
    }

    /// Deletes groups with no members, with their committed offsets (Kafka's DeleteGroups).
    pub async fn delete(&self, group_id: &str) -> Result<(), ResponseError> {
        let removed = {
            let mut groups = self.lock();
            match groups.get(group_id) {
                None => return Err(ResponseError::GroupIdNotFound),
                Some(g) if !g.is_empty() => return Err(ResponseError::NonEmptyGroup),
                Some(_) => groups.remove(group_id),
            }
        };
        if let Err(e) = self.persist(group_id).await {
            // Its file is still there (a full disk): so is the group, until a retry.
            if let Some(group) = removed {
                self.lock().entry(group_id.to_string()).or_insert(group);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Forgets a deleted topic's committed offsets in every group. Not async, for the
    /// topic deletion that calls it; the files are written before it returns.
    pub async fn forget_topic(&self, topic: &str) {
        let touched: Vec<String> = {
            let mut groups = self.lock();
            groups
                .values_mut()
                .filter_map(|g| g.offsets.remove(topic).map(|_| g.id.clone()))
                .collect()
        };
        for group in touched {
            // A failure is logged; the offsets are gone from memory either way.
            let _ = self
                .files
                .write(&group, || self.lock().get(&group).map(Group::file))
                .await;
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

    /// Every group as `/metrics` shows it, copied under the lock (no file is read).
    pub fn metrics(&self) -> Vec<GroupMetrics> {
        let mut out: Vec<GroupMetrics> = self
            .lock()
            .values()
            .map(|g| GroupMetrics {
                id: g.id.clone(),
                kind: g.kind,
                state: g.state_name(),
                members: g.members.len() + g.consumer.members.len(),
                offsets: g
                    .offsets
                    .iter()
                    .flat_map(|(topic, parts)| {
                        parts
                            .iter()
                            .map(move |(p, c)| (topic.clone(), *p, c.offset))
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
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
    pub async fn expire(&self, now: Instant) {
        let mut to_write = Vec::new();
        {
            let overrides = self.all_group_configs();
            let mut groups = self.lock();
            for group in groups.values_mut() {
                group.expire_classic(now);
                let session = overrides
                    .get(&group.id)
                    .and_then(|c| c.get("consumer.session.timeout.ms"))
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_millis)
                    .unwrap_or(self.settings.consumer_session_timeout);
                for id in group.consumer.expired(now, session) {
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
            // A failure is logged; the next change to the group writes its file again.
            let _ = self.persist(&id).await;
        }
    }

    /// Ticks `expire` forever. Spawned once by the broker, which aborts it at shutdown.
    pub async fn run_expiry(&self) {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        loop {
            tick.tick().await;
            self.expire(Instant::now()).await;
        }
    }
}
