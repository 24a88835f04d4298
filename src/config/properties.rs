//! The Kafka properties and topic configs Strata understands, by Kafka's names, with their
//! defaults, the topic config each broker property defaults, and how values are checked.
//!
//! No files.

/// A Kafka property Strata understands: its name, its default, and the topic config it
/// provides the default for (Kafka's `log.segment.bytes` → `segment.bytes`).
pub struct Property {
    pub name: &'static str,
    pub default: &'static str,
    pub topic_config: Option<&'static str>,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    /// A floating-point number (Kafka's DOUBLE: the cleaner's ratio and I/O limit).
    Double,
    TimestampType,
    CleanupPolicy,
    Compression,
    /// Free text (a listener list, a class name, a file path).
    Str,
    /// A comma-separated list of free text (`super.users`, `sasl.enabled.mechanisms`).
    List,
    /// A secret: never shown by DescribeConfigs, never logged.
    Password,
}

const fn prop(
    name: &'static str,
    default: &'static str,
    topic: Option<&'static str>,
    kind: Kind,
) -> Property {
    Property {
        name,
        default,
        topic_config: topic,
        kind,
    }
}

pub const KAFKA_PROPERTIES: &[Property] = &[
    prop("node.id", "0", None, Kind::Int),
    prop("auto.create.topics.enable", "true", None, Kind::Bool),
    prop("num.partitions", "1", None, Kind::Int),
    prop("default.replication.factor", "1", None, Kind::Int),
    prop("socket.request.max.bytes", "104857600", None, Kind::Int),
    // Connections and the memory of requests in flight (see `server` and `connection`).
    // Kafka's defaults, except queued.max.request.bytes: Kafka's -1 leaves request memory
    // unbounded, Strata holds it to 256 MiB (-1 or 0 still means unbounded).
    prop("max.connections", "2147483647", None, Kind::Int),
    prop("max.connections.per.ip", "2147483647", None, Kind::Int),
    prop("max.connections.per.ip.overrides", "", None, Kind::List),
    prop("queued.max.request.bytes", "268435456", None, Kind::Int),
    prop("connections.max.idle.ms", "600000", None, Kind::Int),
    // The most bytes one Fetch answer carries (at least one batch, as KIP-74 wants).
    prop("fetch.max.bytes", "57671680", None, Kind::Int),
    prop("delete.topic.enable", "true", None, Kind::Bool),
    prop(
        "message.max.bytes",
        "1048588",
        Some("max.message.bytes"),
        Kind::Int,
    ),
    prop(
        "log.segment.bytes",
        "1073741824",
        Some("segment.bytes"),
        Kind::Int,
    ),
    prop("log.roll.ms", "604800000", Some("segment.ms"), Kind::Int),
    prop(
        "log.index.interval.bytes",
        "4096",
        Some("index.interval.bytes"),
        Kind::Int,
    ),
    prop(
        "log.index.size.max.bytes",
        "10485760",
        Some("segment.index.bytes"),
        Kind::Int,
    ),
    prop(
        "log.retention.ms",
        "604800000",
        Some("retention.ms"),
        Kind::Int,
    ),
    prop(
        "log.retention.bytes",
        "-1",
        Some("retention.bytes"),
        Kind::Int,
    ),
    prop(
        "log.message.timestamp.type",
        "CreateTime",
        Some("message.timestamp.type"),
        Kind::TimestampType,
    ),
    prop(
        "log.cleanup.policy",
        "delete",
        Some("cleanup.policy"),
        Kind::CleanupPolicy,
    ),
    prop(
        "compression.type",
        "producer",
        Some("compression.type"),
        Kind::Compression,
    ),
    prop(
        "min.insync.replicas",
        "1",
        Some("min.insync.replicas"),
        Kind::Int,
    ),
    prop("log.retention.check.interval.ms", "300000", None, Kind::Int),
    // The log cleaner (compaction).
    prop("log.cleaner.enable", "true", None, Kind::Bool),
    prop("log.cleaner.backoff.ms", "15000", None, Kind::Int),
    prop(
        "log.cleaner.io.max.bytes.per.second",
        "1.7976931348623157E308",
        None,
        Kind::Double,
    ),
    prop(
        "log.cleaner.dedupe.buffer.size",
        "134217728",
        None,
        Kind::Int,
    ),
    prop(
        "log.cleaner.min.cleanable.ratio",
        "0.5",
        Some("min.cleanable.dirty.ratio"),
        Kind::Double,
    ),
    prop(
        "log.cleaner.delete.retention.ms",
        "86400000",
        Some("delete.retention.ms"),
        Kind::Int,
    ),
    prop(
        "log.cleaner.min.compaction.lag.ms",
        "0",
        Some("min.compaction.lag.ms"),
        Kind::Int,
    ),
    prop(
        "log.cleaner.max.compaction.lag.ms",
        "9223372036854775807",
        Some("max.compaction.lag.ms"),
        Kind::Int,
    ),
    // The group coordinator.
    prop("group.min.session.timeout.ms", "6000", None, Kind::Int),
    prop("group.max.session.timeout.ms", "1800000", None, Kind::Int),
    prop(
        "group.consumer.session.timeout.ms",
        "45000",
        None,
        Kind::Int,
    ),
    prop(
        "group.consumer.heartbeat.interval.ms",
        "5000",
        None,
        Kind::Int,
    ),
    // The bounds a group's own consumer.session.timeout.ms / consumer.heartbeat.interval.ms
    // (IncrementalAlterConfigs on a GROUP) must stay within, as Kafka's GroupConfig checks.
    prop(
        "group.consumer.min.session.timeout.ms",
        "45000",
        None,
        Kind::Int,
    ),
    prop(
        "group.consumer.max.session.timeout.ms",
        "60000",
        None,
        Kind::Int,
    ),
    prop(
        "group.consumer.min.heartbeat.interval.ms",
        "5000",
        None,
        Kind::Int,
    ),
    prop(
        "group.consumer.max.heartbeat.interval.ms",
        "15000",
        None,
        Kind::Int,
    ),
    prop("offsets.retention.minutes", "10080", None, Kind::Int),
    prop(
        "offsets.retention.check.interval.ms",
        "600000",
        None,
        Kind::Int,
    ),
    // Producer state and the transaction coordinator.
    prop("producer.id.expiration.ms", "86400000", None, Kind::Int),
    prop(
        "producer.id.expiration.check.interval.ms",
        "600000",
        None,
        Kind::Int,
    ),
    prop("transaction.max.timeout.ms", "900000", None, Kind::Int),
    // A feature level in Kafka (kafka-features.sh); here a setting: 2 offers KIP-890's
    // transaction protocol, 0 or 1 keeps clients on the first one.
    prop("transaction.version", "2", None, Kind::Int),
    prop(
        "transactional.id.expiration.ms",
        "604800000",
        None,
        Kind::Int,
    ),
    prop(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "10000",
        None,
        Kind::Int,
    ),
    // Tiered storage (KIP-405 names). remote.storage.enable is a topic config; its broker
    // default is Strata's own, since Kafka has none.
    // Security, by Kafka's names. Listener-specific values are given as
    // `listener.name.<listener>.<name>` (and `listener.name.<listener>.<mechanism>.<name>`
    // for the SASL mechanism settings), as in Kafka.
    prop("listeners", "", None, Kind::List),
    prop("advertised.listeners", "", None, Kind::List),
    prop(
        "listener.security.protocol.map",
        "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
        None,
        Kind::List,
    ),
    // A single broker has no controller quorum and no other brokers: listeners named in
    // controller.listener.names are not bound, and the inter-broker settings are accepted
    // so that a Kafka server.properties loads.
    prop("controller.listener.names", "", None, Kind::List),
    prop("inter.broker.listener.name", "", None, Kind::Str),
    prop(
        "security.inter.broker.protocol",
        "PLAINTEXT",
        None,
        Kind::Str,
    ),
    prop(
        "sasl.enabled.mechanisms",
        "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        None,
        Kind::List,
    ),
    prop("sasl.jaas.config", "", None, Kind::Password),
    prop("sasl.server.callback.handler.class", "", None, Kind::Str),
    prop("connections.max.reauth.ms", "0", None, Kind::Int),
    prop("sasl.server.max.receive.size", "524288", None, Kind::Int),
    prop(
        "connection.failed.authentication.delay.ms",
        "100",
        None,
        Kind::Int,
    ),
    prop("sasl.oauthbearer.jwks.endpoint.url", "", None, Kind::Str),
    prop(
        "sasl.oauthbearer.jwks.endpoint.refresh.ms",
        "3600000",
        None,
        Kind::Int,
    ),
    prop(
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
        "100",
        None,
        Kind::Int,
    ),
    prop(
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
        "10000",
        None,
        Kind::Int,
    ),
    prop("sasl.oauthbearer.expected.audience", "", None, Kind::List),
    prop("sasl.oauthbearer.expected.issuer", "", None, Kind::Str),
    prop("sasl.oauthbearer.sub.claim.name", "sub", None, Kind::Str),
    prop(
        "sasl.oauthbearer.scope.claim.name",
        "scope",
        None,
        Kind::Str,
    ),
    prop("sasl.oauthbearer.clock.skew.seconds", "30", None, Kind::Int),
    prop("ssl.keystore.type", "PEM", None, Kind::Str),
    prop("ssl.keystore.location", "", None, Kind::Str),
    prop("ssl.keystore.password", "", None, Kind::Password),
    prop("ssl.keystore.certificate.chain", "", None, Kind::Password),
    prop("ssl.keystore.key", "", None, Kind::Password),
    prop("ssl.key.password", "", None, Kind::Password),
    prop("ssl.truststore.type", "PEM", None, Kind::Str),
    prop("ssl.truststore.location", "", None, Kind::Str),
    prop("ssl.truststore.password", "", None, Kind::Password),
    prop("ssl.truststore.certificates", "", None, Kind::Password),
    prop("ssl.client.auth", "none", None, Kind::Str),
    prop("ssl.principal.mapping.rules", "DEFAULT", None, Kind::Str),
    prop("ssl.enabled.protocols", "TLSv1.2,TLSv1.3", None, Kind::List),
    prop("ssl.protocol", "TLSv1.3", None, Kind::Str),
    prop("ssl.cipher.suites", "", None, Kind::List),
    prop(
        "ssl.endpoint.identification.algorithm",
        "https",
        None,
        Kind::Str,
    ),
    prop("authorizer.class.name", "", None, Kind::Str),
    prop("super.users", "", None, Kind::List),
    prop("allow.everyone.if.no.acl.found", "false", None, Kind::Bool),
    prop("remote.log.storage.system.enable", "true", None, Kind::Bool),
    prop(
        "remote.storage.enable",
        "true",
        Some("remote.storage.enable"),
        Kind::Bool,
    ),
    prop(
        "log.local.retention.ms",
        "-2",
        Some("local.retention.ms"),
        Kind::Int,
    ),
    prop(
        "log.local.retention.bytes",
        "-2",
        Some("local.retention.bytes"),
        Kind::Int,
    ),
];

/// Topic configs accepted by CreateTopics. Those without a broker property above are kept
/// and reported but do not change what a single broker does.
pub const TOPIC_CONFIGS: &[(&str, Kind)] = &[
    ("max.message.bytes", Kind::Int),
    ("segment.bytes", Kind::Int),
    ("segment.ms", Kind::Int),
    ("index.interval.bytes", Kind::Int),
    ("segment.index.bytes", Kind::Int),
    ("retention.ms", Kind::Int),
    ("retention.bytes", Kind::Int),
    ("message.timestamp.type", Kind::TimestampType),
    ("cleanup.policy", Kind::CleanupPolicy),
    ("compression.type", Kind::Compression),
    ("min.insync.replicas", Kind::Int),
    ("flush.messages", Kind::Int),
    ("flush.ms", Kind::Int),
    ("unclean.leader.election.enable", Kind::Bool),
    ("delete.retention.ms", Kind::Int),
    ("min.compaction.lag.ms", Kind::Int),
    ("max.compaction.lag.ms", Kind::Int),
    ("min.cleanable.dirty.ratio", Kind::Double),
    ("file.delete.delay.ms", Kind::Int),
    ("preallocate", Kind::Bool),
    ("segment.jitter.ms", Kind::Int),
    ("message.downconversion.enable", Kind::Bool),
    ("message.timestamp.before.max.ms", Kind::Int),
    ("message.timestamp.after.max.ms", Kind::Int),
    ("local.retention.ms", Kind::Int),
    ("local.retention.bytes", Kind::Int),
    ("remote.storage.enable", Kind::Bool),
    ("remote.log.copy.disable", Kind::Bool),
    ("remote.log.delete.on.disable", Kind::Bool),
];

/// Kafka's defaults (and the broker property that Kafka would default them from) for the
/// topic configs that have no broker property here.
pub const TOPIC_ONLY_DEFAULTS: &[(&str, &str, &str)] = &[
    (
        "flush.messages",
        "log.flush.interval.messages",
        "9223372036854775807",
    ),
    ("flush.ms", "log.flush.interval.ms", "9223372036854775807"),
    (
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        "false",
    ),
    (
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        "60000",
    ),
    ("preallocate", "log.preallocate", "false"),
    ("segment.jitter.ms", "log.roll.jitter.ms", "0"),
    (
        "message.downconversion.enable",
        "log.message.downconversion.enable",
        "true",
    ),
    (
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
        "9223372036854775807",
    ),
    (
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
        "3600000",
    ),
    (
        "remote.log.copy.disable",
        "remote.log.copy.disable",
        "false",
    ),
    (
        "remote.log.delete.on.disable",
        "remote.log.delete.on.disable",
        "false",
    ),
];

pub fn check_value(name: &str, kind: Kind, value: &str) -> Result<(), String> {
    let ok = match kind {
        Kind::Bool => matches!(value, "true" | "false"),
        Kind::Int => value.parse::<i64>().is_ok(),
        Kind::Double => value.parse::<f64>().is_ok(),
        Kind::TimestampType => matches!(value, "CreateTime" | "LogAppendTime"),
        Kind::CleanupPolicy => value
            .split(',')
            .all(|p| matches!(p.trim(), "delete" | "compact")),
        Kind::Compression => matches!(
            value,
            "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
        ),
        Kind::Str | Kind::List | Kind::Password => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid value {value:?} for {name}"))
    }
}

/// Kafka's `ConfigDef` types, as the checks below need them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Declared {
    Int,
    Long,
}

/// Lower bounds (and the declared type) Kafka's `LogConfig` puts on topic configs; a broker
/// property that provides a topic config's default has the same bounds.
fn bounds(name: &str) -> (Declared, Option<i64>, Option<i64>) {
    use Declared::*;
    match name {
        "segment.bytes" | "log.segment.bytes" => (Int, Some(1024 * 1024), None),
        "max.message.bytes" | "message.max.bytes" => (Int, Some(0), None),
        "index.interval.bytes" | "log.index.interval.bytes" => (Int, Some(0), None),
        "segment.index.bytes" | "log.index.size.max.bytes" => (Int, Some(4), None),
        "min.insync.replicas" => (Int, Some(1), None),
        "segment.ms" | "log.roll.ms" => (Long, Some(1), None),
        "retention.ms" | "log.retention.ms" => (Long, Some(-1), None),
        "retention.bytes" | "log.retention.bytes" => (Long, None, None),
        "local.retention.ms" | "log.local.retention.ms" => (Long, Some(-2), None),
        "local.retention.bytes" | "log.local.retention.bytes" => (Long, Some(-2), None),
        "flush.messages" => (Long, Some(1), None),
        "max.compaction.lag.ms" | "log.cleaner.max.compaction.lag.ms" => (Long, Some(1), None),
        "flush.ms"
        | "delete.retention.ms"
        | "log.cleaner.delete.retention.ms"
        | "min.compaction.lag.ms"
        | "log.cleaner.min.compaction.lag.ms"
        | "file.delete.delay.ms"
        | "segment.jitter.ms"
        | "message.timestamp.before.max.ms"
        | "message.timestamp.after.max.ms" => (Long, Some(0), None),
        "consumer.session.timeout.ms" | "consumer.heartbeat.interval.ms" => (Int, Some(1), None),
        _ => (Long, None, None),
    }
}

/// Checks a value as Kafka's `ConfigDef` would when it is changed at run time: its type, its
/// range and its allowed values. The message is Kafka's and names the key.
pub fn validate_value(name: &str, kind: Kind, value: &str) -> Result<(), String> {
    let invalid = |why: &str| {
        Err(format!(
            "Invalid value {value} for configuration {name}: {why}"
        ))
    };
    let v = value.trim();
    match kind {
        Kind::Bool => {
            if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                return invalid("Expected value to be either true or false");
            }
        }
        Kind::TimestampType => {
            if !matches!(v, "CreateTime" | "LogAppendTime") {
                return invalid("String must be one of: CreateTime, LogAppendTime");
            }
        }
        Kind::CleanupPolicy => {
            let parts: Vec<&str> = v.split(',').map(str::trim).collect();
            if v.is_empty() || parts.iter().any(|p| !matches!(*p, "delete" | "compact")) {
                return invalid("String must be one of: compact, delete");
            }
        }
        Kind::Compression => {
            if !matches!(
                v,
                "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
            ) {
                return invalid(
                    "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
                );
            }
        }
        Kind::Str | Kind::List | Kind::Password => {}
        Kind::Double => {
            let Ok(d) = v.parse::<f64>() else {
                return invalid("Not a number of type DOUBLE");
            };
            let ratio = matches!(
                name,
                "min.cleanable.dirty.ratio" | "log.cleaner.min.cleanable.ratio"
            );
            if ratio && !(0.0..=1.0).contains(&d) {
                return invalid("Value must be no more than 1");
            }
        }
        Kind::Int => {
            let (declared, min, max) = bounds(name);
            let n = match declared {
                Declared::Int => match v.parse::<i32>() {
                    Ok(n) => n as i64,
                    Err(_) => return invalid("Not a number of type INT"),
                },
                Declared::Long => match v.parse::<i64>() {
                    Ok(n) => n,
                    Err(_) => return invalid("Not a number of type LONG"),
                },
            };
            if let Some(min) = min.filter(|m| n < *m) {
                return invalid(&format!("Value must be at least {min}"));
            }
            if let Some(max) = max.filter(|m| n > *m) {
                return invalid(&format!("Value must be no more than {max}"));
            }
        }
    }
    Ok(())
}

/// Kafka's LIST-typed configs among those Strata knows: the only ones APPEND and SUBTRACT
/// apply to.
pub fn is_list(kind: Kind) -> bool {
    matches!(kind, Kind::CleanupPolicy | Kind::List)
}

/// `listener.name.<listener>.<rest>` → (listener, rest), the listener lower-cased as Kafka
/// matches it.
pub fn split_listener_prefix(name: &str) -> Option<(String, &str)> {
    let rest = name.strip_prefix("listener.name.")?;
    let (listener, rest) = rest.split_once('.')?;
    (!listener.is_empty() && !rest.is_empty()).then(|| (listener.to_ascii_lowercase(), rest))
}

/// The property a listener-prefixed name sets: a known property, or a SASL mechanism's
/// own setting (`scram-sha-512.sasl.jaas.config`).
pub fn listener_property(rest: &str) -> Option<&'static Property> {
    let find = |n: &str| KAFKA_PROPERTIES.iter().find(|p| p.name == n);
    find(rest).or_else(|| {
        let (mechanism, tail) = rest.split_once('.')?;
        let known = [
            "plain",
            "scram-sha-256",
            "scram-sha-512",
            "oauthbearer",
            "gssapi",
        ];
        known
            .contains(&mechanism.to_ascii_lowercase().as_str())
            .then(|| find(tail))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_time_changes_are_checked_as_kafka_checks_them() {
        assert!(validate_value("retention.ms", Kind::Int, "-1").is_ok());
        let e = validate_value("retention.ms", Kind::Int, "-5").unwrap_err();
        assert_eq!(
            e,
            "Invalid value -5 for configuration retention.ms: Value must be at least -1"
        );
        assert!(validate_value("segment.bytes", Kind::Int, "4096").is_err());
        assert!(validate_value("segment.bytes", Kind::Int, "3000000000").is_err());
        assert!(validate_value("max.message.bytes", Kind::Int, "x").is_err());
        assert!(validate_value("cleanup.policy", Kind::CleanupPolicy, "compact,delete").is_ok());
        assert!(validate_value("cleanup.policy", Kind::CleanupPolicy, "forever").is_err());
        assert!(validate_value("message.timestamp.type", Kind::TimestampType, "Now").is_err());
        assert!(validate_value("min.cleanable.dirty.ratio", Kind::Double, "0.2").is_ok());
        assert!(validate_value("min.cleanable.dirty.ratio", Kind::Double, "2").is_err());
    }
}
