//! SCRAM credentials, salted and hashed as Kafka stores them (salt, iterations, StoredKey,
//! ServerKey per user and mechanism; never the password), shared by every connection and
//! the admin APIs. A change is written to disk before it is visible, and visible to the
//! next authentication at once.
//!
//! Owns `.strata/scram-credentials.json` (replaced whole, see `checkpoint`):
//! `{"users": {"<name>": {"SCRAM-SHA-512": {"salt": b64, "iterations": n,
//! "stored_key": b64, "server_key": b64}}}}`.

use super::scram::ScramHash;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One user's credential for one mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: i32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// From Kafka's AlterUserScramCredentials upsertion: the client sends the salted
    /// password, the broker keeps only the keys derived from it.
    pub fn from_salted_password(
        hash: ScramHash,
        salt: &[u8],
        salted_password: &[u8],
        iterations: i32,
    ) -> Self {
        let client_key = hash.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(salted_password, b"Server Key"),
        }
    }

    /// From a password, with a fresh random salt (start-up users).
    pub fn from_password(
        hash: ScramHash,
        password: &str,
        iterations: i32,
    ) -> std::io::Result<Self> {
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|e| std::io::Error::other(e.to_string()))?;
        let salted = hash.salted_password(password.as_bytes(), &salt, iterations.max(1) as u32);
        Ok(Self::from_salted_password(hash, &salt, &salted, iterations))
    }
}

#[derive(Serialize, Deserialize)]
struct StoredCredential {
    salt: String,
    iterations: i32,
    stored_key: String,
    server_key: String,
}

#[derive(Serialize, Deserialize, Default)]
struct StoredFile {
    users: BTreeMap<String, BTreeMap<String, StoredCredential>>,
}

/// user → mechanism name → credential.
pub type CredentialMap = BTreeMap<String, BTreeMap<String, ScramCredential>>;

/// One change of an AlterUserScramCredentials request.
#[derive(Debug, Clone)]
pub enum Change {
    Upsert {
        user: String,
        mechanism: String,
        credential: ScramCredential,
    },
    Delete {
        user: String,
        mechanism: String,
    },
}

/// The broker's SCRAM credentials: a cheap-to-clone handle. Reads take a std `RwLock` only
/// to clone one credential; writers are serialised by a `Mutex` held across the file write,
/// so the file and the map never disagree.
#[derive(Clone)]
pub struct ScramCredentials {
    inner: Arc<Inner>,
}

struct Inner {
    path: Option<PathBuf>,
    map: RwLock<CredentialMap>,
    write: Mutex<()>,
}

impl ScramCredentials {
    /// Loads the credentials file, or starts empty if there is none.
    pub fn open(path: PathBuf) -> anyhow::Result<Self> {
        let map = match std::fs::read(&path) {
            Ok(bytes) => {
                decode(&bytes).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CredentialMap::new(),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        Ok(ScramCredentials {
            inner: Arc::new(Inner {
                path: Some(path),
                map: RwLock::new(map),
                write: Mutex::new(()),
            }),
        })
    }

    /// Credentials held in memory only, for tests.
    pub fn in_memory() -> Self {
        ScramCredentials {
            inner: Arc::new(Inner {
                path: None,
                map: RwLock::new(CredentialMap::new()),
                write: Mutex::new(()),
            }),
        }
    }

    pub fn get(&self, user: &str, mechanism: &str) -> Option<ScramCredential> {
        let map = self.inner.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(user)?.get(mechanism).cloned()
    }

    /// Every user with the mechanisms and iteration counts of their credentials.
    pub fn describe(&self) -> BTreeMap<String, Vec<(String, i32)>> {
        let map = self.inner.map.read().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(user, mechs)| {
                let list = mechs
                    .iter()
                    .map(|(m, c)| (m.clone(), c.iterations))
                    .collect();
                (user.clone(), list)
            })
            .collect()
    }

    /// Applies the changes together: written to disk first, then visible.
    pub fn apply(&self, changes: &[Change]) -> std::io::Result<()> {
        let _writer = self.inner.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = self
            .inner
            .map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for change in changes {
            match change {
                Change::Upsert {
                    user,
                    mechanism,
                    credential,
                } => {
                    next.entry(user.clone())
                        .or_default()
                        .insert(mechanism.clone(), credential.clone());
                }
                Change::Delete { user, mechanism } => {
                    if let Some(mechs) = next.get_mut(user) {
                        mechs.remove(mechanism);
                        if mechs.is_empty() {
                            next.remove(user);
                        }
                    }
                }
            }
        }
        if let Some(path) = &self.inner.path {
            write(path, &next)?;
        }
        *self.inner.map.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }
}

fn decode(bytes: &[u8]) -> Result<CredentialMap, String> {
    let file: StoredFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut map = CredentialMap::new();
    for (user, mechs) in file.users {
        for (mechanism, c) in mechs {
            let field = |name: &str, v: &str| {
                B64.decode(v)
                    .map_err(|_| format!("user {user:?} {mechanism}: {name} is not base64"))
            };
            let credential = ScramCredential {
                salt: field("salt", &c.salt)?,
                iterations: c.iterations,
                stored_key: field("stored_key", &c.stored_key)?,
                server_key: field("server_key", &c.server_key)?,
            };
            map.entry(user.clone())
                .or_default()
                .insert(mechanism, credential);
        }
    }
    Ok(map)
}

fn write(path: &Path, map: &CredentialMap) -> std::io::Result<()> {
    let file = StoredFile {
        users: map
            .iter()
            .map(|(user, mechs)| {
                let mechs = mechs
                    .iter()
                    .map(|(m, c)| {
                        (
                            m.clone(),
                            StoredCredential {
                                salt: B64.encode(&c.salt),
                                iterations: c.iterations,
                                stored_key: B64.encode(&c.stored_key),
                                server_key: B64.encode(&c.server_key),
                            },
                        )
                    })
                    .collect();
                (user.clone(), mechs)
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    crate::checkpoint::write_atomically(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_survive_a_reopen_and_deletions_remove_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("scram-credentials.json");
        let store = ScramCredentials::open(path.clone()).expect("open");
        let c = ScramCredential::from_password(ScramHash::Sha512, "pw", 4096).expect("cred");
        store
            .apply(&[Change::Upsert {
                user: "alice".into(),
                mechanism: "SCRAM-SHA-512".into(),
                credential: c.clone(),
            }])
            .expect("apply");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("\"pw\""));
        let reopened = ScramCredentials::open(path.clone()).expect("reopen");
        assert_eq!(reopened.get("alice", "SCRAM-SHA-512"), Some(c));
        reopened
            .apply(&[Change::Delete {
                user: "alice".into(),
                mechanism: "SCRAM-SHA-512".into(),
            }])
            .expect("delete");
        assert!(ScramCredentials::open(path)
            .expect("reopen")
            .describe()
            .is_empty());
    }
}
