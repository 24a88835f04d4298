//! SASL on the broker's side: the mechanisms each listener offers, and the exchange a
//! connection goes through before its first real request (Kafka's `SaslServerAuthenticator`).
//!
//! Each mechanism is a small state machine fed the client's tokens one at a time (from
//! SaslAuthenticate, or from the raw frames of Kafka's pre-KIP-43 unframed exchange) and
//! answering with the next server token. An [`Authenticator`] per connection drives it:
//! before authentication only ApiVersions, SaslHandshake and SaslAuthenticate are served;
//! anything else closes the connection, as Kafka does. After authentication a SaslHandshake
//! starts a KIP-368 re-authentication, and a request arriving after the session expired
//! closes the connection.
//!
//! Owns `.strata/scram-credentials.json` through [`credentials`].

pub mod credentials;
pub mod jaas;
pub mod oauthbearer;
pub mod plain;
pub mod scram;

use super::{Principal, Session};
use crate::config::BrokerProps;
use credentials::ScramCredentials;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const PLAIN: &str = "PLAIN";
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
pub const SCRAM_SHA_512: &str = "SCRAM-SHA-512";
pub const OAUTHBEARER: &str = "OAUTHBEARER";
pub const GSSAPI: &str = "GSSAPI";

/// What one client token leads to.
#[derive(Debug)]
pub enum Step {
    /// Send this token and wait for the client's next one.
    Continue(Vec<u8>),
    /// Authenticated: send this (possibly empty) final token.
    Done {
        token: Vec<u8>,
        principal: Principal,
        /// When the credential itself expires (an OAUTHBEARER token's `exp`), in ms since
        /// the epoch; caps the session lifetime of KIP-368 re-authentication.
        expires_at_ms: Option<i64>,
    },
    /// Refused: the message goes to the client (SASL_AUTHENTICATION_FAILED); it must never
    /// contain the secret.
    Failed(String),
    /// Refused without telling the client why: it gets Kafka's generic "invalid
    /// credentials" message, the reason goes to the broker's log only.
    Rejected(String),
}

/// One authentication exchange of one mechanism.
pub trait Mechanism: Send {
    fn step(&mut self, client_token: &[u8]) -> Step;
    /// The user name the client claimed so far, for the log of a failed attempt.
    fn user(&self) -> Option<&str> {
        None
    }
}

/// Makes a fresh exchange of one mechanism; built once per listener from its config.
pub type MechanismFactory = Arc<dyn Fn() -> Box<dyn Mechanism> + Send + Sync>;

/// The mechanisms one listener offers, in `sasl.enabled.mechanisms` order, and each one's
/// `connections.max.reauth.ms`.
pub struct ListenerSasl {
    pub listener: String,
    mechanisms: Vec<(String, MechanismFactory, i64)>,
}

impl ListenerSasl {
    pub fn from_config(
        props: &BrokerProps,
        listener: &str,
        scram: &ScramCredentials,
    ) -> Result<Self, String> {
        let mut mechanisms = Vec::new();
        for name in props
            .for_listener(listener, "sasl.enabled.mechanisms")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let name = name.to_ascii_uppercase();
            let factory = mechanism_factory(props, listener, &name, scram).map_err(|e| {
                format!("listener {listener}: sasl.enabled.mechanisms names {name}: {e}")
            })?;
            let reauth = props
                .for_mechanism(listener, &name, "connections.max.reauth.ms")
                .trim()
                .parse::<i64>()
                .map_err(|_| {
                    format!(
                        "listener {listener}: connections.max.reauth.ms for {name} is not a number"
                    )
                })?;
            mechanisms.push((name, factory, reauth.max(0)));
        }
        if mechanisms.is_empty() {
            return Err(format!(
                "listener {listener} uses SASL but sasl.enabled.mechanisms is empty"
            ));
        }
        Ok(ListenerSasl {
            listener: listener.to_string(),
            mechanisms,
        })
    }

    pub fn enabled(&self) -> Vec<String> {
        self.mechanisms.iter().map(|(n, _, _)| n.clone()).collect()
    }

    fn find(&self, mechanism: &str) -> Option<&(String, MechanismFactory, i64)> {
        self.mechanisms.iter().find(|(n, _, _)| n == mechanism)
    }
}

/// One mechanism's factory for one listener: its users or validator are read once, here.
fn mechanism_factory(
    props: &BrokerProps,
    listener: &str,
    mechanism: &str,
    scram: &ScramCredentials,
) -> Result<MechanismFactory, String> {
    match mechanism {
        PLAIN => {
            let users = Arc::new(plain::PlainUsers::from_config(props, listener)?);
            Ok(Arc::new(move || Box::new(plain::PlainServer::new(users.clone()))))
        }
        SCRAM_SHA_256 | SCRAM_SHA_512 => {
            let hash = scram::ScramHash::for_mechanism(mechanism)
                .ok_or_else(|| format!("unknown SCRAM mechanism {mechanism}"))?;
            let store = scram.clone();
            Ok(Arc::new(move || {
                Box::new(scram::ScramServer::new(hash, store.clone()))
            }))
        }
        OAUTHBEARER => {
            let validator = oauthbearer::OAuthBearerValidator::from_props(props, listener)?;
            Ok(Arc::new(move || Box::new(validator.mechanism())))
        }
        GSSAPI => Err(
            "GSSAPI (Kerberos) is not supported by Strata; enable PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER instead"
                .into(),
        ),
        other => Err(format!(
            "unknown mechanism {other:?} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)"
        )),
    }
}

/// SASL for the whole broker: the SCRAM credentials every connection shares and each
/// listener's mechanisms, built once.
pub struct Sasl {
    props: BrokerProps,
    pub scram: ScramCredentials,
    /// Built on first use (or at start by [`Sasl::check_listener`]); a std `Mutex` suffices,
    /// it is held only to look up or insert an `Arc`.
    listeners: Mutex<HashMap<String, Arc<ListenerSasl>>>,
}

impl Sasl {
    pub fn new(props: BrokerProps, scram: ScramCredentials) -> Self {
        Sasl {
            props,
            scram,
            listeners: Mutex::new(HashMap::new()),
        }
    }

    /// The mechanisms of a listener, built from its config the first time.
    pub fn listener(&self, name: &str) -> Result<Arc<ListenerSasl>, String> {
        let mut map = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = map.get(name) {
            return Ok(l.clone());
        }
        let built = Arc::new(ListenerSasl::from_config(&self.props, name, &self.scram)?);
        map.insert(name.to_string(), built.clone());
        Ok(built)
    }

    /// Builds a SASL listener's mechanisms at start, so that a bad setting stops the broker
    /// instead of failing every client.
    pub fn check_listener(&self, name: &str) -> Result<(), String> {
        let l = self.listener(name)?;
        tracing::info!(listener = name, mechanisms = ?l.enabled(), "SASL enabled");
        Ok(())
    }
}

/// Creates the `scram_users` of the config that have no credential for their mechanism
/// yet; existing credentials (perhaps changed through the admin API since) are kept.
pub fn add_startup_users(
    scram: &ScramCredentials,
    users: &[crate::config::ScramUser],
) -> anyhow::Result<()> {
    let mut changes = Vec::new();
    for u in users {
        let mechanism = u.mechanism.trim().to_ascii_uppercase();
        let Some(hash) = scram::ScramHash::for_mechanism(&mechanism) else {
            anyhow::bail!(
                "scram_users: {}: unknown mechanism {:?} (SCRAM-SHA-256 or SCRAM-SHA-512)",
                u.name,
                u.mechanism
            );
        };
        if u.name.is_empty() {
            anyhow::bail!("scram_users: a user name must not be empty");
        }
        if u.iterations < hash.min_iterations() || u.iterations > scram::MAX_ITERATIONS {
            anyhow::bail!(
                "scram_users: {}: iterations must be between {} and {}",
                u.name,
                hash.min_iterations(),
                scram::MAX_ITERATIONS
            );
        }
        if scram.get(&u.name, &mechanism).is_some() {
            continue;
        }
        let credential =
            credentials::ScramCredential::from_password(hash, &u.password, u.iterations)?;
        tracing::info!(user = %u.name, %mechanism, "SCRAM user created from the config");
        changes.push(credentials::Change::Upsert {
            user: u.name.clone(),
            mechanism,
            credential,
        });
    }
    if !changes.is_empty() {
        scram.apply(&changes)?;
    }
    Ok(())
}

/// What the connection does with a request, as decided by SASL.
pub enum Gate {
    /// Not SASL's business: handle the request as usual.
    Pass,
    /// Send this answer and keep reading.
    Reply(ResponseKind),
    /// Send this answer, then close.
    ReplyAndClose(ResponseKind),
    /// Close without an answer.
    Close,
}

/// What the connection does with a raw token of the unframed exchange.
pub enum RawReply {
    /// Send these bytes, length-prefixed.
    Token(Vec<u8>),
    Close,
}

enum State {
    /// Before SaslHandshake: ApiVersions and SaslHandshake only.
    Handshake,
    /// After SaslHandshake v1+: tokens come in SaslAuthenticate requests.
    Authenticate,
    /// After SaslHandshake v0: tokens come as raw length-prefixed frames.
    Unframed,
    /// Authenticated; requests are served.
    Complete,
}

struct Exchange {
    mechanism: String,
    inner: Box<dyn Mechanism>,
    reauth_ms: i64,
    /// A re-authentication that asked for another mechanism than the first time: Kafka
    /// answers the handshake, then fails the first token with this message.
    bad_mechanism: Option<String>,
}

struct Authenticated {
    principal: Principal,
    mechanism: String,
    /// When the session ends unless the client re-authenticates (ms since the epoch).
    expires_at_ms: Option<i64>,
    /// Only a client that used SaslAuthenticate v1+ knows the session lifetime and can
    /// re-authenticate (KIP-368).
    can_reauthenticate: bool,
}

/// One connection's SASL state.
pub struct Authenticator {
    listener: Arc<ListenerSasl>,
    state: State,
    exchange: Option<Exchange>,
    done: Option<Authenticated>,
    /// Kafka answers one ApiVersions before the handshake; a second closes the connection.
    versions_answered: bool,
}

impl Authenticator {
    pub fn new(listener: Arc<ListenerSasl>) -> Self {
        Authenticator {
            listener,
            state: State::Handshake,
            exchange: None,
            done: None,
            versions_answered: false,
        }
    }

    /// Whether the next frame is a raw token of the unframed exchange, not a request.
    pub fn expects_raw_token(&self) -> bool {
        matches!(self.state, State::Unframed)
    }

    /// Kafka's `sasl.server.max.receive.size` applies until the first success.
    pub fn before_first_authentication(&self) -> bool {
        self.done.is_none()
    }

    /// Whether requests other than ApiVersions would be refused now.
    pub fn is_authenticating(&self) -> bool {
        !matches!(self.state, State::Complete)
    }

    fn authentication_text(&self) -> &'static str {
        if self.done.is_some() {
            "re-authentication"
        } else {
            "authentication"
        }
    }

    /// Decides what happens to a decoded request.
    pub fn on_request(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &RequestKind,
        session: &mut Session,
        now_ms: i64,
    ) -> Gate {
        match self.state {
            State::Handshake => match body {
                RequestKind::ApiVersions(_) if !self.versions_answered => {
                    self.versions_answered = true;
                    Gate::Pass
                }
                RequestKind::SaslHandshake(req) => {
                    self.handshake(version, req.mechanism.as_str(), session)
                }
                _ => {
                    tracing::info!(
                        client = %session.peer,
                        "failed authentication: unexpected Kafka request of type {api_key:?} during SASL handshake; closing"
                    );
                    Gate::Close
                }
            },
            State::Authenticate => match body {
                RequestKind::SaslAuthenticate(req) => {
                    self.authenticate(version, &req.auth_bytes, session, now_ms)
                }
                _ => {
                    tracing::info!(
                        client = %session.peer,
                        "failed authentication: unexpected Kafka request of type {api_key:?} during SASL {}; closing",
                        self.authentication_text()
                    );
                    Gate::Close
                }
            },
            // The connection reads raw tokens in this state; a decoded request cannot arrive.
            State::Unframed => Gate::Close,
            State::Complete => self.authenticated_request(api_key, version, body, session, now_ms),
        }
    }

    fn authenticated_request(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &RequestKind,
        session: &mut Session,
        now_ms: i64,
    ) -> Gate {
        let Some(done) = &self.done else {
            return Gate::Close;
        };
        if let RequestKind::SaslHandshake(req) = body {
            // KIP-368: a handshake on an authenticated connection starts a re-authentication,
            // for a client that knows how (else the handler answers ILLEGAL_SASL_STATE).
            if done.can_reauthenticate && version >= 1 {
                return self.handshake(version, req.mechanism.as_str(), session);
            }
            return Gate::Pass;
        }
        if let Some(expiry) = done.expires_at_ms {
            if now_ms >= expiry {
                tracing::info!(
                    client = %session.peer,
                    principal = %done.principal,
                    "SASL session expired without re-authentication; closing on {api_key:?} request"
                );
                return Gate::Close;
            }
        }
        Gate::Pass
    }

    fn enabled_str(&self) -> Vec<StrBytes> {
        self.listener
            .enabled()
            .into_iter()
            .map(StrBytes::from_string)
            .collect()
    }

    fn handshake(&mut self, version: i16, mechanism: &str, session: &Session) -> Gate {
        let mechanisms = self.enabled_str();
        let Some((name, factory, reauth_ms)) = self.listener.find(mechanism) else {
            tracing::info!(
                client = %session.peer,
                "failed authentication: unsupported SASL mechanism {mechanism:?}; closing"
            );
            let response = SaslHandshakeResponse::default()
                .with_error_code(ResponseError::UnsupportedSaslMechanism.code())
                .with_mechanisms(mechanisms);
            return Gate::ReplyAndClose(ResponseKind::SaslHandshake(response));
        };
        let bad_mechanism = self
            .done
            .as_ref()
            .filter(|d| d.mechanism != *name)
            .map(|d| {
                format!(
                    "SASL mechanism '{name}' requested by client is not supported for re-authentication of mechanism '{}'",
                    d.mechanism
                )
            });
        self.exchange = Some(Exchange {
            mechanism: name.clone(),
            inner: factory(),
            reauth_ms: *reauth_ms,
            bad_mechanism,
        });
        // The pre-KIP-43 exchange exists only for a first authentication.
        self.state = if version == 0 && self.done.is_none() {
            State::Unframed
        } else {
            State::Authenticate
        };
        Gate::Reply(ResponseKind::SaslHandshake(
            SaslHandshakeResponse::default().with_mechanisms(mechanisms),
        ))
    }

    /// Feeds one token to the mechanism: `Ok(token)` to send back, or `Err(message)` for
    /// the client after the attempt was logged.
    fn feed(
        &mut self,
        token: &[u8],
        session: &mut Session,
        now_ms: i64,
        can_reauthenticate: bool,
    ) -> Result<(Vec<u8>, i64), String> {
        let text = self.authentication_text();
        let Some(exchange) = self.exchange.as_mut() else {
            return Err(format!("Unexpected SASL token during {text}"));
        };
        let step = match &exchange.bad_mechanism {
            Some(message) => Step::Failed(message.clone()),
            None => exchange.inner.step(token),
        };
        let mechanism = exchange.mechanism.clone();
        let user = exchange.inner.user().unwrap_or("").to_string();
        let fail = |message: String, reason: &str| {
            tracing::warn!(
                client = %session.peer,
                user = %user,
                mechanism = %mechanism,
                "failed {text}: {reason}"
            );
            Err(message)
        };
        match step {
            Step::Continue(token) => Ok((token, 0)),
            Step::Failed(message) => fail(message.clone(), &message),
            Step::Rejected(reason) => fail(
                format!(
                    "Authentication failed during {text} due to invalid credentials with SASL mechanism {mechanism}"
                ),
                &reason,
            ),
            Step::Done {
                token,
                principal,
                expires_at_ms,
            } => {
                if let Some(previous) = &self.done {
                    if previous.principal != principal {
                        // Kafka's wording: type and name joined by a dot here.
                        let message = format!(
                            "Cannot change principals during re-authentication from {}.{}: {}.{}",
                            previous.principal.kind,
                            previous.principal.name,
                            principal.kind,
                            principal.name
                        );
                        return fail(message.clone(), &message);
                    }
                }
                let reauth_ms = exchange.reauth_ms;
                let lifetime = session_lifetime_ms(reauth_ms, expires_at_ms, now_ms);
                tracing::info!(
                    client = %session.peer,
                    principal = %principal,
                    mechanism = %mechanism,
                    session_lifetime_ms = lifetime,
                    "{text} succeeded"
                );
                session.principal = principal.clone();
                self.done = Some(Authenticated {
                    principal,
                    mechanism,
                    expires_at_ms: (reauth_ms > 0 || expires_at_ms.is_some())
                        .then_some(now_ms + lifetime),
                    can_reauthenticate,
                });
                self.exchange = None;
                self.state = State::Complete;
                Ok((token, lifetime))
            }
        }
    }

    fn authenticate(
        &mut self,
        version: i16,
        token: &[u8],
        session: &mut Session,
        now_ms: i64,
    ) -> Gate {
        match self.feed(token, session, now_ms, version >= 1) {
            Ok((token, lifetime)) => {
                let mut response = SaslAuthenticateResponse::default()
                    .with_error_message(None)
                    .with_auth_bytes(token.into());
                if version >= 1 {
                    response = response.with_session_lifetime_ms(lifetime);
                }
                Gate::Reply(ResponseKind::SaslAuthenticate(response))
            }
            Err(message) => Gate::ReplyAndClose(ResponseKind::SaslAuthenticate(
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            )),
        }
    }

    /// One raw token of the unframed exchange; a failure closes the connection without an
    /// answer, as Kafka does there.
    pub fn on_raw_token(&mut self, token: &[u8], session: &mut Session, now_ms: i64) -> RawReply {
        match self.feed(token, session, now_ms, false) {
            Ok((token, _)) => RawReply::Token(token),
            Err(_) => RawReply::Close,
        }
    }
}

/// Kafka's rule: `connections.max.reauth.ms`, capped by when the credential expires; 0 when
/// neither applies.
fn session_lifetime_ms(reauth_ms: i64, credential_expires_at_ms: Option<i64>, now_ms: i64) -> i64 {
    match (credential_expires_at_ms, reauth_ms > 0) {
        (None, false) => 0,
        (None, true) => reauth_ms,
        (Some(exp), false) => (exp - now_ms).max(0),
        (Some(exp), true) => (exp - now_ms).max(0).min(reauth_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Overrides};
    use kafka_protocol::messages::{
        MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
    };

    fn props(extra: &[&str]) -> BrokerProps {
        let mut properties = vec![
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"a-secret\" user_bob=\"b-secret\";".to_string(),
        ];
        properties.extend(extra.iter().map(|s| s.to_string()));
        Config::load(
            None,
            Overrides {
                properties,
                ..Default::default()
            },
        )
        .expect("config")
        .props
    }

    fn authenticator(extra: &[&str]) -> (Authenticator, Session) {
        let listener = ListenerSasl::from_config(
            &props(extra),
            "SASL_PLAINTEXT",
            &ScramCredentials::in_memory(),
        )
        .expect("listener");
        (
            Authenticator::new(Arc::new(listener)),
            Session::local("localhost", 9092),
        )
    }

    fn handshake(a: &mut Authenticator, s: &mut Session, mechanism: &str) -> Gate {
        let req = RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
        );
        a.on_request(ApiKey::SaslHandshake, 1, &req, s, 1000)
    }

    fn authenticate(
        a: &mut Authenticator,
        s: &mut Session,
        token: &'static [u8],
        now: i64,
    ) -> Gate {
        let req = RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from_static(token)),
        );
        a.on_request(ApiKey::SaslAuthenticate, 1, &req, s, now)
    }

    fn metadata(a: &mut Authenticator, s: &mut Session, now: i64) -> Gate {
        let req = RequestKind::Metadata(MetadataRequest::default());
        a.on_request(ApiKey::Metadata, 1, &req, s, now)
    }

    #[test]
    fn only_the_exchange_is_served_until_authenticated() {
        let (mut a, mut s) = authenticator(&[]);
        assert!(matches!(metadata(&mut a, &mut s, 1000), Gate::Close));
        let (mut a, mut s) = authenticator(&[]);
        assert!(matches!(handshake(&mut a, &mut s, "PLAIN"), Gate::Reply(_)));
        assert!(matches!(
            authenticate(&mut a, &mut s, b"\0alice\0a-secret", 1000),
            Gate::Reply(_)
        ));
        assert_eq!(s.principal.to_string(), "User:alice");
        assert!(matches!(metadata(&mut a, &mut s, 1000), Gate::Pass));
        // no session lifetime: never expires
        assert!(matches!(metadata(&mut a, &mut s, i64::MAX), Gate::Pass));
    }

    #[test]
    fn unknown_mechanisms_and_wrong_passwords_answer_then_close() {
        let (mut a, mut s) = authenticator(&[]);
        assert!(matches!(
            handshake(&mut a, &mut s, "GSSAPI"),
            Gate::ReplyAndClose(_)
        ));
        let (mut a, mut s) = authenticator(&[]);
        handshake(&mut a, &mut s, "PLAIN");
        match authenticate(&mut a, &mut s, b"\0alice\0nope", 1000) {
            Gate::ReplyAndClose(ResponseKind::SaslAuthenticate(r)) => {
                assert_eq!(r.error_code, ResponseError::SaslAuthenticationFailed.code());
            }
            _ => panic!("expected a failure answer"),
        }
        assert_eq!(s.principal, Principal::anonymous());
    }

    #[test]
    fn sessions_expire_and_reauthentication_keeps_the_principal() {
        let (mut a, mut s) = authenticator(&["connections.max.reauth.ms=500"]);
        handshake(&mut a, &mut s, "PLAIN");
        match authenticate(&mut a, &mut s, b"\0alice\0a-secret", 1000) {
            Gate::Reply(ResponseKind::SaslAuthenticate(r)) => {
                assert_eq!(r.session_lifetime_ms, 500)
            }
            _ => panic!("expected success"),
        }
        assert!(matches!(metadata(&mut a, &mut s, 1499), Gate::Pass));
        assert!(matches!(handshake(&mut a, &mut s, "PLAIN"), Gate::Reply(_)));
        assert!(matches!(
            authenticate(&mut a, &mut s, b"\0alice\0a-secret", 1400),
            Gate::Reply(_)
        ));
        assert!(matches!(metadata(&mut a, &mut s, 1899), Gate::Pass));
        assert!(matches!(metadata(&mut a, &mut s, 1900), Gate::Close));
        handshake(&mut a, &mut s, "PLAIN");
        assert!(matches!(
            authenticate(&mut a, &mut s, b"\0bob\0b-secret", 1950),
            Gate::ReplyAndClose(_)
        ));
    }

    #[test]
    fn one_api_versions_before_the_handshake_and_no_mechanism_change_on_reauthentication() {
        let (mut a, mut s) = authenticator(&["connections.max.reauth.ms=500"]);
        let versions = RequestKind::ApiVersions(Default::default());
        assert!(matches!(
            a.on_request(ApiKey::ApiVersions, 3, &versions, &mut s, 0),
            Gate::Pass
        ));
        assert!(matches!(
            a.on_request(ApiKey::ApiVersions, 3, &versions, &mut s, 0),
            Gate::Close
        ));
        let (mut a, mut s) = authenticator(&["connections.max.reauth.ms=500"]);
        handshake(&mut a, &mut s, "PLAIN");
        authenticate(&mut a, &mut s, b"\0alice\0a-secret", 1000);
        assert!(matches!(
            handshake(&mut a, &mut s, "SCRAM-SHA-256"),
            Gate::Reply(_)
        ));
        match authenticate(&mut a, &mut s, b"n,,n=alice,r=x", 1100) {
            Gate::ReplyAndClose(ResponseKind::SaslAuthenticate(r)) => assert_eq!(
                r.error_message.as_deref(),
                Some("SASL mechanism 'SCRAM-SHA-256' requested by client is not supported for re-authentication of mechanism 'PLAIN'")
            ),
            _ => panic!("expected a failure answer"),
        }
    }

    #[test]
    fn gssapi_and_unknown_mechanisms_stop_the_start() {
        for m in ["GSSAPI", "PLAIN,FOO"] {
            let p = props(&[&format!("sasl.enabled.mechanisms={m}")]);
            let e = ListenerSasl::from_config(&p, "SASL_PLAINTEXT", &ScramCredentials::in_memory())
                .err()
                .expect(m);
            assert!(e.contains("sasl.enabled.mechanisms"), "{e}");
        }
    }

    #[test]
    fn session_lifetime_is_the_smaller_of_reauth_and_credential_expiry() {
        assert_eq!(session_lifetime_ms(0, None, 1000), 0);
        assert_eq!(session_lifetime_ms(5000, None, 1000), 5000);
        assert_eq!(session_lifetime_ms(0, Some(4000), 1000), 3000);
        assert_eq!(session_lifetime_ms(5000, Some(4000), 1000), 3000);
        assert_eq!(session_lifetime_ms(2000, Some(4000), 1000), 2000);
        assert_eq!(session_lifetime_ms(2000, Some(500), 1000), 0);
    }
}
