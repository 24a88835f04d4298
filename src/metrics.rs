//! Process-wide counters for `/metrics`, in Prometheus' model (prometheus-client).
//!
//! Only what has to be counted as it happens and belongs to no one object lives here:
//! requests, errors, latencies, connections, the log cleaner's passes. Counters that belong
//! to an object are its own atomics (a partition's bytes and records in and out, the
//! archive's uploads and reads) and values that already exist in the broker's state
//! (offsets, sizes, group lag, the archive's backlog) are read when `/metrics` is scraped
//! (`crate::http::metrics`), so that no label map is looked up on the produce and fetch
//! paths.
//!
//! Everything on a request's path is a pre-created handle (an atomic add, or a histogram
//! observation under its own uncontended lock); no label map is looked up per request.

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use std::sync::LazyLock;
use std::time::Instant;

/// The one set of process-wide metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub api: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub reason: String,
}

/// Why a connection ended, as `/metrics` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it (or dropped it mid-request).
    Client,
    /// The broker is shutting down.
    Shutdown,
    /// A frame that is too large, negative or does not decode.
    BadRequest,
    /// TLS handshake failed, or TLS spoken to a plaintext listener.
    Tls,
    /// SASL authentication failed, or a request came before it.
    Authentication,
    /// `max.connections` (or a listener's own, or the open-file limit's share) reached:
    /// closed at accept.
    Limit,
    /// An acks=0 produce failed (Kafka's signal to refresh metadata).
    ProduceError,
    /// Reading or writing the socket failed.
    Io,
    /// `max.connections.per.ip` (or the address's override) reached: closed at accept.
    IpLimit,
    /// Nothing moved for `connections.max.idle.ms` (a client that stopped reading its
    /// answers included).
    Idle,
}

impl CloseReason {
    pub const ALL: [CloseReason; 10] = [
        CloseReason::Client,
        CloseReason::Shutdown,
        CloseReason::BadRequest,
        CloseReason::Tls,
        CloseReason::Authentication,
        CloseReason::Limit,
        CloseReason::ProduceError,
        CloseReason::Io,
        CloseReason::IpLimit,
        CloseReason::Idle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Shutdown => "shutdown",
            CloseReason::BadRequest => "bad_request",
            CloseReason::Tls => "tls",
            CloseReason::Authentication => "authentication",
            CloseReason::Limit => "limit",
            CloseReason::ProduceError => "produce_error",
            CloseReason::Io => "io",
            CloseReason::IpLimit => "ip_limit",
            CloseReason::Idle => "idle",
        }
    }
}

/// One API's request counter and latency histogram.
#[derive(Clone)]
pub struct ApiMetrics {
    pub requests: Counter,
    pub latency: Histogram,
}

pub struct Metrics {
    pub started: Instant,
    requests: Family<ApiLabels, Counter>,
    latency: Family<ApiLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    /// Indexed by API key; filled at start for every API Strata serves.
    by_api: Vec<Option<ApiMetrics>>,
    pub connections_open: Gauge,
    accepted: Family<ListenerLabels, Counter>,
    closed: Family<CloseLabels, Counter>,
    closed_by_reason: Vec<Counter>,
    /// Bytes of requests read and not yet answered (Kafka's queued request bytes).
    pub request_bytes_in_flight: Gauge,
    /// Bytes of requests held against `queued.max.request.bytes` (read, not yet handled).
    pub request_memory_used: Gauge,
    /// `queued.max.request.bytes` (0 when unbounded).
    pub request_memory_limit: Gauge,
    /// Frames that had to wait for request memory before they were read.
    pub request_memory_waits: Counter,
    pub cleaner: CleanerMetrics,
}

/// The log cleaner's work (compacted topics), counted once per pass.
#[derive(Default)]
pub struct CleanerMetrics {
    /// Passes that rewrote at least one group of segments.
    pub passes: Counter,
    pub read_bytes: Counter,
    pub written_bytes: Counter,
    pub removed_records: Counter,
    /// Passes that failed (the log is left as it was).
    pub errors: Counter,
}

/// Latency buckets in seconds: 100 µs to about 26 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 19)
}

impl Metrics {
    fn new() -> Self {
        let requests = Family::<ApiLabels, Counter>::default();
        let latency = Family::<ApiLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let mut by_api = Vec::new();
        for (key, _, _) in crate::protocol::versions::SUPPORTED.iter() {
            let index = *key as usize;
            if by_api.len() <= index {
                by_api.resize(index + 1, None);
            }
            let labels = ApiLabels {
                api: api_name(*key).to_string(),
            };
            by_api[index] = Some(ApiMetrics {
                requests: requests.get_or_create(&labels).clone(),
                latency: latency.get_or_create(&labels).clone(),
            });
        }
        let closed = Family::<CloseLabels, Counter>::default();
        let closed_by_reason = CloseReason::ALL
            .iter()
            .map(|r| {
                closed
                    .get_or_create(&CloseLabels {
                        reason: r.as_str().to_string(),
                    })
                    .clone()
            })
            .collect();
        Metrics {
            started: Instant::now(),
            requests,
            latency,
            errors: Family::default(),
            by_api,
            connections_open: Gauge::default(),
            accepted: Family::default(),
            closed,
            closed_by_reason,
            request_bytes_in_flight: Gauge::default(),
            request_memory_used: Gauge::default(),
            request_memory_limit: Gauge::default(),
            request_memory_waits: Counter::default(),
            cleaner: CleanerMetrics::default(),
        }
    }

    /// The handles of one API (None for an API Strata does not serve).
    pub fn api(&self, key: ApiKey) -> Option<&ApiMetrics> {
        self.by_api.get(key as usize).and_then(Option::as_ref)
    }

    /// Counts an error code in a response (not called for code 0).
    pub fn error(&self, key: ApiKey, code: i16) {
        self.errors.get_or_create(&error_labels(key, code)).inc();
    }

    /// How often `code` was counted for `key` (tests).
    #[cfg(test)]
    pub fn error_count(&self, key: ApiKey, code: i16) -> u64 {
        self.errors.get_or_create(&error_labels(key, code)).get()
    }

    pub fn accepted(&self, listener: &str) {
        self.accepted
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .inc();
    }

    pub fn closed(&self, reason: CloseReason) {
        // `closed_by_reason` follows `CloseReason::ALL`, which is in declaration order.
        if let Some(c) = self.closed_by_reason.get(reason as usize) {
            c.inc();
        }
    }

    /// A request's bytes enter (positive) or leave (negative) the in-flight total.
    pub fn in_flight(&self, delta: i64) {
        self.request_bytes_in_flight.inc_by(delta);
    }

    /// Registers everything above under Prometheus' names.
    pub fn register(&'static self, registry: &mut Registry) {
        registry.register(
            "strata_requests",
            "Kafka requests handled, by API",
            self.requests.clone(),
        );
        registry.register(
            "strata_request_errors",
            "Error codes in Kafka responses, by API and error (per partition where Kafka answers per partition)",
            self.errors.clone(),
        );
        registry.register_with_unit(
            "strata_request_duration",
            "Time from a request's last byte read to its response handed to the socket",
            prometheus_client::registry::Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "strata_connections_open",
            "Client connections open now",
            self.connections_open.clone(),
        );
        registry.register(
            "strata_connections_accepted",
            "Client connections accepted, by listener",
            self.accepted.clone(),
        );
        registry.register(
            "strata_connections_closed",
            "Client connections closed, by reason",
            self.closed.clone(),
        );
        registry.register_with_unit(
            "strata_request_in_flight",
            "Bytes of requests read and not yet answered",
            prometheus_client::registry::Unit::Bytes,
            self.request_bytes_in_flight.clone(),
        );
        registry.register_with_unit(
            "strata_request_memory_used",
            "Bytes of requests read and not yet handled, held against queued.max.request.bytes",
            prometheus_client::registry::Unit::Bytes,
            self.request_memory_used.clone(),
        );
        registry.register_with_unit(
            "strata_request_memory_limit",
            "queued.max.request.bytes (0: unbounded)",
            prometheus_client::registry::Unit::Bytes,
            self.request_memory_limit.clone(),
        );
        registry.register(
            "strata_request_memory_waits",
            "Requests whose reading waited for request memory (queued.max.request.bytes)",
            self.request_memory_waits.clone(),
        );
        let c = &self.cleaner;
        registry.register(
            "strata_cleaner_passes",
            "Log cleaner passes that rewrote segments of a compacted partition",
            c.passes.clone(),
        );
        registry.register_with_unit(
            "strata_cleaner_read",
            "Bytes the log cleaner read from segments it cleaned",
            prometheus_client::registry::Unit::Bytes,
            c.read_bytes.clone(),
        );
        registry.register_with_unit(
            "strata_cleaner_written",
            "Bytes of cleaned segments the log cleaner wrote",
            prometheus_client::registry::Unit::Bytes,
            c.written_bytes.clone(),
        );
        registry.register(
            "strata_cleaner_removed_records",
            "Records the log cleaner removed (superseded by a newer record with the same key, expired tombstones, aborted records)",
            c.removed_records.clone(),
        );
        registry.register(
            "strata_cleaner_errors",
            "Log cleaner passes that failed and left the log as it was",
            c.errors.clone(),
        );
    }
}

fn error_labels(key: ApiKey, code: i16) -> ErrorLabels {
    let error = match kafka_protocol::error::ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("code_{code}"),
    };
    ErrorLabels {
        api: api_name(key).to_string(),
        error: screaming_snake(&error),
    }
}

/// Kafka's API names as its metrics spell them (`Produce`, `FetchConsumer`, ...): the
/// variant name without its `Key` suffix.
pub fn api_name(key: ApiKey) -> &'static str {
    // kafka-protocol's Debug names are the message names ("Produce", "Fetch", ...).
    static NAMES: LazyLock<Vec<(i16, String)>> = LazyLock::new(|| {
        crate::protocol::versions::SUPPORTED
            .iter()
            .map(|(k, _, _)| {
                (
                    *k as i16,
                    format!("{k:?}").trim_end_matches("Key").to_string(),
                )
            })
            .collect()
    });
    NAMES
        .iter()
        .find(|(k, _)| *k == key as i16)
        .map(|(_, n)| n.as_str())
        .unwrap_or("Unknown")
}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`, Kafka's spelling.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_listed_in_declaration_order() {
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
    }

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(
            screaming_snake("UnknownTopicOrPartition"),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(api_name(ApiKey::Produce), "Produce");
        assert_eq!(api_name(ApiKey::ApiVersions), "ApiVersions");
    }
}
