//! A partition's manifest: the list of its remote segments, stored as
//! `<topic>-<id>/<partition>/manifest.json`. It is the truth of what is remote: an object it
//! does not list is an orphan, never data. Writes no local files. Every put replaces the
//! whole object (atomic in every object store), so a crash leaves the old or the new list.
//!
//! The JSON format is fixed: buckets written by earlier versions must stay readable.

use super::{Tier, TierError, TopicIdPartition};
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A manifest larger than this is refused rather than read into memory (it would list
/// hundreds of thousands of segments).
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

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

/// The remote segments of one partition, oldest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub segments: Vec<RemoteSegment>,
    /// The partition's log start offset when it lies inside the first listed segment
    /// (DeleteRecords), so that a broker restored from the archive starts there too.
    /// Absent in manifests written before it existed, and until the start moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_start_offset: Option<i64>,
}

impl Manifest {
    /// The segment holding `offset`.
    pub fn find(&self, offset: i64) -> Option<&RemoteSegment> {
        self.segments
            .iter()
            .find(|s| s.base_offset <= offset && offset <= s.end_offset)
    }

    /// Bytes archived.
    pub fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// The offset after the last archived one (where a restored log continues), 0 when empty.
    pub fn next_offset(&self) -> i64 {
        self.segments.last().map(|s| s.end_offset + 1).unwrap_or(0)
    }
}

impl Tier {
    /// A partition's manifest; empty when the partition has none yet.
    pub async fn load_manifest(&self, tp: &TopicIdPartition) -> Result<Manifest, TierError> {
        let r = match self.store.get(&self.paths.manifest(tp)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(Manifest::default()),
            Err(e) => return Err(e.into()),
        };
        if r.meta.size > MAX_MANIFEST_BYTES {
            return Err(TierError::Corrupt(format!(
                "manifest of {tp} is {} bytes",
                r.meta.size
            )));
        }
        let body = r.bytes().await?;
        serde_json::from_slice(&body)
            .map_err(|e| TierError::Corrupt(format!("manifest of {tp}: {e}")))
    }

    /// Replaces a partition's manifest.
    pub(crate) async fn put_manifest(
        &self,
        tp: &TopicIdPartition,
        m: &Manifest,
    ) -> Result<(), TierError> {
        let body = serde_json::to_vec(m).map_err(|e| TierError::Io(std::io::Error::other(e)))?;
        self.store
            .put(&self.paths.manifest(tp), PutPayload::from(body))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::test_support::{tier_on, tp};
    use object_store::memory::InMemory;
    use std::sync::Arc;

    /// A manifest as earlier versions wrote it (no `txn_index` field).
    const OLD_FORMAT: &str = r#"{"segments":[{"base_offset":0,"end_offset":9,"segment_id":"00000000-0000-0000-0000-000000000001","max_timestamp":1009,"size":730,"crc32c":12345}]}"#;

    fn seg(base: i64, end: i64) -> RemoteSegment {
        RemoteSegment {
            base_offset: base,
            end_offset: end,
            segment_id: Uuid::from_u128(base as u128 + 1),
            max_timestamp: 1000 + end,
            size: 100,
            crc32c: 1,
            txn_index: base % 2 == 0,
        }
    }

    #[test]
    fn manifests_written_by_earlier_versions_stay_readable() {
        let m: Manifest = serde_json::from_str(OLD_FORMAT).expect("parse");
        assert_eq!(m.segments.len(), 1);
        assert_eq!(m.segments[0].end_offset, 9);
        assert!(!m.segments[0].txn_index);
        assert_eq!(m.next_offset(), 10);
    }

    #[test]
    fn the_json_field_names_do_not_change() {
        let text = serde_json::to_string(&Manifest {
            segments: vec![seg(0, 9)],
            ..Manifest::default()
        })
        .expect("json");
        assert_eq!(
            text,
            r#"{"segments":[{"base_offset":0,"end_offset":9,"segment_id":"00000000-0000-0000-0000-000000000001","max_timestamp":1009,"size":100,"crc32c":1,"txn_index":true}]}"#
        );
    }

    #[test]
    fn find_returns_the_segment_holding_an_offset() {
        let m = Manifest {
            segments: vec![seg(0, 9), seg(10, 19)],
            ..Manifest::default()
        };
        assert_eq!(m.find(10).map(|s| s.base_offset), Some(10));
        assert_eq!(m.find(9).map(|s| s.base_offset), Some(0));
        assert!(m.find(20).is_none());
        assert_eq!(m.size(), 200);
        assert_eq!(Manifest::default().next_offset(), 0);
    }

    #[tokio::test]
    async fn a_missing_manifest_is_empty_and_a_put_one_loads_back() {
        let cache = tempfile::tempdir().expect("tempdir");
        let tier = tier_on(Arc::new(InMemory::new()), cache.path());
        assert_eq!(
            tier.load_manifest(&tp()).await.expect("load"),
            Manifest::default()
        );
        let m = Manifest {
            segments: vec![seg(0, 9), seg(10, 19)],
            ..Manifest::default()
        };
        tier.put_manifest(&tp(), &m).await.expect("put");
        assert_eq!(tier.load_manifest(&tp()).await.expect("load"), m);
    }

    #[tokio::test]
    async fn an_unreadable_manifest_is_corrupt() {
        let cache = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(InMemory::new());
        let tier = tier_on(store.clone(), cache.path());
        store
            .put(
                &tier.paths.manifest(&tp()),
                PutPayload::from_static(b"{\"segm"),
            )
            .await
            .expect("put");
        assert!(matches!(
            tier.load_manifest(&tp()).await,
            Err(TierError::Corrupt(_))
        ));
    }
}
