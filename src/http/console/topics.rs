//! `/topics` and `/topics/{topic}`: partitions, offsets, sizes, configs and producers.

use super::{bytes, layout, not_found, not_ready, page_range, pager, timestamp, Nav};
use crate::broker::configs::{describe_topic, ConfigSource, ConfigType};
use crate::broker::partition::Partition;
use crate::http::HttpState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;

const TOPICS_PER_PAGE: usize = 50;
const PARTITIONS_PER_PAGE: usize = 100;

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
}

/// One partition's offsets and sizes; the lock is taken once, for the local size.
struct PartitionView {
    index: i32,
    log_start: i64,
    local_start: i64,
    high_watermark: i64,
    log_end: i64,
    last_stable: i64,
    local_size: u64,
    remote_end: i64,
    archived_size: u64,
}

impl PartitionView {
    fn of(p: &Partition) -> Self {
        let archived_size = p.manifest().map(|m| m.size()).unwrap_or(0);
        Self {
            index: p.index,
            log_start: p.log_start_offset(),
            local_start: p.local_log_start_offset(),
            high_watermark: p.high_watermark(),
            log_end: p.log_end_offset(),
            last_stable: p.last_stable_offset(),
            local_size: p.local_size(),
            remote_end: p.remote_end(),
            archived_size,
        }
    }
}

pub(super) async fn list(
    State(state): State<Arc<HttpState>>,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(broker) = state.broker() else {
        return not_ready();
    };
    let needle = query.q.trim().to_lowercase();
    let topics: Vec<_> = broker
        .topics()
        .into_iter()
        .filter(|t| needle.is_empty() || t.name.to_lowercase().contains(&needle))
        .collect();
    let page = query.page.unwrap_or(1);
    let (range, pages) = page_range(topics.len(), page, TOPICS_PER_PAGE);
    let q = query.q.clone();
    let link = move |p: usize| format!("/topics?q={}&page={p}", super::path_segment(&q));
    let rows: Vec<_> = topics[range]
        .iter()
        .map(|t| {
            let views: Vec<_> = t.partitions.iter().map(|p| PartitionView::of(p)).collect();
            let records: i64 = views.iter().map(|v| v.high_watermark - v.log_start).sum();
            let local: u64 = views.iter().map(|v| v.local_size).sum();
            let archived: u64 = views.iter().map(|v| v.archived_size).sum();
            (t.name.clone(), t.partitions.len(), records, local, archived)
        })
        .collect();
    let body = html! {
        h1 { "Topics" }
        form.filter method="get" action="/topics" {
            label { "Name contains " input type="search" name="q" value=(query.q); }
            button type="submit" { "Filter" }
        }
        table #topics {
            thead { tr {
                th { "Topic" } th.num { "Partitions" } th.num { "Records" }
                th.num { "Local size" } th.num { "Archived size" }
            } }
            tbody {
                @for (name, partitions, records, local, archived) in &rows {
                    tr {
                        td { a href=(format!("/topics/{}", super::path_segment(name))) { (name) } }
                        td.num { (partitions) }
                        td.num { (records) }
                        td.num { (bytes(*local)) }
                        td.num { (bytes(*archived)) }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No topic matches." } }
        (pager(page, pages, topics.len(), link))
    };
    layout("Topics", Nav::Topics, None, body).into_response()
}

#[derive(Deserialize, Default)]
pub(super) struct TopicQuery {
    #[serde(default)]
    page: Option<usize>,
}

fn source_name(source: ConfigSource) -> &'static str {
    match source {
        ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
        ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
        ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
        ConfigSource::Default => "DEFAULT_CONFIG",
        ConfigSource::Group => "GROUP_CONFIG",
    }
}

pub(super) async fn topic(
    State(state): State<Arc<HttpState>>,
    Path(name): Path<String>,
    Query(query): Query<TopicQuery>,
) -> Response {
    let Some(broker) = state.broker() else {
        return not_ready();
    };
    let Some(topic) = broker.topic(&name) else {
        return not_found(&format!("No topic named {name}."));
    };
    let page = query.page.unwrap_or(1);
    let (range, pages) = page_range(topic.partitions.len(), page, PARTITIONS_PER_PAGE);
    let shown = &topic.partitions[range];
    let views: Vec<_> = shown.iter().map(|p| PartitionView::of(p)).collect();
    // Producers of the partitions shown: (partition, id, epoch, last sequence, last
    // timestamp, open transaction's first offset).
    let mut producers = Vec::new();
    for p in shown {
        for (id, epoch, seq, ts, open) in p.producers() {
            producers.push((p.index, id, epoch, seq, ts, open));
        }
    }
    let configs = describe_topic(&topic, &broker.config);
    let base = format!("/topics/{}", super::path_segment(&name));
    let link = {
        let base = base.clone();
        move |p: usize| format!("{base}?page={p}")
    };
    let body = html! {
        h1 { "Topic " (name) }
        table.facts {
            tr { th { "Topic id" } td { code { (crate::broker::topics::kafka_uuid(topic.id)) } } }
            tr { th { "Partitions" } td { (topic.partitions.len()) } }
        }
        h2 { "Partitions" }
        (partition_table(&base, &views))
        (pager(page, pages, topic.partitions.len(), link))
        h2 { "Producers and open transactions" }
        @if producers.is_empty() {
            p.muted { "No producer state on these partitions." }
        } @else {
            table #producers {
                thead { tr {
                    th.num { "Partition" } th.num { "Producer id" } th.num { "Epoch" }
                    th.num { "Last sequence" } th { "Last write" } th { "Open transaction" }
                } }
                tbody {
                    @for (index, id, epoch, seq, ts, open) in &producers {
                        tr {
                            td.num { (index) } td.num { (id) } td.num { (epoch) } td.num { (seq) }
                            td { (timestamp(*ts)) }
                            td { @match open { Some(first) => { "from offset " (first) }, None => { "—" } } }
                        }
                    }
                }
            }
        }
        h2 { "Configs" }
        table #configs {
            thead { tr { th { "Name" } th { "Value" } th { "Source" } } }
            tbody {
                @for c in &configs {
                    tr {
                        td { code { (c.name) } }
                        td { @if c.config_type == ConfigType::Password { span.muted { "(hidden)" } } @else { code { (c.value) } } }
                        td { (source_name(c.source)) }
                    }
                }
            }
        }
    };
    layout(&format!("Topic {name}"), Nav::Topics, None, body).into_response()
}

fn partition_table(base: &str, views: &[PartitionView]) -> Markup {
    html! {
        table #partitions {
            thead { tr {
                th.num { "Partition" } th.num { "Log start" } th.num { "Local start" }
                th.num { "High watermark" } th.num { "Log end" } th.num { "Last stable" }
                th.num { "Local size" } th.num { "Archived below" } th.num { "Archived size" } th { "" }
            } }
            tbody {
                @for v in views {
                    tr {
                        td.num { (v.index) }
                        td.num { (v.log_start) }
                        td.num { (v.local_start) }
                        td.num { (v.high_watermark) }
                        td.num { (v.log_end) }
                        td.num { (v.last_stable) }
                        td.num { (bytes(v.local_size)) }
                        td.num { @if v.remote_end < 0 { "—" } @else { (v.remote_end) } }
                        td.num { (bytes(v.archived_size)) }
                        td { a href=(format!("{base}/{}", v.index)) { "messages" } }
                    }
                }
            }
        }
    }
}
