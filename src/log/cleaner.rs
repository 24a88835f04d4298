//! Log compaction, as Kafka's log cleaner does it: the closed segments of a partition below
//! its first uncleanable offset are rewritten keeping the last record of every key, offsets
//! unchanged (a rewritten batch keeps its base offset and last offset delta, so gaps appear),
//! tombstones and transaction markers removed once their segment is older than
//! `delete.retention.ms`, records of aborted transactions removed, and the last batch of every
//! live idempotent producer kept (emptied if need be) so that its sequence survives.
//!
//! # Passes
//! 1. The offset map: key → offset of its last record, over the dirty part of the log (from
//!    the cleaner's checkpoint to the first uncleanable offset), skipping aborted records.
//! 2. The log from its start to the end of the map is cleaned in groups of consecutive
//!    segments whose sizes add up to at most `segment.bytes` (Kafka's `groupSegmentsBySize`),
//!    each group becoming one segment named by the group's first base offset.
//!
//! # Files and crash safety
//! A group's output is written as `<base>.log.cleaned` with `.index.cleaned`,
//! `.timeindex.cleaned` and `.txnindex.cleaned`, fsynced, then renamed to `.swap`; the
//! directory is fsynced, and `<base>.replaces.cleaned` (the old segments' base offsets) is
//! renamed to `<base>.replaces.swap`: that rename is the commit point. The swap itself
//! (`finish_swap`, under the partition lock at run time) renames the `.swap` files over the
//! group's first segment, the `.log` last, deletes the other old segments, and finally the
//! `.replaces.swap` file. `recover` at start-up rolls a committed swap forward (or back, if
//! an old segment has meanwhile been deleted by retention and the new `.log` is not yet in
//! place) and deletes every uncommitted `.cleaned` or `.swap` file: a kill -9 at any point
//! leaves either the old segments or the new one, never both, never neither.
//!
//! The cleaner's progress is `cleaner-offset-checkpoint` in the partition directory (the
//! first dirty offset), replaced atomically; losing it only makes the next pass redo work.

use super::record_batch::{self, RecordBatch, LOG_OVERHEAD};
use super::segment::{self, LogSegment};
use super::txn_index::{self, AbortedTxn};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const CHECKPOINT: &str = "cleaner-offset-checkpoint";

mod swap;
use swap::{commit, file_with, remove_if_exists, sync_dir, CLEANED, REPLACES, SWAP};
pub use swap::{finish_swap, old_segments_present, recover, roll_back};

/// Decodes and re-encodes the records section of compressed batches, so that the cleaner can
/// filter their records and write them back in their own codec.
pub trait BatchCodec: Send + Sync {
    fn decompress(&self, compression: i16, data: &[u8]) -> io::Result<Vec<u8>>;
    fn compress(&self, compression: i16, data: &[u8]) -> io::Result<Vec<u8>>;
}

/// Every codec Kafka has (`super::codec`): batches are rewritten in the codec they came in.
pub struct KafkaCodecs;

impl BatchCodec for KafkaCodecs {
    fn decompress(&self, compression: i16, data: &[u8]) -> io::Result<Vec<u8>> {
        let c = super::codec::Compression::from_id(compression).map_err(codec_error)?;
        super::codec::decompress(c, data, super::codec::DEFAULT_DECOMPRESSED_LIMIT)
            .map_err(codec_error)
    }
    fn compress(&self, compression: i16, data: &[u8]) -> io::Result<Vec<u8>> {
        let c = super::codec::Compression::from_id(compression).map_err(codec_error)?;
        super::codec::compress(c, data).map_err(codec_error)
    }
}

fn codec_error(e: super::codec::CodecError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Handles uncompressed batches only; a compressed batch stops the pass (the log is left as
/// it was).
pub struct Uncompressed;

impl BatchCodec for Uncompressed {
    fn decompress(&self, compression: i16, data: &[u8]) -> io::Result<Vec<u8>> {
        match compression {
            0 => Ok(data.to_vec()),
            c => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("compression codec {c} is not available to the cleaner"),
            )),
        }
    }
    fn compress(&self, compression: i16, data: &[u8]) -> io::Result<Vec<u8>> {
        self.decompress(compression, data)
    }
}

/// Limits the cleaner's reads and writes to `log.cleaner.io.max.bytes.per.second`.
pub struct Throttle {
    bytes_per_sec: f64,
    window_start: Instant,
    window_bytes: f64,
}

impl Throttle {
    pub fn new(bytes_per_sec: f64) -> Self {
        Self {
            bytes_per_sec,
            window_start: Instant::now(),
            window_bytes: 0.0,
        }
    }

    /// Accounts for `n` bytes of I/O, sleeping (this runs on a blocking thread) when the
    /// window is ahead of the rate.
    pub fn consume(&mut self, n: usize) {
        if !(self.bytes_per_sec.is_finite() && self.bytes_per_sec > 0.0) {
            return;
        }
        self.window_bytes += n as f64;
        let elapsed = self.window_start.elapsed().as_secs_f64();
        let due = self.window_bytes / self.bytes_per_sec;
        if due > elapsed {
            std::thread::sleep(Duration::from_secs_f64((due - elapsed).min(10.0)));
        }
        if self.window_start.elapsed() > Duration::from_secs(1) {
            self.window_start = Instant::now();
            self.window_bytes = 0.0;
        }
    }
}

/// A closed segment as the cleaner sees it.
#[derive(Clone, Debug)]
pub struct SegmentInfo {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    /// Last modification of the `.log`, in ms since the epoch: tombstones and markers of a
    /// segment older than `delete.retention.ms` go.
    pub modified_ms: i64,
}

impl SegmentInfo {
    pub fn of(c: &super::ClosedSegment) -> Self {
        Self {
            base_offset: c.base_offset,
            next_offset: c.next_offset,
            size: c.size,
            max_timestamp: c.max_timestamp,
            modified_ms: modified_ms(&c.paths[0]),
        }
    }
}

/// What a producer last wrote, from its live state: its last batch is kept.
#[derive(Clone, Copy, Debug)]
pub struct LastRecord {
    /// Last offset of its last data batch, if it wrote one.
    pub last_data_offset: Option<i64>,
    pub epoch: i16,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub delete_retention_ms: i64,
    pub segment_bytes: u64,
    pub index_interval: u64,
    /// Bytes of keys the offset map may hold before a pass stops at a segment boundary.
    pub dedupe_buffer_bytes: usize,
}

/// The result of a pass, for logs and the benchmark.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub groups: usize,
    pub records_removed: u64,
    /// The earliest time at which a kept tombstone or marker becomes removable.
    pub next_delete_due_ms: Option<i64>,
}

/// Key → offset of its last record.
#[derive(Default)]
pub struct OffsetMap {
    map: HashMap<Vec<u8>, i64>,
    key_bytes: usize,
}

impl OffsetMap {
    pub fn put(&mut self, key: &[u8], offset: i64) {
        match self.map.get_mut(key) {
            Some(o) => *o = (*o).max(offset),
            None => {
                self.key_bytes += key.len() + 48;
                self.map.insert(key.to_vec(), offset);
            }
        }
    }
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(key).copied()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Kafka's `CleanedTransactionMetadata`: walks the aborted transactions alongside the log to
/// say which data batches are aborted and which markers may go.
struct TxnTracker {
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Producer → (its aborted transaction, whether a batch of it was seen in this pass).
    ongoing_aborted: HashMap<i64, (AbortedTxn, bool)>,
    ongoing_committed: HashSet<i64>,
    /// Aborted transactions whose marker stays: the cleaned segment's `.txnindex`.
    kept_index: Vec<AbortedTxn>,
}

impl TxnTracker {
    fn new(mut aborted: Vec<AbortedTxn>) -> Self {
        aborted.sort_by_key(|a| (a.first_offset, a.last_offset));
        Self {
            pending: aborted.into(),
            ongoing_aborted: HashMap::new(),
            ongoing_committed: HashSet::new(),
            kept_index: Vec::new(),
        }
    }

    fn consume_up_to(&mut self, offset: i64) {
        while self
            .pending
            .front()
            .is_some_and(|a| a.first_offset <= offset)
        {
            if let Some(a) = self.pending.pop_front() {
                self.ongoing_aborted
                    .entry(a.producer_id)
                    .or_insert((a, false));
            }
        }
    }

    /// A data batch: whether it belongs to an aborted transaction (and may be discarded).
    fn on_batch(&mut self, b: &RecordBatch<'_>) -> bool {
        self.consume_up_to(b.last_offset());
        if !b.is_transactional() {
            return false;
        }
        match self.ongoing_aborted.get_mut(&b.producer_id()) {
            Some((_, seen)) => {
                *seen = true;
                true
            }
            None => {
                self.ongoing_committed.insert(b.producer_id());
                false
            }
        }
    }

    /// A marker: whether it may be discarded. An abort marker stays while this pass still
    /// removed records of its transaction (the next pass may drop it); a commit marker may
    /// go once no batch of its transaction was seen in this pass.
    fn on_control(&mut self, b: &RecordBatch<'_>) -> bool {
        self.consume_up_to(b.last_offset());
        let pid = b.producer_id();
        match record_batch::marker_type(b) {
            Some(false) => match self.ongoing_aborted.remove(&pid) {
                Some((txn, true)) => {
                    self.kept_index.push(txn);
                    false
                }
                _ => true,
            },
            Some(true) => !self.ongoing_committed.remove(&pid),
            None => false,
        }
    }
}

/// The first dirty offset recorded by the last pass (0 when none was).
pub fn read_checkpoint(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join(CHECKPOINT))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

pub fn write_checkpoint(dir: &Path, offset: i64) -> io::Result<()> {
    crate::checkpoint::write_atomically(&dir.join(CHECKPOINT), offset.to_string().as_bytes())
}

/// Last modification of a file in ms since the epoch (0 when unknown: treated as old).
pub fn modified_ms(path: &Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads a segment's batches in order, each CRC-checked; a batch that does not validate
/// stops the pass (the cleaner never rewrites what it cannot read). Returns the bytes read.
fn for_each_batch(
    dir: &Path,
    seg: &SegmentInfo,
    f: &mut dyn FnMut(RecordBatch<'_>) -> io::Result<()>,
) -> io::Result<u64> {
    let path = dir.join(segment::file_name(seg.base_offset, ".log"));
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut buf = Vec::new();
    let mut pos = 0u64;
    while pos < seg.size {
        let mut head = [0u8; LOG_OVERHEAD];
        reader.read_exact(&mut head)?;
        let len = record_batch::batch_size(&head).unwrap_or(0);
        if len < record_batch::HEADER_SIZE as i64 || pos + len as u64 > seg.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad batch length in a closed segment",
            ));
        }
        buf.clear();
        buf.extend_from_slice(&head);
        buf.resize(len as usize, 0);
        reader.read_exact(&mut buf[LOG_OVERHEAD..])?;
        let batch = RecordBatch::validate(&buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        f(batch)?;
        pos += len as u64;
    }
    Ok(pos)
}

fn records_of(codec: &dyn BatchCodec, b: &RecordBatch<'_>) -> io::Result<Vec<u8>> {
    codec.decompress(b.compression(), b.records())
}

fn bad_records() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "records do not parse")
}

/// Pass 1: the offset map over `segments` (the dirty ones, oldest first) from `first_dirty`.
/// Returns the map and the offset it reaches (a segment boundary: the map stops early when
/// it outgrows `dedupe_buffer_bytes`).
#[allow(clippy::too_many_arguments)] // the pass's inputs, each used once
pub fn build_offset_map(
    dir: &Path,
    segments: &[SegmentInfo],
    first_dirty: i64,
    aborted: &[AbortedTxn],
    settings: &Settings,
    codec: &dyn BatchCodec,
    throttle: &mut Throttle,
    stats: &mut Stats,
) -> io::Result<(OffsetMap, i64)> {
    let mut map = OffsetMap::default();
    let mut txns = TxnTracker::new(aborted.to_vec());
    let mut end = first_dirty;
    for seg in segments {
        if !map.is_empty() && map.key_bytes >= settings.dedupe_buffer_bytes {
            break;
        }
        stats.bytes_read += for_each_batch(dir, seg, &mut |b| {
            throttle.consume(b.size());
            if b.is_control() {
                txns.on_control(&b);
                return Ok(());
            }
            if txns.on_batch(&b) {
                return Ok(());
            }
            let data = records_of(codec, &b)?;
            let records =
                record_batch::parse_records(&data, b.record_count()).ok_or_else(bad_records)?;
            for r in records {
                let offset = b.base_offset() + r.offset_delta;
                if let Some(key) = r.key {
                    if offset >= first_dirty {
                        map.put(key, offset);
                    }
                }
            }
            Ok(())
        })?;
        end = seg.next_offset;
    }
    Ok((map, end))
}

/// Kafka's `groupSegmentsBySize`: consecutive segments whose sizes add up to at most
/// `max_bytes` and whose offsets fit one segment's 32-bit relative offsets.
pub fn group_by_size(segments: &[SegmentInfo], max_bytes: u64) -> Vec<Vec<SegmentInfo>> {
    let mut groups: Vec<Vec<SegmentInfo>> = Vec::new();
    let mut size = 0u64;
    for seg in segments {
        if let Some(group) = groups.last_mut() {
            let first = group[0].base_offset;
            if size + seg.size <= max_bytes && seg.next_offset - 1 - first <= i32::MAX as i64 {
                size += seg.size;
                group.push(seg.clone());
                continue;
            }
        }
        size = seg.size;
        groups.push(vec![seg.clone()]);
    }
    groups
}

/// One group's cleaned segment, committed (its `.replaces.swap` written) and ready to swap in.
pub struct CleanedGroup {
    /// The new segment, its files named with `.swap`.
    pub segment: LogSegment,
    /// The base offsets of the segments it replaces (the first equals its own).
    pub replaces: Vec<i64>,
}

/// The retention decision for a batch, as Kafka's `BatchRetention`.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Keep {
    /// Drop it whole.
    Delete,
    /// Drop it if no record stays.
    DeleteEmpty,
    /// Keep it, if need be as an empty batch (a producer's last batch).
    RetainEmpty,
}

/// Everything a pass needs besides the files.
pub struct Pass<'a> {
    pub dir: &'a Path,
    pub settings: &'a Settings,
    pub codec: &'a dyn BatchCodec,
    pub now_ms: i64,
    pub producers: &'a HashMap<i64, LastRecord>,
    pub map: &'a OffsetMap,
}

/// Pass 2 for a list of groups: writes each group's cleaned segment and commits it; `install`
/// swaps it into the log (it returns false when the log changed meanwhile, and the group is
/// rolled back). The transaction state runs across all groups, as in Kafka.
pub fn clean_groups(
    pass: &Pass<'_>,
    groups: &[Vec<SegmentInfo>],
    aborted: &[AbortedTxn],
    throttle: &mut Throttle,
    stats: &mut Stats,
    install: &mut dyn FnMut(CleanedGroup) -> io::Result<bool>,
) -> io::Result<()> {
    let mut txns = TxnTracker::new(aborted.to_vec());
    for group in groups {
        let base = group[0].base_offset;
        let cleaned = match clean_group(pass, group, &mut txns, throttle, stats) {
            Ok(Some(cleaned)) => cleaned,
            Ok(None) => continue,
            Err(e) => {
                // A write that failed (a full disk) leaves no partial cleaned segment
                // holding space until the next pass; the old segments are untouched.
                let _ = roll_back(pass.dir, base);
                return Err(e);
            }
        };
        if install(cleaned)? {
            stats.groups += 1;
            // The swap is done: make the renames durable before the commit file goes.
            sync_dir(pass.dir)?;
            remove_if_exists(&file_with(pass.dir, base, REPLACES, SWAP))?;
        } else {
            roll_back(pass.dir, base)?;
        }
    }
    Ok(())
}

fn clean_group(
    pass: &Pass<'_>,
    group: &[SegmentInfo],
    txns: &mut TxnTracker,
    throttle: &mut Throttle,
    stats: &mut Stats,
) -> io::Result<Option<CleanedGroup>> {
    let dir = pass.dir;
    let base = group[0].base_offset;
    let group_end = group.last().map_or(base, |s| s.next_offset);
    // Leftovers of an interrupted earlier attempt at this group.
    roll_back(dir, base)?;
    let mut out = LogSegment::create_with_suffix(dir, base, pass.settings.index_interval, CLEANED)?;
    txns.kept_index.clear();
    let horizon = pass.now_ms - pass.settings.delete_retention_ms;
    let mut changed = group.len() > 1;
    for seg in group {
        let retain_deletes = seg.modified_ms > horizon;
        let mut kept_delete = false;
        let mut local = Stats::default();
        let read = for_each_batch(dir, seg, &mut |b| {
            throttle.consume(b.size());
            let (keep, discard_records) = if b.is_control() {
                let can_discard = txns.on_control(&b);
                let discard = can_discard && !retain_deletes;
                kept_delete |= can_discard && retain_deletes;
                (batch_keep(pass, &b, discard), discard)
            } else {
                let discard = txns.on_batch(&b);
                (batch_keep(pass, &b, discard), discard)
            };
            let bytes = filter_batch(
                pass,
                &b,
                keep,
                discard_records,
                retain_deletes,
                &mut local,
                &mut kept_delete,
            )?;
            match bytes {
                Some(bytes) => {
                    changed |= bytes.as_slice() != b.bytes();
                    throttle.consume(bytes.len());
                    local.bytes_written += bytes.len() as u64;
                    out.append(&bytes)?;
                }
                None => changed = true,
            }
            Ok(())
        })?;
        stats.bytes_read += read;
        stats.bytes_written += local.bytes_written;
        stats.records_removed += local.records_removed;
        if kept_delete {
            let due = seg.modified_ms + pass.settings.delete_retention_ms + 1;
            stats.next_delete_due_ms = Some(stats.next_delete_due_ms.map_or(due, |d| d.min(due)));
        }
    }
    // The segment keeps the whole offset range of the group, so recovery and the next
    // segment's base line up: an empty batch marks the end when the last records went.
    if !changed {
        // One segment that would come out byte for byte the same: nothing to swap.
        drop(out);
        roll_back(dir, base)?;
        return Ok(None);
    }
    if out.next_offset() < group_end {
        let start = if out.size() == 0 {
            base
        } else {
            out.next_offset()
        };
        out.append(&record_batch::empty_batch(start, group_end - 1, None))?;
    }
    out.seal_time_index()?;
    out.sync()?;
    let modified = group.iter().map(|s| s.modified_ms).max().unwrap_or(0);
    let log = out.file()?;
    log.set_modified(SystemTime::UNIX_EPOCH + Duration::from_millis(modified.max(0) as u64))?;
    // Always written, possibly empty: every data file of a swap has its `.swap`.
    let mut index = Vec::with_capacity(txns.kept_index.len() * txn_index::ENTRY);
    for a in &txns.kept_index {
        index.extend_from_slice(&0i16.to_be_bytes());
        for v in [
            a.producer_id,
            a.first_offset,
            a.last_offset,
            a.last_stable_offset,
        ] {
            index.extend_from_slice(&v.to_be_bytes());
        }
    }
    let replaces: Vec<i64> = group.iter().map(|s| s.base_offset).collect();
    commit(dir, base, &index, &replaces)?;
    out.set_suffix(SWAP);
    Ok(Some(CleanedGroup {
        segment: out,
        replaces,
    }))
}

fn batch_keep(pass: &Pass<'_>, b: &RecordBatch<'_>, discard: bool) -> Keep {
    let last_of_producer = b.producer_id() >= 0
        && pass
            .producers
            .get(&b.producer_id())
            .is_some_and(|l| match l.last_data_offset {
                Some(o) => o == b.last_offset(),
                None => b.is_control() && b.producer_epoch() == l.epoch,
            });
    if last_of_producer {
        Keep::RetainEmpty
    } else if discard {
        Keep::Delete
    } else {
        Keep::DeleteEmpty
    }
}

/// The bytes to write for a batch: the original, a rebuilt batch of the records kept, an
/// empty batch, or nothing.
fn filter_batch(
    pass: &Pass<'_>,
    b: &RecordBatch<'_>,
    keep: Keep,
    discard_records: bool,
    retain_deletes: bool,
    stats: &mut Stats,
    kept_delete: &mut bool,
) -> io::Result<Option<Vec<u8>>> {
    let empty = || {
        (keep == Keep::RetainEmpty)
            .then(|| record_batch::empty_batch(b.base_offset(), b.last_offset(), Some(b)))
    };
    if keep == Keep::Delete {
        stats.records_removed += b.record_count().max(0) as u64;
        return Ok(None);
    }
    if discard_records {
        stats.records_removed += b.record_count().max(0) as u64;
        return Ok(empty());
    }
    if b.is_control() {
        return Ok(Some(b.bytes().to_vec()));
    }
    let data = records_of(pass.codec, b)?;
    let records = record_batch::parse_records(&data, b.record_count()).ok_or_else(bad_records)?;
    let mut kept = Vec::with_capacity(data.len());
    let mut count = 0i32;
    let mut max_ts = -1i64;
    for r in &records {
        let offset = b.base_offset() + r.offset_delta;
        let retain = match r.key {
            // Kafka's cleaner drops records without a key.
            None => false,
            Some(key) => {
                let latest = pass.map.get(key).is_none_or(|o| offset >= o);
                let tombstone = r.value.is_none();
                if latest && tombstone && retain_deletes {
                    *kept_delete = true;
                }
                latest && (!tombstone || retain_deletes)
            }
        };
        if retain {
            kept.extend_from_slice(r.raw);
            count += 1;
            max_ts = max_ts.max(b.base_timestamp() + r.timestamp_delta);
        }
    }
    stats.records_removed += (records.len() as i32 - count).max(0) as u64;
    if count as usize == records.len() {
        return Ok(Some(b.bytes().to_vec()));
    }
    if count == 0 {
        return Ok(empty());
    }
    if b.is_log_append_time() {
        max_ts = b.max_timestamp();
    }
    let section = if b.compression() == 0 {
        kept
    } else {
        pass.codec.compress(b.compression(), &kept)?
    };
    Ok(Some(record_batch::rebuild_batch(
        b, &section, count, max_ts,
    )))
}

/// Aborted transactions recorded in the `.txnindex` files of the given segments.
pub fn aborted_in(dir: &Path, segments: &[SegmentInfo]) -> Vec<AbortedTxn> {
    let mut all = Vec::new();
    for s in segments {
        if let Ok(body) = std::fs::read(file_with(dir, s.base_offset, ".txnindex", "")) {
            all.extend(txn_index::parse(&body));
        }
    }
    all
}

#[cfg(test)]
mod tests;
