//! Strata: a Kafka-wire-compatible broker that keeps Kafka's segment format on disk.
//!
//! # Layout (in the order a request travels)
//! * `server`: accepts connections up to a limit; graceful shutdown.
//! * `connection`: length-prefixed frames on a TcpStream, responses in request order.
//! * `protocol`: the only place bytes become Kafka messages; `protocol::versions` is the
//!   one table of supported API versions.
//! * `handler`: one module per API family, thin translations to broker calls.
//! * `broker`: topics, partitions, producer ids, the group coordinator.
//! * `log`: Kafka's on-disk format — segments of `.log` + `.index` + `.timeindex` named by
//!   base offset; append, read, roll, recovery.
//! * `tier`: closed segments archived to an object store and read back from it; it sees a
//!   partition only through `tier::archiver::ArchiveSource`, which the broker implements.
//! * `config`: YAML with Kafka's property names, every key defaulted.
//! * `alloc`: keeps a hostile length field from aborting the process.

pub mod alloc;
pub mod broker;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod connection;
pub mod handler;
pub mod log;
pub mod protocol;
pub mod server;
pub mod tier;
