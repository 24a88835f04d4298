//! Every background loop of the broker, started here and nowhere else, each with a handle
//! that stops it: broker-wide loops (the interval flusher, the rolled-segment flusher, group
//! and offsets expiry, idle-producer expiry, transaction time-outs, the log cleaner) stop when the broker
//! shuts down; a topic's loops (its partitions' archivers or local retention, recording the
//! topic in the archive) stop when the topic is deleted. The loops themselves never ask
//! whether their topic still exists.
//!
//! Stopping aborts the loop's task at its next await point. Every loop is written so that
//! this is safe: file replacements are atomic (`crate::checkpoint`), the archiver writes
//! objects before the manifest, and blocking work already handed to `spawn_blocking`
//! finishes on its own. Owns no files.

use super::{Broker, Topic};
use crate::config::FlushPolicy;
use dashmap::DashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::AbortHandle;
use uuid::Uuid;

/// How often rolled segments are checked for their delayed fsync.
const SEGMENT_FLUSH_CHECK: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Maintenance {
    /// Broker-wide loops.
    broker_tasks: Mutex<Vec<AbortHandle>>,
    /// Each topic's loops, by topic id.
    topic_tasks: DashMap<Uuid, Vec<AbortHandle>>,
    /// The task recording a topic's metadata in the archive, by topic id: a newer record
    /// (more partitions) stops an older one still retrying, so the older cannot land last.
    recording: DashMap<Uuid, AbortHandle>,
}

impl Maintenance {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        self.broker_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    fn spawn_for_topic(
        &self,
        id: Uuid,
        task: impl Future<Output = ()> + Send + 'static,
    ) -> AbortHandle {
        let handle = tokio::spawn(task).abort_handle();
        self.topic_tasks.entry(id).or_default().push(handle.clone());
        handle
    }

    /// Stops a topic's loops (it is being deleted).
    pub fn stop_topic(&self, id: Uuid) {
        self.recording.remove(&id);
        if let Some((_, tasks)) = self.topic_tasks.remove(&id) {
            for t in tasks {
                t.abort();
            }
        }
    }

    /// Stops every loop (the broker is shutting down).
    pub fn stop_all(&self) {
        for t in self
            .broker_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        let ids: Vec<Uuid> = self.topic_tasks.iter().map(|e| *e.key()).collect();
        for id in ids {
            self.stop_topic(id);
        }
    }

    /// Number of loops running for a topic (for tests and logs).
    pub fn topic_task_count(&self, id: Uuid) -> usize {
        self.topic_tasks.get(&id).map(|t| t.len()).unwrap_or(0)
    }
}

/// Starts the broker-wide loops and every loaded topic's loops, and resumes the deletions
/// of deleted topics' archived objects that a stop or a crash interrupted.
pub fn start(broker: &Broker) {
    for topic in broker.topics() {
        start_topic(broker, &topic);
    }
    let data_dir = &broker.config.data_dir;
    for pending in super::archive_deletions::load(data_dir) {
        if broker.topic_by_id(pending.id).is_none() {
            delete_archived_topic(broker, pending);
            continue;
        }
        // Recorded by a DeleteTopics that a kill stopped before the topic's metadata went:
        // the topic was never deleted, and its objects are its data.
        tracing::info!(topic = %pending.name, "the topic of an interrupted deletion is still there; keeping its archived objects");
        if let Err(e) = super::archive_deletions::done(data_dir, pending.id) {
            tracing::warn!(topic = %pending.name, error = %e, "forgetting an interrupted archive deletion failed");
        }
    }
    let m = &broker.maintenance;
    if broker.config.flush == FlushPolicy::Interval {
        m.spawn(flush_on_interval(broker.clone()));
    }
    m.spawn(flush_rolled_segments(broker.clone()));
    let b = broker.clone();
    m.spawn(async move { b.groups.run_expiry().await });
    m.spawn(expire_producers(broker.clone()));
    m.spawn(time_out_transactions(broker.clone()));
    if broker.config.props.bool("log.cleaner.enable") {
        m.spawn(clean_logs(broker.clone()));
    }
}

/// Deletes a deleted topic's archived objects, retrying with backoff until the store has let
/// them all go, then forgets the recorded deletion (`archive_deletions`). A broker-wide
/// loop: the topic's own loops are stopped already. Aborted mid-way (shutdown), it starts
/// over at the next start-up.
pub fn delete_archived_topic(broker: &Broker, pending: super::archive_deletions::PendingDeletion) {
    let Some(tier) = broker.tier.clone() else {
        return;
    };
    let data_dir = broker.config.data_dir.clone();
    broker.maintenance.spawn(async move {
        crate::tier::archiver::delete_topic_objects(&tier, &pending.name, pending.id).await;
        let id = pending.id;
        match tokio::task::spawn_blocking(move || super::archive_deletions::done(&data_dir, id))
            .await
        {
            Ok(Ok(())) => {
                tracing::info!(topic = %pending.name, "deleted the topic's archived objects")
            }
            Ok(Err(e)) => {
                tracing::warn!(topic = %pending.name, error = %e, "forgetting a finished archive deletion failed; it runs again at the next start")
            }
            Err(e) => tracing::warn!(topic = %pending.name, error = %e, "archive deletion task failed"),
        }
    });
}

/// Starts a topic's loops: its partitions' archivers when the topic is archived, else
/// their local retention.
pub fn start_topic(broker: &Broker, topic: &Arc<Topic>) {
    start_partitions(broker, topic, 0);
}

/// Starts the loops of a topic's partitions from `first` on (all of them for a new topic,
/// the added ones after CreatePartitions) and records the topic, with its partition count,
/// in the archive.
pub fn start_partitions(broker: &Broker, topic: &Arc<Topic>, first: usize) {
    let m = &broker.maintenance;
    let added = topic.partitions.get(first..).unwrap_or_default();
    let tier = match broker.tier.clone() {
        Some(tier) if topic.is_tiered(&broker.config) => tier,
        _ => {
            for p in added {
                let (b, t, p) = (broker.clone(), topic.clone(), p.clone());
                m.spawn_for_topic(topic.id, async move {
                    p.wait_loaded().await;
                    super::local_retention::run(b, t, p).await
                });
            }
            return;
        }
    };
    match topic.meta_yaml() {
        Ok(yaml) => {
            let (t, tr) = (topic.clone(), tier.clone());
            let handle = m.spawn_for_topic(topic.id, async move {
                crate::tier::archiver::record_topic(&tr, &t.name, t.id, yaml).await;
            });
            if let Some(older) = m.recording.insert(topic.id, handle) {
                older.abort();
            }
        }
        Err(e) => {
            tracing::error!(topic = %topic.name, error = %e, "serialising the topic's metadata failed")
        }
    }
    let check = retention_check_interval(broker);
    for p in added {
        p.expect_manifest();
        let source = Arc::new(super::archive_source::PartitionSource {
            topic: topic.clone(),
            partition: p.clone(),
            broker: broker.clone(),
        });
        let (tier, p) = (tier.clone(), p.clone());
        m.spawn_for_topic(topic.id, async move {
            p.wait_loaded().await;
            crate::tier::archiver::run(tier, p.topic_id_partition(), source, check).await
        });
    }
}

/// How often retention and the archivers look again without a roll to wake them.
pub fn retention_check_interval(broker: &Broker) -> Duration {
    let ms = broker.config.props.int("log.retention.check.interval.ms");
    Duration::from_millis(ms.max(100) as u64)
}

/// `flush: interval`: fsyncs every partition with unflushed data each interval.
async fn flush_on_interval(broker: Broker) {
    let mut tick = tokio::time::interval(broker.config.flush_interval());
    loop {
        tick.tick().await;
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || b.flush_all()).await;
    }
}

/// fsyncs rolled segments once they are `ROLLED_SEGMENT_SYNC_DELAY` old and moves each
/// partition's recovery point past them (under `flush: always` the acknowledgements did
/// it already).
async fn flush_rolled_segments(broker: Broker) {
    let age = super::partition::ROLLED_SEGMENT_SYNC_DELAY;
    let mut tick = tokio::time::interval(SEGMENT_FLUSH_CHECK);
    loop {
        tick.tick().await;
        let due: Vec<_> = broker
            .topics()
            .iter()
            .flat_map(|t| t.partitions.iter().filter(|p| p.has_unsynced_rolls()))
            .cloned()
            .collect();
        if due.is_empty() {
            continue;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for p in due {
                // Logged by the partition; the segment is tried again on the next tick.
                let _ = p.sync_rolled(age);
            }
        })
        .await;
    }
}

/// The log cleaner: every `log.cleaner.backoff.ms`, each partition of a topic whose
/// `cleanup.policy` (read anew every pass) includes `compact` gets a cleaning pass if it is
/// due, one partition at a time on a blocking thread, throttled to
/// `log.cleaner.io.max.bytes.per.second`. Aborting it mid-pass is safe: the pass finishes on
/// its blocking thread, and a kill leaves files that start-up recovery finishes or undoes.
async fn clean_logs(broker: Broker) {
    use std::collections::HashMap;
    let props = &broker.config.props;
    let backoff = Duration::from_millis(props.int("log.cleaner.backoff.ms").max(10) as u64);
    let rate: f64 = props
        .get("log.cleaner.io.max.bytes.per.second")
        .parse()
        .unwrap_or(f64::MAX);
    // When a kept tombstone or marker of a partition may go; a partition not seen yet gets
    // one pass for them (the time is not kept across restarts).
    let mut delete_due: HashMap<(Uuid, i32), Option<i64>> = HashMap::new();
    loop {
        tokio::time::sleep(backoff).await;
        for topic in broker.topics() {
            if !topic.is_compacted(&broker.config) {
                continue;
            }
            let settings = super::compaction::TopicSettings::of(&topic, &broker.config);
            // A log not open yet is cleaned once it is.
            for p in topic.partitions.iter().filter(|p| p.is_loaded()) {
                let key = (topic.id, p.index);
                let now = crate::clock::now_ms();
                let due = delete_due
                    .get(&key)
                    .is_none_or(|t| t.is_some_and(|t| now >= t));
                let (p, settings) = (p.clone(), settings.clone());
                let started = std::time::Instant::now();
                let run = tokio::task::spawn_blocking(move || {
                    let mut throttle = crate::log::cleaner::Throttle::new(rate);
                    let codec = crate::log::cleaner::KafkaCodecs;
                    super::compaction::clean_partition(
                        &p,
                        &settings,
                        &codec,
                        &mut throttle,
                        now,
                        due,
                    )
                })
                .await;
                match run {
                    Ok(Ok(Some(stats))) if stats.groups == 0 => {
                        delete_due.insert(key, stats.next_delete_due_ms);
                    }
                    Ok(Ok(Some(stats))) => {
                        let m = &crate::metrics::METRICS.cleaner;
                        m.passes.inc();
                        m.read_bytes.inc_by(stats.bytes_read);
                        m.written_bytes.inc_by(stats.bytes_written);
                        m.removed_records.inc_by(stats.records_removed);
                        tracing::info!(
                            topic = %topic.name,
                            partition = key.1,
                            groups = stats.groups,
                            bytes_read = stats.bytes_read,
                            bytes_written = stats.bytes_written,
                            records_removed = stats.records_removed,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "cleaned log"
                        );
                        delete_due.insert(key, stats.next_delete_due_ms);
                    }
                    Ok(Ok(None)) => {
                        delete_due.entry(key).or_insert(None);
                    }
                    Ok(Err(e)) => {
                        crate::metrics::METRICS.cleaner.errors.inc();
                        tracing::warn!(topic = %topic.name, partition = key.1, error = %e, "log cleaning failed; the log is left as it was");
                        delete_due.entry(key).or_insert(None);
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// Forgets producers idle for `producer.id.expiration.ms`.
async fn expire_producers(broker: Broker) {
    let max_age = broker.config.props.int("producer.id.expiration.ms");
    let every = broker
        .config
        .props
        .int("producer.id.expiration.check.interval.ms")
        .max(100) as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(every));
    loop {
        tick.tick().await;
        let cutoff = crate::clock::now_ms() - max_age;
        for topic in broker.topics() {
            // A log not open yet has no producers in memory to forget.
            for p in topic.partitions.iter().filter(|p| p.is_loaded()) {
                let n = p.expire_producers(cutoff);
                if n > 0 {
                    tracing::debug!(topic = %topic.name, partition = p.index, expired = n, "idle producers forgotten");
                }
            }
        }
    }
}

/// Finishes transactions decided before a restart, then aborts those that outlive their
/// timeout.
async fn time_out_transactions(broker: Broker) {
    for c in broker.txns.unfinished() {
        // A failure keeps the transaction to be finished on a later round.
        let _ = broker.finish_or_stall(&c).await;
    }
    let mut tick = tokio::time::interval(broker.txns.settings.abort_check_interval);
    loop {
        tick.tick().await;
        // Transactions whose markers could not be written (a full disk) are tried again.
        for c in broker.txns.take_all_stalled() {
            let _ = broker.finish_or_stall(&c).await;
        }
        let alloc = || broker.allocate_producer_id();
        for c in broker.txns.expire(&alloc).await {
            let _ = broker.finish_or_stall(&c).await;
        }
    }
}
