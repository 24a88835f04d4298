//! Configuration: one YAML file (every key defaulted), then environment variables and flags.
//! Broker and topic-default settings use Kafka's own property names under `kafka:`, so a
//! Kafka user's knowledge (and `--override name=value`) carries over.
//!
//! Reads the YAML file; writes no files.

pub mod connections;
pub mod listeners;
mod properties;
mod secrets;
pub use connections::ConnectionSettings;
pub use listeners::ListenerConfig;
pub use properties::{
    check_value, is_list, listener_property, split_listener_prefix, validate_value, Kind, Property,
    KAFKA_PROPERTIES, TOPIC_CONFIGS, TOPIC_ONLY_DEFAULTS,
};

use secrets::resolve_references;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// When acknowledged writes reach the disk.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlushPolicy {
    /// fsync before every acknowledgement; concurrent producers share one fsync.
    Always,
    /// fsync every `flush_interval_ms` in the background.
    Interval,
    /// Leave it to the operating system's page cache (Kafka's default).
    Os,
}

impl std::str::FromStr for FlushPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(Self::Always),
            "interval" => Ok(Self::Interval),
            "os" => Ok(Self::Os),
            other => Err(format!(
                "flush must be always, interval or os, not {other:?}"
            )),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "defaults::listen")]
    pub listen: String,
    #[serde(default = "defaults::advertised_listener")]
    pub advertised_listener: String,
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "defaults::flush")]
    pub flush: FlushPolicy,
    #[serde(default = "defaults::flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// The key `kafka.max.connections` replaced; still read, so that older files load.
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default = "defaults::cluster_id")]
    pub cluster_id: String,
    /// The HTTP listener (`/metrics`, `/health`, `/ready`): an address or `none`. Unset, it
    /// is `defaults::HTTP_LISTEN`, and a port already taken there only earns a warning.
    #[serde(default)]
    pub http_listen: Option<String>,
    /// Refuse topics that ask for more than one replica, as a one-broker Kafka does. Off
    /// by default: apps written for a cluster create topics with replication factor 3, and
    /// a single broker keeps one replica of them.
    #[serde(default)]
    pub strict_replication_factor: bool,
    /// Where closed segments are archived.
    #[serde(default)]
    pub tier: TierConfig,
    /// SCRAM users created at start if they have no credential for that mechanism yet, as
    /// Kafka's `kafka-storage format --add-scram` does.
    #[serde(default)]
    pub scram_users: Vec<ScramUser>,
    /// Kafka broker properties by their Kafka names; see `KAFKA_PROPERTIES`.
    #[serde(default)]
    pub kafka: BTreeMap<String, serde_yaml::Value>,
    #[serde(skip)]
    pub props: BrokerProps,
    /// Every listener to bind, from `listeners` or else `listen`.
    #[serde(skip)]
    pub listeners: Vec<ListenerConfig>,
    /// Connection limits, the idle timeout and the request memory bound.
    #[serde(skip)]
    pub connections: ConnectionSettings,
}

/// One entry of `scram_users`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScramUser {
    pub name: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: String,
    pub password: String,
    /// Kafka's default for `--add-scram` is 4096.
    #[serde(default = "defaults::scram_iterations")]
    pub iterations: i32,
}

impl std::fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUser")
            .field("name", &self.name)
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Which object store holds the archive.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum TierStore {
    /// No archive: segments stay local.
    None,
    /// A directory on local disk (object_store's local file system).
    #[default]
    Local,
    /// S3 or any S3-compatible server.
    S3,
}

/// The object store block. Credentials fall back to the standard AWS environment variables.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    #[serde(default)]
    pub store: TierStore,
    /// For `store: local`; default `<data_dir>/tier`.
    #[serde(default)]
    pub local_dir: Option<PathBuf>,
    #[serde(default)]
    pub bucket: Option<String>,
    /// Key prefix of everything Strata writes.
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// For S3-compatible servers, e.g. `http://127.0.0.1:9000`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible servers want.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Allow plain `http://` endpoints.
    #[serde(default)]
    pub allow_http: Option<bool>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Local disk cache for chunks read from the archive.
    #[serde(default)]
    pub cache_bytes: Option<u64>,
    /// Memory for the offset indexes of remote segments (default 16 MiB).
    #[serde(default)]
    pub index_cache_bytes: Option<u64>,
}

pub mod defaults {
    use super::FlushPolicy;
    use std::path::PathBuf;
    pub fn listen() -> String {
        "0.0.0.0:9092".into()
    }
    pub fn advertised_listener() -> String {
        "localhost:9092".into()
    }
    pub fn data_dir() -> PathBuf {
        PathBuf::from("./data")
    }
    pub fn flush() -> FlushPolicy {
        FlushPolicy::Os
    }
    pub fn flush_interval_ms() -> u64 {
        1000
    }
    pub fn scram_iterations() -> i32 {
        4096
    }
    pub fn cluster_id() -> String {
        "strata-cluster".into()
    }
    /// Loopback: the console shows records to whoever reaches it.
    pub const HTTP_LISTEN: &str = "127.0.0.1:9644";
}

/// The Kafka properties after defaults, file, and overrides, as validated strings, and the
/// values changed at run time on top of them.
#[derive(Clone, Debug, Default)]
pub struct BrokerProps {
    values: BTreeMap<String, String>,
    /// Names set in the file or by an override (the rest hold Kafka's defaults).
    set: std::collections::BTreeSet<String>,
    /// Values changed at run time through the admin APIs. Shared by every clone of the
    /// `Config`, so that whoever reads a property sees the change at once; a std `RwLock`
    /// suffices, it is held only to copy a string.
    dynamic: std::sync::Arc<std::sync::RwLock<DynamicLayers>>,
}

/// Broker properties changed at run time, by layer (Kafka's KIP-226 dynamic configs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DynamicLayers {
    /// Set on this broker by its id (`DYNAMIC_BROKER_CONFIG`); wins over the cluster default.
    pub broker: BTreeMap<String, String>,
    /// Set for the whole cluster, the empty broker name (`DYNAMIC_DEFAULT_BROKER_CONFIG`).
    pub cluster: BTreeMap<String, String>,
}

impl BrokerProps {
    /// A property's value: set at run time for this broker, else for the cluster, else from
    /// the file, an override or Kafka's default.
    pub fn get(&self, name: &str) -> String {
        let dynamic = self.dynamic.read().unwrap_or_else(|p| p.into_inner());
        dynamic
            .broker
            .get(name)
            .or_else(|| dynamic.cluster.get(name))
            .cloned()
            .unwrap_or_else(|| self.static_value(name).to_string())
    }
    /// A property as one listener sees it: `listener.name.<listener>.<name>` if set, else
    /// the broker-wide value.
    pub fn for_listener(&self, listener: &str, name: &str) -> String {
        let key = format!("listener.name.{}.{name}", listener.to_ascii_lowercase());
        match self.values.get(&key) {
            Some(v) => v.clone(),
            None => self.get(name),
        }
    }
    /// A SASL mechanism's setting on one listener, looked up as Kafka does:
    /// `listener.name.<listener>.<mechanism>.<name>`, then `listener.name.<listener>.<name>`,
    /// then `<name>`.
    pub fn for_mechanism(&self, listener: &str, mechanism: &str, name: &str) -> String {
        let key = format!(
            "listener.name.{}.{}.{name}",
            listener.to_ascii_lowercase(),
            mechanism.to_ascii_lowercase()
        );
        match self.values.get(&key) {
            Some(v) => v.clone(),
            None => self.for_listener(listener, name),
        }
    }
    /// The value from the file, an override or Kafka's default, ignoring run-time changes.
    pub fn static_value(&self, name: &str) -> &str {
        self.values.get(name).map(String::as_str).unwrap_or("")
    }
    pub fn int(&self, name: &str) -> i64 {
        self.get(name).parse().unwrap_or(0)
    }
    pub fn bool(&self, name: &str) -> bool {
        self.get(name) == "true"
    }
    /// Whether the property was set in the file or by an override.
    pub fn is_set(&self, name: &str) -> bool {
        self.set.contains(name)
    }
    /// The run-time layers as they are now.
    pub fn dynamic(&self) -> DynamicLayers {
        self.dynamic
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// Replaces the run-time layers (already validated and persisted by the caller).
    pub fn set_dynamic(&self, layers: DynamicLayers) {
        *self.dynamic.write().unwrap_or_else(|p| p.into_inner()) = layers;
    }
    /// The broker-level default of one topic config, by topic config name.
    pub fn topic_default(&self, topic_config: &str) -> Option<String> {
        KAFKA_PROPERTIES
            .iter()
            .find(|p| p.topic_config == Some(topic_config))
            .map(|p| self.get(p.name))
    }
    /// Broker-level defaults for every topic config, by topic config name.
    pub fn topic_defaults(&self) -> BTreeMap<String, String> {
        KAFKA_PROPERTIES
            .iter()
            .filter_map(|p| p.topic_config.map(|t| (t.to_string(), self.get(p.name))))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Yaml(String),
    #[error("unknown config key {0:?}")]
    UnknownKey(String),
    #[error("{0}")]
    Invalid(String),
}

/// Where settings come from besides the file, strongest last.
#[derive(Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub advertised_listener: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub flush: Option<FlushPolicy>,
    pub http_listen: Option<String>,
    /// `name=value` pairs: Kafka property names, or Strata's own top-level keys.
    pub properties: Vec<String>,
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "listen",
    "advertised_listener",
    "data_dir",
    "flush",
    "flush_interval_ms",
    "max_connections",
    "cluster_id",
    "http_listen",
    "strict_replication_factor",
    "tier",
];

impl Config {
    pub fn load(file: Option<&std::path::Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut doc = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let value: serde_yaml::Value = serde_yaml::from_str(&text)
                    .map_err(|e| ConfigError::Yaml(format!("{}: {e}", path.display())))?;
                match value {
                    serde_yaml::Value::Null => serde_yaml::Mapping::new(),
                    serde_yaml::Value::Mapping(m) => m,
                    _ => return Err(ConfigError::Yaml("config file must be a mapping".into())),
                }
            }
            None => serde_yaml::Mapping::new(),
        };
        // Top-level keys given with --override beat the flags and their environment
        // variables, which come next; everything else already beats the file.
        let mut overridden = std::collections::BTreeSet::new();
        for kv in &overrides.properties {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                ConfigError::Invalid(format!("--override takes name=value, got {kv:?}"))
            })?;
            let (k, v) = (k.trim(), v.trim());
            let parsed = || -> serde_yaml::Value {
                serde_yaml::from_str(v).unwrap_or_else(|_| serde_yaml::Value::String(v.into()))
            };
            if TOP_LEVEL_KEYS.contains(&k) {
                overridden.insert(k);
                doc.insert(k.into(), parsed());
            } else if let Some(sub) = k.strip_prefix("tier.") {
                let tier = doc
                    .entry("tier".into())
                    .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
                if let serde_yaml::Value::Mapping(m) = tier {
                    m.insert(sub.into(), parsed());
                }
            } else {
                let kafka = doc
                    .entry("kafka".into())
                    .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
                if let serde_yaml::Value::Mapping(m) = kafka {
                    m.insert(k.into(), serde_yaml::Value::String(v.into()));
                }
            }
        }
        let flag = |key: &str| !overridden.contains(key);
        let listen = overrides.listen.filter(|_| flag("listen"));
        let advertised_listener = overrides
            .advertised_listener
            .filter(|_| flag("advertised_listener"));
        let legacy_given = listen.is_some()
            || advertised_listener.is_some()
            || doc.contains_key("listen")
            || doc.contains_key("advertised_listener");
        let mut config: Config =
            serde_yaml::from_value(serde_yaml::Value::Mapping(doc)).map_err(|e| {
                let msg = e.to_string();
                match msg
                    .split("unknown field `")
                    .nth(1)
                    .and_then(|r| r.split('`').next())
                {
                    Some(key) => ConfigError::UnknownKey(key.to_string()),
                    None => ConfigError::Yaml(msg),
                }
            })?;
        if let Some(v) = listen {
            config.listen = v;
        }
        if let Some(v) = advertised_listener {
            config.advertised_listener = v;
        }
        if let Some(v) = overrides.data_dir.filter(|_| flag("data_dir")) {
            config.data_dir = v;
        }
        if let Some(v) = overrides.flush.filter(|_| flag("flush")) {
            config.flush = v;
        }
        if let Some(v) = overrides.http_listen.filter(|_| flag("http_listen")) {
            config.http_listen = Some(v);
        }
        if let Some(n) = config.max_connections {
            // The old top-level key, for files written before `max.connections`.
            if !config.kafka.contains_key("max.connections") {
                config
                    .kafka
                    .insert("max.connections".into(), serde_yaml::Value::from(n as u64));
            }
        }
        config.props = resolve_props(&config.kafka)?;
        config.connections = ConnectionSettings::from_props(&config.props)?;
        for u in &mut config.scram_users {
            u.password = resolve_references(&format!("scram_users: {}", u.name), &u.password)?;
        }
        config.listeners = listeners::resolve(
            config.props.static_value("listeners"),
            config.props.static_value("advertised.listeners"),
            config.props.static_value("listener.security.protocol.map"),
            config.props.static_value("controller.listener.names"),
            &config.listen,
            &config.advertised_listener,
        )?;
        let agrees = config.listeners.iter().any(|l| {
            l.bind_address() == config.listen
                && format!("{}:{}", l.advertised_host, l.advertised_port)
                    == config.advertised_listener
        });
        if legacy_given && config.props.is_set("listeners") && !agrees {
            // `listeners` is the Kafka way and wins; the one-listener settings are ignored
            // (said only when they name an address that is not one of the listeners).
            tracing::warn!(
                "listeners is set: listen / advertised_listener (--listen, \
                 --advertised-listener) are ignored"
            );
        }
        Ok(config)
    }

    /// The directory of `store: local`: `tier.local_dir`, else `<data_dir>/tier`.
    pub fn tier_local_dir(&self) -> Option<PathBuf> {
        (self.tier.store == TierStore::Local).then(|| {
            self.tier
                .local_dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join("tier"))
        })
    }

    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.flush_interval_ms.max(1))
    }
}

fn yaml_scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn resolve_props(given: &BTreeMap<String, serde_yaml::Value>) -> Result<BrokerProps, ConfigError> {
    let mut values: BTreeMap<String, String> = KAFKA_PROPERTIES
        .iter()
        .map(|p| (p.name.to_string(), p.default.to_string()))
        .collect();
    let mut set = std::collections::BTreeSet::new();
    // Kafka's coarser aliases, applied before the precise names so those win.
    let aliases = [
        ("log.roll.hours", "log.roll.ms", 3_600_000i64),
        ("log.retention.hours", "log.retention.ms", 3_600_000),
        ("log.retention.minutes", "log.retention.ms", 60_000),
    ];
    for (alias, target, factor) in aliases {
        if let Some(v) = given.get(alias) {
            let s = yaml_scalar(v).unwrap_or_default();
            let n: i64 = s
                .parse()
                .map_err(|_| ConfigError::Invalid(format!("invalid value {s:?} for {alias}")))?;
            values.insert(target.into(), (n * factor).to_string());
            set.insert(target.to_string());
        }
    }
    for (k, v) in given {
        if aliases.iter().any(|(a, _, _)| a == k) {
            continue;
        }
        // Kafka's config providers need declaring; here `${env:..}`, `${file:..}` and
        // `${dir:..}` always work, so their declarations are accepted and not needed.
        if k == "config.providers" || k.starts_with("config.providers.") {
            continue;
        }
        let prop = KAFKA_PROPERTIES
            .iter()
            .find(|p| p.name == k)
            .or_else(|| split_listener_prefix(k).and_then(|(_, rest)| listener_property(rest)))
            .ok_or_else(|| ConfigError::UnknownKey(format!("kafka.{k}")))?;
        let s =
            yaml_scalar(v).ok_or_else(|| ConfigError::Invalid(format!("{k} must be a scalar")))?;
        let s = resolve_references(k, &s)?;
        check_value(k, prop.kind, &s).map_err(ConfigError::Invalid)?;
        // Listener names are matched case-insensitively, as Kafka does.
        let k = match split_listener_prefix(k) {
            Some((listener, rest)) => format!("listener.name.{listener}.{rest}"),
            None => k.clone(),
        };
        values.insert(k.clone(), s);
        set.insert(k.clone());
    }
    Ok(BrokerProps {
        values,
        set,
        dynamic: Default::default(),
    })
}

#[cfg(test)]
mod tests;
