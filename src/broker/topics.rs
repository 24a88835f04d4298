//! Topics: name, stable id, partitions and configs, persisted under
//! `<data_dir>/.strata/topics/<name>.yaml` so a restart serves the same topics with the same
//! ids. Each partition directory also carries Kafka's `partition.metadata` file.
//!
//! Crash safety: a topic's metadata file is replaced atomically and written before its
//! partition directories are created, and removed before they are deleted, so a crash midway
//! never brings back a deleted topic; leftover directories of a topic that is not there are
//! removed when a topic of the same name is created.

use super::partition::{AppendRules, Partition};
use crate::checkpoint::write_atomically;
use crate::config::{self, Config};
use crate::log::codec::Compression;
use crate::log::LogConfig;
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use uuid::Uuid;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicFile {
    name: String,
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub partition_count: i32,
    /// Configs set on the topic itself; the rest come from the broker's defaults. Changed
    /// at run time by AlterConfigs (see `set_configs`).
    configs: RwLock<BTreeMap<String, String>>,
    pub partitions: Vec<Arc<Partition>>,
    /// What every append checks, derived from the configs; recomputed when they change.
    rules: RwLock<AppendRules>,
    /// Where each partition's log starts when it has no local segment (a restored archive).
    pub start_offsets: Vec<i64>,
}

/// Kafka's rule: 1–249 characters of ASCII letters, digits, '.', '_' and '-', not "." or "..".
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(format!(
            "Topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Whether a `cleanup.policy` value (a comma-separated list) names `policy`.
pub fn policy_has(value: &str, policy: &str) -> bool {
    value.split(',').any(|p| p.trim() == policy)
}

/// Kafka refuses archiving for compacted topics (`remote.storage.enable=true` with a
/// `cleanup.policy` other than `delete`) with this message.
pub fn check_remote_storage_policy(
    configs: &BTreeMap<String, String>,
    default_policy: &str,
) -> Result<(), String> {
    let remote = configs.get("remote.storage.enable").map(String::as_str) == Some("true");
    let policy = configs
        .get("cleanup.policy")
        .map(String::as_str)
        .unwrap_or(default_policy);
    let only_delete = policy.trim().is_empty() || policy.trim() == "delete";
    if remote && !only_delete {
        return Err("Remote log storage only supports topics with cleanup.policy=delete or cleanup.policy being an empty list.".into());
    }
    Ok(())
}

pub fn validate_configs(
    configs: Vec<(String, Option<String>)>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (k, v) in configs {
        let Some(v) = v else { continue };
        let (_, kind) = config::TOPIC_CONFIGS
            .iter()
            .find(|(n, _)| *n == k)
            .ok_or_else(|| format!("Unknown topic config name: {k}"))?;
        config::check_value(&k, *kind, &v)?;
        out.insert(k, v);
    }
    Ok(out)
}

/// More partitions than this in one topic are refused: each is a directory and open files.
pub const MAX_PARTITIONS: i32 = 1 << 16;

/// Checks a CreatePartitions request as Kafka's controller does, with its messages: the
/// count must grow, and a manual assignment must give each new partition the same number
/// of replicas as the existing ones (one: this broker).
pub fn check_partition_growth(
    name: &str,
    current: i32,
    count: i32,
    assignment: Option<&[Vec<i32>]>,
    node_id: i32,
) -> Result<(), (ResponseError, String)> {
    if count == current {
        return Err((
            ResponseError::InvalidPartitions,
            format!("Topic already has {current} partition(s)."),
        ));
    }
    if count < current {
        return Err((
            ResponseError::InvalidPartitions,
            format!(
                "The topic {name} currently has {current} partition(s); {count} would not be an increase."
            ),
        ));
    }
    if count > MAX_PARTITIONS {
        return Err((
            ResponseError::InvalidPartitions,
            format!("A topic can have at most {MAX_PARTITIONS} partitions on this broker."),
        ));
    }
    let Some(assignment) = assignment else {
        return Ok(());
    };
    let invalid = |m: String| Err((ResponseError::InvalidReplicaAssignment, m));
    let additional = count - current;
    if assignment.len() != additional as usize {
        return invalid(format!(
            "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
            assignment.len()
        ));
    }
    for replicas in assignment {
        if replicas.is_empty() {
            return invalid(
                "The manual partition assignment includes an empty replica list.".into(),
            );
        }
        if let Some(b) = replicas.iter().find(|b| **b != node_id) {
            return invalid(format!(
                "The manual partition assignment includes broker {b}, but no such broker is registered."
            ));
        }
        if replicas.len() > 1 {
            return invalid(format!(
                "The manual partition assignment includes the broker {node_id} more than once."
            ));
        }
    }
    Ok(())
}

fn meta_path(config: &Config, name: &str) -> PathBuf {
    config
        .data_dir
        .join(".strata")
        .join("topics")
        .join(format!("{name}.yaml"))
}

fn partition_dir(config: &Config, name: &str, index: i32) -> PathBuf {
    config.data_dir.join(format!("{name}-{index}"))
}

impl Topic {
    /// A topic not yet on disk (what validate_only answers with).
    pub fn new_meta(
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Self {
        Self {
            name: name.to_string(),
            id,
            partition_count: partitions,
            configs: RwLock::new(configs),
            partitions: Vec::new(),
            rules: RwLock::new(AppendRules {
                max_message_bytes: 0,
                log_append_time: false,
                compression: None,
                too_few_replicas_for_acks_all: false,
                compact: false,
            }),
            start_offsets: Vec::new(),
        }
    }

    /// A config's effective value: the topic's own, else the broker default (which may
    /// itself have been changed at run time), else Kafka's default for it.
    pub fn config_value(&self, broker: &Config, key: &str) -> String {
        self.read_configs()
            .get(key)
            .cloned()
            .or_else(|| broker.props.topic_default(key))
            .or_else(|| {
                config::TOPIC_ONLY_DEFAULTS
                    .iter()
                    .find(|(t, _, _)| *t == key)
                    .map(|(_, _, d)| d.to_string())
            })
            .unwrap_or_default()
    }

    fn read_configs(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, String>> {
        self.configs.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The configs set on the topic itself.
    pub fn own_configs(&self) -> BTreeMap<String, String> {
        self.read_configs().clone()
    }

    /// The rules appends follow now.
    pub fn rules(&self) -> AppendRules {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the topic's own configs: the metadata file first (atomically, so a crash
    /// leaves the old or the new set), then what the running topic uses. Blocking.
    pub fn set_configs(
        &self,
        broker: &Config,
        configs: BTreeMap<String, String>,
    ) -> std::io::Result<()> {
        let yaml = serde_yaml::to_string(&TopicFile {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partition_count,
            configs: configs.clone(),
        })
        .map_err(std::io::Error::other)?;
        write_atomically(&meta_path(broker, &self.name), yaml.as_bytes())?;
        *self.configs.write().unwrap_or_else(|p| p.into_inner()) = configs;
        self.apply_configs(broker);
        Ok(())
    }

    /// Makes the running topic follow its configs as they are now (after a change to them
    /// or to the broker's defaults): the append rules and each log's roll settings.
    pub fn apply_configs(&self, broker: &Config) {
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = self.append_rules(broker);
        let log_config = self.log_config(broker);
        for p in &self.partitions {
            p.set_log_config(log_config.clone());
        }
    }

    fn append_rules(&self, broker: &Config) -> AppendRules {
        AppendRules {
            max_message_bytes: self.int_config(broker, "max.message.bytes").max(0) as usize,
            log_append_time: self.config_value(broker, "message.timestamp.type") == "LogAppendTime",
            compression: Compression::from_topic_config(
                &self.config_value(broker, "compression.type"),
            ),
            too_few_replicas_for_acks_all: broker.strict_replication_factor
                && self.int_config(broker, "min.insync.replicas") > 1,
            compact: self.is_compacted(broker),
        }
    }

    /// Every config with its value and whether it was set on the topic.
    pub fn all_configs(&self, broker: &Config) -> Vec<(String, String, bool)> {
        let configs = self.own_configs();
        let mut out: Vec<_> = broker
            .props
            .topic_defaults()
            .into_iter()
            .map(|(k, v)| {
                let own = configs.get(&k).cloned();
                let set = own.is_some();
                (k, own.unwrap_or(v), set)
            })
            .collect();
        for (k, v) in &configs {
            if !out.iter().any(|(n, _, _)| n == k) {
                out.push((k.clone(), v.clone(), true));
            }
        }
        out
    }

    /// Whether `cleanup.policy` includes `compact` (read anew each time: it may change).
    pub fn is_compacted(&self, broker: &Config) -> bool {
        policy_has(&self.config_value(broker, "cleanup.policy"), "compact")
    }

    /// Whether `cleanup.policy` includes `delete` (time and size retention apply).
    pub fn is_deleting(&self, broker: &Config) -> bool {
        policy_has(&self.config_value(broker, "cleanup.policy"), "delete")
    }

    /// Whether closed segments of this topic go to the archive. Compacted topics never do,
    /// as in Kafka.
    pub fn is_tiered(&self, broker: &Config) -> bool {
        !self.is_compacted(broker)
            && broker.tier.store != crate::config::TierStore::None
            && broker.props.bool("remote.log.storage.system.enable")
            && self.config_value(broker, "remote.storage.enable") == "true"
    }

    /// The topic's metadata as stored locally and in the archive.
    pub fn meta_yaml(&self) -> Result<String, serde_yaml::Error> {
        serde_yaml::to_string(&TopicFile {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partition_count,
            configs: self.own_configs(),
        })
    }

    /// A topic (not yet opened) from `meta_yaml`'s text.
    pub fn from_meta_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        let f: TopicFile = serde_yaml::from_str(text)?;
        Ok(Self::new_meta(&f.name, f.id, f.partitions, f.configs))
    }

    /// Creates the local files of a topic found in the archive; its logs start where the
    /// archive ends.
    pub fn restore(mut self, broker: &Config, start_offsets: Vec<i64>) -> std::io::Result<Self> {
        self.start_offsets = start_offsets;
        self.create(broker)
    }

    pub fn int_config(&self, broker: &Config, key: &str) -> i64 {
        self.config_value(broker, key).parse().unwrap_or(0)
    }

    fn log_config(&self, broker: &Config) -> LogConfig {
        LogConfig {
            segment_bytes: self.int_config(broker, "segment.bytes").max(14) as u64,
            segment_ms: self.int_config(broker, "segment.ms").max(1) as u64,
            index_interval_bytes: self.int_config(broker, "index.interval.bytes").max(0) as u64,
        }
    }

    fn open_partitions(self, broker: &Config) -> std::io::Result<Self> {
        self.open_partitions_from(broker, 0)
    }

    /// Opens (creating when missing) partitions `first..partition_count`.
    fn open_partitions_from(self, broker: &Config, first: i32) -> std::io::Result<Self> {
        let topic = self.with_unopened_partitions(broker, first);
        for p in &topic.partitions {
            p.load()?;
        }
        Ok(topic)
    }

    /// Partitions `first..partition_count` with their logs not opened yet (see
    /// `Partition::unopened`): a restart reads the topic's metadata only.
    fn with_unopened_partitions(mut self, broker: &Config, first: i32) -> Self {
        let log_config = self.log_config(broker);
        self.rules = RwLock::new(self.append_rules(broker));
        let mut partitions = Vec::with_capacity(self.partition_count as usize);
        for i in first..self.partition_count {
            let dir = partition_dir(broker, &self.name, i);
            partitions.push(Arc::new(Partition::unopened(
                &self.name,
                self.id,
                i,
                &dir,
                log_config.clone(),
                broker.flush == crate::config::FlushPolicy::Always,
                self.start_offsets.get(i as usize).copied().unwrap_or(0),
            )));
        }
        self.partitions = partitions;
        self
    }

    /// Writes the topic's metadata, then creates its partitions.
    pub fn create(self, broker: &Config) -> std::io::Result<Self> {
        let file = TopicFile {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partition_count,
            configs: self.own_configs(),
        };
        let yaml = serde_yaml::to_string(&file).map_err(std::io::Error::other)?;
        for i in 0..self.partition_count {
            // Leftovers of an earlier topic of the same name must not reappear.
            let dir = partition_dir(broker, &self.name, i);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
        }
        write_atomically(&meta_path(broker, &self.name), yaml.as_bytes())?;
        self.open_partitions(broker)
    }

    /// The topic with partitions added up to `count`, sharing the existing partitions.
    /// Leftover directories of an earlier topic of the same name are removed first, then the
    /// metadata is replaced atomically, then the new partitions are opened: a crash after the
    /// metadata leaves the new partitions to be created empty by the next start.
    pub fn with_partitions(&self, broker: &Config, count: i32) -> std::io::Result<Self> {
        let old = self.partition_count;
        for i in old..count {
            let dir = partition_dir(broker, &self.name, i);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
        }
        let grown = Topic::new_meta(&self.name, self.id, count, self.own_configs());
        let yaml = grown.meta_yaml().map_err(std::io::Error::other)?;
        write_atomically(&meta_path(broker, &self.name), yaml.as_bytes())?;
        // New partitions start at offset 0; the existing ones keep theirs.
        let mut grown = grown.open_partitions_from(broker, old)?;
        let mut partitions = self.partitions.clone();
        partitions.append(&mut grown.partitions);
        grown.partitions = partitions;
        grown.start_offsets = self.start_offsets.clone();
        Ok(grown)
    }

    /// Removes the metadata first (so a crash midway never resurrects the topic), then data.
    pub fn delete_files(&self, broker: &Config) -> std::io::Result<()> {
        match std::fs::remove_file(meta_path(broker, &self.name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        for p in &self.partitions {
            p.delete_files()?;
        }
        Ok(())
    }

    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        if index < 0 {
            return None;
        }
        self.partitions.get(index as usize).cloned()
    }
}

/// Kafka prints topic ids as URL-safe base64 without padding.
pub fn kafka_uuid(id: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    let mut bits: u32 = 0;
    let mut nbits = 0;
    for &b in bytes {
        bits = (bits << 8) | b as u32;
        nbits += 8;
        while nbits >= 6 {
            nbits -= 6;
            out.push(ALPHABET[((bits >> nbits) & 63) as usize] as char);
        }
    }
    if nbits > 0 {
        out.push(ALPHABET[((bits << (6 - nbits)) & 63) as usize] as char);
    }
    out
}

/// Loads every persisted topic; their partitions' logs are opened later (`Partition::load`).
pub fn load_all(config: &Config) -> anyhow::Result<Vec<Topic>> {
    let dir = config.data_dir.join(".strata").join("topics");
    let mut topics = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let file: TopicFile =
            serde_yaml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let topic = Topic::new_meta(&file.name, file.id, file.partitions, file.configs)
            .with_unopened_partitions(config, 0);
        topics.push(topic);
    }
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_topic_names_follow_kafkas_rules() {
        assert!(validate_name("orders.v1_x-y").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name(&"a".repeat(250)).is_err());
    }

    #[test]
    fn partitions_only_grow_and_manual_assignments_name_this_broker_alone() {
        let check = |cur, n, a: Option<&[Vec<i32>]>| check_partition_growth("t", cur, n, a, 0);
        assert!(check(2, 4, None).is_ok());
        assert!(check(2, 4, Some(&[vec![0], vec![0]])).is_ok());
        assert_eq!(
            check(3, 3, None),
            Err((
                ResponseError::InvalidPartitions,
                "Topic already has 3 partition(s).".into()
            ))
        );
        assert_eq!(
            check(4, 3, None),
            Err((
                ResponseError::InvalidPartitions,
                "The topic t currently has 4 partition(s); 3 would not be an increase.".into()
            ))
        );
        for bad in [
            vec![vec![0]],
            vec![vec![0], vec![1]],
            vec![vec![0], vec![]],
            vec![vec![0], vec![0, 0]],
        ] {
            let got = check(1, 3, Some(&bad));
            assert!(
                matches!(got, Err((ResponseError::InvalidReplicaAssignment, _))),
                "{bad:?} gave {got:?}"
            );
        }
    }

    #[test]
    fn added_partitions_are_persisted_and_share_the_existing_ones() {
        let dir = tempfile::tempdir().expect("tmp");
        let overrides = crate::config::Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let config = Config::load(None, overrides).expect("config");
        std::fs::create_dir_all(dir.path().join(".strata/topics")).expect("dirs");
        // A leftover directory of an earlier topic of the same name must not come back.
        std::fs::create_dir_all(dir.path().join("t-2")).expect("leftover");
        std::fs::write(dir.path().join("t-2/00000000000000000000.log"), b"junk").expect("junk");
        let topic = Topic::new_meta("t", Uuid::from_u128(5), 2, BTreeMap::new())
            .create(&config)
            .expect("create");
        let grown = topic.with_partitions(&config, 4).expect("grow");
        assert_eq!(grown.partitions.len(), 4);
        assert!(Arc::ptr_eq(&grown.partitions[0], &topic.partitions[0]));
        assert_eq!(grown.partitions[2].log_end_offset(), 0);
        assert_eq!(grown.partitions[3].index, 3);
        let loaded = load_all(&config).expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].partition_count, 4);
        assert_eq!(loaded[0].id, Uuid::from_u128(5));
    }

    #[test]
    fn topic_ids_print_as_kafka_prints_them() {
        let id = Uuid::from_u128(0);
        assert_eq!(kafka_uuid(id), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(kafka_uuid(id).len(), 22);
    }
}
