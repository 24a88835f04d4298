use super::swap::DATA_FILES;
use super::*;
use crate::log::record_batch::tests::make_keyed_batch;
use crate::log::{Log, LogConfig};
use std::path::PathBuf;

type Row = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

fn cfg(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

fn settings(delete_retention_ms: i64, segment_bytes: u64) -> Settings {
    Settings {
        delete_retention_ms,
        segment_bytes,
        index_interval: 64,
        dedupe_buffer_bytes: 1 << 20,
    }
}

fn now() -> i64 {
    crate::clock::now_ms()
}

/// Every record of every `.log` in the directory, in offset order, plus empty batches' spans.
fn contents(dir: &Path) -> Vec<Row> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension() == Some("log".as_ref()))
        .collect();
    logs.sort();
    let mut rows = Vec::new();
    for path in logs {
        let bytes = std::fs::read(&path).expect("read");
        for b in record_batch::BatchHeaders::new(&bytes) {
            let b = b.expect("batch");
            let b = RecordBatch::validate(b.bytes()).expect("valid");
            if b.is_control() {
                rows.push((b.base_offset(), Some(b"<marker>".to_vec()), None));
                continue;
            }
            for r in record_batch::parse_records(b.records(), b.record_count()).expect("records") {
                rows.push((
                    b.base_offset() + r.offset_delta,
                    r.key.map(|k| k.to_vec()),
                    r.value.map(|v| v.to_vec()),
                ));
            }
        }
    }
    rows
}

fn keyed(key: &str, value: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        key.as_bytes().to_vec(),
        value.map(|v| v.as_bytes().to_vec()),
    )
}

fn append(log: &mut Log, records: &[(Vec<u8>, Option<Vec<u8>>)]) {
    let recs: Vec<(&[u8], Option<&[u8]>)> = records
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_deref()))
        .collect();
    let mut b = make_keyed_batch(now(), &recs, -1, -1, -1, false);
    log.append(&mut b).expect("append");
}

fn segment_infos(log: &Log) -> Vec<SegmentInfo> {
    log.closed_segments().iter().map(SegmentInfo::of).collect()
}

/// One pass over every closed segment, as the broker runs it.
fn pass(
    log: &mut Log,
    settings: &Settings,
    now_ms: i64,
    producers: &HashMap<i64, LastRecord>,
) -> Stats {
    let dir = log.dir().to_path_buf();
    let segments = segment_infos(log);
    let first_dirty = read_checkpoint(&dir).max(log.log_start_offset());
    let dirty: Vec<SegmentInfo> = segments
        .iter()
        .filter(|s| s.next_offset > first_dirty)
        .cloned()
        .collect();
    let aborted = aborted_in(&dir, &segments);
    let mut stats = Stats::default();
    let mut throttle = Throttle::new(f64::MAX);
    let (map, end) = build_offset_map(
        &dir,
        &dirty,
        first_dirty,
        &aborted,
        settings,
        &Uncompressed,
        &mut throttle,
        &mut stats,
    )
    .expect("map");
    let to_clean: Vec<SegmentInfo> = segments
        .into_iter()
        .filter(|s| s.next_offset <= end)
        .collect();
    let groups = group_by_size(&to_clean, settings.segment_bytes);
    let p = Pass {
        dir: &dir,
        settings,
        codec: &Uncompressed,
        now_ms,
        producers,
        map: &map,
    };
    clean_groups(&p, &groups, &aborted, &mut throttle, &mut stats, &mut |g| {
        log.replace_segments(g)
    })
    .expect("clean");
    write_checkpoint(&dir, end).expect("checkpoint");
    stats
}

/// 10 keys × 6 versions across several small segments, with one tombstone.
fn many_versions(dir: &Path) -> Log {
    let (mut log, _) = Log::open(dir, cfg(400), &mut |_| {}).expect("open");
    for round in 0..6 {
        for k in 0..10 {
            let value = format!("v{round}-{k}");
            let v = if round == 5 && k == 3 {
                None
            } else {
                Some(value.as_str())
            };
            append(&mut log, &[keyed(&format!("k{k}"), v)]);
        }
    }
    log.roll().expect("roll");
    log
}

#[test]
fn cleaning_keeps_the_last_record_of_every_key_at_its_offset() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = many_versions(dir.path());
    let before = contents(dir.path());
    let segments_before = log.segment_count();
    let size_before = log.size();
    let stats = pass(&mut log, &settings(3_600_000, 4000), now(), &HashMap::new());
    assert!(stats.groups > 0);
    let after = contents(dir.path());
    // The last record of every key, at the offset it had.
    let mut expected: HashMap<Vec<u8>, Row> = HashMap::new();
    for row in &before {
        expected.insert(row.1.clone().expect("key"), row.clone());
    }
    let mut want: Vec<Row> = expected.into_values().collect();
    want.sort();
    assert_eq!(after, want, "fresh tombstones stay");
    assert!(log.size() < size_before);
    assert!(
        log.segment_count() < segments_before,
        "small segments grouped"
    );
    assert_eq!(log.next_offset(), 60);
    // Reads by offset land on the kept records and skip the gaps.
    let slice = log.read(0).expect("io").expect("found");
    assert!(slice.first.size() > 0);
    // Reopening (a restart) finds the same log and end.
    drop(log);
    let (log, report) = Log::open(dir.path(), cfg(400), &mut |_| {}).expect("reopen");
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(log.next_offset(), 60);
    assert_eq!(contents(dir.path()), want);
}

#[test]
fn tombstones_go_once_their_segment_is_older_than_delete_retention() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = many_versions(dir.path());
    // Fresh: kept, and the pass says when they may go.
    let stats = pass(&mut log, &settings(60_000, 400), now(), &HashMap::new());
    assert!(contents(dir.path()).iter().any(|r| r.2.is_none()));
    let due = stats.next_delete_due_ms.expect("a tombstone was kept");
    assert!(due > now());
    // Later than delete.retention.ms after the segment's last modification: gone.
    pass(&mut log, &settings(60_000, 400), due + 1, &HashMap::new());
    let rows = contents(dir.path());
    assert!(rows.iter().all(|r| r.2.is_some()), "tombstone removed");
    assert!(!rows
        .iter()
        .any(|r| r.1.as_deref() == Some(b"k3".as_slice())));
    assert_eq!(rows.len(), 9);
}

#[test]
fn records_without_a_key_are_dropped_and_the_active_segment_is_untouched() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut log, _) = Log::open(dir.path(), cfg(300), &mut |_| {}).expect("open");
    let mut b = crate::log::record_batch::tests::make_batch(now(), &[b"no key"]);
    log.append(&mut b).expect("append");
    for i in 0..8 {
        append(&mut log, &[keyed("k", Some(&format!("{i}")))]);
    }
    let active_before = *log.segment_sizes().last().expect("active");
    pass(&mut log, &settings(60_000, 300), now(), &HashMap::new());
    assert_eq!(*log.segment_sizes().last().expect("active"), active_before);
    let rows = contents(dir.path());
    assert!(rows.iter().all(|r| r.1.is_some()));
}

#[test]
fn aborted_records_and_markers_go_and_a_producers_last_batch_stays() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut log, _) = Log::open(dir.path(), cfg(1 << 20), &mut |_| {}).expect("open");
    // Producer 7: an aborted transaction writing k1; producer 8: a committed one writing k2.
    let mut t7 = make_keyed_batch(now(), &[(b"k1", Some(b"aborted"))], 7, 0, 0, true);
    log.append(&mut t7).expect("append");
    let mut t8 = make_keyed_batch(now(), &[(b"k2", Some(b"committed"))], 8, 0, 0, true);
    log.append(&mut t8).expect("append");
    let mut abort = record_batch::control_batch(7, 0, false, now());
    log.append(&mut abort).expect("append");
    log.append_txn_index(7, 0, 2, 1).expect("txnindex");
    let mut commit = record_batch::control_batch(8, 0, true, now());
    log.append(&mut commit).expect("append");
    append(&mut log, &[keyed("k1", Some("plain"))]);
    log.roll().expect("roll");
    // Producer 7's last data batch is its aborted one: kept, empty, for its sequence.
    let producers = HashMap::from([
        (
            7,
            LastRecord {
                last_data_offset: Some(0),
                epoch: 0,
            },
        ),
        (
            8,
            LastRecord {
                last_data_offset: Some(1),
                epoch: 0,
            },
        ),
    ]);
    let s = settings(60_000, 1 << 20);
    pass(&mut log, &s, now(), &producers);
    let rows = contents(dir.path());
    assert!(!rows
        .iter()
        .any(|r| r.2.as_deref() == Some(b"aborted".as_slice())));
    assert!(rows
        .iter()
        .any(|r| r.2.as_deref() == Some(b"committed".as_slice())));
    assert_eq!(
        rows.iter().filter(|r| r.2.is_none()).count(),
        2,
        "markers kept while fresh"
    );
    // The empty batch of producer 7 is there, with its producer fields.
    let bytes = std::fs::read(dir.path().join(segment::file_name(0, ".log"))).expect("read");
    let first = record_batch::BatchHeaders::new(&bytes)
        .next()
        .expect("batch")
        .expect("valid");
    assert_eq!((first.base_offset(), first.record_count()), (0, 0));
    assert_eq!((first.producer_id(), first.base_sequence()), (7, 0));
    // Past delete.retention.ms, once producer 7 has written since: its empty batch goes,
    // then (a pass later, as in Kafka) the abort marker; the commit marker stays while its
    // transaction's records do.
    let mut moved_on = producers.clone();
    moved_on.insert(
        7,
        LastRecord {
            last_data_offset: Some(99),
            epoch: 0,
        },
    );
    pass(&mut log, &s, now() + 120_000, &moved_on);
    let bytes = std::fs::read(dir.path().join(segment::file_name(0, ".log"))).expect("read");
    let first = record_batch::BatchHeaders::new(&bytes)
        .next()
        .expect("batch")
        .expect("valid");
    assert_ne!(first.producer_id(), 7, "the empty batch went");
    assert_eq!(
        contents(dir.path())
            .iter()
            .filter(|r| r.2.is_none())
            .count(),
        2
    );
    pass(&mut log, &s, now() + 120_000, &moved_on);
    let rows = contents(dir.path());
    assert_eq!(rows.iter().filter(|r| r.2.is_none()).count(), 1);
    assert_eq!(rows.iter().find(|r| r.2.is_none()).map(|r| r.0), Some(3));
}

#[test]
fn groups_never_pass_segment_bytes() {
    let seg = |base: i64, size: u64| SegmentInfo {
        base_offset: base,
        next_offset: base + 10,
        size,
        max_timestamp: 0,
        modified_ms: 0,
    };
    let groups = group_by_size(&[seg(0, 100), seg(10, 100), seg(20, 250), seg(30, 50)], 300);
    let bases: Vec<Vec<i64>> = groups
        .iter()
        .map(|g| g.iter().map(|s| s.base_offset).collect())
        .collect();
    assert_eq!(bases, vec![vec![0, 10], vec![20, 30]]);
}

/// The states a kill -9 can leave between the first `.cleaned` byte and the end of a swap.
#[derive(Clone, Copy, Debug)]
enum Crash {
    PartialCleanedLog,
    AllCleaned,
    SomeRenamedToSwap,
    AllSwapNotCommitted,
    Committed,
    IndexesSwapped,
    LogSwapped,
    SomeOldDeleted,
    AllDoneButCommitFile,
    CommittedThenFirstSegmentDeleted,
}

#[test]
fn recovery_after_a_crash_at_any_point_gives_the_old_or_the_new_log() {
    use Crash::*;
    let all = [
        PartialCleanedLog,
        AllCleaned,
        SomeRenamedToSwap,
        AllSwapNotCommitted,
        Committed,
        IndexesSwapped,
        LogSwapped,
        SomeOldDeleted,
        AllDoneButCommitFile,
        CommittedThenFirstSegmentDeleted,
    ];
    // The new log, from a complete pass on the same input.
    let new = {
        let dir = tempfile::tempdir().expect("tmp");
        let mut log = many_versions(dir.path());
        pass(
            &mut log,
            &settings(3_600_000, 1 << 20),
            now(),
            &HashMap::new(),
        );
        contents(dir.path())
    };
    for crash in all {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let log = many_versions(d);
        let old = contents(d);
        let segments = segment_infos(&log);
        let bases: Vec<i64> = segments.iter().map(|s| s.base_offset).collect();
        let end = segments.last().map_or(0, |s| s.next_offset);
        drop(log);
        let s = settings(3_600_000, 1 << 20);
        let mut stats = Stats::default();
        let mut throttle = Throttle::new(f64::MAX);
        let (map, _) = build_offset_map(
            d,
            &segments,
            0,
            &[],
            &s,
            &Uncompressed,
            &mut throttle,
            &mut stats,
        )
        .expect("map");
        let producers = HashMap::new();
        let p = Pass {
            dir: d,
            settings: &s,
            codec: &Uncompressed,
            now_ms: now(),
            producers: &producers,
            map: &map,
        };
        let mut txns = TxnTracker::new(Vec::new());
        let group = clean_group(&p, &segments, &mut txns, &mut throttle, &mut stats)
            .expect("clean")
            .expect("changed");
        drop(group);
        let f = |ext: &str, suffix: &str| file_with(d, 0, ext, suffix);
        let mv = |a: PathBuf, b: PathBuf| std::fs::rename(a, b).expect("rename");
        let unswap = |ext: &str| mv(f(ext, SWAP), f(ext, CLEANED));
        match crash {
            PartialCleanedLog | AllCleaned | SomeRenamedToSwap | AllSwapNotCommitted => {
                mv(f(REPLACES, SWAP), f(REPLACES, CLEANED));
                if !matches!(crash, AllSwapNotCommitted) {
                    unswap(".log");
                    unswap(".txnindex");
                }
                if matches!(crash, AllCleaned | PartialCleanedLog) {
                    unswap(".index");
                    unswap(".timeindex");
                }
                if matches!(crash, PartialCleanedLog) {
                    for ext in [".index", ".timeindex", ".txnindex", REPLACES] {
                        std::fs::remove_file(f(ext, CLEANED)).expect("rm");
                    }
                    let log = std::fs::OpenOptions::new()
                        .write(true)
                        .open(f(".log", CLEANED))
                        .expect("open");
                    log.set_len(100).expect("truncate");
                }
            }
            Committed => {}
            IndexesSwapped | LogSwapped | SomeOldDeleted | AllDoneButCommitFile => {
                for ext in [".index", ".timeindex", ".txnindex"] {
                    mv(f(ext, SWAP), f(ext, ""));
                }
                if !matches!(crash, IndexesSwapped) {
                    mv(f(".log", SWAP), f(".log", ""));
                }
                if matches!(crash, SomeOldDeleted) {
                    for ext in DATA_FILES {
                        let _ = std::fs::remove_file(file_with(d, bases[1], ext, ""));
                    }
                }
                if matches!(crash, AllDoneButCommitFile) {
                    finish_swap(d, 0, &bases).expect("finish");
                }
            }
            CommittedThenFirstSegmentDeleted => {
                for ext in DATA_FILES {
                    let _ = std::fs::remove_file(file_with(d, 0, ext, ""));
                }
            }
        }
        let (log, _) = Log::open(d, cfg(400), &mut |_| {}).expect("recover");
        let got = contents(d);
        let leftovers: Vec<String> = std::fs::read_dir(d)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(SWAP) || n.ends_with(CLEANED))
            .collect();
        assert!(leftovers.is_empty(), "{crash:?}: {leftovers:?}");
        match crash {
            PartialCleanedLog | AllCleaned | SomeRenamedToSwap | AllSwapNotCommitted => {
                assert_eq!(got, old, "{crash:?} keeps the old log")
            }
            CommittedThenFirstSegmentDeleted => {
                let rest: Vec<Row> = old.iter().filter(|r| r.0 >= bases[1]).cloned().collect();
                assert_eq!(got, rest, "{crash:?} rolls back")
            }
            _ => assert_eq!(got, new, "{crash:?} finishes the swap"),
        }
        if !matches!(crash, CommittedThenFirstSegmentDeleted) {
            assert_eq!(log.next_offset(), end, "{crash:?}");
        }
    }
}

#[test]
fn compressed_batches_are_cleaned_and_stay_in_their_codec() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut log, _) = Log::open(dir.path(), cfg(1 << 20), &mut |_| {}).expect("open");
    for version in 0..3 {
        let values: Vec<String> = (0..5).map(|k| format!("v{version}-{k}")).collect();
        let keys: Vec<String> = (0..5).map(|k| format!("k{k}")).collect();
        let recs: Vec<(&[u8], Option<&[u8]>)> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.as_bytes(), Some(v.as_bytes())))
            .collect();
        let plain = make_keyed_batch(now(), &recs, -1, -1, -1, false);
        let mut header = plain.clone();
        header[21..23].copy_from_slice(&1i16.to_be_bytes()); // gzip
        let view = RecordBatch::parse_header(&header).expect("header");
        let gz = KafkaCodecs
            .compress(1, &plain[record_batch::HEADER_SIZE..])
            .expect("gzip");
        let mut batch = record_batch::rebuild_batch(&view, &gz, 5, view.max_timestamp());
        log.append(&mut batch).expect("append");
    }
    // A fourth batch updating two keys, so the last gzip batch is filtered, not dropped.
    let plain = make_keyed_batch(
        now(),
        &[(b"k0", Some(b"new")), (b"k1", Some(b"new"))],
        -1,
        -1,
        -1,
        false,
    );
    let mut header = plain.clone();
    header[21..23].copy_from_slice(&1i16.to_be_bytes());
    let view = RecordBatch::parse_header(&header).expect("header");
    let gz = KafkaCodecs
        .compress(1, &plain[record_batch::HEADER_SIZE..])
        .expect("gzip");
    log.append(&mut record_batch::rebuild_batch(
        &view,
        &gz,
        2,
        view.max_timestamp(),
    ))
    .expect("append");
    log.roll().expect("roll");
    let dir_path = dir.path().to_path_buf();
    let segments = segment_infos(&log);
    let aborted = Vec::new();
    let s = settings(60_000, 1 << 20);
    let mut stats = Stats::default();
    let mut throttle = Throttle::new(f64::MAX);
    let (map, end) = build_offset_map(
        &dir_path,
        &segments,
        0,
        &aborted,
        &s,
        &KafkaCodecs,
        &mut throttle,
        &mut stats,
    )
    .expect("map");
    let producers = HashMap::new();
    let p = Pass {
        dir: &dir_path,
        settings: &s,
        codec: &KafkaCodecs,
        now_ms: now(),
        producers: &producers,
        map: &map,
    };
    let groups = group_by_size(&segments, 1 << 20);
    clean_groups(&p, &groups, &aborted, &mut throttle, &mut stats, &mut |g| {
        log.replace_segments(g)
    })
    .expect("clean");
    assert_eq!(end, 17);
    let bytes = std::fs::read(dir.path().join(segment::file_name(0, ".log"))).expect("read");
    let mut rows = Vec::new();
    for b in record_batch::BatchHeaders::new(&bytes) {
        let b = RecordBatch::validate(b.expect("batch").bytes()).expect("valid");
        if b.record_count() == 0 {
            continue;
        }
        assert_eq!(b.compression(), 1, "still gzip");
        let data = KafkaCodecs.decompress(1, b.records()).expect("gunzip");
        for r in record_batch::parse_records(&data, b.record_count()).expect("records") {
            rows.push((
                b.base_offset() + r.offset_delta,
                r.value.map(|v| v.to_vec()),
            ));
        }
    }
    let want: Vec<(i64, Option<Vec<u8>>)> = vec![
        (12, Some(b"v2-2".to_vec())),
        (13, Some(b"v2-3".to_vec())),
        (14, Some(b"v2-4".to_vec())),
        (15, Some(b"new".to_vec())),
        (16, Some(b"new".to_vec())),
    ];
    assert_eq!(rows, want);
}

#[test]
fn a_read_located_before_a_swap_still_reads_whole_old_batches() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = many_versions(dir.path());
    // A fetch locates its bytes under the partition lock, then reads without it.
    let slice = log.read(0).expect("io").expect("found");
    pass(&mut log, &settings(3_600_000, 4000), now(), &HashMap::new());
    let mut buf = vec![0u8; (slice.end - slice.first.position) as usize];
    slice
        .file
        .read_exact_at(&mut buf, slice.first.position)
        .expect("read");
    let first = RecordBatch::validate(&buf[..slice.first.size() as usize]).expect("whole batch");
    assert_eq!(first.base_offset(), 0);
    // A read located after the swap sees the cleaned segment.
    let after = log.read(0).expect("io").expect("found");
    let buf = after.first_batch_bytes();
    // Here every record of the first group was superseded: an empty batch keeps its range.
    let b = RecordBatch::validate(&buf).expect("valid");
    assert!(b.record_count() == 0 || b.base_offset() > 0);
    assert_ne!(buf.as_slice(), first.bytes());
}
