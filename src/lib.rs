//! Strata: a Kafka-wire-compatible broker that keeps Kafka's segment format on disk.
//!
//! # Layout
//! Layers point down only: `handler → broker → tier → log`; the leaves (`config`,
//! `protocol`, `clock`, `checkpoint`, `alloc`) may be used from anywhere. A lower layer that
//! needs something from a higher one owns a small trait that the higher one implements.
//! In the order a request travels:
//! * `server`: accepts connections within Kafka's limits (total, per listener, per address);
//!   graceful shutdown.
//! * `connection`: length-prefixed frames on a TcpStream, responses in request order;
//!   `memory` bounds the bytes of requests in flight (`queued.max.request.bytes`), `io`
//!   reads frames without a buffer per idle connection and judges idleness; `zero_copy`
//!   sends Fetch records from the segment files with sendfile on plaintext sockets.
//! * `protocol`: the only place bytes become Kafka messages; `protocol::versions` is the
//!   one table of supported API versions; `protocol::error_codes`: every error code a
//!   response carries, for `/metrics`; `protocol::spliced`: a Fetch response as pieces
//!   around records that stay in their files.
//! * `handler`: one module per API family, translating requests to broker calls and back.
//! * `broker`: the `Broker` handle: topics and their configs, producer ids.
//! * `broker::replica_manager`: append, fetch (per-partition long poll), offset lookups;
//!   the one place that decides between the local log and the archive.
//! * `broker::partition`: one partition's log, producers and offsets; `broker::topics`:
//!   topic metadata files; `broker::producer_state`: sequences, transactions, snapshots;
//!   `broker::producer_ids`: ids in persisted blocks, never handed out twice.
//! * `broker::groups`: the group coordinator — `classic` (JoinGroup/SyncGroup), `consumer`
//!   (KIP-848 reconciliation), `assignor` (uniform, range), `offsets` (committed offsets).
//! * `broker::configs`: topic, broker and group configs with their sources (DescribeConfigs).
//!   `broker::dynamic_configs`: configs changed at run time (AlterConfigs), checked,
//!   persisted and applied.
//! * `broker::transactions`: the transaction coordinator; `broker::state_files`: its and the
//!   group coordinator's files.
//! * `broker::maintenance`: every background loop, each with a handle that stops it;
//!   `broker::local_retention`: retention of topics that are not archived;
//!   `broker::archive_source`: the broker's side of `tier::archiver::ArchiveSource`;
//!   `broker::archive_deletions`: deleted topics whose archived objects are still to go;
//!   `broker::compaction`: which partitions are due a cleaning, one pass over a partition.
//! * `tier`: the archive — `store` (object store connection and paths), `manifest` (the
//!   truth of what is remote), `reader` (remote reads, read-ahead), `cache` (index and chunk
//!   caches),
//!   `archiver` (uploads), `retention` (local and remote), `restore` (topics found in the
//!   bucket, as plain data).
//! * `log`: Kafka's on-disk format — `segment` (`.log` + `.index` + `.timeindex`), `index`,
//!   `record_batch`, `codec` (the records inside a batch, all four codecs), `txn_index`;
//!   append, read (`read`: the file ranges a read hands out), roll, recovery; `cleaner`:
//!   compaction and its `.cleaned`/`.swap` recovery.
//! * `security`: listeners and their protocols, principals, SASL mechanisms, and the
//!   authorizer (ACLs with Kafka's StandardAuthorizer semantics, `.strata/acls.yaml`).
//! * `http`: the HTTP listener beside the Kafka ones — `/health`, `/ready`, `/metrics` —
//!   and the web `console`: read-only pages rendered on the server, reading partitions
//!   through the replica manager with bounded budgets, charts from a bounded sampler.
//! * `config`: YAML with Kafka's property names, every key defaulted.
//! * `clock`: the one `now_ms`; `checkpoint`: files replaced atomically.
//! * `alloc`: keeps a hostile length field from aborting the process.
//! * `fuzzing`: the entry points of the fuzz targets in `fuzz/`, one module per target
//!   (not an interface).

pub mod alloc;
pub mod broker;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod connection;
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod http;
pub mod log;
pub mod metrics;
pub mod protocol;
pub mod security;
pub mod server;
pub mod tier;

/// Unit tests run on the broker's own allocator, as the binary does (`src/main.rs`): the
/// fuzz corpus they replay holds requests with hostile length fields.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: alloc::LazyLargeAlloc = alloc::LazyLargeAlloc;
