//! The partition log in Kafka's on-disk format: a directory of segments named by base offset.
//!
//! Offsets: `log_start_offset` (first offset still readable) ≤ segment base offsets <
//! `next_offset` (the log end offset, where the next batch goes). A single broker has no
//! followers, so the high watermark is the log end offset.
//!
//! Files, per partition directory: the segments (see `segment`), `recovery-point` (offsets
//! below it are known to be on disk; replaced atomically), `log-start-offset` (Kafka's
//! log-start-offset checkpoint: the first offset clients may read, moved by retention and
//! DeleteRecords; replaced atomically, never moved back) and the `.txnindex` of aborted
//! transactions. On a crash, everything past the recovery point is CRC-checked at start-up and
//! a torn or corrupt tail is cut at the last whole batch; indexes that do not match their log
//! are rebuilt.

pub mod cleaner;
pub mod codec;
pub mod crc;
pub mod file_cache;
pub mod index;
pub mod record_batch;
pub mod segment;
pub mod txn_index;

mod read;
pub(crate) use read::HeaderWalk;
pub use read::{FileRange, ReadSlice, WholeBatches};

use record_batch::RecordBatch;
use segment::LogSegment;
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The topic settings the log itself acts on.
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub index_interval_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
        }
    }
}

/// A closed segment, as the archive sees it.
#[derive(Clone, Debug)]
pub struct ClosedSegment {
    pub base_offset: i64,
    pub next_offset: i64,
    pub size: u64,
    pub max_timestamp: i64,
    /// `.log`, `.index`, `.timeindex`.
    pub paths: [PathBuf; 3],
}

/// Segment files that still have to reach the disk: a segment that stopped taking appends,
/// or (`Log::sync_plan`) the whole log. Synced by path, so that the fsync runs without the
/// partition lock.
pub struct Rolled {
    files: Vec<PathBuf>,
    dir: PathBuf,
    /// Every offset below this is in the rolled segment or before it.
    pub end_offset: i64,
}

impl Rolled {
    /// fsyncs the segment's three files, then records that the log is durable up to its end.
    /// A segment deleted meanwhile (its topic was deleted) has nothing left to sync.
    pub fn sync(&self) -> io::Result<()> {
        for path in &self.files {
            match File::open(path) {
                Ok(f) => f.sync_all()?,
                // A `.txnindex` exists only once a transaction aborted in the segment.
                Err(e)
                    if e.kind() == io::ErrorKind::NotFound
                        && path.extension() == Some("txnindex".as_ref()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.record(true)
    }

    /// Records that the log is durable up to its end (fsynced with `sync`; without, the
    /// caller syncs the file system afterwards). A deleted partition has nothing to record.
    pub fn record(&self, sync: bool) -> io::Result<()> {
        let written = if sync {
            write_recovery_point(&self.dir, self.end_offset)
        } else if read_recovery_point(&self.dir) < self.end_offset {
            crate::checkpoint::write_replacing(
                &self.dir.join(RECOVERY_POINT),
                self.end_offset.to_string().as_bytes(),
                false,
            )
        } else {
            Ok(())
        };
        match written {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                // The segment is durable all the same; a recovery point left behind (a
                // full disk) only makes the next start check more of the log.
                tracing::warn!(dir = %self.dir.display(), error = %e, "moving the recovery point failed");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}

const RECOVERY_POINT: &str = "recovery-point";

/// The offset up to which the log is known to be on disk; 0 when never recorded.
pub fn read_recovery_point(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join(RECOVERY_POINT))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Moves the recovery point forward (never back), atomically.
pub fn write_recovery_point(dir: &Path, offset: i64) -> io::Result<()> {
    if read_recovery_point(dir) >= offset {
        return Ok(());
    }
    crate::checkpoint::write_atomically(&dir.join(RECOVERY_POINT), offset.to_string().as_bytes())
}

const LOG_START_OFFSET: &str = "log-start-offset";

/// The checkpointed log start offset; `None` when never moved.
pub fn read_log_start_offset(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(LOG_START_OFFSET))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|o: &i64| *o >= 0)
}

/// Records the log start offset, atomically and durably (file and directory fsynced):
/// once a client was told that records are deleted, a restart must not bring them back.
/// Callers serialise the writes and only ever pass a higher offset.
pub fn write_log_start_offset(dir: &Path, offset: i64) -> io::Result<()> {
    crate::checkpoint::write_atomically(&dir.join(LOG_START_OFFSET), offset.to_string().as_bytes())
}

/// A segment's `.log`, `.index`, `.timeindex` and `.txnindex`.
fn segment_files(paths: &[PathBuf; 3]) -> Vec<PathBuf> {
    let mut files = paths.to_vec();
    files.push(paths[0].with_extension("txnindex"));
    files
}

pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Boxed: a B-tree node holds eleven values inline, so unboxed segments would cost
    /// kilobytes per partition even with one segment each.
    segments: BTreeMap<i64, Box<LogSegment>>,
    log_start_offset: i64,
    next_offset: i64,
}

/// What opening a log found, for the start-up log line.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub segments: usize,
    pub truncated_bytes: u64,
    pub rebuilt_indexes: usize,
}

impl Log {
    /// Opens (or creates) the log in `dir`. Every segment not wholly below the recovery point
    /// (the offset up to which the log is known to be on disk) is checked batch by batch: a
    /// torn or corrupt tail is truncated at the last valid batch, the segments after it are
    /// removed, and indexes are rebuilt. Segments below the recovery point only have their
    /// indexes checked.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        on_batch: &mut dyn FnMut(&RecordBatch<'_>),
    ) -> io::Result<(Self, OpenReport)> {
        Self::open_at(dir, config, 0, on_batch)
    }

    /// As `open`; an empty log starts at `start_offset` (where a restored archive ends).
    pub fn open_at(
        dir: &Path,
        config: LogConfig,
        start_offset: i64,
        on_batch: &mut dyn FnMut(&RecordBatch<'_>),
    ) -> io::Result<(Self, OpenReport)> {
        std::fs::create_dir_all(dir)?;
        // An interrupted compaction is finished or undone before the segments are read.
        cleaner::recover(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = segment::parse_base_offset(&name, ".log") {
                bases.push(base);
            } else if name.ends_with(".index") || name.ends_with(".timeindex") {
                let suffix = if name.ends_with(".index") {
                    ".index"
                } else {
                    ".timeindex"
                };
                if let Some(base) = segment::parse_base_offset(&name, suffix) {
                    if !dir.join(segment::file_name(base, ".log")).exists() {
                        std::fs::remove_file(entry.path())?;
                    }
                }
            }
        }
        bases.sort_unstable();
        let recovery_point = read_recovery_point(dir);
        let mut report = OpenReport::default();
        let mut segments = BTreeMap::new();
        let mut cut = false;
        for (i, &base) in bases.iter().enumerate() {
            let next = bases.get(i + 1).copied();
            if cut {
                // Everything after a truncated segment is past the end of the valid log.
                LogSegment::open(
                    dir,
                    base,
                    config.index_interval_bytes,
                    false,
                    next,
                    &mut |_| {},
                )?
                .0
                .delete()?;
                continue;
            }
            let full = next.is_none_or(|n| n > recovery_point);
            let (mut seg, rec) =
                LogSegment::open(dir, base, config.index_interval_bytes, full, next, on_batch)?;
            report.truncated_bytes += rec.truncated_bytes;
            report.rebuilt_indexes += rec.rebuilt_index as usize;
            cut = rec.truncated_bytes > 0 || next.is_some_and(|n| seg.next_offset() < n);
            if rec.rebuilt_index && next.is_some() && !cut {
                // A closed segment's rebuilt time index gets its max timestamp entry back.
                seg.seal_time_index()?;
            }
            segments.insert(base, Box::new(seg));
        }
        if segments.is_empty() {
            segments.insert(
                start_offset,
                Box::new(LogSegment::create(
                    dir,
                    start_offset,
                    config.index_interval_bytes,
                )?),
            );
        }
        report.segments = segments.len();
        let log_start_offset = segments.keys().next().copied().unwrap_or(0);
        let next_offset = segments
            .values()
            .next_back()
            .map(|s| s.next_offset())
            .unwrap_or(0);
        Ok((
            Self {
                dir: dir.to_path_buf(),
                config,
                segments,
                log_start_offset,
                next_offset,
            },
            report,
        ))
    }

    /// A log with no segment, standing in until the real one is opened: appends to it fail
    /// and it reads as empty.
    pub fn unopened(dir: &Path, config: LogConfig) -> Self {
        Self {
            dir: dir.to_path_buf(),
            config,
            segments: BTreeMap::new(),
            log_start_offset: 0,
            next_offset: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    /// New roll settings (a topic config changed); they apply from the next append on.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&mut self) -> io::Result<&mut LogSegment> {
        self.segments
            .values_mut()
            .next_back()
            .map(|s| &mut **s)
            .ok_or_else(|| io::Error::other("log has no segment"))
    }

    /// Appends an aborted transaction to the active segment's `.txnindex`, in Kafka's
    /// layout: version i16 (0), producer id, first offset, last offset, last stable offset.
    /// Returns the file's path: the caller fsyncs it once the partition lock is released.
    pub fn append_txn_index(
        &self,
        producer_id: i64,
        first: i64,
        last: i64,
        lso: i64,
    ) -> io::Result<PathBuf> {
        let entry = txn_index::AbortedTxn {
            producer_id,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        };
        self.write_txn_entry(&entry).map(|(path, _)| path)
    }

    /// Appends `a` to the active segment's `.txnindex`; returns the file and its length
    /// before, so that the entry can be taken back. A failed write is cut back here, or
    /// the next entry would start inside the torn one.
    fn write_txn_entry(&self, a: &txn_index::AbortedTxn) -> io::Result<(PathBuf, u64)> {
        use std::io::Write;
        let base = self.active_base()?;
        let entry = txn_index::encode(a);
        let path = self.dir.join(segment::file_name(base, ".txnindex"));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let len = f.metadata()?.len();
        // A torn entry a crash left is dropped (reads ignore it) so this one lines up.
        let before = len - len % txn_index::ENTRY as u64;
        if before != len {
            f.set_len(before)?;
        }
        if let Err(e) = f.write_all(&entry) {
            let _ = f.set_len(before);
            return Err(e);
        }
        Ok((path, before))
    }

    /// Adds aborted transactions to the `.txnindex` of the segments holding their markers,
    /// each file replaced whole with its entries in marker order: start-up restoring
    /// entries that a kill between a marker and its entry kept from being written.
    pub fn restore_txn_index(&self, missing: &[txn_index::AbortedTxn]) -> io::Result<()> {
        let mut by_segment: BTreeMap<i64, Vec<txn_index::AbortedTxn>> = BTreeMap::new();
        for a in missing {
            if let Some((&base, _)) = self.segments.range(..=a.last_offset).next_back() {
                by_segment.entry(base).or_default().push(*a);
            }
        }
        for (base, mut entries) in by_segment {
            let path = self.dir.join(segment::file_name(base, ".txnindex"));
            match std::fs::read(&path) {
                Ok(body) => entries.extend(txn_index::parse(&body)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            entries.sort_by_key(|a| a.last_offset);
            let body: Vec<u8> = entries.iter().flat_map(txn_index::encode).collect();
            crate::checkpoint::write_replacing(&path, &body, false)?;
        }
        Ok(())
    }

    fn active_base(&self) -> io::Result<i64> {
        self.segments
            .keys()
            .next_back()
            .copied()
            .ok_or_else(|| io::Error::other("log has no segment"))
    }

    /// The active segment's file and the offset its data reaches, for a group-commit fsync.
    pub fn active_file(&self) -> io::Result<Option<(Arc<File>, i64)>> {
        match self.segments.values().next_back() {
            Some(s) => Ok(Some((s.file()?, self.next_offset))),
            None => Ok(None),
        }
    }

    /// Appends a validated batch, writing its base offset; returns the segment rolled away
    /// from, if this append rolled, so the caller can make it durable outside the lock.
    /// A failed append leaves the log as it was.
    pub fn append(&mut self, batch: &mut [u8]) -> io::Result<Option<Rolled>> {
        let (head, rest) = batch.split_at_mut(record_batch::HEADER_SIZE.min(batch.len()));
        self.append_recording_abort(head, rest, None)
            .map(|(rolled, _)| rolled)
    }

    /// As `append`; with `aborted` (the batch is an abort marker) the transaction's
    /// `.txnindex` entry is written first, into the segment that takes the marker. When
    /// either write fails, neither stays. Also returns the `.txnindex` written, which the
    /// caller fsyncs. The batch comes in two parts: `head`, its header, which takes the
    /// batch's offset, and `rest`, the records, which are written as they are.
    pub fn append_recording_abort(
        &mut self,
        head: &mut [u8],
        rest: &[u8],
        aborted: Option<&txn_index::AbortedTxn>,
    ) -> io::Result<(Option<Rolled>, Option<PathBuf>)> {
        if head.len() < record_batch::HEADER_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "batch shorter than its header",
            ));
        }
        let offset = self.next_offset;
        record_batch::set_base_offset(head, offset);
        record_batch::set_partition_leader_epoch(head, 0);
        let mut rolled = None;
        let size = (head.len() + rest.len()) as u64;
        let config = self.config.clone();
        let active = self.active()?;
        let too_big = active.size() > 0 && active.size() + size > config.segment_bytes;
        let too_old = active.size() > 0 && active.age() >= Duration::from_millis(config.segment_ms);
        // Relative offsets in the index are 32-bit.
        let too_far = offset - active.base_offset() > (i32::MAX as i64 - 1);
        if too_big || too_old || too_far {
            rolled = Some(self.roll()?);
        }
        let txn_entry = match aborted.map(|a| self.write_txn_entry(a)).transpose() {
            Ok(written) => written,
            Err(e) => {
                if rolled.is_some() {
                    self.unroll(offset);
                }
                return Err(e);
            }
        };
        let active = self.active()?;
        if let Err(e) = active.append_parts(head, rest) {
            if let Some((path, before)) = &txn_entry {
                let untaken = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(*before));
                if let Err(e) = untaken {
                    // Recovery does not check a .txnindex against its log: say so loudly.
                    tracing::error!(path = %path.display(), error = %e, "an abort's .txnindex entry stays without its marker");
                }
            }
            // A segment rolled for this batch alone goes again, so the log is as before the
            // append (and the rolled one, left active, is not handed out unsynced).
            if rolled.is_some() {
                self.unroll(offset);
            }
            return Err(e);
        }
        self.next_offset = active.next_offset();
        Ok((rolled, txn_entry.map(|(path, _)| path)))
    }

    /// Removes the empty segment a roll just started at `base`, after the append it was
    /// for failed. Best effort: an empty last segment left behind is a valid log too.
    fn unroll(&mut self, base: i64) {
        if self.segments.len() < 2 || self.active_base().ok() != Some(base) {
            return;
        }
        if let Some(seg) = self.segments.remove(&base) {
            if seg.size() > 0 {
                self.segments.insert(base, seg);
            } else if let Err(e) = seg.delete() {
                tracing::warn!(dir = %self.dir.display(), base, error = %e, "removing an unused new segment failed");
            }
        }
    }

    /// Starts a new segment at the log end offset. The old one is not fsynced here (that
    /// would stall appends behind a flush of up to `segment.bytes`); the caller syncs it and
    /// then advances the recovery point.
    pub fn roll(&mut self) -> io::Result<Rolled> {
        let base = self.next_offset;
        let interval = self.config.index_interval_bytes;
        let old = self.active()?;
        old.seal_time_index()?;
        let rolled = Rolled {
            files: segment_files(&old.paths()),
            dir: self.dir.clone(),
            end_offset: base,
        };
        if !self.segments.contains_key(&base) {
            let seg = LogSegment::create(&self.dir, base, interval).inspect_err(|_| {
                // Files a failed creation left (a full disk) would be taken for a segment
                // at the next start.
                for ext in [".log", ".index", ".timeindex"] {
                    let _ = std::fs::remove_file(self.dir.join(segment::file_name(base, ext)));
                }
            })?;
            self.segments.insert(base, Box::new(seg));
        }
        Ok(rolled)
    }

    /// Locates the batch holding `offset`. `Ok(None)` when `offset` is the log end.
    pub fn read(&self, offset: i64) -> io::Result<Option<ReadSlice>> {
        for (_, seg) in self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .chain(self.segments.range((
                std::ops::Bound::Excluded(offset),
                std::ops::Bound::Unbounded,
            )))
        {
            if let Some(found) = seg.find_position(offset, seg.size())? {
                return Ok(Some(ReadSlice {
                    file: seg.file()?,
                    first: found,
                    end: seg.size(),
                }));
            }
        }
        Ok(None)
    }

    /// First offset whose record timestamp is at or after `timestamp`, with that timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> io::Result<Option<(i64, i64)>> {
        for seg in self.segments.values() {
            if let Some(found) = seg.find_timestamp(timestamp)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// (max timestamp, offset of the first record carrying it) over the whole log, for
    /// ListOffsets' MAX_TIMESTAMP; the earliest segment wins a tie, as in Kafka.
    pub fn max_timestamp(&self) -> io::Result<Option<(i64, i64)>> {
        let mut best: Option<&LogSegment> = None;
        for s in self.segments.values() {
            if s.max_timestamp() >= 0 && best.is_none_or(|b| s.max_timestamp() > b.max_timestamp())
            {
                best = Some(s);
            }
        }
        match best {
            Some(s) => s.find_max_timestamp(),
            None => Ok(None),
        }
    }

    /// Every segment's files and the log end, to fsync without holding the log.
    pub fn sync_plan(&self) -> Rolled {
        Rolled {
            files: self
                .segments
                .values()
                .flat_map(|s| segment_files(&s.paths()))
                .collect(),
            dir: self.dir.clone(),
            end_offset: self.next_offset,
        }
    }

    /// Makes every segment durable and records it.
    pub fn sync_all(&self) -> io::Result<()> {
        for seg in self.segments.values() {
            seg.sync()?;
        }
        write_recovery_point(&self.dir, self.next_offset)
    }

    /// Every segment but the active one, oldest first.
    pub fn closed_segments(&self) -> Vec<ClosedSegment> {
        let n = self.segments.len();
        self.segments
            .values()
            .take(n.saturating_sub(1))
            .map(|s| ClosedSegment {
                base_offset: s.base_offset(),
                next_offset: s.next_offset(),
                size: s.size(),
                max_timestamp: s.max_timestamp(),
                paths: s.paths(),
            })
            .collect()
    }

    /// Bytes held by local segments.
    pub fn size(&self) -> u64 {
        self.segments.values().map(|s| s.size()).sum()
    }

    /// Deletes the oldest segment if it is closed; the log then starts at the next one.
    pub fn delete_oldest_segment(&mut self) -> io::Result<Option<i64>> {
        match self.take_oldest_segment() {
            Some(seg) => {
                seg.delete()?;
                Ok(Some(self.log_start_offset))
            }
            None => Ok(None),
        }
    }

    /// After segments were taken out: the log starts at the first one left.
    fn start_at_first_segment(&mut self) {
        self.log_start_offset = self
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_offset);
    }

    /// Takes the oldest segment out of the log if it is closed, for the caller to delete
    /// once the partition lock is released; the log then starts at the next one.
    pub fn take_oldest_segment(&mut self) -> Option<LogSegment> {
        if self.segments.len() < 2 {
            return None;
        }
        let seg = self.segments.pop_first().map(|(_, seg)| *seg);
        self.start_at_first_segment();
        seg
    }

    /// Takes out of the log every segment wholly below `offset` (its successor starts at or
    /// before it; the active segment always stays, as in Kafka), for the caller to delete
    /// once the partition lock is released. The log then starts at the first segment left.
    pub fn take_segments_below(&mut self, offset: i64) -> Vec<LogSegment> {
        let mut taken = Vec::new();
        loop {
            let mut bases = self.segments.keys();
            let (Some(&first), Some(&second)) = (bases.next(), bases.next()) else {
                break;
            };
            if second > offset {
                break;
            }
            if let Some(seg) = self.segments.remove(&first) {
                taken.push(*seg);
            }
        }
        self.start_at_first_segment();
        taken
    }

    /// Deletes every segment and starts an empty log at `offset` (recovery found the log
    /// ending below its checkpointed start: the records in between were never durable).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> io::Result<()> {
        for (_, seg) in std::mem::take(&mut self.segments) {
            seg.delete()?;
        }
        let seg = LogSegment::create(&self.dir, offset, self.config.index_interval_bytes)?;
        self.segments.insert(offset, Box::new(seg));
        self.log_start_offset = offset;
        self.next_offset = offset;
        write_recovery_point(&self.dir, offset)
    }

    /// Swaps a cleaned segment in for the segments it replaces (the compaction's only step
    /// under the partition lock: renames and deletions, no fsync). Refused (`Ok(false)`) when
    /// the log no longer holds exactly those closed segments, e.g. retention deleted one.
    pub fn replace_segments(&mut self, group: cleaner::CleanedGroup) -> io::Result<bool> {
        let active = self.active_base()?;
        let Some(&base) = group.replaces.first() else {
            return Ok(false);
        };
        let last = group.replaces.last().copied().unwrap_or(base);
        let present: Vec<i64> = self.segments.range(base..=last).map(|(b, _)| *b).collect();
        if present != group.replaces || last >= active {
            return Ok(false);
        }
        cleaner::finish_swap(&self.dir, base, &group.replaces)?;
        for b in &group.replaces {
            // Readers holding the old files keep reading them; the names are the new ones.
            self.segments.remove(b);
        }
        let mut seg = group.segment;
        seg.set_suffix("");
        self.segments.insert(base, Box::new(seg));
        Ok(true)
    }

    /// Segments' (base offset, size) for tests and the start-up report.
    pub fn segment_sizes(&self) -> Vec<(i64, u64)> {
        self.segments
            .values()
            .map(|s| (s.base_offset(), s.size()))
            .collect()
    }
}

#[cfg(test)]
mod tests;
