//! Zero-copy view of a magic v2 record batch, as Kafka lays it out on the wire and on disk.
//!
//! # Format
//! ```text
//! 0  base_offset i64          8  batch_length i32 (bytes after this field)
//! 12 partition_leader_epoch   16 magic i8        17 crc u32 (CRC-32C of bytes 21..)
//! 21 attributes i16           23 last_offset_delta i32
//! 27 base_timestamp i64       35 max_timestamp i64
//! 43 producer_id i64          51 producer_epoch i16
//! 53 base_sequence i32        57 record_count i32      61 records…
//! ```

use super::codec;
use thiserror::Error;

/// Bytes before the records: the smallest valid batch.
pub const HEADER_SIZE: usize = 61;
/// The part of the header that says where the batch ends.
pub const LOG_OVERHEAD: usize = 12;

const LENGTH_OFFSET: usize = 8;
const LEADER_EPOCH_OFFSET: usize = 12;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LAST_OFFSET_DELTA_OFFSET: usize = 23;
const BASE_TIMESTAMP_OFFSET: usize = 27;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PRODUCER_ID_OFFSET: usize = 43;
const PRODUCER_EPOCH_OFFSET: usize = 51;
const BASE_SEQUENCE_OFFSET: usize = 53;
const RECORD_COUNT_OFFSET: usize = 57;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("batch shorter than its header ({0} bytes)")]
    TooShort(usize),
    #[error("batch length field {0} does not match the {1} bytes present")]
    LengthMismatch(i64, usize),
    #[error("magic {0} is not supported; only v2 record batches are accepted")]
    Magic(i8),
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("record count {count} does not match last offset delta {delta}")]
    Count { count: i32, delta: i32 },
}

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Total size (header included) of the batch starting at `buf`, if its first 12 bytes are there.
pub fn batch_size(buf: &[u8]) -> Option<i64> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    Some(i32_at(buf, LENGTH_OFFSET) as i64 + LOG_OVERHEAD as i64)
}

/// A batch whose header has been bounds-checked; accessors cannot panic. Its header fields
/// are `BatchHeader`'s, reached through `Deref`.
#[derive(Clone, Copy, Debug)]
pub struct RecordBatch<'a> {
    buf: &'a [u8],
    header: BatchHeader<'a>,
}

/// The first `HEADER_SIZE` bytes of a batch, read without the records behind them: what an
/// append needs once it has patched a header apart from the request's records.
#[derive(Clone, Copy, Debug)]
pub struct BatchHeader<'a> {
    buf: &'a [u8],
}

impl<'a> std::ops::Deref for RecordBatch<'a> {
    type Target = BatchHeader<'a>;
    fn deref(&self) -> &BatchHeader<'a> {
        &self.header
    }
}

impl<'a> RecordBatch<'a> {
    /// Checks everything a broker must before it accepts bytes from a client or trusts bytes
    /// from disk: header present, length field equal to the slice, magic 2, CRC-32C, counts.
    pub fn validate(buf: &'a [u8]) -> Result<Self, BatchError> {
        let batch = Self::parse_header(buf)?;
        if batch.size() != buf.len() {
            return Err(BatchError::LengthMismatch(
                i32_at(buf, LENGTH_OFFSET) as i64 + LOG_OVERHEAD as i64,
                buf.len(),
            ));
        }
        let stored = batch.crc();
        let computed = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..]);
        if stored != computed {
            return Err(BatchError::Crc { stored, computed });
        }
        let (count, delta) = (batch.record_count(), batch.last_offset_delta());
        // A batch rewritten by the cleaner keeps its offset span with fewer records (Kafka's
        // cleaner does the same), so the count may fall short of the span, never exceed it.
        if count < 0 || delta < 0 || count as i64 > delta as i64 + 1 {
            return Err(BatchError::Count { count, delta });
        }
        Ok(batch)
    }

    /// Header-only view: enough for offsets and sizes, without touching the records.
    pub fn parse_header(buf: &'a [u8]) -> Result<Self, BatchError> {
        let header = BatchHeader::parse(buf)?;
        let len = header.size();
        if len > buf.len() {
            return Err(BatchError::LengthMismatch(len as i64, buf.len()));
        }
        Ok(Self {
            buf: &buf[..len],
            header,
        })
    }

    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }
    pub fn size(&self) -> usize {
        self.buf.len()
    }
    /// The records section (compressed when the attributes say so).
    pub fn records(&self) -> &'a [u8] {
        &self.buf[HEADER_SIZE..]
    }
}

impl<'a> BatchHeader<'a> {
    /// The header at the start of `buf` (at least `HEADER_SIZE` bytes; the records may or may
    /// not follow), with the checks every reader makes: magic 2, a length that covers the
    /// header.
    pub fn parse(buf: &'a [u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_SIZE {
            return Err(BatchError::TooShort(buf.len()));
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != 2 {
            return Err(BatchError::Magic(magic));
        }
        let len = i32_at(buf, LENGTH_OFFSET) as i64 + LOG_OVERHEAD as i64;
        if len < HEADER_SIZE as i64 {
            return Err(BatchError::LengthMismatch(len, buf.len()));
        }
        Ok(Self {
            buf: &buf[..HEADER_SIZE],
        })
    }

    /// The whole batch's size, records included, as its length field says.
    pub fn size(&self) -> usize {
        (i32_at(self.buf, LENGTH_OFFSET) as i64 + LOG_OVERHEAD as i64) as usize
    }
    pub fn base_offset(&self) -> i64 {
        i64_at(self.buf, 0)
    }
    pub fn crc(&self) -> u32 {
        i32_at(self.buf, CRC_OFFSET) as u32
    }
    pub fn attributes(&self) -> i16 {
        i16_at(self.buf, ATTRIBUTES_OFFSET)
    }
    pub fn compression(&self) -> i16 {
        self.attributes() & 0x07
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & TIMESTAMP_TYPE_BIT != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_BIT != 0
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32_at(self.buf, LAST_OFFSET_DELTA_OFFSET)
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + self.last_offset_delta() as i64
    }
    pub fn base_timestamp(&self) -> i64 {
        i64_at(self.buf, BASE_TIMESTAMP_OFFSET)
    }
    pub fn max_timestamp(&self) -> i64 {
        i64_at(self.buf, MAX_TIMESTAMP_OFFSET)
    }
    pub fn producer_id(&self) -> i64 {
        i64_at(self.buf, PRODUCER_ID_OFFSET)
    }
    pub fn producer_epoch(&self) -> i16 {
        i16_at(self.buf, PRODUCER_EPOCH_OFFSET)
    }
    pub fn base_sequence(&self) -> i32 {
        i32_at(self.buf, BASE_SEQUENCE_OFFSET)
    }
    /// Sequence of the last record; wraps at i32::MAX as Kafka's producers do.
    pub fn last_sequence(&self) -> i32 {
        let base = self.base_sequence();
        if base < 0 {
            return base;
        }
        let last = base as i64 + self.last_offset_delta() as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
    pub fn record_count(&self) -> i32 {
        i32_at(self.buf, RECORD_COUNT_OFFSET)
    }
}

/// Fields the broker owns in a batch it accepts.
pub fn set_base_offset(buf: &mut [u8], offset: i64) {
    buf[..8].copy_from_slice(&offset.to_be_bytes());
}

/// Leader epoch lies outside the CRC; a single broker is always at epoch 0.
pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) {
    buf[LEADER_EPOCH_OFFSET..LEADER_EPOCH_OFFSET + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `now` as its max timestamp and re-seals the CRC,
/// exactly as Kafka's broker does for topics with `message.timestamp.type=LogAppendTime`.
/// `head` is the batch up to wherever the caller split it (at least its header), `rest`
/// what follows: an append patches a header of its own and leaves the records where the
/// request put them.
pub fn set_log_append_time(head: &mut [u8], rest: &[u8], now: i64) {
    let attrs = i16_at(head, ATTRIBUTES_OFFSET) | TIMESTAMP_TYPE_BIT;
    head[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    head[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&now.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[ATTRIBUTES_OFFSET..]), rest);
    head[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// What a batch's first `HEADER_SIZE` bytes say, for walking the batches of a file without
/// reading their records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHead {
    pub base_offset: i64,
    /// The whole batch's size, header included.
    pub size: u64,
    pub is_control: bool,
    pub record_count: i32,
}

/// Reads a batch header from the start of `buf` (at least `HEADER_SIZE` bytes), with the
/// checks of `BatchHeader::parse` (magic 2, a length that covers the header).
pub fn peek_header(buf: &[u8]) -> Result<BatchHead, BatchError> {
    let header = BatchHeader::parse(buf)?;
    Ok(BatchHead {
        base_offset: header.base_offset(),
        size: header.size() as u64,
        is_control: header.is_control(),
        record_count: header.record_count(),
    })
}

/// CRC-32C of a whole batch of `size` bytes from its header alone: the batch's own
/// checksum covers everything past the attributes' offset, and the header holds the bytes
/// before it, so the two combine without the records being read. `header` is at least
/// `HEADER_SIZE` bytes (see `peek_header`).
pub fn whole_batch_crc(header: &[u8], size: u64) -> u32 {
    let stored = i32_at(header, CRC_OFFSET) as u32;
    let covered = size.saturating_sub(ATTRIBUTES_OFFSET as u64);
    super::crc::combine(
        crc32c::crc32c(&header[..ATTRIBUTES_OFFSET]),
        stored,
        covered,
    )
}

/// Iterates the batches of a buffer by their headers, stopping at the first incomplete one.
pub struct BatchHeaders<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BatchHeaders<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    /// Bytes consumed by the complete batches returned so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for BatchHeaders<'a> {
    type Item = Result<RecordBatch<'a>, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        let size = batch_size(rest)?;
        if size < HEADER_SIZE as i64 {
            return Some(Err(BatchError::LengthMismatch(size, rest.len())));
        }
        if size > rest.len() as i64 {
            return None;
        }
        match RecordBatch::parse_header(&rest[..size as usize]) {
            Ok(b) => {
                self.pos += size as usize;
                Some(Ok(b))
            }
            Err(e) => Some(Err(e)),
        }
    }
}

/// Reads a zig-zag varint (the encoding of record fields) and returns it with its length.
pub fn read_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, b) in buf.iter().enumerate().take(10) {
        value |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            let v = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((v, i + 1));
        }
    }
    None
}

/// (offset, timestamp) of the first record with timestamp ≥ `target`, decompressing the
/// batch if it must. A batch that cannot be read stands for itself as a whole.
pub fn first_offset_at_or_after(batch: &RecordBatch<'_>, target: i64) -> Option<(i64, i64)> {
    if batch.max_timestamp() < target {
        return None;
    }
    match codec::find_record(batch, codec::DEFAULT_DECOMPRESSED_LIMIT, |ts| ts >= target) {
        Ok(Some(found)) => Some(found),
        Ok(None) => Some((batch.base_offset(), batch.max_timestamp())),
        Err(e) => {
            tracing::warn!(base_offset = batch.base_offset(), error = %e, "unreadable batch in a timestamp lookup");
            Some((batch.base_offset(), batch.max_timestamp()))
        }
    }
}

/// Offset of the first record that carries the batch's max timestamp (Kafka's
/// `offsetOfMaxTimestamp`), for ListOffsets' MAX_TIMESTAMP.
pub fn offset_of_max_timestamp(batch: &RecordBatch<'_>) -> i64 {
    let max = batch.max_timestamp();
    match codec::find_record(batch, codec::DEFAULT_DECOMPRESSED_LIMIT, |ts| ts == max) {
        Ok(Some((offset, _))) => offset,
        Ok(None) => batch.last_offset(),
        Err(e) => {
            tracing::warn!(base_offset = batch.base_offset(), error = %e, "unreadable batch in a max timestamp lookup");
            batch.last_offset()
        }
    }
}

/// One record of an uncompressed records section, as it lies in the batch.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// The whole record, its length prefix included (copied as-is when it is kept).
    pub raw: &'a [u8],
    pub timestamp_delta: i64,
    pub offset_delta: i64,
    /// `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// `None` for a null value: a tombstone.
    pub value: Option<&'a [u8]>,
}

/// Parses `count` records of an uncompressed records section; `None` when they do not fit.
pub fn parse_records(mut data: &[u8], count: i32) -> Option<Vec<RecordView<'_>>> {
    let mut out = Vec::with_capacity(count.clamp(0, 4096) as usize);
    for _ in 0..count.max(0) {
        let (len, n) = read_varint(data)?;
        let end = n.checked_add(usize::try_from(len).ok()?)?;
        let body = data.get(n..end)?;
        let mut at = 1; // attributes
        let (timestamp_delta, m) = read_varint(body.get(at..)?)?;
        at += m;
        let (offset_delta, m) = read_varint(body.get(at..)?)?;
        at += m;
        let (key_len, m) = read_varint(body.get(at..)?)?;
        at += m;
        let key = if key_len < 0 {
            None
        } else {
            let k = body.get(at..at.checked_add(key_len as usize)?)?;
            at += key_len as usize;
            Some(k)
        };
        let (value_len, m) = read_varint(body.get(at..)?)?;
        at += m;
        let value = if value_len < 0 {
            None
        } else {
            Some(body.get(at..at.checked_add(value_len as usize)?)?)
        };
        out.push(RecordView {
            raw: &data[..end],
            timestamp_delta,
            offset_delta,
            key,
            value,
        });
        data = &data[end..];
    }
    Some(out)
}

/// A batch with `header`'s offsets, producer fields and attributes around a new records
/// section (already compressed when the attributes say so), CRC sealed. The base offset and
/// last offset delta stay those of the original batch, so offsets never move.
pub fn rebuild_batch(header: &RecordBatch<'_>, records: &[u8], count: i32, max_ts: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_SIZE + records.len());
    b.extend_from_slice(&header.bytes()[..HEADER_SIZE]);
    b.extend_from_slice(records);
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
    b[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&max_ts.to_be_bytes());
    b[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch of no records spanning `base..=last` (Kafka's empty batch header): it keeps a
/// producer's last sequence when the cleaner removed its records, and marks where a cleaned
/// segment's offsets end.
pub fn empty_batch(base: i64, last: i64, template: Option<&RecordBatch<'_>>) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_SIZE];
    b[..8].copy_from_slice(&base.to_be_bytes());
    b[LENGTH_OFFSET..LENGTH_OFFSET + 4]
        .copy_from_slice(&((HEADER_SIZE - LOG_OVERHEAD) as i32).to_be_bytes());
    b[MAGIC_OFFSET] = 2;
    b[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
        .copy_from_slice(&((last - base) as i32).to_be_bytes());
    match template {
        Some(t) => {
            // Compression bits cleared: there is nothing to compress.
            let attrs = t.attributes() & !0x07;
            b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
            let ts = t.max_timestamp();
            b[BASE_TIMESTAMP_OFFSET..BASE_TIMESTAMP_OFFSET + 8].copy_from_slice(&ts.to_be_bytes());
            b[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&ts.to_be_bytes());
            b[PRODUCER_ID_OFFSET..BASE_SEQUENCE_OFFSET + 4]
                .copy_from_slice(&t.bytes()[PRODUCER_ID_OFFSET..BASE_SEQUENCE_OFFSET + 4]);
        }
        None => {
            b[BASE_TIMESTAMP_OFFSET..BASE_TIMESTAMP_OFFSET + 8]
                .copy_from_slice(&(-1i64).to_be_bytes());
            b[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
                .copy_from_slice(&(-1i64).to_be_bytes());
            b[PRODUCER_ID_OFFSET..PRODUCER_ID_OFFSET + 8].copy_from_slice(&(-1i64).to_be_bytes());
            b[PRODUCER_EPOCH_OFFSET..PRODUCER_EPOCH_OFFSET + 2]
                .copy_from_slice(&(-1i16).to_be_bytes());
            b[BASE_SEQUENCE_OFFSET..BASE_SEQUENCE_OFFSET + 4]
                .copy_from_slice(&(-1i32).to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// A transaction marker: a control batch of one record whose key says commit (1) or abort
/// (0) and whose value carries the coordinator epoch, as Kafka's EndTransactionMarker.
pub fn control_batch(producer_id: i64, epoch: i16, commit: bool, timestamp: i64) -> Vec<u8> {
    let mut key = Vec::new();
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&i16::from(commit).to_be_bytes());
    let mut value = Vec::new();
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&0i32.to_be_bytes()); // coordinator epoch: one broker, always 0
    let mut body = vec![0u8];
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(&value);
    put_varint(&mut body, 0); // headers
    let mut records = Vec::new();
    put_varint(&mut records, body.len() as i64);
    records.extend_from_slice(&body);

    let mut b = Vec::with_capacity(HEADER_SIZE + records.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&(TRANSACTIONAL_BIT | CONTROL_BIT).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&timestamp.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Whether a control batch is a commit marker (Some(true)) or an abort (Some(false)); None
/// for other control records or one that does not parse.
pub fn marker_type(batch: &RecordBatch<'_>) -> Option<bool> {
    if !batch.is_control() {
        return None;
    }
    let rec = batch.records();
    let (_len, n1) = read_varint(rec)?;
    let mut at = n1 + 1; // attributes
    let (_ts, n) = read_varint(rec.get(at..)?)?;
    at += n;
    let (_od, n) = read_varint(rec.get(at..)?)?;
    at += n;
    let (key_len, n) = read_varint(rec.get(at..)?)?;
    at += n;
    if key_len < 4 {
        return None;
    }
    let kind = i16::from_be_bytes(rec.get(at + 2..at + 4)?.try_into().ok()?);
    match kind {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

#[cfg(test)]
pub mod tests;
