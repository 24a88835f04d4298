//! One partition: its log, its producers, and the offsets clients see.

use super::producer_state::{BatchMeta, ProducerStates, SequenceCheck};
use crate::log::record_batch::{self, BatchHeaders, RecordBatch};
use crate::log::ClosedSegment;
use crate::log::{Log, LogConfig};
use crate::tier::Manifest;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// How long after a roll (with `flush` other than `always`) the rolled segment is fsynced
/// and the recovery point moved past it.
const ROLLED_SEGMENT_SYNC_DELAY: std::time::Duration = std::time::Duration::from_secs(30);

/// Topic settings a partition applies on every append.
#[derive(Clone, Debug)]
pub struct AppendRules {
    pub max_message_bytes: usize,
    pub log_append_time: bool,
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

pub struct FetchData {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

struct State {
    log: Log,
    producers: ProducerStates,
}

pub struct Partition {
    pub topic: String,
    pub index: i32,
    state: Mutex<State>,
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
    /// First offset in the archive, -1 while it holds nothing.
    remote_start: AtomicI64,
    /// Offsets below this are archived (and listed in the manifest), -1 while none are.
    remote_end: AtomicI64,
    /// The archive's manifest for this partition, once loaded.
    manifest: Mutex<Option<Manifest>>,
    /// Wakes the archiver when a segment closes.
    pub rolled: Notify,
    /// A read from the archive is under way; fetches meanwhile answer without waiting.
    pub archive_read_in_flight: std::sync::atomic::AtomicBool,
    /// First offset of the oldest open transaction (i64::MAX when none), so fetches learn
    /// the last stable offset without taking the partition lock.
    first_unstable: AtomicI64,
}

impl Partition {
    /// Opens the partition's log, recovering its tail and replaying producer state.
    pub fn open(
        topic: &str,
        index: i32,
        dir: &Path,
        config: LogConfig,
        hw_after_fsync: bool,
        start_offset: i64,
    ) -> std::io::Result<Self> {
        // Producer state from the newest snapshot the recovery point vouches for, then the
        // batches after it; without one, from the whole log.
        let (mut producers, from) = match latest_snapshot(dir, crate::log::read_recovery_point(dir))
        {
            Some((offset, mut states)) => {
                states.aborted = local_txn_index(dir)
                    .into_iter()
                    .filter(|a| a.last_offset < offset)
                    .collect();
                (states, offset)
            }
            None => (ProducerStates::default(), i64::MIN),
        };
        let (log, report) = Log::open_at(dir, config, start_offset, &mut |b: &RecordBatch<'_>| {
            if b.base_offset() < from {
                return;
            }
            if b.is_control() {
                if let Some(commit) = record_batch::marker_type(b) {
                    producers.end(b.producer_id(), b.producer_epoch(), b.base_offset(), commit);
                }
            } else if b.producer_id() >= 0 {
                if b.is_transactional() {
                    producers.begin(b.producer_id(), b.base_offset());
                }
                producers.update(
                    b.producer_id(),
                    b.producer_epoch(),
                    BatchMeta {
                        first_seq: b.base_sequence(),
                        last_seq: b.last_sequence(),
                        first_offset: b.base_offset(),
                        last_offset: b.last_offset(),
                        timestamp: b.max_timestamp(),
                    },
                );
            }
        })?;
        if report.truncated_bytes > 0 {
            tracing::warn!(
                topic,
                partition = index,
                truncated_bytes = report.truncated_bytes,
                "recovery truncated a torn or corrupt tail"
            );
        }
        let end = log.next_offset();
        let start = log.log_start_offset();
        let first_unstable = producers.first_unstable().unwrap_or(i64::MAX);
        Ok(Self {
            topic: topic.to_string(),
            index,
            state: Mutex::new(State { log, producers }),
            flush_lock: tokio::sync::Mutex::new(()),
            durable_offset: AtomicI64::new(end),
            log_end: AtomicI64::new(end),
            high_watermark: AtomicI64::new(end),
            hw_after_fsync,
            local_start: AtomicI64::new(start),
            remote_start: AtomicI64::new(-1),
            remote_end: AtomicI64::new(-1),
            manifest: Mutex::new(None),
            rolled: Notify::new(),
            archive_read_in_flight: std::sync::atomic::AtomicBool::new(false),
            first_unstable: AtomicI64::new(first_unstable),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the log half-written in a way a later
        // append would make worse than recovery does, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an acknowledgement must wait for `make_durable` (`flush: always`).
    pub fn acks_wait_for_fsync(&self) -> bool {
        self.hw_after_fsync
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The first offset a consumer can read, archive included.
    pub fn log_start_offset(&self) -> i64 {
        let local = self.local_start.load(Ordering::Acquire);
        match self.remote_start.load(Ordering::Acquire) {
            r if r >= 0 => r.min(local),
            _ => local,
        }
    }

    pub fn local_log_start_offset(&self) -> i64 {
        self.local_start.load(Ordering::Acquire)
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
        // Never moves back: segments expired from the archive stay archived as far as the
        // uploader is concerned, or it would upload them again.
        self.remote_end.fetch_max(end, Ordering::AcqRel);
        *self.manifest.lock().unwrap_or_else(|p| p.into_inner()) = Some(manifest);
    }

    /// Closed local segments, oldest first.
    pub fn closed_segments(&self) -> Vec<ClosedSegment> {
        self.state().log.closed_segments()
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
        let mut state = self.state();
        let closed = state.log.closed_segments();
        let Some(oldest) = closed.first() else {
            return Ok(false);
        };
        if !may_delete(oldest, state.log.size()) {
            return Ok(false);
        }
        if let Some(start) = state.log.delete_oldest_segment()? {
            // Snapshots of deleted segments go with them, as in Kafka; the newest ones stay.
            let dir = state.log.dir().to_path_buf();
            for old in snapshot_offsets(&dir).into_iter().filter(|o| *o < start) {
                let _ = std::fs::remove_file(
                    dir.join(crate::log::segment::file_name(old, ".snapshot")),
                );
            }
            self.local_start.store(start, Ordering::Release);
            tracing::info!(topic = %self.topic, partition = self.index, local_log_start = start, "deleted local segment");
        }
        Ok(true)
    }

    /// Appends one batch to the log, rolling and scheduling the rolled segment's fsync.
    fn write(&self, state: &mut State, owned: &mut [u8]) -> Result<(), ResponseError> {
        let base = state.log.next_offset();
        let rolled = state.log.append(owned).map_err(|e| {
            tracing::error!(topic = %self.topic, partition = self.index, error = %e, "append failed");
            ResponseError::KafkaStorageError
        })?;
        if let Some(rolled) = rolled {
            write_snapshot(state.log.dir(), base, &state.producers);
            self.rolled.notify_one();
            tracing::debug!(topic = %self.topic, partition = self.index, base, "rolled segment");
            let (topic, index) = (self.topic.clone(), self.index);
            let sync = move || {
                if let Err(e) = rolled.sync() {
                    tracing::error!(%topic, partition = index, error = %e, "fsync of a rolled segment failed");
                }
            };
            if self.hw_after_fsync {
                // Little is unsynced under flush: always; acknowledgements must cover it.
                sync();
            } else {
                // Later rather than now: by then the kernel's own writeback (30 s
                // by default) has written most of it, and the fsync no longer
                // competes with the appends going to the new segment.
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => drop(rt.spawn(async move {
                        tokio::time::sleep(ROLLED_SEGMENT_SYNC_DELAY).await;
                        let _ = tokio::task::spawn_blocking(sync).await;
                    })),
                    Err(_) => sync(),
                }
            }
        }
        Ok(())
    }

    /// Writes a transaction marker for a producer (commit or abort) and returns its offset.
    /// An abort is recorded in the segment's `.txnindex` and in memory for read_committed.
    pub fn append_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<i64, ResponseError> {
        let mut batch = record_batch::control_batch(producer_id, epoch, commit, now_ms);
        let mut state = self.state();
        let offset = state.log.next_offset();
        self.write(&mut state, &mut batch)?;
        if let Some(a) = state.producers.end(producer_id, epoch, offset, commit) {
            state
                .log
                .append_txn_index(a.producer_id, a.first_offset, a.last_offset, a.last_stable_offset)
                .map_err(|e| {
                    tracing::error!(topic = %self.topic, partition = self.index, error = %e, "txnindex append failed");
                    ResponseError::KafkaStorageError
                })?;
        }
        self.first_unstable.store(
            state.producers.first_unstable().unwrap_or(i64::MAX),
            Ordering::Release,
        );
        let end = state.log.next_offset();
        drop(state);
        self.log_end.fetch_max(end, Ordering::AcqRel);
        if !self.hw_after_fsync {
            self.high_watermark.fetch_max(end, Ordering::AcqRel);
        }
        Ok(offset)
    }

    /// Offsets below this hold no record of an open transaction: what read_committed
    /// consumers may read.
    pub fn last_stable_offset(&self) -> i64 {
        self.first_unstable
            .load(Ordering::Acquire)
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
            batches.push(b);
        }
        if headers.position() != records.len() {
            return Err(ResponseError::CorruptMessage);
        }
        if batches.is_empty() {
            return Err(ResponseError::InvalidRecord);
        }
        let mut state = self.state();
        let mut first: Option<AppendInfo> = None;
        let mut last_offset = -1;
        for b in batches {
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
                        log_start_offset: state.log.log_start_offset(),
                    };
                    first.get_or_insert(info);
                    last_offset = last_offset.max(meta.last_offset);
                    continue;
                }
            }
            let mut owned = b.bytes().to_vec();
            if rules.log_append_time {
                record_batch::set_log_append_time(&mut owned, now_ms);
            }
            self.write(&mut state, &mut owned)?;
            let appended =
                RecordBatch::parse_header(&owned).map_err(|_| ResponseError::CorruptMessage)?;
            if pid >= 0 {
                state.producers.update(
                    pid,
                    appended.producer_epoch(),
                    BatchMeta {
                        first_seq: appended.base_sequence(),
                        last_seq: appended.last_sequence(),
                        first_offset: appended.base_offset(),
                        last_offset: appended.last_offset(),
                        timestamp: appended.max_timestamp(),
                    },
                );
                if appended.is_transactional() {
                    state.producers.begin(pid, appended.base_offset());
                    self.first_unstable.store(
                        state.producers.first_unstable().unwrap_or(i64::MAX),
                        Ordering::Release,
                    );
                }
            }
            first.get_or_insert(AppendInfo {
                base_offset: appended.base_offset(),
                last_offset: appended.last_offset(),
                log_append_time: if rules.log_append_time { now_ms } else { -1 },
                log_start_offset: state.log.log_start_offset(),
            });
            last_offset = appended.last_offset();
        }
        let end = state.log.next_offset();
        drop(state);
        self.log_end.fetch_max(end, Ordering::AcqRel);
        if !self.hw_after_fsync {
            self.high_watermark.fetch_max(end, Ordering::AcqRel);
        }
        let mut info = first.ok_or(ResponseError::InvalidRecord)?;
        info.last_offset = last_offset;
        Ok(info)
    }

    /// Waits until everything up to `offset` (exclusive) is on disk. Producers that arrive
    /// while an fsync runs wait for the next one, which then covers all of them.
    pub async fn make_durable(&self, offset: i64) -> Result<(), ResponseError> {
        if self.durable_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let _guard = self.flush_lock.lock().await;
        if self.durable_offset.load(Ordering::Acquire) >= offset {
            return Ok(());
        }
        let Some((file, end)) = self.state().log.active_file() else {
            return Ok(());
        };
        let synced = tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|_| ResponseError::KafkaStorageError)?;
        synced.map_err(|e| {
            tracing::error!(topic = %self.topic, partition = self.index, error = %e, "fsync failed");
            ResponseError::KafkaStorageError
        })?;
        self.durable_offset.fetch_max(end, Ordering::AcqRel);
        self.high_watermark.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Reads from `offset`: whole batches up to `max_bytes`, but always the first batch
    /// whole when `min_one` (KIP-74), so a consumer can never get stuck on a large batch.
    /// With `committed` (read_committed) nothing at or past the last stable offset is read.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        committed: bool,
    ) -> Result<FetchData, ResponseError> {
        let hw = self.high_watermark();
        let start = self.log_start_offset();
        if offset < start || offset > hw {
            return Err(ResponseError::OffsetOutOfRange);
        }
        let upper = if committed {
            self.last_stable_offset()
        } else {
            hw
        };
        if offset < self.local_log_start_offset() {
            return Err(ResponseError::OffsetMovedToTieredStorage);
        }
        let empty = FetchData {
            records: Bytes::new(),
            high_watermark: hw,
            log_start_offset: start,
        };
        if offset >= upper {
            return Ok(empty);
        }
        let slice = self
            .state()
            .log
            .read(offset)
            .map_err(|_| ResponseError::KafkaStorageError)?;
        let Some(slice) = slice else {
            return Ok(empty);
        };
        let available = (slice.end - slice.position) as usize;
        let first = slice.first_batch as usize;
        let want = if first > max_bytes {
            if !min_one {
                return Ok(empty);
            }
            first
        } else {
            max_bytes.min(available)
        };
        let bytes = read_exact(&slice.file, slice.position, want)?;
        // Cut at the last whole batch below the high watermark (or the last stable offset);
        // the first is whole by construction and holds `offset`, which is below it.
        let mut whole = 0;
        let mut it = BatchHeaders::new(&bytes);
        while let Some(Ok(batch)) = it.next() {
            if batch.base_offset() >= upper {
                break;
            }
            whole = it.position();
        }
        let mut bytes = Bytes::from(bytes);
        bytes.truncate(whole.max(first.min(bytes.len())));
        Ok(FetchData {
            records: bytes,
            high_watermark: hw,
            log_start_offset: start,
        })
    }

    /// (offset, timestamp) of the first record at or after `timestamp`.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, ResponseError> {
        self.state()
            .log
            .offset_for_timestamp(timestamp)
            .map_err(|_| ResponseError::KafkaStorageError)
    }

    /// (timestamp, offset) of the record with the largest timestamp.
    pub fn max_timestamp(&self) -> Option<(i64, i64)> {
        self.state().log.max_timestamp()
    }

    /// fsyncs every segment; used on shutdown and by the interval flusher.
    pub fn flush(&self) -> std::io::Result<()> {
        let state = self.state();
        state.log.sync_all()?;
        let end = state.log.next_offset();
        self.durable_offset.fetch_max(end, Ordering::AcqRel);
        self.high_watermark.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Whether anything was appended since the last flush.
    pub fn is_dirty(&self) -> bool {
        self.durable_offset.load(Ordering::Acquire) < self.log_end.load(Ordering::Acquire)
    }

    /// Removes the partition's directory.
    pub fn delete_files(&self) -> std::io::Result<()> {
        let state = self.state();
        let dir = state.log.dir().to_path_buf();
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

const SNAPSHOTS_KEPT: usize = 3;

/// Writes `<base>.snapshot`, the producer state as of `base`, and keeps the newest few.
/// Best effort: a missing or damaged snapshot only means a longer replay at start-up.
fn write_snapshot(dir: &Path, base: i64, producers: &ProducerStates) {
    let path = dir.join(crate::log::segment::file_name(base, ".snapshot"));
    let written = std::fs::write(&path, producers.to_snapshot());
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "writing a producer snapshot failed");
        return;
    }
    let mut all = snapshot_offsets(dir);
    all.sort_unstable();
    let excess = all.len().saturating_sub(SNAPSHOTS_KEPT);
    for old in &all[..excess] {
        let _ = std::fs::remove_file(dir.join(crate::log::segment::file_name(*old, ".snapshot")));
    }
}

fn snapshot_offsets(dir: &Path) -> Vec<i64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".snapshot")?.parse().ok()
        })
        .collect()
}

/// The newest whole snapshot at or below `limit` (offsets past the recovery point may be
/// cut by recovery, so a snapshot there could describe batches that no longer exist).
fn latest_snapshot(dir: &Path, limit: i64) -> Option<(i64, ProducerStates)> {
    let mut offsets = snapshot_offsets(dir);
    offsets.sort_unstable_by(|a, b| b.cmp(a));
    offsets.into_iter().filter(|o| *o <= limit).find_map(|o| {
        let bytes = std::fs::read(dir.join(crate::log::segment::file_name(o, ".snapshot"))).ok()?;
        ProducerStates::from_snapshot(&bytes).map(|s| (o, s))
    })
}

/// Every aborted transaction in the local segments' `.txnindex` files.
fn local_txn_index(dir: &Path) -> Vec<crate::log::txn_index::AbortedTxn> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut all: Vec<_> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".txnindex"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .flat_map(|b| crate::log::txn_index::parse(&b))
        .collect();
    all.sort_by_key(|a| a.last_offset);
    all
}

fn read_exact(file: &File, pos: u64, len: usize) -> Result<Vec<u8>, ResponseError> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos).map_err(|e| {
        tracing::error!(error = %e, "read failed");
        ResponseError::KafkaStorageError
    })?;
    Ok(buf)
}
