//! Entry points for the fuzz targets in `fuzz/`: each feeds untrusted bytes through the code
//! the broker runs on them, so that a crash, a hang or an unbounded allocation found by a
//! fuzzer is one a client or a damaged disk could cause. Not part of the broker's interface.
//!
//! * [`request`]: bytes as a connection reads them — frames, request headers and bodies,
//!   the SASL exchange (PLAIN, SCRAM, OAUTHBEARER), and what handlers decode further inside
//!   a body (record batches of a Produce, consumer protocol subscriptions and assignments,
//!   regular expressions).
//! * [`record_batch`]: produce data appended to a real partition with a topic's rules
//!   (validation, decompression within its bound, recompression, compaction's key check,
//!   producer state), then everything that reads batches back.
//! * [`startup`]: the files read at start-up — a partition directory (segments, indexes,
//!   producer snapshots, checkpoints, an interrupted compaction swap), the broker's state
//!   files, and a partition's manifest and segments in the archive.
//!
//! Files: a scratch directory per process under `/dev/shm` (or the temporary directory),
//! emptied before every input that uses it.

use crate::broker::partition::{AppendRules, Partition};
use crate::config::{Config, Overrides};
use crate::connection::io::{Activity, FrameReader};
use crate::connection::RequestMemory;
use crate::log::codec::{self, Compression};
use crate::log::record_batch::{self, BatchHeaders, RecordBatch};
use crate::log::LogConfig;
use crate::protocol;
use crate::security::sasl::credentials::{Change, ScramCredential, ScramCredentials};
use crate::security::sasl::scram::ScramHash;
use crate::security::sasl::{Authenticator, Gate, ListenerSasl, RawReply};
use crate::security::Session;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::RequestKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Frames of at most this size are read, as `socket.request.max.bytes` bounds them.
const MAX_FRAME: usize = 1 << 20;
/// Appends to one partition before it is replaced by a fresh one, so the scratch directory
/// stays small over millions of inputs.
const APPENDS_PER_PARTITION: u32 = 2000;
/// A recognisable time, so that LogAppendTime and timestamp lookups see fixed values.
const NOW_MS: i64 = 1_700_000_000_000;

fn scratch(name: &str) -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    let base = BASE.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        remove_stale_scratch(&base);
        base
    });
    base.join(format!("strata-fuzz-{}-{name}", std::process::id()))
}

/// Removes the scratch directories of fuzzing processes that have ended (libFuzzer exits
/// without running destructors).
fn remove_stale_scratch(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("strata-fuzz-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// An empty directory at `path` (its previous contents removed).
fn fresh_dir(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
    let _ = std::fs::create_dir_all(path);
}

fn config(properties: &[&str]) -> Config {
    Config::load(
        None,
        Overrides {
            properties: properties.iter().map(|s| s.to_string()).collect(),
            data_dir: Some(scratch("data")),
            ..Default::default()
        },
    )
    .expect("the fuzzing config is valid")
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

// ---------------------------------------------------------------------------- requests

/// The mechanisms of a SASL listener with every mechanism Strata offers, a PLAIN user and
/// a SCRAM user (alice / alice-secret), and unsecured OAUTHBEARER tokens.
fn sasl_listener() -> Arc<ListenerSasl> {
    static L: OnceLock<Arc<ListenerSasl>> = OnceLock::new();
    L.get_or_init(|| {
        let c = config(&[
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER",
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"alice-secret\";",
        ]);
        let scram = ScramCredentials::in_memory();
        let changes: Vec<Change> = ["SCRAM-SHA-256", "SCRAM-SHA-512"]
            .iter()
            .filter_map(|m| {
                let hash = ScramHash::for_mechanism(m)?;
                let salted = hash.salted_password(b"alice-secret", b"salt", 4096);
                Some(Change::Upsert {
                    user: "alice".into(),
                    mechanism: m.to_string(),
                    credential: ScramCredential::from_salted_password(
                        hash, b"salt", &salted, 4096,
                    ),
                })
            })
            .collect();
        scram.apply(&changes).expect("in-memory credentials");
        Arc::new(
            ListenerSasl::from_config(&c.props, "SASL_PLAINTEXT", &scram)
                .expect("the fuzzing SASL listener is valid"),
        )
    })
    .clone()
}

/// One connection's bytes, read as `connection::serve` reads them: frames up to the size
/// limit; with SASL (first byte odd), raw tokens after a v0 handshake and the
/// authentication gate; then each decoded request's body as its handler decodes it.
pub fn request(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let mut sasl = (mode & 1 == 1).then(|| Authenticator::new(sasl_listener()));
    let mut session = Session::local("localhost", 9092);
    let mut rd = FrameReader::new(stream);
    // Each frame's memory is given back before the next is read, so taking it never waits.
    let memory = RequestMemory::new(Some(MAX_FRAME), MAX_FRAME);
    let activity = Activity::new();
    loop {
        let read = rd.read_frame(MAX_FRAME, &memory, &activity);
        let (frame, _memory) = match futures::executor::block_on(read) {
            Ok(Some(f)) => f,
            Ok(None) | Err(_) => return,
        };
        if let Some(auth) = sasl.as_mut().filter(|a| a.expects_raw_token()) {
            match auth.on_raw_token(&frame, &mut session, NOW_MS) {
                RawReply::Token(_) => continue,
                RawReply::Close => return,
            }
        }
        let Ok(request) = protocol::decode_request(frame) else {
            continue;
        };
        if let Some(auth) = sasl.as_mut() {
            match auth.on_request(
                request.api_key,
                request.version,
                &request.body,
                &mut session,
                NOW_MS,
            ) {
                Gate::Pass => {}
                Gate::Reply(_) => continue,
                Gate::ReplyAndClose(_) | Gate::Close => return,
            }
        }
        inner_decoding(&request.body, mode);
    }
}

/// What handlers decode inside a request body beyond kafka-protocol's own decoding.
fn inner_decoding(body: &RequestKind, mode: u8) {
    match body {
        RequestKind::Produce(req) => {
            for topic in &req.topic_data {
                for p in &topic.partition_data {
                    if let Some(records) = &p.records {
                        let _ = append(records, mode >> 1);
                    }
                }
            }
        }
        RequestKind::JoinGroup(req) => {
            for p in &req.protocols {
                let _ = crate::broker::groups::classic::subscription_topics(&p.metadata);
            }
        }
        RequestKind::SyncGroup(req) => {
            for a in &req.assignments {
                let _ = crate::http::console::groups::classic_assignment(&a.assignment);
            }
        }
        RequestKind::ConsumerGroupHeartbeat(req) => {
            if let Some(re) = &req.subscribed_topic_regex {
                let _ = crate::broker::groups::consumer::compile(re);
            }
        }
        RequestKind::ListTransactions(req) => {
            if let Some(p) = &req.transactional_id_pattern {
                let _ = crate::handler::txn::compile_pattern(p);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------- record batches

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
    Partition::open("fuzz", uuid::Uuid::nil(), 0, &dir, config, false, 0)
        .expect("a fresh partition opens")
}

/// Appends `records` as a Produce for a topic whose rules `rules_byte` picks, on a real
/// partition in the scratch directory (replaced by an empty one now and then).
fn append(records: &[u8], rules_byte: u8) -> Result<(), ResponseError> {
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
fn read_batches(buf: &[u8]) {
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

// ---------------------------------------------------------------------------- start-up files

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
    let Ok(p) = Partition::open("fuzz", uuid::Uuid::nil(), 0, &dir, config, false, 0) else {
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
        let rules = AppendRules {
            max_message_bytes: 1 << 20,
            log_append_time: false,
            compression: None,
            too_few_replicas_for_acks_all: false,
            compact: false,
        };
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

/// Seed inputs for the fuzz targets, written by `fuzz/run.sh seeds` (an ignored test):
/// every advertised request at every version, SASL exchanges of each mechanism, batches of
/// each codec, and a partition directory, broker state files and an archive written by the
/// broker's own code.
#[cfg(test)]
mod seeds {
    use super::*;
    use crate::log::codec::{encode_batch, BatchSpec, Record, RecordHeader};
    use crate::protocol::versions::SUPPORTED;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn out_dir(target: &str) -> PathBuf {
        let base = std::env::var("STRATA_FUZZ_SEEDS")
            .expect("STRATA_FUZZ_SEEDS names the output directory");
        let d = Path::new(&base).join(target);
        std::fs::create_dir_all(&d).expect("seed dir");
        d
    }

    fn save(target: &str, name: &str, bytes: &[u8]) {
        std::fs::write(out_dir(target).join(name), bytes).expect("seed");
    }

    fn s(text: &str) -> StrBytes {
        StrBytes::from_string(text.to_string())
    }

    fn frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Vec<u8> {
        try_frame(api_key, version, body).expect("encodes")
    }

    /// A length-prefixed request; `None` when the body sets fields `version` lacks.
    fn try_frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Option<Vec<u8>> {
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(s("seed")))
            .encode(&mut buf, api_key.request_header_version(version))
            .ok()?;
        body.encode(&mut buf, version).ok()?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        Some(buf.to_vec())
    }

    fn records(n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                attributes: 0,
                timestamp_delta: i as i64,
                offset_delta: i as i32,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: if i == 2 {
                    None
                } else {
                    Some(Bytes::from(format!("value {i} ").repeat(4)))
                },
                headers: if i == 1 {
                    vec![RecordHeader {
                        key: Bytes::from_static(b"h"),
                        value: Some(Bytes::from_static(b"v")),
                    }]
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    /// A batch of each codec, plain, idempotent and transactional, and a commit marker.
    fn batches() -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let spec = BatchSpec {
                compression: codec,
                ..BatchSpec::new(0, NOW_MS)
            };
            out.push((
                codec.name().to_string(),
                encode_batch(&spec, &records(3)).expect("batch"),
            ));
            let idem = BatchSpec {
                producer_id: 42,
                producer_epoch: 0,
                base_sequence: 0,
                ..spec.clone()
            };
            out.push((
                format!("{}-idempotent", codec.name()),
                encode_batch(&idem, &records(5)).expect("batch"),
            ));
            let txn = BatchSpec {
                transactional: true,
                ..idem
            };
            out.push((
                format!("{}-transactional", codec.name()),
                encode_batch(&txn, &records(2)).expect("batch"),
            ));
        }
        out.push((
            "commit-marker".into(),
            record_batch::control_batch(42, 0, true, NOW_MS),
        ));
        out
    }

    fn produce(version: i16, records: Vec<u8>) -> RequestKind {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(1000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(s(if version >= 13 { "" } else { "t" })))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(records)))])]),
        )
    }

    fn default_body(api_key: ApiKey) -> Option<RequestKind> {
        use RequestKind as R;
        Some(match api_key {
            ApiKey::ApiVersions => R::ApiVersions(
                ApiVersionsRequest::default()
                    .with_client_software_name(s("seed"))
                    .with_client_software_version(s("1")),
            ),
            ApiKey::Metadata => R::Metadata(MetadataRequest::default().with_topics(Some(
                vec![metadata_request::MetadataRequestTopic::default(
                    )
                    .with_name(Some(TopicName(s("t"))))],
            ))),
            ApiKey::Fetch => R::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(500)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![fetch_request::FetchTopic::default()
                        .with_topic(TopicName(s("t")))
                        .with_partitions(vec![fetch_request::FetchPartition::default()
                            .with_partition_max_bytes(1 << 20)])]),
            ),
            ApiKey::ListOffsets => R::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_timestamp(-1),
                        ]),
                ])),
            ApiKey::CreateTopics => {
                R::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
                    create_topics_request::CreatableTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_num_partitions(3)
                        .with_replication_factor(1)
                        .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("1000")))]),
                ]))
            }
            ApiKey::DeleteTopics => R::DeleteTopics(
                DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("t"))]),
            ),
            ApiKey::CreatePartitions => R::CreatePartitions(Default::default()),
            ApiKey::DescribeTopicPartitions => R::DescribeTopicPartitions(Default::default()),
            ApiKey::DescribeLogDirs => R::DescribeLogDirs(Default::default()),
            ApiKey::DeleteRecords => R::DeleteRecords(Default::default()),
            ApiKey::InitProducerId => R::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(s("tx"))))
                    .with_transaction_timeout_ms(60000),
            ),
            ApiKey::FindCoordinator => {
                R::FindCoordinator(FindCoordinatorRequest::default().with_key(s("g")))
            }
            ApiKey::JoinGroup => {
                let mut meta = BytesMut::new();
                meta.put_i16(1);
                meta.put_i32(2);
                for t in ["t", "u"] {
                    meta.put_i16(t.len() as i16);
                    meta.put_slice(t.as_bytes());
                }
                meta.put_i32(-1);
                R::JoinGroup(
                    JoinGroupRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_session_timeout_ms(10000)
                        .with_protocol_type(s("consumer"))
                        .with_protocols(vec![
                            join_group_request::JoinGroupRequestProtocol::default()
                                .with_name(s("range"))
                                .with_metadata(meta.freeze()),
                        ]),
                )
            }
            ApiKey::SyncGroup => {
                let mut a = BytesMut::new();
                a.put_i16(0);
                let body = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                    consumer_protocol_assignment::TopicPartition::default()
                        .with_topic(TopicName(s("t")))
                        .with_partitions(vec![0, 1]),
                ]);
                body.encode(&mut a, 0).expect("assignment");
                R::SyncGroup(
                    SyncGroupRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_member_id(s("m"))
                        .with_assignments(vec![
                            sync_group_request::SyncGroupRequestAssignment::default()
                                .with_member_id(s("m"))
                                .with_assignment(a.freeze()),
                        ]),
                )
            }
            ApiKey::Heartbeat => R::Heartbeat(Default::default()),
            ApiKey::LeaveGroup => R::LeaveGroup(Default::default()),
            ApiKey::OffsetCommit => R::OffsetCommit(Default::default()),
            ApiKey::OffsetFetch => R::OffsetFetch(Default::default()),
            ApiKey::ListGroups => R::ListGroups(Default::default()),
            ApiKey::DescribeGroups => R::DescribeGroups(
                DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
            ),
            ApiKey::DeleteGroups => R::DeleteGroups(
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            ),
            ApiKey::OffsetDelete => R::OffsetDelete(Default::default()),
            ApiKey::AddPartitionsToTxn => R::AddPartitionsToTxn(Default::default()),
            ApiKey::AddOffsetsToTxn => R::AddOffsetsToTxn(Default::default()),
            ApiKey::TxnOffsetCommit => R::TxnOffsetCommit(Default::default()),
            ApiKey::EndTxn => R::EndTxn(Default::default()),
            ApiKey::DescribeProducers => R::DescribeProducers(Default::default()),
            ApiKey::ListTransactions => R::ListTransactions(
                ListTransactionsRequest::default()
                    .with_transactional_id_pattern(Some(s("tx-[0-9]+"))),
            ),
            ApiKey::DescribeTransactions => R::DescribeTransactions(Default::default()),
            ApiKey::ConsumerGroupHeartbeat => R::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_member_id(s("m"))
                    .with_subscribed_topic_regex(Some(s("t.*|orders-[a-z]+"))),
            ),
            ApiKey::ConsumerGroupDescribe => R::ConsumerGroupDescribe(Default::default()),
            ApiKey::OffsetForLeaderEpoch => R::OffsetForLeaderEpoch(Default::default()),
            ApiKey::DescribeCluster => R::DescribeCluster(Default::default()),
            ApiKey::DescribeAcls => R::DescribeAcls(Default::default()),
            ApiKey::DescribeConfigs => R::DescribeConfigs(Default::default()),
            ApiKey::AlterConfigs => R::AlterConfigs(Default::default()),
            ApiKey::IncrementalAlterConfigs => R::IncrementalAlterConfigs(Default::default()),
            ApiKey::CreateAcls => R::CreateAcls(Default::default()),
            ApiKey::DeleteAcls => R::DeleteAcls(Default::default()),
            ApiKey::DescribeUserScramCredentials => {
                R::DescribeUserScramCredentials(Default::default())
            }
            ApiKey::AlterUserScramCredentials => R::AlterUserScramCredentials(Default::default()),
            ApiKey::SaslHandshake => {
                R::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s("PLAIN")))
            }
            ApiKey::SaslAuthenticate => R::SaslAuthenticate(
                SaslAuthenticateRequest::default()
                    .with_auth_bytes(Bytes::from_static(b"\0alice\0alice-secret")),
            ),
            ApiKey::ElectLeaders => R::ElectLeaders(Default::default()),
            ApiKey::ListPartitionReassignments => R::ListPartitionReassignments(Default::default()),
            ApiKey::AlterPartitionReassignments => {
                R::AlterPartitionReassignments(Default::default())
            }
            _ => return None,
        })
    }

    fn minimal(api_key: ApiKey) -> Option<RequestKind> {
        Some(match api_key {
            ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
            ApiKey::DeleteTopics => RequestKind::DeleteTopics(Default::default()),
            ApiKey::FindCoordinator => RequestKind::FindCoordinator(
                FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")]),
            ),
            ApiKey::Metadata => RequestKind::Metadata(Default::default()),
            ApiKey::ListTransactions => RequestKind::ListTransactions(Default::default()),
            ApiKey::InitProducerId => RequestKind::InitProducerId(Default::default()),
            _ => return None,
        })
    }

    fn sasl_exchange(mechanism: &str, tokens: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![1u8];
        out.extend(frame(
            ApiKey::ApiVersions,
            3,
            &default_body(ApiKey::ApiVersions).expect("body"),
        ));
        out.extend(frame(
            ApiKey::SaslHandshake,
            1,
            &RequestKind::SaslHandshake(
                SaslHandshakeRequest::default().with_mechanism(s(mechanism)),
            ),
        ));
        for t in tokens {
            out.extend(frame(
                ApiKey::SaslAuthenticate,
                2,
                &RequestKind::SaslAuthenticate(
                    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(t)),
                ),
            ));
        }
        out.extend(frame(
            ApiKey::Metadata,
            12,
            &default_body(ApiKey::Metadata).expect("body"),
        ));
        out
    }

    fn request_seeds() {
        for &(api_key, min, max) in SUPPORTED {
            for version in min..=max {
                let body = if api_key == ApiKey::Produce {
                    produce(version, batches()[1].1.clone())
                } else {
                    match default_body(api_key) {
                        Some(b) => b,
                        None => continue,
                    }
                };
                // Fields a version lacks: then the same request with every field defaulted.
                let Some(bytes) = try_frame(api_key, version, &body)
                    .or_else(|| try_frame(api_key, version, &minimal(api_key)?))
                else {
                    continue;
                };
                let mut input = vec![0u8];
                input.extend(bytes);
                save("request", &format!("{api_key:?}-v{version}"), &input);
            }
        }
        for (name, batch) in batches() {
            let mut input = vec![0u8];
            input.extend(frame(ApiKey::Produce, 9, &produce(9, batch)));
            save("request", &format!("Produce-{name}"), &input);
        }
        save(
            "request",
            "sasl-plain",
            &sasl_exchange("PLAIN", &[b"\0alice\0alice-secret"]),
        );
        save("request", "sasl-scram-256", &sasl_exchange("SCRAM-SHA-256", &[b"n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL", b"c=biws,r=fyko+d2lbbFgONRv9qkxdawLserver,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="]));
        save(
            "request",
            "sasl-scram-512",
            &sasl_exchange("SCRAM-SHA-512", &[b"n,,n=alice,r=rOprNGfwEbeRWgbNEkqO"]),
        );
        // An unsecured JWT (alg none) with sub and exp.
        let jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OSwiaWF0IjoxNzAwMDAwMDAwfQ.";
        let token = format!("n,,\x01auth=Bearer {jwt}\x01\x01");
        save(
            "request",
            "sasl-oauthbearer",
            &sasl_exchange("OAUTHBEARER", &[token.as_bytes()]),
        );
        // SaslHandshake v0: the tokens that follow are unframed by Kafka's header.
        let mut v0 = vec![1u8];
        v0.extend(frame(
            ApiKey::SaslHandshake,
            0,
            &RequestKind::SaslHandshake(SaslHandshakeRequest::default().with_mechanism(s("PLAIN"))),
        ));
        let raw = b"\0alice\0alice-secret";
        v0.extend((raw.len() as u32).to_be_bytes());
        v0.extend(raw);
        v0.extend(frame(
            ApiKey::Metadata,
            1,
            &default_body(ApiKey::Metadata).expect("body"),
        ));
        save("request", "sasl-plain-v0", &v0);
    }

    fn record_batch_seeds() {
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

    fn entry(out: &mut Vec<u8>, which: usize, bytes: &[u8]) {
        out.push(which as u8);
        out.extend((bytes.len().min(u16::MAX as usize) as u16).to_le_bytes());
        out.extend(&bytes[..bytes.len().min(u16::MAX as usize)]);
    }

    /// A partition written by the broker's own code: two segments, an aborted transaction,
    /// producer snapshots and checkpoints, each file as one entry.
    fn startup_seeds() {
        let dir = scratch("seed-partition");
        fresh_dir(&dir);
        let config = LogConfig {
            segment_bytes: 2048,
            segment_ms: u64::MAX / 2,
            index_interval_bytes: 256,
        };
        {
            let p = Partition::open("t", uuid::Uuid::nil(), 0, &dir, config.clone(), false, 0)
                .expect("partition");
            let rules = AppendRules {
                max_message_bytes: 1 << 20,
                log_append_time: false,
                compression: None,
                too_few_replicas_for_acks_all: false,
                compact: false,
            };
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

    #[test]
    #[ignore = "writes the fuzz targets' seed inputs; run by fuzz/run.sh"]
    fn write_seed_inputs() {
        request_seeds();
        record_batch_seeds();
        startup_seeds();
    }
}

#[cfg(test)]
mod replay {
    use super::*;

    /// Every input of the committed corpus (`fuzz/corpus/<target>/`), past findings
    /// included, goes through its target again: what a campaign once survived or had fixed
    /// stays that way, without a fuzzer.
    #[test]
    fn every_committed_fuzz_input_runs_through_its_target() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 3] = [
            ("request", request),
            ("record_batch", record_batch),
            ("startup", startup),
        ];
        for (name, target) in targets {
            let mut inputs: Vec<_> = std::fs::read_dir(corpus.join(name))
                .expect("corpus directory")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            inputs.sort();
            assert!(!inputs.is_empty(), "{name}: empty corpus");
            for path in inputs {
                target(&std::fs::read(&path).expect("corpus input"));
            }
        }
    }
}
