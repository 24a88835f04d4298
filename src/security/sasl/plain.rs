//! SASL/PLAIN (RFC 4616) as Kafka's `PlainSaslServer` with its default callback handler:
//! users and passwords from the `user_<name>="<password>"` options of the listener's JAAS
//! config (`listener.name.<listener>.plain.sasl.jaas.config`, else `sasl.jaas.config`).
//!
//! No files.

use super::{jaas, Mechanism, Step, PLAIN};
use crate::config::BrokerProps;
use crate::security::Principal;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// The users one listener accepts with PLAIN.
pub struct PlainUsers {
    passwords: HashMap<String, String>,
}

impl std::fmt::Debug for PlainUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainUsers")
            .field("users", &self.passwords.len())
            .finish()
    }
}

impl PlainUsers {
    pub fn from_config(props: &BrokerProps, listener: &str) -> Result<Self, String> {
        let text = props.for_mechanism(listener, PLAIN, "sasl.jaas.config");
        if text.trim().is_empty() {
            tracing::warn!(
                listener,
                "PLAIN is enabled but no sasl.jaas.config names its users; every PLAIN login will fail"
            );
            return Ok(PlainUsers {
                passwords: HashMap::new(),
            });
        }
        let module = jaas::parse(&text)?;
        let passwords = module
            .options
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("user_").map(|u| (u.to_string(), v)))
            .collect();
        Ok(PlainUsers { passwords })
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        PlainUsers {
            passwords: pairs
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
        }
    }

    /// Compares in constant time (over digests, so lengths leak nothing either); an
    /// unknown user costs the same as a wrong password.
    fn check(&self, user: &str, password: &[u8]) -> bool {
        let expected = self.passwords.get(user);
        let want = Sha256::digest(expected.map(String::as_bytes).unwrap_or(b"\0unknown"));
        let got = Sha256::digest(password);
        let diff = want
            .iter()
            .zip(got.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        expected.is_some() && diff == 0
    }
}

/// One PLAIN exchange: a single client message `authzid NUL authcid NUL passwd`.
pub struct PlainServer {
    users: Arc<PlainUsers>,
    user: Option<String>,
}

impl PlainServer {
    pub fn new(users: Arc<PlainUsers>) -> Self {
        PlainServer { users, user: None }
    }
}

impl Mechanism for PlainServer {
    fn step(&mut self, token: &[u8]) -> Step {
        let parts: Vec<&[u8]> = token.split(|&b| b == 0).collect();
        if parts.len() != 3 {
            return Step::Rejected(format!(
                "invalid SASL/PLAIN response: expected 3 tokens, got {}",
                parts.len()
            ));
        }
        let (Ok(authzid), Ok(user)) =
            (std::str::from_utf8(parts[0]), std::str::from_utf8(parts[1]))
        else {
            return Step::Rejected("SASL/PLAIN names are not UTF-8".into());
        };
        self.user = Some(user.to_string());
        if user.is_empty() {
            return Step::Rejected("username not specified".into());
        }
        if parts[2].is_empty() {
            return Step::Rejected("password not specified".into());
        }
        if !self.users.check(user, parts[2]) {
            return Step::Failed("Authentication failed: Invalid username or password".into());
        }
        if !authzid.is_empty() && authzid != user {
            return Step::Failed(
                "Authentication failed: Client requested an authorization id that is different from username"
                    .into(),
            );
        }
        Step::Done {
            token: Vec::new(),
            principal: Principal::user(user),
            expires_at_ms: None,
        }
    }

    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> PlainServer {
        PlainServer::new(Arc::new(PlainUsers::from_pairs(&[(
            "alice",
            "alice-secret",
        )])))
    }

    #[test]
    fn the_right_password_authenticates_the_user() {
        match server().step(b"\0alice\0alice-secret") {
            Step::Done { principal, .. } => assert_eq!(principal.to_string(), "User:alice"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            server().step(b"alice\0alice\0alice-secret"),
            Step::Done { .. }
        ));
    }

    #[test]
    fn wrong_passwords_unknown_users_and_foreign_authzids_fail() {
        for token in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0alice-secret",
            b"\0alice\0alice-secre",
        ] {
            match server().step(token) {
                Step::Failed(m) => {
                    assert_eq!(m, "Authentication failed: Invalid username or password")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            server().step(b"bob\0alice\0alice-secret"),
            Step::Failed(m) if m.contains("authorization id")
        ));
        for token in [&b"alice\0alice-secret"[..], b"\0\0x", b"\0alice\0"] {
            assert!(matches!(server().step(token), Step::Rejected(_)));
        }
    }
}
