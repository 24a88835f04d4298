//! Reads: where a fetch from an offset starts in the log and how much of it a fetch may take
//! (whole batches below the high watermark, or the last stable offset for read_committed,
//! and the first batch whole as KIP-74 wants), as bytes in memory or as a range of the
//! segment file for a connection that sends it from the page cache; and the timestamp
//! lookups of ListOffsets.

use super::*;

/// Records read into memory (`Partition::read`) and the offsets a Fetch answer reports with
/// them, taken before the read: no record returned lies past the high watermark beside it.
pub struct FetchData {
    pub records: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// See `Partition::locate`.
struct Located {
    slice: ReadSlice,
    want: usize,
    upper: i64,
}

impl Partition {
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
        let mut data = FetchData {
            records: Bytes::new(),
            high_watermark: hw,
            log_start_offset: start,
        };
        let Some(found) = self.locate(offset, max_bytes, min_one, committed, hw, start)? else {
            return Ok(data);
        };
        let (slice, want, upper) = (found.slice, found.want, found.upper);
        let first = slice.first.size() as usize;
        let bytes = read_exact(&slice.file, slice.first.position, want)?;
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
        data.records = bytes;
        Ok(data)
    }

    /// What `read` returns, as a range of the segment file instead of bytes in memory:
    /// found by reading batch headers only, for a connection that sends it from the page
    /// cache. `None` where `read` returns no records.
    pub fn read_file(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        committed: bool,
    ) -> Result<Option<(FileRange, WholeBatches)>, ResponseError> {
        let (hw, start) = (self.high_watermark(), self.log_start_offset());
        let Some(found) = self.locate(offset, max_bytes, min_one, committed, hw, start)? else {
            return Ok(None);
        };
        let slice = found.slice;
        let mut whole = slice
            .whole_batches(found.want as u64, found.upper)
            .map_err(|e| {
                tracing::error!(error = %e, "read failed");
                ResponseError::KafkaStorageError
            })?;
        // As `read`: the first batch is sent whole even if its header did not parse.
        if whole.len < slice.first.size() {
            whole.len = slice.first.size().min(found.want as u64);
        }
        if whole.len == 0 {
            return Ok(None);
        }
        let range = FileRange {
            file: slice.file,
            offset: slice.first.position,
            len: whole.len,
            pin: None,
        };
        Ok(Some((range, whole)))
    }

    /// Where a read from `offset` starts, how many bytes it may take, and the offset no
    /// batch it returns may start at; `None` when it returns no records.
    fn locate(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        committed: bool,
        hw: i64,
        start: i64,
    ) -> Result<Option<Located>, ResponseError> {
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
        if offset >= upper {
            return Ok(None);
        }
        let slice = self
            .state()
            .log
            .read(offset)
            .map_err(|_| ResponseError::KafkaStorageError)?;
        let Some(slice) = slice else {
            return Ok(None);
        };
        let available = (slice.end - slice.first.position) as usize;
        let first = slice.first.size() as usize;
        let want = if first > max_bytes {
            if !min_one {
                return Ok(None);
            }
            first
        } else {
            max_bytes.min(available)
        };
        Ok(Some(Located { slice, want, upper }))
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

    /// (timestamp, offset) of the first record with the largest timestamp.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, ResponseError> {
        self.state()
            .log
            .max_timestamp()
            .map_err(|_| ResponseError::KafkaStorageError)
    }
}

fn read_exact(file: &File, pos: u64, len: usize) -> Result<Vec<u8>, ResponseError> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, pos).map_err(|e| {
        tracing::error!(error = %e, "read failed");
        ResponseError::KafkaStorageError
    })?;
    Ok(buf)
}
