//! What the archive holds, for a broker started on an empty disk: each topic's recorded
//! metadata and its partitions' manifests. Returns plain data and writes nothing, locally
//! or remotely; the broker decides what to recreate (a crash midway leaves nothing to undo).

use super::{store, Manifest, Tier, TopicIdPartition};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use serde::Deserialize;
use uuid::Uuid;

/// More partitions than this in a `topic.yaml` is taken for damage, not a topic.
const MAX_PARTITIONS: i32 = 1 << 16;
/// A `topic.yaml` larger than this is not read.
const MAX_META_BYTES: u64 = 1 << 20;

/// A topic found in the archive.
#[derive(Clone, Debug)]
pub struct ArchivedTopic {
    /// The metadata the broker recorded (`put_topic`), for it to parse.
    pub meta_yaml: String,
    /// One per partition, in partition order.
    pub manifests: Vec<Manifest>,
}

/// The few fields of `topic.yaml` the archive needs; the broker reads the rest.
#[derive(Deserialize)]
struct TopicHead {
    name: String,
    id: Uuid,
    partitions: i32,
}

/// Every topic recorded in the archive with its manifests. Unreadable metadata is skipped
/// with a warning; a store failure is an error.
pub async fn find_topics(tier: &Tier) -> anyhow::Result<Vec<ArchivedTopic>> {
    let listing = tier
        .store
        .list_with_delimiter(Some(&tier.paths.root()))
        .await?;
    let mut out = Vec::new();
    for dir in listing.common_prefixes {
        let path = ObjectPath::from(format!("{dir}/{}", store::TOPIC_META));
        let r = match tier.store.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if r.meta.size > MAX_META_BYTES {
            tracing::warn!(path = %path, bytes = r.meta.size, "oversized topic metadata in the archive");
            continue;
        }
        let meta_yaml = String::from_utf8_lossy(&r.bytes().await?).into_owned();
        let head: TopicHead = match serde_yaml::from_str(&meta_yaml) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "unreadable topic metadata in the archive");
                continue;
            }
        };
        if !(1..=MAX_PARTITIONS).contains(&head.partitions) {
            tracing::warn!(path = %path, partitions = head.partitions, "implausible partition count in the archive");
            continue;
        }
        let mut manifests = Vec::with_capacity(head.partitions as usize);
        for p in 0..head.partitions {
            let tp = TopicIdPartition::new(head.name.clone(), head.id, p);
            manifests.push(tier.load_manifest(&tp).await?);
        }
        out.push(ArchivedTopic {
            meta_yaml,
            manifests,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::test_support::tier_on;
    use crate::tier::RemoteSegment;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    #[tokio::test]
    async fn recorded_topics_come_back_with_their_manifests_in_partition_order() {
        let cache = tempfile::tempdir().expect("tempdir");
        let tier = tier_on(Arc::new(InMemory::new()), cache.path());
        let id = Uuid::from_u128(9);
        let yaml =
            format!("name: orders\nid: {id}\npartitions: 2\nconfigs:\n  retention.ms: '1000'\n");
        tier.put_topic("orders", id, yaml.clone())
            .await
            .expect("put topic");
        let m = Manifest {
            segments: vec![RemoteSegment {
                base_offset: 0,
                end_offset: 4,
                segment_id: Uuid::from_u128(1),
                max_timestamp: 5,
                size: 10,
                crc32c: 0,
                txn_index: false,
            }],
            ..Manifest::default()
        };
        tier.put_manifest(&TopicIdPartition::new("orders", id, 1), &m)
            .await
            .expect("put manifest");
        tier.put_topic("broken", Uuid::from_u128(3), "name: [".into())
            .await
            .expect("put topic");

        let found = find_topics(&tier).await.expect("find");
        assert_eq!(found.len(), 1, "unreadable metadata is skipped");
        assert_eq!(found[0].meta_yaml, yaml);
        assert_eq!(found[0].manifests, vec![Manifest::default(), m]);
        assert_eq!(found[0].manifests[1].next_offset(), 5);
    }
}
