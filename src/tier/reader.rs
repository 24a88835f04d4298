//! Remote reads: whole batches from an archived segment, found through its remote offset
//! index and fetched by ranged GETs of fixed-size chunks.
//!
//! Goes through the two caches of `cache` (remote offset indexes in memory, chunks of
//! `.log` objects on local disk); after each read, the next chunks are fetched ahead, and a
//! read that needs a chunk still on its way waits for it. Writes no files itself.
//!
//! Everything read from the store is untrusted: lengths and positions are checked against
//! the segment's size before they index or allocate anything; what does not add up is
//! [`TierError::Corrupt`], and the segment's cached chunks and index are dropped.

use super::cache::{ChunkCache, IndexCache};
use super::{CacheLimits, RemoteSegment, Tier, TierError, TierStats, TopicIdPartition};
use crate::log::index::OFFSET_ENTRY;
use crate::log::record_batch::{BatchHeaders, RecordBatch, HEADER_SIZE, LOG_OVERHEAD};
use crate::log::txn_index::AbortedTxn;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use uuid::Uuid;

/// Chunks fetched ahead of a reader, so a consumer catching up on the archive finds the
/// next bytes cached instead of waiting a round trip per fetch.
pub const READ_AHEAD: u64 = 2;

/// A chunk fetched ahead that has not arrived by then is given up, so a store that stalls
/// cannot leave it pending for ever.
const READ_AHEAD_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// How long a read waits for a chunk being fetched ahead before it fetches the chunk itself.
const READ_AHEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Bytes read at a time while walking batch headers to an offset or a timestamp.
const WALK_WINDOW: u64 = 64 << 10;

/// What a fetch asks of one partition.
#[derive(Clone, Copy, Debug)]
pub struct ReadWant {
    pub offset: i64,
    pub max_bytes: usize,
    /// KIP-74: return the first batch even when it is larger than `max_bytes`.
    pub min_one: bool,
}

/// A remote segment's offset index: (relative offset, position) entries, both increasing.
pub(super) type RemoteIndex = Vec<(u32, u32)>;

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded state is a cache: whatever a panicking holder left is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The read path's caches.
pub(crate) struct Caches {
    chunk: u64,
    chunks: ChunkCache,
    indexes: IndexCache,
    /// Chunks being fetched ahead of a reader, and the signal of each fetch's end: a read
    /// that needs one of them waits for it instead of fetching the chunk a second time.
    prefetching: Arc<Prefetching>,
}

/// Chunks (segment, number) being fetched ahead, each with the signal of its fetch's end.
type Prefetching = Mutex<HashMap<(Uuid, u64), Arc<Notify>>>;

/// Ends a read-ahead's entry however its task ends (done, failed, aborted), and wakes the
/// reads waiting for it.
struct Prefetch {
    pending: Arc<Prefetching>,
    key: (Uuid, u64),
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some(done) = lock(&self.pending).remove(&self.key) {
            done.notify_waiters();
        }
    }
}

impl Caches {
    pub(crate) fn new(dir: PathBuf, limits: CacheLimits) -> Self {
        Self {
            chunk: limits.chunk_bytes.max(HEADER_SIZE as u64),
            chunks: ChunkCache::new(dir, limits.chunk_cache_bytes),
            indexes: IndexCache::new(limits.index_cache_bytes),
            prefetching: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Bytes in the chunk cache now, and its limit.
    pub(crate) fn chunk_cache_bytes(&self) -> (u64, u64) {
        (self.chunks.bytes(), self.chunks.limit())
    }
}

/// The header fields a walk needs, checked against the segment.
#[derive(Clone, Copy, Debug)]
struct Head {
    size: u64,
    last_offset: i64,
    max_timestamp: i64,
}

fn be<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at + N)?.try_into().ok()
}

/// Parses the batch header at `pos` of `seg` from `b`; a length that is negative, smaller
/// than a header or runs past the segment end, or a magic other than 2, is corrupt.
fn head_at(b: &[u8], pos: u64, seg: &RemoteSegment) -> Result<Head, TierError> {
    let corrupt = |what: &str| {
        TierError::Corrupt(format!(
            "segment {} at position {pos}: {what}",
            seg.segment_id
        ))
    };
    let (Some(base), Some(len), Some(delta), Some(max_ts)) =
        (be::<8>(b, 0), be::<4>(b, 8), be::<4>(b, 23), be::<8>(b, 35))
    else {
        return Err(corrupt("truncated batch header"));
    };
    if b.get(16) != Some(&2) {
        return Err(corrupt("batch magic is not 2"));
    }
    let len = i32::from_be_bytes(len) as i64;
    if len < (HEADER_SIZE - LOG_OVERHEAD) as i64 {
        return Err(corrupt(&format!("batch length {len}")));
    }
    let size = len as u64 + LOG_OVERHEAD as u64;
    if pos.saturating_add(size) > seg.size {
        return Err(corrupt(&format!(
            "batch of {size} bytes runs past the segment end ({})",
            seg.size
        )));
    }
    Ok(Head {
        size,
        last_offset: i64::from_be_bytes(base).saturating_add(i32::from_be_bytes(delta) as i64),
        max_timestamp: i64::from_be_bytes(max_ts),
    })
}

/// Parses a remote `.index`: whole entries, increasing, every position inside the segment.
fn parse_index(raw: &[u8], seg: &RemoteSegment) -> Result<RemoteIndex, TierError> {
    let corrupt =
        |what: String| TierError::Corrupt(format!("index of segment {}: {what}", seg.segment_id));
    if !raw.len().is_multiple_of(OFFSET_ENTRY) {
        return Err(corrupt(format!("{} bytes is not whole entries", raw.len())));
    }
    let mut entries: RemoteIndex = Vec::with_capacity(raw.len() / OFFSET_ENTRY);
    for e in raw.chunks_exact(OFFSET_ENTRY) {
        let (Some(rel), Some(pos)) = (be::<4>(e, 0), be::<4>(e, 4)) else {
            return Err(corrupt("short entry".into()));
        };
        let (rel, pos) = (u32::from_be_bytes(rel), u32::from_be_bytes(pos));
        if pos as u64 >= seg.size {
            return Err(corrupt(format!(
                "position {pos} beyond the segment size {}",
                seg.size
            )));
        }
        if let Some(&(lr, lp)) = entries.last() {
            if rel <= lr || pos <= lp {
                return Err(corrupt("entries out of order".into()));
            }
        }
        entries.push((rel, pos));
    }
    Ok(entries)
}

/// The most index bytes a segment of `size` bytes can need: one entry per batch at most.
fn max_index_bytes(seg: &RemoteSegment) -> u64 {
    (seg.size / HEADER_SIZE as u64 + 1) * OFFSET_ENTRY as u64
}

impl Tier {
    /// Whole batches from `want.offset` in a remote segment, up to `want.max_bytes` but at
    /// least one when `want.min_one` (KIP-74). Starts fetching the next chunks into the
    /// cache; on any error forgets what it cached of the segment, so the next read starts
    /// clean.
    pub async fn read(
        self: &Arc<Self>,
        tp: &TopicIdPartition,
        seg: &RemoteSegment,
        want: ReadWant,
    ) -> Result<Bytes, TierError> {
        TierStats::add(&self.stats.remote_reads, 1);
        match self.read_batches(tp, seg, want).await {
            Ok((bytes, pos)) => {
                TierStats::add(&self.stats.remote_read_bytes, bytes.len() as u64);
                if !bytes.is_empty() {
                    self.read_ahead(tp, seg, pos + bytes.len() as u64);
                }
                Ok(bytes)
            }
            Err(e) => {
                TierStats::add(&self.stats.remote_read_errors, 1);
                self.forget(seg.segment_id).await;
                Err(e)
            }
        }
    }

    /// The bytes `read` returns and where in the segment they start.
    async fn read_batches(
        &self,
        tp: &TopicIdPartition,
        seg: &RemoteSegment,
        want: ReadWant,
    ) -> Result<(Bytes, u64), TierError> {
        let index = self.offset_index(tp, seg).await?;
        let rel = want.offset.saturating_sub(seg.base_offset);
        let i = index.partition_point(|&(r, _)| (r as i64) <= rel);
        let start = match i.checked_sub(1).and_then(|i| index.get(i)) {
            Some(&(_, pos)) => pos as u64,
            None => 0,
        };
        let Some((pos, head)) = self
            .walk(tp, seg, start, |h| h.last_offset >= want.offset)
            .await?
        else {
            return Ok((Bytes::new(), seg.size));
        };
        let len = if head.size > want.max_bytes as u64 {
            if !want.min_one {
                return Ok((Bytes::new(), pos));
            }
            head.size
        } else {
            (want.max_bytes as u64).min(seg.size - pos)
        };
        let bytes = self.read_range(tp, seg, pos, len).await?;
        let mut whole = 0;
        let mut it = BatchHeaders::new(&bytes);
        while let Some(Ok(_)) = it.next() {
            whole = it.position();
        }
        if whole == 0 {
            return Err(TierError::Corrupt(format!(
                "segment {} at position {pos}: unreadable batch",
                seg.segment_id
            )));
        }
        let mut bytes = Bytes::from(bytes);
        bytes.truncate(whole);
        Ok((bytes, pos))
    }

    /// (offset, timestamp) of the first record at or after `timestamp` in the archive.
    pub async fn offset_for_timestamp(
        &self,
        tp: &TopicIdPartition,
        manifest: &super::Manifest,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, TierError> {
        let Some(seg) = manifest
            .segments
            .iter()
            .find(|s| s.max_timestamp >= timestamp)
        else {
            return Ok(None);
        };
        let found = match self
            .walk(tp, seg, 0, |h| h.max_timestamp >= timestamp)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                self.forget(seg.segment_id).await;
                return Err(e);
            }
        };
        let Some((pos, head)) = found else {
            return Ok(None);
        };
        let batch = match self.read_range(tp, seg, pos, head.size).await {
            Ok(b) => b,
            Err(e) => {
                self.forget(seg.segment_id).await;
                return Err(e);
            }
        };
        let parsed = RecordBatch::parse_header(&batch).map_err(|e| {
            TierError::Corrupt(format!("segment {} at position {pos}: {e}", seg.segment_id))
        })?;
        Ok(crate::log::record_batch::first_offset_at_or_after(
            &parsed, timestamp,
        ))
    }

    /// A remote segment's aborted transactions (Kafka's 34-byte `.txnindex` entries).
    pub async fn txn_index(
        &self,
        tp: &TopicIdPartition,
        seg: &RemoteSegment,
    ) -> Result<Vec<AbortedTxn>, TierError> {
        let r = self
            .store
            .get(&self.paths.segment(tp, seg, ".txnindex"))
            .await?;
        // One entry per abort marker, and every marker is a batch of its own.
        let max = (seg.size / HEADER_SIZE as u64 + 1) * crate::log::txn_index::ENTRY as u64;
        if r.meta.size > max {
            return Err(TierError::Corrupt(format!(
                "txnindex of segment {} is {} bytes",
                seg.segment_id, r.meta.size
            )));
        }
        let body = r.bytes().await?;
        Ok(crate::log::txn_index::parse(&body))
    }

    /// Walks batch headers from `pos` to the first batch `stop` accepts; `None` past the end.
    async fn walk(
        &self,
        tp: &TopicIdPartition,
        seg: &RemoteSegment,
        mut pos: u64,
        stop: impl Fn(&Head) -> bool,
    ) -> Result<Option<(u64, Head)>, TierError> {
        let mut window = Vec::new();
        let mut window_start = pos;
        loop {
            if pos >= seg.size {
                return Ok(None);
            }
            let off = pos - window_start;
            if window.len() as u64 - off.min(window.len() as u64) < HEADER_SIZE as u64 {
                let len = WALK_WINDOW.min(seg.size - pos);
                if len < HEADER_SIZE as u64 {
                    return Err(TierError::Corrupt(format!(
                        "segment {} at position {pos}: truncated batch header",
                        seg.segment_id
                    )));
                }
                window = self.read_range(tp, seg, pos, len).await?;
                window_start = pos;
                continue;
            }
            let head = head_at(&window[off as usize..], pos, seg)?;
            if stop(&head) {
                return Ok(Some((pos, head)));
            }
            pos += head.size;
        }
    }

    /// The segment's offset index, from memory or the store.
    async fn offset_index(
        &self,
        tp: &TopicIdPartition,
        seg: &RemoteSegment,
    ) -> Result<Arc<RemoteIndex>, TierError> {
        if let Some(i) = self.reader.indexes.get(seg.segment_id) {
            return Ok(i);
        }
        let r = self
            .store
            .get(&self.paths.segment(tp, seg, ".index"))
            .await?;
        let max = max_index_bytes(seg);
        if r.meta.size > max {
            return Err(TierError::Corrupt(format!(
                "index of segment {} is {} bytes, more than {max}",
                seg.segment_id, r.meta.size
            )));
        }
        let raw = r.bytes().await?;
        if raw.len() as u64 > max {
            return Err(TierError::Corrupt(format!(
                "index of segment {} is {} bytes, more than {max}",
                seg.segment_id,
                raw.len()
            )));
        }
        let index = Arc::new(parse_index(&raw, seg)?);
        self.reader.indexes.put(seg.segment_id, index.clone());
        Ok(index)
    }

    /// Bytes `[start, start + len)` of a remote segment's log, through the chunk cache.
    /// A range past the segment's end is corrupt (lengths come from the store).
    async fn read_range(
        &self,
        tp: &TopicIdPartition,
        seg: &RemoteSegment,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, TierError> {
        let end = start
            .checked_add(len)
            .filter(|&end| end <= seg.size)
            .ok_or_else(|| {
                TierError::Corrupt(format!(
                    "segment {}: range {start}+{len} past its size {}",
                    seg.segment_id, seg.size
                ))
            })?;
        let chunk = self.reader.chunk;
        // Grown as bytes arrive, so a lying size never allocates more than was fetched.
        let mut out = Vec::with_capacity(len.min(chunk) as usize);
        let mut n = start / chunk;
        while n * chunk < end {
            let from = n * chunk;
            let lo = start.max(from) - from;
            let hi = end.min(from + chunk) - from;
            if let Some(part) = self.cached(seg.segment_id, n, lo, hi).await {
                TierStats::add(&self.stats.cache_hits, 1);
                out.extend_from_slice(&part);
                n += 1;
                continue;
            }
            // Being fetched ahead: wait for that fetch rather than doubling the store's work.
            let pending = lock(&self.reader.prefetching)
                .get(&(seg.segment_id, n))
                .cloned();
            if let Some(done) = pending {
                let finished = done.notified();
                if lock(&self.reader.prefetching).contains_key(&(seg.segment_id, n)) {
                    // A slow read-ahead must not hold up the reader for longer than this.
                    let _ = tokio::time::timeout(READ_AHEAD_WAIT, finished).await;
                }
            }
            match self.cached(seg.segment_id, n, lo, hi).await {
                Some(part) => {
                    TierStats::add(&self.stats.cache_hits, 1);
                    out.extend_from_slice(&part)
                }
                None => {
                    TierStats::add(&self.stats.cache_misses, 1);
                    let bytes = self.fetch_chunk(tp, seg, n).await?;
                    let part = bytes.get(lo as usize..hi as usize).ok_or_else(|| {
                        TierError::Corrupt(format!("segment {}: short chunk {n}", seg.segment_id))
                    })?;
                    out.extend_from_slice(part);
                }
            }
            n += 1;
        }
        Ok(out)
    }

    /// Fetches chunk `n` of a segment's log from the store into the cache.
    async fn fetch_chunk(
        &self,
        tp: &TopicIdPartition,
        seg: &RemoteSegment,
        n: u64,
    ) -> Result<Bytes, TierError> {
        let chunk = self.reader.chunk;
        let from = n * chunk;
        let to = (from + chunk).min(seg.size);
        let path = self.paths.segment(tp, seg, ".log");
        let bytes = match self.store.get_range(&path, from..to).await {
            Ok(b) => b,
            Err(e) => {
                // A range past the object's end fails on some stores: that is a short object.
                if let Ok(meta) = self.store.head(&path).await {
                    if meta.size < seg.size {
                        return Err(short_log(seg, meta.size));
                    }
                }
                return Err(e.into());
            }
        };
        if bytes.len() as u64 != to - from {
            return Err(short_log(seg, from + bytes.len() as u64));
        }
        self.reader
            .chunks
            .put(seg.segment_id, n, bytes.clone())
            .await;
        Ok(bytes)
    }

    /// Starts fetching, in the background, the chunks from the one holding `next` up to
    /// `READ_AHEAD` after it that are neither cached nor already being fetched.
    /// Bytes `[lo, hi)` of a cached chunk, when all of them are there.
    async fn cached(&self, segment: Uuid, n: u64, lo: u64, hi: u64) -> Option<Vec<u8>> {
        let part = self.reader.chunks.get(segment, n, lo, hi).await?;
        (part.len() as u64 == hi - lo).then_some(part)
    }

    fn read_ahead(self: &Arc<Self>, tp: &TopicIdPartition, seg: &RemoteSegment, next: u64) {
        if next >= seg.size {
            return;
        }
        let chunk = self.reader.chunk;
        let first = next / chunk;
        let last = (seg.size - 1) / chunk;
        for n in first..=(first + READ_AHEAD).min(last) {
            let key = (seg.segment_id, n);
            if self.reader.chunks.contains(seg.segment_id, n) {
                continue;
            }
            match lock(&self.reader.prefetching).entry(key) {
                std::collections::hash_map::Entry::Occupied(_) => continue,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Arc::new(Notify::new()));
                }
            }
            let guard = Prefetch {
                pending: self.reader.prefetching.clone(),
                key,
            };
            let (tier, tp, seg) = (self.clone(), tp.clone(), seg.clone());
            tokio::spawn(async move {
                let _guard = guard;
                match tokio::time::timeout(READ_AHEAD_LIMIT, tier.fetch_chunk(&tp, &seg, n)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(%tp, segment = %seg.segment_id, chunk = n, error = %e, "read-ahead failed")
                    }
                    Err(_) => {
                        tracing::warn!(%tp, segment = %seg.segment_id, chunk = n, "read-ahead timed out")
                    }
                }
            });
        }
    }

    /// Drops a segment's cached index and chunks.
    async fn forget(&self, segment: Uuid) {
        self.reader.indexes.remove(segment);
        self.reader.chunks.remove_segment(segment).await;
    }
}

fn short_log(seg: &RemoteSegment, got: u64) -> TierError {
    TierError::Corrupt(format!(
        "log object of segment {} is shorter ({got} bytes) than the manifest says ({})",
        seg.segment_id, seg.size
    ))
}

#[cfg(test)]
mod tests;
