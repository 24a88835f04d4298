//! Tiered storage: closed segments are copied to an object store and stay readable.
//!
//! The archive owns the objects under its prefix in the bucket, the manifests that list them,
//! and a local cache of chunks read back from them. It knows segments, not brokers: what it
//! needs from a partition comes through [`archiver::ArchiveSource`], which the broker
//! implements.
//!
//! # Layout in the bucket
//! ```text
//! <prefix>/<topic>-<topic_id>/topic.yaml                       name, id, partitions, configs
//! <prefix>/<topic>-<topic_id>/<partition>/manifest.json        the remote segments
//! <prefix>/<topic>-<topic_id>/<partition>/<base>-<segment_id>.{log,index,timeindex,txnindex}
//! ```
//!
//! # Consistency
//! The manifest is the truth of what is remote. A segment's objects are written first,
//! under a fresh segment id per attempt, and only then is the manifest rewritten to list
//! them; so a crash or a failed upload leaves at most an orphan, never a manifest entry for a
//! missing object. Remote deletion goes the other way: manifest first, then objects. A local
//! segment is deleted only once the manifest lists it and it is past local retention.
//!
//! # Files written locally
//! Only the chunk cache, `<data_dir>/.strata/tier-cache/`: copies of byte ranges of remote
//! `.log` objects. It is wiped when the broker starts, so a crash leaves nothing to
//! recover; a chunk cut short by a crash is never read. (With `store: local` the "bucket"
//! is itself a directory, written through object_store, whose puts are atomic renames.)
//!
//! # Modules
//! * `store`: the object-store connection and object paths.
//! * `manifest`: `Manifest` and `RemoteSegment`, their JSON, load and put.
//! * `reader`: remote reads and read-ahead; `cache`: the offset-index and chunk caches.
//! * `archiver`: uploads and the per-partition archiving loop.
//! * `retention`: local retention of archived segments, total (remote) retention.
//! * `restore`: what the archive holds, for a broker started on an empty disk.

pub mod archiver;
mod cache;
pub mod manifest;
pub mod reader;
pub mod restore;
pub mod retention;
pub mod store;

pub use manifest::{Manifest, RemoteSegment};
pub use reader::ReadWant;

use crate::config::Config;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// One partition of one topic, named as the archive names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopicIdPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

impl TopicIdPartition {
    pub fn new(topic: impl Into<String>, topic_id: Uuid, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            topic_id,
            partition,
        }
    }
}

impl std::fmt::Display for TopicIdPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Why an archive operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The object store refused or could not be reached; worth retrying.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// Local disk (segment files being uploaded, the chunk cache).
    #[error("local i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes from the store do not make sense (truncated or damaged objects).
    #[error("corrupt archive data: {0}")]
    Corrupt(String),
}

impl From<tokio::task::JoinError> for TierError {
    fn from(e: tokio::task::JoinError) -> Self {
        TierError::Io(std::io::Error::other(e))
    }
}

/// Sizes of the read path's caches.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    /// Unit of ranged GETs and of the chunk cache.
    pub chunk_bytes: u64,
    /// Bytes of chunks kept on local disk.
    pub chunk_cache_bytes: u64,
    /// Bytes of remote offset indexes kept in memory.
    pub index_cache_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            chunk_bytes: 8 << 20,
            chunk_cache_bytes: 256 << 20,
            index_cache_bytes: 16 << 20,
        }
    }
}

/// What the archive has done since the broker started, for `/metrics`: atomic adds where
/// it happens, read when `/metrics` is scraped.
#[derive(Debug, Default)]
pub struct TierStats {
    /// Segments uploaded and listed in their manifest, and their `.log` bytes.
    pub segments_uploaded: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    /// Uploads (objects or the manifest that lists them) that failed; each is retried.
    pub upload_errors: AtomicU64,
    /// Fetches served from archived segments, those that failed, and the bytes returned.
    pub remote_reads: AtomicU64,
    pub remote_read_errors: AtomicU64,
    pub remote_read_bytes: AtomicU64,
    /// Chunks a remote read found in the chunk cache (or arriving by read-ahead), and
    /// chunks it had to fetch from the store itself.
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// The latest failed archive steps (newest last), for the console: bounded, so a store
    /// that stays down does not grow it.
    recent_errors: std::sync::Mutex<std::collections::VecDeque<ArchiveError>>,
}

/// One failed archive step.
#[derive(Clone, Debug)]
pub struct ArchiveError {
    pub at_ms: i64,
    pub partition: String,
    pub error: String,
}

/// Failed steps remembered by `TierStats`.
const RECENT_ERRORS: usize = 50;

impl TierStats {
    pub(crate) fn failed(&self, partition: String, error: String) {
        let mut recent = self.recent_errors.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_ERRORS {
            recent.pop_front();
        }
        recent.push_back(ArchiveError {
            at_ms: crate::clock::now_ms(),
            partition,
            error,
        });
    }

    /// The latest failures, newest first.
    pub fn recent_errors(&self) -> Vec<ArchiveError> {
        let recent = self.recent_errors.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().cloned().collect()
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The archive: an object store, a key prefix and the read caches.
pub struct Tier {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory: a closed segment's `.log` is then
    /// archived by a hard link instead of a copy (see `archiver::link`).
    local: Option<object_store::local::LocalFileSystem>,
    paths: store::Paths,
    reader: reader::Caches,
    pub stats: TierStats,
}

impl Tier {
    /// The configured store, or `None` when tiering is off.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Arc<Tier>>> {
        let Some(store) = store::connect(config)? else {
            return Ok(None);
        };
        let t = &config.tier;
        let cache_dir = config.data_dir.join(".strata").join("tier-cache");
        // Cached chunks name segments of a store that may have changed while the broker
        // was down; starting empty is simpler than checking them.
        let _ = std::fs::remove_dir_all(&cache_dir);
        std::fs::create_dir_all(&cache_dir)?;
        let defaults = CacheLimits::default();
        let limits = CacheLimits {
            chunk_cache_bytes: t.cache_bytes.unwrap_or(defaults.chunk_cache_bytes),
            index_cache_bytes: t.index_cache_bytes.unwrap_or(defaults.index_cache_bytes),
            ..defaults
        };
        let prefix = t.prefix.clone().unwrap_or_else(|| "strata".into());
        let mut tier = Tier::new(store, prefix, cache_dir, limits);
        if t.store == crate::config::TierStore::Local {
            tier.local = Some(store::local_store(config)?);
        }
        Ok(Some(Arc::new(tier)))
    }

    /// A tier on any store (tests use `object_store::memory::InMemory`).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: String,
        cache_dir: PathBuf,
        limits: CacheLimits,
    ) -> Tier {
        Tier {
            store,
            local: None,
            paths: store::Paths::new(prefix),
            reader: reader::Caches::new(cache_dir, limits),
            stats: TierStats::default(),
        }
    }

    /// Bytes in the chunk cache now, and its limit.
    pub fn chunk_cache_bytes(&self) -> (u64, u64) {
        self.reader.chunk_cache_bytes()
    }

    /// Records a topic's metadata in the archive, so that an empty broker can restore it.
    pub async fn put_topic(&self, topic: &str, id: Uuid, meta_yaml: String) -> anyhow::Result<()> {
        self.store
            .put(
                &self.paths.topic_meta(topic, id),
                PutPayload::from(meta_yaml.into_bytes()),
            )
            .await?;
        Ok(())
    }

    /// Deletes every object of a topic: its `topic.yaml` first, so that a restore never
    /// finds a half-deleted topic, then the manifests, so that no manifest ever names a
    /// deleted object, then the rest. Safe to repeat after an interruption.
    pub async fn delete_topic(&self, topic: &str, id: Uuid) -> anyhow::Result<()> {
        let prefix = ObjectPath::from(self.paths.topic_dir(topic, id));
        let mut listing = self.store.list(Some(&prefix));
        let mut keys = Vec::new();
        while let Some(meta) = listing.next().await {
            keys.push(meta?.location);
        }
        keys.sort_by_key(|k| {
            let k = k.as_ref();
            (
                !k.ends_with(store::TOPIC_META),
                !k.ends_with(store::MANIFEST),
            )
        });
        for k in keys {
            self.store.delete(&k).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::archiver::ArchiveSource;
    use super::retention::Retention;
    use super::*;
    use crate::log::record_batch::tests::make_batch;
    use crate::log::txn_index::AbortedTxn;
    use crate::log::{ClosedSegment, Log, LogConfig};
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutOptions, PutResult,
    };
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::Mutex;
    use tokio::sync::Notify;

    pub const PREFIX: &str = "t";

    /// A tier on `store` with small chunks, so a few KiB of log span several of them.
    pub fn tier_on(store: Arc<dyn ObjectStore>, cache: &std::path::Path) -> Arc<Tier> {
        tier_with(store, cache, 1 << 20)
    }

    pub fn tier_with(
        store: Arc<dyn ObjectStore>,
        cache: &std::path::Path,
        index_cache_bytes: u64,
    ) -> Arc<Tier> {
        Arc::new(Tier::new(
            store,
            PREFIX.into(),
            cache.to_path_buf(),
            CacheLimits {
                chunk_bytes: 4096,
                chunk_cache_bytes: 1 << 20,
                index_cache_bytes,
            },
        ))
    }

    pub fn tp() -> TopicIdPartition {
        TopicIdPartition::new("events", Uuid::from_u128(7), 0)
    }

    /// A log in `dir` of `batches` one-record batches of `value_len` bytes, timestamps
    /// 1000 + i, every batch indexed, rolled every `segment_bytes`.
    pub fn make_log(
        dir: &std::path::Path,
        segment_bytes: u64,
        batches: u32,
        value_len: usize,
    ) -> Log {
        let config = LogConfig {
            segment_bytes,
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        let (mut log, _) = Log::open(dir, config, &mut |_| {}).expect("open log");
        for i in 0..batches {
            let v = vec![(i % 251) as u8; value_len];
            log.append(&mut make_batch(1000 + i as i64, &[&v]))
                .expect("append");
        }
        log
    }

    /// A partition as the archiver sees it, on a real log.
    pub struct FakeSource {
        pub log: Mutex<Log>,
        /// The last stable offset is the log end, or this when lower.
        pub stable: AtomicI64,
        pub rolled: Notify,
        pub manifest: Mutex<Option<Manifest>>,
        pub aborted: Mutex<Vec<AbortedTxn>>,
        pub remote_end: AtomicI64,
        pub retention: Mutex<Retention>,
        pub log_start: AtomicI64,
    }

    impl FakeSource {
        pub fn new(log: Log) -> Self {
            Self {
                log: Mutex::new(log),
                stable: AtomicI64::new(i64::MAX),
                rolled: Notify::new(),
                manifest: Mutex::new(None),
                aborted: Mutex::new(Vec::new()),
                remote_end: AtomicI64::new(-1),
                retention: Mutex::new(Retention::resolve(-1, -1, -2, -2)),
                log_start: AtomicI64::new(0),
            }
        }
        pub fn set_retention(&self, r: Retention) {
            *self.retention.lock().expect("lock") = r;
        }
        pub fn local_bases(&self) -> Vec<i64> {
            let log = self.log.lock().expect("lock");
            log.segment_sizes().into_iter().map(|(b, _)| b).collect()
        }
        pub fn installed(&self) -> Manifest {
            self.manifest
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or_default()
        }
    }

    impl ArchiveSource for FakeSource {
        fn closed_segments(&self) -> Vec<ClosedSegment> {
            self.log.lock().expect("lock").closed_segments()
        }
        fn last_stable_offset(&self) -> i64 {
            let end = self.log.lock().expect("lock").next_offset();
            end.min(self.stable.load(Ordering::Acquire))
        }
        fn rolled(&self) -> &Notify {
            &self.rolled
        }
        fn manifest(&self) -> Option<Manifest> {
            self.manifest.lock().expect("lock").clone()
        }
        fn install_manifest(&self, manifest: Manifest, aborted: Vec<AbortedTxn>) {
            if let Some(last) = manifest.segments.last() {
                self.remote_end
                    .fetch_max(last.end_offset + 1, Ordering::AcqRel);
            }
            self.aborted.lock().expect("lock").extend(aborted);
            *self.manifest.lock().expect("lock") = Some(manifest);
        }
        fn remote_end(&self) -> i64 {
            self.remote_end.load(Ordering::Acquire)
        }
        fn retention(&self) -> Retention {
            *self.retention.lock().expect("lock")
        }
        fn delete_oldest_local_if(
            &self,
            may_delete: &dyn Fn(&ClosedSegment, u64) -> bool,
        ) -> std::io::Result<bool> {
            let mut log = self.log.lock().expect("lock");
            let closed = log.closed_segments();
            let Some(oldest) = closed.first() else {
                return Ok(false);
            };
            if !may_delete(oldest, log.size()) {
                return Ok(false);
            }
            log.delete_oldest_segment()?;
            Ok(true)
        }
        fn local_size_beyond_archive(&self) -> u64 {
            let remote_end = self.remote_end();
            let log = self.log.lock().expect("lock");
            log.segment_sizes()
                .into_iter()
                .filter(|&(base, _)| base >= remote_end)
                .map(|(_, size)| size)
                .sum()
        }
        fn log_start_offset(&self) -> i64 {
            let local = self.log.lock().expect("lock").log_start_offset();
            let held = match self.manifest().and_then(|m| m.segments.first().cloned()) {
                Some(first) => first.base_offset.min(local),
                None => local,
            };
            held.max(self.log_start.load(Ordering::Acquire))
        }
        fn advance_log_start(&self, offset: i64, _reason: &str) -> std::io::Result<bool> {
            let moved = offset > self.log_start_offset();
            self.log_start.fetch_max(offset, Ordering::AcqRel);
            let taken = self.log.lock().expect("lock").take_segments_below(offset);
            for seg in taken {
                seg.delete()?;
            }
            Ok(moved)
        }
    }

    /// InMemory that records what is written and deleted, in order, and can refuse writes.
    #[derive(Debug, Default)]
    pub struct TestStore {
        pub inner: InMemory,
        pub fail_puts: AtomicBool,
        pub events: Arc<Mutex<Vec<String>>>,
    }

    impl TestStore {
        pub fn events(&self) -> Vec<String> {
            self.events.lock().expect("lock").clone()
        }
        fn refuse(&self) -> object_store::Result<()> {
            if self.fail_puts.load(Ordering::Acquire) {
                return Err(object_store::Error::Generic {
                    store: "test",
                    source: "writes refused".into(),
                });
            }
            Ok(())
        }
    }

    impl std::fmt::Display for TestStore {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "TestStore")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for TestStore {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.refuse()?;
            self.events
                .lock()
                .expect("lock")
                .push(format!("put {location}"));
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.refuse()?;
            self.events
                .lock()
                .expect("lock")
                .push(format!("put {location}"));
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
            let events = self.events.clone();
            let recorded = locations
                .map(move |r| {
                    if let Ok(p) = &r {
                        events.lock().expect("lock").push(format!("delete {p}"));
                    }
                    r
                })
                .boxed();
            self.inner.delete_stream(recorded)
        }
        fn list(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    /// Uploads every closed segment of `log` and writes the manifest listing them.
    pub async fn archive_all(tier: &Tier, tp: &TopicIdPartition, log: &Log) -> Manifest {
        let mut m = Manifest::default();
        for seg in log.closed_segments() {
            m.segments
                .push(tier.upload(tp, &seg).await.expect("upload"));
        }
        tier.put_manifest(tp, &m).await.expect("put manifest");
        m
    }
}

#[cfg(test)]
mod stats_tests {
    use super::*;

    #[test]
    fn recent_errors_are_bounded_and_newest_first() {
        let stats = TierStats::default();
        for i in 0..(RECENT_ERRORS + 10) {
            stats.failed("t-0".into(), format!("failure {i}"));
        }
        let recent = stats.recent_errors();
        assert_eq!(recent.len(), RECENT_ERRORS);
        assert_eq!(recent[0].error, format!("failure {}", RECENT_ERRORS + 9));
        assert_eq!(recent[RECENT_ERRORS - 1].error, "failure 10");
    }
}
