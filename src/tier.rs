//! Tiered storage: closed segments are copied to an object store and stay readable.
//!
//! # Layout in the bucket
//! ```text
//! <prefix>/<topic>-<topic_id>/topic.yaml                       name, id, partitions, configs
//! <prefix>/<topic>-<topic_id>/<partition>/manifest.json        the remote segments
//! <prefix>/<topic>-<topic_id>/<partition>/<base>-<segment_id>.{log,index,timeindex}
//! ```
//!
//! # Consistency
//! The manifest is the truth of what is remote. A segment's objects are written first,
//! under a fresh segment id per attempt, and only then is the manifest rewritten to list
//! them; so a crash or a failed upload leaves at most an orphan, never a manifest entry for a
//! missing object. Remote deletion goes the other way: manifest first, then objects. A local
//! segment is deleted only once the manifest lists it and it is past local retention.

use crate::broker::partition::Partition;
use crate::broker::{Broker, Topic};
use crate::config::{Config, TierStore};
use crate::log::index::OFFSET_ENTRY;
use crate::log::record_batch::{BatchHeaders, RecordBatch, HEADER_SIZE};
use crate::log::txn_index::AbortedTxn;
use crate::log::ClosedSegment;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Segments larger than this are uploaded in parts.
const MULTIPART_THRESHOLD: u64 = 16 << 20;
const PART_SIZE: usize = 8 << 20;
/// Unit of ranged GETs and of the local read cache.
const CHUNK: u64 = 8 << 20;
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A partition as the archive names it: topic name and id, partition index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopicIdPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

/// What a fetch asks of one partition.
#[derive(Clone, Copy, Debug)]
pub struct ReadWant {
    pub offset: i64,
    pub max_bytes: usize,
    /// KIP-74: return the first batch even when it is larger than `max_bytes`.
    pub min_one: bool,
}

/// One archived segment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RemoteSegment {
    pub base_offset: i64,
    /// Last offset in the segment.
    pub end_offset: i64,
    pub segment_id: Uuid,
    pub max_timestamp: i64,
    pub size: u64,
    /// CRC-32C of the `.log` object.
    pub crc32c: u32,
    /// Whether a `.txnindex` object (aborted transactions) goes with the segment.
    #[serde(default)]
    pub txn_index: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub segments: Vec<RemoteSegment>,
}

impl Manifest {
    pub fn find(&self, offset: i64) -> Option<&RemoteSegment> {
        self.segments
            .iter()
            .find(|s| s.base_offset <= offset && offset <= s.end_offset)
    }
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
}

/// A remote segment's offset index: (relative offset, position) entries.
type RemoteIndex = Vec<(u32, u32)>;

/// The archive: an object store, a key prefix and a local chunk cache.
pub struct Tier {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    cache: ChunkCache,
    /// Offset indexes of remote segments, by segment id (small; fetched once).
    indexes: Mutex<HashMap<Uuid, Arc<RemoteIndex>>>,
    /// Chunks being fetched ahead of a sequential reader.
    prefetching: Mutex<std::collections::HashSet<(Uuid, u64)>>,
}

/// Chunks fetched ahead of a reader, so a consumer catching up on the archive finds the
/// next bytes cached instead of waiting a round trip per fetch.
const READ_AHEAD: u64 = 2;

impl Tier {
    /// The configured store, or `None` when tiering is off.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Arc<Tier>>> {
        let t = &config.tier;
        if t.store == TierStore::None || !config.props.bool("remote.log.storage.system.enable") {
            return Ok(None);
        }
        let store: Arc<dyn ObjectStore> = match t.store {
            TierStore::Local => {
                let dir = t
                    .local_dir
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("tier"));
                std::fs::create_dir_all(&dir)?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir)?)
            }
            TierStore::S3 => {
                let mut b =
                    object_store::aws::AmazonS3Builder::from_env()
                        .with_bucket_name(t.bucket.clone().ok_or_else(|| {
                            anyhow::anyhow!("tier.bucket is required for store: s3")
                        })?)
                        .with_retry(object_store::RetryConfig {
                            max_retries: 2,
                            retry_timeout: Duration::from_secs(10),
                            backoff: Default::default(),
                        });
                if let Some(r) = &t.region {
                    b = b.with_region(r);
                }
                if let Some(e) = &t.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(k) = &t.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = &t.secret_access_key {
                    b = b.with_secret_access_key(k);
                }
                b = b
                    .with_virtual_hosted_style_request(!t.path_style.unwrap_or(true))
                    .with_allow_http(t.allow_http.unwrap_or(false));
                Arc::new(b.build()?)
            }
            TierStore::None => return Ok(None),
        };
        let cache_dir = config.data_dir.join(".strata").join("tier-cache");
        let _ = std::fs::remove_dir_all(&cache_dir);
        std::fs::create_dir_all(&cache_dir)?;
        Ok(Some(Arc::new(Tier {
            store,
            prefix: t.prefix.clone().unwrap_or_else(|| "strata".into()),
            cache: ChunkCache::new(cache_dir, t.cache_bytes.unwrap_or(256 << 20)),
            indexes: Mutex::new(HashMap::new()),
            prefetching: Mutex::new(Default::default()),
        })))
    }

    fn topic_dir(&self, topic: &str, id: Uuid) -> String {
        format!("{}/{}-{}", self.prefix, topic, id)
    }
    fn manifest_path(&self, topic: &str, id: Uuid, partition: i32) -> ObjectPath {
        ObjectPath::from(format!(
            "{}/{}/manifest.json",
            self.topic_dir(topic, id),
            partition
        ))
    }
    fn segment_path(
        &self,
        topic: &str,
        id: Uuid,
        partition: i32,
        seg: &RemoteSegment,
        suffix: &str,
    ) -> ObjectPath {
        ObjectPath::from(format!(
            "{}/{}/{:020}-{}{}",
            self.topic_dir(topic, id),
            partition,
            seg.base_offset,
            seg.segment_id,
            suffix
        ))
    }

    /// Records a topic's metadata in the archive, so that an empty broker can restore it.
    pub async fn put_topic(&self, topic: &Topic) -> anyhow::Result<()> {
        let path = ObjectPath::from(format!(
            "{}/topic.yaml",
            self.topic_dir(&topic.name, topic.id)
        ));
        self.store
            .put(&path, PutPayload::from(topic.meta_yaml()?.into_bytes()))
            .await?;
        Ok(())
    }

    /// Deletes every object of a topic.
    pub async fn delete_topic(&self, name: &str, id: Uuid) -> anyhow::Result<()> {
        let prefix = ObjectPath::from(self.topic_dir(name, id));
        let mut listing = self.store.list(Some(&prefix));
        let mut keys = Vec::new();
        while let Some(meta) = listing.next().await {
            keys.push(meta?.location);
        }
        // Manifests first, so no manifest ever names a deleted object.
        keys.sort_by_key(|k| !k.as_ref().ends_with("manifest.json"));
        for k in keys {
            self.store.delete(&k).await?;
        }
        Ok(())
    }

    /// Topics recorded in the archive: (metadata text, per-partition manifests).
    pub async fn list_topics(&self) -> anyhow::Result<Vec<String>> {
        let root = ObjectPath::from(self.prefix.clone());
        let listing = self.store.list_with_delimiter(Some(&root)).await?;
        let mut out = Vec::new();
        for dir in listing.common_prefixes {
            let path = ObjectPath::from(format!("{dir}/topic.yaml"));
            match self.store.get(&path).await {
                Ok(r) => out.push(String::from_utf8_lossy(&r.bytes().await?).into_owned()),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    pub async fn load_manifest(
        &self,
        topic: &str,
        id: Uuid,
        partition: i32,
    ) -> anyhow::Result<Manifest> {
        match self
            .store
            .get(&self.manifest_path(topic, id, partition))
            .await
        {
            Ok(r) => Ok(serde_json::from_slice(&r.bytes().await?)?),
            Err(object_store::Error::NotFound { .. }) => Ok(Manifest::default()),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_manifest(
        &self,
        topic: &str,
        id: Uuid,
        partition: i32,
        m: &Manifest,
    ) -> anyhow::Result<()> {
        let body = serde_json::to_vec(m)?;
        self.store
            .put(
                &self.manifest_path(topic, id, partition),
                PutPayload::from(body),
            )
            .await?;
        Ok(())
    }

    /// Uploads one closed segment's three files under a fresh segment id.
    async fn upload(
        &self,
        topic: &str,
        id: Uuid,
        partition: i32,
        seg: &ClosedSegment,
    ) -> anyhow::Result<RemoteSegment> {
        let mut remote = RemoteSegment {
            base_offset: seg.base_offset,
            end_offset: seg.next_offset - 1,
            segment_id: Uuid::new_v4(),
            max_timestamp: seg.max_timestamp,
            size: seg.size,
            crc32c: 0,
            txn_index: false,
        };
        let log_path = seg.paths[0].clone();
        let size = seg.size;
        let target = self.segment_path(topic, id, partition, &remote, ".log");
        if size > MULTIPART_THRESHOLD {
            let mut upload = WriteMultipart::new_with_chunk_size(
                self.store.put_multipart(&target).await?,
                PART_SIZE,
            );
            let mut crc = 0u32;
            let mut pos = 0u64;
            while pos < size {
                let len = (PART_SIZE as u64).min(size - pos) as usize;
                let path = log_path.clone();
                let chunk =
                    tokio::task::spawn_blocking(move || read_file_range(&path, pos, len)).await??;
                crc = crc32c::crc32c_append(crc, &chunk);
                upload.wait_for_capacity(4).await?;
                upload.put(Bytes::from(chunk));
                pos += len as u64;
            }
            upload.finish().await?;
            remote.crc32c = crc;
        } else {
            let path = log_path.clone();
            let body =
                tokio::task::spawn_blocking(move || read_file_range(&path, 0, size as usize))
                    .await??;
            remote.crc32c = crc32c::crc32c(&body);
            self.store.put(&target, PutPayload::from(body)).await?;
        }
        for (suffix, path) in [(".index", &seg.paths[1]), (".timeindex", &seg.paths[2])] {
            let body = tokio::fs::read(path).await?;
            self.store
                .put(
                    &self.segment_path(topic, id, partition, &remote, suffix),
                    PutPayload::from(body),
                )
                .await?;
        }
        let txn_path = seg.paths[0].with_extension("txnindex");
        match tokio::fs::read(&txn_path).await {
            Ok(body) => {
                self.store
                    .put(
                        &self.segment_path(topic, id, partition, &remote, ".txnindex"),
                        PutPayload::from(body),
                    )
                    .await?;
                remote.txn_index = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(remote)
    }

    async fn delete_segment_objects(
        &self,
        topic: &str,
        id: Uuid,
        partition: i32,
        seg: &RemoteSegment,
    ) {
        let suffixes: &[&str] = if seg.txn_index {
            &[".log", ".index", ".timeindex", ".txnindex"]
        } else {
            &[".log", ".index", ".timeindex"]
        };
        for suffix in suffixes {
            if let Err(e) = self
                .store
                .delete(&self.segment_path(topic, id, partition, seg, suffix))
                .await
            {
                tracing::warn!(topic, partition, error = %e, "deleting a remote object failed; it stays an orphan");
            }
        }
    }

    /// A remote segment's aborted transactions (Kafka's 34-byte `.txnindex` entries).
    pub async fn txn_index(
        &self,
        topic: &str,
        id: Uuid,
        partition: i32,
        seg: &RemoteSegment,
    ) -> anyhow::Result<Vec<AbortedTxn>> {
        let body = self
            .store
            .get(&self.segment_path(topic, id, partition, seg, ".txnindex"))
            .await?
            .bytes()
            .await?;
        Ok(crate::log::txn_index::parse(&body))
    }

    async fn offset_index(
        &self,
        topic: &str,
        id: Uuid,
        partition: i32,
        seg: &RemoteSegment,
    ) -> anyhow::Result<Arc<RemoteIndex>> {
        if let Some(i) = self
            .indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&seg.segment_id)
        {
            return Ok(i.clone());
        }
        let raw = self
            .store
            .get(&self.segment_path(topic, id, partition, seg, ".index"))
            .await?
            .bytes()
            .await?;
        let entries: Vec<(u32, u32)> = raw
            .chunks_exact(OFFSET_ENTRY)
            .map(|e| {
                (
                    u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
                    u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
                )
            })
            .collect();
        let entries = Arc::new(entries);
        self.indexes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seg.segment_id, entries.clone());
        Ok(entries)
    }

    /// Bytes `[start, start + len)` of a remote segment's log, through the chunk cache.
    async fn read_range(
        &self,
        topic: &str,
        id: Uuid,
        partition: i32,
        seg: &RemoteSegment,
        start: u64,
        len: u64,
    ) -> anyhow::Result<Vec<u8>> {
        let end = (start + len).min(seg.size);
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut chunk_no = start / CHUNK;
        while chunk_no * CHUNK < end {
            let from = chunk_no * CHUNK;
            let lo = start.max(from) - from;
            let hi = end.min(from + CHUNK) - from;
            match self.cache.get(seg.segment_id, chunk_no, lo, hi) {
                Some(part) => out.extend_from_slice(&part),
                None => {
                    let to = (from + CHUNK).min(seg.size);
                    let bytes = self
                        .store
                        .get_range(
                            &self.segment_path(topic, id, partition, seg, ".log"),
                            from..to,
                        )
                        .await?;
                    self.cache.put(seg.segment_id, chunk_no, &bytes);
                    let hi = (hi as usize).min(bytes.len());
                    out.extend_from_slice(&bytes[(lo as usize).min(hi)..hi]);
                }
            }
            chunk_no += 1;
        }
        Ok(out)
    }

    /// Starts fetching the chunks after `[start, start + len)` into the cache, in parallel.
    pub fn read_ahead(
        self: &Arc<Self>,
        topic: &str,
        id: Uuid,
        partition: i32,
        seg: &RemoteSegment,
        start: u64,
        len: u64,
    ) {
        let first = (start + len) / CHUNK;
        let last_chunk = seg.size.saturating_sub(1) / CHUNK;
        for chunk in first..=(first + READ_AHEAD).min(last_chunk) {
            if self.cache.contains(seg.segment_id, chunk)
                || !self
                    .prefetching
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert((seg.segment_id, chunk))
            {
                continue;
            }
            let (tier, topic, seg) = (self.clone(), topic.to_string(), seg.clone());
            tokio::spawn(async move {
                let from = chunk * CHUNK;
                let to = (from + CHUNK).min(seg.size);
                let path = tier.segment_path(&topic, id, partition, &seg, ".log");
                match tier.store.get_range(&path, from..to).await {
                    Ok(bytes) => tier.cache.put(seg.segment_id, chunk, &bytes),
                    Err(e) => tracing::debug!(error = %e, "read-ahead failed"),
                }
                tier.prefetching
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&(seg.segment_id, chunk));
            });
        }
    }

    /// Whole batches from `offset` in a remote segment, up to `max_bytes` but at least one.
    pub async fn read(
        &self,
        tp: &TopicIdPartition,
        seg: &RemoteSegment,
        want: ReadWant,
    ) -> anyhow::Result<Bytes> {
        let (topic, id, partition) = (tp.topic.as_str(), tp.topic_id, tp.partition);
        let ReadWant {
            offset,
            max_bytes,
            min_one,
        } = want;
        let index = self.offset_index(topic, id, partition, seg).await?;
        let rel = offset - seg.base_offset;
        let i = index.partition_point(|&(r, _)| (r as i64) <= rel);
        let mut pos = if i == 0 { 0 } else { index[i - 1].1 as u64 };
        // Walk batch headers to the one holding `offset`.
        let first_size = loop {
            if pos + HEADER_SIZE as u64 > seg.size {
                return Ok(Bytes::new());
            }
            let head = self
                .read_range(topic, id, partition, seg, pos, HEADER_SIZE as u64)
                .await?;
            let size = i32::from_be_bytes([head[8], head[9], head[10], head[11]]) as u64 + 12;
            let base = i64::from_be_bytes(head[..8].try_into().unwrap_or([0; 8]));
            let delta = i32::from_be_bytes([head[23], head[24], head[25], head[26]]) as i64;
            if size < HEADER_SIZE as u64 {
                anyhow::bail!("corrupt batch length in remote segment {}", seg.segment_id);
            }
            if base + delta >= offset {
                break size;
            }
            pos += size;
        };
        let want = if first_size as usize > max_bytes {
            if !min_one {
                return Ok(Bytes::new());
            }
            first_size
        } else {
            (max_bytes as u64).min(seg.size - pos)
        };
        let bytes = self
            .read_range(topic, id, partition, seg, pos, want)
            .await?;
        let mut whole = 0;
        let mut it = BatchHeaders::new(&bytes);
        while let Some(Ok(_)) = it.next() {
            whole = it.position();
        }
        let mut bytes = Bytes::from(bytes);
        bytes.truncate(whole);
        Ok(bytes)
    }

    /// (offset, timestamp) of the first record at or after `timestamp` in the archive.
    pub async fn offset_for_timestamp(
        &self,
        tp: &TopicIdPartition,
        manifest: &Manifest,
        timestamp: i64,
    ) -> anyhow::Result<Option<(i64, i64)>> {
        let (topic, id, partition) = (tp.topic.as_str(), tp.topic_id, tp.partition);
        let Some(seg) = manifest
            .segments
            .iter()
            .find(|s| s.max_timestamp >= timestamp)
        else {
            return Ok(None);
        };
        let mut pos = 0u64;
        while pos + HEADER_SIZE as u64 <= seg.size {
            let head = self
                .read_range(topic, id, partition, seg, pos, HEADER_SIZE as u64)
                .await?;
            let size = i32::from_be_bytes([head[8], head[9], head[10], head[11]]) as u64 + 12;
            if size < HEADER_SIZE as u64 {
                break;
            }
            let max_ts = i64::from_be_bytes(head[35..43].try_into().unwrap_or([0; 8]));
            if max_ts >= timestamp {
                let batch = self
                    .read_range(topic, id, partition, seg, pos, size)
                    .await?;
                if let Ok(b) = RecordBatch::parse_header(&batch) {
                    return Ok(crate::log::record_batch::first_offset_at_or_after(
                        &b, timestamp,
                    ));
                }
                break;
            }
            pos += size;
        }
        Ok(None)
    }
}

fn read_file_range(path: &std::path::Path, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, pos)?;
    Ok(buf)
}

/// Chunks of remote segments kept on local disk, least recently used evicted first, so a
/// consumer reading the archive sequentially fetches each byte from the store once.
type CachedChunk = (Uuid, u64, u64);

struct ChunkCache {
    dir: PathBuf,
    limit: u64,
    /// Bytes held, and (segment, chunk, size) from least to most recently used.
    state: Mutex<(u64, VecDeque<CachedChunk>)>,
}

impl ChunkCache {
    fn new(dir: PathBuf, limit: u64) -> Self {
        Self {
            dir,
            limit,
            state: Mutex::new((0, VecDeque::new())),
        }
    }
    fn path(&self, seg: Uuid, chunk: u64) -> PathBuf {
        self.dir.join(format!("{seg}-{chunk}"))
    }
    fn contains(&self, seg: Uuid, chunk: u64) -> bool {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1.iter().any(|&(s, c, _)| s == seg && c == chunk)
    }

    /// Bytes `[lo, hi)` of a cached chunk (fewer at the chunk's end).
    fn get(&self, seg: Uuid, chunk: u64, lo: u64, hi: u64) -> Option<Vec<u8>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let i = st.1.iter().position(|&(s, c, _)| s == seg && c == chunk)?;
        let e = st.1.remove(i)?;
        let size = e.2;
        st.1.push_back(e);
        drop(st);
        let hi = hi.min(size);
        let lo = lo.min(hi);
        read_file_range(&self.path(seg, chunk), lo, (hi - lo) as usize).ok()
    }
    fn put(&self, seg: Uuid, chunk: u64, bytes: &[u8]) {
        if self.limit == 0 || std::fs::write(self.path(seg, chunk), bytes).is_err() {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 += bytes.len() as u64;
        st.1.push_back((seg, chunk, bytes.len() as u64));
        while st.0 > self.limit {
            let Some((s, c, n)) = st.1.pop_front() else {
                break;
            };
            st.0 -= n;
            let _ = std::fs::remove_file(self.path(s, c));
        }
    }
}

/// Retention limits as Kafka resolves them (-2 = same as the total, -1 = unlimited).
struct Retention {
    ms: i64,
    bytes: i64,
    local_ms: i64,
    local_bytes: i64,
}

fn retention(topic: &Topic, config: &Config) -> Retention {
    let ms = topic.int_config(config, "retention.ms");
    let bytes = topic.int_config(config, "retention.bytes");
    let local_ms = match topic.int_config(config, "local.retention.ms") {
        -2 => ms,
        v => v,
    };
    let local_bytes = match topic.int_config(config, "local.retention.bytes") {
        -2 => bytes,
        v => v,
    };
    Retention {
        ms,
        bytes,
        local_ms,
        local_bytes,
    }
}

/// The per-partition archiver: loads the manifest, uploads closed segments below the high
/// watermark as they roll, applies local and total retention. Retries with capped
/// exponential backoff while the store is unreachable; local data is never deleted then.
#[tracing::instrument(name = "tier", skip_all, fields(topic = %topic.name, partition = partition.index))]
pub async fn run_partition(
    broker: Broker,
    tier: Arc<Tier>,
    topic: Arc<Topic>,
    partition: Arc<Partition>,
) {
    let check = Duration::from_millis(
        broker
            .config
            .props
            .int("log.retention.check.interval.ms")
            .max(100) as u64,
    );
    let mut backoff = Duration::from_millis(100);
    let alive = |b: &Broker| {
        b.topic_by_id(topic.id)
            .is_some_and(|t| Arc::ptr_eq(&t, &topic))
    };
    loop {
        if !alive(&broker) {
            return;
        }
        match archive_once(&broker, &tier, &topic, &partition).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                let lag: Vec<_> = partition
                    .closed_segments()
                    .into_iter()
                    .filter(|s| s.next_offset > partition.remote_end())
                    .collect();
                tracing::warn!(
                    error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    lag_segments = lag.len(),
                    lag_bytes = lag.iter().map(|s| s.size).sum::<u64>(),
                    "archive step failed"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        }
        tokio::select! {
            _ = partition.rolled.notified() => {}
            _ = tokio::time::sleep(check) => {}
        }
    }
}

/// Retention for a topic that is not archived: closed segments past `retention.ms`, or
/// beyond `retention.bytes` (a segment goes only if the log stays at least that large
/// without it, as in Kafka), are deleted oldest first.
#[tracing::instrument(name = "retention", skip_all, fields(topic = %topic.name, partition = partition.index))]
pub async fn run_local_retention(broker: Broker, topic: Arc<Topic>, partition: Arc<Partition>) {
    let check = Duration::from_millis(
        broker
            .config
            .props
            .int("log.retention.check.interval.ms")
            .max(100) as u64,
    );
    loop {
        tokio::select! {
            _ = partition.rolled.notified() => {}
            _ = tokio::time::sleep(check) => {}
        }
        if !broker
            .topic_by_id(topic.id)
            .is_some_and(|t| Arc::ptr_eq(&t, &topic))
        {
            return;
        }
        let r = retention(&topic, &broker.config);
        let now = crate::clock::now_ms();
        loop {
            let deleted = partition.delete_oldest_local_if(|s, local_size| {
                (r.ms >= 0 && s.max_timestamp < now - r.ms)
                    || (r.bytes >= 0 && local_size.saturating_sub(s.size) >= r.bytes as u64)
            });
            match deleted {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::error!(error = %e, "deleting an expired segment failed");
                    break;
                }
            }
        }
    }
}

async fn archive_once(
    broker: &Broker,
    tier: &Tier,
    topic: &Topic,
    partition: &Partition,
) -> anyhow::Result<()> {
    let (name, id, p) = (topic.name.as_str(), topic.id, partition.index);
    let mut manifest = match partition.manifest() {
        Some(m) => m,
        None => {
            let m = tier.load_manifest(name, id, p).await?;
            // Aborted transactions of archived segments, for read_committed reads of them.
            let mut aborted = Vec::new();
            for seg in m.segments.iter().filter(|s| s.txn_index) {
                aborted.extend(tier.txn_index(name, id, p, seg).await?);
            }
            partition.add_aborted(aborted);
            partition.set_manifest(m.clone());
            m
        }
    };
    // Only below the last stable offset: an archived segment never holds records of a
    // transaction that may still abort without its marker being archived after it.
    let stable = partition.last_stable_offset();
    let mut uploaded = 0;
    for seg in partition.closed_segments() {
        if seg.next_offset <= partition.remote_end() || seg.next_offset > stable || seg.size == 0 {
            continue;
        }
        let remote = tier.upload(name, id, p, &seg).await?;
        manifest.segments.push(remote.clone());
        if let Err(e) = tier.put_manifest(name, id, p, &manifest).await {
            // The objects stay as orphans; the next attempt uses a fresh segment id.
            manifest.segments.pop();
            return Err(e);
        }
        partition.set_manifest(manifest.clone());
        if let Err(e) = partition.record_remote_end(remote.end_offset + 1) {
            tracing::warn!(error = %e, "recording the archive's end offset locally failed");
        }
        uploaded += 1;
        tracing::info!(
            base_offset = remote.base_offset,
            end_offset = remote.end_offset,
            bytes = remote.size,
            "segment archived"
        );
    }
    let lag: Vec<_> = partition
        .closed_segments()
        .into_iter()
        .filter(|s| s.next_offset > partition.remote_end())
        .collect();
    if uploaded > 0 || !lag.is_empty() {
        tracing::info!(
            lag_segments = lag.len(),
            lag_bytes = lag.iter().map(|s| s.size).sum::<u64>(),
            "upload lag"
        );
    }
    let r = retention(topic, &broker.config);
    let now = crate::clock::now_ms();
    // Local retention: only segments the manifest lists.
    loop {
        let remote_end = partition.remote_end();
        let deleted = partition.delete_oldest_local_if(|s, local_size| {
            s.next_offset <= remote_end
                && ((r.local_ms >= 0 && s.max_timestamp < now - r.local_ms)
                    || (r.local_bytes >= 0
                        && local_size.saturating_sub(s.size) >= r.local_bytes as u64))
        })?;
        if !deleted {
            break;
        }
    }
    // Total retention: manifest first, then the objects.
    let mut expired = Vec::new();
    while let Some(first) = manifest.segments.first() {
        let too_old = r.ms >= 0 && first.max_timestamp < now - r.ms;
        // Each byte counted once: archived bytes, plus local bytes not archived yet. As in
        // Kafka, a segment goes only if the log is still at least retention.bytes without it.
        let total = manifest.size() + partition.local_size_beyond_archive();
        let too_big = r.bytes >= 0 && total.saturating_sub(first.size) >= r.bytes as u64;
        if !(too_old || too_big) {
            break;
        }
        expired.push(manifest.segments.remove(0));
    }
    if !expired.is_empty() {
        tier.put_manifest(name, id, p, &manifest).await?;
        partition.set_manifest(manifest.clone());
        for seg in &expired {
            tier.delete_segment_objects(name, id, p, seg).await;
            tracing::info!(
                base_offset = seg.base_offset,
                end_offset = seg.end_offset,
                "remote segment expired"
            );
        }
    }
    Ok(())
}

/// Recreates topics that are in the archive but not on local disk (an empty data directory
/// after a disk loss): same names, ids, partitions and configs; logs continue at the
/// archive's end offsets.
pub async fn restore(broker: &Broker, tier: &Tier) -> anyhow::Result<Vec<Topic>> {
    let mut restored = Vec::new();
    for text in tier.list_topics().await? {
        let topic = match Topic::from_meta_yaml(&text) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable topic metadata in the archive");
                continue;
            }
        };
        if broker.topic(&topic.name).is_some() || broker.topic_by_id(topic.id).is_some() {
            continue;
        }
        let mut starts = Vec::new();
        let mut manifests = Vec::new();
        for p in 0..topic.partition_count {
            let m = tier.load_manifest(&topic.name, topic.id, p).await?;
            starts.push(m.segments.last().map(|s| s.end_offset + 1).unwrap_or(0));
            manifests.push(m);
        }
        let config = broker.config.clone();
        let name = topic.name.clone();
        let topic = tokio::task::spawn_blocking(move || topic.restore(&config, starts)).await??;
        for (p, m) in topic.partitions.iter().zip(manifests) {
            p.set_manifest(m);
        }
        tracing::info!(topic = %name, "restored topic from the archive");
        restored.push(topic);
    }
    Ok(restored)
}
