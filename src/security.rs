//! Who is on the other end of a connection and how they got in: the listener and its
//! security protocol, the principal (from a TLS certificate or SASL), and later the
//! authorizer's verdicts. Kafka's names throughout, so that `User:alice` in an ACL means
//! what it means on a Kafka cluster.
//!
//! No files of its own.

pub mod sasl;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

/// Kafka's `KafkaPrincipal`: a type (always `User` for what Kafka's builders produce) and
/// a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    pub fn user(name: impl Into<String>) -> Self {
        Principal {
            kind: "User".into(),
            name: name.into(),
        }
    }
    /// What Kafka calls a client that neither TLS nor SASL identified.
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }
    /// `Type:name`, as ACLs and `super.users` write it; the name may contain colons.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.split_once(':')?;
        if kind.is_empty() {
            return None;
        }
        Some(Principal {
            kind: kind.into(),
            name: name.into(),
        })
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// Kafka's four security protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            other => Err(format!(
                "unknown security protocol {other:?} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
            )),
        }
    }
}

/// A listener as it runs: its name, its protocol, and the address clients that connected
/// to it are sent to (Metadata, FindCoordinator and DescribeCluster answer per listener).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub advertised_host: String,
    pub advertised_port: i32,
}

impl Listener {
    pub fn plaintext(advertised_host: &str, advertised_port: i32) -> Self {
        Listener {
            name: "PLAINTEXT".into(),
            protocol: SecurityProtocol::Plaintext,
            advertised_host: advertised_host.into(),
            advertised_port,
        }
    }
}

/// One connection's identity, read by every request on it.
#[derive(Clone, Debug)]
pub struct Session {
    pub listener: Arc<Listener>,
    pub peer: SocketAddr,
    /// The peer's address as Kafka reports it in group descriptions.
    pub client_host: String,
    /// `User:ANONYMOUS` until TLS or SASL says otherwise.
    pub principal: Principal,
}

impl Session {
    pub fn new(listener: Arc<Listener>, peer: SocketAddr) -> Self {
        Session {
            listener,
            peer,
            client_host: peer.ip().to_string(),
            principal: Principal::anonymous(),
        }
    }
    /// A plaintext session from the loopback address, for tests of handlers.
    pub fn local(broker_host: &str, broker_port: i32) -> Self {
        Self::new(
            Arc::new(Listener::plaintext(broker_host, broker_port)),
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_and_print_as_kafka_writes_them() {
        let p = Principal::parse("User:CN=alice,O=x:y").expect("parses");
        assert_eq!(p.kind, "User");
        assert_eq!(p.name, "CN=alice,O=x:y");
        assert_eq!(p.to_string(), "User:CN=alice,O=x:y");
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
        assert!(Principal::parse("alice").is_none());
        assert!(Principal::parse(":alice").is_none());
    }

    #[test]
    fn protocols_parse_case_insensitively() {
        assert_eq!(
            "sasl_ssl".parse::<SecurityProtocol>(),
            Ok(SecurityProtocol::SaslSsl)
        );
        assert!("TLS".parse::<SecurityProtocol>().is_err());
        assert!(SecurityProtocol::SaslSsl.uses_tls() && SecurityProtocol::SaslSsl.uses_sasl());
        assert!(!SecurityProtocol::Ssl.uses_sasl());
    }
}
