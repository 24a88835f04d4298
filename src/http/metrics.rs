//! `/metrics`: the process-wide counters of `crate::metrics`, and what the broker's state
//! holds (offsets, sizes, ...) read at each scrape by the collectors here.

use super::HttpState;
use crate::broker::partition::{Partition, Traffic};
use crate::broker::Broker;
use crate::metrics::METRICS;
use crate::tier::{Tier, TierStats};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// Everything `/metrics` shows, registered once when the HTTP side starts.
pub(super) fn register(registry: &mut Registry, state: Weak<HttpState>) {
    METRICS.register(registry);
    registry.register_collector(Box::new(BrokerCollector { state }));
    registry.register_collector(Box::new(ProcessCollector));
}

#[tracing::instrument(name = "http_metrics", skip_all)]
pub(super) async fn scrape(State(state): State<Arc<HttpState>>) -> Response {
    let mut body = String::with_capacity(64 * 1024);
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        tracing::error!(error = %e, "metrics do not encode");
        return (StatusCode::INTERNAL_SERVER_ERROR, "metrics do not encode\n").into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

/// One gauge family written from values read now.
fn gauges<L: EncodeLabelSet, T: prometheus_client::encoding::EncodeGaugeValue + Copy>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    values: impl IntoIterator<Item = (L, T)>,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<T>: EncodeMetric,
{
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in values {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Counters kept elsewhere (atomics the broker owns), written from values read now.
fn counters<L: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    values: impl IntoIterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, value) in values {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NoLabels {}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
    protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupStateLabels {
    group: String,
    protocol: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: String,
}

/// Every partition of `topics` whose log is open, with its labels (a scrape during
/// start-up reports the partitions opened so far rather than opening the rest).
fn labelled<'a>(
    topics: impl Iterator<Item = &'a Arc<crate::broker::topics::Topic>>,
) -> Vec<(PartitionLabels, &'a Arc<Partition>)> {
    topics
        .flat_map(|t| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.is_loaded())
                .map(|(i, p)| {
                    (
                        PartitionLabels {
                            topic: t.name.clone(),
                            partition: i.to_string(),
                        },
                        p,
                    )
                })
        })
        .collect()
}

/// Per-partition state, groups and the archive, read from the broker at each scrape.
#[derive(Debug)]
struct BrokerCollector {
    state: Weak<HttpState>,
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(state) = self.state.upgrade() else {
            return Ok(());
        };
        let Some(broker) = state.broker() else {
            return Ok(());
        };
        let topics = broker.topics();
        let partitions = labelled(topics.iter());
        let each = |f: &dyn Fn(&Partition) -> i64| {
            partitions
                .iter()
                .map(|(l, p)| (l.clone(), f(p)))
                .collect::<Vec<_>>()
        };
        let count = |f: &dyn Fn(&Traffic) -> &AtomicU64| {
            partitions
                .iter()
                .map(|(l, p)| (l.clone(), f(&p.traffic).load(Ordering::Relaxed)))
                .collect::<Vec<_>>()
        };
        let size = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        gauges(
            &mut encoder,
            "strata_partition_log_start_offset",
            "First offset a consumer can read, archive included",
            None,
            each(&|p| p.log_start_offset()),
        )?;
        gauges(
            &mut encoder,
            "strata_partition_log_end_offset",
            "Offset the next record appended will get",
            None,
            each(&|p| p.log_end_offset()),
        )?;
        gauges(
            &mut encoder,
            "strata_partition_high_watermark",
            "Offset up to which consumers read (acknowledged and, with flush: always, fsynced)",
            None,
            each(&|p| p.high_watermark()),
        )?;
        gauges(
            &mut encoder,
            "strata_partition_last_stable_offset",
            "Offset up to which read_committed consumers read",
            None,
            each(&|p| p.last_stable_offset()),
        )?;
        gauges(
            &mut encoder,
            "strata_partition_local_size",
            "Bytes of the partition's segments on local disk",
            Some(&Unit::Bytes),
            each(&|p| size(p.local_size())),
        )?;
        let remote: Vec<_> = partitions.iter().map(|(_, p)| p.remote_size()).collect();
        gauges(
            &mut encoder,
            "strata_partition_remote_size",
            "Bytes of the partition's segments in the archive",
            Some(&Unit::Bytes),
            partitions
                .iter()
                .zip(&remote)
                .map(|((l, _), r)| (l.clone(), size(r.1))),
        )?;
        gauges(
            &mut encoder,
            "strata_partition_remote_segments",
            "Segments of the partition in the archive",
            None,
            partitions
                .iter()
                .zip(&remote)
                .map(|((l, _), r)| (l.clone(), r.0 as i64)),
        )?;
        counters(
            &mut encoder,
            "strata_partition_in",
            "Bytes of record batches appended by produce (as stored)",
            Some(&Unit::Bytes),
            count(&|t| &t.bytes_in),
        )?;
        counters(
            &mut encoder,
            "strata_partition_in_records",
            "Records appended by produce",
            None,
            count(&|t| &t.records_in),
        )?;
        counters(
            &mut encoder,
            "strata_partition_out",
            "Bytes of record batches sent in fetch responses",
            Some(&Unit::Bytes),
            count(&|t| &t.bytes_out),
        )?;
        counters(
            &mut encoder,
            "strata_partition_out_records",
            "Records sent in fetch responses (transaction markers not counted)",
            None,
            count(&|t| &t.records_out),
        )?;
        if let Some(tier) = broker.replica_manager.tier() {
            // Partitions of topics that are archived (not those with remote.storage.enable
            // off, nor compacted ones).
            let tiered = labelled(topics.iter().filter(|t| t.is_tiered(&broker.config)));
            archive(&mut encoder, tier, &tiered)?;
        }
        groups(&mut encoder, broker)?;
        Ok(())
    }
}

/// The archive's backlog per partition, and its counters.
fn archive(
    encoder: &mut DescriptorEncoder,
    tier: &Tier,
    partitions: &[(PartitionLabels, &Arc<Partition>)],
) -> Result<(), std::fmt::Error> {
    // (segments, bytes, offsets) of closed local segments the archive does not hold yet.
    let pending: Vec<(i64, i64, i64)> = partitions
        .iter()
        .map(|(_, p)| {
            let remote_end = p.remote_end();
            let waiting: Vec<_> = p
                .closed_segments()
                .into_iter()
                .filter(|s| s.next_offset > remote_end)
                .collect();
            let bytes: u64 = waiting.iter().map(|s| s.size).sum();
            let offsets = match (waiting.first(), waiting.last()) {
                (Some(first), Some(last)) => last.next_offset - first.base_offset.max(remote_end),
                _ => 0,
            };
            (
                waiting.len() as i64,
                i64::try_from(bytes).unwrap_or(i64::MAX),
                offsets,
            )
        })
        .collect();
    let per = |f: fn(&(i64, i64, i64)) -> i64| {
        partitions
            .iter()
            .zip(&pending)
            .map(move |((l, _), v)| (l.clone(), f(v)))
    };
    gauges(
        encoder,
        "strata_partition_archive_pending_segments",
        "Closed local segments not archived yet (partitions of archived topics)",
        None,
        per(|v| v.0),
    )?;
    gauges(
        encoder,
        "strata_partition_archive_pending",
        "Bytes of closed local segments not archived yet",
        Some(&Unit::Bytes),
        per(|v| v.1),
    )?;
    gauges(
        encoder,
        "strata_partition_archive_lag_offsets",
        "Offsets between the newest archived offset and the end of the last closed segment (0 when every closed segment is archived)",
        None,
        per(|v| v.2),
    )?;
    let s = &tier.stats;
    let one = |c: &std::sync::atomic::AtomicU64| [(NoLabels {}, TierStats::get(c))];
    counters(
        encoder,
        "strata_archive_uploaded_segments",
        "Segments uploaded and listed in their manifest",
        None,
        one(&s.segments_uploaded),
    )?;
    counters(
        encoder,
        "strata_archive_uploaded",
        "Bytes of segments uploaded",
        Some(&Unit::Bytes),
        one(&s.bytes_uploaded),
    )?;
    counters(
        encoder,
        "strata_archive_upload_errors",
        "Segment uploads that failed (retried with backoff)",
        None,
        one(&s.upload_errors),
    )?;
    counters(
        encoder,
        "strata_archive_remote_reads",
        "Fetches of one partition served from the archive",
        None,
        one(&s.remote_reads),
    )?;
    counters(
        encoder,
        "strata_archive_remote_read_errors",
        "Fetches from the archive that failed",
        None,
        one(&s.remote_read_errors),
    )?;
    counters(
        encoder,
        "strata_archive_remote_read",
        "Bytes of record batches read from the archive for fetches",
        Some(&Unit::Bytes),
        one(&s.remote_read_bytes),
    )?;
    counters(
        encoder,
        "strata_archive_cache_hits",
        "Chunks of archived segments a read found in the local chunk cache",
        None,
        one(&s.cache_hits),
    )?;
    counters(
        encoder,
        "strata_archive_cache_misses",
        "Chunks of archived segments a read fetched from the object store",
        None,
        one(&s.cache_misses),
    )?;
    let (cached, limit) = tier.chunk_cache_bytes();
    gauges(
        encoder,
        "strata_archive_cache_size",
        "Bytes in the local chunk cache",
        Some(&Unit::Bytes),
        [(NoLabels {}, i64::try_from(cached).unwrap_or(i64::MAX))],
    )?;
    gauges(
        encoder,
        "strata_archive_cache_limit",
        "Bytes the local chunk cache may hold",
        Some(&Unit::Bytes),
        [(NoLabels {}, i64::try_from(limit).unwrap_or(i64::MAX))],
    )?;
    Ok(())
}

/// Consumer groups of both protocols: members, state, committed offsets and lag.
fn groups(encoder: &mut DescriptorEncoder, broker: &Broker) -> Result<(), std::fmt::Error> {
    let groups = broker.groups.metrics();
    gauges(
        encoder,
        "strata_group_members",
        "Members of a consumer group",
        None,
        groups.iter().map(|g| {
            (
                GroupLabels {
                    group: g.id.clone(),
                    protocol: g.kind.name().to_string(),
                },
                g.members as i64,
            )
        }),
    )?;
    gauges(
        encoder,
        "strata_group_state",
        "1 for the state a consumer group is in, 0 for the other states of its protocol",
        None,
        groups.iter().flat_map(|g| {
            g.kind.states().iter().map(move |s| {
                (
                    GroupStateLabels {
                        group: g.id.clone(),
                        protocol: g.kind.name().to_string(),
                        state: s.to_string(),
                    },
                    i64::from(*s == g.state),
                )
            })
        }),
    )?;
    let labels = |g: &str, t: &str, p: i32| GroupPartitionLabels {
        group: g.to_string(),
        topic: t.to_string(),
        partition: p.to_string(),
    };
    gauges(
        encoder,
        "strata_group_committed_offset",
        "Offset a consumer group committed for a partition",
        None,
        groups.iter().flat_map(|g| {
            g.offsets
                .iter()
                .map(move |(t, p, o)| (labels(&g.id, t, *p), *o))
        }),
    )?;
    gauges(
        encoder,
        "strata_group_lag",
        "High watermark minus the committed offset, never below 0, for partitions that exist",
        None,
        groups.iter().flat_map(|g| {
            g.offsets.iter().filter_map(move |(t, p, o)| {
                let hw = broker.topic(t)?.partition(*p)?.high_watermark();
                Some((labels(&g.id, t, *p), (hw - *o).max(0)))
            })
        }),
    )?;
    Ok(())
}

/// RSS, open files and uptime, from /proc where there is one.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let one = |v: f64| [(NoLabels {}, v)];
        gauges(
            &mut encoder,
            "strata_uptime",
            "Time since the process started",
            Some(&Unit::Seconds),
            one(METRICS.started.elapsed().as_secs_f64()),
        )?;
        if let Some(rss) = resident_bytes() {
            gauges(
                &mut encoder,
                "strata_process_resident_memory",
                "Resident set size of the process",
                Some(&Unit::Bytes),
                one(rss as f64),
            )?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            gauges(
                &mut encoder,
                "strata_process_open_fds",
                "Open file descriptors (files and sockets)",
                None,
                one(dir.count() as f64),
            )?;
        }
        Ok(())
    }
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
