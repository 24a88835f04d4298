//! TLS for SSL and SASL_SSL listeners, configured by Kafka's `ssl.*` properties (PEM key
//! and trust stores, KIP-651 inline PEM), with certificates re-read when their files change
//! and client certificates mapped to principals by `ssl.principal.mapping.rules`.
//!
//! Here: the settings, the rustls configuration built from them, its reload and the
//! handshake. Reading PEM text and keys is in `pem`; a client certificate's subject and the
//! mapping rules are in `principal`.
//!
//! Reads the PEM files named by `ssl.keystore.location` and `ssl.truststore.location`;
//! writes no files.

mod pem;
mod principal;

use super::Principal;
use crate::config::BrokerProps;
use pem::{pem_error, pem_lines, private_key};
use principal::{subject_rfc2253, PrincipalMapper};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
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

#[cfg(test)]
mod tests {
    use super::*;

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
