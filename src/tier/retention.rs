//! Retention of an archived partition: local retention deletes local segments the manifest
//! already lists (`local.retention.ms` / `local.retention.bytes`, KIP-405), total retention
//! (`retention.ms` / `retention.bytes`) deletes remote segments — manifest first, then the
//! objects, so a crash or an abort between the two leaves orphans, never a manifest entry
//! for a missing object. Writes no local files; local deletion goes through the
//! [`ArchiveSource`].

use super::archiver::ArchiveSource;
use super::{Manifest, RemoteSegment, Tier, TierError, TopicIdPartition};
use object_store::ObjectStoreExt;

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
/// only if the log stays at least that large without it, as in Kafka). Returns how many went.
pub(crate) async fn apply_total(
    tier: &Tier,
    tp: &TopicIdPartition,
    source: &dyn ArchiveSource,
    manifest: &mut Manifest,
    r: &Retention,
    now: i64,
) -> Result<usize, TierError> {
    let mut expired = Vec::new();
    // Each byte counted once: archived bytes, plus local bytes not archived yet.
    let beyond = source.local_size_beyond_archive();
    while let Some(first) = manifest.segments.first() {
        let too_old = r.ms >= 0 && first.max_timestamp < now.saturating_sub(r.ms);
        let total = manifest.size() + beyond;
        let too_big = r.bytes >= 0 && total.saturating_sub(first.size) >= r.bytes as u64;
        if !(too_old || too_big) {
            break;
        }
        expired.push(manifest.segments.remove(0));
    }
    if expired.is_empty() {
        return Ok(0);
    }
    if let Err(e) = tier.put_manifest(tp, manifest).await {
        // Nothing changed remotely: put the entries back for the next attempt.
        expired.append(&mut manifest.segments);
        manifest.segments = expired;
        return Err(e);
    }
    source.install_manifest(manifest.clone(), Vec::new());
    for seg in &expired {
        tier.delete_segment_objects(tp, seg).await;
        tracing::info!(
            base_offset = seg.base_offset,
            end_offset = seg.end_offset,
            "remote segment expired"
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
}
