use super::*;
use crate::log::codec::{BatchSpec, Record};

fn gzip_batch(n: usize) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            attributes: 0,
            timestamp_delta: i as i64,
            offset_delta: i as i32,
            key: None,
            value: Some(bytes::Bytes::from(vec![b'a'; 1000])),
            headers: vec![],
        })
        .collect();
    let mut spec = BatchSpec::new(0, 1000);
    spec.compression = Compression::Gzip;
    spec.producer_id = 5;
    spec.producer_epoch = 2;
    spec.base_sequence = 40;
    codec::encode_batch(&spec, &records).expect("encode")
}

fn rules(compression: Option<Compression>, max_message_bytes: usize) -> AppendRules {
    AppendRules {
        max_message_bytes,
        compression,
        ..AppendRules::default()
    }
}

#[test]
fn only_a_topic_codec_other_than_the_batch_recompresses() {
    let bytes = gzip_batch(10);
    let b = RecordBatch::validate(&bytes).unwrap();
    assert_eq!(recompress_for_topic(&b, &rules(None, 1 << 20)), Ok(None));
    let same = rules(Some(Compression::Gzip), 1 << 20);
    assert_eq!(recompress_for_topic(&b, &same), Ok(None));
    let out = recompress_for_topic(&b, &rules(Some(Compression::Zstd), 1 << 20))
        .unwrap()
        .expect("recompressed");
    let z = RecordBatch::validate(&out).unwrap();
    assert_eq!(z.compression(), Compression::Zstd.id());
    assert_eq!(
        (z.producer_id(), z.producer_epoch(), z.base_sequence()),
        (5, 2, 40)
    );
    assert_eq!((z.record_count(), z.max_timestamp()), (10, 1009));
}

#[test]
fn a_batch_that_outgrows_max_message_bytes_uncompressed_is_refused() {
    let bytes = gzip_batch(10);
    let b = RecordBatch::validate(&bytes).unwrap();
    assert!(bytes.len() < 2000);
    assert_eq!(
        recompress_for_topic(&b, &rules(Some(Compression::None), 2000)),
        Err(ResponseError::MessageTooLarge)
    );
}

#[test]
fn undecodable_records_are_a_corrupt_message() {
    let mut bytes = gzip_batch(3);
    let end = bytes.len();
    bytes[end - 12..end - 8].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // inside the gzip body
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let b = RecordBatch::validate(&bytes).unwrap();
    assert_eq!(
        recompress_for_topic(&b, &rules(Some(Compression::Lz4), 1 << 20)),
        Err(ResponseError::CorruptMessage)
    );
}

use crate::log::record_batch::tests::{make_batch, make_idempotent_batch, make_keyed_batch};
use crate::log::txn_index;

fn open(dir: &Path) -> Partition {
    let config = LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 64,
        ..LogConfig::default()
    };
    Partition::open("t", dir, config).expect("open")
}

fn plain_rules() -> AppendRules {
    AppendRules::default()
}

fn append(p: &Partition, batch: &[u8]) -> Result<AppendInfo, ResponseError> {
    p.append(batch, &plain_rules(), 1_000, &|_, _| Ok(()))
}

fn log_files(dir: &Path) -> Vec<i64> {
    let mut bases: Vec<i64> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| {
            let name = e.expect("entry").file_name();
            crate::log::segment::parse_base_offset(&name.to_string_lossy(), ".log")
        })
        .collect();
    bases.sort_unstable();
    bases
}

#[test]
fn a_moved_log_start_hides_what_is_below_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = open(dir.path());
    for i in 0..12u8 {
        append(&p, &make_batch(i as i64, &[&[i; 50]])).expect("append");
    }
    assert!(p.advance_log_start(7, "test").expect("advance"));
    assert_eq!(p.log_start_offset(), 7);
    assert_eq!(
        p.read(6, 1 << 20, true, false).err(),
        Some(ResponseError::OffsetOutOfRange)
    );
    assert!(p.read(7, 1 << 20, true, false).is_ok());
    assert!(log_files(dir.path()).iter().skip(1).all(|&b| b > 7));
    assert!(log_files(dir.path())[0] <= 7);
    assert_eq!(p.local_log_start_offset(), 7);
    // Lower is a no-op.
    assert!(!p.advance_log_start(3, "test").expect("advance"));
    assert_eq!(p.log_start_offset(), 7);
    drop(p);
    let p = open(dir.path());
    assert_eq!(p.log_start_offset(), 7);
    assert_eq!(p.high_watermark(), 12);
}

#[test]
fn start_up_finishes_a_deletion_a_crash_interrupted() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = open(dir.path());
    for i in 0..12u8 {
        append(&p, &make_batch(i as i64, &[&[i; 50]])).expect("append");
    }
    drop(p);
    let before = log_files(dir.path());
    assert!(before.len() > 3);
    // The checkpoint was written, the segments were not deleted yet.
    crate::log::write_log_start_offset(dir.path(), before[2] + 1).expect("checkpoint");
    let p = open(dir.path());
    assert_eq!(p.log_start_offset(), before[2] + 1);
    assert_eq!(log_files(dir.path())[0], before[2]);
}

#[test]
fn a_log_recovered_below_its_start_restarts_empty_at_the_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = open(dir.path());
    for i in 0..3u8 {
        append(&p, &make_batch(i as i64, &[&[i; 50]])).expect("append");
    }
    drop(p);
    // As after a crash that lost the tail but kept the checkpoint.
    crate::log::write_log_start_offset(dir.path(), 10).expect("checkpoint");
    let p = open(dir.path());
    assert_eq!((p.log_start_offset(), p.high_watermark()), (10, 10));
    let info = append(&p, &make_batch(9, &[b"x"])).expect("append");
    assert_eq!(info.base_offset, 10);
    assert_eq!(info.log_start_offset, 10);
}

#[test]
fn a_producer_whose_records_were_deleted_goes_on_with_its_sequence() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = open(dir.path());
    for seq in 0..6 {
        append(
            &p,
            &make_idempotent_batch(seq as i64, &[&[1; 60]], 42, 0, seq),
        )
        .expect("append");
    }
    let end = p.high_watermark();
    p.advance_log_start(end, "test").expect("advance");
    // Kafka 4.x keeps the producer's state: the next sequence follows, a gap does not.
    assert_eq!(
        append(&p, &make_idempotent_batch(9, &[b"gap"], 42, 0, 9)).err(),
        Some(ResponseError::OutOfOrderSequenceNumber)
    );
    let info = append(&p, &make_idempotent_batch(6, &[b"next"], 42, 0, 6)).expect("next");
    assert_eq!(info.base_offset, end);
    drop(p);
    let p = open(dir.path());
    let info = append(&p, &make_idempotent_batch(7, &[b"after"], 42, 0, 7)).expect("after");
    assert_eq!(info.base_offset, end + 1);
    // A producer the partition does not know may start at any sequence (KIP-360).
    append(&p, &make_idempotent_batch(8, &[b"new"], 43, 0, 17)).expect("unknown producer");
}

#[test]
fn the_last_stable_offset_never_stays_below_the_log_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = open(dir.path());
    append(&p, &make_batch(0, &[b"a", b"b", b"c"])).expect("append");
    p.first_unstable.store(1, Ordering::Release);
    assert_eq!(p.last_stable_offset(), 1);
    p.advance_log_start(2, "test").expect("advance");
    assert_eq!(p.last_stable_offset(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abort_whose_records_left_the_local_log_is_still_known_after_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = open(dir.path());
    let record: &[u8] = &[1; 100];
    append(
        &p,
        &make_keyed_batch(0, &[(b"k", Some(record))], 7, 0, 0, true),
    )
    .expect("append");
    for i in 0..3u8 {
        append(&p, &make_batch(i as i64, &[&[i; 100]])).expect("append");
    }
    let marker = p.append_marker(7, 0, false, 1_000).await.expect("abort");
    assert!(
        log_files(dir.path())[1] <= marker,
        "the marker is in a later segment"
    );
    // The segment holding the transaction's record goes (archived, past local retention).
    assert!(p
        .delete_oldest_local_if(|_: &ClosedSegment, _: u64| true)
        .expect("delete"));
    assert_eq!(p.aborted_between(0, marker + 1), vec![(7, 0)]);
    drop(p);
    // No recovery point yet, so no snapshot is trusted: the restart replays the local log,
    // which holds the marker but not the record.
    let p = open(dir.path());
    assert_eq!(p.aborted_between(0, marker + 1), vec![(7, 0)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_abort_marker_without_its_txnindex_entry_gets_it_at_start_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = open(dir.path());
    let record: &[u8] = &[1; 20];
    for (seq, commit) in [(0, false), (1, true), (2, false)] {
        append(
            &p,
            &make_keyed_batch(0, &[(b"k", Some(record))], 7, 0, seq, true),
        )
        .expect("append");
        p.append_marker(7, 0, commit, 1_000).await.expect("marker");
    }
    let aborted = p.aborted_between(0, p.high_watermark());
    assert_eq!(aborted, vec![(7, 0), (7, 4)]);
    drop(p);
    // A kill between the last marker and its entry: the entry never reached the file.
    let last = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txnindex"))
        .find(|p| {
            let body = std::fs::read(p).expect("read");
            txn_index::parse(&body)
                .last()
                .is_some_and(|a| a.first_offset == 4)
        })
        .expect("the .txnindex holding the last abort");
    let body = std::fs::read(&last).expect("read");
    std::fs::write(&last, &body[..body.len() - txn_index::ENTRY]).expect("write");

    let p = open(dir.path());
    assert_eq!(p.aborted_between(0, p.high_watermark()), aborted);
    assert_eq!(
        std::fs::read(&last).expect("read"),
        body,
        "the entry is back in the file"
    );
    drop(p);
    let p = open(dir.path());
    assert_eq!(p.aborted_between(0, p.high_watermark()), aborted);
}

/// Data records in `records`, as the traffic counters count them.
fn data_records(records: &[u8]) -> u64 {
    BatchHeaders::new(records)
        .map_while(Result::ok)
        .filter(|b| !b.is_control())
        .map(|b| b.record_count().max(0) as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_range_holds_what_a_read_into_memory_returns() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        segment_bytes: 6000,
        index_interval_bytes: 64,
        ..LogConfig::default()
    };
    let p = Partition::open("t", dir.path(), config).expect("open");
    // Small batches and large ones, several records each, over several segments.
    for i in 0..40u8 {
        let size = if i % 5 == 0 { 2500 } else { 30 + i as usize };
        let values: Vec<Vec<u8>> = (0..=i % 4).map(|j| vec![i ^ j; size]).collect();
        let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        append(&p, &make_batch(i as i64, &values)).expect("append");
        if i == 20 {
            // A committed transaction: its marker is a control batch, not records.
            let txn = make_keyed_batch(0, &[(b"k", Some(&[7; 40]))], 7, 0, 0, true);
            append(&p, &txn).expect("append");
            p.append_marker(7, 0, true, 1_000).await.expect("commit");
        }
    }
    // A transaction left open: read_committed stops before it.
    append(
        &p,
        &make_keyed_batch(0, &[(b"k", Some(&[9; 40]))], 9, 0, 0, true),
    )
    .expect("append");
    for i in 0..3u8 {
        append(&p, &make_batch(i as i64, &[&[i; 100]])).expect("append");
    }
    assert!(p.last_stable_offset() < p.high_watermark());
    let mut ranges = 0;
    for committed in [false, true] {
        for offset in 0..=p.high_watermark() {
            for max_bytes in [0, 1, 61, 100, 700, 2600, 5000, 1 << 20] {
                for min_one in [true, false] {
                    let memory = p.read(offset, max_bytes, min_one, committed);
                    let file = p.read_file(offset, max_bytes, min_one, committed);
                    let case = format!(
                        "offset {offset} max {max_bytes} min_one {min_one} committed {committed}"
                    );
                    match (memory, file) {
                        (Ok(m), Ok(None)) => assert!(m.records.is_empty(), "{case}"),
                        (Ok(m), Ok(Some((range, whole)))) => {
                            ranges += 1;
                            assert_eq!(range.read().expect("read"), m.records, "{case}");
                            assert_eq!(whole.len, range.len, "{case}");
                            assert_eq!(whole.records, data_records(&m.records), "{case}");
                        }
                        (Err(a), Err(b)) => assert_eq!(a, b, "{case}"),
                        (m, f) => panic!(
                            "{case}: {:?} vs {:?}",
                            m.map(|d| d.records.len()),
                            f.map(|f| f.map(|r| r.0.len))
                        ),
                    }
                }
            }
        }
    }
    assert!(ranges > 100, "only {ranges} ranges compared");
}

#[test]
fn a_range_found_before_its_segment_is_deleted_is_still_read_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = open(dir.path());
    for i in 0..12u8 {
        append(&p, &make_batch(i as i64, &[&[i; 50]])).expect("append");
    }
    let expected = p.read(0, 1 << 20, true, false).expect("read").records;
    let (range, _) = p
        .read_file(0, 1 << 20, true, false)
        .expect("read")
        .expect("records");
    // Retention (or DeleteRecords) deletes the segment while the answer waits to be sent.
    assert!(p.advance_log_start(7, "test").expect("advance"));
    assert!(log_files(dir.path())[0] > 0, "the first segment is deleted");
    assert_eq!(range.read().expect("read"), expected);
}

#[test]
fn rolled_segments_are_synced_once_old_enough_and_the_recovery_point_follows() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = open(dir.path());
    for i in 0..12u8 {
        append(&p, &make_batch(i as i64, &[&[i; 50]])).expect("append");
    }
    let bases = log_files(dir.path());
    assert!(bases.len() > 2, "expected rolls, got {bases:?}");
    assert!(p.has_unsynced_rolls());
    // Not old enough yet: nothing synced, the recovery point stays.
    p.sync_rolled(Duration::from_secs(3600)).expect("sync");
    assert!(p.has_unsynced_rolls());
    assert_eq!(crate::log::read_recovery_point(dir.path()), 0);
    // Old enough: every closed segment is synced and vouched for, the active one is not.
    p.sync_rolled(Duration::ZERO).expect("sync");
    assert!(!p.has_unsynced_rolls());
    let active_base = *bases.last().expect("active");
    assert_eq!(crate::log::read_recovery_point(dir.path()), active_base);
}
