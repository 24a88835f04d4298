//! `/groups` and `/groups/{group}`: groups of both protocols (classic and KIP-848), their
//! members and assignments, committed offsets and lag.

use super::history::chart;
use super::{layout, not_found, not_ready, page_range, pager, path_segment, timestamp, Nav};
use crate::broker::groups::GroupKind;
use crate::broker::Broker;
use crate::http::HttpState;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use maud::html;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

const GROUPS_PER_PAGE: usize = 50;
const OFFSETS_PER_PAGE: usize = 100;

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    #[serde(default)]
    q: String,
    page: Option<usize>,
}

/// Per committed partition: (topic, partition, committed, high watermark, lag, metadata,
/// commit time). The high watermark is an atomic read; lag is -1 for a deleted topic.
type OffsetRow = (String, i32, i64, i64, i64, String, i64);

fn offsets(broker: &Broker, group: &str) -> Vec<OffsetRow> {
    let mut rows = Vec::new();
    for (topic, partitions) in broker.groups.fetch_offsets(group) {
        let t = broker.topic(&topic);
        for (index, c) in partitions {
            let hw = t
                .as_ref()
                .and_then(|t| t.partition(index))
                .map(|p| p.high_watermark());
            let (hw, lag) = match hw {
                Some(hw) => (hw, (hw - c.offset).max(0)),
                None => (-1, -1),
            };
            rows.push((
                topic.clone(),
                index,
                c.offset,
                hw,
                lag,
                c.metadata.clone().unwrap_or_default(),
                c.commit_timestamp,
            ));
        }
    }
    rows
}

pub(super) async fn list(
    State(state): State<Arc<HttpState>>,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(broker) = state.broker() else {
        return not_ready();
    };
    let needle = query.q.trim().to_lowercase();
    let groups: Vec<_> = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| needle.is_empty() || g.0.to_lowercase().contains(&needle))
        .collect();
    let page = query.page.unwrap_or(1);
    let (range, pages) = page_range(groups.len(), page, GROUPS_PER_PAGE);
    let rows: Vec<_> = groups[range]
        .iter()
        .map(|(id, protocol, state, kind)| {
            let members = broker
                .groups
                .describe(id, |g| g.members.len() + g.consumer.members.len())
                .unwrap_or(0);
            let lag: i64 = offsets(broker, id).iter().map(|r| r.4.max(0)).sum();
            (id.clone(), protocol.clone(), *state, *kind, members, lag)
        })
        .collect();
    let q = query.q.clone();
    let link = move |p: usize| format!("/groups?q={}&page={p}", path_segment(&q));
    let body = html! {
        h1 { "Consumer groups" }
        form.filter method="get" action="/groups" {
            label { "Group id contains " input type="search" name="q" value=(query.q); }
            button type="submit" { "Filter" }
        }
        table #groups {
            thead { tr {
                th { "Group" } th { "Type" } th { "Protocol type" } th { "State" }
                th.num { "Members" } th.num { "Total lag" }
            } }
            tbody {
                @for (id, protocol, state, kind, members, lag) in &rows {
                    tr {
                        td { a href=(format!("/groups/{}", path_segment(id))) { (id) } }
                        td { (kind) } td { (protocol) } td { (state) }
                        td.num { (members) } td.num { (lag) }
                    }
                }
            }
        }
        @if rows.is_empty() { p.muted { "No group." } }
        (pager(page, pages, groups.len(), link))
    };
    layout("Consumer groups", Nav::Groups, Some(10), body).into_response()
}

/// A member as the page lists it: (id, instance id, client id, host, epoch or generation,
/// assigned partitions by topic).
type MemberRow = (
    String,
    String,
    String,
    String,
    i32,
    BTreeMap<String, Vec<i32>>,
);

/// A classic consumer member's assignment, decoded from the consumer protocol's bytes.
pub(crate) fn classic_assignment(bytes: &Bytes) -> BTreeMap<String, Vec<i32>> {
    let mut out = BTreeMap::new();
    let mut buf = bytes.clone();
    if buf.len() < 2 {
        return out;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    if let Ok(a) = ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) {
        for tp in a.assigned_partitions {
            out.insert(tp.topic.to_string(), tp.partitions);
        }
    }
    out
}

#[derive(Deserialize, Default)]
pub(super) struct GroupQuery {
    page: Option<usize>,
}

pub(super) async fn group(
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
    Query(query): Query<GroupQuery>,
) -> Response {
    let Some(broker) = state.broker() else {
        return not_ready();
    };
    let described = broker.groups.describe(&id, |g| {
        let consumer_protocol = g.protocol_type.as_deref() == Some("consumer");
        let mut members: Vec<MemberRow> = Vec::new();
        for m in g.members.values() {
            let assignment = if consumer_protocol {
                classic_assignment(&m.assignment)
            } else {
                BTreeMap::new()
            };
            members.push((
                m.id.clone(),
                m.instance_id.clone().unwrap_or_default(),
                m.client_id.clone(),
                m.client_host.clone(),
                g.generation,
                assignment,
            ));
        }
        let mut ids = Vec::new();
        for m in g.consumer.members.values() {
            ids.push((m.id.clone(), m.assigned.clone()));
            members.push((
                m.id.clone(),
                m.instance_id.clone().unwrap_or_default(),
                m.client_id.clone(),
                m.client_host.clone(),
                m.epoch,
                BTreeMap::new(),
            ));
        }
        let kind = match g.kind {
            GroupKind::Classic => "classic",
            GroupKind::Consumer => "consumer",
        };
        (
            g.state_name(),
            kind,
            g.protocol_type_name(),
            g.protocol.clone().unwrap_or_default(),
            members,
            ids,
        )
    });
    let Some((state_name, kind, protocol_type, protocol, mut members, consumer_assigned)) =
        described
    else {
        return not_found(&format!("No group named {id}."));
    };
    // KIP-848 assignments name topics by id: resolved outside the coordinator's lock.
    for (member, assigned) in consumer_assigned {
        if let Some(row) = members.iter_mut().find(|m| m.0 == member) {
            for (topic_id, partitions) in assigned {
                let name = broker
                    .topic_by_id(topic_id)
                    .map(|t| t.name.clone())
                    .unwrap_or_else(|| topic_id.to_string());
                row.5.insert(name, partitions.into_iter().collect());
            }
        }
    }
    let rows = offsets(broker, &id);
    // The total covers every committed partition; the table shows one page of them.
    let total_lag: i64 = rows.iter().map(|r| r.4.max(0)).sum();
    let page = query.page.unwrap_or(1);
    let (range, pages) = page_range(rows.len(), page, OFFSETS_PER_PAGE);
    let link = |p: usize| format!("/groups/{}?page={p}", path_segment(&id));
    let history = state.history.lag(&id);
    let times: Vec<i64> = history.iter().map(|h| h.0).collect();
    let lags: Vec<f64> = history.iter().map(|h| h.1 as f64).collect();
    let body = html! {
        h1 { "Group " (id) }
        table.facts {
            tr { th { "Type" } td { (kind) } }
            tr { th { "State" } td #state { (state_name) } }
            tr { th { "Protocol type" } td { (protocol_type) } }
            @if !protocol.is_empty() { tr { th { "Assignor" } td { (protocol) } } }
            tr { th { "Total lag" } td #total-lag { (total_lag) } }
        }
        h2 { "Members" }
        @if members.is_empty() { p.muted { "No members." } } @else {
            table #members {
                thead { tr {
                    th { "Member id" } th { "Instance id" } th { "Client id" } th { "Host" }
                    th.num { @if kind == "consumer" { "Epoch" } @else { "Generation" } }
                    th { "Assigned partitions" }
                } }
                tbody {
                    @for (member, instance, client, host, epoch, assigned) in &members {
                        tr {
                            td { code { (member) } } td { (instance) } td { (client) } td { (host) }
                            td.num { (epoch) }
                            td { @for (topic, partitions) in assigned {
                                (topic) ": " (partitions.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")) br;
                            } }
                        }
                    }
                }
            }
        }
        h2 { "Committed offsets" }
        @if rows.is_empty() { p.muted { "No committed offsets." } } @else {
            table #offsets {
                thead { tr {
                    th { "Topic" } th.num { "Partition" } th.num { "Committed" }
                    th.num { "High watermark" } th.num { "Lag" } th { "Metadata" } th { "Committed at (UTC)" }
                } }
                tbody {
                    @for (topic, index, committed, hw, lag, metadata, at) in &rows[range] {
                        tr {
                            td { a href=(format!("/topics/{}", path_segment(topic))) { (topic) } }
                            td.num { (index) }
                            td.num { a href=(format!("/topics/{}/{index}?from=offset&offset={committed}", path_segment(topic))) title="the records from here" { (committed) } }
                            td.num { @if *hw < 0 { "—" } @else { (hw) } }
                            td.num.lag { @if *lag < 0 { "topic deleted" } @else { (lag) } }
                            td { (metadata) } td { (timestamp(*at)) }
                        }
                    }
                }
            }
            (pager(page, pages, rows.len(), link))
        }
        h2 { "Lag over time" }
        (chart(&times, &[("total lag", "s3", lags)], |v| format!("{v:.0}")))
    };
    layout(&format!("Group {id}"), Nav::Groups, Some(10), body).into_response()
}
