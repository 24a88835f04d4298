use super::*;
use record_batch::tests::make_batch;

fn cfg(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

/// A log of 300-byte segments holding `n` batches of one 50-byte record, batch i at
/// offset i with timestamp i.
fn log_of(dir: &Path, n: u8) -> Log {
    let (mut log, _) = Log::open(dir, cfg(300), &mut |_| {}).expect("open");
    for i in 0..n {
        log.append(&mut make_batch(i as i64, &[&[i; 50]]))
            .expect("append");
    }
    log
}

#[test]
fn segments_roll_at_segment_bytes_and_reads_cross_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut log, _) = Log::open(dir.path(), cfg(500), &mut |_| {}).expect("open");
    for i in 0..40u8 {
        let mut b = make_batch(1000 + i as i64, &[&[i; 40], &[i; 20]]);
        log.append(&mut b).expect("append");
    }
    assert_eq!(log.next_offset(), 80);
    assert!(
        log.segment_count() > 5,
        "rolled into {} segments",
        log.segment_count()
    );
    for (_, size) in log.segment_sizes() {
        assert!(size <= 500);
    }
    for off in 0..80 {
        let slice = log.read(off).expect("io").expect("found");
        let bytes = slice.first_batch_bytes();
        let batch = RecordBatch::validate(&bytes).expect("valid");
        assert!(batch.base_offset() <= off && off <= batch.last_offset());
    }
    assert!(log.read(80).expect("io").is_none());
}

#[test]
fn timestamp_lookups_look_inside_compressed_batches_across_segments() {
    use codec::{BatchSpec, Compression, Record};
    let dir = tempfile::tempdir().expect("tmp");
    let append_all = |log: &mut Log| {
        for k in 0..8i64 {
            let records: Vec<Record> = (0..5i64)
                .map(|i| Record {
                    attributes: 0,
                    // record 2 of batch 3 (offset 17) and record 4 of batch 6 (offset 34)
                    // carry the largest timestamp: the earlier one is the answer
                    timestamp_delta: if (k, i) == (3, 2) || (k, i) == (6, 4) {
                        99_999 - (1000 + 50 * k)
                    } else {
                        10 * i
                    },
                    offset_delta: i as i32,
                    key: None,
                    value: Some(bytes::Bytes::from(vec![k as u8; 50])),
                    headers: vec![],
                })
                .collect();
            let mut spec = BatchSpec::new(0, 1000 + 50 * k);
            spec.compression = Compression::Zstd;
            let mut b = codec::encode_batch(&spec, &records).expect("encode");
            log.append(&mut b).expect("append");
        }
    };
    {
        let (mut log, _) = Log::open(dir.path(), cfg(300), &mut |_| {}).expect("open");
        append_all(&mut log);
        assert!(log.segment_count() > 2);
        assert_eq!(log.max_timestamp().expect("io"), Some((99_999, 17)));
        assert_eq!(
            log.offset_for_timestamp(1121).expect("io"),
            Some((13, 1130))
        );
        assert_eq!(
            log.offset_for_timestamp(1205).expect("io"),
            Some((17, 99_999))
        );
        // later targets too: offset order decides, as in Kafka
        assert_eq!(
            log.offset_for_timestamp(1351).expect("io"),
            Some((17, 99_999))
        );
        assert_eq!(log.offset_for_timestamp(100_000).expect("io"), None);
    }
    let (log, _) = Log::open(dir.path(), cfg(300), &mut |_| {}).expect("reopen");
    assert_eq!(log.max_timestamp().expect("io"), Some((99_999, 17)));
}

#[test]
fn a_reopened_log_continues_at_the_same_offset() {
    let dir = tempfile::tempdir().expect("tmp");
    log_of(dir.path(), 10);
    let mut batches = 0;
    let (mut log, report) = Log::open(dir.path(), cfg(300), &mut |_| batches += 1).expect("reopen");
    assert_eq!(batches, 10);
    assert!(report.segments > 1);
    assert_eq!(log.next_offset(), 10);
    log.append(&mut make_batch(99, &[b"next"])).expect("append");
    assert_eq!(log.next_offset(), 11);
    assert_eq!(log.offset_for_timestamp(5).expect("io"), Some((5, 5)));
}

#[test]
fn a_corrupt_segment_below_the_end_cuts_the_log_there() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let log = log_of(dir.path(), 12);
        assert!(log.segment_count() >= 3);
    }
    // No recovery point was recorded (as after a crash): every segment is checked.
    let bases: Vec<i64> = {
        let (log, _) = Log::open(dir.path(), cfg(300), &mut |_| {}).expect("reopen");
        log.segment_sizes().iter().map(|s| s.0).collect()
    };
    let second = dir.path().join(segment::file_name(bases[1], ".log"));
    let mut bytes = std::fs::read(&second).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&second, &bytes).expect("write");
    let (log, report) = Log::open(dir.path(), cfg(300), &mut |_| {}).expect("recover");
    assert!(report.truncated_bytes > 0);
    assert_eq!(log.segment_count(), 2, "segments after the cut are removed");
    assert!(!dir
        .path()
        .join(segment::file_name(bases[2], ".log"))
        .exists());
    assert!(log.next_offset() < bases[2]);
}

#[test]
fn a_synced_log_trusts_its_closed_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    log_of(dir.path(), 12).sync_all().expect("sync");
    assert_eq!(read_recovery_point(dir.path()), 12);
    let (log, report) = Log::open(dir.path(), cfg(300), &mut |_| {}).expect("reopen");
    assert_eq!(
        report.rebuilt_indexes, 1,
        "only the last segment is rescanned"
    );
    assert_eq!(log.next_offset(), 12);
}

#[test]
fn segments_wholly_below_an_offset_are_taken_out_but_never_the_active_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = log_of(dir.path(), 12);
    let bases: Vec<i64> = log.segment_sizes().iter().map(|s| s.0).collect();
    assert!(bases.len() >= 3);
    // Inside the second segment: only the first is wholly below.
    let taken = log.take_segments_below(bases[1] + 1);
    assert_eq!(taken.len(), 1);
    assert_eq!(log.log_start_offset(), bases[1]);
    for seg in taken {
        seg.delete().expect("delete");
    }
    assert!(!dir
        .path()
        .join(segment::file_name(bases[0], ".log"))
        .exists());
    // Everything: the active segment stays.
    let taken = log.take_segments_below(log.next_offset());
    assert_eq!(taken.len(), bases.len() - 2);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), *bases.last().expect("last"));
}

#[test]
fn a_log_truncated_fully_continues_at_its_new_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = log_of(dir.path(), 5);
    log.truncate_fully_and_start_at(40).expect("truncate");
    assert_eq!((log.log_start_offset(), log.next_offset()), (40, 40));
    log.append(&mut make_batch(9, &[b"x"])).expect("append");
    drop(log);
    let (log, _) = Log::open(dir.path(), cfg(300), &mut |_| {}).expect("reopen");
    assert_eq!((log.log_start_offset(), log.next_offset()), (40, 41));
}

#[test]
fn the_log_start_checkpoint_reads_back() {
    let dir = tempfile::tempdir().expect("tmp");
    assert_eq!(read_log_start_offset(dir.path()), None);
    write_log_start_offset(dir.path(), 17).expect("write");
    assert_eq!(read_log_start_offset(dir.path()), Some(17));
}

#[test]
fn a_segment_older_than_segment_ms_rolls_on_the_next_append() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        segment_ms: 20,
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(dir.path(), config, &mut |_| {}).expect("open");
    log.append(&mut make_batch(1, &[b"a"])).expect("append");
    log.append(&mut make_batch(2, &[b"b"])).expect("append");
    assert_eq!(log.segment_count(), 1);
    std::thread::sleep(Duration::from_millis(30));
    let rolled = log.append(&mut make_batch(3, &[b"c"])).expect("append");
    assert!(rolled.is_some());
    assert_eq!(
        log.segment_sizes().iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![0, 2]
    );
}

#[test]
fn an_append_that_fails_in_a_new_segment_takes_the_roll_back() {
    use segment::tests::StoppableFile;
    let dir = tempfile::tempdir().expect("tmp");
    let mut log = log_of(dir.path(), 4);
    let (segments, end) = (log.segment_sizes(), log.next_offset());
    // The segment the next append rolls to cannot take a byte: a full disk.
    let next_log = dir.path().join(segment::file_name(end, ".log"));
    StoppableFile::at(&next_log).stop_growth();
    assert!(log.append(&mut make_batch(9, &[&[9; 50]])).is_err());
    assert_eq!(log.segment_sizes(), segments);
    assert_eq!(log.next_offset(), end);
    assert!(!next_log.exists(), "the unused segment's files are gone");
    // Space again: the append rolls as it would have.
    let rolled = log.append(&mut make_batch(9, &[&[9; 50]])).expect("append");
    assert!(rolled.is_some());
    assert_eq!(log.next_offset(), end + 1);
    drop(log);
    let (log, report) = Log::open(dir.path(), cfg(300), &mut |_| {}).expect("reopen");
    assert_eq!((log.next_offset(), report.truncated_bytes), (end + 1, 0));
}

#[test]
fn an_abort_marker_that_fails_leaves_no_txnindex_entry() {
    use segment::tests::StoppableFile;
    let dir = tempfile::tempdir().expect("tmp");
    let file = StoppableFile::at(&dir.path().join(segment::file_name(0, ".log")));
    let (mut log, _) = Log::open(dir.path(), LogConfig::default(), &mut |_| {}).expect("open");
    log.append(&mut make_batch(1, &[b"a"])).expect("append");
    let aborted = txn_index::AbortedTxn {
        producer_id: 7,
        first_offset: 0,
        last_offset: 1,
        last_stable_offset: 2,
    };
    file.stop_growth();
    let mut marker = record_batch::control_batch(7, 0, false, 2);
    let (head, rest) = marker.split_at_mut(record_batch::HEADER_SIZE);
    assert!(log
        .append_recording_abort(head, rest, Some(&aborted))
        .is_err());
    assert_eq!(log.next_offset(), 1);
    assert!(txn_index::read_all(dir.path()).is_empty());
}

/// A log of 300-byte segments with one `.index`/`.timeindex` entry per segment (the first
/// batch), batch i at offset i with timestamp 1000 + i, synced so a restart trusts the closed
/// segments without rescanning them.
fn sparse_log(dir: &Path) -> Vec<(i64, i64)> {
    let (log, closed) = sparse_log_open(dir);
    log.sync_all().expect("sync");
    closed
}

fn sparse_config() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 4096,
        ..LogConfig::default()
    }
}

/// As `sparse_log`, left as a kill leaves it: no recovery point, so a restart rebuilds the
/// indexes of every segment.
fn sparse_log_unsynced(dir: &Path) -> Vec<(i64, i64)> {
    sparse_log_open(dir).1
}

/// The log and its closed segments' (base offset, next offset).
fn sparse_log_open(dir: &Path) -> (Log, Vec<(i64, i64)>) {
    let (mut log, _) = Log::open(dir, sparse_config(), &mut |_| {}).expect("open");
    for i in 0..12u8 {
        log.append(&mut make_batch(1000 + i as i64, &[&[i; 50]]))
            .expect("append");
    }
    assert!(log.segment_count() >= 3);
    let closed = log
        .closed_segments()
        .iter()
        .map(|s| (s.base_offset, s.next_offset))
        .collect();
    (log, closed)
}

fn reopen_sparse(dir: &Path) -> Log {
    let (log, report) = Log::open(dir, sparse_config(), &mut |_| {}).expect("reopen");
    assert_eq!(report.rebuilt_indexes, 1, "closed segments are trusted");
    log
}

fn last_time_entry(dir: &Path, base: i64) -> (i64, u32) {
    let raw = std::fs::read(dir.join(segment::file_name(base, ".timeindex"))).expect("read");
    let e = &raw[raw.len() - index::TIME_ENTRY..];
    (
        i64::from_be_bytes(e[..8].try_into().expect("8 bytes")),
        u32::from_be_bytes(e[8..].try_into().expect("4 bytes")),
    )
}

#[test]
fn a_rolled_segment_ends_its_time_index_with_its_max_timestamp() {
    let dir = tempfile::tempdir().expect("tmp");
    for (base, next) in sparse_log(dir.path()) {
        let last = next - 1;
        assert_eq!(
            last_time_entry(dir.path(), base),
            (1000 + last, (last - base) as u32),
            "segment {base}"
        );
    }
}

#[test]
fn a_closed_segment_whose_indexes_are_rebuilt_keeps_its_max_timestamp_entry() {
    let dir = tempfile::tempdir().expect("tmp");
    let closed = sparse_log_unsynced(dir.path());
    let (log, report) = Log::open(dir.path(), sparse_config(), &mut |_| {}).expect("recover");
    assert_eq!(
        report.rebuilt_indexes,
        closed.len() + 1,
        "every segment is rescanned"
    );
    drop(log);
    for (base, next) in closed {
        let last = next - 1;
        assert_eq!(
            last_time_entry(dir.path(), base),
            (1000 + last, (last - base) as u32),
            "segment {base}"
        );
    }
}

#[test]
fn a_trusted_segment_finds_its_newest_records_by_time_after_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let closed = sparse_log(dir.path());
    // As a segment rolled by an earlier version left it: only the sparse entry.
    for (base, _) in &closed {
        let path = dir.path().join(segment::file_name(*base, ".timeindex"));
        let raw = std::fs::read(&path).expect("read");
        std::fs::write(&path, &raw[..index::TIME_ENTRY]).expect("write");
    }
    let log = reopen_sparse(dir.path());
    for (s, (base, next)) in log.closed_segments().iter().zip(&closed) {
        assert_eq!(s.max_timestamp, 1000 + next - 1, "segment {base}");
    }
    for i in 0..12 {
        assert_eq!(
            log.offset_for_timestamp(1000 + i).expect("io"),
            Some((i, 1000 + i))
        );
    }
}

#[test]
fn a_damaged_length_at_the_max_timestamp_batch_gives_the_segment_figures_not_a_huge_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut log, _) = Log::open(dir.path(), cfg(1 << 20), &mut |_| {}).expect("open");
    for i in 0..3u8 {
        log.append(&mut make_batch(1000 + i as i64, &[&[i; 50]]))
            .expect("append");
    }
    let max = log.max_timestamp().expect("io").expect("some");
    // The last batch (which carries the max timestamp) now claims 1 GiB.
    let path = dir.path().join(segment::file_name(0, ".log"));
    let body = std::fs::read(&path).expect("read");
    let last = body.len() - {
        let mut pos = 0usize;
        let mut last_len = 0usize;
        while pos < body.len() {
            let len =
                i32::from_be_bytes(body[pos + 8..pos + 12].try_into().expect("4")) as usize + 12;
            last_len = len;
            pos += len;
        }
        last_len
    };
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.write_all_at(&(1i32 << 30).to_be_bytes(), (last + 8) as u64)
            .expect("write");
    }
    assert_eq!(log.max_timestamp().expect("io"), Some(max));
}
