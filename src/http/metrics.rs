//! `/metrics`: the process-wide counters of `crate::metrics`, and what the broker's state
//! holds (offsets, sizes, ...) read at each scrape by the collectors here.

use super::HttpState;
use crate::metrics::METRICS;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
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

/// Per-partition state, read from the broker at each scrape.
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
        let partitions: Vec<_> = topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().enumerate().map(|(i, p)| {
                    (
                        PartitionLabels {
                            topic: t.name.clone(),
                            partition: i.to_string(),
                        },
                        p,
                    )
                })
            })
            .collect();
        let each = |f: fn(&crate::broker::partition::Partition) -> i64| {
            partitions
                .iter()
                .map(move |(l, p)| (l.clone(), f(p)))
                .collect::<Vec<_>>()
        };
        gauges(
            &mut encoder,
            "strata_partition_log_start_offset",
            "First offset a consumer can read, archive included",
            None,
            each(|p| p.log_start_offset()),
        )?;
        gauges(
            &mut encoder,
            "strata_partition_log_end_offset",
            "Offset the next record appended will get",
            None,
            each(|p| p.log_end_offset()),
        )?;
        gauges(
            &mut encoder,
            "strata_partition_high_watermark",
            "Offset up to which consumers read (acknowledged and, with flush: always, fsynced)",
            None,
            each(|p| p.high_watermark()),
        )?;
        gauges(
            &mut encoder,
            "strata_partition_last_stable_offset",
            "Offset up to which read_committed consumers read",
            None,
            each(|p| p.last_stable_offset()),
        )?;
        gauges(
            &mut encoder,
            "strata_partition_local_size",
            "Bytes of the partition's segments on local disk",
            Some(&Unit::Bytes),
            each(|p| i64::try_from(p.local_size()).unwrap_or(i64::MAX)),
        )?;
        Ok(())
    }
}

/// RSS, open files and uptime, from /proc where there is one.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct NoLabels {}
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
