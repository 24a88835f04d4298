//! The read path's two caches, both least recently used first out and bounded by bytes:
//! remote offset indexes in memory, and chunks of remote `.log` objects on local disk under
//! `<data_dir>/.strata/tier-cache/<segment_id>-<chunk>`. A chunk is written to a temporary
//! name and renamed, and registered only once renamed, so a crash leaves at worst a stray
//! file; the directory is wiped when the broker starts anyway. File work runs on the
//! blocking pool.

use super::reader::{lock, RemoteIndex};
use crate::log::index::OFFSET_ENTRY;
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Offset indexes of remote segments in memory, least recently used evicted first once
/// they hold more than `limit` bytes. An index larger than the limit is used, not kept.
pub(super) struct IndexCache {
    limit: u64,
    state: Mutex<IndexLru>,
}

#[derive(Default)]
struct IndexLru {
    bytes: u64,
    /// Least recently used first.
    entries: VecDeque<(Uuid, Arc<RemoteIndex>)>,
}

fn index_bytes(i: &RemoteIndex) -> u64 {
    (i.len() * OFFSET_ENTRY) as u64
}

impl IndexCache {
    pub(super) fn new(limit: u64) -> Self {
        Self {
            limit,
            state: Mutex::new(IndexLru::default()),
        }
    }

    pub(super) fn get(&self, seg: Uuid) -> Option<Arc<RemoteIndex>> {
        let mut st = lock(&self.state);
        let i = st.entries.iter().position(|(s, _)| *s == seg)?;
        let e = st.entries.remove(i)?;
        let index = e.1.clone();
        st.entries.push_back(e);
        Some(index)
    }

    pub(super) fn put(&self, seg: Uuid, index: Arc<RemoteIndex>) {
        let size = index_bytes(&index);
        if size > self.limit {
            return;
        }
        let mut st = lock(&self.state);
        if st.entries.iter().any(|(s, _)| *s == seg) {
            return;
        }
        st.bytes += size;
        st.entries.push_back((seg, index));
        while st.bytes > self.limit {
            let Some((_, old)) = st.entries.pop_front() else {
                break;
            };
            st.bytes -= index_bytes(&old);
        }
    }

    pub(super) fn remove(&self, seg: Uuid) {
        let mut st = lock(&self.state);
        if let Some(i) = st.entries.iter().position(|(s, _)| *s == seg) {
            if let Some((_, old)) = st.entries.remove(i) {
                st.bytes -= index_bytes(&old);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn bytes(&self) -> u64 {
        lock(&self.state).bytes
    }
}

/// Chunks of remote segments kept on local disk, least recently used evicted first, so a
/// consumer reading the archive sequentially fetches each byte from the store once. File
/// work runs on the blocking pool.
pub(super) struct ChunkCache {
    dir: PathBuf,
    limit: u64,
    state: Mutex<ChunkLru>,
}

#[derive(Default)]
struct ChunkLru {
    bytes: u64,
    /// (segment, chunk, size), least recently used first.
    entries: VecDeque<(Uuid, u64, u64)>,
}

impl ChunkCache {
    pub(super) fn new(dir: PathBuf, limit: u64) -> Self {
        Self {
            dir,
            limit,
            state: Mutex::new(ChunkLru::default()),
        }
    }

    pub(super) fn path(&self, seg: Uuid, chunk: u64) -> PathBuf {
        self.dir.join(format!("{seg}-{chunk}"))
    }

    pub(super) fn contains(&self, seg: Uuid, chunk: u64) -> bool {
        lock(&self.state)
            .entries
            .iter()
            .any(|&(s, c, _)| s == seg && c == chunk)
    }

    /// Bytes `[lo, hi)` of a cached chunk (fewer at the chunk's end).
    pub(super) async fn get(&self, seg: Uuid, chunk: u64, lo: u64, hi: u64) -> Option<Vec<u8>> {
        let size = {
            let mut st = lock(&self.state);
            let i = st
                .entries
                .iter()
                .position(|&(s, c, _)| s == seg && c == chunk)?;
            let e = st.entries.remove(i)?;
            st.entries.push_back(e);
            e.2
        };
        let hi = hi.min(size);
        let lo = lo.min(hi);
        let path = self.path(seg, chunk);
        tokio::task::spawn_blocking(move || read_file_range(&path, lo, (hi - lo) as usize))
            .await
            .ok()?
            .ok()
    }

    pub(super) async fn put(&self, seg: Uuid, chunk: u64, bytes: Bytes) {
        let size = bytes.len() as u64;
        if size > self.limit || self.contains(seg, chunk) {
            return;
        }
        let path = self.path(seg, chunk);
        let written = tokio::task::spawn_blocking(move || {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, &path)
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
        let evicted: Vec<PathBuf> = {
            let mut st = lock(&self.state);
            if st.entries.iter().any(|&(s, c, _)| s == seg && c == chunk) {
                return;
            }
            st.bytes += size;
            st.entries.push_back((seg, chunk, size));
            let mut evicted = Vec::new();
            while st.bytes > self.limit {
                let Some((s, c, n)) = st.entries.pop_front() else {
                    break;
                };
                st.bytes -= n;
                evicted.push(self.path(s, c));
            }
            evicted
        };
        remove_files(evicted).await;
    }

    pub(super) async fn remove_segment(&self, seg: Uuid) {
        let gone: Vec<PathBuf> = {
            let mut st = lock(&self.state);
            let mut gone = Vec::new();
            let mut freed = 0;
            st.entries.retain(|&(s, c, n)| {
                if s == seg {
                    freed += n;
                    gone.push(self.path(s, c));
                }
                s != seg
            });
            st.bytes -= freed;
            gone
        };
        remove_files(gone).await;
    }

    pub(super) fn bytes(&self) -> u64 {
        lock(&self.state).bytes
    }

    pub(super) fn limit(&self) -> u64 {
        self.limit
    }
}

async fn remove_files(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        for p in paths {
            let _ = std::fs::remove_file(p);
        }
    })
    .await;
}

pub(crate) fn read_file_range(
    path: &std::path::Path,
    pos: u64,
    len: usize,
) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, pos)?;
    Ok(buf)
}
