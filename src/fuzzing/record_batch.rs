//! The `record_batch` fuzz target: produce data appended to a real partition under a
//! topic's rules, then read back as fetches, timestamp lookups, compaction and the console
//! read it. Its appends and batch readers also serve the `request` target (the records of
//! a Produce) and the `startup` target (batches read from damaged files).
//!
//! Files: one partition in the scratch directory, replaced by an empty one every
//! `APPENDS_PER_PARTITION` appends.

use super::{fresh_dir, scratch, NOW_MS};
use crate::broker::partition::{AppendRules, Partition};
use crate::log::codec::{self, Compression};
use crate::log::record_batch::{self, BatchHeaders, RecordBatch};
use crate::log::LogConfig;
use kafka_protocol::error::ResponseError;
use std::sync::Mutex;

/// Appends to one partition before it is replaced by a fresh one, so the scratch directory
/// stays small over millions of inputs.
const APPENDS_PER_PARTITION: u32 = 2000;

struct Scratch {
    partition: Partition,
    appends: u32,
    generation: u64,
}

fn open_partition(generation: u64) -> Partition {
    let dir = scratch("partition").join(generation.to_string());
    fresh_dir(&dir);
    let config = LogConfig {
        segment_bytes: 64 << 10,
        segment_ms: u64::MAX / 2,
        index_interval_bytes: 256,
    };
    Partition::open("fuzz", &dir, config).expect("a fresh partition opens")
}

/// Appends `records` as a Produce for a topic whose rules `rules_byte` picks, on a real
/// partition in the scratch directory (replaced by an empty one now and then).
pub(super) fn append(records: &[u8], rules_byte: u8) -> Result<(), ResponseError> {
    static P: Mutex<Option<Scratch>> = Mutex::new(None);
    let mut guard = P.lock().unwrap_or_else(|p| p.into_inner());
    let s = guard.get_or_insert_with(|| Scratch {
        partition: open_partition(0),
        appends: 0,
        generation: 0,
    });
    s.appends += 1;
    if s.appends > APPENDS_PER_PARTITION {
        let _ = std::fs::remove_dir_all(scratch("partition").join(s.generation.to_string()));
        s.generation += 1;
        s.partition = open_partition(s.generation);
        s.appends = 0;
    }
    let rules = AppendRules {
        // Small enough that the fuzzer reaches MESSAGE_TOO_LARGE.
        max_message_bytes: if rules_byte & 0x40 != 0 { 512 } else { 1 << 20 },
        log_append_time: rules_byte & 0x08 != 0,
        compression: match rules_byte & 0x07 {
            5..=7 => None,
            id => Compression::from_id(id as i16).ok(),
        },
        too_few_replicas_for_acks_all: false,
        compact: rules_byte & 0x10 != 0,
    };
    let before = s.partition.log_end_offset();
    let result = s
        .partition
        .append(records, &rules, NOW_MS, &|_, _| Ok(()))
        .map(|_| ());
    if result.is_ok() {
        // Read back what was written, as a fetch and a timestamp lookup would.
        let p = &s.partition;
        if let Ok(data) = p.read(before, 1 << 20, true, false) {
            p.traffic.sent(&data.records);
            read_batches(&data.records);
        }
        let _ = p.offset_for_timestamp(NOW_MS - 1);
        let _ = p.max_timestamp();
    }
    result
}

/// Everything that reads batches back (fetch accounting, timestamp lookups, the console,
/// compaction's record parsing, transaction markers), within the bounds the broker uses.
pub(super) fn read_batches(buf: &[u8]) {
    for b in BatchHeaders::new(buf).map_while(Result::ok) {
        let _ = record_batch::first_offset_at_or_after(&b, NOW_MS);
        let _ = record_batch::offset_of_max_timestamp(&b);
        let _ = record_batch::marker_type(&b);
        let _ = codec::decode_records(&b, 1 << 20);
        if b.compression() == 0 {
            let _ = record_batch::parse_records(b.records(), b.record_count());
        }
        let _ = crate::broker::compaction::all_records_keyed(&b, 1 << 20);
    }
    crate::http::console::messages::decode_for_fuzzing(buf);
}

/// Re-seals the CRC of every batch whose header is whole, so that mutated inputs get past
/// the CRC check to what lies behind it.
fn reseal(buf: &mut [u8]) {
    let mut pos = 0;
    while let Some(size) = record_batch::batch_size(&buf[pos..]) {
        let Some(end) = usize::try_from(size)
            .ok()
            .filter(|&s| s >= record_batch::HEADER_SIZE)
            .and_then(|s| pos.checked_add(s))
            .filter(|&e| e <= buf.len())
        else {
            return;
        };
        let crc = crc32c::crc32c(&buf[pos + 21..end]);
        buf[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

/// Produce data for one partition: the first byte picks the topic's rules (bits 0-2 the
/// topic's `compression.type`, 5-7 meaning `producer`; bit 3 LogAppendTime; bit 4 compact;
/// bit 6 a small `max.message.bytes`; bit 7 keeps the CRCs as they are instead of
/// re-sealing them). Then the same bytes as a stored segment's would be read.
pub fn record_batch(data: &[u8]) {
    let Some((&rules, records)) = data.split_first() else {
        return;
    };
    let mut records = records.to_vec();
    if rules & 0x80 == 0 {
        reseal(&mut records);
    }
    let _ = append(&records, rules);
    read_batches(&records);
    if let Ok(b) = RecordBatch::validate(&records) {
        for codec in [Compression::None, Compression::Lz4] {
            let _ = codec::recompress(&b, codec, 1 << 20);
        }
    }
}

/// Seed inputs: batches of each codec under several topics' rules.
#[cfg(test)]
pub(super) mod seeds {
    use crate::fuzzing::seeds::{batches, save};

    pub(in crate::fuzzing) fn record_batch_seeds() {
        let all = batches();
        for (name, batch) in &all {
            for (rules, tag) in [
                (0x05u8, "producer"),
                (0x03, "to-lz4"),
                (0x18, "compact-logappendtime"),
                (0x41, "small-to-gzip"),
            ] {
                let mut input = vec![rules];
                input.extend(batch);
                save("record_batch", &format!("{name}-{tag}"), &input);
            }
        }
        let mut several = vec![0x05u8];
        for (_, b) in all.iter().take(4) {
            several.extend(b);
        }
        save("record_batch", "several", &several);
    }
}
