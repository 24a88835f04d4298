//! Remote reads against an in-memory object store: chunks, read-ahead, cache bounds, and
//! damaged objects.

use super::*;
use crate::log::record_batch::BatchHeaders;
use crate::tier::test_support::{archive_all, make_log, tier_with, tp};
use crate::tier::Manifest;
use object_store::memory::InMemory;
use object_store::PutPayload;
use std::time::Duration;

/// A tier on InMemory holding the closed segments of a log of 60 batches of ~570 bytes
/// (segments of ~16 KiB, so four 4 KiB chunks each).
struct Fixture {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    store: Arc<InMemory>,
    tier: Arc<Tier>,
    manifest: Manifest,
}

async fn fixture() -> Fixture {
    fixture_with(1 << 20).await
}

async fn fixture_with(index_cache_bytes: u64) -> Fixture {
    let (logdir, cache) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let log = make_log(logdir.path(), 16 << 10, 60, 500);
    let store = Arc::new(InMemory::new());
    let tier = tier_with(store.clone(), cache.path(), index_cache_bytes);
    let manifest = archive_all(&tier, &tp(), &log).await;
    assert!(manifest.segments.len() >= 2);
    assert!(manifest.segments[0].size > 2 * 4096);
    Fixture {
        _dirs: (logdir, cache),
        store,
        tier,
        manifest,
    }
}

fn want(offset: i64, max_bytes: usize) -> ReadWant {
    ReadWant {
        offset,
        max_bytes,
        min_one: true,
    }
}

fn offsets(bytes: &[u8]) -> Vec<i64> {
    BatchHeaders::new(bytes)
        .map(|b| b.expect("batch").base_offset())
        .collect()
}

async fn overwrite(f: &Fixture, seg: &RemoteSegment, suffix: &str, body: Vec<u8>) {
    f.store
        .put(
            &f.tier.paths.segment(&tp(), seg, suffix),
            PutPayload::from(body),
        )
        .await
        .expect("put");
}

async fn original(f: &Fixture, seg: &RemoteSegment, suffix: &str) -> Vec<u8> {
    f.store
        .get(&f.tier.paths.segment(&tp(), seg, suffix))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
        .to_vec()
}

#[tokio::test]
async fn reads_whole_batches_from_the_offset_up_to_max_bytes() {
    let f = fixture().await;
    let seg = f.manifest.segments[1].clone();
    let from = seg.base_offset + 3;
    let bytes = f
        .tier
        .read(&tp(), &seg, want(from, 2000))
        .await
        .expect("read");
    assert_eq!(offsets(&bytes), vec![from, from + 1, from + 2]);
    // KIP-74: one batch even when max_bytes is smaller.
    let bytes = f
        .tier
        .read(&tp(), &seg, want(from, 10))
        .await
        .expect("read");
    assert_eq!(offsets(&bytes), vec![from]);
    let none = ReadWant {
        min_one: false,
        ..want(from, 10)
    };
    assert!(f
        .tier
        .read(&tp(), &seg, none)
        .await
        .expect("read")
        .is_empty());
}

#[tokio::test]
async fn a_read_fetches_the_next_chunks_ahead() {
    let f = fixture().await;
    let seg = f.manifest.segments[0].clone();
    let bytes = f.tier.read(&tp(), &seg, want(0, 100)).await.expect("read");
    assert_eq!(offsets(&bytes), vec![0]);
    assert!(bytes.len() < 4096, "the read itself stays in chunk 0");
    let cached = |n| f.tier.reader.chunks.contains(seg.segment_id, n);
    for _ in 0..200 {
        if cached(1) && cached(2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cached(1) && cached(2), "chunks 1 and 2 were fetched ahead");
    // Served from the cache, even with the store gone.
    f.store
        .delete(&f.tier.paths.segment(&tp(), &seg, ".log"))
        .await
        .expect("delete");
    let later = seg.base_offset + 9;
    let bytes = f
        .tier
        .read(&tp(), &seg, want(later, 1000))
        .await
        .expect("cached read");
    assert_eq!(offsets(&bytes), vec![later]);
}

#[tokio::test]
async fn a_read_waits_for_a_chunk_being_fetched_ahead_instead_of_fetching_it_again() {
    let f = fixture().await;
    let seg = f.manifest.segments[0].clone();
    let path = f.tier.paths.segment(&tp(), &seg, ".log");
    let chunk1 = f.store.get_range(&path, 4096..8192).await.expect("range");
    let key = (seg.segment_id, 1);
    lock(&f.tier.reader.prefetching).insert(key, Arc::new(Notify::new()));
    let ahead = Prefetch {
        pending: f.tier.reader.prefetching.clone(),
        key,
    };
    // Offset 9 starts past the first 4 KiB: its bytes are in chunk 1.
    let (tier, s) = (f.tier.clone(), seg.clone());
    let read = tokio::spawn(async move { tier.read(&tp(), &s, want(9, 100)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!read.is_finished(), "the read fetched the chunk itself");
    f.tier.reader.chunks.put(seg.segment_id, 1, chunk1).await;
    drop(ahead);
    let bytes = tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .expect("woken when the read-ahead ended")
        .expect("task")
        .expect("read");
    assert_eq!(offsets(&bytes), vec![9]);
}

#[tokio::test]
async fn a_read_ahead_that_never_ends_holds_a_reader_up_only_briefly() {
    let f = fixture().await;
    let seg = f.manifest.segments[0].clone();
    let key = (seg.segment_id, 1);
    lock(&f.tier.reader.prefetching).insert(key, Arc::new(Notify::new()));
    // The entry is never removed, as if the store had stalled that one GET.
    let bytes = tokio::time::timeout(
        READ_AHEAD_WAIT + Duration::from_secs(3),
        f.tier.read(&tp(), &seg, want(9, 100)),
    )
    .await
    .expect("the reader fetched the chunk itself")
    .expect("read");
    assert_eq!(offsets(&bytes), vec![9]);
}

#[tokio::test]
async fn the_index_cache_stays_within_its_byte_limit() {
    // Each segment's index is ~28 entries of 8 bytes: room for about two of them.
    let f = fixture_with(500).await;
    for seg in f.manifest.segments.iter().chain(f.manifest.segments.iter()) {
        f.tier
            .read(&tp(), seg, want(seg.base_offset + 1, 100))
            .await
            .expect("read");
        assert!(f.tier.reader.indexes.bytes() <= 500);
    }
    assert!(f.tier.reader.indexes.bytes() > 0);
    // An index larger than the limit is used but not kept.
    let g = fixture_with(16).await;
    let seg = &g.manifest.segments[0];
    let bytes = g.tier.read(&tp(), seg, want(5, 100)).await.expect("read");
    assert_eq!(offsets(&bytes), vec![5]);
    assert_eq!(g.tier.reader.indexes.bytes(), 0);
}

#[tokio::test]
async fn offset_for_timestamp_finds_the_first_record_at_or_after_it() {
    let f = fixture().await;
    let seg = &f.manifest.segments[1];
    let ts = 1000 + seg.base_offset + 2;
    assert_eq!(
        f.tier
            .offset_for_timestamp(&tp(), &f.manifest, ts)
            .await
            .expect("lookup"),
        Some((seg.base_offset + 2, ts))
    );
    assert_eq!(
        f.tier
            .offset_for_timestamp(&tp(), &f.manifest, i64::MAX)
            .await
            .expect("lookup"),
        None
    );
}

/// Reads `offset` after `damage`, expecting Corrupt and nothing of the segment cached.
async fn assert_corrupt(f: &Fixture, seg: &RemoteSegment, offset: i64) {
    match f.tier.read(&tp(), seg, want(offset, 1 << 20)).await {
        Err(TierError::Corrupt(_)) => {}
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(f.tier.reader.indexes.get(seg.segment_id).is_none());
    assert!((0..8).all(|n| !f.tier.reader.chunks.contains(seg.segment_id, n)));
}

#[tokio::test]
async fn an_index_with_a_partial_entry_is_corrupt() {
    let f = fixture().await;
    let seg = f.manifest.segments[0].clone();
    let mut index = original(&f, &seg, ".index").await;
    index.truncate(index.len() - 3);
    overwrite(&f, &seg, ".index", index).await;
    assert_corrupt(&f, &seg, 3).await;
}

#[tokio::test]
async fn an_index_position_beyond_the_segment_is_corrupt() {
    let f = fixture().await;
    let seg = f.manifest.segments[0].clone();
    let mut index = original(&f, &seg, ".index").await;
    let last = index.len() - 4;
    index[last..].copy_from_slice(&u32::MAX.to_be_bytes());
    overwrite(&f, &seg, ".index", index).await;
    assert_corrupt(&f, &seg, 3).await;
}

#[tokio::test]
async fn an_oversized_index_is_refused_before_it_is_read() {
    let f = fixture().await;
    let seg = f.manifest.segments[0].clone();
    overwrite(
        &f,
        &seg,
        ".index",
        vec![0; (max_index_bytes(&seg) + 8) as usize],
    )
    .await;
    assert_corrupt(&f, &seg, 3).await;
}

#[tokio::test]
async fn a_short_log_object_is_corrupt() {
    let f = fixture().await;
    let seg = f.manifest.segments[0].clone();
    let mut log = original(&f, &seg, ".log").await;
    log.truncate(log.len() / 2);
    overwrite(&f, &seg, ".log", log).await;
    assert_corrupt(&f, &seg, seg.end_offset).await;
    // Also when the range starts past the object's end.
    let mut log = original(&f, &seg, ".log").await;
    log.truncate(100);
    overwrite(&f, &seg, ".log", log).await;
    assert_corrupt(&f, &seg, seg.end_offset).await;
}

/// The first batch's length field set to `len`; read from offset 0.
async fn with_first_length(len: i32) {
    let f = fixture().await;
    let seg = f.manifest.segments[0].clone();
    let mut log = original(&f, &seg, ".log").await;
    log[8..12].copy_from_slice(&len.to_be_bytes());
    overwrite(&f, &seg, ".log", log).await;
    assert_corrupt(&f, &seg, 0).await;
}

#[tokio::test]
async fn a_negative_batch_length_is_corrupt() {
    with_first_length(-5).await;
}

#[tokio::test]
async fn a_batch_length_smaller_than_a_header_is_corrupt() {
    with_first_length(10).await;
}

#[tokio::test]
async fn a_batch_running_past_the_segment_end_is_corrupt() {
    with_first_length(i32::MAX).await;
}

#[tokio::test]
async fn a_damaged_batch_in_a_timestamp_lookup_is_corrupt() {
    let f = fixture().await;
    let seg = f.manifest.segments[0].clone();
    let mut log = original(&f, &seg, ".log").await;
    log[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    overwrite(&f, &seg, ".log", log).await;
    assert!(matches!(
        f.tier.offset_for_timestamp(&tp(), &f.manifest, 1001).await,
        Err(TierError::Corrupt(_))
    ));
}

#[tokio::test]
async fn after_an_error_the_next_read_starts_clean() {
    let f = fixture().await;
    let seg = f.manifest.segments[0].clone();
    let good = original(&f, &seg, ".log").await;
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    overwrite(&f, &seg, ".log", bad).await;
    assert_corrupt(&f, &seg, 0).await;
    overwrite(&f, &seg, ".log", good).await;
    let bytes = f.tier.read(&tp(), &seg, want(0, 100)).await.expect("read");
    assert_eq!(offsets(&bytes), vec![0]);
}

#[tokio::test]
async fn the_chunk_cache_evicts_least_recently_used_chunks() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = ChunkCache::new(dir.path().to_path_buf(), 10);
    let seg = Uuid::from_u128(1);
    for n in 0..3 {
        cache.put(seg, n, Bytes::from(vec![n as u8; 4])).await;
    }
    assert!(cache.bytes() <= 10);
    assert!(!cache.contains(seg, 0));
    assert_eq!(cache.get(seg, 2, 1, 3).await, Some(vec![2, 2]));
    cache.remove_segment(seg).await;
    assert_eq!(cache.bytes(), 0);
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[test]
fn index_entries_out_of_order_are_corrupt() {
    let seg = RemoteSegment {
        base_offset: 0,
        end_offset: 10,
        segment_id: Uuid::nil(),
        max_timestamp: 0,
        size: 1000,
        crc32c: 0,
        txn_index: false,
    };
    let entry = |r: u32, p: u32| [r.to_be_bytes(), p.to_be_bytes()].concat();
    let good = [entry(1, 100), entry(2, 200)].concat();
    assert_eq!(
        parse_index(&good, &seg).expect("parse"),
        vec![(1, 100), (2, 200)]
    );
    let bad = [entry(2, 200), entry(1, 100)].concat();
    assert!(matches!(
        parse_index(&bad, &seg),
        Err(TierError::Corrupt(_))
    ));
}
