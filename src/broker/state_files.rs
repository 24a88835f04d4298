//! A directory of small YAML files, one per key (a group, a transactional id), named by
//! the key's hex so any key is a valid file name. Coordinators keep their state in memory
//! and write a key's file before answering a change to it.
//!
//! Crash safety: each file is written whole and renamed into place (fsynced first with
//! `flush: always`), so a kill leaves the old or the new state, never a mix; a file that does
//! not parse is logged and skipped at start-up.

use kafka_protocol::error::ResponseError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct StateFiles {
    dir: PathBuf,
    /// fsync before answering (`flush: always`); the rename alone survives a kill.
    fsync: bool,
    /// One writer at a time, so an older snapshot never lands after a newer one.
    writer: Mutex<()>,
}

impl StateFiles {
    pub fn open(dir: PathBuf, fsync: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            fsync,
            writer: Mutex::new(()),
        })
    }

    /// Every file that parses; one that does not is logged and skipped.
    pub fn load<T: DeserializeOwned>(&self) -> std::io::Result<Vec<T>> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
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

    /// Writes the key's file from `snapshot` (taken while holding the writer, so it is the
    /// newest), or removes the file when the snapshot is None.
    pub fn write<T: Serialize>(
        &self,
        key: &str,
        snapshot: impl FnOnce() -> Option<T>,
    ) -> Result<(), ResponseError> {
        let _one = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        let path = self.dir.join(format!("{hex}.yaml"));
        let result = match snapshot() {
            Some(v) => serde_yaml::to_string(&v)
                .map_err(std::io::Error::other)
                .and_then(|y| crate::checkpoint::write_replacing(&path, y.as_bytes(), self.fsync)),
            None => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        };
        result.map_err(|e| {
            tracing::error!(key, path = %path.display(), error = %e, "writing state failed");
            ResponseError::KafkaStorageError
        })
    }
}
