use super::*;

const ALL: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn sample_records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            attributes: 0,
            timestamp_delta: (i as i64) * 3,
            offset_delta: i as i32,
            key: (i % 3 != 0).then(|| Bytes::from(format!("key-{i}"))),
            value: (i % 5 != 4).then(|| Bytes::from(format!("value-{i}-").repeat(i % 17))),
            headers: if i % 2 == 0 {
                vec![
                    RecordHeader {
                        key: Bytes::from_static(b"h1"),
                        value: Some(Bytes::from_static(b"v1")),
                    },
                    RecordHeader {
                        key: Bytes::from_static(b"h2"),
                        value: None,
                    },
                ]
            } else {
                vec![]
            },
        })
        .collect()
}

#[test]
fn every_codec_round_trips_a_batch() {
    let records = sample_records(200);
    for codec in ALL {
        let mut spec = BatchSpec::new(1000, 1_700_000_000_000);
        spec.compression = codec;
        spec.producer_id = 42;
        spec.producer_epoch = 3;
        spec.base_sequence = 17;
        spec.transactional = true;
        let bytes = encode_batch(&spec, &records).expect("encode");
        let batch = RecordBatch::validate(&bytes).expect("valid batch");
        assert_eq!(batch.compression(), codec.id(), "{codec:?}");
        assert_eq!(batch.record_count(), 200);
        assert_eq!(batch.last_offset(), 1199);
        assert_eq!(batch.max_timestamp(), 1_700_000_000_000 + 199 * 3);
        assert!(batch.is_transactional() && !batch.is_control());
        assert_eq!(
            (
                batch.producer_id(),
                batch.producer_epoch(),
                batch.base_sequence()
            ),
            (42, 3, 17)
        );
        let back = decode_records(&batch, DEFAULT_DECOMPRESSED_LIMIT).expect("decode");
        assert_eq!(back, records, "{codec:?}");
        assert_eq!(BatchSpec::from_batch(&batch).unwrap().compression, codec);
    }
}

#[test]
fn codecs_round_trip_large_and_empty_inputs() {
    let big: Vec<u8> = (0..300_000u32)
        .flat_map(|i| (i % 251).to_be_bytes())
        .collect();
    for codec in ALL {
        for input in [&big[..], b""] {
            let c = compress(codec, input).expect("compress");
            let d = decompress(codec, &c, big.len()).expect("decompress");
            assert_eq!(d, input, "{codec:?}");
        }
    }
}

#[test]
fn decompression_stops_at_the_limit() {
    let zeros = vec![0u8; 4 << 20];
    for codec in ALL {
        let c = compress(codec, &zeros).expect("compress");
        assert_eq!(
            decompress(codec, &c, 1 << 20),
            Err(CodecError::TooLarge(1 << 20)),
            "{codec:?}"
        );
        assert_eq!(decompress(codec, &c, 4 << 20).map(|d| d.len()), Ok(4 << 20));
    }
}

#[test]
fn a_lying_snappy_length_is_refused_before_allocating() {
    // A raw snappy block whose preamble claims 2^31 bytes.
    let block = [0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
    assert_eq!(
        decompress(Compression::Snappy, &block, 1 << 20),
        Err(CodecError::TooLarge(1 << 20))
    );
    let mut framed = XERIAL_HEADER.to_vec();
    framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
    framed.extend_from_slice(&block);
    assert_eq!(
        decompress(Compression::Snappy, &framed, 1 << 20),
        Err(CodecError::TooLarge(1 << 20))
    );
}

#[test]
fn raw_snappy_is_read_as_well_as_xerial_framing() {
    let data = b"hello hello hello hello snappy".repeat(50);
    let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
    assert_eq!(
        decompress(Compression::Snappy, &raw, 1 << 20).unwrap(),
        data
    );
    let framed = compress(Compression::Snappy, &data).unwrap();
    assert!(framed.starts_with(XERIAL_HEADER));
    assert_eq!(
        decompress(Compression::Snappy, &framed, 1 << 20).unwrap(),
        data
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let junk: Vec<u8> = (0..500u32).map(|i| (i * 7919 % 256) as u8).collect();
    for codec in ALL[1..].iter().copied() {
        for len in [0, 1, 5, 16, 100, 500] {
            let _ = decompress(codec, &junk[..len], 1 << 20);
        }
        // Truncated valid data.
        let c = compress(codec, &b"abcdefgh".repeat(1000)).unwrap();
        assert!(
            decompress(codec, &c[..c.len() / 2], 1 << 20).is_err(),
            "{codec:?}"
        );
    }
    assert_eq!(
        Compression::from_attributes(5),
        Err(CodecError::UnknownCodec(5))
    );
}

#[test]
fn record_count_must_match_the_records() {
    let records = sample_records(5);
    let mut section = Vec::new();
    encode_section(&mut section, &records);
    let section = Bytes::from(section);
    assert_eq!(decode_section(&section, 5).unwrap().len(), 5);
    assert!(matches!(
        decode_section(&section, 4),
        Err(CodecError::Count { .. })
    ));
    assert!(matches!(
        decode_section(&section, 6),
        Err(CodecError::Count { .. })
    ));
    // A huge declared count does not allocate for it.
    assert!(decode_section(&section, i32::MAX).is_err());
    // Every truncation fails cleanly.
    for cut in 0..section.len() {
        assert!(decode_section(&section.slice(..cut), 5).is_err());
    }
}

#[test]
fn recompress_keeps_every_header_field() {
    let records = sample_records(10);
    let mut spec = BatchSpec::new(77, 5000);
    spec.compression = Compression::Gzip;
    spec.producer_id = 9;
    spec.producer_epoch = 1;
    spec.base_sequence = 100;
    spec.log_append_time = true;
    spec.max_timestamp = Some(123_456);
    let gz = encode_batch(&spec, &records).unwrap();
    let gz = RecordBatch::validate(&gz).unwrap();
    for codec in ALL {
        let out = recompress(&gz, codec, DEFAULT_DECOMPRESSED_LIMIT).unwrap();
        let b = RecordBatch::validate(&out).unwrap();
        assert_eq!(b.compression(), codec.id());
        let mut want = spec.clone();
        want.compression = codec;
        want.last_offset_delta = Some(9);
        assert_eq!(BatchSpec::from_batch(&b).unwrap(), want);
        assert_eq!(decode_records(&b, 1 << 20).unwrap(), records);
    }
}

#[test]
fn an_empty_batch_keeps_its_last_offset() {
    let mut spec = BatchSpec::new(500, 10);
    spec.last_offset_delta = Some(4);
    spec.compression = Compression::Zstd;
    let b = encode_batch(&spec, &[]).unwrap();
    let b = RecordBatch::validate(&b).unwrap();
    assert_eq!(
        (b.record_count(), b.last_offset(), b.max_timestamp()),
        (0, 504, 10)
    );
    assert!(decode_records(&b, 1 << 20).unwrap().is_empty());
}

/// Batches as real clients compressed them (5 records from librdkafka 2.16 through
/// confluent-kafka; the Java client 4.3's first batch of `ProduceConsume`).
const CAPTURED: [(&str, &[u8]); 8] = [
    (
        "librdkafka-gzip",
        include_bytes!("../testdata/librdkafka-gzip.bin"),
    ),
    (
        "librdkafka-snappy",
        include_bytes!("../testdata/librdkafka-snappy.bin"),
    ),
    (
        "librdkafka-lz4",
        include_bytes!("../testdata/librdkafka-lz4.bin"),
    ),
    (
        "librdkafka-zstd",
        include_bytes!("../testdata/librdkafka-zstd.bin"),
    ),
    ("java-gzip", include_bytes!("../testdata/java-gzip.bin")),
    ("java-snappy", include_bytes!("../testdata/java-snappy.bin")),
    ("java-lz4", include_bytes!("../testdata/java-lz4.bin")),
    ("java-zstd", include_bytes!("../testdata/java-zstd.bin")),
];

#[test]
fn batches_from_real_clients_decode_and_recompress() {
    for (name, bytes) in CAPTURED {
        let batch = RecordBatch::validate(bytes).expect(name);
        assert_ne!(batch.compression(), 0, "{name}");
        let records = decode_records(&batch, 1 << 20).expect(name);
        assert_eq!(records.len(), batch.record_count() as usize, "{name}");
        if name.starts_with("librdkafka") {
            for (i, r) in records.iter().enumerate() {
                let key = (i != 2).then(|| Bytes::from(format!("k{i}")));
                assert_eq!(r.key, key, "{name}");
                let value = format!("value {i} ").repeat(i + 3);
                assert_eq!(r.value.as_deref(), Some(value.as_bytes()), "{name}");
                assert_eq!(
                    r.headers[0].value.as_deref(),
                    Some(i.to_string().as_bytes())
                );
                assert_eq!(
                    r.timestamp(batch.base_timestamp()),
                    1_700_000_000_000 + 10 * i as i64
                );
            }
            assert_eq!(
                find_record(&batch, 1 << 20, |ts| ts >= 1_700_000_000_025),
                Ok(Some((3, 1_700_000_000_030))),
                "{name}"
            );
        }
        for codec in ALL {
            let out = recompress(&batch, codec, 1 << 20).expect(name);
            let again = RecordBatch::validate(&out).expect(name);
            assert_eq!(
                decode_records(&again, 1 << 20).as_ref(),
                Ok(&records),
                "{name} -> {codec:?}"
            );
            assert_eq!(again.max_timestamp(), batch.max_timestamp());
        }
    }
}
