//! The web console at `/`: server-rendered pages over the broker's state, read-only, with
//! no JavaScript needed (one inline script reloads the overview pages).
//!
//! Every page reads on its HTTP task, renders at most one page of rows, and takes a
//! partition's lock only for what reading its offsets and sizes takes; the message browser
//! reads through the replica manager as a fetch does, with a bounded byte budget.
//!
//! # Pages
//! * `/`: the broker (version, uptime, listeners, data directory, archive, throughput).
//! * `/topics`, `/topics/{topic}`: partitions, offsets, sizes, configs, producers.
//! * `/topics/{topic}/{partition}`: the message browser.
//! * `/groups`, `/groups/{group}`: states, members, assignments, offsets and lag.
//! * `/archive`: local and archived ranges and the upload backlog per partition.

mod archive;
mod broker_page;
pub(crate) mod groups;
pub mod history;
pub(crate) mod messages;
mod topics;

use super::HttpState;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::sync::Arc;

pub(super) fn router() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/", get(broker_page::page))
        .route("/topics", get(topics::list))
        .route("/topics/{topic}", get(topics::topic))
        .route("/topics/{topic}/{partition}", get(messages::page))
        .route("/groups", get(groups::list))
        .route("/groups/{group}", get(groups::group))
        .route("/archive", get(archive::page))
        .route("/console.css", get(css))
}

const CSS: &str = include_str!("console/console.css");

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
        .into_response()
}

/// Which item of the navigation is the current page's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Broker,
    Topics,
    Groups,
    Archive,
}

/// The frame around every page; `refresh` reloads it every that many seconds (paused while
/// the page is hidden), which is all the JavaScript the console has.
fn layout(title: &str, nav: Nav, refresh: Option<u32>, body: Markup) -> Markup {
    let item = |n: Nav, href: &str, label: &str| {
        html! { a href=(href) class=[(n == nav).then_some("current")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Strata" }
                link rel="stylesheet" href="/console.css";
            }
            body {
                header {
                    span.brand { "Strata" }
                    nav {
                        (item(Nav::Broker, "/", "Broker"))
                        (item(Nav::Topics, "/topics", "Topics"))
                        (item(Nav::Groups, "/groups", "Consumer groups"))
                        (item(Nav::Archive, "/archive", "Archive"))
                    }
                }
                main { (body) }
                @if let Some(seconds) = refresh {
                    script {
                        (PreEscaped(format!(
                            "setTimeout(function r(){{if(document.hidden){{setTimeout(r,{ms});}}else{{location.reload();}}}},{ms});",
                            ms = u64::from(seconds) * 1000
                        )))
                    }
                }
            }
        }
    }
}

/// 503 while the broker is still recovering.
fn not_ready() -> Response {
    let body = layout(
        "Recovering",
        Nav::Broker,
        Some(2),
        html! { h1 { "Recovering" } p { "The broker is still recovering its logs." } },
    );
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// The console has no login: on a broker that checks ACLs it shows no records.
fn records_withheld() -> Response {
    let body = layout(
        "Records not shown",
        Nav::Topics,
        None,
        html! {
            h1 { "Records not shown" }
            p { "This broker checks ACLs (authorizer.class.name is set) and the console has no \
                 login, so it does not show records. Read them with a Kafka client." }
        },
    );
    (StatusCode::FORBIDDEN, body).into_response()
}

fn not_found(what: &str) -> Response {
    let body = layout(
        "Not found",
        Nav::Broker,
        None,
        html! { h1 { "Not found" } p { (what) } },
    );
    (StatusCode::NOT_FOUND, body).into_response()
}

/// Bytes as KiB, MiB, … with one decimal.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Milliseconds since the epoch as UTC `YYYY-MM-DD hh:mm:ss.mmm`.
fn timestamp(ms: i64) -> String {
    if ms < 0 {
        return "—".to_string();
    }
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

/// Howard Hinnant's days-to-civil-date algorithm (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DDThh:mm[:ss]` (UTC, as a datetime-local input sends it) to ms since the epoch.
fn parse_timestamp(text: &str) -> Option<i64> {
    let (date, time) = text.trim().split_once(['T', ' '])?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.trim_end_matches('Z').split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let min: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next().map(|s| s.parse().ok()).unwrap_or(Some(0.0))?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 {
        return None;
    }
    // Days from civil (inverse of `civil_from_days`).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) * 1000 + (sec * 1000.0) as i64)
}

/// Percent-encodes a path segment (group ids may hold any character).
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Which slice of `total` rows page `page` (1-based) shows, and how many pages there are.
fn page_range(total: usize, page: usize, per_page: usize) -> (std::ops::Range<usize>, usize) {
    let pages = total.div_ceil(per_page).max(1);
    let page = page.clamp(1, pages);
    let start = (page - 1) * per_page;
    (start..(start + per_page).min(total), pages)
}

/// "Page n of m" with previous and next links; `link(p)` is page p's address.
fn pager(page: usize, pages: usize, total: usize, link: impl Fn(usize) -> String) -> Markup {
    let page = page.clamp(1, pages);
    html! {
        p.pager {
            @if page > 1 { a href=(link(page - 1)) rel="prev" { "← previous" } " " }
            "Page " (page) " of " (pages) " (" (total) " rows)"
            @if page < pages { " " a href=(link(page + 1)) rel="next" { "next →" } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1_700_000_000_123, 951_782_400_000, 4_102_444_799_000] {
            let text = timestamp(ms);
            let t = text.replacen(' ', "T", 1);
            assert_eq!(parse_timestamp(&t), Some(ms), "{text}");
        }
        assert_eq!(timestamp(0), "1970-01-01 00:00:00.000");
        assert_eq!(parse_timestamp("2024-02-29T12:30"), Some(1_709_209_800_000));
        assert_eq!(parse_timestamp("2024-13-01T00:00"), None);
    }

    #[test]
    fn pages_never_exceed_their_size() {
        assert_eq!(page_range(10_000, 3, 100), (200..300, 100));
        assert_eq!(page_range(10_000, 500, 100), (9_900..10_000, 100));
        assert_eq!(page_range(0, 1, 100), (0..0, 1));
    }

    #[test]
    fn sizes_and_segments() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(path_segment("a b/é"), "a%20b%2F%C3%A9");
    }
}
