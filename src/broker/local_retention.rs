//! Retention for a topic that is not archived: closed segments past `retention.ms`, or
//! beyond `retention.bytes` (a segment goes only if the log stays at least that large
//! without it, as in Kafka), expire oldest first. Retention moves the log start offset past
//! them (`Partition::advance_log_start`, the same way DeleteRecords does), which
//! checkpoints it and deletes the segments below; a crash mid-deletion leaves segments
//! that the next start-up deletes.

use super::partition::Partition;
use super::{Broker, Topic};
use std::sync::Arc;

/// Runs until stopped with its topic (see `maintenance`).
#[tracing::instrument(name = "retention", skip_all, fields(topic = %topic.name, partition = partition.index))]
pub async fn run(broker: Broker, topic: Arc<Topic>, partition: Arc<Partition>) {
    let check = super::maintenance::retention_check_interval(&broker);
    loop {
        tokio::select! {
            _ = partition.rolled.notified() => {}
            _ = tokio::time::sleep(check) => {}
        }
        // Time and size retention belong to `cleanup.policy=delete` (alone or with compact).
        if !topic.is_deleting(&broker.config) {
            continue;
        }
        let r = super::archive_source::retention(&topic, &broker.config);
        let p = partition.clone();
        // Checkpointing and deleting segment files is blocking work: off the async threads.
        let _ = tokio::task::spawn_blocking(move || {
            let now = crate::clock::now_ms();
            let start = p.retention_start(|s, local_size| {
                (r.ms >= 0 && s.max_timestamp < now - r.ms)
                    || (r.bytes >= 0 && local_size.saturating_sub(s.size) >= r.bytes as u64)
            });
            // Also finishes a deletion DeleteRecords asked for.
            let start = start.unwrap_or_else(|| p.log_start_offset());
            if let Err(e) = p.advance_log_start(start, "retention") {
                tracing::error!(error = %e, "deleting expired segments failed");
            }
        })
        .await;
    }
}
