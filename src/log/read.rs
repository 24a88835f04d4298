//! What a read of the log hands out: ranges of segment files, read after the partition
//! lock is released. A `ReadSlice` is the range a read found (its batch headers walked
//! without reading the records); a `FileRange` is what a fetch answer carries, sent from
//! the page cache on plaintext sockets or read into memory for TLS.
//!
//! Files: reads segment files that are open already; opens none.

use super::{file_cache, record_batch};
use std::fs::File;
use std::io;
use std::sync::Arc;

/// A contiguous byte range of one segment, to be read without the partition lock.
pub struct ReadSlice {
    pub file: Arc<File>,
    /// Position of the first batch to return.
    pub position: u64,
    /// Size of that first batch (KIP-74: it is returned whole even past max_bytes).
    pub first_batch: u64,
    /// End of the segment's data as seen under the lock.
    pub end: u64,
}

/// Batches read from the small end of this size on are walked a window at a time: one
/// read then covers many headers. Past it, each header is read alone, and the records
/// between headers are never read.
const SMALL_BATCH: u64 = 4096;

/// What one read takes when walking small batches.
const HEADER_WINDOW: usize = 16 * 1024;

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
        use record_batch::HEADER_SIZE;
        use std::os::unix::fs::FileExt;
        let header = HEADER_SIZE as u64;
        let end = self.position + want.min(self.end.saturating_sub(self.position));
        let mut pos = self.position;
        let mut records = 0u64;
        let mut window: Vec<u8> = Vec::new();
        let mut window_at = 0u64;
        let mut last_size = u64::MAX;
        while pos + header <= end {
            let held = window_at + window.len() as u64;
            if pos < window_at || pos + header > held {
                let n = if last_size < SMALL_BATCH {
                    HEADER_WINDOW as u64
                } else {
                    header
                };
                window.resize(n.min(end - pos) as usize, 0);
                self.file.read_exact_at(&mut window, pos)?;
                window_at = pos;
            }
            let at = (pos - window_at) as usize;
            let Ok(head) = record_batch::peek_header(&window[at..]) else {
                break;
            };
            if head.size > end - pos || head.base_offset >= upper {
                break;
            }
            if !head.is_control {
                records += head.record_count.max(0) as u64;
            }
            pos += head.size;
            last_size = head.size;
        }
        Ok(WholeBatches {
            len: pos - self.position,
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
        let mut b = vec![0u8; self.first_batch as usize];
        self.file
            .read_exact_at(&mut b, self.position)
            .expect("read");
        b
    }
}
