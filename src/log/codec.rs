//! The records inside a batch: decompressing and decoding them, and building a new v2 batch
//! from records with any of Kafka's codecs.
//!
//! The broker looks inside a batch only where Kafka's does: finding a record by timestamp,
//! recompressing into a topic's `compression.type`, and compaction. Everything here reads
//! untrusted bytes, so decompression stops at a caller-given limit and every length is
//! checked before it is used.
//!
//! # Record format (inside the possibly compressed records section)
//! ```text
//! length varint, attributes i8, timestamp_delta varlong, offset_delta varint,
//! key_length varint (-1 = null), key, value_length varint (-1 = null), value,
//! header_count varint, then per header: key_length varint, key, value_length varint, value
//! ```
//!
//! # Codecs, as Kafka's clients write them
//! * gzip (1): a gzip stream (members may be concatenated).
//! * snappy (2): the Java client writes xerial framing (`\x82SNAPPY\0` header, then blocks of
//!   `u32` length + raw snappy); other clients may write one raw snappy block. Both are read;
//!   xerial framing is written, which every client reads.
//! * lz4 (3): the standard LZ4 frame format, independent 64 KiB blocks.
//! * zstd (4): a zstd frame.

use super::record_batch::{read_varint, RecordBatch, HEADER_SIZE, LOG_OVERHEAD};
use bytes::Bytes;
use std::io::{Read, Write};
use thiserror::Error;

/// Decompressed size allowed when the caller has no better bound: far above any batch a
/// default-configured producer sends (1 MiB `max.request.size`), yet small enough that a
/// hostile batch cannot exhaust memory.
pub const DEFAULT_DECOMPRESSED_LIMIT: usize = 64 << 20;

/// The decompressed size to allow for a topic whose batches may be `max_message_bytes`
/// long compressed: redundant data legitimately compresses well, so leave room.
pub fn decompressed_limit(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_mul(16)
        .max(DEFAULT_DECOMPRESSED_LIMIT)
}

/// Largest zstd window accepted (2^25 = 32 MiB): producers use at most a few MiB; the
/// decoder's default (128 MiB) would let one small frame claim that much memory.
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// Kafka's default levels (`compression.gzip.level` 6 = zlib default, `compression.zstd.level` 3).
const GZIP_LEVEL: u32 = 6;
const ZSTD_LEVEL: i32 = 3;

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// xerial header: magic, then version 1 and minimum compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Uncompressed bytes per xerial block, as snappy-java's `SnappyOutputStream`.
const XERIAL_BLOCK: usize = 32 * 1024;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
/// KIP-534: the base timestamp holds the delete horizon of a compacted batch's tombstones.
const DELETE_HORIZON_BIT: i16 = 0x40;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// Kafka: UNSUPPORTED_COMPRESSION_TYPE.
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    /// The records would decompress to more than the limit.
    #[error("records decompress to more than {0} bytes")]
    TooLarge(usize),
    /// Kafka: CORRUPT_MESSAGE.
    #[error("corrupt {codec} data: {detail}")]
    Corrupt { codec: &'static str, detail: String },
    /// Kafka: CORRUPT_MESSAGE / INVALID_RECORD.
    #[error("malformed record: {0}")]
    Record(&'static str),
    #[error("batch says {declared} records but holds {found}")]
    Count { declared: i32, found: usize },
    #[error("compression failed: {0}")]
    Compress(String),
}

/// Kafka's codecs, numbered as in the batch attributes' low three bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    /// The codec of a batch's attributes.
    pub fn from_attributes(attributes: i16) -> Result<Self, CodecError> {
        Self::from_id(attributes & 0x07)
    }

    pub fn from_id(id: i16) -> Result<Self, CodecError> {
        Ok(match id {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            other => return Err(CodecError::UnknownCodec(other)),
        })
    }

    /// The codec a topic's `compression.type` names; `None` for `producer` (keep the
    /// producer's codec) or an unknown name.
    pub fn from_topic_config(name: &str) -> Option<Self> {
        Some(match name {
            "uncompressed" | "none" => Self::None,
            "gzip" => Self::Gzip,
            "snappy" => Self::Snappy,
            "lz4" => Self::Lz4,
            "zstd" => Self::Zstd,
            _ => return None,
        })
    }

    pub fn id(self) -> i16 {
        self as i16
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// One record header. Kafka's header key is a string; it is kept as bytes here because
/// the broker never interprets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// One record, owned (the key and value share the decompressed buffer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Per-record attributes byte: unused by Kafka (always 0), kept as read.
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

impl Record {
    pub fn offset(&self, base_offset: i64) -> i64 {
        base_offset + self.offset_delta as i64
    }
    pub fn timestamp(&self, base_timestamp: i64) -> i64 {
        base_timestamp.saturating_add(self.timestamp_delta)
    }
}

fn corrupt(codec: &'static str, e: impl std::fmt::Display) -> CodecError {
    CodecError::Corrupt {
        codec,
        detail: e.to_string(),
    }
}

/// Reads all of `r`, failing once more than `limit` bytes come out.
fn read_bounded(
    mut r: impl Read,
    limit: usize,
    codec: &'static str,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let cap = (limit as u64).saturating_add(1);
    (&mut r)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(codec, e))?;
    if out.len() > limit {
        return Err(CodecError::TooLarge(limit));
    }
    Ok(out)
}

fn snappy_raw(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), CodecError> {
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt("snappy", e))?;
    if out.len().saturating_add(len) > limit {
        return Err(CodecError::TooLarge(limit));
    }
    let start = out.len();
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| corrupt("snappy", e))?;
    out.truncate(start + n);
    Ok(())
}

fn snappy_decompress(input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    if input.len() < XERIAL_HEADER.len() || !input.starts_with(XERIAL_MAGIC) {
        snappy_raw(input, &mut out, limit)?;
        return Ok(out);
    }
    let mut rest = &input[XERIAL_HEADER.len()..];
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(corrupt("snappy", "truncated xerial block length"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some(block) = tail.get(..len) else {
            return Err(corrupt("snappy", "truncated xerial block"));
        };
        snappy_raw(block, &mut out, limit)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// Inflates `input` (written with `codec`), refusing to produce more than `limit` bytes.
pub fn decompress(codec: Compression, input: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    match codec {
        Compression::None => {
            if input.len() > limit {
                return Err(CodecError::TooLarge(limit));
            }
            Ok(input.to_vec())
        }
        Compression::Gzip => read_bounded(flate2::read::MultiGzDecoder::new(input), limit, "gzip"),
        Compression::Snappy => snappy_decompress(input, limit),
        Compression::Lz4 => read_bounded(lz4_flex::frame::FrameDecoder::new(input), limit, "lz4"),
        Compression::Zstd => {
            let mut d =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt("zstd", e))?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| corrupt("zstd", e))?;
            read_bounded(d, limit, "zstd")
        }
    }
}

/// Compresses `input` with `codec` at Kafka's default level, in the framing every client reads.
pub fn compress(codec: Compression, input: &[u8]) -> Result<Vec<u8>, CodecError> {
    let fail = |e: std::io::Error| CodecError::Compress(e.to_string());
    match codec {
        Compression::None => Ok(input.to_vec()),
        Compression::Gzip => {
            let mut w = flate2::write::GzEncoder::new(
                Vec::with_capacity(input.len() / 2 + 64),
                flate2::Compression::new(GZIP_LEVEL),
            );
            w.write_all(input).map_err(fail)?;
            w.finish().map_err(fail)
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER.len() + input.len() / 2 + 64);
            out.extend_from_slice(XERIAL_HEADER);
            let mut enc = snap::raw::Encoder::new();
            for chunk in input.chunks(XERIAL_BLOCK) {
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                out.resize(at + 4 + snap::raw::max_compress_len(chunk.len()), 0);
                let n = enc
                    .compress(chunk, &mut out[at + 4..])
                    .map_err(|e| CodecError::Compress(e.to_string()))?;
                out.truncate(at + 4 + n);
                out[at..at + 4].copy_from_slice(&(n as u32).to_be_bytes());
            }
            Ok(out)
        }
        Compression::Lz4 => {
            let mut info = lz4_flex::frame::FrameInfo::new();
            info.block_size = lz4_flex::frame::BlockSize::Max64KB;
            info.block_mode = lz4_flex::frame::BlockMode::Independent;
            let mut w = lz4_flex::frame::FrameEncoder::with_frame_info(
                info,
                Vec::with_capacity(input.len() / 2 + 64),
            );
            w.write_all(input).map_err(fail)?;
            w.finish().map_err(|e| CodecError::Compress(e.to_string()))
        }
        Compression::Zstd => zstd::bulk::compress(input, ZSTD_LEVEL).map_err(fail),
    }
}

/// The records section of `batch`, decompressed (copied when the batch is uncompressed).
pub fn records_section(batch: &RecordBatch<'_>, limit: usize) -> Result<Bytes, CodecError> {
    let codec = Compression::from_attributes(batch.attributes())?;
    Ok(Bytes::from(decompress(codec, batch.records(), limit)?))
}

/// Decodes every record of `batch`, decompressing as its attributes say. The record count
/// in the header must match the records found, with nothing left over.
pub fn decode_records(batch: &RecordBatch<'_>, limit: usize) -> Result<Vec<Record>, CodecError> {
    let section = records_section(batch, limit)?;
    decode_section(&section, batch.record_count())
}

/// Decodes `count` records from an uncompressed records section.
pub fn decode_section(section: &Bytes, count: i32) -> Result<Vec<Record>, CodecError> {
    if count < 0 {
        return Err(CodecError::Record("negative record count"));
    }
    // A record takes at least 7 bytes: never trust the count for the allocation.
    let mut out = Vec::with_capacity((count as usize).min(section.len() / 7 + 1));
    let mut r = Reader {
        buf: section,
        pos: 0,
    };
    while r.pos < section.len() {
        if out.len() == count as usize {
            return Err(CodecError::Count {
                declared: count,
                found: out.len() + 1,
            });
        }
        out.push(r.record()?);
    }
    if out.len() != count as usize {
        return Err(CodecError::Count {
            declared: count,
            found: out.len(),
        });
    }
    Ok(out)
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn varlong(&mut self, end: usize) -> Result<i64, CodecError> {
        let (v, n) =
            read_varint(&self.buf[self.pos..end]).ok_or(CodecError::Record("bad varint"))?;
        self.pos += n;
        Ok(v)
    }
    fn varint(&mut self, end: usize) -> Result<i32, CodecError> {
        i32::try_from(self.varlong(end)?).map_err(|_| CodecError::Record("varint out of range"))
    }
    /// A nullable byte string (length -1 = null).
    fn bytes(&mut self, end: usize) -> Result<Option<Bytes>, CodecError> {
        let len = self.varint(end)?;
        if len < 0 {
            return if len == -1 {
                Ok(None)
            } else {
                Err(CodecError::Record("negative length"))
            };
        }
        let stop = self
            .pos
            .checked_add(len as usize)
            .filter(|&s| s <= end)
            .ok_or(CodecError::Record("field runs past its record"))?;
        let b = self.buf.slice(self.pos..stop);
        self.pos = stop;
        Ok(Some(b))
    }
    fn record(&mut self) -> Result<Record, CodecError> {
        let len = self.varint(self.buf.len())?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.pos.checked_add(l))
            .filter(|&e| e <= self.buf.len())
            .ok_or(CodecError::Record("record length runs past the batch"))?;
        let attributes = *self
            .buf
            .get(self.pos)
            .filter(|_| self.pos < end)
            .ok_or(CodecError::Record("empty record"))? as i8;
        self.pos += 1;
        let timestamp_delta = self.varlong(end)?;
        let offset_delta = self.varint(end)?;
        let key = self.bytes(end)?;
        let value = self.bytes(end)?;
        let n = self.varint(end)?;
        if n < 0 {
            return Err(CodecError::Record("negative header count"));
        }
        // A header takes at least 2 bytes.
        let mut headers = Vec::with_capacity((n as usize).min((end - self.pos) / 2));
        for _ in 0..n {
            let key = self
                .bytes(end)?
                .ok_or(CodecError::Record("null header key"))?;
            let value = self.bytes(end)?;
            headers.push(RecordHeader { key, value });
        }
        if self.pos != end {
            return Err(CodecError::Record(
                "record length does not match its fields",
            ));
        }
        Ok(Record {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        })
    }
}

/// The header fields of a batch to build. `from_batch` copies them from an existing batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSpec {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub compression: Compression,
    pub log_append_time: bool,
    pub transactional: bool,
    pub control: bool,
    /// KIP-534: `base_timestamp` is the delete horizon (set by the cleaner).
    pub delete_horizon: bool,
    pub base_timestamp: i64,
    /// `None`: the largest record timestamp (CreateTime), or the base timestamp when there
    /// are no records. A LogAppendTime batch carries the append time here.
    pub max_timestamp: Option<i64>,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// `None`: the last record's offset delta (0 when there are none). Set it to keep a
    /// batch's last offset when its last records were dropped (compaction keeps it so
    /// that the producer's last sequence survives).
    pub last_offset_delta: Option<i32>,
}

impl BatchSpec {
    /// An uncompressed, non-idempotent CreateTime batch.
    pub fn new(base_offset: i64, base_timestamp: i64) -> Self {
        Self {
            base_offset,
            partition_leader_epoch: 0,
            compression: Compression::None,
            log_append_time: false,
            transactional: false,
            control: false,
            delete_horizon: false,
            base_timestamp,
            max_timestamp: None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            last_offset_delta: None,
        }
    }

    /// Every header field of `batch`, including its max timestamp and last offset delta.
    /// A builder that drops records sets `max_timestamp` to `None` (recomputed from what is
    /// kept, unless LogAppendTime) and decides whether to keep `last_offset_delta`.
    pub fn from_batch(batch: &RecordBatch<'_>) -> Result<Self, CodecError> {
        let a = batch.attributes();
        Ok(Self {
            base_offset: batch.base_offset(),
            partition_leader_epoch: i32::from_be_bytes(
                batch.bytes()[12..16].try_into().unwrap_or_default(),
            ),
            compression: Compression::from_attributes(a)?,
            log_append_time: a & TIMESTAMP_TYPE_BIT != 0,
            transactional: a & TRANSACTIONAL_BIT != 0,
            control: a & CONTROL_BIT != 0,
            delete_horizon: a & DELETE_HORIZON_BIT != 0,
            base_timestamp: batch.base_timestamp(),
            max_timestamp: Some(batch.max_timestamp()),
            producer_id: batch.producer_id(),
            producer_epoch: batch.producer_epoch(),
            base_sequence: batch.base_sequence(),
            last_offset_delta: Some(batch.last_offset_delta()),
        })
    }

    fn attributes(&self) -> i16 {
        let mut a = self.compression.id();
        for (on, bit) in [
            (self.log_append_time, TIMESTAMP_TYPE_BIT),
            (self.transactional, TRANSACTIONAL_BIT),
            (self.control, CONTROL_BIT),
            (self.delete_horizon, DELETE_HORIZON_BIT),
        ] {
            if on {
                a |= bit;
            }
        }
        a
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_nullable(out: &mut Vec<u8>, b: &Option<Bytes>) {
    match b {
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varint(out, -1),
    }
}

/// Appends `records` in the uncompressed record format.
pub fn encode_section(out: &mut Vec<u8>, records: &[Record]) {
    let mut body = Vec::new();
    for r in records {
        body.clear();
        body.push(r.attributes as u8);
        put_varint(&mut body, r.timestamp_delta);
        put_varint(&mut body, r.offset_delta as i64);
        put_nullable(&mut body, &r.key);
        put_nullable(&mut body, &r.value);
        put_varint(&mut body, r.headers.len() as i64);
        for h in &r.headers {
            put_varint(&mut body, h.key.len() as i64);
            body.extend_from_slice(&h.key);
            put_nullable(&mut body, &h.value);
        }
        put_varint(out, body.len() as i64);
        out.extend_from_slice(&body);
    }
}

/// Builds a complete v2 batch of `records` (CRC-32C, lengths, count, last offset delta and
/// max timestamp computed unless `spec` fixes them), compressed with `spec.compression`.
pub fn encode_batch(spec: &BatchSpec, records: &[Record]) -> Result<Vec<u8>, CodecError> {
    let mut section = Vec::new();
    encode_section(&mut section, records);
    let payload = match spec.compression {
        Compression::None => section,
        codec => compress(codec, &section)?,
    };
    let last_offset_delta = spec
        .last_offset_delta
        .unwrap_or_else(|| records.last().map_or(0, |r| r.offset_delta));
    let max_timestamp = spec.max_timestamp.unwrap_or_else(|| {
        records
            .iter()
            .map(|r| r.timestamp(spec.base_timestamp))
            .max()
            .unwrap_or(spec.base_timestamp)
    });
    let count = i32::try_from(records.len()).map_err(|_| CodecError::Record("too many records"))?;
    let length = i32::try_from(HEADER_SIZE - LOG_OVERHEAD + payload.len())
        .map_err(|_| CodecError::Record("batch too large"))?;

    let mut b = Vec::with_capacity(HEADER_SIZE + payload.len());
    b.extend_from_slice(&spec.base_offset.to_be_bytes());
    b.extend_from_slice(&length.to_be_bytes());
    b.extend_from_slice(&spec.partition_leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&spec.attributes().to_be_bytes());
    b.extend_from_slice(&last_offset_delta.to_be_bytes());
    b.extend_from_slice(&spec.base_timestamp.to_be_bytes());
    b.extend_from_slice(&max_timestamp.to_be_bytes());
    b.extend_from_slice(&spec.producer_id.to_be_bytes());
    b.extend_from_slice(&spec.producer_epoch.to_be_bytes());
    b.extend_from_slice(&spec.base_sequence.to_be_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// (offset, timestamp) of the first record of `batch` whose timestamp satisfies `hit`,
/// decompressing the batch if it must. In a LogAppendTime batch every record carries the
/// batch's max timestamp, as Kafka's clients read it.
pub fn find_record(
    batch: &RecordBatch<'_>,
    limit: usize,
    hit: impl Fn(i64) -> bool,
) -> Result<Option<(i64, i64)>, CodecError> {
    if batch.is_log_append_time() {
        let ts = batch.max_timestamp();
        return Ok((batch.record_count() > 0 && hit(ts)).then(|| (batch.base_offset(), ts)));
    }
    let inflated;
    let section = match Compression::from_attributes(batch.attributes())? {
        Compression::None => batch.records(),
        codec => {
            inflated = decompress(codec, batch.records(), limit)?;
            &inflated[..]
        }
    };
    let mut rest = section;
    for _ in 0..batch.record_count() {
        let bad = CodecError::Record("record header does not parse");
        let (len, n) = read_varint(rest).ok_or(bad.clone())?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| n.checked_add(l))
            .filter(|&e| e <= rest.len())
            .ok_or(bad.clone())?;
        // attributes (1 byte), then the timestamp delta and offset delta varints.
        let body = &rest[n..end];
        let (ts_delta, m) = body.get(1..).and_then(read_varint).ok_or(bad.clone())?;
        let (off_delta, _) = body.get(1 + m..).and_then(read_varint).ok_or(bad)?;
        let ts = batch.base_timestamp().saturating_add(ts_delta);
        if hit(ts) {
            return Ok(Some((batch.base_offset().saturating_add(off_delta), ts)));
        }
        rest = &rest[end..];
    }
    Ok(None)
}

/// The same records in another codec; every other header field is kept.
pub fn recompress(
    batch: &RecordBatch<'_>,
    codec: Compression,
    limit: usize,
) -> Result<Vec<u8>, CodecError> {
    let records = decode_records(batch, limit)?;
    let mut spec = BatchSpec::from_batch(batch)?;
    spec.compression = codec;
    if !spec.log_append_time {
        spec.max_timestamp = None;
    }
    encode_batch(&spec, &records)
}

#[cfg(test)]
mod tests;
