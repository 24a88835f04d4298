//! `/`: what this broker is and how busy it has been.

use super::history::{chart, Throughput};
use super::{bytes, layout, not_ready, Nav};
use crate::http::HttpState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;
use std::sync::Arc;

fn uptime(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d} d {h} h {m} min")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else {
        format!("{m} min {s} s")
    }
}

pub(super) async fn page(State(state): State<Arc<HttpState>>) -> Response {
    let Some(broker) = state.broker() else {
        return not_ready();
    };
    let config = &broker.config;
    let topics = broker.topics();
    let partitions: usize = topics.iter().map(|t| t.partitions.len()).sum();
    let groups = broker.groups.list().len();
    let tier = &config.tier;
    let tiered = broker.replica_manager.tier().is_some();
    let local_dir = config.tier_local_dir();
    let samples: Vec<Throughput> = state.history.throughput();
    let times: Vec<i64> = samples.iter().map(|s| s.at_ms).collect();
    let bytes_in: Vec<f64> = samples.iter().map(|s| s.bytes_in as f64).collect();
    let bytes_out: Vec<f64> = samples.iter().map(|s| s.bytes_out as f64).collect();
    let records_in: Vec<f64> = samples.iter().map(|s| s.records_in as f64).collect();
    let consumed: Vec<f64> = samples.iter().map(|s| s.records_consumed as f64).collect();
    let body = html! {
        h1 { "Broker " (broker.node_id) }
        table.facts {
            tr { th { "Version" } td { "strata " (env!("CARGO_PKG_VERSION")) } }
            tr { th { "Uptime" } td { (uptime(state.started.elapsed().as_secs())) } }
            tr { th { "Cluster id" } td { code { (config.cluster_id) } } }
            tr { th { "Data directory" } td { code { (config.data_dir.display()) } } }
            tr { th { "Topics" } td { a href="/topics" { (topics.len()) " topics, " (partitions) " partitions" } } }
            tr { th { "Consumer groups" } td { a href="/groups" { (groups) } } }
        }
        h2 { "Listeners" }
        table {
            thead { tr { th { "Name" } th { "Protocol" } th { "Bound" } th { "Advertised" } } }
            tbody {
                @for l in &config.listeners {
                    tr {
                        td { (l.name) }
                        td { (l.protocol.as_str()) }
                        td { code { (l.bind_host) ":" (l.bind_port) } }
                        td { code { (l.advertised_host) ":" (l.advertised_port) } }
                    }
                }
                @if let Some(http) = &config.http_listen {
                    tr { td { "HTTP" } td { "HTTP" } td { code { (http) } } td { "—" } }
                }
            }
        }
        h2 { "Archive" }
        @if tiered {
            table.facts {
                tr { th { "Store" } td { (format!("{:?}", tier.store).to_lowercase()) } }
                @if let Some(dir) = &local_dir { tr { th { "Directory" } td { code { (dir.display()) } } } }
                @if let Some(bucket) = &tier.bucket { tr { th { "Bucket" } td { code { (bucket) } } } }
                @if let Some(endpoint) = &tier.endpoint { tr { th { "Endpoint" } td { code { (endpoint) } } } }
                tr { th { "Prefix" } td { code { (tier.prefix.as_deref().unwrap_or("strata")) } } }
                @if let Some(cache) = tier.cache_bytes { tr { th { "Chunk cache" } td { (bytes(cache)) } } }
                tr { th { "log.local.retention.ms" } td { (config.props.get("log.local.retention.ms")) } }
                tr { th { "log.local.retention.bytes" } td { (config.props.get("log.local.retention.bytes")) } }
            }
            p { a href="/archive" { "What each partition has archived →" } }
        } @else {
            p.muted { "No archive is configured: segments stay on local disk." }
        }
        h2 { "Throughput" }
        p.muted {
            "Per 10 s, bytes and records produced and bytes fetched (the partitions' traffic counters) "
            "and records consumed (the groups' committed offsets), over the last "
            (super::history::POINTS * super::history::INTERVAL.as_secs() as usize / 60) " minutes."
        }
        @if let Some(last) = samples.last() {
            p { "Last 10 s: " strong { (bytes(last.bytes_in)) } " in, "
                strong { (bytes(last.bytes_out)) } " out, "
                strong { (last.records_in) } " records in, "
                strong { (last.records_consumed) } " records consumed." }
        }
        (chart(&times, &[("bytes in", "s1", bytes_in), ("bytes out", "s4", bytes_out)], |v| bytes(v as u64)))
        (chart(&times, &[("records in", "s2", records_in), ("records consumed", "s3", consumed)], |v| format!("{v:.0}")))
    };
    layout("Broker", Nav::Broker, Some(10), body).into_response()
}
