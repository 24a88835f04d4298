//! What a read of the log hands out: ranges of segment files, read after the partition
//! lock is released. A `ReadSlice` is the range a read found (its batch headers walked
//! without reading the records); a `FileRange` is what a fetch answer carries, sent from
//! the page cache on plaintext sockets or read into memory for TLS.
//!
//! Files: reads segment files that are open already; opens none.

use super::segment::FoundBatch;
use super::{file_cache, record_batch};
use std::fs::File;
use std::io;
use std::sync::Arc;

/// A contiguous byte range of one segment, to be read without the partition lock.
pub struct ReadSlice {
    pub file: Arc<File>,
    /// The first batch to return (KIP-74: it is returned whole even past max_bytes): its
    /// position and the header the lookup read, from which the walk of whole batches
    /// starts instead of reading it again.
    pub first: FoundBatch,
    /// End of the segment's data as seen under the lock.
    pub end: u64,
}

/// Batches read from the small end of this size on are walked a window at a time: one
/// read then covers many headers. Past it, each header is read alone, and the records
/// between headers are never read.
const SMALL_BATCH: u64 = 4096;

/// What one read takes when walking small batches.
const HEADER_WINDOW: u64 = 16 * 1024;

/// Walks the batch headers of a segment file from one position up to an end, reading the
/// headers and not the records between them: a window at a time while the batches passed
/// are small, a header alone after a large one. The one place that windowing lives, for
/// the fetches that send a range of the file and for the CRC of a segment archived by link.
pub(crate) struct HeaderWalk<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    /// Bytes read from `window_at`; never past `end`.
    window: Vec<u8>,
    window_at: u64,
    /// Size of the batch last passed, which picks what the next read takes.
    last_size: u64,
}

impl<'a> HeaderWalk<'a> {
    /// A walk from `start` to `end` whose first read takes a window: the batches ahead are
    /// not known.
    pub(crate) fn new(file: &'a File, start: u64, end: u64) -> Self {
        Self {
            file,
            pos: start,
            end,
            window: Vec::new(),
            window_at: start,
            last_size: 0,
        }
    }

    /// A walk from `start` to `end` that starts with `header`, the bytes at `start` read
    /// already (by the lookup that found the batch there): its first header costs no read.
    pub(crate) fn seeded(file: &'a File, start: u64, end: u64, header: &[u8]) -> Self {
        Self {
            file,
            pos: start,
            end,
            window: header[..header.len().min(end.saturating_sub(start) as usize)].to_vec(),
            window_at: start,
            last_size: 0,
        }
    }

    /// The bytes at the current position: at least `record_batch::HEADER_SIZE`, up to the
    /// end of what has been read. `None` when fewer than a header's bytes remain before the
    /// end. The bytes are not checked to be a header: that is the caller's parse.
    pub(crate) fn header(&mut self) -> io::Result<Option<&[u8]>> {
        use std::os::unix::fs::FileExt;
        let header = record_batch::HEADER_SIZE as u64;
        if self.pos + header > self.end {
            return Ok(None);
        }
        // The walk only moves forward: the window holds the header unless it ends first.
        if self.pos + header > self.window_at + self.window.len() as u64 {
            let n = if self.last_size < SMALL_BATCH {
                HEADER_WINDOW
            } else {
                header
            };
            self.window.resize(n.min(self.end - self.pos) as usize, 0);
            self.file.read_exact_at(&mut self.window, self.pos)?;
            self.window_at = self.pos;
        }
        Ok(Some(&self.window[(self.pos - self.window_at) as usize..]))
    }

    /// Moves past the batch at the current position, of `size` bytes.
    pub(crate) fn advance(&mut self, size: u64) {
        self.pos += size;
        self.last_size = size;
    }

    /// The current position in the file.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }
}

/// Whole batches found by `ReadSlice::whole_batches`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WholeBatches {
    /// Bytes from the slice's position.
    pub len: u64,
    /// Records in the data batches among them (transaction markers are not records a
    /// consumer sees).
    pub records: u64,
}

impl ReadSlice {
    /// The whole batches from `position` that fit in `want` bytes and start below offset
    /// `upper`, found by reading batch headers only: what a fetch sends without reading the
    /// records. Stops, as a walk of the bytes in memory does, at the first batch that does
    /// not fit, does not start below `upper`, or whose header is not a batch's.
    pub fn whole_batches(&self, want: u64, upper: i64) -> io::Result<WholeBatches> {
        let start = self.first.position;
        let end = start + want.min(self.end.saturating_sub(start));
        let mut walk = HeaderWalk::seeded(&self.file, start, end, &self.first.header);
        let mut records = 0u64;
        while let Some(bytes) = walk.header()? {
            let Ok(head) = record_batch::peek_header(bytes) else {
                break;
            };
            if head.size > end - walk.position() || head.base_offset >= upper {
                break;
            }
            if !head.is_control {
                records += head.record_count.max(0) as u64;
            }
            walk.advance(head.size);
        }
        Ok(WholeBatches {
            len: walk.position() - start,
            records,
        })
    }
}

/// A byte range of a segment file, sent to a plaintext socket from the page cache
/// (sendfile) instead of being read into memory, as Kafka's `FileRecords.writeTo` does.
/// It holds the file open, so a segment deleted or replaced (retention, compaction) after
/// the fetch found it is still sent whole.
#[derive(Clone, Debug)]
pub struct FileRange {
    pub file: Arc<File>,
    pub offset: u64,
    pub len: u64,
    /// Counts the open file against the bound of `file_cache::pin`.
    pub pin: Option<Arc<file_cache::Pinned>>,
}

impl FileRange {
    /// The bytes, read into memory: for writers that need them (TLS encrypts them).
    /// A file that no longer holds them all is an error (`UnexpectedEof`), never fewer
    /// bytes than announced.
    pub fn read(&self) -> io::Result<bytes::Bytes> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(self.len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "range too large"))?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, self.offset)?;
        Ok(buf.into())
    }
}

#[cfg(test)]
impl ReadSlice {
    /// The bytes of the batch the slice starts with.
    pub(crate) fn first_batch_bytes(&self) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut b = vec![0u8; self.first.size() as usize];
        self.file
            .read_exact_at(&mut b, self.first.position)
            .expect("read");
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::record_batch::tests::make_batch;
    use crate::log::record_batch::HEADER_SIZE;

    /// (position, size, base offset, records) of each batch written.
    type Layout = Vec<(u64, u64, i64, u64)>;

    /// Small batches well past two windows, a large batch, small ones again, and the
    /// first 30 bytes of one more batch (a torn tail).
    fn segment() -> (Vec<u8>, Layout) {
        let mut bytes = Vec::new();
        let mut layout = Vec::new();
        let mut next = 0i64;
        let sizes = (0..300)
            .map(|i| 20 + i % 90)
            .chain([40_000])
            .chain((0..60).map(|i| 1 + i * 7));
        for (i, value_len) in sizes.enumerate() {
            let count = 1 + i % 3;
            let values = vec![vec![i as u8; value_len]; count];
            let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
            let mut batch = make_batch(1_000, &refs);
            record_batch::set_base_offset(&mut batch, next);
            layout.push((bytes.len() as u64, batch.len() as u64, next, count as u64));
            bytes.extend(batch);
            next += count as i64;
        }
        let torn = make_batch(1_000, &[b"torn"]);
        bytes.extend(&torn[..30]);
        (bytes, layout)
    }

    fn write(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("00000000000000000000.log");
        std::fs::write(&path, bytes).expect("write");
        let file = File::open(&path).expect("open");
        (dir, file)
    }

    /// Each header the walk hands out is the file's bytes at that batch, at least a header
    /// and never past the end, across window boundaries, around a large batch and up to a
    /// tail too short for a header; the bytes are handed out unparsed, a damaged one too.
    #[test]
    fn a_header_walk_hands_out_each_batch_header_up_to_its_end() {
        let (mut bytes, layout) = segment();
        let damaged = layout.len() - 5;
        bytes[layout[damaged].0 as usize + 16] = 7; // its magic
        let (_dir, file) = write(&bytes);
        let total = bytes.len() as u64;
        for seeded in [false, true] {
            for (from, end) in [
                (0, total),
                (3, total),
                (150, total - 100),
                (299, total),
                (300, layout[320].0 + 60),
            ] {
                let start = layout[from].0;
                let at = start as usize;
                let mut walk = if seeded {
                    HeaderWalk::seeded(&file, start, end, &bytes[at..at + HEADER_SIZE])
                } else {
                    HeaderWalk::new(&file, start, end)
                };
                let mut seen = 0;
                for &(pos, size, _, _) in &layout[from..] {
                    if pos + HEADER_SIZE as u64 > end {
                        break;
                    }
                    assert_eq!(walk.position(), pos);
                    let got = walk.header().expect("io").expect("a header");
                    assert!(got.len() >= HEADER_SIZE);
                    assert!(pos + got.len() as u64 <= end);
                    assert_eq!(got, &bytes[pos as usize..pos as usize + got.len()]);
                    walk.advance(size);
                    seen += 1;
                }
                assert!(seen > 0);
                assert_eq!(walk.header().expect("io"), None, "from {from} to {end}");
            }
        }
    }

    /// A walk seeded with the header read by the lookup that found the batch starts from
    /// those bytes, not the file's, and reads the file only for the headers after it.
    #[test]
    fn a_seeded_header_walk_reads_no_first_header() {
        let (bytes, layout) = segment();
        let (_dir, file) = write(&bytes);
        let (start, size) = (layout[10].0, layout[10].1);
        let mut seed = bytes[start as usize..][..HEADER_SIZE].to_vec();
        seed[HEADER_SIZE - 1] ^= 0xff;
        let mut walk = HeaderWalk::seeded(&file, start, bytes.len() as u64, &seed);
        assert_eq!(walk.header().expect("io"), Some(&seed[..]));
        walk.advance(size);
        let next = (start + size) as usize;
        let got = walk.header().expect("io").expect("a header");
        assert_eq!(got, &bytes[next..next + got.len()]);
        assert!(got.len() > HEADER_SIZE, "small batches: a window is read");
        // A seed longer than the walk is not handed out.
        let mut short = HeaderWalk::seeded(&file, start, start + 60, &seed);
        assert_eq!(short.header().expect("io"), None);
    }

    /// The whole batches of a range, as a walk of the bytes in memory finds them: up to
    /// `want`, below `upper`, and never past a damaged header.
    #[test]
    fn whole_batches_stop_where_a_walk_of_the_bytes_stops() {
        let (mut bytes, layout) = segment();
        let damaged = 330;
        bytes[layout[damaged].0 as usize + 16] = 7;
        let (_dir, file) = write(&bytes);
        let file = Arc::new(file);
        let total = bytes.len() as u64;
        for from in [0, 1, 200, 299, 300, 301, 329, 330, layout.len() - 1] {
            let (position, first_batch, _, _) = layout[from];
            let slice = ReadSlice {
                file: file.clone(),
                first: FoundBatch {
                    position,
                    header: bytes[position as usize..][..HEADER_SIZE]
                        .try_into()
                        .expect("a header"),
                },
                end: total,
            };
            assert_eq!(slice.first.size(), first_batch);
            for want in [0, 60, 61, 500, 16 * 1024, 17_000, 50_000, 1 << 20] {
                for upper in [0, 150, 301, 400, i64::MAX] {
                    let mut expected = WholeBatches { len: 0, records: 0 };
                    for (i, &(pos, size, base, records)) in layout.iter().enumerate().skip(from) {
                        if i == damaged || pos + size - position > want || base >= upper {
                            break;
                        }
                        expected.len += size;
                        expected.records += records;
                    }
                    assert_eq!(
                        slice.whole_batches(want, upper).expect("io"),
                        expected,
                        "from {from} want {want} upper {upper}"
                    );
                }
            }
        }
    }
}
