//! Entry points for the fuzz targets in `fuzz/`: each feeds untrusted bytes through the code
//! the broker runs on them, so that a crash, a hang or an unbounded allocation found by a
//! fuzzer is one a client or a damaged disk could cause. Not part of the broker's interface.
//!
//! * [`request()`]: bytes as a connection reads them — frames, request headers and bodies,
//!   the SASL exchange (PLAIN, SCRAM, OAUTHBEARER), and what handlers decode further inside
//!   a body (record batches of a Produce, consumer protocol subscriptions and assignments,
//!   regular expressions).
//! * [`record_batch()`]: produce data appended to a real partition with a topic's rules
//!   (validation, decompression within its bound, recompression, compaction's key check,
//!   producer state), then everything that reads batches back.
//! * [`startup()`]: the files read at start-up — a partition directory (segments, indexes,
//!   producer snapshots, checkpoints, an interrupted compaction swap), the broker's state
//!   files, and a partition's manifest and segments in the archive.
//!
//! Each target has a module of its own (`request`, `record_batch`, `startup`) holding its
//! entry point, its helpers and the seed inputs it starts from; this one holds what they
//! share: the scratch directories, the broker config, the fixed time, the seed batches,
//! and the replay of the committed corpus as a unit test.
//!
//! Files: a scratch directory per process under `/dev/shm` (or the temporary directory),
//! emptied before every input that uses it.

use crate::config::{Config, Overrides};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod record_batch;
mod request;
mod startup;

pub use record_batch::record_batch;
pub use request::request;
pub use startup::startup;

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

/// Seed inputs for the fuzz targets, written by `fuzz/run.sh seeds` (an ignored test):
/// every advertised request at every version, SASL exchanges of each mechanism, batches of
/// each codec, and a partition directory, broker state files and an archive written by the
/// broker's own code. The records and batches the targets' seeds share are here; each
/// target's `seeds` module writes its own inputs.
#[cfg(test)]
mod seeds {
    use super::*;
    use crate::log::codec::{encode_batch, BatchSpec, Compression, Record, RecordHeader};
    use crate::log::record_batch;
    use bytes::Bytes;

    fn out_dir(target: &str) -> PathBuf {
        let base = std::env::var("STRATA_FUZZ_SEEDS")
            .expect("STRATA_FUZZ_SEEDS names the output directory");
        let d = Path::new(&base).join(target);
        std::fs::create_dir_all(&d).expect("seed dir");
        d
    }

    pub(super) fn save(target: &str, name: &str, bytes: &[u8]) {
        std::fs::write(out_dir(target).join(name), bytes).expect("seed");
    }

    pub(super) fn records(n: usize) -> Vec<Record> {
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
    pub(super) fn batches() -> Vec<(String, Vec<u8>)> {
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

    #[test]
    #[ignore = "writes the fuzz targets' seed inputs; run by fuzz/run.sh"]
    fn write_seed_inputs() {
        super::request::seeds::request_seeds();
        super::record_batch::seeds::record_batch_seeds();
        super::startup::seeds::startup_seeds();
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
