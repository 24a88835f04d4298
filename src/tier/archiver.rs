//! Uploads and the per-partition archiving loop.
//!
//! A closed segment below the last stable offset is uploaded as `.log`, `.index`,
//! `.timeindex` (and `.txnindex` when it has aborted transactions) under a fresh segment id;
//! only once every object is stored is the manifest rewritten to list it. Writes no local
//! files: it reads closed segments and, through retention, deletes archived ones. A crash
//! or an abort at any await point leaves at most orphan objects (never a manifest entry for
//! a missing object), and the local segment stays until a later attempt archives it.
//!
//! What it needs from a partition comes through [`ArchiveSource`], which the broker
//! implements; the loop never asks whether its topic still exists — the broker aborts it.

use super::retention::{self, Retention};
use super::{Manifest, RemoteSegment, Tier, TierError, TierStats, TopicIdPartition};
use crate::log::txn_index::AbortedTxn;
use crate::log::ClosedSegment;
use bytes::Bytes;
use link::link_segment;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use uuid::Uuid;

mod link;

/// Segments larger than this are uploaded in parts.
const MULTIPART_THRESHOLD: u64 = 16 << 20;
const PART_SIZE: usize = 8 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One partition as the archiver sees it. Implemented by the broker.
pub trait ArchiveSource: Send + Sync {
    /// Closed (rolled) local segments, oldest first.
    fn closed_segments(&self) -> Vec<ClosedSegment>;
    /// Offsets below this hold no record of an open transaction.
    fn last_stable_offset(&self) -> i64;
    /// Notified when a segment closes.
    fn rolled(&self) -> &Notify;
    /// The manifest installed so far; `None` until the archiver (or a restore) installs one.
    fn manifest(&self) -> Option<Manifest>;
    /// Installs a loaded or changed manifest, with the aborted transactions of archived
    /// segments the partition may not know yet (empty after an upload of its own segment).
    fn install_manifest(&self, manifest: Manifest, aborted: Vec<AbortedTxn>);
    /// Offsets below this are archived; -1 while none are. Never moves back.
    fn remote_end(&self) -> i64;
    /// The partition's retention limits, read now (they change at run time).
    fn retention(&self) -> Retention;
    /// Deletes the oldest closed local segment when `may_delete(segment, local bytes)`
    /// says so; returns whether it did.
    fn delete_oldest_local_if(
        &self,
        may_delete: &dyn Fn(&ClosedSegment, u64) -> bool,
    ) -> std::io::Result<bool>;
    /// Local bytes from `remote_end` on (not yet archived).
    fn local_size_beyond_archive(&self) -> u64;
    /// The first offset clients may read; archived segments wholly below it are deleted.
    fn log_start_offset(&self) -> i64;
    /// Moves the log start up to `offset` (checkpointed, and local segments below it
    /// deleted), the one way retention and DeleteRecords move it. Blocking.
    fn advance_log_start(&self, offset: i64, reason: &str) -> std::io::Result<bool>;
}

/// Archives one partition until aborted: loads the manifest, uploads closed segments below
/// the last stable offset as they roll, applies local and total retention. Retries with
/// capped exponential backoff while the store fails; local data is never deleted then.
#[tracing::instrument(name = "tier_archiver", skip_all, fields(tp = %tp))]
pub async fn run(
    tier: Arc<Tier>,
    tp: TopicIdPartition,
    source: Arc<dyn ArchiveSource>,
    check_every: Duration,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        // Boxed: the pass's future (object store requests and all) exists only while it
        // runs, so an idle archiver, one per partition, stays small.
        match Box::pin(archive_once(&tier, &tp, &source)).await {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(e) => {
                tier.stats.failed(tp.to_string(), e.to_string());
                let (lag_segments, lag_bytes) = lag(source.as_ref());
                tracing::warn!(
                    error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    lag_segments,
                    lag_bytes,
                    "archive step failed"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        }
        tokio::select! {
            _ = source.rolled().notified() => {}
            _ = tokio::time::sleep(check_every) => {}
        }
    }
}

/// Records a topic's metadata in the archive, retrying with capped backoff until it is
/// there (or the task is stopped with its topic).
pub async fn record_topic(tier: &Tier, name: &str, id: Uuid, meta_yaml: String) {
    let mut backoff = BACKOFF_MIN;
    while let Err(e) = tier.put_topic(name, id, meta_yaml.clone()).await {
        tracing::warn!(topic = name, error = %e, "recording the topic in the archive failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Deletes every object of a deleted topic, retrying with backoff until it succeeds.
pub async fn delete_topic_objects(tier: &Tier, name: &str, id: Uuid) {
    let mut backoff = BACKOFF_MIN;
    while let Err(e) = tier.delete_topic(name, id).await {
        tracing::warn!(topic = name, error = %e, "deleting the topic's archived objects failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Closed segments not archived yet: (count, bytes).
fn lag(source: &dyn ArchiveSource) -> (usize, u64) {
    let remote_end = source.remote_end();
    source
        .closed_segments()
        .iter()
        .filter(|s| s.next_offset > remote_end)
        .fold((0, 0), |(n, b), s| (n + 1, b + s.size))
}

/// One pass: manifest, uploads, retention.
pub(crate) async fn archive_once(
    tier: &Tier,
    tp: &TopicIdPartition,
    source: &Arc<dyn ArchiveSource>,
) -> Result<(), TierError> {
    let mut manifest = match source.manifest() {
        Some(m) => m,
        None => {
            let m = tier.load_manifest(tp).await?;
            // Aborted transactions of archived segments, for read_committed reads of them.
            let mut aborted = Vec::new();
            for seg in m.segments.iter().filter(|s| s.txn_index) {
                aborted.extend(tier.txn_index(tp, seg).await?);
            }
            source.install_manifest(m.clone(), aborted);
            m
        }
    };
    // Only below the last stable offset: an archived segment never holds records of a
    // transaction that may still abort without its marker being archived after it.
    let stable = source.last_stable_offset();
    let mut uploaded = 0;
    for seg in source.closed_segments() {
        if seg.next_offset <= source.remote_end()
            || seg.next_offset > stable
            || seg.size == 0
            || seg.next_offset <= source.log_start_offset()
        {
            continue;
        }
        let remote = match tier.upload(tp, &seg).await {
            Ok(r) => r,
            Err(e) => {
                TierStats::add(&tier.stats.upload_errors, 1);
                return Err(e);
            }
        };
        manifest.segments.push(remote.clone());
        if let Err(e) = tier.put_manifest(tp, &manifest).await {
            // The objects stay as orphans; the next attempt uses a fresh segment id.
            manifest.segments.pop();
            TierStats::add(&tier.stats.upload_errors, 1);
            return Err(e);
        }
        source.install_manifest(manifest.clone(), Vec::new());
        TierStats::add(&tier.stats.segments_uploaded, 1);
        TierStats::add(&tier.stats.bytes_uploaded, remote.size);
        uploaded += 1;
        tracing::info!(
            base_offset = remote.base_offset,
            end_offset = remote.end_offset,
            bytes = remote.size,
            "segment archived"
        );
    }
    let (lag_segments, lag_bytes) = lag(source.as_ref());
    if uploaded > 0 || lag_segments > 0 {
        tracing::info!(lag_segments, lag_bytes, "upload lag");
    }
    let r = source.retention();
    let now = crate::clock::now_ms();
    // Deleting segment files is blocking work: off the async threads.
    let local = source.clone();
    tokio::task::spawn_blocking(move || retention::apply_local(local.as_ref(), &r, now)).await??;
    retention::apply_total(source, &mut manifest, &r, now).await?;
    retention::delete_below_log_start(tier, tp, source.as_ref(), &mut manifest).await?;
    Ok(())
}

impl Tier {
    /// Uploads one closed segment's files under a fresh segment id. On failure, deletes
    /// what this attempt stored (best effort: what stays is an orphan no manifest names).
    pub(crate) async fn upload(
        &self,
        tp: &TopicIdPartition,
        seg: &ClosedSegment,
    ) -> Result<RemoteSegment, TierError> {
        let mut remote = RemoteSegment {
            base_offset: seg.base_offset,
            end_offset: seg.next_offset - 1,
            segment_id: Uuid::new_v4(),
            max_timestamp: seg.max_timestamp,
            size: seg.size,
            crc32c: 0,
            txn_index: false,
        };
        match self.upload_objects(tp, seg, &mut remote).await {
            Ok(()) => Ok(remote),
            Err(e) => {
                remote.txn_index = true;
                self.delete_segment_objects(tp, &remote).await;
                Err(e)
            }
        }
    }

    async fn upload_objects(
        &self,
        tp: &TopicIdPartition,
        seg: &ClosedSegment,
        remote: &mut RemoteSegment,
    ) -> Result<(), TierError> {
        let log_path = seg.paths[0].clone();
        let size = seg.size;
        let target = self.paths.segment(tp, remote, ".log");
        let linked = match &self.local {
            Some(fs) => {
                let dest = fs.path_to_filesystem(&target)?;
                let path = log_path.clone();
                tokio::task::spawn_blocking(move || link_segment(&path, size, &dest)).await??
            }
            None => None,
        };
        if let Some(crc) = linked {
            remote.crc32c = crc;
        } else if size > MULTIPART_THRESHOLD {
            let mut upload = WriteMultipart::new_with_chunk_size(
                self.store.put_multipart(&target).await?,
                PART_SIZE,
            );
            let mut crc = 0u32;
            let mut pos = 0u64;
            while pos < size {
                let len = (PART_SIZE as u64).min(size - pos) as usize;
                let path = log_path.clone();
                let chunk = tokio::task::spawn_blocking(move || {
                    super::cache::read_file_range(&path, pos, len)
                })
                .await??;
                crc = crc32c::crc32c_append(crc, &chunk);
                upload.wait_for_capacity(4).await?;
                upload.put(Bytes::from(chunk));
                pos += len as u64;
            }
            upload.finish().await?;
            remote.crc32c = crc;
        } else {
            let path = log_path.clone();
            let body = tokio::task::spawn_blocking(move || {
                super::cache::read_file_range(&path, 0, size as usize)
            })
            .await??;
            remote.crc32c = crc32c::crc32c(&body);
            self.store.put(&target, PutPayload::from(body)).await?;
        }
        for (suffix, path) in [(".index", &seg.paths[1]), (".timeindex", &seg.paths[2])] {
            let body = tokio::fs::read(path).await?;
            self.store
                .put(
                    &self.paths.segment(tp, remote, suffix),
                    PutPayload::from(body),
                )
                .await?;
        }
        let txn_path = seg.paths[0].with_extension("txnindex");
        match tokio::fs::read(&txn_path).await {
            Ok(body) => {
                self.store
                    .put(
                        &self.paths.segment(tp, remote, ".txnindex"),
                        PutPayload::from(body),
                    )
                    .await?;
                remote.txn_index = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tier::test_support::{make_log, tier_on, tp, FakeSource, TestStore};
    use std::sync::atomic::Ordering;

    pub(crate) struct Setup {
        _dirs: (tempfile::TempDir, tempfile::TempDir),
        pub store: Arc<TestStore>,
        pub tier: Arc<Tier>,
        pub source: Arc<FakeSource>,
        /// The closed local segments before anything ran.
        pub closed: Vec<ClosedSegment>,
    }

    /// A partition of ~57 KiB in 16 KiB segments (three closed ones), on a TestStore.
    pub(crate) fn setup() -> Setup {
        let (logdir, cache) = (
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
        );
        let log = make_log(logdir.path(), 16 << 10, 100, 500);
        let closed = log.closed_segments();
        assert_eq!(closed.len(), 3);
        let store = Arc::new(TestStore::default());
        let tier = tier_on(store.clone(), cache.path());
        Setup {
            _dirs: (logdir, cache),
            store,
            tier,
            source: Arc::new(FakeSource::new(log)),
            closed,
        }
    }

    impl Setup {
        /// One archiving pass over the fake partition.
        pub(crate) async fn archive_once(&self) -> Result<(), TierError> {
            let source: Arc<dyn ArchiveSource> = self.source.clone();
            archive_once(&self.tier, &tp(), &source).await
        }
    }

    #[tokio::test]
    async fn a_local_directory_store_archives_segments_by_link_with_their_crc() {
        let (logdir, bucket, cache) = (
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
            tempfile::tempdir().expect("tmp"),
        );
        let log = make_log(logdir.path(), 16 << 10, 100, 500);
        let closed = log.closed_segments();
        let fs = object_store::local::LocalFileSystem::new_with_prefix(bucket.path())
            .expect("local store");
        let mut tier = Tier::new(
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(bucket.path())
                    .expect("local store"),
            ),
            "strata".into(),
            cache.path().to_path_buf(),
            crate::tier::CacheLimits::default(),
        );
        tier.local = Some(fs);
        let tier = Arc::new(tier);
        let source = Arc::new(FakeSource::new(log));
        source.stable.store(i64::MAX, Ordering::Release);
        let dyn_source: Arc<dyn ArchiveSource> = source.clone();
        archive_once(&tier, &tp(), &dyn_source)
            .await
            .expect("archive");
        let m = source.installed();
        assert_eq!(m.segments.len(), closed.len());
        use std::os::unix::fs::MetadataExt;
        for (remote, local) in m.segments.iter().zip(&closed) {
            let object = tier.paths.segment(&tp(), remote, ".log");
            let file = tier
                .local
                .as_ref()
                .expect("local")
                .path_to_filesystem(&object)
                .expect("path");
            let (a, b) = (
                std::fs::metadata(&file).expect("object"),
                std::fs::metadata(&local.paths[0]).expect("segment"),
            );
            assert_eq!(
                (a.dev(), a.ino()),
                (b.dev(), b.ino()),
                "one file, two names"
            );
            let body = std::fs::read(&local.paths[0]).expect("read");
            assert_eq!(remote.crc32c, crc32c::crc32c(&body));
            let got = tier
                .store
                .get(&object)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            assert_eq!(&got[..], &body[..]);
        }
        // Deleting the local segment leaves the archived data whole.
        std::fs::remove_file(&closed[0].paths[0]).expect("rm");
        let object = tier.paths.segment(&tp(), &m.segments[0], ".log");
        let got = tier.store.get(&object).await.expect("get").bytes().await;
        assert_eq!(got.expect("bytes").len() as u64, closed[0].size);
    }

    #[tokio::test]
    async fn closed_segments_below_the_last_stable_offset_are_uploaded() {
        let s = setup();
        s.source
            .stable
            .store(s.closed[1].next_offset - 1, Ordering::Release);
        s.archive_once().await.expect("archive");
        let m = s.source.installed();
        assert_eq!(
            m.segments.len(),
            1,
            "the second segment is not all stable yet"
        );
        let seg = &m.segments[0];
        assert_eq!(
            (seg.base_offset, seg.end_offset, seg.size),
            (0, s.closed[0].next_offset - 1, s.closed[0].size)
        );
        let local = std::fs::read(&s.closed[0].paths[0]).expect("read");
        assert_eq!(seg.crc32c, crc32c::crc32c(&local));
        assert_eq!(s.tier.load_manifest(&tp()).await.expect("load"), m);
        assert_eq!(s.source.remote_end(), s.closed[0].next_offset);

        s.source.stable.store(i64::MAX, Ordering::Release);
        s.archive_once().await.expect("archive");
        let m = s.source.installed();
        let bases: Vec<_> = m.segments.iter().map(|s| s.base_offset).collect();
        let want: Vec<_> = s.closed.iter().map(|s| s.base_offset).collect();
        assert_eq!(bases, want, "the active segment is never uploaded");
        let log = s
            .tier
            .store
            .get(&s.tier.paths.segment(&tp(), &m.segments[2], ".log"))
            .await
            .expect("object")
            .bytes()
            .await
            .expect("bytes");
        assert_eq!(log.len() as u64, s.closed[2].size);
    }

    #[tokio::test]
    async fn the_manifest_is_written_after_the_objects_it_lists() {
        let s = setup();
        s.archive_once().await.expect("archive");
        let m = s.source.installed();
        let events = s.store.events();
        assert_eq!(events.len(), 4 * m.segments.len());
        for (k, seg) in m.segments.iter().enumerate() {
            let group = &events[4 * k..4 * k + 4];
            let id = seg.segment_id.to_string();
            for suffix in [".log", ".index", ".timeindex"] {
                assert!(
                    group[..3]
                        .iter()
                        .any(|e| e.contains(&id) && e.ends_with(suffix)),
                    "{suffix} of segment {k} before its manifest: {group:?}"
                );
            }
            assert!(group[3].ends_with("manifest.json"), "{group:?}");
        }
    }

    #[tokio::test]
    async fn a_failing_store_leaves_local_data_intact() {
        let s = setup();
        // Local retention would delete every archived segment at once.
        s.source.set_retention(Retention::resolve(-1, -1, 0, -1));
        let before = s.source.local_bases();
        s.store.fail_puts.store(true, Ordering::Release);
        for _ in 0..3 {
            let r = s.archive_once().await;
            assert!(matches!(r, Err(TierError::Store(_))), "{r:?}");
        }
        assert_eq!(s.source.local_bases(), before);
        assert!(s.source.installed().segments.is_empty());
        assert_eq!(s.source.remote_end(), -1);
        let stats = &s.tier.stats;
        assert_eq!(
            TierStats::get(&stats.upload_errors),
            3,
            "each failure counted"
        );
        assert_eq!(TierStats::get(&stats.segments_uploaded), 0);

        s.store.fail_puts.store(false, Ordering::Release);
        s.archive_once().await.expect("archive");
        assert_eq!(s.source.installed().segments.len(), 3);
        assert_eq!(TierStats::get(&stats.segments_uploaded), 3);
        assert_eq!(
            TierStats::get(&stats.bytes_uploaded),
            s.closed.iter().map(|c| c.size).sum::<u64>()
        );
        assert_eq!(
            s.source.local_bases(),
            vec![s.closed[2].next_offset],
            "archived segments past local retention go"
        );
    }

    #[tokio::test]
    async fn the_loop_retries_archives_on_a_roll_and_stops_when_aborted() {
        let s = setup();
        s.source
            .stable
            .store(s.closed[0].next_offset, Ordering::Release);
        s.store.fail_puts.store(true, Ordering::Release);
        let task = tokio::spawn(run(
            s.tier.clone(),
            tp(),
            s.source.clone(),
            Duration::from_secs(3600),
        ));
        let archived = |n: usize| {
            let source = s.source.clone();
            async move {
                for _ in 0..300 {
                    if source.installed().segments.len() >= n {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        s.store.fail_puts.store(false, Ordering::Release);
        assert!(archived(1).await, "retried after the store came back");
        s.source.stable.store(i64::MAX, Ordering::Release);
        s.source.rolled.notify_one();
        assert!(
            archived(3).await,
            "woken by the roll, not the hour-long timer"
        );
        task.abort();
        assert!(task.await.expect_err("aborted").is_cancelled());
    }

    #[tokio::test]
    async fn an_archived_manifest_is_loaded_with_its_aborted_transactions() {
        let s = setup();
        s.archive_once().await.expect("archive");
        let mut m = s.source.installed();
        // Give the first segment a .txnindex of one aborted transaction.
        let mut entry = vec![0u8; crate::log::txn_index::ENTRY];
        entry[2..10].copy_from_slice(&5i64.to_be_bytes());
        entry[10..18].copy_from_slice(&1i64.to_be_bytes());
        entry[18..26].copy_from_slice(&3i64.to_be_bytes());
        s.tier
            .store
            .put(
                &s.tier.paths.segment(&tp(), &m.segments[0], ".txnindex"),
                PutPayload::from(entry),
            )
            .await
            .expect("put");
        m.segments[0].txn_index = true;
        s.tier.put_manifest(&tp(), &m).await.expect("put manifest");

        let fresh = setup();
        let restarted = Arc::new(FakeSource::new(make_log(
            fresh._dirs.0.path().join("p").as_path(),
            16 << 10,
            0,
            1,
        )));
        archive_once(
            &s.tier,
            &tp(),
            &(restarted.clone() as Arc<dyn ArchiveSource>),
        )
        .await
        .expect("archive");
        assert_eq!(restarted.installed(), m);
        let aborted = restarted.aborted.lock().expect("lock").clone();
        assert_eq!(aborted.len(), 1);
        assert_eq!(
            (
                aborted[0].producer_id,
                aborted[0].first_offset,
                aborted[0].last_offset
            ),
            (5, 1, 3)
        );
    }
}
