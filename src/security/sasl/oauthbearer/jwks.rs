//! The identity provider's keys (JWKS) for OAUTHBEARER: where they come from (`https://`,
//! `http://` or a `file:` URL), parsing them, and keeping them fresh in the background.

use super::*;

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JwksSource {
    File(PathBuf),
    Http(String),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "file:{}", p.display()),
            JwksSource::Http(u) => f.write_str(u),
        }
    }
}

impl JwksSource {
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            return Ok(JwksSource::Http(url.to_string()));
        }
        if lower.starts_with("file:") {
            // file:///abs, file://localhost/abs, file:/abs and file:rel all name a path.
            let rest = &url[5..];
            let path = if let Some(r) = rest.strip_prefix("//") {
                let slash = r.find('/').ok_or("a file: URL needs a path")?;
                let host = &r[..slash];
                if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
                    return Err(format!("file: URL with a remote host {host:?}"));
                }
                &r[slash..]
            } else {
                rest
            };
            if path.is_empty() {
                return Err("a file: URL needs a path".into());
            }
            return Ok(JwksSource::File(PathBuf::from(percent_decode(path))));
        }
        Err(format!("{url:?} is not an https://, http:// or file: URL"))
    }
}

pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One usable verification key.
pub(super) struct Key {
    pub(super) kid: Option<String>,
    /// The JWK's own `alg`, when it names one.
    pub(super) alg: Option<Algorithm>,
    pub(super) kind: KeyKind,
    pub(super) decoding: DecodingKey,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum KeyKind {
    Rsa,
    Ec,
    Ed,
}

impl Key {
    pub(super) fn fits(&self, kid: Option<&str>, alg: Algorithm) -> bool {
        if let Some(kid) = kid {
            if self.kid.as_deref() != Some(kid) {
                return false;
            }
        }
        if self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        let kind = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyKind::Rsa,
            Algorithm::ES256 | Algorithm::ES384 => KeyKind::Ec,
            Algorithm::EdDSA => KeyKind::Ed,
            _ => return false,
        };
        self.kind == kind
    }
}

/// The usable signature keys of a JWKS document; keys of other kinds or uses are skipped.
pub(super) fn parse_jwks(bytes: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    let mut out = Vec::new();
    for raw in keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            tracing::debug!("JWKS: skipping a key that does not parse");
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(_) => KeyKind::Ec,
            AlgorithmParameters::OctetKeyPair(_) => KeyKind::Ed,
            _ => continue,
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
            tracing::debug!(kid = ?jwk.common.key_id, "JWKS: skipping an unusable key");
            continue;
        };
        out.push(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            kind,
            decoding,
        });
    }
    Ok(out)
}

/// The key set of one listener, kept fresh by a background task that holds only a weak
/// reference: dropping the validator stops it.
pub(super) struct Jwks {
    pub(super) source: JwksSource,
    pub(super) keys: RwLock<Arc<Vec<Key>>>,
    pub(super) refresh: Duration,
    pub(super) backoff: Duration,
    pub(super) backoff_max: Duration,
    /// Wakes the refresher early (an unknown `kid`, or shutdown on drop).
    pub(super) wake: Arc<Notify>,
    /// Unknown key ids already asked about, and when.
    pub(super) missing: Mutex<HashMap<String, Instant>>,
    pub(super) http: Option<reqwest::Client>,
}

impl Drop for Jwks {
    fn drop(&mut self) {
        self.wake.notify_one();
    }
}

impl Jwks {
    pub(super) fn start(
        source: JwksSource,
        refresh: Duration,
        backoff: Duration,
        backoff_max: Duration,
    ) -> Result<Arc<Self>, String> {
        let http = match &source {
            JwksSource::Http(_) => Some(
                reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| format!("JWKS HTTP client: {e}"))?,
            ),
            JwksSource::File(_) => None,
        };
        let initial = match &source {
            JwksSource::File(path) => {
                let bytes = read_file_bounded(path)?;
                let keys =
                    parse_jwks(&bytes).map_err(|e| format!("JWKS file {}: {e}", path.display()))?;
                tracing::info!(source = %source, keys = keys.len(), "OAUTHBEARER JWKS loaded");
                keys
            }
            JwksSource::Http(_) => Vec::new(),
        };
        let jwks = Arc::new(Jwks {
            source,
            keys: RwLock::new(Arc::new(initial)),
            refresh,
            backoff,
            backoff_max,
            wake: Arc::new(Notify::new()),
            missing: Mutex::new(HashMap::new()),
            http,
        });
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let first_fetch = matches!(jwks.source, JwksSource::Http(_));
                rt.spawn(refresher(
                    Arc::downgrade(&jwks),
                    Arc::clone(&jwks.wake),
                    first_fetch,
                ));
            }
            Err(_) => tracing::warn!(
                source = %jwks.source,
                "OAUTHBEARER JWKS: no runtime to refresh keys on; they stay as loaded"
            ),
        }
        Ok(jwks)
    }

    pub(super) fn current(&self) -> Arc<Vec<Key>> {
        Arc::clone(&self.keys.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A token named a key we do not have: refresh soon, at most once a minute per key id.
    pub(super) fn request_refresh(&self, kid: Option<&str>) {
        let kid = kid.unwrap_or("");
        if kid.len() > MISSING_KID_MAX_LEN {
            return;
        }
        let now = Instant::now();
        let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
        missing.retain(|_, at| now.duration_since(*at) < MISSING_KID_TTL);
        if missing.contains_key(kid) || missing.len() >= MISSING_KID_MAX {
            return;
        }
        missing.insert(kid.to_string(), now);
        self.wake.notify_one();
    }

    pub(super) async fn fetch(&self) -> Result<Vec<u8>, String> {
        match (&self.source, &self.http) {
            (JwksSource::File(path), _) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_file_bounded(&path))
                    .await
                    .map_err(|e| format!("reading the JWKS file: {e}"))?
            }
            (JwksSource::Http(url), Some(client)) => {
                let mut resp = client
                    .get(url)
                    .header("Accept", "application/json")
                    .send()
                    .await
                    // With its causes: "error sending request" alone hides e.g. an
                    // untrusted certificate.
                    .map_err(|e| format!("GET {url}: {:#}", anyhow::Error::new(e)))?;
                if !resp.status().is_success() {
                    return Err(format!("GET {url}: HTTP {}", resp.status()));
                }
                let mut body = Vec::new();
                while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
                    body.extend_from_slice(&chunk);
                    if body.len() as u64 > MAX_JWKS_BYTES {
                        return Err(format!(
                            "GET {url}: JWKS larger than {MAX_JWKS_BYTES} bytes"
                        ));
                    }
                }
                Ok(body)
            }
            (JwksSource::Http(url), None) => Err(format!("no HTTP client for {url}")),
        }
    }

    /// Fetches and installs the key set; on failure the last good set stays.
    pub(super) async fn refresh_now(&self) -> Result<usize, String> {
        let bytes = self.fetch().await?;
        let keys = parse_jwks(&bytes).map_err(|e| format!("JWKS from {}: {e}", self.source))?;
        let n = keys.len();
        let kids = |keys: &[Key]| -> Vec<String> {
            keys.iter()
                .map(|k| k.kid.clone().unwrap_or_default())
                .collect()
        };
        let new_kids = kids(&keys);
        let old = std::mem::replace(
            &mut *self.keys.write().unwrap_or_else(|p| p.into_inner()),
            Arc::new(keys),
        );
        // Key rotations show in the log; unchanged refreshes do not.
        if kids(&old) != new_kids {
            tracing::info!(source = %self.source, kids = ?new_kids, "OAUTHBEARER JWKS updated");
        }
        self.missing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(n)
    }
}

pub(super) fn read_file_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("JWKS file {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_JWKS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("JWKS file {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_JWKS_BYTES {
        return Err(format!(
            "JWKS file {} is larger than {MAX_JWKS_BYTES} bytes",
            path.display()
        ));
    }
    Ok(bytes)
}

/// Refreshes every `refresh` (after a failure: `backoff` doubling up to `backoff_max`), or
/// sooner when woken, never twice within `MIN_EXPEDITED_GAP` on a wake-up.
pub(super) async fn refresher(jwks: Weak<Jwks>, wake: Arc<Notify>, mut fetch_first: bool) {
    let mut failures: u32 = 0;
    let mut last_fetch: Option<Instant> = None;
    loop {
        let wait = {
            let Some(j) = jwks.upgrade() else { return };
            if fetch_first {
                if let Some(at) = last_fetch {
                    let since = at.elapsed();
                    if since < MIN_EXPEDITED_GAP {
                        tokio::time::sleep(MIN_EXPEDITED_GAP - since).await;
                    }
                }
                last_fetch = Some(Instant::now());
                match j.refresh_now().await {
                    Ok(n) => {
                        failures = 0;
                        tracing::debug!(source = %j.source, keys = n, "OAUTHBEARER JWKS refreshed");
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(
                            source = %j.source,
                            error = %e,
                            "OAUTHBEARER JWKS refresh failed; keeping the last good key set"
                        );
                    }
                }
            }
            fetch_first = true;
            if failures > 0 {
                let factor = 1u32 << failures.min(16).saturating_sub(1);
                (j.backoff.saturating_mul(factor)).min(j.backoff_max)
            } else if j.refresh.is_zero() {
                Duration::from_secs(3600)
            } else {
                j.refresh
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
        }
    }
}
