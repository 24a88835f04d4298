//! The broker's side of log compaction: which partitions of compacted topics are due a
//! cleaning (Kafka's `LogCleanerManager`: dirty ratio, `min.compaction.lag.ms`,
//! `max.compaction.lag.ms`, tombstones whose `delete.retention.ms` has run out), and running a
//! pass of `crate::log::cleaner` over one partition. The pass reads and writes on a blocking
//! thread without the partition lock; only the swap of each cleaned group takes it.
//!
//! Files: none of its own (the cleaner's, see `crate::log::cleaner`).

use super::partition::Partition;
use super::Topic;
use crate::config::Config;
use crate::log::cleaner::{self, BatchCodec, SegmentInfo, Settings, Stats, Throttle};
use crate::log::record_batch::{self, RecordBatch};
use std::io;

/// A compacted topic's settings, read at every pass (they may change at run time).
#[derive(Clone, Debug)]
pub struct TopicSettings {
    pub min_cleanable_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub cleaner: Settings,
}

/// A topic config's effective value, falling back to Kafka's default for the configs that
/// have no broker property here.
fn setting(topic: &Topic, broker: &Config, key: &str) -> String {
    let v = topic.config_value(broker, key);
    if !v.is_empty() {
        return v;
    }
    crate::config::TOPIC_ONLY_DEFAULTS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, d)| d.to_string())
        .unwrap_or_default()
}

impl TopicSettings {
    pub fn of(topic: &Topic, broker: &Config) -> Self {
        let int = |k: &str| setting(topic, broker, k).parse::<i64>().unwrap_or(0);
        Self {
            min_cleanable_ratio: setting(topic, broker, "min.cleanable.dirty.ratio")
                .parse()
                .unwrap_or(0.5),
            min_compaction_lag_ms: int("min.compaction.lag.ms").max(0),
            max_compaction_lag_ms: int("max.compaction.lag.ms").max(0),
            cleaner: Settings {
                delete_retention_ms: int("delete.retention.ms").max(0),
                segment_bytes: int("segment.bytes").max(14) as u64,
                index_interval: int("index.interval.bytes").max(0) as u64,
                dedupe_buffer_bytes: broker
                    .props
                    .int("log.cleaner.dedupe.buffer.size")
                    .max(1 << 20) as usize,
            },
        }
    }
}

/// Whether every record of a produced batch has a key (compacted topics refuse the rest with
/// INVALID_RECORD, as Kafka 4 does). Compressed batches are decompressed for it, within the
/// bound `max.message.bytes` gives.
pub fn all_records_keyed(b: &RecordBatch<'_>, max_message_bytes: usize) -> bool {
    use cleaner::BatchCodec;
    if b.compression() == 0 {
        return record_batch::parse_records(b.records(), b.record_count())
            .is_some_and(|rs| rs.iter().all(|r| r.key.is_some()));
    }
    let limit = crate::log::codec::decompressed_limit(max_message_bytes);
    match cleaner::KafkaCodecs.decompress(b.compression(), b.records()) {
        Ok(data) if data.len() <= limit => record_batch::parse_records(&data, b.record_count())
            .is_some_and(|rs| rs.iter().all(|r| r.key.is_some())),
        _ => false,
    }
}

/// First batch's timestamp of a segment (what `max.compaction.lag.ms` is measured from).
fn first_batch_timestamp(dir: &std::path::Path, seg: &SegmentInfo) -> i64 {
    use std::os::unix::fs::FileExt;
    let path = dir.join(crate::log::segment::file_name(seg.base_offset, ".log"));
    let mut head = [0u8; record_batch::HEADER_SIZE];
    match std::fs::File::open(path).and_then(|f| f.read_exact_at(&mut head, 0)) {
        Ok(()) => RecordBatch::parse_header(&head)
            .map(|b| b.base_timestamp())
            .unwrap_or(seg.max_timestamp),
        Err(_) => seg.max_timestamp,
    }
}

/// One cleaning pass over a partition if it is due; `None` when it was not. Blocking.
/// `delete_due`: a tombstone or marker kept by an earlier pass may now go.
pub fn clean_partition(
    partition: &Partition,
    settings: &TopicSettings,
    codec: &dyn BatchCodec,
    throttle: &mut Throttle,
    now_ms: i64,
    delete_due: bool,
) -> io::Result<Option<Stats>> {
    let (dir, closed, log_start, producers) = partition.with_log(|log, producers| {
        (
            log.dir().to_path_buf(),
            log.closed_segments(),
            log.log_start_offset(),
            producers.last_records(),
        )
    });
    let stable = partition.last_stable_offset();
    let segments: Vec<SegmentInfo> = closed.iter().map(SegmentInfo::of).collect();
    let first_dirty = cleaner::read_checkpoint(&dir).max(log_start);
    // Only whole segments below the last stable offset and older than the minimum lag.
    let lag_cutoff = now_ms - settings.min_compaction_lag_ms;
    let cleanable: Vec<SegmentInfo> = segments
        .iter()
        .take_while(|s| {
            s.next_offset <= stable
                && (s.next_offset <= first_dirty || s.max_timestamp <= lag_cutoff)
        })
        .cloned()
        .collect();
    let (clean, dirty): (Vec<SegmentInfo>, Vec<SegmentInfo>) = cleanable
        .iter()
        .cloned()
        .partition(|s| s.next_offset <= first_dirty);
    let clean_bytes: u64 = clean.iter().map(|s| s.size).sum();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size).sum();
    if cleanable.is_empty() || (dirty_bytes == 0 && !delete_due) {
        return Ok(None);
    }
    let ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes).max(1) as f64;
    let max_lag_due = dirty.first().is_some_and(|s| {
        first_batch_timestamp(&dir, s) < now_ms.saturating_sub(settings.max_compaction_lag_ms)
    });
    if !(ratio > settings.min_cleanable_ratio || max_lag_due || delete_due) {
        return Ok(None);
    }
    let mut stats = Stats::default();
    let aborted = cleaner::aborted_in(&dir, &cleanable);
    let (map, end) = cleaner::build_offset_map(
        &dir,
        &dirty,
        first_dirty,
        &aborted,
        &settings.cleaner,
        codec,
        throttle,
        &mut stats,
    )?;
    let to_clean: Vec<SegmentInfo> = cleanable
        .into_iter()
        .filter(|s| s.next_offset <= end)
        .collect();
    let groups = cleaner::group_by_size(&to_clean, settings.cleaner.segment_bytes);
    let pass = cleaner::Pass {
        dir: &dir,
        settings: &settings.cleaner,
        codec,
        now_ms,
        producers: &producers,
        map: &map,
    };
    cleaner::clean_groups(&pass, &groups, &aborted, throttle, &mut stats, &mut |g| {
        partition.with_log(|log, _| log.replace_segments(g))
    })?;
    cleaner::write_checkpoint(&dir, end)?;
    Ok(Some(stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::partition::AppendRules;
    use crate::log::record_batch::tests::{make_batch, make_keyed_batch};
    use crate::log::LogConfig;

    fn rules() -> AppendRules {
        AppendRules {
            compact: true,
            ..AppendRules::default()
        }
    }

    fn settings(ratio: f64, min_lag: i64, max_lag: i64) -> TopicSettings {
        TopicSettings {
            min_cleanable_ratio: ratio,
            min_compaction_lag_ms: min_lag,
            max_compaction_lag_ms: max_lag,
            cleaner: Settings {
                delete_retention_ms: 60_000,
                segment_bytes: 1 << 20,
                index_interval: 64,
                dedupe_buffer_bytes: 1 << 20,
            },
        }
    }

    fn write(p: &Partition, versions: usize) {
        let now = crate::clock::now_ms();
        for v in 0..versions {
            for k in 0..5 {
                let key = format!("k{k}");
                let value = format!("v{v}");
                let b = make_keyed_batch(
                    now,
                    &[(key.as_bytes(), Some(value.as_bytes()))],
                    -1,
                    -1,
                    -1,
                    false,
                );
                p.append(&b, &rules(), now, &|_, _| Ok(())).expect("append");
            }
        }
    }

    fn run(p: &Partition, s: &TopicSettings) -> Option<Stats> {
        let mut throttle = Throttle::new(f64::MAX);
        clean_partition(
            p,
            s,
            &cleaner::KafkaCodecs,
            &mut throttle,
            crate::clock::now_ms(),
            false,
        )
        .expect("pass")
    }

    #[test]
    fn the_dirty_ratio_and_the_compaction_lags_decide_when_a_partition_is_cleaned() {
        let dir = tempfile::tempdir().expect("tmp");
        let config = LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 64,
            ..LogConfig::default()
        };
        let p = Partition::open("t", dir.path(), config).expect("open");
        write(&p, 6);
        // Records younger than min.compaction.lag.ms are not cleanable.
        assert!(run(&p, &settings(0.5, 3_600_000, i64::MAX)).is_none());
        // All dirty: ratio 1 > 0.5.
        let stats = run(&p, &settings(0.5, 0, i64::MAX)).expect("cleaned");
        assert!(stats.groups > 0 && stats.records_removed > 0);
        // A little more: under the ratio, so not due, unless max.compaction.lag.ms has run out.
        write(&p, 1);
        assert!(run(&p, &settings(0.99, 0, i64::MAX)).is_none());
        // The lag is measured in whole milliseconds: let one pass.
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(run(&p, &settings(0.99, 0, 0)).is_some());
        // Keyless records are refused on a compacted topic.
        let now = crate::clock::now_ms();
        let keyless = make_batch(now, &[b"no key"]);
        assert!(matches!(
            p.append(&keyless, &rules(), now, &|_, _| Ok(())),
            Err(kafka_protocol::error::ResponseError::InvalidRecord)
        ));
    }
}
