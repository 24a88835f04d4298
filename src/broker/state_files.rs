//! A directory of small YAML files, one per key (a group, a transactional id), named by
//! the key's hex so any key is a valid file name. Coordinators keep their state in memory
//! and write a key's file before answering a change to it.
//!
//! # Ordering
//! A write takes its snapshot and a per-key sequence number together, under one lock, so
//! a higher number always holds the newer state. The file work (serialise, write a
//! temporary, fsync, rename) runs off the async threads; before renaming, a write checks
//! that no higher number has landed for its key, and otherwise throws its temporary away,
//! since the newer file already holds its change. So writes of different keys run in
//! parallel, and an older snapshot never replaces a newer one.
//!
//! # Crash consistency
//! A file is replaced by a rename, so a kill leaves the old or the new contents, never a
//! mix; with `fsync` the file and the directory are synced before the write returns. A
//! temporary (`<hex>.<seq>.tmp`) left by a kill is removed at the next open.

use kafka_protocol::error::ResponseError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub struct StateFiles {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// fsync before answering (`flush: always`); the rename alone survives a kill.
    fsync: bool,
    /// Per key with writes in flight: the last sequence number handed out, the highest
    /// one that reached the file, and how many are still on their way. An entry goes once
    /// none is.
    keys: Mutex<HashMap<String, KeyWrites>>,
}

#[derive(Default)]
struct KeyWrites {
    issued: u64,
    landed: u64,
    in_flight: u32,
}

impl StateFiles {
    pub fn open(dir: PathBuf, fsync: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
                // Left by a write a crash interrupted before its rename: never the truth.
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Self {
            shared: Arc::new(Shared {
                dir,
                fsync,
                keys: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Every file that parses; one that does not is logged and skipped.
    pub fn load<T: DeserializeOwned>(&self) -> std::io::Result<Vec<T>> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(&self.shared.dir)? {
            let path = entry?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            match serde_yaml::from_str::<T>(&text) {
                Ok(v) => all.push(v),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable state file")
                }
            }
        }
        Ok(all)
    }

    /// Writes the key's file from `snapshot`, or removes the file when the snapshot is
    /// None, on a blocking thread; returns once the file is in place. The snapshot is
    /// taken before the first await, so a caller that is dropped mid-write still has its
    /// change written.
    pub async fn write<T: Serialize + Send + 'static>(
        &self,
        key: &str,
        snapshot: impl FnOnce() -> Option<T>,
    ) -> Result<(), ResponseError> {
        let (seq, value) = self.shared.issue(key, snapshot);
        let (shared, owned_key) = (self.shared.clone(), key.to_string());
        match tokio::task::spawn_blocking(move || shared.land(&owned_key, seq, value)).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(key, error = %e, "state file writer failed");
                Err(ResponseError::NotCoordinator)
            }
        }
    }

    /// As `write`, for callers that cannot await (a produce's callback inside a partition
    /// append, start-up): on a multi-threaded runtime the worker hands its other tasks
    /// away while it waits on the disk.
    pub fn write_blocking<T: Serialize + Send + 'static>(
        &self,
        key: &str,
        snapshot: impl FnOnce() -> Option<T>,
    ) -> Result<(), ResponseError> {
        let (seq, value) = self.shared.issue(key, snapshot);
        let multi_threaded = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_threaded {
            tokio::task::block_in_place(|| self.shared.land(key, seq, value))
        } else {
            self.shared.land(key, seq, value)
        }
    }
}

impl Shared {
    fn path(&self, key: &str) -> PathBuf {
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.yaml"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeyWrites>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next sequence number for the key, with the snapshot taken under the same lock.
    fn issue<T>(&self, key: &str, snapshot: impl FnOnce() -> Option<T>) -> (u64, Option<T>) {
        let mut keys = self.lock();
        let k = keys.entry(key.to_string()).or_default();
        k.issued += 1;
        k.in_flight += 1;
        (k.issued, snapshot())
    }

    /// Puts snapshot `seq` in place unless a newer one already is.
    fn land<T: Serialize>(
        &self,
        key: &str,
        seq: u64,
        value: Option<T>,
    ) -> Result<(), ResponseError> {
        let path = self.path(key);
        let result = self.land_at(key, &path, seq, value);
        result.map_err(|e| {
            tracing::error!(key, path = %path.display(), error = %e, "writing state failed");
            // Kafka's coordinators answer a failed append to their log (KAFKA_STORAGE_ERROR)
            // with NOT_COORDINATOR, which clients retry after looking the coordinator up.
            ResponseError::NotCoordinator
        })
    }

    fn land_at<T: Serialize>(
        &self,
        key: &str,
        path: &Path,
        seq: u64,
        value: Option<T>,
    ) -> std::io::Result<()> {
        let tmp = path.with_extension(format!("{seq}.tmp"));
        let written = match &value {
            Some(v) => Self::write_tmp(&tmp, v, self.fsync).map(Some),
            None => Ok(None),
        };
        let placed = {
            let mut keys = self.lock();
            let k = keys.entry(key.to_string()).or_default();
            k.in_flight = k.in_flight.saturating_sub(1);
            let placed = match written {
                Err(e) => Err(e),
                Ok(_) if k.landed > seq => {
                    // A newer snapshot, which includes this one's change, is in place.
                    Ok(false)
                }
                Ok(Some(())) => std::fs::rename(&tmp, path).map(|_| true),
                Ok(None) => match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(true),
                },
            };
            if let Ok(true) = placed {
                k.landed = seq;
            } else {
                // Under the lock: once the entry goes, a new write may reuse this name.
                let _ = std::fs::remove_file(&tmp);
            }
            if k.in_flight == 0 {
                keys.remove(key);
            }
            placed
        };
        placed?;
        if self.fsync {
            // Also when this write was superseded: the newer rename may not be synced yet,
            // and this caller answers as soon as we return.
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    fn write_tmp<T: Serialize>(tmp: &Path, value: &T, fsync: bool) -> std::io::Result<()> {
        let yaml = serde_yaml::to_string(value).map_err(std::io::Error::other)?;
        crate::checkpoint::write_temporary(tmp, yaml.as_bytes(), fsync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = StateFiles::open(dir.path().to_path_buf(), false).expect("open");
        let (s1, v1) = files.shared.issue("k", || Some(1u32));
        let (s2, v2) = files.shared.issue("k", || Some(2u32));
        files.shared.land("k", s2, v2).expect("newer");
        files.shared.land("k", s1, v1).expect("older");
        assert_eq!(files.load::<u32>().expect("load"), vec![2]);
        files.write("k", || None::<u32>).await.expect("remove");
        assert!(files.load::<u32>().expect("load").is_empty());
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").collect();
        assert!(names.is_empty(), "no temporaries stay behind");
        assert!(
            files.shared.lock().is_empty(),
            "no bookkeeping stays behind"
        );
    }
}
