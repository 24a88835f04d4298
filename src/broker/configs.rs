//! Configs as DescribeConfigs reports them: for a topic, a broker and a group, every config
//! with its value, where the value comes from (Kafka's config sources) and, when asked, the
//! synonyms it was resolved through, most specific first.
//!
//! Reads the topic's, the broker's and the group's settings, including those changed at run
//! time (see `dynamic_configs`); holds no state and writes no files.

use super::Topic;
use crate::config::{self, Config, Kind, KAFKA_PROPERTIES, TOPIC_CONFIGS, TOPIC_ONLY_DEFAULTS};

/// Kafka's `ConfigSource` codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
    Group = 8,
}

/// Kafka's `ConfigType` codes (DescribeConfigs v3+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
    /// Shown to no one: DescribeConfigs answers `is_sensitive` and no value.
    Password = 9,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Synonym {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    pub config_type: ConfigType,
    /// Where the value was resolved from, most specific first (the entry's own first).
    pub synonyms: Vec<Synonym>,
}

/// The type Kafka declares for a config (its `ConfigDef`).
fn config_type(name: &str, kind: Kind) -> ConfigType {
    const INTS: &[&str] = &[
        "max.message.bytes",
        "segment.bytes",
        "index.interval.bytes",
        "segment.index.bytes",
        "min.insync.replicas",
        "message.max.bytes",
        "log.segment.bytes",
        "log.index.interval.bytes",
        "log.index.size.max.bytes",
        "node.id",
        "num.partitions",
        "default.replication.factor",
        "socket.request.max.bytes",
        "group.min.session.timeout.ms",
        "group.max.session.timeout.ms",
        "group.consumer.session.timeout.ms",
        "group.consumer.heartbeat.interval.ms",
        "offsets.retention.minutes",
        "transaction.max.timeout.ms",
        "transactional.id.expiration.ms",
        "producer.id.expiration.ms",
        "consumer.session.timeout.ms",
        "consumer.heartbeat.interval.ms",
    ];
    match kind {
        Kind::Bool => ConfigType::Boolean,
        Kind::CleanupPolicy => ConfigType::List,
        Kind::TimestampType | Kind::Compression | Kind::Str => ConfigType::String,
        Kind::List => ConfigType::List,
        Kind::Password => ConfigType::Password,
        Kind::Double => ConfigType::Double,
        Kind::Int if INTS.contains(&name) => ConfigType::Int,
        Kind::Int => ConfigType::Long,
    }
}

fn synonym(name: &str, value: &str, source: ConfigSource) -> Synonym {
    Synonym {
        name: name.to_string(),
        value: value.to_string(),
        source,
    }
}

/// A broker property's own synonyms, in Kafka's order: set at run time for this broker, for
/// the cluster, set in the file or by an override, then its default.
fn broker_synonyms(config: &Config, name: &str, default: &str) -> Vec<Synonym> {
    let mut out = Vec::new();
    let dynamic = config.props.dynamic();
    if let Some(v) = dynamic.broker.get(name) {
        out.push(synonym(name, v, ConfigSource::DynamicBroker));
    }
    if let Some(v) = dynamic.cluster.get(name) {
        out.push(synonym(name, v, ConfigSource::DynamicDefaultBroker));
    }
    if config.props.is_set(name) {
        out.push(synonym(
            name,
            config.props.static_value(name),
            ConfigSource::StaticBroker,
        ));
    }
    out.push(synonym(name, default, ConfigSource::Default));
    out
}

/// Every topic config with its effective value.
pub fn describe_topic(topic: &Topic, config: &Config) -> Vec<ConfigEntry> {
    let own = topic.own_configs();
    TOPIC_CONFIGS
        .iter()
        .map(|&(name, kind)| {
            let mut synonyms = Vec::new();
            if let Some(v) = own.get(name) {
                synonyms.push(synonym(name, v, ConfigSource::DynamicTopic));
            }
            if let Some(p) = KAFKA_PROPERTIES
                .iter()
                .find(|p| p.topic_config == Some(name))
            {
                synonyms.extend(broker_synonyms(config, p.name, p.default));
            } else if let Some(&(_, broker, default)) =
                TOPIC_ONLY_DEFAULTS.iter().find(|(t, _, _)| *t == name)
            {
                synonyms.push(synonym(broker, default, ConfigSource::Default));
            }
            let (value, source) = synonyms
                .first()
                .map(|s| (s.value.clone(), s.source))
                .unwrap_or((String::new(), ConfigSource::Default));
            ConfigEntry {
                name: name.to_string(),
                value,
                source,
                read_only: false,
                config_type: config_type(name, kind),
                synonyms,
            }
        })
        .collect()
}

/// Every broker property with its value. Those that are topic defaults are changeable
/// cluster-wide in Kafka; the rest are read-only.
pub fn describe_broker(config: &Config) -> Vec<ConfigEntry> {
    KAFKA_PROPERTIES
        .iter()
        .map(|p| {
            let synonyms = broker_synonyms(config, p.name, p.default);
            ConfigEntry {
                name: p.name.to_string(),
                value: config.props.get(p.name),
                source: synonyms[0].source,
                read_only: !super::dynamic_configs::is_dynamic(p),
                config_type: config_type(p.name, p.kind),
                synonyms,
            }
        })
        .collect()
}

/// The cluster-wide dynamic defaults (the BROKER resource with the empty name): only what
/// was set there, as Kafka lists it, without this broker's own layer among the synonyms.
pub fn describe_cluster_defaults(config: &Config) -> Vec<ConfigEntry> {
    let cluster = config.props.dynamic().cluster;
    KAFKA_PROPERTIES
        .iter()
        .filter_map(|p| {
            let value = cluster.get(p.name)?;
            let synonyms = broker_synonyms(config, p.name, p.default)
                .into_iter()
                .filter(|s| s.source != ConfigSource::DynamicBroker)
                .collect();
            Some(ConfigEntry {
                name: p.name.to_string(),
                value: value.clone(),
                source: ConfigSource::DynamicDefaultBroker,
                read_only: false,
                config_type: config_type(p.name, p.kind),
                synonyms,
            })
        })
        .collect()
}

/// A consumer group's configs (KIP-848): its own (`own`, set through the admin APIs), else
/// the broker's defaults for them.
pub fn describe_group(
    config: &Config,
    own: &std::collections::BTreeMap<String, String>,
) -> Vec<ConfigEntry> {
    super::dynamic_configs::GROUP_CONFIGS
        .iter()
        .map(|&(name, broker)| {
            let default = KAFKA_PROPERTIES
                .iter()
                .find(|p| p.name == broker)
                .map(|p| p.default)
                .unwrap_or_default();
            let mut synonyms = Vec::new();
            if let Some(v) = own.get(name) {
                synonyms.push(synonym(name, v, ConfigSource::Group));
            }
            synonyms.extend(broker_synonyms(config, broker, default));
            ConfigEntry {
                name: name.to_string(),
                value: synonyms[0].value.clone(),
                source: synonyms[0].source,
                read_only: false,
                config_type: config_type(name, config::Kind::Int),
                synonyms,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;
    use std::collections::BTreeMap;

    fn config(props: &[&str]) -> Config {
        Config::load(
            None,
            Overrides {
                properties: props.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        )
        .expect("config")
    }

    fn find<'a>(all: &'a [ConfigEntry], name: &str) -> &'a ConfigEntry {
        all.iter().find(|e| e.name == name).expect(name)
    }

    #[test]
    fn a_topic_config_comes_from_the_topic_then_the_broker_then_the_default() {
        let c = config(&["log.retention.ms=1000"]);
        let mut own = BTreeMap::new();
        own.insert("segment.bytes".to_string(), "4096".to_string());
        let topic = Topic::new_meta("t", uuid::Uuid::nil(), 1, own);
        let all = describe_topic(&topic, &c);
        assert_eq!(all.len(), TOPIC_CONFIGS.len());

        let seg = find(&all, "segment.bytes");
        assert_eq!(
            (seg.value.as_str(), seg.source),
            ("4096", ConfigSource::DynamicTopic)
        );
        assert_eq!(seg.config_type, ConfigType::Int);
        let names: Vec<_> = seg.synonyms.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["segment.bytes", "log.segment.bytes"]);

        let ret = find(&all, "retention.ms");
        assert_eq!(
            (ret.value.as_str(), ret.source),
            ("1000", ConfigSource::StaticBroker)
        );
        assert_eq!(ret.synonyms[1].source, ConfigSource::Default);
        assert_eq!(ret.synonyms[1].value, "604800000");

        let policy = find(&all, "cleanup.policy");
        assert_eq!(
            (policy.value.as_str(), policy.source, policy.config_type),
            ("delete", ConfigSource::Default, ConfigType::List)
        );
        let ratio = find(&all, "min.cleanable.dirty.ratio");
        assert_eq!(
            (ratio.value.as_str(), ratio.config_type),
            ("0.5", ConfigType::Double)
        );
    }

    #[test]
    fn run_time_changes_show_with_kafkas_sources_in_kafkas_order() {
        let c = config(&["log.retention.ms=1000"]);
        let mut layers = crate::config::DynamicLayers::default();
        layers
            .cluster
            .insert("log.retention.ms".into(), "2000".into());
        layers
            .broker
            .insert("log.retention.ms".into(), "3000".into());
        c.props.set_dynamic(layers);
        let topic = Topic::new_meta("t", uuid::Uuid::nil(), 1, BTreeMap::new());
        let ret = describe_topic(&topic, &c)
            .into_iter()
            .find(|e| e.name == "retention.ms")
            .expect("retention.ms");
        assert_eq!(
            (ret.value.as_str(), ret.source),
            ("3000", ConfigSource::DynamicBroker)
        );
        let sources: Vec<_> = ret.synonyms.iter().map(|s| s.source).collect();
        assert_eq!(
            sources,
            vec![
                ConfigSource::DynamicBroker,
                ConfigSource::DynamicDefaultBroker,
                ConfigSource::StaticBroker,
                ConfigSource::Default
            ]
        );
        let defaults = describe_cluster_defaults(&c);
        assert_eq!(defaults.len(), 1);
        assert_eq!(defaults[0].value, "2000");
        assert_eq!(defaults[0].synonyms.len(), 3);
        let mut own = BTreeMap::new();
        own.insert(
            "consumer.session.timeout.ms".to_string(),
            "50000".to_string(),
        );
        let g = describe_group(&c, &own);
        let s = find(&g, "consumer.session.timeout.ms");
        assert_eq!((s.value.as_str(), s.source), ("50000", ConfigSource::Group));
    }

    #[test]
    fn broker_configs_say_what_was_set() {
        let c = config(&["num.partitions=4"]);
        let all = describe_broker(&c);
        let n = find(&all, "num.partitions");
        assert_eq!(
            (n.value.as_str(), n.source, n.read_only),
            ("4", ConfigSource::StaticBroker, true)
        );
        let r = find(&all, "log.retention.ms");
        assert_eq!((r.source, r.read_only), (ConfigSource::Default, false));
        let g = describe_group(&c, &BTreeMap::new());
        assert_eq!(find(&g, "consumer.session.timeout.ms").value, "45000");
    }
}
