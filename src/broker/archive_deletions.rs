//! Deleted topics whose objects are still in the archive.
//!
//! DeleteTopics is answered once the topic's local files are gone; its archived objects are
//! deleted afterwards, in the background, and that can take long (the store is down) or be
//! cut short (a kill). A topic left in the bucket would stay there for good and, worse, come
//! back: a broker without topics restores whatever the archive holds. So the deletion is
//! recorded first, as `<data_dir>/.strata/archive-deletions/<topic id>.yaml` (name and id,
//! fsynced), before the topic's metadata is removed; the file goes once the topic's last
//! object is deleted. Start-up resumes every recorded deletion, and a restore from the
//! archive skips the topics recorded here.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// A deleted topic whose archived objects are still to be deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDeletion {
    pub name: String,
    pub id: Uuid,
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(".strata").join("archive-deletions")
}

fn path(data_dir: &Path, id: Uuid) -> PathBuf {
    dir(data_dir).join(format!("{id}.yaml"))
}

/// Records that the topic's archived objects are to be deleted (fsynced, file and directory).
pub fn record(data_dir: &Path, name: &str, id: Uuid) -> std::io::Result<()> {
    std::fs::create_dir_all(dir(data_dir))?;
    let pending = PendingDeletion {
        name: name.to_string(),
        id,
    };
    let yaml = serde_yaml::to_string(&pending).map_err(std::io::Error::other)?;
    crate::checkpoint::write_atomically(&path(data_dir, id), yaml.as_bytes())
}

/// Forgets a deletion once every object of the topic is gone.
pub fn done(data_dir: &Path, id: Uuid) -> std::io::Result<()> {
    match std::fs::remove_file(path(data_dir, id)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Every recorded deletion; an unreadable file is logged and skipped.
pub fn load(data_dir: &Path) -> Vec<PendingDeletion> {
    let entries = match std::fs::read_dir(dir(data_dir)) {
        Ok(entries) => entries,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, "reading the pending archive deletions failed");
            }
            return Vec::new();
        }
    };
    let mut all = Vec::new();
    for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|text| {
                serde_yaml::from_str::<PendingDeletion>(&text).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(p) => all.push(p),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable pending archive deletion")
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_deletion_loads_back_until_it_is_done() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(load(dir.path()).is_empty());
        let id = Uuid::from_u128(7);
        record(dir.path(), "orders", id).expect("record");
        record(dir.path(), "other", Uuid::from_u128(8)).expect("record");
        let mut all = load(dir.path());
        all.sort_by_key(|p| p.id);
        assert_eq!(
            all[0],
            PendingDeletion {
                name: "orders".into(),
                id
            }
        );
        assert_eq!(all.len(), 2);
        done(dir.path(), id).expect("done");
        done(dir.path(), id).expect("done twice");
        assert_eq!(load(dir.path()).len(), 1);
    }
}
