//! Configs changed at run time (AlterConfigs, IncrementalAlterConfigs): a topic's own
//! configs, this broker's and the cluster-wide dynamic defaults (KIP-226), and a group's
//! configs (KIP-848). Values are checked as Kafka checks them, persisted, then applied to the
//! running broker, so a change takes effect at once and survives a restart.
//!
//! Files: a topic's configs live in its metadata file (see `topics`); the broker, cluster
//! and group layers in `<data_dir>/.strata/dynamic-configs.yaml`, replaced atomically, so a
//! crash leaves the old or the new set. The file is written before memory changes.

use super::{topics, Broker, Topic};
use crate::config::{self, Config, DynamicLayers, Kind, KAFKA_PROPERTIES, TOPIC_CONFIGS};
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Kafka's `ConfigResource.Type` codes.
pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;
pub const GROUP: i8 = 32;

/// The configs a group may set, and the broker property each one defaults from.
pub const GROUP_CONFIGS: &[(&str, &str)] = &[
    (
        "consumer.session.timeout.ms",
        "group.consumer.session.timeout.ms",
    ),
    (
        "consumer.heartbeat.interval.ms",
        "group.consumer.heartbeat.interval.ms",
    ),
];

type Failure = (ResponseError, String);

/// Every group's own configs, by group id.
pub type GroupConfigs = BTreeMap<String, BTreeMap<String, String>>;

fn fail<T>(error: ResponseError, message: impl Into<String>) -> Result<T, Failure> {
    Err((error, message.into()))
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DynamicFile {
    #[serde(default)]
    broker: BTreeMap<String, String>,
    #[serde(default)]
    cluster: BTreeMap<String, String>,
    #[serde(default)]
    groups: BTreeMap<String, BTreeMap<String, String>>,
}

fn file_path(data_dir: &Path) -> PathBuf {
    data_dir.join(".strata").join("dynamic-configs.yaml")
}

/// What the file holds: the broker layers and every group's configs (empty when absent).
pub fn load(data_dir: &Path) -> anyhow::Result<(DynamicLayers, GroupConfigs)> {
    let path = file_path(data_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e.into()),
    };
    let f: DynamicFile =
        serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((
        DynamicLayers {
            broker: f.broker,
            cluster: f.cluster,
        },
        f.groups,
    ))
}

fn save(data_dir: &Path, layers: &DynamicLayers, groups: GroupConfigs) -> std::io::Result<()> {
    let yaml = serde_yaml::to_string(&DynamicFile {
        broker: layers.broker.clone(),
        cluster: layers.cluster.clone(),
        groups,
    })
    .map_err(std::io::Error::other)?;
    crate::checkpoint::write_atomically(&file_path(data_dir), yaml.as_bytes())
}

/// One IncrementalAlterConfigs operation (Kafka's `AlterConfigOp.OpType`).
#[derive(Clone, Debug)]
pub struct Op {
    pub name: String,
    pub op: i8,
    pub value: Option<String>,
}

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// A change to one resource's configs.
#[derive(Clone, Debug)]
pub enum Change {
    /// AlterConfigs: the given configs become the resource's whole set.
    Replace(Vec<(String, Option<String>)>),
    /// IncrementalAlterConfigs: only these keys change.
    Incremental(Vec<Op>),
}

impl Change {
    /// Kafka's checks before anything else: no key twice, no null value but for DELETE.
    fn check_shape(&self) -> Result<(), Failure> {
        let names: Vec<&str> = match self {
            Change::Replace(c) => c.iter().map(|(n, _)| n.as_str()).collect(),
            Change::Incremental(ops) => ops.iter().map(|o| o.name.as_str()).collect(),
        };
        let mut seen = std::collections::BTreeSet::new();
        if names.iter().any(|n| !seen.insert(*n)) {
            return fail(
                ResponseError::InvalidRequest,
                "Error due to duplicate config keys",
            );
        }
        let nulls: Vec<&str> = match self {
            Change::Replace(c) => c
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(n, _)| n.as_str())
                .collect(),
            Change::Incremental(ops) => ops
                .iter()
                .filter(|o| o.op != DELETE && o.value.is_none())
                .map(|o| o.name.as_str())
                .collect(),
        };
        if !nulls.is_empty() {
            return fail(
                ResponseError::InvalidRequest,
                format!("Null value not supported for : {}", nulls.join(", ")),
            );
        }
        Ok(())
    }

    /// The resource's configs after the change. `kind` tells a key's type (None: unknown),
    /// `current` what an APPEND or SUBTRACT starts from when the key is not set here.
    fn apply(
        self,
        mut configs: BTreeMap<String, String>,
        kind: &dyn Fn(&str) -> Option<Kind>,
        current: &dyn Fn(&str) -> String,
    ) -> Result<BTreeMap<String, String>, Failure> {
        let ops = match self {
            Change::Replace(c) => {
                return Ok(c
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect())
            }
            Change::Incremental(ops) => ops,
        };
        for o in ops {
            match o.op {
                SET => {
                    configs.insert(o.name, o.value.unwrap_or_default());
                }
                DELETE => {
                    configs.remove(&o.name);
                }
                APPEND | SUBTRACT => {
                    let verb = if o.op == APPEND { "APPEND" } else { "SUBTRACT" };
                    if !kind(&o.name).is_some_and(config::is_list) {
                        return fail(
                            ResponseError::InvalidConfig,
                            format!(
                                "Can't {verb} to key {} because its type is not LIST.",
                                o.name
                            ),
                        );
                    }
                    let old = configs
                        .get(&o.name)
                        .cloned()
                        .unwrap_or_else(|| current(&o.name));
                    let mut list: Vec<String> = split_list(&old);
                    let given = split_list(o.value.as_deref().unwrap_or_default());
                    if o.op == APPEND {
                        for v in given {
                            if !list.contains(&v) {
                                list.push(v);
                            }
                        }
                    } else {
                        list.retain(|v| !given.contains(v));
                    }
                    configs.insert(o.name, list.join(","));
                }
                other => {
                    return fail(
                        ResponseError::InvalidRequest,
                        format!("Unknown operation type {other}"),
                    )
                }
            }
        }
        Ok(configs)
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

fn topic_kind(name: &str) -> Option<Kind> {
    TOPIC_CONFIGS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| *k)
}

/// Broker properties Kafka lets change at run time among those Strata knows: the defaults of
/// topic configs (Kafka's `DynamicLogConfig`). Not Strata's own `remote.storage.enable`
/// default (Kafka has none): flipping it would move every topic that follows it out of the
/// archive at once, which per topic needs `remote.log.delete.on.disable`.
pub fn is_dynamic(p: &config::Property) -> bool {
    p.topic_config.is_some() && p.name != "remote.storage.enable"
}

fn dynamic_broker_kind(name: &str) -> Option<Kind> {
    KAFKA_PROPERTIES
        .iter()
        .find(|p| p.name == name && is_dynamic(p))
        .map(|p| p.kind)
}

/// Checks a topic's new configs as Kafka's `LogConfig.validate` does. Values the topic
/// already had are not checked again: CreateTopics is more lenient (e.g. a `segment.bytes`
/// below 1 MiB), and such a topic must still take other changes.
fn validate_topic(
    topic: &Topic,
    broker: &Config,
    next: &BTreeMap<String, String>,
) -> Result<(), Failure> {
    let before = topic.own_configs();
    for (k, v) in next.iter().filter(|(k, v)| before.get(*k) != Some(*v)) {
        let kind = topic_kind(k).ok_or_else(|| {
            (
                ResponseError::InvalidConfig,
                format!("Unknown topic config name: {k}"),
            )
        })?;
        config::validate_value(k, kind, v).map_err(|m| (ResponseError::InvalidConfig, m))?;
    }
    let flag = |k: &str| {
        next.get(k)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    };
    let enabled_next = match next.get("remote.storage.enable") {
        Some(v) => v.trim().eq_ignore_ascii_case("true"),
        None => {
            broker
                .props
                .topic_default("remote.storage.enable")
                .as_deref()
                == Some("true")
        }
    };
    if next.contains_key("remote.storage.enable")
        && enabled_next
        && !broker.props.bool("remote.log.storage.system.enable")
    {
        return fail(
            ResponseError::InvalidConfig,
            "Tiered Storage functionality is disabled in the broker. Topic cannot be configured with remote log storage.",
        );
    }
    if topic.is_tiered(broker) && !enabled_next && !flag("remote.log.delete.on.disable") {
        return fail(
            ResponseError::InvalidConfig,
            "It is invalid to disable remote storage without deleting remote data. If you want to keep the remote data and turn to read only, please set `remote.storage.enable=true,remote.log.copy.disable=true`. If you want to disable remote storage and delete all remote data, please set `remote.storage.enable=false,remote.log.delete.on.disable=true`.",
        );
    }
    // As Kafka: a topic with remote storage explicitly on cannot be compacted. A topic archived
    // only by the broker's default stops being archived when it becomes compacted.
    let default_policy = broker
        .props
        .topic_default("cleanup.policy")
        .unwrap_or_default();
    topics::check_remote_storage_policy(next, &default_policy)
        .map_err(|m| (ResponseError::InvalidConfig, m))?;
    Ok(())
}

/// Checks the broker layer's new configs as Kafka's `DynamicBrokerConfig.validate` does; its
/// failures are INVALID_REQUEST (KAFKA-13609).
fn validate_broker(next: &BTreeMap<String, String>) -> Result<(), Failure> {
    let fixed: Vec<&str> = next
        .keys()
        .filter(|k| dynamic_broker_kind(k).is_none())
        .map(String::as_str)
        .collect();
    if !fixed.is_empty() {
        return fail(
            ResponseError::InvalidRequest,
            format!(
                "Cannot update these configs dynamically: [{}]",
                fixed.join(", ")
            ),
        );
    }
    for (k, v) in next {
        if let Some(kind) = dynamic_broker_kind(k) {
            config::validate_value(k, kind, v).map_err(|m| (ResponseError::InvalidRequest, m))?;
        }
    }
    Ok(())
}

/// Checks a group's new configs as Kafka's `GroupConfig.validate` does: known keys, and
/// values within the broker's bounds.
fn validate_group(broker: &Config, next: &BTreeMap<String, String>) -> Result<(), Failure> {
    for (k, v) in next {
        if !GROUP_CONFIGS.iter().any(|(n, _)| n == k) {
            return fail(
                ResponseError::InvalidConfig,
                format!("Unknown group config name: {k}"),
            );
        }
        config::validate_value(k, Kind::Int, v).map_err(|m| (ResponseError::InvalidConfig, m))?;
    }
    let value = |k: &str, broker_default: &str| -> i64 {
        next.get(k)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| broker.props.int(broker_default))
    };
    let session = value(
        "consumer.session.timeout.ms",
        "group.consumer.session.timeout.ms",
    );
    let heartbeat = value(
        "consumer.heartbeat.interval.ms",
        "group.consumer.heartbeat.interval.ms",
    );
    let props = &broker.props;
    let checks = [
        (
            heartbeat < props.int("group.consumer.min.heartbeat.interval.ms"),
            "consumer.heartbeat.interval.ms must be greater than or equal to group.consumer.min.heartbeat.interval.ms",
        ),
        (
            heartbeat > props.int("group.consumer.max.heartbeat.interval.ms"),
            "consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms",
        ),
        (
            session < props.int("group.consumer.min.session.timeout.ms"),
            "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms",
        ),
        (
            session > props.int("group.consumer.max.session.timeout.ms"),
            "consumer.session.timeout.ms must be less than or equal to group.consumer.max.session.timeout.ms",
        ),
        (
            session <= heartbeat,
            "consumer.session.timeout.ms must be greater than consumer.heartbeat.interval.ms",
        ),
    ];
    match checks.into_iter().find(|(bad, _)| *bad) {
        Some((_, message)) => fail(ResponseError::InvalidConfig, message),
        None => Ok(()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "persisting configs failed");
            fail(
                ResponseError::KafkaStorageError,
                format!("persisting configs: {e}"),
            )
        }
        Err(e) => fail(ResponseError::UnknownServerError, e.to_string()),
    }
}

impl Broker {
    /// Loads the persisted broker, cluster and group configs (at start-up, before topics).
    pub(super) fn load_dynamic_configs(&self) -> anyhow::Result<()> {
        let (layers, groups) = load(&self.config.data_dir)?;
        self.config.props.set_dynamic(layers);
        for (group, configs) in groups {
            self.groups.set_group_configs(&group, configs);
        }
        Ok(())
    }

    /// Changes one resource's configs (or, with `validate_only`, checks that it could).
    #[tracing::instrument(name = "alter_configs", skip(self, change), fields(resource_type, name = %name))]
    pub async fn alter_configs(
        &self,
        resource_type: i8,
        name: &str,
        change: Change,
        validate_only: bool,
    ) -> Result<(), Failure> {
        change.check_shape()?;
        // One change at a time, and none while topics come and go.
        let _admin = self.admin.lock().await;
        match resource_type {
            TOPIC => self.alter_topic(name, change, validate_only).await,
            BROKER => self.alter_broker(name, change, validate_only).await,
            GROUP => self.alter_group(name, change, validate_only).await,
            other => fail(
                ResponseError::InvalidRequest,
                format!("Unknown resource type {other}"),
            ),
        }
    }

    async fn alter_topic(
        &self,
        name: &str,
        change: Change,
        validate_only: bool,
    ) -> Result<(), Failure> {
        let Some(topic) = self.topic(name) else {
            return fail(
                ResponseError::UnknownTopicOrPartition,
                format!("The topic '{name}' does not exist."),
            );
        };
        let next = change.apply(topic.own_configs(), &topic_kind, &|k| {
            topic.config_value(&self.config, k)
        })?;
        validate_topic(&topic, &self.config, &next)?;
        if validate_only {
            return Ok(());
        }
        let was_tiered = topic.is_tiered(&self.config);
        let (t, config, n) = (topic.clone(), self.config.clone(), next);
        blocking(move || t.set_configs(&config, n)).await?;
        tracing::info!(topic = name, configs = ?topic.own_configs(), "topic configs changed");
        self.after_topic_change(&topic, was_tiered).await;
        Ok(())
    }

    /// Restarts a topic's loops when it moved into or out of the archive; re-records its
    /// metadata in the archive so that a restore brings back the new configs. Archiving
    /// turned off (with `remote.log.delete.on.disable=true`) deletes the archived data before
    /// answering, so that turning it on again cannot race with the deletion.
    async fn after_topic_change(&self, topic: &Arc<Topic>, was_tiered: bool) {
        let tiered = topic.is_tiered(&self.config);
        if was_tiered && !tiered {
            self.maintenance.stop_topic(topic.id);
            for p in &topic.partitions {
                p.clear_manifest();
            }
            if let Some(tier) = self.tier.clone() {
                if let Err(e) = tier.delete_topic(&topic.name, topic.id).await {
                    tracing::warn!(topic = %topic.name, error = %e, "deleting the topic's archived objects failed");
                }
            }
        }
        if tiered || tiered != was_tiered {
            self.maintenance.stop_topic(topic.id);
            super::maintenance::start_topic(self, topic);
        }
        // Retention (local or archived) looks again now rather than at its next interval.
        for p in &topic.partitions {
            p.rolled.notify_waiters();
        }
    }

    async fn alter_broker(
        &self,
        name: &str,
        change: Change,
        validate_only: bool,
    ) -> Result<(), Failure> {
        let per_broker = !name.is_empty();
        if per_broker {
            match name.parse::<i32>() {
                Err(_) => {
                    return fail(
                        ResponseError::InvalidRequest,
                        format!("Node id must be an integer, but it is: {name}"),
                    )
                }
                Ok(id) if id != self.node_id => {
                    return fail(
                        ResponseError::InvalidRequest,
                        format!(
                            "Unexpected broker id, expected {}, but received {name}",
                            self.node_id
                        ),
                    )
                }
                Ok(_) => {}
            }
        }
        let mut layers = self.config.props.dynamic();
        let layer = if per_broker {
            &mut layers.broker
        } else {
            &mut layers.cluster
        };
        if let Change::Incremental(ops) = &change {
            if let Some(o) = ops.iter().find(|o| {
                matches!(o.op, APPEND | SUBTRACT)
                    && !dynamic_broker_kind(&o.name).is_some_and(config::is_list)
            }) {
                let verb = if o.op == APPEND { "append" } else { "subtract" };
                return fail(
                    ResponseError::InvalidConfig,
                    format!(
                        "Config value {verb} is not allowed for config key: {}",
                        o.name
                    ),
                );
            }
        }
        let props = self.config.props.clone();
        let next = change.apply(layer.clone(), &dynamic_broker_kind, &|k| props.get(k))?;
        validate_broker(&next)?;
        if validate_only {
            return Ok(());
        }
        *layer = next;
        let (dir, l, groups) = (
            self.config.data_dir.clone(),
            layers.clone(),
            self.groups.all_group_configs(),
        );
        let tiered: Vec<(Arc<Topic>, bool)> = self
            .topics()
            .into_iter()
            .map(|t| {
                let was = t.is_tiered(&self.config);
                (t, was)
            })
            .collect();
        blocking(move || save(&dir, &l, groups)).await?;
        self.config.props.set_dynamic(layers);
        tracing::info!(broker = name, "dynamic broker configs changed");
        // Topics without their own value now follow the new default.
        for (t, was) in tiered {
            t.apply_configs(&self.config);
            if t.is_tiered(&self.config) != was {
                self.after_topic_change(&t, was).await;
            } else {
                for p in &t.partitions {
                    p.rolled.notify_waiters();
                }
            }
        }
        Ok(())
    }

    async fn alter_group(
        &self,
        name: &str,
        change: Change,
        validate_only: bool,
    ) -> Result<(), Failure> {
        if name.is_empty() {
            return fail(
                ResponseError::InvalidRequest,
                "Group name must not be empty",
            );
        }
        let kind = |k: &str| {
            GROUP_CONFIGS
                .iter()
                .any(|(n, _)| *n == k)
                .then_some(Kind::Int)
        };
        let props = self.config.props.clone();
        let next = change.apply(self.groups.group_configs(name), &kind, &|k| {
            GROUP_CONFIGS
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, b)| props.get(b))
                .unwrap_or_default()
        })?;
        validate_group(&self.config, &next)?;
        if validate_only {
            return Ok(());
        }
        let mut groups = self.groups.all_group_configs();
        if next.is_empty() {
            groups.remove(name);
        } else {
            groups.insert(name.to_string(), next.clone());
        }
        let (dir, layers) = (self.config.data_dir.clone(), self.config.props.dynamic());
        blocking(move || save(&dir, &layers, groups)).await?;
        self.groups.set_group_configs(name, next);
        tracing::info!(group = name, "group configs changed");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
