//! `/archive`: per partition of the tiered topics, what is on local disk, what is in the
//! archive, the closed segments still waiting for upload, and the latest failed archive
//! steps (kept by the tier, bounded).

use super::{bytes, layout, not_ready, page_range, pager, path_segment, timestamp, Nav};
use crate::http::HttpState;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

const PARTITIONS_PER_PAGE: usize = 100;

#[derive(Deserialize, Default)]
pub(super) struct ArchiveQuery {
    #[serde(default)]
    q: String,
    page: Option<usize>,
}

pub(super) async fn page(
    State(state): State<Arc<HttpState>>,
    Query(query): Query<ArchiveQuery>,
) -> Response {
    let Some(broker) = state.broker() else {
        return not_ready();
    };
    let Some(tier) = broker.replica_manager.tier() else {
        let body = html! {
            h1 { "Archive" }
            p.muted { "No archive is configured (the `tier` block of the configuration): segments stay on local disk." }
        };
        return layout("Archive", Nav::Archive, None, body).into_response();
    };
    let errors = tier.stats.recent_errors();
    let needle = query.q.trim().to_lowercase();
    // (topic, partition) of every tiered partition, cheap to list; only a page is read.
    let all: Vec<_> = broker
        .topics()
        .into_iter()
        .filter(|t| t.is_tiered(&broker.config))
        .filter(|t| needle.is_empty() || t.name.to_lowercase().contains(&needle))
        .flat_map(|t| t.partitions.clone())
        .collect();
    let page = query.page.unwrap_or(1);
    let (range, pages) = page_range(all.len(), page, PARTITIONS_PER_PAGE);
    let rows: Vec<_> = all[range]
        .iter()
        .map(|p| {
            let remote_end = p.remote_end();
            let manifest = p.manifest();
            let (segments, archived, remote_start) = manifest
                .as_ref()
                .map(|m| {
                    (
                        m.segments.len(),
                        m.size(),
                        m.segments.first().map(|s| s.base_offset),
                    )
                })
                .unwrap_or((0, 0, None));
            let waiting: Vec<_> = p
                .closed_segments()
                .into_iter()
                .filter(|s| s.next_offset > remote_end)
                .collect();
            let backlog: u64 = waiting.iter().map(|s| s.size).sum();
            (
                p.topic.clone(),
                p.index,
                p.local_log_start_offset(),
                p.log_end_offset(),
                p.local_size(),
                remote_start,
                remote_end,
                segments,
                archived,
                waiting.len(),
                backlog,
            )
        })
        .collect();
    let q = query.q.clone();
    let link = move |p: usize| format!("/archive?q={}&page={p}", path_segment(&q));
    let body = html! {
        h1 { "Archive" }
        p.muted { "Closed segments are uploaded in offset order; the backlog is the closed segments not archived yet. "
            "A failed step is retried with backoff; local data stays until it is archived." }
        h2 { "Recent errors" }
        @if errors.is_empty() {
            p.muted #archive-errors { "None since the broker started." }
        } @else {
            table #archive-errors {
                thead { tr { th { "When" } th { "Partition" } th { "Error" } } }
                tbody {
                    @for e in &errors {
                        tr { td { (timestamp(e.at_ms)) } td { (e.partition) } td { (e.error) } }
                    }
                }
            }
        }
        form.filter method="get" action="/archive" {
            label { "Topic contains " input type="search" name="q" value=(query.q); }
            button type="submit" { "Filter" }
        }
        table #archive {
            thead {
                tr {
                    th { "Topic" } th.num { "Partition" }
                    th.num { "Local from" } th.num { "Log end" } th.num { "Local size" }
                    th.num { "Archived from" } th.num { "Archived below" } th.num { "Segments" } th.num { "Archived size" }
                    th.num { "Waiting segments" } th.num { "Waiting bytes" }
                }
            }
            tbody {
                @for (topic, index, local_start, end, local, remote_start, remote_end, segments, archived, waiting, backlog) in &rows {
                    tr {
                        td { a href=(format!("/topics/{}", path_segment(topic))) { (topic) } }
                        td.num { (index) } td.num { (local_start) } td.num { (end) } td.num { (bytes(*local)) }
                        td.num { @match remote_start { Some(s) => { (s) }, None => { "—" } } }
                        td.num { @if *remote_end < 0 { "—" } @else { (remote_end) } }
                        td.num { (segments) } td.num { (bytes(*archived)) }
                        td.num { (waiting) } td.num { (bytes(*backlog)) }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No tiered topic (remote.storage.enable=true) matches." } }
        (pager(page, pages, all.len(), link))
    };
    layout("Archive", Nav::Archive, Some(10), body).into_response()
}
