//! The object-store connection (a local directory or S3, from the config) and the paths of
//! every object the archive writes. Writes no local files itself; with `store: local` the
//! bucket is a directory whose objects object_store writes atomically (temporary file, then
//! rename), so a crash leaves no partial object.

use super::{RemoteSegment, TopicIdPartition};
use crate::config::{Config, TierStore};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// File name of a partition's manifest.
pub const MANIFEST: &str = "manifest.json";
/// File name of a topic's metadata.
pub const TOPIC_META: &str = "topic.yaml";

/// Connects to the configured store, or `None` when tiering is off.
pub fn connect(config: &Config) -> anyhow::Result<Option<Arc<dyn ObjectStore>>> {
    let t = &config.tier;
    if t.store == TierStore::None || !config.props.bool("remote.log.storage.system.enable") {
        return Ok(None);
    }
    let store: Arc<dyn ObjectStore> = match t.store {
        TierStore::Local => Arc::new(local_store(config)?),
        TierStore::S3 => {
            let bucket = t
                .bucket
                .clone()
                .ok_or_else(|| anyhow::anyhow!("tier.bucket is required for store: s3"))?;
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                // The archiver retries on its own, with backoff; a short client retry
                // keeps one slow request from holding a fetch for long.
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
    Ok(Some(store))
}

/// The local-directory store of the config (`store: local`), created if missing.
pub fn local_store(config: &Config) -> anyhow::Result<object_store::local::LocalFileSystem> {
    let dir = config
        .tier_local_dir()
        .ok_or_else(|| anyhow::anyhow!("tier.store is not local"))?;
    std::fs::create_dir_all(&dir)?;
    Ok(object_store::local::LocalFileSystem::new_with_prefix(&dir)?)
}

/// Where each object lives under the key prefix.
#[derive(Clone, Debug)]
pub struct Paths {
    prefix: String,
}

impl Paths {
    pub fn new(prefix: String) -> Self {
        Self { prefix }
    }

    /// The folder of all topics.
    pub fn root(&self) -> ObjectPath {
        ObjectPath::from(self.prefix.clone())
    }

    pub fn topic_dir(&self, topic: &str, id: Uuid) -> String {
        format!("{}/{}-{}", self.prefix, topic, id)
    }

    pub fn topic_meta(&self, topic: &str, id: Uuid) -> ObjectPath {
        ObjectPath::from(format!("{}/{TOPIC_META}", self.topic_dir(topic, id)))
    }

    pub fn manifest(&self, tp: &TopicIdPartition) -> ObjectPath {
        ObjectPath::from(format!(
            "{}/{}/{MANIFEST}",
            self.topic_dir(&tp.topic, tp.topic_id),
            tp.partition
        ))
    }

    /// `suffix` is `.log`, `.index`, `.timeindex` or `.txnindex`.
    pub fn segment(&self, tp: &TopicIdPartition, seg: &RemoteSegment, suffix: &str) -> ObjectPath {
        ObjectPath::from(format!(
            "{}/{}/{:020}-{}{}",
            self.topic_dir(&tp.topic, tp.topic_id),
            tp.partition,
            seg.base_offset,
            seg.segment_id,
            suffix
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_objects_are_named_by_padded_base_offset_and_segment_id() {
        let paths = Paths::new("strata".into());
        let tp = TopicIdPartition::new("t", Uuid::nil(), 3);
        let seg = RemoteSegment {
            base_offset: 42,
            end_offset: 50,
            segment_id: Uuid::nil(),
            max_timestamp: 0,
            size: 1,
            crc32c: 0,
            txn_index: false,
        };
        assert_eq!(
            paths.segment(&tp, &seg, ".log").as_ref(),
            format!("strata/t-{0}/3/00000000000000000042-{0}.log", Uuid::nil())
        );
        assert_eq!(
            paths.manifest(&tp).as_ref(),
            format!("strata/t-{}/3/manifest.json", Uuid::nil())
        );
    }
}
