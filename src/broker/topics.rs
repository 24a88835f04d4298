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

    /// Whether closed segments of this topic go to the archive.
    pub fn is_tiered(&self, broker: &Config) -> bool {
        broker.tier.store != crate::config::TierStore::None
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

    fn open_partitions(mut self, broker: &Config) -> std::io::Result<Self> {
        let log_config = self.log_config(broker);
        self.rules = RwLock::new(self.append_rules(broker));
        let mut partitions = Vec::with_capacity(self.partition_count as usize);
        for i in 0..self.partition_count {
            let dir = partition_dir(broker, &self.name, i);
            std::fs::create_dir_all(&dir)?;
            let pm = dir.join("partition.metadata");
            if !pm.exists() {
                write_atomically(
                    &pm,
                    format!("version: 0\ntopic_id: {}\n", kafka_uuid(self.id)).as_bytes(),
                )?;
            }
            partitions.push(Arc::new(Partition::open(
                &self.name,
                self.id,
                i,
                &dir,
                log_config.clone(),
                broker.flush == crate::config::FlushPolicy::Always,
                self.start_offsets.get(i as usize).copied().unwrap_or(0),
            )?));
        }
        self.partitions = partitions;
        Ok(self)
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

/// Loads every persisted topic and opens its partitions.
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
        let started = std::time::Instant::now();
        let topic = Topic::new_meta(&file.name, file.id, file.partitions, file.configs)
            .open_partitions(config)?;
        tracing::info!(topic = %topic.name, partitions = topic.partition_count, elapsed_ms = started.elapsed().as_millis() as u64, "loaded topic");
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
    fn topic_ids_print_as_kafka_prints_them() {
        let id = Uuid::from_u128(0);
        assert_eq!(kafka_uuid(id), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(kafka_uuid(id).len(), 22);
    }
}
