use super::*;

#[test]
fn markers_validate_and_say_what_they_are() {
    for commit in [true, false] {
        let b = control_batch(7, 3, commit, 1000);
        let parsed = RecordBatch::validate(&b).expect("valid");
        assert!(parsed.is_control() && parsed.is_transactional());
        assert_eq!((parsed.producer_id(), parsed.producer_epoch()), (7, 3));
        assert_eq!(marker_type(&parsed), Some(commit));
    }
}

/// Builds a valid uncompressed batch of `values`, one record each, for tests.
pub fn make_batch(base_ts: i64, values: &[&[u8]]) -> Vec<u8> {
    make_idempotent_batch(base_ts, values, -1, -1, -1)
}

pub fn make_idempotent_batch(
    base_ts: i64,
    values: &[&[u8]],
    pid: i64,
    epoch: i16,
    seq: i32,
) -> Vec<u8> {
    let mut records = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let mut body = vec![0u8];
        put_varint(&mut body, i as i64); // timestamp delta
        put_varint(&mut body, i as i64); // offset delta
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, v.len() as i64);
        body.extend_from_slice(v);
        put_varint(&mut body, 0); // headers
        put_varint(&mut records, body.len() as i64);
        records.extend_from_slice(&body);
    }
    let n = values.len() as i32;
    let mut b = Vec::new();
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&(base_ts + n as i64 - 1).to_be_bytes());
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(&epoch.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&records);
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch of keyed records (a `None` value is a tombstone), for tests.
pub fn make_keyed_batch(
    base_ts: i64,
    records: &[(&[u8], Option<&[u8]>)],
    pid: i64,
    epoch: i16,
    seq: i32,
    transactional: bool,
) -> Vec<u8> {
    let mut body_all = Vec::new();
    for (i, (k, v)) in records.iter().enumerate() {
        let mut body = vec![0u8];
        put_varint(&mut body, i as i64);
        put_varint(&mut body, i as i64);
        put_varint(&mut body, k.len() as i64);
        body.extend_from_slice(k);
        match v {
            Some(v) => {
                put_varint(&mut body, v.len() as i64);
                body.extend_from_slice(v);
            }
            None => put_varint(&mut body, -1),
        }
        put_varint(&mut body, 0);
        put_varint(&mut body_all, body.len() as i64);
        body_all.extend_from_slice(&body);
    }
    let mut b = make_idempotent_batch(base_ts, &[], pid, epoch, seq);
    b.truncate(HEADER_SIZE);
    let n = records.len() as i32;
    b[LAST_OFFSET_DELTA_OFFSET..LAST_OFFSET_DELTA_OFFSET + 4]
        .copy_from_slice(&(n - 1).to_be_bytes());
    b[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&(base_ts + n as i64 - 1).to_be_bytes());
    b[RECORD_COUNT_OFFSET..RECORD_COUNT_OFFSET + 4].copy_from_slice(&n.to_be_bytes());
    if transactional {
        b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2]
            .copy_from_slice(&TRANSACTIONAL_BIT.to_be_bytes());
    }
    b.extend_from_slice(&body_all);
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

#[test]
fn keyed_records_parse_with_their_keys_and_tombstones() {
    let b = make_keyed_batch(
        10,
        &[(b"k1", Some(b"v1")), (b"k2", None)],
        -1,
        -1,
        -1,
        false,
    );
    let batch = RecordBatch::validate(&b).expect("valid");
    let recs = parse_records(batch.records(), batch.record_count()).expect("parse");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].key, Some(&b"k1"[..]));
    assert_eq!(recs[0].value, Some(&b"v1"[..]));
    assert_eq!(recs[1].value, None);
    assert_eq!(recs[1].offset_delta, 1);
    // Keep only the second record: same offsets, one record.
    let rebuilt = rebuild_batch(&batch, recs[1].raw, 1, 11);
    let rb = RecordBatch::validate(&rebuilt).expect("rebuilt is valid");
    assert_eq!((rb.record_count(), rb.last_offset_delta()), (1, 1));
    let e = empty_batch(5, 9, Some(&batch));
    let eb = RecordBatch::validate(&e).expect("empty is valid");
    assert_eq!(
        (eb.base_offset(), eb.last_offset(), eb.record_count()),
        (5, 9, 0)
    );
}

#[test]
fn a_well_formed_batch_validates_and_reports_its_fields() {
    let b = make_batch(1000, &[b"a", b"bb", b"ccc"]);
    let batch = RecordBatch::validate(&b).expect("valid");
    assert_eq!(batch.record_count(), 3);
    assert_eq!(batch.last_offset_delta(), 2);
    assert_eq!(batch.max_timestamp(), 1002);
    assert_eq!(batch.producer_id(), -1);
}

#[test]
fn a_flipped_bit_fails_the_crc() {
    let mut b = make_batch(1000, &[b"hello"]);
    let last = b.len() - 2;
    b[last] ^= 1;
    assert!(matches!(
        RecordBatch::validate(&b),
        Err(BatchError::Crc { .. })
    ));
}

#[test]
fn magic_one_is_refused() {
    let mut b = make_batch(1000, &[b"x"]);
    b[MAGIC_OFFSET] = 1;
    assert_eq!(RecordBatch::validate(&b).unwrap_err(), BatchError::Magic(1));
}

#[test]
fn base_offset_is_outside_the_crc_but_log_append_time_reseals_it() {
    let mut b = make_batch(1000, &[b"x", b"y"]);
    set_base_offset(&mut b, 42);
    let (head, rest) = b.split_at_mut(HEADER_SIZE);
    set_log_append_time(head, rest, 5000);
    let batch = RecordBatch::validate(&b).expect("still valid");
    assert_eq!(batch.base_offset(), 42);
    assert_eq!(batch.last_offset(), 43);
    assert!(batch.is_log_append_time());
    assert_eq!(batch.max_timestamp(), 5000);
}

#[test]
fn timestamp_search_finds_the_first_record_at_or_after_the_target() {
    let mut b = make_batch(1000, &[b"a", b"b", b"c"]);
    set_base_offset(&mut b, 10);
    let batch = RecordBatch::validate(&b).expect("valid");
    assert_eq!(first_offset_at_or_after(&batch, 1001), Some((11, 1001)));
    assert_eq!(first_offset_at_or_after(&batch, 999), Some((10, 1000)));
    assert_eq!(first_offset_at_or_after(&batch, 1003), None);
}

#[test]
fn timestamp_search_looks_inside_compressed_batches() {
    use codec::{BatchSpec, Compression, Record};
    let ts = [1000, 1010, 1500, 1020, 1500];
    let records: Vec<Record> = ts
        .iter()
        .enumerate()
        .map(|(i, t)| Record {
            attributes: 0,
            timestamp_delta: t - 1000,
            offset_delta: i as i32,
            key: None,
            value: Some(bytes::Bytes::from(vec![b'x'; 100])),
            headers: vec![],
        })
        .collect();
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut spec = BatchSpec::new(20, 1000);
        spec.compression = codec;
        let b = codec::encode_batch(&spec, &records).unwrap();
        let batch = RecordBatch::validate(&b).unwrap();
        assert_eq!(first_offset_at_or_after(&batch, 1005), Some((21, 1010)));
        assert_eq!(first_offset_at_or_after(&batch, 1011), Some((22, 1500)));
        assert_eq!(first_offset_at_or_after(&batch, 1501), None);
        assert_eq!(offset_of_max_timestamp(&batch), 22);
        // LogAppendTime: every record carries the batch's time.
        let mut lat = b.clone();
        let (head, rest) = lat.split_at_mut(HEADER_SIZE);
        set_log_append_time(head, rest, 9000);
        let batch = RecordBatch::validate(&lat).unwrap();
        assert_eq!(first_offset_at_or_after(&batch, 1600), Some((20, 9000)));
        assert_eq!(offset_of_max_timestamp(&batch), 20);
    }
}

#[test]
fn header_iteration_stops_at_a_torn_batch() {
    let mut buf = make_batch(1, &[b"a"]);
    buf.extend_from_slice(&make_batch(2, &[b"b"]));
    let torn = make_batch(3, &[b"c"]);
    buf.extend_from_slice(&torn[..torn.len() - 3]);
    let mut it = BatchHeaders::new(&buf);
    assert!(it.next().is_some());
    assert!(it.next().is_some());
    assert!(it.next().is_none());
}
