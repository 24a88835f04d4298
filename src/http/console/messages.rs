//! `/topics/{topic}/{partition}`: the message browser. Reads the records of one page (at
//! most [`MAX_RECORDS`], at most [`MAX_BYTES`] of batches) through the replica manager, as a
//! consumer's fetch would, so records below the local log start come from the archive.

use super::{layout, not_found, not_ready, parse_timestamp, records_withheld, timestamp, Nav};
use crate::broker::replica_manager::{FetchParams, FetchPartition, OffsetSpec};
use crate::http::HttpState;
use crate::log::codec::{decompress, Compression};
use crate::log::record_batch::{batch_size, marker_type, read_varint, RecordBatch};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Records on one page, at most.
const MAX_RECORDS: usize = 100;
const DEFAULT_RECORDS: usize = 20;
/// Bytes of batches read for one page, at most (a single larger batch is still read whole,
/// as a fetch returns it: KIP-74).
const MAX_BYTES: usize = 1 << 20;
/// A compressed batch inflated past this is not shown.
const MAX_INFLATED: usize = 8 << 20;
/// Bytes of a key or value shown; the rest is cut.
const SHOWN_BYTES: usize = 16 << 10;

#[derive(Deserialize, Default)]
pub(super) struct BrowseQuery {
    /// `newest` (default), `offset` or `time`.
    #[serde(default)]
    from: String,
    offset: Option<String>,
    time: Option<String>,
    /// `auto` (default), `text`, `json` or `hex`.
    #[serde(default)]
    format: String,
    n: Option<usize>,
}

/// One record as the page shows it.
pub(super) struct Record {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// A transaction marker: "COMMIT" or "ABORT" (or "CONTROL" for another control record),
    /// with the producer id it ends a transaction of.
    pub marker: Option<(&'static str, i64)>,
}

/// The records of a batch's (uncompressed) records section, headers included.
fn parse_records(batch: &RecordBatch<'_>, mut data: &[u8]) -> Option<Vec<Record>> {
    let count = batch.record_count().max(0) as usize;
    let mut out = Vec::with_capacity(count.min(4096));
    let bytes_field = |buf: &[u8], at: &mut usize| -> Option<Option<Vec<u8>>> {
        let (len, n) = read_varint(buf.get(*at..)?)?;
        *at += n;
        if len < 0 {
            return Some(None);
        }
        let end = at.checked_add(usize::try_from(len).ok()?)?;
        let field = buf.get(*at..end)?.to_vec();
        *at = end;
        Some(Some(field))
    };
    for _ in 0..count {
        let (len, n) = read_varint(data)?;
        let end = n.checked_add(usize::try_from(len).ok()?)?;
        let body = data.get(n..end)?;
        let mut at = 1; // attributes
        let (ts_delta, m) = read_varint(body.get(at..)?)?;
        at += m;
        let (offset_delta, m) = read_varint(body.get(at..)?)?;
        at += m;
        let key = bytes_field(body, &mut at)?;
        let value = bytes_field(body, &mut at)?;
        let (header_count, m) = read_varint(body.get(at..)?)?;
        at += m;
        let mut headers = Vec::new();
        for _ in 0..header_count.max(0) {
            let name = bytes_field(body, &mut at)?.unwrap_or_default();
            let value = bytes_field(body, &mut at)?;
            headers.push((String::from_utf8_lossy(&name).into_owned(), value));
        }
        let timestamp = if batch.is_log_append_time() {
            batch.max_timestamp()
        } else {
            batch.base_timestamp() + ts_delta
        };
        out.push(Record {
            offset: batch.base_offset() + offset_delta,
            timestamp,
            key,
            value,
            headers,
            marker: None,
        });
        data = &data[end..];
    }
    Some(out)
}

/// The records of `records` (whole batches) at or after `from`, a control batch as one
/// marker entry. A batch that cannot be read is reported by its base offset.
fn decode(records: &[u8], from: i64, out: &mut Vec<Record>, errors: &mut Vec<String>) -> i64 {
    let mut rest = records;
    let mut next = from;
    while let Some(size) = batch_size(rest) {
        let Some(buf) = usize::try_from(size).ok().and_then(|s| rest.get(..s)) else {
            break; // a partial batch at the end of the read
        };
        rest = &rest[buf.len()..];
        let Ok(batch) = RecordBatch::parse_header(buf) else {
            errors.push("a batch with an unreadable header".to_string());
            break;
        };
        next = next.max(batch.last_offset() + 1);
        if batch.is_control() {
            if batch.base_offset() >= from {
                let kind = match marker_type(&batch) {
                    Some(true) => "COMMIT",
                    Some(false) => "ABORT",
                    None => "CONTROL",
                };
                out.push(Record {
                    offset: batch.base_offset(),
                    timestamp: batch.max_timestamp(),
                    key: None,
                    value: None,
                    headers: Vec::new(),
                    marker: Some((kind, batch.producer_id())),
                });
            }
            continue;
        }
        let inflated = Compression::from_attributes(batch.attributes())
            .map_err(|e| e.to_string())
            .and_then(|c| decompress(c, batch.records(), MAX_INFLATED).map_err(|e| e.to_string()));
        match inflated.map(|data| parse_records(&batch, &data)) {
            Ok(Some(records)) => out.extend(records.into_iter().filter(|r| r.offset >= from)),
            Ok(None) => errors.push(format!(
                "batch at offset {} has malformed records",
                batch.base_offset()
            )),
            Err(e) => errors.push(format!("batch at offset {}: {e}", batch.base_offset())),
        }
    }
    next
}

/// `decode` from the first offset on, results dropped: for the fuzz targets.
pub(crate) fn decode_for_fuzzing(records: &[u8]) {
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    decode(records, i64::MIN, &mut out, &mut errors);
}

/// How a key or value is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Auto,
    Text,
    Json,
    Hex,
}

impl Format {
    fn parse(text: &str) -> Self {
        match text {
            "text" => Self::Text,
            "json" => Self::Json,
            "hex" => Self::Hex,
            _ => Self::Auto,
        }
    }
}

fn hex_dump(data: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in data.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x}  {:<47}  {ascii}\n", i * 16, hex.join(" ")));
    }
    out
}

/// Re-indents valid JSON two spaces a level, keeping its keys in their written order.
fn pretty_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Renders bytes as `format` asks; (shown text, what it was shown as).
fn show(data: &[u8], format: Format) -> (String, &'static str) {
    let cut = &data[..data.len().min(SHOWN_BYTES)];
    let json = || {
        serde_json::from_slice::<serde::de::IgnoredAny>(data)
            .ok()
            .and_then(|_| std::str::from_utf8(data).ok())
            .map(pretty_json)
    };
    match format {
        Format::Hex => (hex_dump(cut), "hex"),
        Format::Json => match json() {
            Some(pretty) => (pretty, "JSON"),
            None => (String::from_utf8_lossy(cut).into_owned(), "text (not JSON)"),
        },
        Format::Text => (String::from_utf8_lossy(cut).into_owned(), "text"),
        Format::Auto => {
            if data.len() <= SHOWN_BYTES {
                if let Some(pretty) = json().filter(|_| matches!(data.first(), Some(b'{' | b'['))) {
                    return (pretty, "JSON");
                }
            }
            match std::str::from_utf8(cut) {
                Ok(text) => (text.to_string(), "text"),
                Err(_) => (hex_dump(cut), "hex"),
            }
        }
    }
}

fn field(data: &Option<Vec<u8>>, format: Format) -> Markup {
    match data {
        None => html! { span.muted { "null" } },
        Some(d) => {
            let (text, shown_as) = show(d, format);
            html! {
                pre data-format=(shown_as) { (text) }
                @if d.len() > SHOWN_BYTES { span.muted { "(first " (SHOWN_BYTES) " of " (d.len()) " bytes)" } }
            }
        }
    }
}

pub(super) async fn page(
    State(state): State<Arc<HttpState>>,
    Path((topic, index)): Path<(String, i32)>,
    Query(query): Query<BrowseQuery>,
) -> Response {
    let Some(broker) = state.broker() else {
        return not_ready();
    };
    if broker.authorizer.is_some() {
        return records_withheld();
    }
    let Some(partition) = broker.partition(&topic, index) else {
        return not_found(&format!("No partition {topic}-{index}."));
    };
    let n = query.n.unwrap_or(DEFAULT_RECORDS).clamp(1, MAX_RECORDS);
    let format = Format::parse(&query.format);
    let start = partition.log_start_offset();
    let hw = partition.high_watermark();
    let mut problem = None;
    let from = match query.from.as_str() {
        "offset" => match query
            .offset
            .as_deref()
            .map(str::trim)
            .map(str::parse::<i64>)
        {
            Some(Ok(o)) => o.clamp(start, hw),
            _ => {
                problem = Some("Not an offset.".to_string());
                start
            }
        },
        "time" => match query.time.as_deref().and_then(parse_timestamp) {
            Some(ms) => match broker
                .replica_manager
                .fetch_offset_for_timestamp(&partition, OffsetSpec::Timestamp(ms), false)
                .await
            {
                Ok(Some((offset, _))) => offset,
                Ok(None) => hw,
                Err(e) => {
                    problem = Some(format!("Looking the time up failed: {e}"));
                    hw
                }
            },
            None => {
                problem = Some("Not a time (YYYY-MM-DDThh:mm, UTC).".to_string());
                hw
            }
        },
        _ => (hw - n as i64).max(start),
    };

    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut at = from;
    let mut read = 0usize;
    let mut pending_archive = false;
    let params = FetchParams {
        max_wait: Duration::ZERO,
        min_bytes: 0,
        max_bytes: MAX_BYTES,
        read_committed: false,
        zero_copy: false,
    };
    // Several reads at most: a page of small records spans few batches.
    for _ in 0..8 {
        if records.len() >= n || at >= hw || read >= MAX_BYTES {
            break;
        }
        let want = [FetchPartition {
            partition: Ok(partition.clone()),
            fetch_offset: at,
            max_bytes: (MAX_BYTES - read) as i32,
        }];
        let Some(data) = broker
            .replica_manager
            .fetch_messages(&params, &want)
            .await
            .into_iter()
            .next()
        else {
            break;
        };
        if let Some(e) = data.error {
            errors.push(format!("reading at offset {at}: {e}"));
            break;
        }
        if data.records.is_empty() {
            pending_archive = at < partition.local_log_start_offset();
            break;
        }
        let bytes = match data.records.into_bytes() {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("reading at offset {at}: {e}"));
                break;
            }
        };
        read += bytes.len();
        let next = decode(&bytes, at, &mut records, &mut errors);
        if next <= at {
            break;
        }
        at = next;
    }
    records.truncate(n);

    let base = format!("/topics/{}/{index}", super::path_segment(&topic));
    let fmt = match format {
        Format::Auto => "auto",
        Format::Text => "text",
        Format::Json => "json",
        Format::Hex => "hex",
    };
    let next_link = records.last().map(|r| {
        format!(
            "{base}?from=offset&offset={}&n={n}&format={fmt}",
            r.offset + 1
        )
    });
    let older_link = records.first().filter(|r| r.offset > start).map(|r| {
        format!(
            "{base}?from=offset&offset={}&n={n}&format={fmt}",
            (r.offset - n as i64).max(start)
        )
    });
    let body = html! {
        h1 { "Messages of " a href=(format!("/topics/{}", super::path_segment(&topic))) { (topic) } " partition " (index) }
        p.muted { "Offsets " (start) " to " (hw - 1) " are readable (log start " (start) ", high watermark " (hw) ")." }
        form.filter method="get" action=(base) {
            select name="from" {
                option value="newest" selected[query.from != "offset" && query.from != "time"] { "Newest" }
                option value="offset" selected[query.from == "offset"] { "From offset" }
                option value="time" selected[query.from == "time"] { "From time (UTC)" }
            }
            input type="number" name="offset" placeholder="offset" value=[query.offset.as_deref()];
            input type="datetime-local" name="time" step="1" value=[query.time.as_deref()];
            label { "Records " input type="number" name="n" min="1" max=(MAX_RECORDS) value=(n); }
            label { "Show values as "
                select name="format" {
                    option value="auto" selected[format == Format::Auto] { "auto" }
                    option value="text" selected[format == Format::Text] { "text" }
                    option value="json" selected[format == Format::Json] { "JSON" }
                    option value="hex" selected[format == Format::Hex] { "hex" }
                }
            }
            button type="submit" { "Show" }
        }
        @if let Some(p) = &problem { p.bad { (p) } }
        @for e in &errors { p.bad { (e) } }
        @if pending_archive { p.muted { "These offsets are in the archive and are being read; reload in a moment." } }
        @if records.is_empty() && errors.is_empty() && !pending_archive { p.muted { "No records here." } }
        @for r in &records {
            @if let Some((kind, producer)) = r.marker {
                div.record.marker id=(format!("offset-{}", r.offset)) {
                    div.meta {
                        span { "Offset " strong.offset { (r.offset) } }
                        span { "Timestamp " (timestamp(r.timestamp)) " UTC" }
                        span.kind { "Transaction marker: " strong { (kind) } " (producer id " (producer) ")" }
                    }
                }
            } @else {
            div.record id=(format!("offset-{}", r.offset)) {
                div.meta {
                    span { "Offset " strong.offset { (r.offset) } }
                    span { "Timestamp " (timestamp(r.timestamp)) " UTC" }
                }
                table.fields {
                    tr { th { "Key" } td { (field(&r.key, format)) } }
                    tr { th { "Value" } td.value { (field(&r.value, format)) } }
                    @if !r.headers.is_empty() {
                        tr { th { "Headers" } td {
                            table.headers { @for (name, value) in &r.headers {
                                tr { th { code { (name) } } td { (field(value, Format::Text)) } }
                            } }
                        } }
                    }
                }
            }
            }
        }
        p.pager {
            @if let Some(link) = older_link { a href=(link) rel="prev" { "← older records" } }
            @if let Some(link) = next_link { @if at < hw { a href=(link) rel="next" { "newer records →" } } }
        }
    };
    layout(&format!("{topic}-{index}"), Nav::Topics, None, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_printed_and_binary_is_hex() {
        let (text, as_) = show(br#"{"a":1,"b":[true]}"#, Format::Auto);
        assert_eq!(as_, "JSON");
        assert_eq!(text, "{\n  \"a\": 1,\n  \"b\": [\n    true\n  ]\n}");
        let (text, _) = show(br#"{"z": {}, "a": "x,\"{"}"#, Format::Json);
        assert_eq!(text, "{\n  \"z\": {},\n  \"a\": \"x,\\\"{\"\n}");
        assert_eq!(show(b"plain", Format::Auto), ("plain".to_string(), "text"));
        assert_eq!(show(&[0xff, 0x00], Format::Auto).1, "hex");
        assert!(show(b"AB", Format::Hex).0.starts_with("00000000  41 42"));
    }
}
