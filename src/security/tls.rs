//! TLS for SSL and SASL_SSL listeners, configured by Kafka's `ssl.*` properties (PEM key
//! and trust stores, KIP-651 inline PEM), with certificates re-read when their files change
//! and client certificates mapped to principals by `ssl.principal.mapping.rules`.
//!
//! Reads the PEM files named by `ssl.keystore.location` and `ssl.truststore.location`;
//! writes no files.

use super::Principal;
use crate::config::BrokerProps;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete its handshake before its slot is given back.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are checked for changes (a `stat` each).
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Kafka's `ssl.client.auth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// One listener's TLS settings, as read from the `ssl.*` properties.
#[derive(Clone, Debug)]
struct Settings {
    listener: String,
    keystore_location: Option<PathBuf>,
    keystore_chain: String,
    keystore_key: String,
    truststore_location: Option<PathBuf>,
    truststore_certificates: String,
    /// `ssl.key.password`: decrypts an encrypted PKCS#8 key. Never logged.
    key_password: String,
    client_auth: ClientAuth,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    /// `ssl.cipher.suites` by their IANA names; empty offers every suite rustls has.
    cipher_suites: Vec<String>,
}

/// A suite's IANA name, as Kafka's (Java's) `ssl.cipher.suites` writes it.
fn suite_name(suite: rustls::CipherSuite) -> String {
    let name = suite.as_str().unwrap_or("");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_string(),
    }
}

impl Settings {
    fn read(props: &BrokerProps, listener: &str) -> Result<Self, String> {
        let get = |name: &str| props.for_listener(listener, name);
        let convert = |key: &str, kind: &str, store: &str| {
            format!(
                "{key}={kind} is not supported; only PEM is. Convert the {store} to PEM, e.g. \
                 `keytool -importkeystore -srckeystore STORE.jks -destkeystore STORE.p12 \
                 -deststoretype PKCS12` (for JKS), then `openssl pkcs12 -in STORE.p12 -nodes \
                 -out STORE.pem`, and set {key}=PEM"
            )
        };
        let keystore_type = get("ssl.keystore.type");
        if !keystore_type.eq_ignore_ascii_case("PEM") {
            return Err(convert("ssl.keystore.type", &keystore_type, "keystore"));
        }
        let truststore_type = get("ssl.truststore.type");
        if !truststore_type.eq_ignore_ascii_case("PEM") {
            return Err(convert(
                "ssl.truststore.type",
                &truststore_type,
                "truststore",
            ));
        }
        let path = |name: &str| {
            let v = get(name);
            (!v.trim().is_empty()).then(|| PathBuf::from(v.trim()))
        };
        let client_auth = match get("ssl.client.auth").trim().to_ascii_lowercase().as_str() {
            "none" | "" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            other => {
                return Err(format!(
                    "ssl.client.auth must be none, requested or required, not {other:?}"
                ))
            }
        };
        let mut versions = Vec::new();
        for p in get("ssl.enabled.protocols").split(',').map(str::trim) {
            match p {
                "TLSv1.2" => versions.push(&rustls::version::TLS12),
                "TLSv1.3" => versions.push(&rustls::version::TLS13),
                "" => {}
                other => tracing::warn!(
                    listener,
                    protocol = other,
                    "ssl.enabled.protocols: only TLSv1.2 and TLSv1.3 are offered; ignoring"
                ),
            }
        }
        if versions.is_empty() {
            return Err("ssl.enabled.protocols names neither TLSv1.2 nor TLSv1.3".into());
        }
        let cipher_suites: Vec<String> = get("ssl.cipher.suites")
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        let available: Vec<String> = rustls::crypto::aws_lc_rs::default_provider()
            .cipher_suites
            .iter()
            .map(|s| suite_name(s.suite()))
            .collect();
        for c in cipher_suites.iter().filter(|c| !available.contains(c)) {
            tracing::warn!(listener, suite = %c, "ssl.cipher.suites: not offered (rustls offers {})", available.join(", "));
        }
        if !cipher_suites.is_empty() && !cipher_suites.iter().any(|c| available.contains(c)) {
            return Err(format!(
                "ssl.cipher.suites names no suite this broker offers ({})",
                available.join(", ")
            ));
        }
        Ok(Settings {
            listener: listener.to_string(),
            keystore_location: path("ssl.keystore.location"),
            keystore_chain: get("ssl.keystore.certificate.chain"),
            keystore_key: get("ssl.keystore.key"),
            truststore_location: path("ssl.truststore.location"),
            truststore_certificates: get("ssl.truststore.certificates"),
            key_password: get("ssl.key.password"),
            client_auth,
            versions,
            cipher_suites,
        })
    }

    fn files(&self) -> Vec<PathBuf> {
        self.keystore_location
            .iter()
            .chain(self.truststore_location.iter())
            .cloned()
            .collect()
    }

    /// Builds the rustls configuration from the files or inline PEM as they are now, with
    /// the server certificate's subject (for the log).
    fn build(&self) -> Result<(ServerConfig, String), String> {
        let (chain_pem, key_pem) = match &self.keystore_location {
            Some(path) => {
                let text = std::fs::read(path)
                    .map_err(|e| format!("ssl.keystore.location {}: {e}", path.display()))?;
                (text.clone(), text)
            }
            None if !self.keystore_chain.trim().is_empty() => (
                pem_lines(&self.keystore_chain).into_bytes(),
                pem_lines(&self.keystore_key).into_bytes(),
            ),
            None => {
                return Err(
                    "no server certificate: set ssl.keystore.location (a PEM file with the \
                     private key and the certificate chain) or ssl.keystore.certificate.chain \
                     and ssl.keystore.key"
                        .into(),
                )
            }
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("keystore certificate chain: {}", pem_error(&e)))?;
        let Some(leaf) = chain.first() else {
            return Err("the keystore holds no CERTIFICATE block".into());
        };
        // Only for the log: a subject this reader cannot print does not stop the listener.
        let subject = subject_rfc2253(leaf.as_ref()).unwrap_or_else(|e| format!("({e})"));
        let key = private_key(&key_pem, &self.key_password)?;
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if !self.cipher_suites.is_empty() {
            provider
                .cipher_suites
                .retain(|s| self.cipher_suites.contains(&suite_name(s.suite())));
        }
        let provider = Arc::new(provider);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&self.versions)
            .map_err(|e| format!("ssl.enabled.protocols: {e}"))?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let roots = self.roots()?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| format!("client certificate verifier: {e}"))?,
                )
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("server certificate and key: {e}"))?;
        Ok((config, subject))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let pem = match &self.truststore_location {
            Some(path) => std::fs::read(path)
                .map_err(|e| format!("ssl.truststore.location {}: {e}", path.display()))?,
            None if !self.truststore_certificates.trim().is_empty() => {
                pem_lines(&self.truststore_certificates).into_bytes()
            }
            None => {
                return Err(
                    "ssl.client.auth is requested or required but there is no truststore: set \
                     ssl.truststore.location or ssl.truststore.certificates"
                        .into(),
                )
            }
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("truststore: {}", pem_error(&e)))?;
            roots
                .add(cert)
                .map_err(|e| format!("truststore certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the truststore holds no CERTIFICATE block".into());
        }
        Ok(roots)
    }
}

/// An inline PEM value (`ssl.keystore.certificate.chain`, `ssl.keystore.key`,
/// `ssl.truststore.certificates`) in the line form the PEM reader wants. Kafka reads a
/// block's base64 with any whitespace in it, line breaks or not, so a value joined into one
/// line (`-----BEGIN CERTIFICATE----- MIIB... -----END CERTIFICATE-----`, what a properties
/// file's continued lines give) works there; here each block is rewritten with its base64 in
/// lines of 64. Text outside the blocks is dropped, as Kafka ignores it; a block with
/// RFC 1421 headers (`Proc-Type:`, a legacy encrypted key) and an unfinished block are kept
/// as they are, for the reader to report.
fn pem_lines(text: &str) -> String {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 64);
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let after = &block[BEGIN.len()..];
        let Some(label_len) = after.find(DASHES) else {
            out.push_str(block);
            return out;
        };
        let label = after[..label_len].trim();
        let body_and_rest = &after[label_len + DASHES.len()..];
        let end_marker = format!("-----END {label}-----");
        let Some(body_len) = body_and_rest.find(&end_marker) else {
            out.push_str(block);
            return out;
        };
        let body = &body_and_rest[..body_len];
        let block_len = BEGIN.len() + label_len + DASHES.len() + body_len + end_marker.len();
        if body.contains(':') {
            out.push_str(&block[..block_len]);
            out.push('\n');
        } else {
            let base64: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            out.push_str(&format!("-----BEGIN {label}-----\n"));
            for line in base64.chunks(64) {
                out.push_str(&String::from_utf8_lossy(line));
                out.push('\n');
            }
            out.push_str(&end_marker);
            out.push('\n');
        }
        rest = &block[block_len..];
    }
    out
}

/// What is wrong with a PEM text, without the bytes the reader's own message quotes: those
/// can be a private key's.
fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a BEGIN line without its END line".into(),
        Error::IllegalSectionStart { .. } => "a malformed BEGIN line".into(),
        Error::Base64Decode(_) => "a block that is not valid base64".into(),
        Error::NoItemsFound => "no PEM block of the expected kind".into(),
        other => other.to_string(),
    }
}

/// The keystore's private key: plain (PKCS#8, PKCS#1 or SEC1), or an encrypted PKCS#8 key
/// (`ENCRYPTED PRIVATE KEY`, PBES2) opened with `ssl.key.password`, as Kafka's PEM keystores
/// allow (KIP-651).
fn private_key(pem: &[u8], password: &str) -> Result<PrivateKeyDer<'static>, String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(
            "the keystore's private key is in OpenSSL's legacy encrypted format; convert it to \
             encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY.pem -out \
             KEY-pkcs8.pem`"
                .into(),
        );
    }
    const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    let Some(start) = text.find(BEGIN) else {
        return PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("keystore private key: {}", pem_error(&e)));
    };
    let end = text[start..]
        .find(END)
        .map(|e| start + e + END.len())
        .ok_or("keystore private key: ENCRYPTED PRIVATE KEY block without its END line")?;
    if password.is_empty() {
        return Err("the keystore's private key is encrypted: set ssl.key.password".into());
    }
    let (_, document) = pkcs8::der::Document::from_pem(&text[start..end])
        .map_err(|e| format!("keystore private key: {e}"))?;
    let encrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
        .map_err(|e| format!("keystore private key: {e}"))?;
    let plain = encrypted.decrypt(password).map_err(|_| {
        "the keystore's private key does not decrypt with ssl.key.password (wrong password, or \
         an encryption other than PBES2 with AES)"
            .to_string()
    })?;
    Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()))
}

/// A file's identity for change detection: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        })
        .collect()
}

struct Current {
    config: Arc<ServerConfig>,
    subject: String,
    stamps: Vec<Stamp>,
    checked: Instant,
}

/// One TLS listener's server side: the configuration new connections get, rebuilt when the
/// certificate or truststore files change.
pub struct TlsServer {
    settings: Settings,
    mapper: PrincipalMapper,
    /// Whether the principal comes from the client certificate (SSL) or from SASL later.
    principal_from_certificate: bool,
    /// A std `Mutex` suffices: held to stat two files and, rarely, to rebuild.
    current: Mutex<Current>,
    handshake_timeout: Duration,
}

impl TlsServer {
    /// Reads the listener's `ssl.*` settings and certificates; an error names what is wrong.
    pub fn new(
        props: &BrokerProps,
        listener: &str,
        principal_from_certificate: bool,
    ) -> Result<Self, String> {
        let settings = Settings::read(props, listener)?;
        let mapper =
            PrincipalMapper::parse(&props.for_listener(listener, "ssl.principal.mapping.rules"))?;
        let files = settings.files();
        let before = stamps(&files);
        let (config, subject) = settings.build()?;
        Ok(TlsServer {
            settings,
            mapper,
            principal_from_certificate,
            current: Mutex::new(Current {
                config: Arc::new(config),
                subject,
                stamps: before,
                checked: Instant::now(),
            }),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// What the start-up log says about the listener: the certificate and `ssl.client.auth`.
    pub fn describe(&self) -> String {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        format!(
            "certificate {}, ssl.client.auth={}",
            current.subject,
            match self.settings.client_auth {
                ClientAuth::None => "none",
                ClientAuth::Requested => "requested",
                ClientAuth::Required => "required",
            }
        )
    }

    /// The configuration for a new connection, re-read first if a file changed.
    fn config(&self) -> Arc<ServerConfig> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.checked.elapsed() >= RELOAD_CHECK {
            current.checked = Instant::now();
            let files = self.settings.files();
            let now = stamps(&files);
            if now != current.stamps {
                current.stamps = now;
                match self.settings.build() {
                    Ok((config, subject)) => {
                        current.config = Arc::new(config);
                        current.subject = subject.clone();
                        tracing::info!(
                            listener = %self.settings.listener,
                            certificate = %subject,
                            "TLS certificates changed on disk; new connections use them"
                        );
                    }
                    Err(e) => tracing::error!(
                        listener = %self.settings.listener,
                        error = %e,
                        "TLS certificates changed on disk but do not load; keeping the previous ones"
                    ),
                }
            }
        }
        current.config.clone()
    }

    /// The TLS handshake, bounded by `HANDSHAKE_TIMEOUT` and by shutdown. `None` when it
    /// failed (logged with the client's address); otherwise the stream and, for SSL
    /// listeners, the principal from the client certificate (`User:ANONYMOUS` without one).
    pub async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<(TlsStream<TcpStream>, Option<Principal>)> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config());
        let handshake = tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream));
        let result = tokio::select! {
            _ = shutdown.changed() => return None,
            r = handshake => r,
        };
        let stream = match result {
            Err(_) => {
                tracing::info!(%peer, listener = %self.settings.listener,
                    "TLS handshake not completed within {:?}; closing", self.handshake_timeout);
                return None;
            }
            Ok(Err(e)) => {
                tracing::info!(%peer, listener = %self.settings.listener, error = %e,
                    "TLS handshake failed; closing");
                return None;
            }
            Ok(Ok(s)) => s,
        };
        if !self.principal_from_certificate {
            return Some((stream, None));
        }
        let subject = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| subject_rfc2253(c.as_ref()));
        let principal = match subject {
            None => {
                tracing::debug!(%peer, listener = %self.settings.listener, "TLS client without a certificate");
                return Some((stream, Some(Principal::anonymous())));
            }
            Some(Err(e)) => {
                tracing::info!(%peer, error = %e, "client certificate subject does not parse; closing");
                return None;
            }
            Some(Ok(dn)) => match self.mapper.map(&dn) {
                Some(name) => Principal::user(name),
                None => {
                    tracing::info!(%peer, subject = %dn,
                        "no ssl.principal.mapping.rules rule applies to the client certificate; closing");
                    return None;
                }
            },
        };
        tracing::info!(%peer, listener = %self.settings.listener, %principal, "TLS client authenticated");
        Some((stream, Some(principal)))
    }
}

/// Kafka's `ssl.principal.mapping.rules`: `DEFAULT` (the subject as it is) and
/// `RULE:pattern/replacement/` with an optional `L` or `U` (lower- or upper-case the
/// result), tried in order; the first rule whose pattern matches the whole subject wins.
#[derive(Debug)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

#[derive(Debug)]
enum Rule {
    Default,
    Replace {
        whole: regex::Regex,
        pattern: regex::Regex,
        replacement: String,
        case: Option<char>,
    },
}

impl PrincipalMapper {
    pub fn parse(rules: &str) -> Result<Self, String> {
        let bad =
            |r: &str, why: &str| format!("ssl.principal.mapping.rules: invalid rule {r:?}: {why}");
        let mut out = Vec::new();
        let mut rest = rules.trim();
        loop {
            // Empty entries (`,,`) are skipped, as Kafka skips them.
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            if rest.is_empty() {
                break;
            }
            if let Some(tail) = rest.strip_prefix("DEFAULT") {
                out.push(Rule::Default);
                rest = tail.trim_start();
            } else if let Some(body) = rest.strip_prefix("RULE:") {
                // pattern/replacement/ — a backslash escapes the next character.
                let mut parts = Vec::new();
                let mut cur = String::new();
                let mut chars = body.char_indices();
                let mut end = body.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            cur.push('\\');
                            if let Some((_, n)) = chars.next() {
                                cur.push(n);
                            }
                        }
                        '/' => {
                            parts.push(std::mem::take(&mut cur));
                            if parts.len() == 2 {
                                end = i + 1;
                                break;
                            }
                        }
                        _ => cur.push(c),
                    }
                }
                if parts.len() != 2 {
                    return Err(bad(rest, "expected RULE:pattern/replacement/[LU]"));
                }
                let mut tail = &body[end..];
                let case = match tail.chars().next() {
                    Some(c @ ('L' | 'U')) => {
                        tail = &tail[1..];
                        Some(c)
                    }
                    _ => None,
                };
                let whole = regex::Regex::new(&format!("^(?:{})$", parts[0]))
                    .map_err(|e| bad(rest, &e.to_string()))?;
                let pattern =
                    regex::Regex::new(&parts[0]).map_err(|e| bad(rest, &e.to_string()))?;
                let groups = pattern.captures_len() - 1;
                out.push(Rule::Replace {
                    whole,
                    pattern,
                    replacement: java_replacement(&parts[1], groups),
                    case,
                });
                rest = tail.trim_start();
            } else {
                return Err(bad(
                    rest,
                    "rules are DEFAULT or RULE:pattern/replacement/[LU]",
                ));
            }
            if !rest.is_empty() && !rest.starts_with(',') {
                return Err(bad(rest, "rules are separated by commas"));
            }
        }
        // No rules at all (an empty setting) maps nothing, as in Kafka.
        Ok(PrincipalMapper { rules: out })
    }

    /// The principal name for a subject, or `None` when no rule applies.
    pub fn map(&self, dn: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| match rule {
            Rule::Default => Some(dn.to_string()),
            Rule::Replace {
                whole,
                pattern,
                replacement,
                case,
            } => {
                if !whole.is_match(dn) {
                    return None;
                }
                let out = pattern.replace_all(dn, replacement.as_str()).into_owned();
                Some(match case {
                    Some('L') => out.to_lowercase(),
                    Some('U') => out.to_uppercase(),
                    _ => out,
                })
            }
        })
    }
}

/// Java's replacement syntax (`$1`, `\$` for a literal) in the `regex` crate's (`${1}`, `$$`).
/// As in Kafka, `$n` names the longest run of digits that is a group of the pattern, and a
/// reference to a group the pattern does not have is literal text.
fn java_replacement(java: &str, groups: usize) -> String {
    let mut out = String::new();
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(n) => out.push(n),
                None => {}
            },
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let values: Vec<usize> = digits.bytes().map(|b| (b - b'0') as usize).collect();
                match values.first() {
                    Some(&first) if first <= groups => {
                        let mut group = first;
                        let mut used = 1;
                        while let Some(&d) = values.get(used) {
                            if group * 10 + d > groups {
                                break;
                            }
                            group = group * 10 + d;
                            used += 1;
                        }
                        out.push_str(&format!("${{{group}}}"));
                        out.push_str(&digits[used..]);
                    }
                    _ => {
                        out.push_str("$$");
                        out.push_str(&digits);
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// One DER element: tag, contents, and what follows. Bounded by the input's length.
fn der(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let short = || "certificate: truncated DER".to_string();
    let (&tag, rest) = input.split_first().ok_or_else(short)?;
    let (&first, mut rest) = rest.split_first().ok_or_else(short)?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("certificate: bad DER length".into());
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(short());
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

fn oid_string(bytes: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for &b in bytes {
        acc = (acc << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let first = (acc / 40).min(2);
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// The keywords Java's `X500Principal.getName()` (RFC 2253) prints.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn decode_string(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 | 0x12 | 0x1a => std::str::from_utf8(bytes).ok().map(str::to_string),
        0x14 => Some(bytes.iter().map(|&b| b as char).collect()),
        0x1e => {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A certificate's subject as Java's `X500Principal.getName()` gives it (RFC 2253): the
/// last RDN first, `CN=alice,OU=dev,O=Strata`.
pub fn subject_rfc2253(cert_der: &[u8]) -> Result<String, String> {
    let (_, cert, _) = der(cert_der)?;
    let (_, tbs, _) = der(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = der(rest)?;
    if tag == 0xa0 {
        rest = after; // version
    }
    for _ in 0..4 {
        // serial, signature algorithm, issuer, validity
        rest = der(rest)?.2;
    }
    let (_, mut name, _) = der(rest)?;
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let (_, mut set, next) = der(name)?;
        name = next;
        let mut avas = Vec::new();
        while !set.is_empty() {
            let (_, ava, next) = der(set)?;
            set = next;
            let (_, oid, value) = der(ava)?;
            let oid = oid_string(oid);
            let (vtag, vbytes, _) = der(value)?;
            let text = match (keyword(&oid), decode_string(vtag, vbytes)) {
                (Some(k), Some(s)) => format!("{k}={}", escape_rfc2253(&s)),
                (k, _) => {
                    let whole_len = value.len() - der(value)?.2.len();
                    let hex: String = value[..whole_len]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    format!("{}=#{hex}", k.map(str::to_string).unwrap_or(oid))
                }
            };
            avas.push(text);
        }
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_mapping_rules_apply_as_in_kafka() {
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=([a-z]+),OU=(.*?),O=.*$/$1@$2/L, DEFAULT",
        )
        .expect("parses");
        assert_eq!(
            m.map("CN=kafka1,OU=ServiceUsers,O=Org").as_deref(),
            Some("kafka1")
        );
        assert_eq!(
            m.map("CN=alice,OU=DEV,O=Strata").as_deref(),
            Some("alice@dev")
        );
        assert_eq!(
            m.map("CN=Bob Smith,O=x").as_deref(),
            Some("CN=Bob Smith,O=x")
        );
        let upper = PrincipalMapper::parse("RULE:^CN=(.*?),.*$/$1/U").expect("parses");
        assert_eq!(upper.map("CN=alice,O=x").as_deref(), Some("ALICE"));
        assert_eq!(upper.map("O=x"), None);
        assert_eq!(
            PrincipalMapper::parse("DEFAULT")
                .expect("default")
                .map("CN=a")
                .as_deref(),
            Some("CN=a")
        );
        assert!(PrincipalMapper::parse("RULE:^CN=(.*)$").is_err());
        assert!(PrincipalMapper::parse("SOMETHING").is_err());
    }

    #[test]
    fn rules_parse_and_map_as_kafkas_own_cases() {
        for bad in [
            "default",
            "DEFAUL",
            "DEFAULT/L",
            "DEFAULT/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
            "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
        ] {
            assert!(PrincipalMapper::parse(bad).is_err(), "{bad}");
        }
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, \
             RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L, \
             RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U, \
             RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U, DEFAULT",
        )
        .expect("parses");
        let name = |dn: &str| m.map(dn).unwrap_or_default();
        assert_eq!(name("CN=Duke,OU=ServiceUsers,O=Org,C=US"), "duke");
        assert_eq!(
            name("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US"),
            "duke@sme"
        );
        assert_eq!(name("cn=duke,ou=sme,dc=mycp,dc=com"), "DUKE@SME");
        assert_eq!(name("cN=duke,OU=JavaSoft,O=Sun Microsystems"), "DUKE");
        assert_eq!(
            name("OU=JavaSoft,O=Sun Microsystems,C=US"),
            "OU=JavaSoft,O=Sun Microsystems,C=US"
        );
        let escaped =
            PrincipalMapper::parse("RULE:^CN=((\\\\, *|\\w)+)(,.*|$)/$1/,DEFAULT").expect("parses");
        assert_eq!(
            escaped
                .map("CN=Tkac\\, Adam,OU=ITZ,DC=geodis,DC=cz")
                .as_deref(),
            Some("Tkac\\, Adam")
        );
        let skipped = PrincipalMapper::parse(",,RULE:^(.*)$/x$1/,,,DEFAULT,,").expect("parses");
        assert_eq!(skipped.map("CN=a").as_deref(), Some("xCN=a"));
        assert_eq!(PrincipalMapper::parse("").expect("empty").map("CN=a"), None);
        let slash = PrincipalMapper::parse("RULE:^CN=a\\/b$/a-b/").expect("escaped slash");
        assert_eq!(slash.map("CN=a/b").as_deref(), Some("a-b"));
    }

    #[test]
    fn java_replacements_become_regex_replacements() {
        assert_eq!(java_replacement("$1@$2x", 2), "${1}@${2}x");
        assert_eq!(java_replacement("\\$1", 1), "$$1");
        assert_eq!(java_replacement("$12", 1), "${1}2");
        assert_eq!(java_replacement("$12", 12), "${12}");
        assert_eq!(java_replacement("$1@$4", 3), "${1}@$$4");
    }

    #[test]
    fn subject_escaping_follows_rfc_2253() {
        assert_eq!(escape_rfc2253("a,b"), "a\\,b");
        assert_eq!(escape_rfc2253(" x "), "\\ x\\ ");
        assert_eq!(escape_rfc2253("#1"), "\\#1");
    }

    #[test]
    fn the_subject_reads_as_java_prints_it() {
        // Subject C=US, O="Strata, Inc.", OU=dev, emailAddress=a@x.io, CN=alice.
        let der = include_bytes!("testdata/subject.der");
        assert_eq!(
            subject_rfc2253(der).expect("parses"),
            "CN=alice,1.2.840.113549.1.9.1=#16066140782e696f,OU=dev,O=Strata\\, Inc.,C=US"
        );
        for cut in 0..der.len() {
            let _ = subject_rfc2253(&der[..cut]);
        }
    }

    #[test]
    fn truncated_der_is_an_error_not_a_panic() {
        assert!(subject_rfc2253(&[]).is_err());
        assert!(subject_rfc2253(&[0x30, 0x82, 0xff]).is_err());
        assert!(subject_rfc2253(&[0x30, 0x03, 0x30, 0x01]).is_err());
    }

    #[tokio::test]
    async fn a_silent_client_is_let_go_after_the_handshake_timeout() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/security/testdata/server.pem");
        let c = crate::config::Config::load(
            None,
            crate::config::Overrides {
                properties: vec![format!("ssl.keystore.location={}", path.display())],
                ..Default::default()
            },
        )
        .expect("load");
        let mut server = TlsServer::new(&c.props, "SSL", true).expect("test certificate loads");
        server.handshake_timeout = Duration::from_millis(200);
        let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = socket.local_addr().expect("addr");
        let _silent = TcpStream::connect(addr).await.expect("connect");
        let (stream, peer) = socket.accept().await.expect("accept");
        let (_stop_tx, mut stop) = watch::channel(false);
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            server.accept(stream, peer, &mut stop),
        )
        .await
        .expect("gave up within the handshake timeout");
        assert!(outcome.is_none());
    }

    #[test]
    fn cipher_suites_are_named_as_kafka_names_them() {
        assert_eq!(
            suite_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/security/testdata/server.pem");
        let load = |suites: &str| {
            let c = crate::config::Config::load(
                None,
                crate::config::Overrides {
                    properties: vec![
                        format!("ssl.keystore.location={}", path.display()),
                        format!("ssl.cipher.suites={suites}"),
                    ],
                    ..Default::default()
                },
            )
            .expect("load");
            TlsServer::new(&c.props, "SSL", true)
        };
        assert!(load("TLS_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384").is_ok());
        let err = load("TLS_RSA_WITH_AES_128_CBC_SHA").err().expect("refused");
        assert!(err.contains("ssl.cipher.suites"), "{err}");
    }

    #[test]
    fn an_encrypted_key_opens_with_its_password_only() {
        // The test key as encrypted PKCS#8 (PBES2: PBKDF2-HMAC-SHA256, AES-256-CBC), password
        // "broker-secret".
        let pem = include_bytes!("testdata/encrypted-key.pem");
        let key = private_key(pem, "broker-secret").expect("decrypts");
        assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
        let err = private_key(pem, "guess-xyz").expect_err("refused");
        assert!(
            err.contains("ssl.key.password") && !err.contains("guess-xyz"),
            "{err}"
        );
        let err = private_key(pem, "").expect_err("needs a password");
        assert!(err.contains("ssl.key.password"), "{err}");
    }

    /// A PEM text as a properties file's continued lines give it: one line, the line breaks
    /// turned into spaces.
    fn one_line(pem: &str) -> String {
        pem.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn inline_pem_is_read_with_or_without_its_line_breaks() {
        let pem = include_str!("testdata/server.pem");
        let encrypted = include_str!("testdata/encrypted-key.pem");
        let chain_end = pem
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a certificate");
        let (key, chain) = pem.split_at(chain_end);
        let load = |chain: &str, key: &str, password: &str| {
            let c = crate::config::Config::load(
                None,
                crate::config::Overrides {
                    properties: vec![
                        format!("ssl.keystore.certificate.chain={chain}"),
                        format!("ssl.keystore.key={key}"),
                        format!("ssl.key.password={password}"),
                        format!("ssl.truststore.certificates={chain}"),
                        "ssl.client.auth=required".into(),
                    ],
                    ..Default::default()
                },
            )
            .expect("load");
            TlsServer::new(&c.props, "SSL", true).map(|s| s.describe())
        };
        let as_given = load(chain, key, "").expect("the PEM as written");
        assert_eq!(
            load(&one_line(chain), &one_line(key), "").expect("one line"),
            as_given
        );
        // what surrounds the blocks (openssl's "Bag Attributes", a comment) is ignored
        let noisy = format!("Bag Attributes\n    friendlyName: broker\n{chain}trailing text");
        assert_eq!(load(&noisy, key, "").expect("noisy"), as_given);
        assert!(load(&one_line(chain), &one_line(encrypted), "broker-secret").is_ok());
        assert_eq!(
            pem_lines(&one_line(pem)),
            pem,
            "a 64-column PEM comes back as it was"
        );
    }

    #[test]
    fn a_malformed_key_is_reported_without_its_bytes() {
        let pem = include_str!("testdata/server.pem");
        let key_end = pem
            .find("-----BEGIN CERTIFICATE-----")
            .expect("a certificate");
        let key = one_line(&pem[..key_end]);
        let secret = &key[28..60];
        let mut bad_base64: Vec<String> = pem_lines(&key).lines().map(String::from).collect();
        bad_base64[2].push('!');
        for broken in [
            key.clone(),
            key.replace("-----END PRIVATE KEY-----", ""),
            bad_base64.join("\n"),
        ] {
            let err = private_key(broken.as_bytes(), "").expect_err("refused");
            assert!(
                !err.contains(secret) && !err.contains("77, 73, 71"),
                "{err}"
            );
        }
        let unfinished = pem_lines(&key.replace("-----END PRIVATE KEY-----", ""));
        assert!(unfinished.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn key_stores_other_than_pem_are_refused_with_the_conversion() {
        let c = crate::config::Config::load(
            None,
            crate::config::Overrides {
                properties: vec!["listener.name.ssl.ssl.keystore.type=JKS".into()],
                ..Default::default()
            },
        )
        .expect("load");
        let err = TlsServer::new(&c.props, "SSL", true)
            .err()
            .expect("refused");
        assert!(err.contains("keytool") && err.contains("openssl"), "{err}");
        let err = TlsServer::new(&c.props, "OTHER", true)
            .err()
            .expect("no cert");
        assert!(err.contains("ssl.keystore.location"), "{err}");
    }
}
