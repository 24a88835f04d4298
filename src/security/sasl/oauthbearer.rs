//! SASL/OAUTHBEARER (RFC 7628, Kafka's KIP-255): the client sends a bearer token — a JWT —
//! in its initial response and the broker validates it, the way Kafka's
//! `OAuthBearerSaslServer` and its two stock validators do:
//!
//! - with `sasl.oauthbearer.jwks.endpoint.url` set, signed tokens are checked against the
//!   identity provider's keys (JWKS, fetched from `https://`/`http://` or read from a
//!   `file:` URL, refreshed in the background every
//!   `sasl.oauthbearer.jwks.endpoint.refresh.ms` and when a token names an unknown `kid`),
//!   with `exp`, `iat`, `nbf`, issuer and audience checks (Kafka's `BrokerJwtValidator`);
//! - without it, Kafka's default `OAuthBearerUnsecuredValidatorCallbackHandler`: unsigned
//!   (`alg: none`) tokens, with its `unsecuredValidator*` JAAS options. Development only.
//!
//! A refused token is answered with RFC 7628's error JSON as a server challenge; the client
//! acknowledges with `\x01` and only then is the exchange failed with that JSON as the
//! message (SASL_AUTHENTICATION_FAILED). The reason itself goes to the broker's log.
//!
//! Reads the JWKS file a `file:` URL names; no files of its own.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::sync::Notify;

use super::{jaas, Mechanism, Step};
use crate::config::BrokerProps;
use crate::security::Principal;

pub const MECHANISM: &str = super::OAUTHBEARER;

/// Longest client initial response read; real tokens are a few kB.
const MAX_CLIENT_RESPONSE: usize = 64 * 1024;
/// Longest JWKS document accepted from the endpoint or the file.
const MAX_JWKS_BYTES: u64 = 1 << 20;
/// How long one JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest time between two fetches a token's unknown `kid` can trigger, so that a stream of
/// made-up key ids cannot hammer the identity provider.
const MIN_EXPEDITED_GAP: Duration = Duration::from_secs(1);
/// Kafka's limits on the unknown key ids it remembers (RefreshingHttpsJwks): each one asks
/// for a refresh at most once a minute.
const MISSING_KID_TTL: Duration = Duration::from_secs(60);
const MISSING_KID_MAX: usize = 16;
const MISSING_KID_MAX_LEN: usize = 1000;

const UNSECURED_HANDLER: &str =
    "org.apache.kafka.common.security.oauthbearer.internals.unsecured.OAuthBearerUnsecuredValidatorCallbackHandler";
const SECURED_HANDLER: &str =
    "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler";
const SECURED_HANDLER_OLD: &str =
    "org.apache.kafka.common.security.oauthbearer.secured.OAuthBearerValidatorCallbackHandler";

/// The client's first message: `n,[a=authzid],\x01auth=Bearer <token>\x01[key=value\x01]*\x01`.
#[derive(Debug, PartialEq, Eq)]
pub struct ClientInitialResponse {
    pub authzid: String,
    pub token: String,
    /// SASL extensions (KIP-342); accepted and not interpreted, as Kafka's stock validators do.
    pub extensions: BTreeMap<String, String>,
}

impl ClientInitialResponse {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        const INVALID: &str = "Invalid OAUTHBEARER client first message";
        if bytes.len() > MAX_CLIENT_RESPONSE {
            return Err(format!(
                "{INVALID}: longer than {MAX_CLIENT_RESPONSE} bytes"
            ));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| INVALID.to_string())?;
        if !s.is_ascii() {
            return Err(INVALID.into());
        }
        let rest = s
            .strip_prefix("n,")
            .ok_or_else(|| format!("{INVALID}: no GS2 header"))?;
        let (authz, rest) = rest
            .split_once(',')
            .ok_or_else(|| format!("{INVALID}: no GS2 header"))?;
        let authzid = if authz.is_empty() {
            String::new()
        } else {
            let name = authz
                .strip_prefix("a=")
                .ok_or_else(|| format!("{INVALID}: bad authorization id"))?;
            decode_saslname(name).ok_or_else(|| format!("{INVALID}: bad authorization id"))?
        };
        let body = rest
            .strip_prefix('\x01')
            .and_then(|r| r.strip_suffix('\x01'))
            .ok_or_else(|| format!("{INVALID}: missing \\x01 separators"))?;
        let mut pairs = BTreeMap::new();
        if !body.is_empty() {
            let body = body
                .strip_suffix('\x01')
                .ok_or_else(|| format!("{INVALID}: missing \\x01 separators"))?;
            for pair in body.split('\x01') {
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("{INVALID}: bad key/value pair"))?;
                let key_ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphabetic());
                let value_ok = !v.is_empty()
                    && v.bytes()
                        .all(|b| (0x21..=0x7e).contains(&b) || b" \t\r\n".contains(&b));
                if !key_ok || !value_ok {
                    return Err(format!("{INVALID}: bad key/value pair"));
                }
                pairs.insert(k.to_string(), v.to_string());
            }
        }
        let auth = pairs
            .remove("auth")
            .ok_or_else(|| format!("{INVALID}: 'auth' not specified"))?;
        let (scheme, token) = auth
            .split_once(' ')
            .ok_or_else(|| format!("{INVALID}: invalid 'auth' format"))?;
        let token = token.trim_start_matches(' ');
        let scheme_ok = !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let token_ok = !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !scheme_ok || !token_ok {
            return Err(format!("{INVALID}: invalid 'auth' format"));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "Invalid scheme in OAUTHBEARER client first message: {scheme}"
            ));
        }
        Ok(ClientInitialResponse {
            authzid,
            token: token.to_string(),
            extensions: pairs,
        })
    }
}

/// RFC 5802's saslname: `,` and `=` travel as `=2C` and `=3D`.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("=2C") {
            out.push(',');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("=3D") {
            out.push('=');
            rest = r;
        } else if c == '=' || c == ',' || c == '\0' {
            return None;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    (!out.is_empty()).then_some(out)
}

/// A token the validator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub principal: String,
    pub expires_at_ms: i64,
    pub scope: Vec<String>,
}

/// A token the validator refused: the RFC 7628 status (and scope) for the client, the
/// reason for the broker's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub status: &'static str,
    pub scope: Option<String>,
    pub reason: String,
}

impl Rejected {
    fn invalid(reason: impl Into<String>) -> Self {
        Rejected {
            status: "invalid_token",
            scope: None,
            reason: reason.into(),
        }
    }
    /// The server challenge, byte for byte as Kafka's `jsonErrorResponse` writes it.
    pub fn json(&self) -> String {
        let mut s = format!("{{\"status\":\"{}\"", self.status);
        if let Some(scope) = &self.scope {
            s.push_str(&format!(", \"scope\":\"{scope}\""));
        }
        s.push('}');
        s
    }
}

/// Token validation for one listener, built once from the broker's properties and shared
/// by every connection's exchange.
pub struct OAuthBearerValidator {
    listener: String,
    mode: Mode,
}

enum Mode {
    Unsecured(Unsecured),
    Secured(Secured),
}

/// Kafka's `OAuthBearerUnsecuredValidatorCallbackHandler` options.
struct Unsecured {
    principal_claim: String,
    scope_claim: String,
    required_scope: Vec<String>,
    skew_ms: i64,
}

/// Kafka's `BrokerJwtValidator` settings.
struct Secured {
    jwks: Arc<Jwks>,
    expected_issuer: Option<String>,
    expected_audience: Vec<String>,
    sub_claim: String,
    scope_claim: String,
    skew_ms: i64,
}

impl std::fmt::Debug for OAuthBearerValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.mode {
            Mode::Unsecured(_) => "unsecured".to_string(),
            Mode::Secured(s) => format!("jwks {}", s.jwks.source),
        };
        f.debug_struct("OAuthBearerValidator")
            .field("listener", &self.listener)
            .field("mode", &mode)
            .finish()
    }
}

impl OAuthBearerValidator {
    /// Reads the listener's OAUTHBEARER settings (`listener.name.<l>.oauthbearer.<name>`,
    /// then `listener.name.<l>.<name>`, then `<name>`). A `file:` JWKS is read here, so a
    /// missing or broken file stops start-up; an HTTP(S) JWKS is fetched by a background
    /// task on the current tokio runtime, started here.
    pub fn from_props(props: &BrokerProps, listener: &str) -> Result<Arc<Self>, String> {
        let get = |name: &str| props.for_mechanism(listener, MECHANISM, name);
        let url = get("sasl.oauthbearer.jwks.endpoint.url").trim().to_string();
        let handler = get("sasl.server.callback.handler.class").trim().to_string();
        let secured = match handler.as_str() {
            "" => !url.is_empty(),
            UNSECURED_HANDLER => false,
            SECURED_HANDLER | SECURED_HANDLER_OLD => {
                if url.is_empty() {
                    return Err(format!(
                        "listener {listener}: {handler} needs sasl.oauthbearer.jwks.endpoint.url"
                    ));
                }
                true
            }
            other => {
                return Err(format!(
                    "listener {listener}: sasl.server.callback.handler.class {other} is not \
                     supported for OAUTHBEARER (set sasl.oauthbearer.jwks.endpoint.url for \
                     signed tokens, or leave it unset for unsecured ones)"
                ))
            }
        };
        let mode = if secured {
            let int = |name: &str| -> Result<i64, String> {
                let v = get(name);
                v.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| {
                        format!(
                            "listener {listener}: {name} must be a non-negative integer, not {v:?}"
                        )
                    })
            };
            let source = JwksSource::parse(&url).map_err(|e| {
                format!("listener {listener}: sasl.oauthbearer.jwks.endpoint.url: {e}")
            })?;
            let jwks = Jwks::start(
                source,
                Duration::from_millis(int("sasl.oauthbearer.jwks.endpoint.refresh.ms")? as u64),
                Duration::from_millis(
                    int("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms")?.max(1) as u64,
                ),
                Duration::from_millis(
                    int("sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms")?.max(1) as u64,
                ),
            )
            .map_err(|e| format!("listener {listener}: {e}"))?;
            let issuer = get("sasl.oauthbearer.expected.issuer").trim().to_string();
            let non_empty = |v: String, default: &str| {
                let v = v.trim().to_string();
                if v.is_empty() {
                    default.to_string()
                } else {
                    v
                }
            };
            Mode::Secured(Secured {
                jwks,
                expected_issuer: (!issuer.is_empty()).then_some(issuer),
                expected_audience: get("sasl.oauthbearer.expected.audience")
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                sub_claim: non_empty(get("sasl.oauthbearer.sub.claim.name"), "sub"),
                scope_claim: non_empty(get("sasl.oauthbearer.scope.claim.name"), "scope"),
                skew_ms: int("sasl.oauthbearer.clock.skew.seconds")?.saturating_mul(1000),
            })
        } else {
            let jaas_config = get("sasl.jaas.config");
            let options = if jaas_config.trim().is_empty() {
                BTreeMap::new()
            } else {
                jaas::parse(&jaas_config)
                    .map_err(|e| format!("listener {listener}: OAUTHBEARER sasl.jaas.config: {e}"))?
                    .options
            };
            let unsecured = Unsecured::from_options(&options)
                .map_err(|e| format!("listener {listener}: OAUTHBEARER sasl.jaas.config: {e}"))?;
            tracing::warn!(
                listener,
                "OAUTHBEARER on this listener accepts UNSIGNED tokens (alg none), as Kafka's \
                 default unsecured validator does: anyone can claim any principal. Set \
                 sasl.oauthbearer.jwks.endpoint.url to validate signed tokens"
            );
            Mode::Unsecured(unsecured)
        };
        Ok(Arc::new(OAuthBearerValidator {
            listener: listener.to_string(),
            mode,
        }))
    }

    /// Whether tokens must be signed (a JWKS is configured).
    pub fn is_secured(&self) -> bool {
        matches!(self.mode, Mode::Secured(_))
    }

    /// A fresh exchange for one connection (or one re-authentication).
    pub fn mechanism(self: &Arc<Self>) -> OAuthBearer {
        OAuthBearer {
            validator: Arc::clone(self),
            error: None,
        }
    }

    pub fn validate(&self, token: &str, now_ms: i64) -> Result<Accepted, Rejected> {
        match &self.mode {
            Mode::Unsecured(u) => u.validate(token, now_ms),
            Mode::Secured(s) => s.validate(token, now_ms).map_err(Rejected::invalid),
        }
    }

    /// Re-reads or re-fetches the JWKS now (no-op in unsecured mode).
    pub async fn refresh_keys(&self) -> Result<usize, String> {
        match &self.mode {
            Mode::Unsecured(_) => Ok(0),
            Mode::Secured(s) => s.jwks.refresh_now().await,
        }
    }
}

/// One authentication exchange.
pub struct OAuthBearer {
    validator: Arc<OAuthBearerValidator>,
    /// The error JSON sent as a challenge, awaiting the client's `\x01`.
    error: Option<String>,
}

impl Mechanism for OAuthBearer {
    fn step(&mut self, client_token: &[u8]) -> Step {
        if client_token == [0x01] {
            if let Some(error) = self.error.take() {
                return Step::Failed(error);
            }
        }
        self.error = None;
        let listener = self.validator.listener.as_str();
        let response = match ClientInitialResponse::parse(client_token) {
            Ok(r) => r,
            // Kafka throws a plain SaslException here: the client gets the generic message.
            Err(reason) => return Step::Rejected(reason),
        };
        match self
            .validator
            .validate(&response.token, crate::clock::now_ms())
        {
            Err(rejected) => {
                tracing::warn!(
                    listener,
                    reason = %rejected.reason,
                    "OAUTHBEARER token refused"
                );
                let json = rejected.json();
                self.error = Some(json.clone());
                Step::Continue(json.into_bytes())
            }
            Ok(accepted) => {
                if !response.authzid.is_empty() && response.authzid != accepted.principal {
                    return Step::Failed(format!(
                        "Authentication failed: Client requested an authorization id ({}) that \
                         is different from the token's principal name ({})",
                        response.authzid, accepted.principal
                    ));
                }
                // The scope is the token's, as Kafka's validators read it; no ACL looks at it.
                tracing::debug!(
                    listener,
                    principal = %accepted.principal,
                    scope = %accepted.scope.join(" "),
                    "OAUTHBEARER token accepted"
                );
                Step::Done {
                    token: Vec::new(),
                    principal: Principal::user(accepted.principal),
                    expires_at_ms: Some(accepted.expires_at_ms),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// JWT pieces

/// A JWT's three parts, decoded.
struct Jwt<'a> {
    header: serde_json::Map<String, Value>,
    claims: serde_json::Map<String, Value>,
    /// `header.claims`, the signed bytes.
    signing_input: &'a str,
    signature: &'a str,
}

fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(s))
        .ok()
}

fn json_object(part: &str, what: &str) -> Result<serde_json::Map<String, Value>, String> {
    let bytes =
        b64url_decode(part).ok_or_else(|| format!("malformed Base64 URL encoded {what}"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(format!("malformed JSON in the {what}")),
    }
}

impl<'a> Jwt<'a> {
    fn split(token: &'a str) -> Result<Self, String> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("a JWT must have 3 dot-separated Base64URL-encoded parts".into());
        };
        Ok(Jwt {
            header: json_object(h, "header")?,
            claims: json_object(c, "claims")?,
            signing_input: &token[..h.len() + 1 + c.len()],
            signature: sig,
        })
    }

    /// A NumericDate claim in ms; `Err` if present but not a number.
    fn time_claim(&self, name: &str) -> Result<Option<i64>, String> {
        match self.claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() => Ok(Some((f * 1000.0).round() as i64)),
                _ => Err(format!("the '{name}' claim is not a usable number")),
            },
            Some(_) => Err(format!("the '{name}' claim is not a number")),
        }
    }

    fn scope(&self, claim: &str) -> Vec<String> {
        match self.claims.get(claim) {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Unsecured {
    fn from_options(options: &BTreeMap<String, String>) -> Result<Self, String> {
        let opt = |k: &str| options.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let skew_ms = match opt("unsecuredValidatorAllowableClockSkewMs") {
            None => 0,
            Some(v) => match v.parse::<i32>() {
                Ok(n) if n >= 0 => n as i64,
                _ => {
                    return Err(format!(
                        "unsecuredValidatorAllowableClockSkewMs must be a non-negative integer, not {v:?}"
                    ))
                }
            },
        };
        Ok(Unsecured {
            principal_claim: opt("unsecuredValidatorPrincipalClaimName")
                .unwrap_or("sub")
                .to_string(),
            scope_claim: opt("unsecuredValidatorScopeClaimName")
                .unwrap_or("scope")
                .to_string(),
            required_scope: opt("unsecuredValidatorRequiredScope")
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            skew_ms,
        })
    }

    /// Kafka's `OAuthBearerUnsecuredJws` parse plus the validator handler's checks, in its
    /// order.
    fn validate(&self, token: &str, now_ms: i64) -> Result<Accepted, Rejected> {
        if token.contains("..") {
            return Err(Rejected::invalid(
                "Malformed compact serialization contains '..'",
            ));
        }
        let jwt = Jwt::split(token).map_err(Rejected::invalid)?;
        match jwt.header.get("alg") {
            Some(Value::String(a)) if a == "none" => {}
            Some(_) => {
                return Err(Rejected::invalid(
                    "Unsecured JWS must have 'none' for an algorithm (this listener has no \
                     sasl.oauthbearer.jwks.endpoint.url to check signed tokens with)",
                ))
            }
            None => return Err(Rejected::invalid("JWS header must have an Algorithm value")),
        }
        if !jwt.signature.is_empty() {
            return Err(Rejected::invalid(
                "Unsecured JWS must not contain a digital signature",
            ));
        }
        let scope = jwt.scope(&self.scope_claim);
        let exp = jwt
            .time_claim("exp")
            .map_err(Rejected::invalid)?
            .ok_or_else(|| Rejected::invalid("No expiration time in JWT"))?;
        let principal = match jwt.claims.get(&self.principal_claim) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) | None => {
                return Err(Rejected::invalid(format!(
                    "No principal name in JWT claim: {}",
                    self.principal_claim
                )))
            }
            Some(_) => {
                return Err(Rejected::invalid(format!(
                    "The '{}' claim was not of type String",
                    self.principal_claim
                )))
            }
        };
        let iat = jwt.time_claim("iat").map_err(Rejected::invalid)?;
        if let Some(iat) = iat {
            if iat > now_ms.saturating_add(self.skew_ms) {
                return Err(Rejected::invalid(format!(
                    "The Issued At value ({iat} ms) was after the indicated time ({now_ms} ms) \
                     plus allowable clock skew ({} ms)",
                    self.skew_ms
                )));
            }
        }
        if now_ms.saturating_sub(self.skew_ms) >= exp {
            return Err(Rejected::invalid(format!(
                "The indicated time ({now_ms} ms) minus allowable clock skew ({} ms) was on or \
                 after the Expiration Time value ({exp} ms)",
                self.skew_ms
            )));
        }
        if let Some(iat) = iat {
            if exp <= iat {
                return Err(Rejected::invalid(format!(
                    "The Expiration Time time ({exp} ms) was not after the Issued At time ({iat} ms)"
                )));
            }
        }
        if let Some(missing) = self.required_scope.iter().find(|s| !scope.contains(s)) {
            return Err(Rejected {
                status: "insufficient_scope",
                scope: Some(format!("[{}]", self.required_scope.join(", "))),
                reason: format!(
                    "The provided scope ({scope:?}) was missing a required scope ({missing}). \
                     All required scope elements: {:?}",
                    self.required_scope
                ),
            });
        }
        Ok(Accepted {
            principal,
            expires_at_ms: exp,
            scope,
        })
    }
}

impl Secured {
    fn validate(&self, token: &str, now_ms: i64) -> Result<Accepted, String> {
        let jwt = Jwt::split(token)?;
        let alg_name = match jwt.header.get("alg") {
            Some(Value::String(a)) => a.as_str(),
            _ => return Err("the JWT header has no 'alg'".into()),
        };
        if alg_name == "none" {
            return Err(
                "unsigned tokens (alg none) are refused: this listener validates \
                        signatures against sasl.oauthbearer.jwks.endpoint.url"
                    .into(),
            );
        }
        let alg = Algorithm::from_str(alg_name)
            .map_err(|_| format!("unsupported signature algorithm {alg_name:?}"))?;
        if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(format!(
                "unsupported signature algorithm {alg_name} (JWKS public keys only)"
            ));
        }
        if jwt.header.contains_key("crit") {
            return Err("the JWT header has critical parameters ('crit'), none understood".into());
        }
        if jwt.signature.is_empty() {
            return Err("the JWT has no signature".into());
        }
        let kid = match jwt.header.get("kid") {
            None | Some(Value::Null) => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err("the 'kid' header is not a string".into()),
        };
        let keys = self.jwks.current();
        let candidates: Vec<&Key> = keys.iter().filter(|k| k.fits(kid, alg)).collect();
        if candidates.is_empty() {
            self.jwks.request_refresh(kid);
            return Err(match kid {
                Some(kid) => format!(
                    "no key with kid {kid:?} for {alg_name} in the JWKS from {} ({} keys; a \
                     refresh was requested)",
                    self.jwks.source,
                    keys.len()
                ),
                None => format!(
                    "the JWT names no 'kid' and the JWKS from {} has no {alg_name} key",
                    self.jwks.source
                ),
            });
        }
        let verified = candidates.iter().any(|k| {
            jsonwebtoken::crypto::verify(
                jwt.signature,
                jwt.signing_input.as_bytes(),
                &k.decoding,
                alg,
            )
            .unwrap_or(false)
        });
        if !verified {
            return Err(format!(
                "invalid JWS signature (kid {:?}, {alg_name})",
                kid.unwrap_or("")
            ));
        }

        let skew = self.skew_ms;
        let skew_s = skew / 1000;
        let exp = jwt
            .time_claim("exp")?
            .ok_or("No Expiration Time (exp) claim present")?;
        if now_ms.saturating_sub(skew) >= exp {
            return Err(format!(
                "the token has expired: now ({now_ms} ms) is on or after its Expiration Time \
                 (exp={exp} ms), allowing {skew_s} s of clock skew"
            ));
        }
        let iat = jwt
            .time_claim("iat")?
            .ok_or("No Issued At (iat) claim present")?;
        if iat > now_ms.saturating_add(skew) {
            return Err(format!(
                "the token was issued in the future (iat={iat} ms, now {now_ms} ms, allowing \
                 {skew_s} s of clock skew)"
            ));
        }
        if let Some(nbf) = jwt.time_claim("nbf")? {
            if now_ms.saturating_add(skew) < nbf {
                return Err(format!(
                    "the token is not yet valid (nbf={nbf} ms, now {now_ms} ms, allowing \
                     {skew_s} s of clock skew)"
                ));
            }
        }
        if let Some(expected) = &self.expected_issuer {
            match jwt.claims.get("iss") {
                Some(Value::String(iss)) if iss == expected => {}
                Some(Value::String(iss)) => {
                    return Err(format!(
                    "Issuer (iss) claim value ({iss}) doesn't match expected value of {expected}"
                ))
                }
                _ => return Err("No Issuer (iss) claim present".into()),
            }
        }
        let audiences: Vec<&str> = match jwt.claims.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(items)) => {
                let strings: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                if strings.len() != items.len() {
                    return Err("the 'aud' claim is not a string or an array of strings".into());
                }
                strings
            }
            Some(_) => return Err("the 'aud' claim is not a string or an array of strings".into()),
        };
        // Kafka's jose4j consumer refuses a token that names an audience when the broker
        // expects none, and one without an audience when the broker expects one.
        if self.expected_audience.is_empty() {
            if !audiences.is_empty() {
                return Err(format!(
                    "Audience (aud) claim {audiences:?} present in the JWT but no expected \
                     audience value(s) were configured (sasl.oauthbearer.expected.audience)"
                ));
            }
        } else if audiences.is_empty() {
            return Err("No Audience (aud) claim present".into());
        } else if !audiences
            .iter()
            .any(|a| self.expected_audience.iter().any(|e| e == a))
        {
            return Err(format!(
                "Audience (aud) claim {audiences:?} doesn't contain an acceptable identifier. \
                 Expected one of {:?}",
                self.expected_audience
            ));
        }
        let principal = match jwt.claims.get(&self.sub_claim) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            Some(Value::String(_)) | None => {
                return Err(format!(
                    "the '{}' claim (sasl.oauthbearer.sub.claim.name) is missing or empty",
                    self.sub_claim
                ))
            }
            Some(_) => return Err(format!("the '{}' claim is not a string", self.sub_claim)),
        };
        Ok(Accepted {
            principal,
            expires_at_ms: exp,
            scope: jwt.scope(&self.scope_claim),
        })
    }
}

// ---------------------------------------------------------------------------------------
// JWKS

mod jwks;
use jwks::*;

#[cfg(test)]
mod tests;
