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
pub(crate) mod tests {
    use super::*;
    use crate::log::record_batch::set_base_offset;
    use crate::log::record_batch::tests::make_batch;
    use std::fs::OpenOptions;

    fn batch_at(offset: i64, values: &[&[u8]]) -> Vec<u8> {
        let mut b = make_batch(1_000 + offset, values);
        set_base_offset(&mut b, offset);
        b
    }

    #[test]
    fn names_are_twenty_digit_base_offsets() {
        assert_eq!(file_name(42, ".log"), "00000000000000000042.log");
        assert_eq!(
            parse_base_offset("00000000000000000042.index", ".index"),
            Some(42)
        );
        assert_eq!(parse_base_offset("42.log", ".log"), None);
    }

    #[test]
    fn appended_batches_are_found_by_offset() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
        let mut positions = Vec::new();
        let mut off = 0;
        for i in 0..50 {
            let vals: Vec<Vec<u8>> = (0..(i % 4 + 1)).map(|j| vec![j as u8; 10]).collect();
            let refs: Vec<&[u8]> = vals.iter().map(|v| v.as_slice()).collect();
            let b = batch_at(off, &refs);
            positions.push((off, seg.size(), b.len() as u64));
            seg.append(&b).expect("append");
            off += refs.len() as i64;
        }
        assert_eq!(seg.next_offset(), off);
        for &(o, pos, len) in &positions {
            let found = seg
                .find_position(o, seg.size())
                .expect("io")
                .expect("found");
            assert_eq!((found.position, found.size()), (pos, len));
            let mut header = [0u8; HEADER_SIZE];
            seg.file()
                .expect("file")
                .read_exact_at(&mut header, pos)
                .expect("read");
            assert_eq!(found.header, header, "the header it read");
        }
        assert_eq!(seg.find_position(off, seg.size()).expect("io"), None);
    }

    #[test]
    fn a_batch_appended_in_two_parts_is_stored_as_one_and_a_wrong_length_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
        let mut whole = Vec::new();
        let mut off = 0;
        for split in [HEADER_SIZE, HEADER_SIZE + 1, usize::MAX] {
            let b = batch_at(off, &[b"first", b"second"]);
            let at = split.min(b.len());
            seg.append_parts(&b[..at], &b[at..]).expect("append");
            whole.extend_from_slice(&b);
            off += 2;
        }
        // Header and records that do not add up to the length field: nothing is written.
        let b = batch_at(off, &[b"x"]);
        let err = seg
            .append_parts(&b[..HEADER_SIZE], &b[HEADER_SIZE + 1..])
            .expect_err("short");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(seg.append_parts(&b[..10], &b[10..]).is_err());
        assert_eq!(seg.next_offset(), off);
        let on_disk = std::fs::read(seg.log_path()).expect("read");
        assert_eq!(on_disk, whole);
        assert_eq!(seg.size(), whole.len() as u64);
    }

    #[test]
    fn recovery_truncates_a_torn_tail_and_rebuilds_indexes() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
        for i in 0..10 {
            seg.append(&batch_at(i, &[b"value"])).expect("append");
        }
        let good = seg.size();
        drop(seg);
        // A torn write: half a batch at the end, and a garbage index.
        let torn = batch_at(10, &[b"this one is cut"]);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(file_name(0, ".log")))
            .expect("open");
        f.write_all(&torn[..torn.len() / 2]).expect("write");
        std::fs::write(dir.path().join(file_name(0, ".index")), [0xffu8; 13]).expect("idx");
        let mut seen = 0;
        let (seg, rec) =
            LogSegment::open(dir.path(), 0, 1, true, None, &mut |_| seen += 1).expect("open");
        assert_eq!(rec.batches, 10);
        assert!(rec.rebuilt_index);
        assert_eq!(rec.truncated_bytes, (torn.len() / 2) as u64);
        assert_eq!(seg.size(), good);
        assert_eq!(seg.next_offset(), 10);
        assert_eq!(seen, 10);
        assert!(seg.find_position(9, seg.size()).expect("io").is_some());
    }

    #[test]
    fn recovery_stops_at_a_corrupt_batch_in_the_middle() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut seg = LogSegment::create(dir.path(), 0, 4096).expect("create");
        let mut sizes = Vec::new();
        for i in 0..5 {
            seg.append(&batch_at(i, &[b"abc"])).expect("append");
            sizes.push(seg.size());
        }
        drop(seg);
        let path = dir.path().join(file_name(0, ".log"));
        let mut bytes = std::fs::read(&path).expect("read");
        let flip = sizes[2] as usize + 70;
        bytes[flip] ^= 0x55;
        std::fs::write(&path, &bytes).expect("write");
        let (seg, rec) =
            LogSegment::open(dir.path(), 0, 4096, true, None, &mut |_| {}).expect("open");
        assert_eq!(rec.batches, 3);
        assert_eq!(seg.next_offset(), 3);
        assert_eq!(seg.size(), sizes[2]);
    }

    /// A file at `path` (a link to a memfd) whose growth a test can stop, as a full disk
    /// stops it: writes that would extend it then fail, truncating still works.
    pub(crate) struct StoppableFile(std::os::fd::OwnedFd);

    impl StoppableFile {
        pub(crate) fn at(path: &Path) -> Self {
            use std::os::fd::{AsRawFd, FromRawFd};
            // SAFETY: memfd_create takes a NUL-terminated name and returns a new descriptor
            // (or -1), which the OwnedFd then owns alone.
            let fd = unsafe { libc::memfd_create(c"segment".as_ptr(), libc::MFD_ALLOW_SEALING) };
            assert!(fd >= 0, "memfd_create: {}", io::Error::last_os_error());
            let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
            std::os::unix::fs::symlink(format!("/proc/self/fd/{}", fd.as_raw_fd()), path)
                .expect("link");
            Self(fd)
        }

        pub(crate) fn stop_growth(&self) {
            use std::os::fd::AsRawFd;
            // SAFETY: fcntl on a descriptor this value owns.
            let r =
                unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_GROW) };
            assert_eq!(r, 0, "F_SEAL_GROW: {}", io::Error::last_os_error());
        }

        /// Truncating it fails from now on (as it may on a failing disk); writes still work.
        pub(crate) fn stop_shrinking(&self) {
            use std::os::fd::AsRawFd;
            // SAFETY: fcntl on a descriptor this value owns.
            let r =
                unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) };
            assert_eq!(r, 0, "F_SEAL_SHRINK: {}", io::Error::last_os_error());
        }
    }

    fn file_len(dir: &Path, ext: &str) -> u64 {
        std::fs::metadata(dir.join(file_name(0, ext)))
            .expect("stat")
            .len()
    }

    /// Appends that fail once `stopped` cannot grow any more: each leaves the three files
    /// and the segment as they were, and recovery then finds nothing to cut.
    fn failed_appends_change_nothing(stopped: &str) {
        let dir = tempfile::tempdir().expect("tmp");
        let file = StoppableFile::at(&dir.path().join(file_name(0, stopped)));
        let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
        for i in 0..5 {
            seg.append(&batch_at(i, &[b"fits"])).expect("append");
        }
        let lens = [".log", ".index", ".timeindex"].map(|ext| file_len(dir.path(), ext));
        let (size, max_ts) = (seg.size(), seg.max_timestamp());
        file.stop_growth();
        for i in 5..8 {
            let err = seg
                .append(&batch_at(i, &[b"does not fit"]))
                .expect_err("the disk is full");
            assert!(!err.to_string().contains("cut back"), "{err}");
            assert_eq!(seg.size(), size);
            assert_eq!(seg.next_offset(), 5);
            assert_eq!(seg.max_timestamp(), max_ts);
            assert_eq!(
                [".log", ".index", ".timeindex"].map(|ext| file_len(dir.path(), ext)),
                lens,
                "no byte of the failed append stays"
            );
        }
        for o in 0..5 {
            assert!(seg.find_position(o, seg.size()).expect("io").is_some());
        }
        assert_eq!(seg.find_timestamp(1_004).expect("io"), Some((4, 1_004)));
        drop(seg);
        // Recovery rewrites the indexes: it reads copies, as the stopped file cannot grow.
        let copy = tempfile::tempdir().expect("tmp");
        for ext in [".log", ".index", ".timeindex"] {
            let name = file_name(0, ext);
            std::fs::copy(dir.path().join(&name), copy.path().join(&name)).expect("copy");
        }
        let (seg, rec) =
            LogSegment::open(copy.path(), 0, 1, true, None, &mut |_| {}).expect("open");
        assert_eq!((rec.batches, rec.truncated_bytes), (5, 0));
        assert_eq!(seg.next_offset(), 5);
    }

    /// The `.log` took the batch, its index entry did not fit, and cutting the `.log` back
    /// failed too: the segment refuses appends (each tries the cut again first) while what
    /// it held stays readable, and a restart's recovery leaves it ending at a whole batch.
    #[test]
    fn an_append_that_cannot_be_cut_back_refuses_the_next_ones_until_recovery_cuts_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = StoppableFile::at(&dir.path().join(file_name(0, ".log")));
        let index = StoppableFile::at(&dir.path().join(file_name(0, ".index")));
        let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
        for i in 0..3 {
            seg.append(&batch_at(i, &[b"fits"])).expect("append");
        }
        let size = seg.size();
        log.stop_shrinking();
        index.stop_growth();
        seg.append(&batch_at(3, &[b"half written"]))
            .expect_err("the index is full");
        assert!(
            file_len(dir.path(), ".log") > size,
            "the .log kept the batch"
        );
        for _ in 0..2 {
            seg.append(&batch_at(3, &[b"refused"]))
                .expect_err("appends wait for the cut");
            assert_eq!((seg.size(), seg.next_offset()), (size, 3));
        }
        for o in 0..3 {
            assert!(seg.find_position(o, seg.size()).expect("io").is_some());
        }
        drop(seg);
        let copy = tempfile::tempdir().expect("tmp");
        for ext in [".log", ".index", ".timeindex"] {
            let name = file_name(0, ext);
            std::fs::copy(dir.path().join(&name), copy.path().join(&name)).expect("copy");
        }
        let (mut seg, rec) =
            LogSegment::open(copy.path(), 0, 1, true, None, &mut |_| {}).expect("open");
        // The batch reached the .log whole, so recovery keeps it (as Kafka's does: its
        // producer was told it failed, and a retry of an idempotent one is a duplicate the
        // producer state recognises); the indexes are rebuilt to cover it.
        assert_eq!((rec.batches, rec.truncated_bytes), (4, 0));
        assert_eq!(seg.next_offset(), 4);
        assert!(seg.find_position(3, seg.size()).expect("io").is_some());
        seg.append(&batch_at(4, &[b"after recovery"]))
            .expect("append");
    }

    #[test]
    fn a_failed_log_write_changes_nothing() {
        failed_appends_change_nothing(".log");
    }

    #[test]
    fn a_failed_offset_index_write_takes_the_batch_back() {
        failed_appends_change_nothing(".index");
    }

    #[test]
    fn a_failed_time_index_write_takes_the_batch_and_its_offset_entry_back() {
        failed_appends_change_nothing(".timeindex");
    }

    #[test]
    fn timestamp_lookup_uses_the_time_index() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut seg = LogSegment::create(dir.path(), 0, 1).expect("create");
        for i in 0..20 {
            seg.append(&batch_at(i, &[b"v"])).expect("append");
        }
        assert_eq!(seg.find_timestamp(1_007).expect("io"), Some((7, 1_007)));
        assert_eq!(seg.find_timestamp(5_000).expect("io"), None);
    }
}
