//! The `startup` fuzz target: the files the broker reads back at start-up, which a crash
//! or a damaged disk may have left in any state — a partition directory, the broker's
//! state files under `.strata/`, and a partition's manifest and segments in the archive.
//!
//! Files: a partition directory, a data directory and an archive cache in the scratch
//! directory, each emptied before the input that uses it.

use super::record_batch::read_batches;
use super::{config, fresh_dir, scratch, NOW_MS};
use crate::broker::partition::{AppendRules, Partition};
use crate::log::codec;
use crate::log::LogConfig;
use crate::security::sasl::credentials::ScramCredentials;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The files of a partition directory the fuzzer may write.
const PARTITION_FILES: &[&str] = &[
    "00000000000000000000.log",
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
    "00000000000000000000.txnindex",
    "00000000000000000000.snapshot",
    "00000000000000000100.log",
    "00000000000000000100.index",
    "00000000000000000100.timeindex",
    "00000000000000000100.snapshot",
    "recovery-point",
    "log-start-offset",
    "cleaner-offset-checkpoint",
    "00000000000000000000.log.cleaned",
    "00000000000000000000.log.swap",
    "00000000000000000000.index.swap",
    "00000000000000000000.replaces.swap",
    "09223372036854775000.log",
    "09223372036854775000.index",
];

/// The broker's own files under `<data_dir>/.strata/`.
const BROKER_FILES: &[&str] = &[
    "groups/g.yaml",
    "groups/h.yaml",
    "transactions/t.yaml",
    "transactions/u.yaml",
    "dynamic-configs.yaml",
    "acls.yaml",
    "scram-credentials.json",
    "producer-id-block",
    "topics/t.yaml",
];

/// Splits `data` into (file index, contents) entries: one byte picking the file, two
/// (little-endian) for the length, then the contents.
fn entries(mut data: &[u8], files: usize) -> Vec<(usize, &[u8])> {
    let mut out = Vec::new();
    while let [which, a, b, rest @ ..] = data {
        let len = (u16::from_le_bytes([*a, *b]) as usize).min(rest.len());
        out.push((*which as usize % files, &rest[..len]));
        data = &rest[len..];
    }
    out
}

fn write_files(dir: &Path, names: &[&str], data: &[u8]) {
    for (i, contents) in entries(data, names.len()) {
        let path = dir.join(names[i]);
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(path, contents);
    }
}

/// Files read at start-up: the first byte picks a partition directory, the broker's state
/// files, or a partition in the archive; the rest are the files' contents.
pub fn startup(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => partition_dir(rest),
        1 => broker_files(rest),
        _ => archive(rest),
    }
}

/// Opens a partition on the files (recovery, index checks, producer snapshots, checkpoints,
/// compaction swaps), then reads it, looks up offsets and appends to it.
fn partition_dir(data: &[u8]) {
    let dir = scratch("startup-partition");
    fresh_dir(&dir);
    write_files(&dir, PARTITION_FILES, data);
    let config = LogConfig {
        segment_bytes: 64 << 10,
        segment_ms: u64::MAX / 2,
        index_interval_bytes: 256,
    };
    let Ok(p) = Partition::open("fuzz", &dir, config) else {
        return;
    };
    for offset in [p.log_start_offset(), 0, 50, 100, p.high_watermark() - 1] {
        if let Ok(data) = p.read(offset, 1 << 16, true, true) {
            read_batches(&data.records);
            // What a plaintext fetch sends from the file: the same bytes.
            if let Ok(found) = p.read_file(offset, 1 << 16, true, true) {
                let sent = found.and_then(|(range, _)| range.read().ok());
                assert_eq!(sent.unwrap_or_default(), data.records, "read_file != read");
            }
        }
    }
    let _ = p.offset_for_timestamp(0);
    let _ = p.offset_for_timestamp(NOW_MS);
    let _ = p.max_timestamp();
    let _ = p.aborted_between(0, i64::MAX);
    let _ = p.producers();
    let batch = codec::encode_batch(
        &codec::BatchSpec::new(0, NOW_MS),
        &[codec::Record {
            attributes: 0,
            timestamp_delta: 0,
            offset_delta: 0,
            key: Some(bytes::Bytes::from_static(b"k")),
            value: Some(bytes::Bytes::from_static(b"v")),
            headers: Vec::new(),
        }],
    );
    if let Ok(batch) = batch {
        let rules = AppendRules::default();
        let _ = p.append(&batch, &rules, NOW_MS, &|_, _| Ok(()));
    }
}

/// The broker's state files, each through the loader `Broker::open` uses.
fn broker_files(data: &[u8]) {
    let data_dir = scratch("startup-broker");
    fresh_dir(&data_dir);
    let meta = data_dir.join(".strata");
    write_files(&meta, BROKER_FILES, data);
    let c = config(&[]);
    if let Ok(g) = crate::broker::groups::GroupCoordinator::open(
        meta.join("groups"),
        crate::broker::groups::GroupSettings::from_config(&c),
    ) {
        let _ = g.list();
    }
    if let Ok(t) = crate::broker::transactions::TxnCoordinator::open(
        meta.join("transactions"),
        crate::broker::transactions::TxnSettings::from_config(&c),
    ) {
        let _ = t.all();
    }
    let _ = crate::broker::dynamic_configs::load(&data_dir);
    let _ = crate::security::authorizer::Authorizer::open(&meta, Default::default());
    let _ = ScramCredentials::open(meta.join("scram-credentials.json"));
    if let Ok(ids) = crate::broker::producer_ids::ProducerIds::open(meta.join("producer-id-block"))
    {
        let _ = ids.next();
    }
    if let Ok(text) = std::fs::read_to_string(meta.join("topics/t.yaml")) {
        let _ = crate::broker::topics::Topic::from_meta_yaml(&text);
    }
}

/// A partition's manifest and its segments' objects in the archive (an in-memory store):
/// the manifest loaded as a broker loads it, then remote reads, timestamp lookups and
/// aborted transactions of each listed segment. After the manifest come, per listed
/// segment, its `.log`, `.index` and `.txnindex` objects (each a 2-byte length, then bytes).
fn archive(data: &[u8]) {
    use crate::tier::{CacheLimits, Tier, TopicIdPartition};
    use object_store::{ObjectStoreExt, PutPayload};
    let (manifest, mut objects) = match data.split_first_chunk::<2>() {
        Some((len, rest)) => {
            let len = (u16::from_le_bytes(*len) as usize).min(rest.len());
            rest.split_at(len)
        }
        None => return,
    };
    let store = Arc::new(object_store::memory::InMemory::new());
    let cache = scratch("startup-archive");
    fresh_dir(&cache);
    let tier = Arc::new(Tier::new(
        store.clone(),
        "fuzz".into(),
        cache,
        CacheLimits {
            chunk_bytes: 4096,
            chunk_cache_bytes: 1 << 20,
            index_cache_bytes: 1 << 20,
        },
    ));
    let paths = crate::tier::store::Paths::new("fuzz".into());
    let tp = TopicIdPartition::new("t", uuid::Uuid::nil(), 0);
    runtime().block_on(async {
        let put = |path: object_store::path::Path, bytes: &[u8]| {
            let store = store.clone();
            let payload = PutPayload::from(bytes.to_vec());
            async move { store.put(&path, payload).await }
        };
        if put(paths.manifest(&tp), manifest).await.is_err() {
            return;
        }
        let Ok(m) = tier.load_manifest(&tp).await else {
            return;
        };
        for seg in m.segments.iter().take(4) {
            for suffix in [".log", ".index", ".txnindex"] {
                let (len, rest) = match objects.split_first_chunk::<2>() {
                    Some((len, rest)) => (u16::from_le_bytes(*len) as usize, rest),
                    None => (0, objects),
                };
                let (body, rest) = rest.split_at(len.min(rest.len()));
                objects = rest;
                let _ = put(paths.segment(&tp, seg, suffix), body).await;
            }
        }
        for seg in m.segments.iter().take(4) {
            for offset in [seg.base_offset, seg.end_offset] {
                let want = crate::tier::reader::ReadWant {
                    offset,
                    max_bytes: 1 << 16,
                    min_one: true,
                };
                if let Ok(bytes) = tier.read(&tp, seg, want).await {
                    read_batches(&bytes);
                }
            }
            let _ = tier.txn_index(&tp, seg).await;
        }
        let _ = tier.offset_for_timestamp(&tp, &m, 0).await;
        let _ = m.find(0);
        let _ = m.next_offset();
    });
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Seed inputs: a partition directory, broker state files and an archive written by the
/// broker's own code.
#[cfg(test)]
pub(super) mod seeds {
    use super::*;
    use crate::fuzzing::seeds::{batches, records, save};
    use crate::log::codec::{encode_batch, BatchSpec};

    fn entry(out: &mut Vec<u8>, which: usize, bytes: &[u8]) {
        out.push(which as u8);
        out.extend((bytes.len().min(u16::MAX as usize) as u16).to_le_bytes());
        out.extend(&bytes[..bytes.len().min(u16::MAX as usize)]);
    }

    /// A partition written by the broker's own code: two segments, an aborted transaction,
    /// producer snapshots and checkpoints, each file as one entry.
    pub(in crate::fuzzing) fn startup_seeds() {
        let dir = scratch("seed-partition");
        fresh_dir(&dir);
        let config = LogConfig {
            segment_bytes: 2048,
            segment_ms: u64::MAX / 2,
            index_interval_bytes: 256,
        };
        {
            let p = Partition::open("t", &dir, config.clone()).expect("partition");
            let rules = AppendRules::default();
            for (_, b) in batches().iter().filter(|(n, _)| {
                !n.contains("transactional") && !n.contains("idempotent") && !n.contains("marker")
            }) {
                for _ in 0..4 {
                    p.append(b, &rules, NOW_MS, &|_, _| Ok(())).expect("append");
                }
            }
            let idem = encode_batch(
                &BatchSpec {
                    producer_id: 7,
                    producer_epoch: 0,
                    base_sequence: 0,
                    ..BatchSpec::new(0, NOW_MS)
                },
                &records(2),
            )
            .expect("batch");
            p.append(&idem, &rules, NOW_MS, &|_, _| Ok(()))
                .expect("append");
            p.flush().expect("flush");
        }
        crate::broker::producer_state::write_snapshot(&dir, 0, &Default::default());
        let _ = std::fs::write(dir.join("recovery-point"), b"20");
        let _ = std::fs::write(dir.join("log-start-offset"), b"0");
        let _ = std::fs::write(dir.join("00000000000000000000.txnindex"), {
            let mut e = 0i16.to_be_bytes().to_vec();
            for v in [7i64, 3, 5, 6] {
                e.extend(v.to_be_bytes());
            }
            e
        });
        let mut input = vec![0u8];
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in &names {
            // The fuzzer's table names the first two segments' files at bases 0 and 100;
            // map the broker's files onto it by suffix.
            let which = PARTITION_FILES.iter().position(|f| f == name).or_else(|| {
                let suffix = name.split_once('.').map(|(_, s)| s)?;
                PARTITION_FILES
                    .iter()
                    .position(|f| f.starts_with("00000000000000000100") && f.ends_with(suffix))
            });
            if let Some(which) = which {
                entry(
                    &mut input,
                    which,
                    &std::fs::read(dir.join(name)).expect("file"),
                );
            }
        }
        save("startup", "partition", &input);
        let _ = std::fs::remove_dir_all(&dir);

        // Broker state files in the formats the broker writes.
        let mut broker = vec![1u8];
        entry(&mut broker, 0, b"group: g\nprotocol_type: consumer\nempty_since: null\noffsets:\n  t:\n    0:\n      offset: 42\n      leader_epoch: -1\n      metadata: ''\n      commit_timestamp: 1700000000000\n");
        entry(&mut broker, 2, b"id: tx\nproducer_id: 7\nproducer_epoch: 0\ntimeout_ms: 60000\nstate: Ongoing\npartitions:\n- - t\n  - 0\ngroups: []\nstarted_ms: 1700000000000\nlast_update_ms: 1700000000000\n");
        entry(&mut broker, 4, b"broker:\n  log.retention.ms: '1000'\ncluster: {}\ngroups:\n  g:\n    consumer.session.timeout.ms: '45000'\n");
        entry(&mut broker, 5, b"acls:\n- resource_type: Topic\n  name: t\n  pattern_type: Literal\n  principal: User:alice\n  host: '*'\n  operation: Read\n  permission: Allow\n");
        entry(&mut broker, 6, br#"{"users":{"alice":{"SCRAM-SHA-256":{"salt":"c2FsdA==","iterations":4096,"stored_key":"AAAA","server_key":"AAAA"}}}}"#);
        entry(&mut broker, 7, b"1000\n");
        entry(&mut broker, 8, b"name: t\nid: 00000000-0000-0000-0000-000000000001\npartitions: 3\nconfigs:\n  retention.ms: '1000'\n");
        save("startup", "broker", &broker);

        // An archived partition: a manifest listing one segment, and its objects.
        let seg_log = batches()
            .into_iter()
            .take(3)
            .flat_map(|(_, b)| b)
            .collect::<Vec<u8>>();
        let manifest = format!(
            r#"{{"segments":[{{"base_offset":0,"end_offset":10,"segment_id":"00000000-0000-0000-0000-000000000002","max_timestamp":{NOW_MS},"size":{},"crc32c":{},"txn_index":true}}],"log_start_offset":0}}"#,
            seg_log.len(),
            crc32c::crc32c(&seg_log)
        );
        let mut archive = vec![2u8];
        archive.extend((manifest.len() as u16).to_le_bytes());
        archive.extend(manifest.as_bytes());
        let mut index = Vec::new();
        index.extend(0u32.to_be_bytes());
        index.extend(0u32.to_be_bytes());
        let mut txn = 0i16.to_be_bytes().to_vec();
        for v in [7i64, 3, 5, 6] {
            txn.extend(v.to_be_bytes());
        }
        for body in [&seg_log, &index, &txn] {
            archive.extend((body.len() as u16).to_le_bytes());
            archive.extend(body.iter());
        }
        save("startup", "archive", &archive);
    }
}
