//! One segment: a `.log` of record batches plus its `.index` and `.timeindex`, all named by
//! the segment's base offset, zero-padded to 20 digits as Kafka names them.
//!
//! Writes the three files (and `.txnindex` through the log). The `.log` is the truth: after a
//! crash its tail is checked and cut by recovery, and the indexes are rebuilt from it.

use super::file_cache::CachedFile;
use super::index::{OffsetIndex, TimeIndex};
use super::record_batch::{self, RecordBatch, HEADER_SIZE, LOG_OVERHEAD};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Writes `head` and then `rest` at the end of `file` (opened to append), normally with a
/// single `writev`; short writes continue where they stopped.
fn write_all_two(mut file: &File, head: &[u8], rest: &[u8]) -> io::Result<()> {
    let mut parts = [io::IoSlice::new(head), io::IoSlice::new(rest)];
    let mut left = &mut parts[..];
    io::IoSlice::advance_slices(&mut left, 0);
    while !left.is_empty() {
        match file.write_vectored(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// Base offset from a name such as `00000000000000000042.log`.
pub fn parse_base_offset(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub struct LogSegment {
    base_offset: i64,
    dir: PathBuf,
    /// Opened on demand (see `file_cache`). Its handles are shared so reads and fsyncs run
    /// without the partition lock; the file only grows while the broker runs, so bytes
    /// below a size seen under the lock never change.
    log: CachedFile,
    size: u64,
    next_offset: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    bytes_since_last_index: u64,
    index_interval: u64,
    created: Instant,
    /// Appended to every file name while the segment is the cleaner's output (`.cleaned`,
    /// then `.swap`); empty for a segment of the log.
    suffix: &'static str,
    /// A failed append whose files could not be cut back (the truncate failed too): they may
    /// end in a partial batch, so the cut is tried again before the next append, which is
    /// refused until it succeeds (a restart's recovery also cuts it). Memory already holds
    /// the state from before the failed append.
    uncut: Option<AppendMark>,
}

/// What an append changes, taken before it so a failed one can be put back.
struct AppendMark {
    size: u64,
    next_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    bytes_since_last_index: u64,
    offset_entries: usize,
    time_entries: usize,
}

/// The batch `LogSegment::find_position` found, with the header it read to find it: a
/// fetch walks the batches from there and needs not read that header again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundBatch {
    pub position: u64,
    pub header: [u8; HEADER_SIZE],
}

impl FoundBatch {
    /// The whole batch's size, header included, as its length field says (checked by
    /// `find_position` to cover a header).
    pub fn size(&self) -> u64 {
        record_batch::batch_size(&self.header).map_or(0, |n| n.max(0) as u64)
    }
}

/// What start-up recovery found in a segment.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub batches: usize,
    pub truncated_bytes: u64,
    pub rebuilt_index: bool,
}

impl LogSegment {
    pub fn create(dir: &Path, base_offset: i64, index_interval: u64) -> io::Result<Self> {
        Self::create_with_suffix(dir, base_offset, index_interval, "")
    }

    /// A new segment whose files carry `suffix` after their usual names (the cleaner writes
    /// `00000000000000000000.log.cleaned` and its indexes this way).
    pub fn create_with_suffix(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        suffix: &'static str,
    ) -> io::Result<Self> {
        let (mut seg, _, _) =
            Self::open_files_with_suffix(dir, base_offset, index_interval, true, suffix)?;
        // A fresh segment's index files may hold stale entries from an earlier life.
        seg.offset_index.reset()?;
        seg.time_index.reset()?;
        Ok(seg)
    }

    /// Opens (or creates) the three files; also says whether each index looks sane.
    fn open_files(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        create: bool,
    ) -> io::Result<(Self, bool, bool)> {
        Self::open_files_with_suffix(dir, base_offset, index_interval, create, "")
    }

    fn open_files_with_suffix(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        create: bool,
        suffix: &'static str,
    ) -> io::Result<(Self, bool, bool)> {
        let name = |ext: &str| dir.join(format!("{}{suffix}", file_name(base_offset, ext)));
        let (log, handle) = CachedFile::open(&name(".log"), create)?;
        let size = handle.metadata()?.len();
        drop(handle);
        let (offset_index, oi_sane) = OffsetIndex::open(&name(".index"), base_offset, size)?;
        let (time_index, ti_sane) = TimeIndex::open(&name(".timeindex"), base_offset)?;
        let seg = Self {
            base_offset,
            dir: dir.to_path_buf(),
            log,
            size,
            next_offset: base_offset,
            offset_index,
            time_index,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            bytes_since_last_index: 0,
            index_interval,
            created: Instant::now(),
            suffix,
            uncut: None,
        };
        Ok((seg, oi_sane, ti_sane))
    }

    /// Opens an existing segment. With `full_recovery` every batch is checked (CRC included),
    /// a torn or corrupt tail is cut off and the indexes are rebuilt; otherwise the indexes are
    /// trusted when they are sane and `next_offset` comes from the caller (the next segment's
    /// base offset). `on_batch` sees every batch header kept, in order.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        full_recovery: bool,
        next_base: Option<i64>,
        on_batch: &mut dyn FnMut(&RecordBatch<'_>),
    ) -> io::Result<(Self, Recovered)> {
        let (mut seg, oi_sane, ti_sane) =
            Self::open_files(dir, base_offset, index_interval, false)?;
        let size = seg.size;
        let mut rec = Recovered::default();
        if full_recovery || !oi_sane || !ti_sane || next_base.is_none() {
            seg.offset_index.reset()?;
            seg.time_index.reset()?;
            rec.rebuilt_index = true;
            let valid = seg.scan_and_rebuild(&mut rec, on_batch)?;
            if valid < size {
                rec.truncated_bytes = size - valid;
                seg.log.get()?.set_len(valid)?;
                seg.size = valid;
            }
        } else {
            seg.next_offset = next_base.unwrap_or(base_offset);
            if let Some((ts, off)) = seg.time_index.last_entry() {
                seg.max_timestamp = ts;
                seg.offset_of_max_timestamp = off;
            }
            seg.scan_headers(on_batch, &mut rec)?;
        }
        Ok((seg, rec))
    }

    /// Reads every batch, validating it fully; returns the size of the valid prefix.
    fn scan_and_rebuild(
        &mut self,
        rec: &mut Recovered,
        on_batch: &mut dyn FnMut(&RecordBatch<'_>),
    ) -> io::Result<u64> {
        let mut reader = BufReader::with_capacity(1 << 20, File::open(self.log_path())?);
        let mut pos: u64 = 0;
        let mut buf = Vec::new();
        let mut expected = self.base_offset;
        loop {
            let mut head = [0u8; LOG_OVERHEAD];
            if !read_full(&mut reader, &mut head)? {
                break;
            }
            let Some(len) = record_batch::batch_size(&head) else {
                break;
            };
            if len < HEADER_SIZE as i64 || (pos as i64 + len) as u64 > self.size {
                break;
            }
            buf.clear();
            buf.extend_from_slice(&head);
            buf.resize(len as usize, 0);
            if !read_full(&mut reader, &mut buf[LOG_OVERHEAD..])? {
                break;
            }
            let batch = match RecordBatch::validate(&buf) {
                Ok(b) => b,
                Err(_) => break,
            };
            if batch.base_offset() < expected {
                break;
            }
            self.index_batch(&batch, pos as u32)?;
            expected = batch.last_offset() + 1;
            self.next_offset = expected;
            on_batch(&batch);
            rec.batches += 1;
            pos += len as u64;
        }
        Ok(pos)
    }

    /// Walks batch headers (no CRC) of a segment whose indexes were trusted, taking its max
    /// timestamp from them: the sparse `.timeindex` can miss the newest batches (segments
    /// rolled before `seal_time_index` existed have no entry for them).
    fn scan_headers(
        &mut self,
        on_batch: &mut dyn FnMut(&RecordBatch<'_>),
        rec: &mut Recovered,
    ) -> io::Result<()> {
        let mut pos = 0u64;
        let mut head = [0u8; HEADER_SIZE];
        let log = self.log.get()?;
        while pos + HEADER_SIZE as u64 <= self.size {
            log.read_exact_at(&mut head, pos)?;
            let Some(len) = record_batch::batch_size(&head).filter(|&l| l >= HEADER_SIZE as i64)
            else {
                break;
            };
            // Only the header was read: a copy whose length field covers just the header
            // lets the ordinary view read the producer fields.
            let mut header = head;
            header[8..12].copy_from_slice(&((HEADER_SIZE - LOG_OVERHEAD) as i32).to_be_bytes());
            match RecordBatch::parse_header(&header) {
                Ok(b) => {
                    if b.max_timestamp() > self.max_timestamp {
                        self.max_timestamp = b.max_timestamp();
                        self.offset_of_max_timestamp = b.last_offset();
                    }
                    on_batch(&b)
                }
                Err(_) => break,
            }
            rec.batches += 1;
            pos += len as u64;
        }
        Ok(())
    }

    fn index_batch(
        &mut self,
        batch: &record_batch::BatchHeader<'_>,
        position: u32,
    ) -> io::Result<()> {
        if batch.max_timestamp() > self.max_timestamp {
            self.max_timestamp = batch.max_timestamp();
            self.offset_of_max_timestamp = batch.last_offset();
        }
        if self.bytes_since_last_index >= self.index_interval || self.offset_index.is_empty() {
            self.offset_index.append(batch.last_offset(), position)?;
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)?;
            self.bytes_since_last_index = 0;
        }
        self.bytes_since_last_index += batch.size() as u64;
        Ok(())
    }

    /// Records the segment's max timestamp as its last `.timeindex` entry, as Kafka does when
    /// a segment stops being active (rolled, or written by the cleaner): the entries are
    /// sparse, and a restart that trusts the segment reads its max timestamp from the last
    /// one (time lookups, time retention, the archive's manifest).
    pub fn seal_time_index(&mut self) -> io::Result<()> {
        if self.max_timestamp < 0 {
            return Ok(());
        }
        self.time_index
            .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
    }

    /// Appends a batch whose offsets are already assigned. All or nothing: when a write
    /// fails (a full disk: ENOSPC, possibly after part of the batch was written) the `.log`
    /// and both indexes are cut back to their sizes before the append and nothing in memory
    /// moves, so the segment still ends at a whole batch and the next append can succeed.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let (head, rest) = bytes.split_at(HEADER_SIZE.min(bytes.len()));
        self.append_parts(head, rest)
    }

    /// `append` of a batch held in two parts, `head` (its header, patched by the log) and
    /// `rest` (the records, still in the request that brought them), written by one
    /// `writev` instead of being copied together first.
    pub fn append_parts(&mut self, head: &[u8], rest: &[u8]) -> io::Result<()> {
        if let Some(mark) = self.uncut.take() {
            if let Err(e) = self.cut_files(&mark) {
                self.uncut = Some(mark);
                return Err(e);
            }
        }
        let invalid = |e: record_batch::BatchError| io::Error::new(io::ErrorKind::InvalidData, e);
        let batch = record_batch::BatchHeader::parse(head).map_err(invalid)?;
        let len = head.len() + rest.len();
        if batch.size() != len {
            return Err(invalid(record_batch::BatchError::LengthMismatch(
                batch.size() as i64,
                len,
            )));
        }
        let position = self.size as u32;
        let log = self.log.get()?;
        let mark = self.mark();
        let written =
            write_all_two(&log, head, rest).and_then(|()| self.index_batch(&batch, position));
        if let Err(e) = written {
            self.restore(&mark);
            if let Err(cut) = self.cut_files(&mark) {
                tracing::error!(segment = %self.log_path().display(), error = %cut, "a failed append could not be cut back; appends wait until it is");
                self.uncut = Some(mark);
            }
            return Err(e);
        }
        self.size += len as u64;
        self.next_offset = batch.last_offset() + 1;
        Ok(())
    }

    fn mark(&self) -> AppendMark {
        AppendMark {
            size: self.size,
            next_offset: self.next_offset,
            max_timestamp: self.max_timestamp,
            offset_of_max_timestamp: self.offset_of_max_timestamp,
            bytes_since_last_index: self.bytes_since_last_index,
            offset_entries: self.offset_index.len(),
            time_entries: self.time_index.len(),
        }
    }

    /// Puts the in-memory state back as `mark` saw it.
    fn restore(&mut self, mark: &AppendMark) {
        self.size = mark.size;
        self.next_offset = mark.next_offset;
        self.max_timestamp = mark.max_timestamp;
        self.offset_of_max_timestamp = mark.offset_of_max_timestamp;
        self.bytes_since_last_index = mark.bytes_since_last_index;
    }

    /// Cuts the three files back to their sizes at `mark`. Readers never saw the cut bytes:
    /// they read below `size`, which had not moved.
    fn cut_files(&mut self, mark: &AppendMark) -> io::Result<()> {
        self.log.get()?.set_len(mark.size)?;
        self.offset_index.truncate_entries(mark.offset_entries)?;
        self.time_index.truncate_entries(mark.time_entries)
    }

    /// The batch holding `offset` (its position, size and header), scanning forward from
    /// the index entry. `None` when the segment holds no batch at or after `offset`.
    pub fn find_position(&self, offset: i64, size_limit: u64) -> io::Result<Option<FoundBatch>> {
        let (_, pos) = self.offset_index.lookup(offset);
        let mut pos = pos as u64;
        let mut head = [0u8; HEADER_SIZE];
        let log = self.log.get()?;
        while pos + HEADER_SIZE as u64 <= size_limit {
            log.read_exact_at(&mut head, pos)?;
            let base = i64::from_be_bytes(head[..8].try_into().unwrap_or([0; 8]));
            let len = i32::from_be_bytes(head[8..12].try_into().unwrap_or([0; 4])) as i64
                + LOG_OVERHEAD as i64;
            let delta = i32::from_be_bytes(head[23..27].try_into().unwrap_or([0; 4])) as i64;
            if len < HEADER_SIZE as i64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt batch length",
                ));
            }
            if base + delta >= offset {
                return Ok(Some(FoundBatch {
                    position: pos,
                    header: head,
                }));
            }
            pos += len as u64;
        }
        Ok(None)
    }

    /// First batch whose max timestamp reaches `timestamp`: (offset, timestamp) of the first
    /// record at or after it.
    pub fn find_timestamp(&self, timestamp: i64) -> io::Result<Option<(i64, i64)>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let start = self.time_index.lookup(timestamp);
        let (_, pos) = self.offset_index.lookup(start);
        let mut pos = pos as u64;
        let mut buf = Vec::new();
        let log = self.log.get()?;
        while pos + HEADER_SIZE as u64 <= self.size {
            let mut head = [0u8; LOG_OVERHEAD];
            log.read_exact_at(&mut head, pos)?;
            let len = record_batch::batch_size(&head).unwrap_or(0);
            if len < HEADER_SIZE as i64 || pos + len as u64 > self.size {
                break;
            }
            buf.resize(len as usize, 0);
            log.read_exact_at(&mut buf, pos)?;
            if let Ok(batch) = RecordBatch::parse_header(&buf) {
                if let Some(found) = record_batch::first_offset_at_or_after(&batch, timestamp) {
                    return Ok(Some(found));
                }
            }
            pos += len as u64;
        }
        Ok(None)
    }

    /// (max timestamp, offset of the first record carrying it): Kafka's answer to
    /// ListOffsets' MAX_TIMESTAMP, which looks inside the batch that holds it.
    pub fn find_max_timestamp(&self) -> io::Result<Option<(i64, i64)>> {
        if self.max_timestamp < 0 {
            return Ok(None);
        }
        let shallow = Some((self.max_timestamp, self.offset_of_max_timestamp));
        let Some(found) = self.find_position(self.offset_of_max_timestamp, self.size)? else {
            return Ok(shallow);
        };
        let (pos, len) = (found.position, found.size());
        // A damaged length must not size the buffer past the segment.
        if pos + len > self.size {
            return Ok(shallow);
        }
        let mut buf = vec![0u8; len as usize];
        self.log.get()?.read_exact_at(&mut buf, pos)?;
        match RecordBatch::parse_header(&buf) {
            Ok(batch) if batch.max_timestamp() == self.max_timestamp => Ok(Some((
                self.max_timestamp,
                record_batch::offset_of_max_timestamp(&batch),
            ))),
            _ => Ok(shallow),
        }
    }

    /// An open handle on the `.log` (opened now if the cache had closed it).
    pub fn file(&self) -> io::Result<Arc<File>> {
        self.log.get()
    }
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }
    pub fn age(&self) -> std::time::Duration {
        self.created.elapsed()
    }
    /// The `.log`, `.index` and `.timeindex` paths.
    pub fn paths(&self) -> [PathBuf; 3] {
        [".log", ".index", ".timeindex"].map(|ext| self.path_of(ext))
    }

    pub fn log_path(&self) -> PathBuf {
        self.path_of(".log")
    }

    fn path_of(&self, ext: &str) -> PathBuf {
        self.dir.join(format!(
            "{}{}",
            file_name(self.base_offset, ext),
            self.suffix
        ))
    }

    /// Records that the files were renamed to carry `suffix` (the open handles follow the
    /// rename, so nothing is reopened).
    pub fn set_suffix(&mut self, suffix: &'static str) {
        self.suffix = suffix;
        self.log.renamed(self.path_of(".log"));
        self.offset_index.renamed(self.path_of(".index"));
        self.time_index.renamed(self.path_of(".timeindex"));
    }

    /// Overrides the offset the segment's offsets end at: a cleaned segment keeps the
    /// range of the segments it replaces even when its last records were removed.
    pub fn set_next_offset(&mut self, next: i64) {
        self.next_offset = self.next_offset.max(next);
    }

    /// Makes the segment durable: log then indexes.
    pub fn sync(&self) -> io::Result<()> {
        self.log.get()?.sync_data()?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Removes the segment and its indexes.
    pub fn delete(self) -> io::Result<()> {
        for ext in [".log", ".index", ".timeindex", ".txnindex"] {
            match std::fs::remove_file(self.path_of(ext)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// `Ok(false)` on a clean end of file before any byte, or on a short read (torn tail).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..])? {
            0 => return Ok(false),
            n => done += n,
        }
    }
    Ok(true)
}

#[cfg(test)]
pub(crate) mod tests;
