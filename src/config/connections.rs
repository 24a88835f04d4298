//! Connection limits, the idle timeout and the bound on request memory, from Kafka's
//! properties (`max.connections`, `max.connections.per.ip`,
//! `max.connections.per.ip.overrides`, `connections.max.idle.ms`,
//! `queued.max.request.bytes`), checked at start-up as Kafka's `KafkaConfig` checks them.
//!
//! No files.

use super::{BrokerProps, ConfigError};
use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

/// What the listeners and connections need to know about limits, resolved once.
#[derive(Clone, Debug, Default)]
pub struct ConnectionSettings {
    /// `max.connections`: client connections open at once, all listeners together.
    pub max_connections: usize,
    /// `max.connections.per.ip`: connections open at once from one address.
    pub max_per_ip: usize,
    /// `max.connections.per.ip.overrides`, host names resolved at start-up as Kafka does.
    pub per_ip_overrides: HashMap<IpAddr, usize>,
    /// `queued.max.request.bytes`; `None` when it is 0 or negative (unbounded, as in Kafka).
    pub queued_max_request_bytes: Option<usize>,
    /// `socket.request.max.bytes`: the largest frame read.
    pub socket_request_max_bytes: usize,
    /// `connections.max.idle.ms`; `None` when negative (never closed for idleness).
    pub max_idle: Option<Duration>,
}

impl ConnectionSettings {
    pub fn from_props(props: &BrokerProps) -> Result<Self, ConfigError> {
        let count = |name: &str| -> Result<usize, ConfigError> {
            let n = props.int(name);
            usize::try_from(n)
                .map_err(|_| ConfigError::Invalid(format!("{name} must be at least 0, not {n}")))
        };
        let max_connections = count("max.connections")?;
        let max_per_ip = count("max.connections.per.ip")?;
        let per_ip_overrides = parse_overrides(&props.get("max.connections.per.ip.overrides"))?;
        if max_per_ip == 0 && per_ip_overrides.is_empty() {
            return Err(ConfigError::Invalid(
                "max.connections.per.ip can be set to zero only if \
                 max.connections.per.ip.overrides is set"
                    .into(),
            ));
        }
        let socket_request_max_bytes = props.int("socket.request.max.bytes").max(0) as usize;
        let queued = props.int("queued.max.request.bytes");
        let queued_max_request_bytes = (queued > 0).then_some(queued as usize);
        if queued_max_request_bytes.is_some_and(|q| q < socket_request_max_bytes) {
            return Err(ConfigError::Invalid(
                "queued.max.request.bytes must be larger or equal to socket.request.max.bytes"
                    .into(),
            ));
        }
        let idle = props.int("connections.max.idle.ms");
        let max_idle = (idle >= 0).then(|| Duration::from_millis(idle as u64));
        let delay = props.int("connection.failed.authentication.delay.ms");
        if idle >= 0 && delay >= idle {
            return Err(ConfigError::Invalid(format!(
                "connection.failed.authentication.delay.ms={delay} should always be less than \
                 connections.max.idle.ms={idle} to prevent failed authentication responses \
                 from timing out"
            )));
        }
        Ok(ConnectionSettings {
            max_connections,
            max_per_ip,
            per_ip_overrides,
            queued_max_request_bytes,
            socket_request_max_bytes,
            max_idle,
        })
    }

    /// The most connections `ip` may have open at once.
    pub fn limit_for(&self, ip: IpAddr) -> usize {
        self.per_ip_overrides
            .get(&canonical(ip))
            .copied()
            .unwrap_or(self.max_per_ip)
    }
}

/// An IPv4 address seen through an IPv6 socket counts as the IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `host:count,host:count`, split at each entry's last colon so IPv6 addresses work, as
/// Kafka's `Csv.parseCsvMap` does; a later entry for the same address wins.
fn parse_overrides(text: &str) -> Result<HashMap<IpAddr, usize>, ConfigError> {
    let mut out = HashMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let invalid = |why: &str| {
            ConfigError::Invalid(format!(
                "max.connections.per.ip.overrides: {entry:?}: {why}"
            ))
        };
        let (host, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected host:count"))?;
        let (host, count) = (host.trim(), count.trim());
        let count: usize = count
            .parse()
            .map_err(|_| invalid("the count must be a number, at least 0"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => (host, 0)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip())
                .ok_or_else(|| invalid("the host name does not resolve"))?,
        };
        out.insert(canonical(ip), count);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};

    fn load(props: &[&str]) -> Result<Config, ConfigError> {
        Config::load(
            None,
            Overrides {
                properties: props.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn defaults_are_kafkas_except_the_request_memory_bound() {
        let c = load(&[]).expect("defaults");
        let s = &c.connections;
        assert_eq!(s.max_connections, i32::MAX as usize);
        assert_eq!(s.max_per_ip, i32::MAX as usize);
        assert!(s.per_ip_overrides.is_empty());
        assert_eq!(s.queued_max_request_bytes, Some(256 << 20));
        assert_eq!(s.max_idle, Some(Duration::from_millis(600_000)));
    }

    #[test]
    fn overrides_are_per_address_and_the_last_colon_splits() {
        let c = load(&[
            "max.connections.per.ip=10",
            "max.connections.per.ip.overrides=127.0.0.2:3, ::1:0,localhost:7,127.0.0.2:4",
        ])
        .expect("load");
        let s = &c.connections;
        assert_eq!(s.limit_for("127.0.0.2".parse().expect("ip")), 4);
        assert_eq!(s.limit_for("::1".parse().expect("ip")), 0);
        assert_eq!(s.limit_for("10.0.0.1".parse().expect("ip")), 10);
        // An IPv4 client on an IPv6 socket counts as its IPv4 address.
        assert_eq!(s.limit_for("::ffff:127.0.0.2".parse().expect("ip")), 4);
        assert!(load(&["max.connections.per.ip.overrides=127.0.0.1"]).is_err());
        assert!(load(&["max.connections.per.ip.overrides=127.0.0.1:x"]).is_err());
    }

    #[test]
    fn settings_kafka_refuses_are_refused() {
        let e = load(&["max.connections.per.ip=0"]).unwrap_err();
        assert!(
            e.to_string().contains("max.connections.per.ip.overrides"),
            "{e}"
        );
        assert!(load(&[
            "max.connections.per.ip=0",
            "max.connections.per.ip.overrides=10.0.0.1:5"
        ])
        .is_ok());
        let e = load(&["queued.max.request.bytes=1000"]).unwrap_err();
        assert!(e.to_string().contains("socket.request.max.bytes"), "{e}");
        let c = load(&["queued.max.request.bytes=-1"]).expect("unbounded");
        assert_eq!(c.connections.queued_max_request_bytes, None);
        let e = load(&["connections.max.idle.ms=50"]).unwrap_err();
        assert!(e.to_string().contains("connections.max.idle.ms"), "{e}");
        let c = load(&["connections.max.idle.ms=-1"]).expect("never idle");
        assert_eq!(c.connections.max_idle, None);
        assert!(load(&["max.connections=-3"]).is_err());
    }

    #[test]
    fn the_old_max_connections_key_still_sets_max_connections() {
        let c = load(&["max_connections=12"]).expect("load");
        assert_eq!(c.connections.max_connections, 12);
        let c = load(&["max_connections=12", "max.connections=20"]).expect("load");
        assert_eq!(c.connections.max_connections, 20);
    }
}
