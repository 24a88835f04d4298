//! The broker's side of the archiver: a partition seen as an [`ArchiveSource`]. Holds no
//! state of its own and writes no files beyond what the partition's methods write (deleting
//! archived local segments); retention is read from the topic's configs on every call, so
//! changes made through the admin APIs apply at the next pass.

use super::partition::Partition;
use super::Topic;
use crate::config::Config;
use crate::log::txn_index::AbortedTxn;
use crate::log::ClosedSegment;
use crate::tier::archiver::ArchiveSource;
use crate::tier::retention::Retention;
use crate::tier::Manifest;
use std::sync::Arc;
use tokio::sync::Notify;

pub struct PartitionSource {
    pub topic: Arc<Topic>,
    pub partition: Arc<Partition>,
    /// For the broker-wide defaults of the retention configs: the broker's handle, shared
    /// (a copy of its configs per partition would cost kilobytes each).
    pub broker: super::Broker,
}

impl ArchiveSource for PartitionSource {
    fn closed_segments(&self) -> Vec<ClosedSegment> {
        self.partition.closed_segments()
    }

    fn last_stable_offset(&self) -> i64 {
        self.partition.last_stable_offset()
    }

    fn rolled(&self) -> &Notify {
        &self.partition.rolled
    }

    fn manifest(&self) -> Option<Manifest> {
        self.partition.manifest()
    }

    fn install_manifest(&self, manifest: Manifest, aborted: Vec<AbortedTxn>) {
        self.partition.add_aborted(aborted);
        self.partition.set_manifest(manifest);
    }

    fn remote_end(&self) -> i64 {
        self.partition.remote_end()
    }

    fn retention(&self) -> Retention {
        retention(&self.topic, &self.broker.config)
    }

    fn delete_oldest_local_if(
        &self,
        may_delete: &dyn Fn(&ClosedSegment, u64) -> bool,
    ) -> std::io::Result<bool> {
        self.partition
            .delete_oldest_local_if(|s, local_size| may_delete(s, local_size))
    }

    fn local_size_beyond_archive(&self) -> u64 {
        self.partition.local_size_beyond_archive()
    }

    fn log_start_offset(&self) -> i64 {
        self.partition.log_start_offset()
    }

    fn advance_log_start(&self, offset: i64, reason: &str) -> std::io::Result<bool> {
        self.partition.advance_log_start(offset, reason)
    }
}

/// A topic's retention limits, with Kafka's -2 ("same as the total") resolved.
pub fn retention(topic: &Topic, config: &Config) -> Retention {
    Retention::resolve(
        topic.int_config(config, "retention.ms"),
        topic.int_config(config, "retention.bytes"),
        topic.int_config(config, "local.retention.ms"),
        topic.int_config(config, "local.retention.bytes"),
    )
}
