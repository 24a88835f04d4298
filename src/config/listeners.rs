//! Kafka's listener settings: `listeners`, `advertised.listeners` and
//! `listener.security.protocol.map`, parsed and checked at start-up into the list of
//! sockets to bind and the address each one advertises.
//!
//! Without `listeners`, the `listen` / `advertised_listener` settings (flags
//! `--listen` / `--advertised-listener`) define one PLAINTEXT listener, as before.
//!
//! No files.

use super::ConfigError;
use crate::security::{Listener, SecurityProtocol};
use std::collections::BTreeMap;

/// One listener to bind: where, and what it tells clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Kafka's listener name, upper-cased as Kafka normalises it.
    pub name: String,
    pub protocol: SecurityProtocol,
    /// The address to bind; an empty host in `listeners` binds every interface.
    pub bind_host: String,
    pub bind_port: u16,
    pub advertised_host: String,
    pub advertised_port: i32,
}

impl ListenerConfig {
    /// `HOST:PORT` for `TcpListener::bind` (IPv6 hosts in brackets).
    pub fn bind_address(&self) -> String {
        if self.bind_host.contains(':') {
            format!("[{}]:{}", self.bind_host, self.bind_port)
        } else {
            format!("{}:{}", self.bind_host, self.bind_port)
        }
    }
    /// The listener as a connection sees it.
    pub fn runtime(&self) -> Listener {
        Listener {
            name: self.name.clone(),
            protocol: self.protocol,
            advertised_host: self.advertised_host.clone(),
            advertised_port: self.advertised_port,
        }
    }
}

/// A parsed `NAME://HOST:PORT` entry.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    name: String,
    host: String,
    port: u16,
}

/// Kafka's `listeners` grammar: `NAME://HOST:PORT`, the host possibly empty or an IPv6
/// address in brackets.
fn parse_endpoint(key: &str, entry: &str) -> Result<Endpoint, ConfigError> {
    let bad = |why: &str| {
        ConfigError::Invalid(format!("{key}: {entry:?} is not NAME://HOST:PORT ({why})"))
    };
    let (name, rest) = entry.split_once("://").ok_or_else(|| bad("no ://"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(bad("the listener name is empty"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(bad("a listener name has only letters, digits, _ and -"));
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    Ok(Endpoint {
        name: name.to_ascii_uppercase(),
        host: host.to_string(),
        port,
    })
}

fn parse_list(key: &str, value: &str) -> Result<Vec<Endpoint>, ConfigError> {
    let mut out: Vec<Endpoint> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let ep = parse_endpoint(key, entry)?;
        if out.iter().any(|o| o.name == ep.name) {
            return Err(ConfigError::Invalid(format!(
                "{key}: each listener must have a different name; {} appears twice",
                ep.name
            )));
        }
        out.push(ep);
    }
    Ok(out)
}

/// `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
fn parse_protocol_map(value: &str) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let key = "listener.security.protocol.map";
    let mut map = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, protocol) = entry.split_once(':').ok_or_else(|| {
            ConfigError::Invalid(format!("{key}: {entry:?} is not LISTENER_NAME:PROTOCOL"))
        })?;
        let protocol: SecurityProtocol = protocol
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("{key}: {entry:?}: {e}")))?;
        map.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(map)
}

fn legacy_endpoint(key: &str, value: &str) -> Result<Endpoint, ConfigError> {
    parse_endpoint(key, &format!("PLAINTEXT://{value}"))
}

/// The listeners to bind, in the order given.
///
/// * `listeners` set: those, and the legacy `listen` / `advertised_listener` are ignored
///   (the caller logs that they were).
/// * else one `PLAINTEXT` listener on `listen`, advertised as `advertised_listener`.
///
/// `advertised.listeners` overrides the advertised address per name; a listener it does not
/// name advertises its own address, `localhost` when bound to every interface.
pub fn resolve(
    listeners: &str,
    advertised: &str,
    protocol_map: &str,
    controller_names: &str,
    legacy_listen: &str,
    legacy_advertised: &str,
) -> Result<Vec<ListenerConfig>, ConfigError> {
    let map = parse_protocol_map(protocol_map)?;
    let controllers: Vec<String> = controller_names
        .split(',')
        .map(|n| n.trim().to_ascii_uppercase())
        .filter(|n| !n.is_empty())
        .collect();
    let (mut binds, mut adv) = if listeners.trim().is_empty() {
        let bind = legacy_endpoint("listen", legacy_listen)?;
        let adv = legacy_endpoint("advertised_listener", legacy_advertised)?;
        (vec![bind], BTreeMap::from([(adv.name.clone(), adv)]))
    } else {
        (parse_list("listeners", listeners)?, BTreeMap::new())
    };
    // Kafka's KRaft controller endpoints: there is no controller quorum to serve here.
    binds.retain(|b| {
        let controller = controllers.contains(&b.name);
        if controller {
            tracing::info!(
                listener = %b.name,
                "not binding a listener named in controller.listener.names: a single broker \
                 has no controller quorum"
            );
        }
        !controller
    });
    if binds.is_empty() {
        return Err(ConfigError::Invalid(
            "listeners: at least one listener (not a controller listener) is needed".into(),
        ));
    }
    for ep in parse_list("advertised.listeners", advertised)? {
        if !binds.iter().any(|b| b.name == ep.name) {
            return Err(ConfigError::Invalid(format!(
                "advertised.listeners: listener {} is not in listeners; advertised listener \
                 names must be a subset of the listeners' names",
                ep.name
            )));
        }
        if ep.host == "0.0.0.0" || ep.host == "::" || ep.host.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "advertised.listeners: {} cannot use the nonroutable meta-address {:?}; \
                 give the host name or address clients connect to",
                ep.name, ep.host
            )));
        }
        adv.insert(ep.name.clone(), ep);
    }
    let mut out = Vec::with_capacity(binds.len());
    for b in &binds {
        let protocol = *map.get(&b.name).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "listener.security.protocol.map: no security protocol defined for listener {} \
                 (add {}:PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)",
                b.name, b.name
            ))
        })?;
        if b.port != 0 {
            if let Some(other) = out.iter().find(|o: &&ListenerConfig| o.bind_port == b.port) {
                return Err(ConfigError::Invalid(format!(
                    "listeners: {} and {} both use port {}; each listener must have a \
                     different port",
                    other.name, b.name, b.port
                )));
            }
        }
        let (advertised_host, advertised_port) = match adv.remove(&b.name) {
            Some(a) => (a.host, a.port),
            None if b.host.is_empty() || b.host == "0.0.0.0" || b.host == "::" => {
                ("localhost".to_string(), b.port)
            }
            None => (b.host.clone(), b.port),
        };
        out.push(ListenerConfig {
            name: b.name.clone(),
            protocol,
            bind_host: if b.host.is_empty() {
                "0.0.0.0".into()
            } else {
                b.host.clone()
            },
            bind_port: b.port,
            advertised_host,
            advertised_port: advertised_port as i32,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

    #[test]
    fn without_listeners_the_legacy_flags_make_one_plaintext_listener() {
        let l = resolve("", "", MAP, "", "0.0.0.0:9092", "localhost:9092").expect("ok");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name, "PLAINTEXT");
        assert_eq!(l[0].bind_address(), "0.0.0.0:9092");
        assert_eq!(
            (l[0].advertised_host.as_str(), l[0].advertised_port),
            ("localhost", 9092)
        );
    }

    #[test]
    fn several_listeners_advertise_per_name() {
        let l = resolve(
            "PLAINTEXT://127.0.0.1:9092,ssl://:9093,INTERNAL://[::1]:9094",
            "SSL://broker.example:19093",
            &format!("{MAP},INTERNAL:SASL_PLAINTEXT"),
            "",
            "ignored:1",
            "ignored:1",
        )
        .expect("ok");
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].advertised_host, "127.0.0.1");
        assert_eq!(l[1].name, "SSL");
        assert_eq!(l[1].protocol, SecurityProtocol::Ssl);
        assert_eq!(l[1].bind_address(), "0.0.0.0:9093");
        assert_eq!(
            (l[1].advertised_host.as_str(), l[1].advertised_port),
            ("broker.example", 19093)
        );
        assert_eq!(l[2].protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(l[2].bind_address(), "[::1]:9094");
    }

    #[test]
    fn controller_listeners_of_a_kraft_config_are_not_bound() {
        let l = resolve(
            "PLAINTEXT://:9092,CONTROLLER://:9093",
            "PLAINTEXT://kafka:9092",
            &format!("{MAP},CONTROLLER:PLAINTEXT"),
            "CONTROLLER",
            "",
            "",
        )
        .expect("ok");
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].advertised_host, "kafka");
    }

    #[test]
    fn a_listener_without_a_protocol_is_an_error_naming_it() {
        let err = resolve("CLIENT://:9092", "", MAP, "", "", "").unwrap_err();
        assert!(
            err.to_string().contains("listener.security.protocol.map"),
            "{err}"
        );
        assert!(err.to_string().contains("CLIENT"), "{err}");
    }

    #[test]
    fn bad_entries_are_errors_naming_the_key() {
        for (listeners, advertised, key) in [
            ("PLAINTEXT://localhost", "", "listeners"),
            ("PLAINTEXT://:9092,PLAINTEXT://:9093", "", "listeners"),
            ("PLAINTEXT://:9092,SSL://:9092", "", "listeners"),
            ("PLAINTEXT://:9092", "SSL://h:1", "advertised.listeners"),
            (
                "PLAINTEXT://:9092",
                "PLAINTEXT://0.0.0.0:1",
                "advertised.listeners",
            ),
        ] {
            let err = resolve(listeners, advertised, MAP, "", "", "").unwrap_err();
            assert!(err.to_string().starts_with(key), "{listeners}: {err}");
        }
        let err = resolve("", "", "PLAINTEXT:TLS", "", "0.0.0.0:1", "h:1").unwrap_err();
        assert!(
            err.to_string().contains("listener.security.protocol.map"),
            "{err}"
        );
    }
}
