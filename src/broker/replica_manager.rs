//! The replica manager, named after Kafka's `ReplicaManager`: the one path between requests
//! and partition data. Appends go to the local log; fetches and offset lookups decide here,
//! and only here, whether an offset is read from the local log or from the archive.
//!
//! A long-polling fetch waits on the partitions it reads: an append wakes the fetches waiting
//! on that partition only. Archive reads run one per partition at a time in a task of their
//! own (so a slow store does not hold up the local partitions of the same response, and the
//! read goes on warming the chunk cache after the fetch has answered); the task's flag is
//! cleared however it ends — success, error, time-out or panic — and a failed read is
//! answered with KAFKA_STORAGE_ERROR, so the client sees it and its next fetch tries again.
//!
//! Owns no files: the logs are the partitions', the archive's objects the tier's.

use super::partition::{AppendInfo, Partition, Traffic};
use super::Topic;
use crate::log::FileRange;
use crate::tier::{ReadWant, Tier};
use bytes::Bytes;
use dashmap::DashSet;
use kafka_protocol::error::ResponseError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// An archive read still running after this is abandoned, so that a store that hangs
/// cannot keep a partition's read flag set.
const REMOTE_READ_LIMIT: Duration = Duration::from_secs(30);

/// What a fetch asks for as a whole (Kafka's `FetchParams`).
#[derive(Clone, Copy, Debug)]
pub struct FetchParams {
    pub max_wait: Duration,
    pub min_bytes: usize,
    /// The response's byte budget across partitions.
    pub max_bytes: usize,
    /// isolation_level 1: nothing at or past the last stable offset.
    pub read_committed: bool,
    /// The connection sends segment bytes from the page cache (a plaintext socket): local
    /// records are answered as file ranges, not read into memory.
    pub zero_copy: bool,
}

/// One partition of a fetch: the partition (or the error to answer for it) and where to read.
pub struct FetchPartition {
    pub partition: Result<Arc<Partition>, ResponseError>,
    pub fetch_offset: i64,
    pub max_bytes: i32,
}

/// What a fetch answers for one partition (Kafka's `FetchPartitionData`).
#[derive(Debug)]
pub struct FetchPartitionData {
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// With read_committed: (producer id, first offset) of aborted transactions that the
    /// returned records may belong to.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
    pub records: FetchedRecords,
}

/// The records a fetch answers for one partition.
#[derive(Debug)]
pub enum FetchedRecords {
    /// In memory: read from a local segment for a connection that needs the bytes (TLS
    /// encrypts them), or from the archive.
    Bytes(Bytes),
    /// Whole batches of a local segment, left in the file for the connection to send from
    /// the page cache; `records` data records among them.
    File { range: FileRange, records: u64 },
}

impl FetchedRecords {
    pub fn len(&self) -> usize {
        match self {
            Self::Bytes(b) => b.len(),
            Self::File { range, .. } => range.len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts them in the partition's traffic.
    fn count_sent(&self, traffic: &Traffic) {
        match self {
            Self::Bytes(b) => traffic.sent(b),
            Self::File { range, records } => traffic.sent_counted(range.len, *records),
        }
    }

    /// The bytes, read from the file if they are still there.
    pub fn into_bytes(self) -> std::io::Result<Bytes> {
        match self {
            Self::Bytes(b) => Ok(b),
            Self::File { range, .. } => range.read(),
        }
    }
}

impl FetchPartitionData {
    fn error(error: ResponseError, partition: Option<&Partition>) -> Self {
        let offsets = |p: &Partition| {
            (
                p.high_watermark(),
                p.last_stable_offset(),
                p.log_start_offset(),
            )
        };
        let (hw, lso, start) = partition.map(offsets).unwrap_or((-1, -1, -1));
        Self {
            error: Some(error),
            high_watermark: hw,
            last_stable_offset: lso,
            log_start_offset: start,
            aborted_transactions: None,
            records: FetchedRecords::Bytes(Bytes::new()),
        }
    }
}

/// Which offset ListOffsets asks for (Kafka's special timestamps -1 … -5, or a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetSpec {
    Latest,
    Earliest,
    MaxTimestamp,
    EarliestLocal,
    LatestTiered,
    Timestamp(i64),
}

impl OffsetSpec {
    /// The spec for a ListOffsets timestamp field; `None` for values Kafka refuses.
    pub fn from_timestamp(ts: i64) -> Option<Self> {
        Some(match ts {
            -1 => Self::Latest,
            -2 => Self::Earliest,
            -3 => Self::MaxTimestamp,
            -4 => Self::EarliestLocal,
            -5 => Self::LatestTiered,
            ts if ts >= 0 => Self::Timestamp(ts),
            _ => return None,
        })
    }
}

/// An accepted append, and the offset an acknowledgement must wait to be durable for
/// (`flush: always`).
pub struct Appended {
    pub info: AppendInfo,
    pub durable_at: Option<i64>,
}

pub struct ReplicaManager {
    /// The archive, when tiering is configured.
    tier: Option<Arc<Tier>>,
    /// Partitions (topic id, index) with an archive read under way.
    remote_reads: Arc<DashSet<(Uuid, i32)>>,
}

/// Clears a partition's archive-read flag when the read task ends, including by a panic
/// or an abort (the task's future is dropped either way).
struct RemoteReadGuard {
    reads: Arc<DashSet<(Uuid, i32)>>,
    key: (Uuid, i32),
}

impl Drop for RemoteReadGuard {
    fn drop(&mut self) {
        self.reads.remove(&self.key);
    }
}

impl ReplicaManager {
    pub fn new(tier: Option<Arc<Tier>>) -> Self {
        Self {
            tier,
            remote_reads: Arc::new(DashSet::new()),
        }
    }

    pub fn tier(&self) -> Option<&Arc<Tier>> {
        self.tier.as_ref()
    }

    /// Validates and appends one partition's records (Kafka's `appendRecords` for one
    /// partition). `in_txn` checks a transactional batch against the coordinator.
    pub fn append_records(
        &self,
        topic: &Topic,
        partition: &Partition,
        records: &[u8],
        required_acks: i16,
        now_ms: i64,
        in_txn: &dyn Fn(i64, i16) -> Result<(), ResponseError>,
    ) -> Result<Appended, ResponseError> {
        let rules = topic.rules();
        // Kafka checks the in-sync replicas before appending (Partition.appendRecordsToLeader).
        if required_acks == -1 && rules.too_few_replicas_for_acks_all {
            return Err(ResponseError::NotEnoughReplicas);
        }
        partition.check_online()?;
        let info = partition.append(records, &rules, now_ms, in_txn)?;
        let durable_at = partition
            .acks_wait_for_fsync()
            .then_some(info.last_offset + 1);
        Ok(Appended { info, durable_at })
    }

    /// Reads the partitions of a fetch, waiting up to `max_wait` for `min_bytes` (long
    /// poll), woken by appends to these partitions only.
    pub async fn fetch_messages(
        &self,
        params: &FetchParams,
        partitions: &[FetchPartition],
    ) -> Vec<FetchPartitionData> {
        let deadline = tokio::time::Instant::now() + params.max_wait;
        let mut watches: Vec<watch::Receiver<()>> = partitions
            .iter()
            .filter_map(|p| p.partition.as_ref().ok())
            .map(|p| p.watch_high_watermark())
            .collect();
        // A slow archive must not hold up the local partitions of the same response.
        let remote_wait = params
            .max_wait
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        loop {
            for w in &mut watches {
                w.borrow_and_update();
            }
            let mut remaining = params.max_bytes;
            let mut total = 0usize;
            let mut errors = false;
            let mut results = Vec::with_capacity(partitions.len());
            for want in partitions {
                let partition = match &want.partition {
                    Ok(p) => match p.check_online() {
                        Ok(()) => p,
                        Err(e) => {
                            errors = true;
                            results.push(FetchPartitionData::error(e, None));
                            continue;
                        }
                    },
                    Err(e) => {
                        errors = true;
                        results.push(FetchPartitionData::error(*e, None));
                        continue;
                    }
                };
                let limit = remaining.min(want.max_bytes.max(0) as usize);
                let read = ReadAt {
                    offset: want.fetch_offset,
                    max_bytes: limit,
                    // KIP-74: the first batch of the response is returned even when it is
                    // larger than the limits.
                    min_one: total == 0,
                    read_committed: params.read_committed,
                    zero_copy: params.zero_copy,
                };
                let data = self.read(partition, read, remote_wait).await;
                if data.error.is_some() {
                    errors = true;
                }
                remaining = remaining.saturating_sub(data.records.len());
                total += data.records.len();
                results.push(data);
            }
            let now = tokio::time::Instant::now();
            if total >= params.min_bytes || errors || now >= deadline || watches.is_empty() {
                for (want, data) in partitions.iter().zip(&results) {
                    if let Ok(p) = &want.partition {
                        data.records.count_sent(&p.traffic);
                    }
                }
                return results;
            }
            let any_grew =
                futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = any_grew => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// One partition of a fetch: from the local log, or from the archive below the local
    /// log start.
    async fn read(
        &self,
        partition: &Arc<Partition>,
        at: ReadAt,
        remote_wait: Duration,
    ) -> FetchPartitionData {
        // Past the bound of files held open by answers, records go in memory.
        let pin = if at.zero_copy {
            crate::log::file_cache::pin()
        } else {
            None
        };
        let local = if let Some(pin) = pin {
            partition
                .read_file(at.offset, at.max_bytes, at.min_one, at.read_committed)
                .map(|found| match found {
                    Some((mut range, whole)) => {
                        range.pin = Some(Arc::new(pin));
                        FetchedRecords::File {
                            range,
                            records: whole.records,
                        }
                    }
                    None => FetchedRecords::Bytes(Bytes::new()),
                })
        } else {
            partition
                .read(at.offset, at.max_bytes, at.min_one, at.read_committed)
                .map(|d| FetchedRecords::Bytes(d.records))
        };
        let records = match local {
            Err(ResponseError::OffsetMovedToTieredStorage) => self
                .read_from_archive(partition, at, remote_wait)
                .await
                .map(FetchedRecords::Bytes),
            other => other,
        };
        match records {
            Ok(records) => {
                let lso = partition.last_stable_offset();
                let aborted = at.read_committed.then(|| {
                    let to = if records.is_empty() { at.offset } else { lso };
                    partition.aborted_between(at.offset, to)
                });
                FetchPartitionData {
                    error: None,
                    high_watermark: partition.high_watermark(),
                    last_stable_offset: lso,
                    log_start_offset: partition.log_start_offset(),
                    aborted_transactions: aborted,
                    records,
                }
            }
            Err(e) => FetchPartitionData::error(e, Some(partition)),
        }
    }

    /// Whole batches from the archive. While another read of the partition runs, answers
    /// at once with no records; a read that outlasts `wait` is answered with no records
    /// and goes on warming the cache; a read that fails or panics is KAFKA_STORAGE_ERROR.
    async fn read_from_archive(
        &self,
        partition: &Arc<Partition>,
        at: ReadAt,
        wait: Duration,
    ) -> Result<Bytes, ResponseError> {
        let (Some(tier), Some(manifest)) = (self.tier.clone(), partition.manifest()) else {
            // Just started: the manifest is on its way. No records; the client asks again.
            if partition.awaiting_manifest() {
                return Ok(Bytes::new());
            }
            return Err(ResponseError::OffsetOutOfRange);
        };
        let Some(segment) = manifest.find(at.offset).cloned() else {
            return Err(ResponseError::OffsetOutOfRange);
        };
        let key = (partition.topic_id, partition.index);
        if !self.remote_reads.insert(key) {
            return Ok(Bytes::new());
        }
        let guard = RemoteReadGuard {
            reads: self.remote_reads.clone(),
            key,
        };
        let tp = partition.topic_id_partition();
        let want = ReadWant {
            offset: at.offset,
            max_bytes: at.max_bytes,
            min_one: at.min_one,
        };
        let task = tokio::spawn(async move {
            let _guard = guard;
            tokio::time::timeout(REMOTE_READ_LIMIT, tier.read(&tp, &segment, want)).await
        });
        let (topic, index, offset) = (&partition.topic, partition.index, at.offset);
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(Ok(Ok(records)))) => Ok(records),
            Ok(Ok(Ok(Err(e)))) => {
                tracing::warn!(%topic, partition = index, offset, error = %e, "archive read failed");
                Err(ResponseError::KafkaStorageError)
            }
            Ok(Ok(Err(_))) => {
                tracing::warn!(%topic, partition = index, offset, "archive read timed out");
                Err(ResponseError::KafkaStorageError)
            }
            Ok(Err(e)) => {
                tracing::error!(%topic, partition = index, offset, error = %e, "archive read task failed");
                Err(ResponseError::KafkaStorageError)
            }
            // Still running: the client asks again, by then the chunks are cached.
            Err(_) => Ok(Bytes::new()),
        }
    }

    /// ListOffsets for one partition: (offset, timestamp), `None` when there is none (a
    /// timestamp past every record). The archive is searched first for a timestamp it
    /// holds a record that recent for, then the local log.
    pub async fn fetch_offset_for_timestamp(
        &self,
        partition: &Partition,
        spec: OffsetSpec,
        read_committed: bool,
    ) -> Result<Option<(i64, i64)>, ResponseError> {
        partition.check_online()?;
        let fetchable = if read_committed {
            partition.last_stable_offset()
        } else {
            partition.high_watermark()
        };
        match spec {
            OffsetSpec::Latest if read_committed => Ok(Some((partition.last_stable_offset(), -1))),
            OffsetSpec::Latest => Ok(Some((partition.high_watermark(), -1))),
            OffsetSpec::Earliest => Ok(Some((partition.log_start_offset(), -1))),
            OffsetSpec::EarliestLocal => Ok(Some((partition.local_log_start_offset(), -1))),
            OffsetSpec::LatestTiered => Ok(Some((partition.remote_end().max(0) - 1, -1))),
            OffsetSpec::MaxTimestamp => Ok(partition
                .max_timestamp()?
                .map(|(ts, off)| (off, ts))
                .filter(|&(off, _)| off < fetchable)),
            OffsetSpec::Timestamp(ts) => {
                // Records below the log start may still sit in its segment: never answered.
                let start = partition.log_start_offset();
                let found = match self.archive_offset_for_timestamp(partition, ts).await? {
                    Some(found) => Some(found),
                    None => partition.offset_for_timestamp(ts)?,
                };
                // A record past what the client may read is not found (Kafka's
                // lastFetchableOffset): no answer rather than a later record.
                Ok(found
                    .map(|(offset, ts)| (offset.max(start), ts))
                    .filter(|&(off, _)| off < fetchable))
            }
        }
    }

    async fn archive_offset_for_timestamp(
        &self,
        partition: &Partition,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, ResponseError> {
        let (Some(tier), Some(manifest)) = (self.tier.as_ref(), partition.manifest()) else {
            return Ok(None);
        };
        let local_start = partition.local_log_start_offset();
        let in_archive = manifest
            .segments
            .iter()
            .any(|s| s.max_timestamp >= ts && s.base_offset < local_start);
        if !in_archive {
            return Ok(None);
        }
        let tp = partition.topic_id_partition();
        tier.offset_for_timestamp(&tp, &manifest, ts)
            .await
            .map_err(|e| {
                tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "archive timestamp lookup failed");
                ResponseError::KafkaStorageError
            })
    }

    /// DeleteRecords for one partition (Kafka's `deleteRecordsOnLeader`): moves the log
    /// start to `offset` (-1: the high watermark) and returns the new low watermark. Below
    /// the current start it changes nothing; above the high watermark it is
    /// OFFSET_OUT_OF_RANGE. Local segments below go now; archived ones on the archiver's
    /// next pass, which this wakes.
    pub async fn delete_records(
        &self,
        topic: &Topic,
        partition: &Arc<Partition>,
        offset: i64,
        broker: &crate::config::Config,
    ) -> Result<i64, ResponseError> {
        let policy = topic.config_value(broker, "cleanup.policy");
        if !policy.split(',').any(|p| p.trim() == "delete") {
            return Err(ResponseError::PolicyViolation);
        }
        partition.check_online()?;
        let hw = partition.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(ResponseError::OffsetOutOfRange);
        }
        let p = partition.clone();
        let advanced =
            tokio::task::spawn_blocking(move || p.advance_log_start(target, "DeleteRecords"))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = advanced {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "moving the log start failed");
            return Err(ResponseError::KafkaStorageError);
        }
        // The archiver (or local retention) deletes what is archived below the start.
        partition.rolled.notify_one();
        Ok(partition.log_start_offset())
    }

    /// The first offset a consumer can read, archive included.
    pub fn log_start_offset(&self, partition: &Partition) -> i64 {
        partition.log_start_offset()
    }

    /// Where the next append goes.
    pub fn log_end_offset(&self, partition: &Partition) -> i64 {
        partition.log_end_offset()
    }
}

/// Where and how much one partition of a fetch reads.
#[derive(Clone, Copy, Debug)]
struct ReadAt {
    offset: i64,
    max_bytes: usize,
    min_one: bool,
    read_committed: bool,
    zero_copy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_task_that_panics_clears_its_partition_flag() {
        let reads = Arc::new(DashSet::new());
        let key = (Uuid::new_v4(), 3);
        assert!(reads.insert(key));
        let guard = RemoteReadGuard {
            reads: reads.clone(),
            key,
        };
        let task = tokio::spawn(async move {
            let _guard = guard;
            panic!("a corrupt object");
        });
        assert!(task.await.is_err());
        assert!(!reads.contains(&key), "the flag outlived the panicked read");
    }

    #[test]
    fn list_offsets_timestamps_map_to_kafkas_specs() {
        assert_eq!(OffsetSpec::from_timestamp(-1), Some(OffsetSpec::Latest));
        assert_eq!(OffsetSpec::from_timestamp(-2), Some(OffsetSpec::Earliest));
        assert_eq!(
            OffsetSpec::from_timestamp(-3),
            Some(OffsetSpec::MaxTimestamp)
        );
        assert_eq!(
            OffsetSpec::from_timestamp(-4),
            Some(OffsetSpec::EarliestLocal)
        );
        assert_eq!(
            OffsetSpec::from_timestamp(-5),
            Some(OffsetSpec::LatestTiered)
        );
        assert_eq!(
            OffsetSpec::from_timestamp(7),
            Some(OffsetSpec::Timestamp(7))
        );
        assert_eq!(OffsetSpec::from_timestamp(-6), None);
    }
}

#[cfg(test)]
mod fetch_tests {
    use super::*;
    use crate::broker::Broker;
    use crate::log::record_batch::tests::make_batch;

    fn append(broker: &Broker, topic: &str) {
        let topic = broker.topic(topic).expect("topic");
        let partition = topic.partition(0).expect("partition");
        let no_txn = |_: i64, _: i16| Ok(());
        broker
            .replica_manager
            .append_records(
                &topic,
                &partition,
                &make_batch(1_000, &[b"x"]),
                1,
                1_000,
                &no_txn,
            )
            .expect("append");
    }

    #[tokio::test]
    async fn a_long_poll_returns_as_soon_as_its_partition_grows() {
        let (_dir, broker) = crate::broker::test_broker();
        for name in ["wanted", "other"] {
            broker
                .create_topic(name, 1, 1, vec![], false)
                .await
                .expect("topic");
        }
        let wanted = broker.partition("wanted", 0).expect("partition");
        let params = FetchParams {
            max_wait: Duration::from_secs(10),
            min_bytes: 1,
            max_bytes: 1 << 20,
            read_committed: false,
            zero_copy: false,
        };
        let b = broker.clone();
        let started = std::time::Instant::now();
        let fetch = tokio::spawn(async move {
            let want = [FetchPartition {
                partition: Ok(wanted),
                fetch_offset: 0,
                max_bytes: 1 << 20,
            }];
            b.replica_manager.fetch_messages(&params, &want).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        append(&broker, "other");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !fetch.is_finished(),
            "an append elsewhere answered the fetch"
        );
        append(&broker, "wanted");
        let data = tokio::time::timeout(Duration::from_secs(2), fetch)
            .await
            .expect("woken by the append")
            .expect("task");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(data.len(), 1);
        assert_eq!(data[0].error, None);
        assert_eq!(data[0].high_watermark, 1);
        assert!(!data[0].records.is_empty());
    }

    #[tokio::test]
    async fn delete_records_answers_as_kafka_does() {
        let (_dir, broker) = crate::broker::test_broker();
        let topic = broker
            .create_topic("purge", 1, 1, vec![], false)
            .await
            .expect("topic");
        for _ in 0..3 {
            append(&broker, "purge");
        }
        let p = topic.partition(0).expect("partition");
        let rm = &broker.replica_manager;
        let delete = |offset| rm.delete_records(&topic, &p, offset, &broker.config);
        assert_eq!(delete(4).await, Err(ResponseError::OffsetOutOfRange));
        assert_eq!(delete(-2).await, Err(ResponseError::OffsetOutOfRange));
        assert_eq!(delete(2).await, Ok(2));
        assert_eq!(delete(1).await, Ok(2), "moving back changes nothing");
        assert_eq!(delete(-1).await, Ok(3), "-1 is the high watermark");
        let earliest = rm
            .fetch_offset_for_timestamp(&p, OffsetSpec::Earliest, false)
            .await;
        assert_eq!(earliest, Ok(Some((3, -1))));

        let compacted = broker
            .create_topic(
                "compacted",
                1,
                1,
                vec![("cleanup.policy".into(), Some("compact".into()))],
                false,
            )
            .await
            .expect("topic");
        let cp = compacted.partition(0).expect("partition");
        assert_eq!(
            rm.delete_records(&compacted, &cp, 0, &broker.config).await,
            Err(ResponseError::PolicyViolation)
        );
    }

    #[tokio::test]
    async fn a_deleted_topic_stops_its_loops() {
        let (_dir, broker) = crate::broker::test_broker();
        let topic = broker
            .create_topic("short-lived", 2, 1, vec![], false)
            .await
            .expect("topic");
        // One archiver (or retention loop) per partition, and recording the topic.
        assert!(broker.maintenance.topic_task_count(topic.id) >= 2);
        broker.delete_topic("short-lived").await.expect("deleted");
        assert_eq!(broker.maintenance.topic_task_count(topic.id), 0);
    }
}
