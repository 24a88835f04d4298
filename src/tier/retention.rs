//! Retention of an archived partition: local retention deletes local segments the manifest
//! already lists (`local.retention.ms` / `local.retention.bytes`, KIP-405); total retention
//! (`retention.ms` / `retention.bytes`) moves the log start offset past expired remote
//! segments, the same way DeleteRecords moves it; archived segments below the log start are
//! then deleted — manifest first, then the objects, so a crash or an abort between the two
//! leaves orphans, never a manifest entry for a missing object. Writes no local files;
//! local deletion goes through the [`ArchiveSource`].

use super::archiver::ArchiveSource;
use super::{Manifest, RemoteSegment, Tier, TierError, TopicIdPartition};
use object_store::ObjectStoreExt;
use std::sync::Arc;

/// Retention limits as Kafka resolves them; -1 is unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub ms: i64,
    pub bytes: i64,
    pub local_ms: i64,
    pub local_bytes: i64,
}

impl Retention {
    /// From the four raw topic configs: a local limit of -2 means "same as the total one".
    pub fn resolve(ms: i64, bytes: i64, local_ms: i64, local_bytes: i64) -> Self {
        Self {
            ms,
            bytes,
            local_ms: if local_ms == -2 { ms } else { local_ms },
            local_bytes: if local_bytes == -2 {
                bytes
            } else {
                local_bytes
            },
        }
    }
}

/// Deletes, oldest first, local segments that are archived and past local retention.
/// Returns how many went.
pub(crate) fn apply_local(
    source: &dyn ArchiveSource,
    r: &Retention,
    now: i64,
) -> std::io::Result<usize> {
    let mut deleted = 0;
    loop {
        let remote_end = source.remote_end();
        let may_delete = |s: &crate::log::ClosedSegment, local_size: u64| {
            s.next_offset <= remote_end
                && ((r.local_ms >= 0 && s.max_timestamp < now.saturating_sub(r.local_ms))
                    || (r.local_bytes >= 0
                        && local_size.saturating_sub(s.size) >= r.local_bytes as u64))
        };
        if !source.delete_oldest_local_if(&may_delete)? {
            return Ok(deleted);
        }
        deleted += 1;
    }
}

/// Expires remote segments past `retention.ms`, or beyond `retention.bytes` (a segment goes
/// only if the log stays at least that large without it, as in Kafka), by moving the log
/// start past them; `delete_below_log_start` then deletes them. Returns how many expired.
pub(crate) async fn apply_total(
    source: &Arc<dyn ArchiveSource>,
    manifest: &mut Manifest,
    r: &Retention,
    now: i64,
) -> Result<usize, TierError> {
    // Each byte counted once: archived bytes, plus local bytes not archived yet.
    let mut total = manifest.size() + source.local_size_beyond_archive();
    let mut expired = 0;
    let mut start = None;
    for seg in &manifest.segments {
        let too_old = r.ms >= 0 && seg.max_timestamp < now.saturating_sub(r.ms);
        let too_big = r.bytes >= 0 && total.saturating_sub(seg.size) >= r.bytes as u64;
        if !(too_old || too_big) {
            break;
        }
        total = total.saturating_sub(seg.size);
        expired += 1;
        start = Some(seg.end_offset + 1);
    }
    let Some(start) = start else {
        return Ok(0);
    };
    if start > source.log_start_offset() {
        let s = source.clone();
        tokio::task::spawn_blocking(move || s.advance_log_start(start, "retention"))
            .await
            .map_err(|e| TierError::Io(std::io::Error::other(e)))??;
    }
    Ok(expired)
}

/// Deletes the archived segments wholly below the log start: the manifest first (recording
/// a start inside its first segment too), then the objects, so a crash or an abort between
/// the two leaves orphans, never a manifest entry for a missing object. Returns how many
/// segments went.
pub(crate) async fn delete_below_log_start(
    tier: &Tier,
    tp: &TopicIdPartition,
    source: &dyn ArchiveSource,
    manifest: &mut Manifest,
) -> Result<usize, TierError> {
    let start = source.log_start_offset();
    let n = manifest
        .segments
        .iter()
        .take_while(|s| s.end_offset < start)
        .count();
    let inside_first = manifest
        .segments
        .get(n)
        .is_some_and(|s| s.base_offset < start)
        && manifest
            .log_start_offset
            .is_none_or(|recorded| recorded < start);
    if n == 0 && !inside_first {
        return Ok(0);
    }
    let before = manifest.clone();
    let expired: Vec<RemoteSegment> = manifest.segments.drain(..n).collect();
    manifest.log_start_offset = manifest
        .segments
        .first()
        .is_some_and(|s| s.base_offset < start)
        .then_some(start);
    if let Err(e) = tier.put_manifest(tp, manifest).await {
        // Nothing changed remotely: keep the old list for the next attempt.
        *manifest = before;
        return Err(e);
    }
    source.install_manifest(manifest.clone(), Vec::new());
    for seg in &expired {
        tier.delete_segment_objects(tp, seg).await;
        tracing::info!(
            base_offset = seg.base_offset,
            end_offset = seg.end_offset,
            log_start = start,
            "remote segment deleted below the log start"
        );
    }
    Ok(expired.len())
}

impl Tier {
    /// Deletes a remote segment's objects; one that fails stays an orphan.
    pub(crate) async fn delete_segment_objects(&self, tp: &TopicIdPartition, seg: &RemoteSegment) {
        let suffixes: &[&str] = if seg.txn_index {
            &[".log", ".index", ".timeindex", ".txnindex"]
        } else {
            &[".log", ".index", ".timeindex"]
        };
        for suffix in suffixes {
            match self
                .store
                .delete(&self.paths.segment(tp, seg, suffix))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(%tp, error = %e, "deleting a remote object failed; it stays an orphan")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_limits_of_minus_two_follow_the_total_ones() {
        assert_eq!(
            Retention::resolve(1000, 5000, -2, -2),
            Retention {
                ms: 1000,
                bytes: 5000,
                local_ms: 1000,
                local_bytes: 5000
            }
        );
        assert_eq!(
            Retention::resolve(-1, -1, 10, -1),
            Retention {
                ms: -1,
                bytes: -1,
                local_ms: 10,
                local_bytes: -1
            }
        );
    }

    use crate::tier::archiver::tests::{setup, Setup};
    use crate::tier::test_support::tp;
    use std::sync::atomic::Ordering;

    /// Everything closed archived, no retention yet.
    async fn archived() -> (Setup, Manifest) {
        let s = setup();
        s.archive_once().await.expect("archive");
        let m = s.source.installed();
        assert_eq!(m.segments.len(), 3);
        s.store.events.lock().expect("lock").clear();
        (s, m)
    }

    /// Total retention, then the deletion below the log start it moved, as a pass does.
    async fn total_pass(
        s: &Setup,
        m: &mut Manifest,
        r: &Retention,
        now: i64,
    ) -> Result<usize, TierError> {
        let source: Arc<dyn ArchiveSource> = s.source.clone();
        let n = apply_total(&source, m, r, now).await?;
        let deleted = delete_below_log_start(&s.tier, &tp(), source.as_ref(), m).await?;
        assert_eq!(n, deleted);
        Ok(n)
    }

    async fn exists(s: &Setup, seg: &RemoteSegment) -> bool {
        s.tier
            .store
            .head(&s.tier.paths.segment(&tp(), seg, ".log"))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn retention_bytes_removes_manifest_entries_first_then_objects() {
        let (s, mut m) = archived().await;
        let total = m.size() + s.source.local_size_beyond_archive();
        let first = m.segments[0].clone();
        // Room for everything but the first segment.
        let r = Retention::resolve(-1, (total - first.size) as i64, -1, -1);
        let n = total_pass(&s, &mut m, &r, 0).await.expect("retention");
        assert_eq!(n, 1);
        assert_eq!(m.segments.len(), 2);
        assert_eq!(s.source.installed(), m);
        assert_eq!(s.tier.load_manifest(&tp()).await.expect("load"), m);
        assert!(!exists(&s, &first).await);
        assert!(exists(&s, &m.segments[0]).await);
        let events = s.store.events();
        assert!(events[0].ends_with("manifest.json"), "{events:?}");
        assert_eq!(events.len(), 4, "manifest, then three objects: {events:?}");
        assert!(events[1..]
            .iter()
            .all(|e| e.starts_with("delete") && e.contains(&first.segment_id.to_string())));
    }

    #[tokio::test]
    async fn retention_ms_removes_segments_whose_newest_record_is_older() {
        let (s, mut m) = archived().await;
        let second = m.segments[1].clone();
        let r = Retention::resolve(10, -1, -1, -1);
        let now = second.max_timestamp + 11;
        let n = total_pass(&s, &mut m, &r, now).await.expect("retention");
        assert_eq!(n, 2);
        assert_eq!(m.segments.len(), 1);
        assert!(m.segments[0].max_timestamp >= now - 10);
        assert!(!exists(&s, &second).await);
    }

    #[tokio::test]
    async fn a_failed_manifest_write_keeps_every_segment() {
        let (s, mut m) = archived().await;
        let before = m.clone();
        s.store.fail_puts.store(true, Ordering::Release);
        let r = Retention::resolve(0, 0, -1, -1);
        assert!(total_pass(&s, &mut m, &r, i64::MAX).await.is_err());
        assert_eq!(m, before);
        for seg in &before.segments {
            assert!(exists(&s, seg).await);
        }
        assert!(s.store.events().is_empty(), "nothing deleted");
    }

    #[tokio::test]
    async fn a_log_start_inside_a_segment_is_recorded_and_only_whole_segments_go() {
        let (s, mut m) = archived().await;
        let (first, second) = (m.segments[0].clone(), m.segments[1].clone());
        s.source
            .advance_log_start(second.base_offset + 1, "test")
            .expect("advance");
        let n = delete_below_log_start(&s.tier, &tp(), s.source.as_ref(), &mut m)
            .await
            .expect("delete");
        assert_eq!(n, 1);
        assert_eq!(m.segments[0], second);
        assert_eq!(m.log_start_offset, Some(second.base_offset + 1));
        assert_eq!(s.tier.load_manifest(&tp()).await.expect("load"), m);
        assert!(!exists(&s, &first).await);
        let events = s.store.events();
        assert!(
            events[0].ends_with("manifest.json"),
            "manifest first: {events:?}"
        );
        // Nothing more to do on the next pass.
        let again = delete_below_log_start(&s.tier, &tp(), s.source.as_ref(), &mut m)
            .await
            .expect("again");
        assert_eq!(again, 0);
        assert_eq!(
            s.store.events().len(),
            events.len(),
            "no second manifest write"
        );
    }

    #[tokio::test]
    async fn local_retention_only_deletes_archived_segments() {
        let s = setup();
        s.source
            .stable
            .store(s.closed[0].next_offset, Ordering::Release);
        s.source.set_retention(Retention::resolve(-1, -1, -1, 0));
        s.archive_once().await.expect("archive");
        assert_eq!(s.source.installed().segments.len(), 1);
        let bases = s.source.local_bases();
        assert_eq!(
            bases[0], s.closed[1].base_offset,
            "the archived segment went, the unarchived ones stay"
        );
        assert_eq!(bases.len(), 3);
        // Nothing archived: nothing deleted, however tight local retention is.
        let fresh = setup();
        let r = Retention::resolve(-1, -1, 0, 0);
        assert_eq!(
            apply_local(fresh.source.as_ref(), &r, i64::MAX).expect("local"),
            0
        );
        assert_eq!(fresh.source.local_bases().len(), 4);
    }
}
