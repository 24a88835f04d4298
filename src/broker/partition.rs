//! One partition: its log, its producers, and the offsets clients see (log start, local log
//! start, high watermark, last stable offset), and the wake-up signal of the fetches waiting
//! on it. Appends and reads take the partition's lock only for memory work and `write()`
//! calls; every fsync runs after the lock is released.
//!
//! Files: the log's (see `crate::log`) and the producer snapshots (see `producer_state`),
//! both in `<data_dir>/<topic>-<partition>/`. After a crash the log is recovered past its
//! recovery point and the producers are replayed from the newest snapshot it vouches for.
//!
//! # Log start offset
//! One way moves it, as Kafka's `maybeIncrementLogStartOffset`: `advance_log_start`, called
//! by DeleteRecords, by local retention and by the archive's total retention. It checkpoints
//! the new start (`log-start-offset`, fsynced) before anyone can see it, then deletes the
//! local segments wholly below it outside the partition lock; the archiver drops archived
//! segments below it (manifest first). A crash between the two finds the checkpoint and
//! finishes the deletion at start-up, so deleted records never come back. On a full disk
//! the checkpoint itself needs room: without an archive, the segments wholly below the new
//! start are deleted first (a crash then finds the log starting at the first one left).
//!
//! # A failed write
//! An append that fails (a full disk) leaves the log as it was (see `Log::append`) and is
//! answered KAFKA_STORAGE_ERROR; nothing else moves, and the next append tries again.

use super::producer_state::{self, ProducerStates, SequenceCheck};
use crate::log::codec::{self, Compression};
use crate::log::record_batch::{self, BatchHeaders, RecordBatch};
use crate::log::{ClosedSegment, FileRange, ReadSlice, Rolled, WholeBatches};
use crate::log::{Log, LogConfig};
use crate::tier::Manifest;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use uuid::Uuid;

/// How long after a roll (with `flush` other than `always`) the rolled segment is fsynced
/// and the recovery point moved past it: by then the kernel's own writeback (30 s by
/// default) has written most of it, and the fsync no longer competes with the appends
/// going to the new segment.
pub const ROLLED_SEGMENT_SYNC_DELAY: Duration = Duration::from_secs(30);

/// Topic settings a partition applies on every append.
#[derive(Clone, Debug)]
pub struct AppendRules {
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    /// The topic's `compression.type`; `None` for `producer` (batches kept as sent).
    pub compression: Option<Compression>,
    /// `min.insync.replicas` above the one replica there is, in strict replication mode:
    /// Kafka then refuses acks=all produces with NOT_ENOUGH_REPLICAS.
    pub too_few_replicas_for_acks_all: bool,
    /// `cleanup.policy` includes `compact`: every record needs a key (INVALID_RECORD).
    pub compact: bool,
}

/// A topic created with Kafka's defaults: `max.message.bytes` 1048588, CreateTime,
/// `compression.type` producer, `cleanup.policy` delete.
impl Default for AppendRules {
    fn default() -> Self {
        Self {
            max_message_bytes: 1_048_588,
            log_append_time: false,
            compression: None,
            too_few_replicas_for_acks_all: false,
            compact: false,
        }
    }
}

/// Where an accepted batch landed.
#[derive(Clone, Copy, Debug)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

/// The batch in the topic's codec when `compression.type` names another one than the
/// producer used, as Kafka's broker recompresses on append (producer id, epoch, sequence
/// and the transactional bit kept). `None`: the batch is stored as it came, never decoded.
fn recompress_for_topic(
    b: &RecordBatch<'_>,
    rules: &AppendRules,
) -> Result<Option<Vec<u8>>, ResponseError> {
    let Some(target) = rules.compression else {
        return Ok(None);
    };
    if target.id() == b.compression() {
        return Ok(None);
    }
    let limit = codec::decompressed_limit(rules.max_message_bytes);
    let out = codec::recompress(b, target, limit).map_err(|e| {
        tracing::debug!(error = %e, "batch could not be recompressed");
        match e {
            codec::CodecError::TooLarge(_) => ResponseError::MessageTooLarge,
            codec::CodecError::Count { .. } | codec::CodecError::Record(_) => {
                ResponseError::InvalidRecord
            }
            _ => ResponseError::CorruptMessage,
        }
    })?;
    // Kafka checks the size again after a recompression: `uncompressed` can outgrow it.
    if out.len() > rules.max_message_bytes {
        return Err(ResponseError::MessageTooLarge);
    }
    Ok(Some(out))
}

struct State {
    log: Log,
    producers: ProducerStates,
}

/// What opening a partition's log needs, kept until it is opened.
struct PendingOpen {
    config: LogConfig,
    start_offset: i64,
}

/// Bytes and records appended by produce and sent by fetch, for `/metrics`. Counted with
/// one atomic add per partition per request, outside the partition lock; read when
/// `/metrics` is scraped.
#[derive(Debug, Default)]
pub struct Traffic {
    pub bytes_in: AtomicU64,
    pub records_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub records_out: AtomicU64,
}

impl Traffic {
    /// Counts the batches of a fetch response's records: all their bytes, and the records
    /// of data batches (a transaction marker is not a record a consumer sees). Walks batch
    /// headers only.
    pub fn sent(&self, records: &[u8]) {
        if records.is_empty() {
            return;
        }
        let count: u64 = BatchHeaders::new(records)
            .map_while(Result::ok)
            .filter(|b| !b.is_control())
            .map(|b| b.record_count().max(0) as u64)
            .sum();
        self.sent_counted(records.len() as u64, count);
    }

    /// Counts `bytes` of batches holding `records` data records, counted by whoever
    /// walked their headers (records sent from a file are not read here).
    pub fn sent_counted(&self, bytes: u64, records: u64) {
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.records_out.fetch_add(records, Ordering::Relaxed);
    }
}

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    state: Mutex<State>,
    /// How to open the log, until it is opened (`load`); its lock serialises the opening.
    pending: Mutex<Option<PendingOpen>>,
    /// The log is open: set once, after `state` and the offsets below hold it.
    loaded: AtomicBool,
    /// Wakes the partition's background loops once the log is open.
    opened: Notify,
    /// Serialises fsyncs so that concurrent producers share one (group commit).
    flush_lock: tokio::sync::Mutex<()>,
    /// Offsets below this are on disk.
    durable_offset: AtomicI64,
    /// Where the next batch goes.
    log_end: AtomicI64,
    /// What consumers may read: the log end, or with `flush: always` the durable offset, so
    /// that no consumer ever sees a record a crash could still take back (as Kafka with
    /// `flush.messages=1`, which flushes before the high watermark moves).
    high_watermark: AtomicI64,
    hw_after_fsync: bool,
    /// First offset on local disk.
    local_start: AtomicI64,
    /// The log start as moved by `advance_log_start` (checkpointed); the start clients see
    /// is never below it.
    start_floor: AtomicI64,
    /// Serialises `advance_log_start`: checkpoint writes land in offset order.
    start_writer: Mutex<()>,
    dir: std::path::PathBuf,
    /// First offset in the archive, -1 while it holds nothing.
    remote_start: AtomicI64,
    /// Offsets below this are archived (and listed in the manifest), -1 while none are.
    remote_end: AtomicI64,
    /// The archive's manifest for this partition, once loaded.
    manifest: Mutex<Option<Manifest>>,
    /// An archiver runs for this partition and has not loaded its manifest yet: until it
    /// has, the checkpointed log start is the start (as Kafka's log-start-offset checkpoint
    /// is), and reads below the local log wait instead of being out of range.
    awaiting_manifest: AtomicBool,
    /// Wakes the archiver when a segment closes.
    pub rolled: Notify,
    /// Bumped whenever the high watermark moves, so that only the fetches waiting on this
    /// partition wake up.
    high_watermark_moved: watch::Sender<()>,
    /// Rolled segments not fsynced yet, with when they rolled. Synced outside the
    /// partition lock: by `make_durable` under `flush: always`, otherwise by the segment
    /// flusher once they are `ROLLED_SEGMENT_SYNC_DELAY` old.
    unsynced: Mutex<Vec<(Instant, Rolled)>>,
    /// First offset of the oldest open transaction (i64::MAX when none), so fetches learn
    /// the last stable offset without taking the partition lock.
    first_unstable: AtomicI64,
    /// Produced and fetched totals for `/metrics`.
    pub traffic: Traffic,
}

impl Partition {
    /// New roll settings for the log (its topic's configs changed).
    pub fn set_log_config(&self, config: LogConfig) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.as_mut() {
            Some(p) => p.config = config,
            None => {
                drop(pending);
                self.state().log.set_config(config);
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.ensure_loaded();
        // A panic while holding the lock cannot leave the log half-written in a way a later
        // append would make worse than recovery does, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition as the archive names it.
    pub fn topic_id_partition(&self) -> crate::tier::TopicIdPartition {
        crate::tier::TopicIdPartition {
            topic: self.topic.clone(),
            topic_id: self.topic_id,
            partition: self.index,
        }
    }

    /// Where the next batch goes (written, not necessarily readable yet).
    pub fn log_end_offset(&self) -> i64 {
        self.ensure_loaded();
        self.log_end.load(Ordering::Acquire)
    }

    /// Whether an acknowledgement must wait for `make_durable` (`flush: always`).
    pub fn acks_wait_for_fsync(&self) -> bool {
        self.hw_after_fsync
    }

    pub fn high_watermark(&self) -> i64 {
        self.ensure_loaded();
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Moves the high watermark up to `end` and wakes the fetches waiting on this partition.
    fn advance_high_watermark(&self, end: i64) {
        let before = self.high_watermark.fetch_max(end, Ordering::AcqRel);
        if end > before && self.high_watermark_moved.receiver_count() > 0 {
            self.high_watermark_moved.send_replace(());
        }
    }

    /// A signal that changes whenever the high watermark moves (a long-polling fetch waits
    /// on the partitions it reads, not on the whole broker).
    pub fn watch_high_watermark(&self) -> watch::Receiver<()> {
        self.high_watermark_moved.subscribe()
    }

    /// The first offset a consumer can read, archive included.
    pub fn log_start_offset(&self) -> i64 {
        self.ensure_loaded();
        let local = self.local_start.load(Ordering::Acquire);
        let floor = self.start_floor.load(Ordering::Acquire);
        let held = match self.remote_start.load(Ordering::Acquire) {
            r if r >= 0 => r.min(local),
            // Everything from the checkpointed start up to the local log is archived:
            // retention and DeleteRecords move the checkpoint before they delete.
            _ if self.awaiting_manifest() && floor >= 0 => floor,
            _ => local,
        };
        held.max(floor)
    }

    /// An archiver is about to load this partition's manifest (see `awaiting_manifest`).
    pub fn expect_manifest(&self) {
        if self.manifest().is_none() {
            self.awaiting_manifest.store(true, Ordering::Release);
        }
    }

    pub fn awaiting_manifest(&self) -> bool {
        self.awaiting_manifest.load(Ordering::Acquire)
    }

    /// The first offset read from local disk (Kafka's local log start offset, never below
    /// the log start).
    pub fn local_log_start_offset(&self) -> i64 {
        self.ensure_loaded();
        self.local_start
            .load(Ordering::Acquire)
            .max(self.start_floor.load(Ordering::Acquire))
    }

    /// Moves the log start offset up to `offset` (never down; the caller checked it against
    /// the high watermark): checkpoints it durably, makes it visible, then deletes the local
    /// segments wholly below it. Returns whether it moved. Blocking: call it off the async
    /// threads.
    pub fn advance_log_start(&self, offset: i64, reason: &str) -> std::io::Result<bool> {
        let moved = {
            let _writer = self.start_writer.lock().unwrap_or_else(|p| p.into_inner());
            let moved = offset > self.log_start_offset();
            if moved {
                if let Err(e) = crate::log::write_log_start_offset(&self.dir, offset) {
                    if e.kind() != std::io::ErrorKind::StorageFull || self.is_archived() {
                        return Err(e);
                    }
                    // A full disk, and the checkpoint needs a block that the segments below
                    // hold (retention is how a full disk gets room back). Those wholly below
                    // go first: with nothing archived, a restart before the checkpoint finds
                    // the log starting at the first segment left, at or below `offset`.
                    self.delete_local_below(offset)?;
                    crate::log::write_log_start_offset(&self.dir, offset)?;
                }
                self.start_floor.fetch_max(offset, Ordering::AcqRel);
                self.state().producers.trim_aborted(offset);
                tracing::info!(topic = %self.topic, partition = self.index, log_start = offset, reason, "log start offset moved");
            }
            moved
        };
        self.delete_local_below(self.start_floor.load(Ordering::Acquire))?;
        Ok(moved)
    }

    /// Whether an archive holds (or may hold) segments of this partition.
    fn is_archived(&self) -> bool {
        self.manifest().is_some()
            || self.awaiting_manifest()
            || self.remote_start.load(Ordering::Acquire) >= 0
    }

    /// Deletes the local segments wholly below `floor` (and the producer snapshots with
    /// them); the files go after the partition lock is released.
    fn delete_local_below(&self, floor: i64) -> std::io::Result<()> {
        let (taken, start) = {
            let mut state = self.state();
            let taken = state.log.take_segments_below(floor);
            (taken, state.log.log_start_offset())
        };
        if taken.is_empty() {
            return Ok(());
        }
        // Set after the lock is released: never let a slower deleter move it back.
        self.local_start.fetch_max(start, Ordering::AcqRel);
        let n = taken.len();
        for seg in taken {
            seg.delete()?;
        }
        remove_snapshots_below(&self.dir, start);
        tracing::info!(topic = %self.topic, partition = self.index, segments = n, local_log_start = start, "deleted local segments below the log start");
        Ok(())
    }

    /// Where retention would move the log start: past the oldest closed segments for which
    /// `expired(segment, local bytes while it is still there)` holds, oldest first. `None`
    /// when nothing expired.
    pub fn retention_start(&self, expired: impl Fn(&ClosedSegment, u64) -> bool) -> Option<i64> {
        let state = self.state();
        let mut size = state.log.size();
        let mut start = None;
        let closed = state.log.closed_segments();
        for seg in &closed {
            if !expired(seg, size) {
                break;
            }
            size = size.saturating_sub(seg.size);
            start = Some(seg.next_offset);
        }
        start
    }

    /// Offsets below this are archived; -1 while nothing is.
    pub fn remote_end(&self) -> i64 {
        self.remote_end.load(Ordering::Acquire)
    }

    pub fn manifest(&self) -> Option<Manifest> {
        self.manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Installs the archive's manifest (loaded, or after an upload or a remote deletion).
    pub fn set_manifest(&self, manifest: Manifest) {
        let (start, end) = match (manifest.segments.first(), manifest.segments.last()) {
            (Some(f), Some(l)) => (f.base_offset, l.end_offset + 1),
            _ => (-1, -1),
        };
        self.remote_start.store(start, Ordering::Release);
        // A start inside the first archived segment (a restored broker learns it here).
        if let Some(recorded) = manifest.log_start_offset {
            self.start_floor.fetch_max(recorded, Ordering::AcqRel);
        }
        // Never moves back: segments expired from the archive stay archived as far as the
        // uploader is concerned, or it would upload them again.
        self.remote_end.fetch_max(end, Ordering::AcqRel);
        *self.manifest.lock().unwrap_or_else(|p| p.into_inner()) = Some(manifest);
        self.awaiting_manifest.store(false, Ordering::Release);
    }

    /// Forgets the archive (tiering was turned off with `remote.log.delete.on.disable`):
    /// reads start at the local log again.
    pub fn clear_manifest(&self) {
        self.remote_start.store(-1, Ordering::Release);
        self.remote_end.store(-1, Ordering::Release);
        *self.manifest.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.awaiting_manifest.store(false, Ordering::Release);
    }

    /// Runs `f` on the log and the producers under the partition lock (the cleaner's
    /// snapshot of the log, and its swap).
    pub(super) fn with_log<R>(&self, f: impl FnOnce(&mut Log, &ProducerStates) -> R) -> R {
        let mut state = self.state();
        let State { log, producers } = &mut *state;
        f(log, producers)
    }

    /// Closed local segments, oldest first.
    pub fn closed_segments(&self) -> Vec<ClosedSegment> {
        self.state().log.closed_segments()
    }

    /// Bytes of the partition's local segments (what DescribeLogDirs reports).
    pub fn local_size(&self) -> u64 {
        self.state().log.size()
    }

    /// (segments, bytes) the archive holds for this partition; (0, 0) before its manifest
    /// is loaded.
    pub fn remote_size(&self) -> (usize, u64) {
        self.manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|m| (m.segments.len(), m.segments.iter().map(|s| s.size).sum()))
            .unwrap_or((0, 0))
    }

    /// Bytes on local disk that the archive does not hold (from `remote_end` on).
    pub fn local_size_beyond_archive(&self) -> u64 {
        let remote_end = self.remote_end();
        self.state()
            .log
            .segment_sizes()
            .into_iter()
            .filter(|&(base, _)| base >= remote_end)
            .map(|(_, size)| size)
            .sum()
    }

    /// Deletes the oldest local segment when `may_delete` says so; returns whether it did.
    pub fn delete_oldest_local_if(
        &self,
        may_delete: impl FnOnce(&ClosedSegment, u64) -> bool,
    ) -> std::io::Result<bool> {
        let (taken, start) = {
            let mut state = self.state();
            let closed = state.log.closed_segments();
            let Some(oldest) = closed.first() else {
                return Ok(false);
            };
            if !may_delete(oldest, state.log.size()) {
                return Ok(false);
            }
            let taken = state.log.take_oldest_segment();
            (taken, state.log.log_start_offset())
        };
        // Set after the lock is released: never let a slower deleter move it back.
        self.local_start.fetch_max(start, Ordering::AcqRel);
        // The files go after the partition lock is released.
        if let Some(seg) = taken {
            seg.delete()?;
        }
        remove_snapshots_below(&self.dir, start);
        tracing::info!(topic = %self.topic, partition = self.index, local_log_start = start, "deleted local segment");
        Ok(true)
    }

    /// Makes what the log holds now visible: the log end, and the high watermark unless it
    /// waits for an fsync. Releases the partition lock first.
    fn publish_end(&self, state: MutexGuard<'_, State>) {
        let end = state.log.next_offset();
        drop(state);
        self.log_end.fetch_max(end, Ordering::AcqRel);
        if !self.hw_after_fsync {
            self.advance_high_watermark(end);
        }
    }

    /// Appends one batch to the log, rolling and scheduling the rolled segment's fsync. The
    /// batch is its header `head` (given its offset here) and the records `rest`.
    fn write(&self, state: &mut State, head: &mut [u8], rest: &[u8]) -> Result<(), ResponseError> {
        self.write_recording_abort(state, head, rest, None)
            .map(|_| ())
    }

    /// `write`, with an abort marker's `.txnindex` entry (see `Log::append_recording_abort`);
    /// returns the `.txnindex` written. A write that fails (a full disk) leaves the log as
    /// it was and is answered KAFKA_STORAGE_ERROR; the next one tries the disk again.
    fn write_recording_abort(
        &self,
        state: &mut State,
        head: &mut [u8],
        rest: &[u8],
        aborted: Option<&crate::log::txn_index::AbortedTxn>,
    ) -> Result<Option<std::path::PathBuf>, ResponseError> {
        let base = state.log.next_offset();
        let (rolled, txn_index) = state
            .log
            .append_recording_abort(head, rest, aborted)
            .map_err(|e| {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e, "append failed");
                ResponseError::KafkaStorageError
            })?;
        if let Some(rolled) = rolled {
            producer_state::write_snapshot(state.log.dir(), base, &state.producers);
            self.rolled.notify_one();
            tracing::debug!(topic = %self.topic, partition = self.index, base, "rolled segment");
            self.unsynced_lock().push((Instant::now(), rolled));
        }
        Ok(txn_index)
    }

    /// Writes a transaction marker for a producer (commit or abort) and returns its offset.
    /// An abort is recorded in the segment's `.txnindex` (fsynced after the partition lock
    /// is released) and in memory for read_committed.
    pub async fn append_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<i64, ResponseError> {
        let (offset, txn_index) = self.write_marker(producer_id, epoch, commit, now_ms)?;
        if let Some(path) = txn_index {
            let synced =
                tokio::task::spawn_blocking(move || std::fs::File::open(path)?.sync_data())
                    .await
                    .map_err(|_| ResponseError::KafkaStorageError)?;
            synced.map_err(|e| {
                tracing::error!(topic = %self.topic, partition = self.index, error = %e, "txnindex fsync failed");
                ResponseError::KafkaStorageError
            })?;
        }
        Ok(offset)
    }

    /// The part of `append_marker` done under the partition lock; returns the marker's
    /// offset and the `.txnindex` to fsync, if an abort was recorded.
    fn write_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<(i64, Option<std::path::PathBuf>), ResponseError> {
        let mut batch = record_batch::control_batch(producer_id, epoch, commit, now_ms);
        let mut state = self.state();
        let offset = state.log.next_offset();
        // The abort's .txnindex entry and the marker are written together or not at all;
        // the producer state moves only once both are.
        let aborted = state.producers.abort_to_record(producer_id, offset, commit);
        let at = record_batch::HEADER_SIZE.min(batch.len());
        let (head, rest) = batch.split_at_mut(at);
        let txn_index = self.write_recording_abort(&mut state, head, rest, aborted.as_ref())?;
        state.producers.end(producer_id, epoch, offset, commit);
        self.first_unstable.store(
            state.producers.first_unstable().unwrap_or(i64::MAX),
            Ordering::Release,
        );
        self.publish_end(state);
        Ok((offset, txn_index))
    }

    /// Offsets below this hold no record of an open transaction: what read_committed
    /// consumers may read. Never below the log start (Kafka's
    /// `maybeIncrementFirstUnstableOffset`): a transaction whose start was deleted does not
    /// hold consumers below it.
    pub fn last_stable_offset(&self) -> i64 {
        self.ensure_loaded();
        self.first_unstable
            .load(Ordering::Acquire)
            .max(self.start_floor.load(Ordering::Acquire))
            .min(self.high_watermark())
    }

    /// (producer id, first offset) of aborted transactions overlapping [from, to).
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<(i64, i64)> {
        self.state()
            .producers
            .aborted_between(from, to)
            .into_iter()
            .map(|a| (a.producer_id, a.first_offset))
            .collect()
    }

    /// Drops idle producers (`producer.id.expiration.ms`) and aborted transactions wholly
    /// below the log start.
    pub fn expire_producers(&self, cutoff_ms: i64) -> usize {
        let start = self.log_start_offset();
        let mut state = self.state();
        state.producers.trim_aborted(start);
        state.producers.expire(cutoff_ms)
    }

    /// Adds aborted transactions known from elsewhere (the archive's `.txnindex` objects).
    pub fn add_aborted(&self, entries: Vec<crate::log::txn_index::AbortedTxn>) {
        if entries.is_empty() {
            return;
        }
        let mut state = self.state();
        for e in entries {
            if !state.producers.aborted.contains(&e) {
                state.producers.aborted.push(e);
            }
        }
        state.producers.aborted.sort_by_key(|a| a.last_offset);
    }

    /// Producers seen here: (id, epoch, last sequence, last timestamp, open txn start).
    pub fn producers(&self) -> Vec<(i64, i16, i32, i64, Option<i64>)> {
        self.state().producers.describe()
    }

    /// Validates and appends the batches of one partition's produce data.
    /// Transactional batches are first checked with `in_txn` (is the partition part of the
    /// producer's open transaction?).
    pub fn append(
        &self,
        records: &[u8],
        rules: &AppendRules,
        now_ms: i64,
        in_txn: &dyn Fn(i64, i16) -> Result<(), ResponseError>,
    ) -> Result<AppendInfo, ResponseError> {
        let mut batches = Vec::new();
        let mut headers = BatchHeaders::new(records);
        for b in headers.by_ref() {
            let b = b.map_err(|_| ResponseError::CorruptMessage)?;
            RecordBatch::validate(b.bytes()).map_err(|e| {
                tracing::debug!(error = %e, "refused batch");
                ResponseError::CorruptMessage
            })?;
            if b.size() > rules.max_message_bytes {
                return Err(ResponseError::MessageTooLarge);
            }
            if b.is_control() {
                return Err(ResponseError::InvalidRecord);
            }
            // A stored batch may span more offsets than it has records (the cleaner's), a
            // produced one may not.
            if b.record_count() > 0 && b.record_count() - 1 != b.last_offset_delta() {
                return Err(ResponseError::CorruptMessage);
            }
            if rules.compact && !super::compaction::all_records_keyed(&b, rules.max_message_bytes) {
                tracing::debug!(topic = %self.topic, partition = self.index, "Compacted topic cannot accept message without key");
                return Err(ResponseError::InvalidRecord);
            }
            batches.push(b);
        }
        if headers.position() != records.len() {
            return Err(ResponseError::CorruptMessage);
        }
        if batches.is_empty() {
            return Err(ResponseError::InvalidRecord);
        }
        // Before the lock: recompression is the only CPU-heavy step of an append.
        let recompressed = batches
            .iter()
            .map(|b| recompress_for_topic(b, rules))
            .collect::<Result<Vec<_>, _>>()?;
        let mut state = self.state();
        let mut first: Option<AppendInfo> = None;
        let mut last_offset = -1;
        let (mut bytes_in, mut records_in) = (0u64, 0u64);
        for (b, recompressed) in batches.into_iter().zip(recompressed) {
            let pid = b.producer_id();
            if b.is_transactional() {
                if pid < 0 {
                    return Err(ResponseError::InvalidRecord);
                }
                in_txn(pid, b.producer_epoch())?;
            }
            if pid >= 0 {
                let check = state.producers.check(
                    pid,
                    b.producer_epoch(),
                    b.base_sequence(),
                    b.last_sequence(),
                )?;
                if let SequenceCheck::Duplicate(meta) = check {
                    let info = AppendInfo {
                        base_offset: meta.first_offset,
                        last_offset: meta.last_offset,
                        log_append_time: if rules.log_append_time {
                            meta.timestamp
                        } else {
                            -1
                        },
                        log_start_offset: self.log_start_offset(),
                    };
                    first.get_or_insert(info);
                    last_offset = last_offset.max(meta.last_offset);
                    continue;
                }
            }
            // The header is patched in a copy of its own (offset, epoch, LogAppendTime); the
            // records are written from the request: copying a batch whole cost a memmove of
            // every byte produced under the partition lock.
            let bytes = recompressed.as_deref().unwrap_or(b.bytes());
            let (head, rest) = bytes.split_at(record_batch::HEADER_SIZE.min(bytes.len()));
            let mut head: [u8; record_batch::HEADER_SIZE] =
                head.try_into().map_err(|_| ResponseError::CorruptMessage)?;
            if rules.log_append_time {
                record_batch::set_log_append_time(&mut head, rest, now_ms);
            }
            if let Err(e) = self.write(&mut state, &mut head, rest) {
                // The batches of this request already written stay (whole, and a retrying
                // idempotent producer finds them as duplicates): they are published.
                self.publish_end(state);
                return Err(e);
            }
            let appended = record_batch::BatchHeader::parse(&head)
                .map_err(|_| ResponseError::CorruptMessage)?;
            state.producers.record_batch(&appended);
            bytes_in += bytes.len() as u64;
            records_in += appended.record_count().max(0) as u64;
            if appended.is_transactional() {
                self.first_unstable.store(
                    state.producers.first_unstable().unwrap_or(i64::MAX),
                    Ordering::Release,
                );
            }
            first.get_or_insert(AppendInfo {
                base_offset: appended.base_offset(),
                last_offset: appended.last_offset(),
                log_append_time: if rules.log_append_time { now_ms } else { -1 },
                log_start_offset: self.log_start_offset(),
            });
            last_offset = appended.last_offset();
        }
        self.publish_end(state);
        if bytes_in > 0 {
            self.traffic.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
            self.traffic
                .records_in
                .fetch_add(records_in, Ordering::Relaxed);
        }
        let mut info = first.ok_or(ResponseError::InvalidRecord)?;
        info.last_offset = last_offset;
        Ok(info)
    }

    /// Removes the partition's directory.
    pub fn delete_files(&self) -> std::io::Result<()> {
        // Never opened after this (the topic is gone); an opening under way finishes first.
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let _state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Snapshots of deleted segments go with them, as in Kafka; the newest ones stay.
fn remove_snapshots_below(dir: &Path, start: i64) {
    for old in producer_state::snapshot_offsets(dir)
        .into_iter()
        .filter(|o| *o < start)
    {
        let _ = std::fs::remove_file(dir.join(crate::log::segment::file_name(old, ".snapshot")));
    }
}

mod durability;
mod open;
mod read;
pub use read::FetchData;

#[cfg(test)]
mod tests;
