//! Retention for a topic that is not archived: closed segments past `retention.ms`, or
//! beyond `retention.bytes` (a segment goes only if the log stays at least that large
//! without it, as in Kafka), are deleted oldest first. Deletes segment files and writes
//! none; a crash mid-deletion leaves a segment that the next pass deletes again.

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
        // Deleting segment files is blocking work: off the async threads.
        let _ = tokio::task::spawn_blocking(move || {
            let now = crate::clock::now_ms();
            loop {
                let deleted = p.delete_oldest_local_if(|s, local_size| {
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
        })
        .await;
    }
}
