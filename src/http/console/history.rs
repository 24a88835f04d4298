//! What the console remembers over time: the broker's throughput and each group's lag,
//! sampled every [`INTERVAL`] into ring buffers of [`POINTS`] samples, so that memory stays
//! bounded however long the broker runs.
//!
//! Throughput is the growth of every partition's traffic counters (the ones `/metrics`
//! shows: bytes and records appended by produce, bytes sent by fetch) and the advance of the
//! groups' committed offsets (records consumed).

use crate::broker::Broker;
use maud::{html, Markup};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Samples kept: ten minutes.
pub const POINTS: usize = 60;
/// Groups whose lag is remembered; the rest show their current lag only.
const MAX_GROUPS: usize = 500;

#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    /// Milliseconds since the epoch at the end of the interval.
    pub at_ms: i64,
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_consumed: u64,
}

/// The ring buffers, and what the previous sample saw (to take differences).
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    throughput: VecDeque<Throughput>,
    /// Per group: (ms, total lag) samples.
    lag: HashMap<String, VecDeque<(i64, i64)>>,
    /// Per partition: its traffic counters (records in, bytes in, bytes out) at the
    /// previous sample.
    logs: HashMap<(Uuid, i32), (u64, u64, u64)>,
    /// Per (group, topic, partition): the committed offset at the previous sample.
    committed: HashMap<(String, String, i32), i64>,
    primed: bool,
}

fn push<T>(ring: &mut VecDeque<T>, value: T) {
    if ring.len() == POINTS {
        ring.pop_front();
    }
    ring.push_back(value);
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn throughput(&self) -> Vec<Throughput> {
        self.lock().throughput.iter().copied().collect()
    }

    pub fn lag(&self, group: &str) -> Vec<(i64, i64)> {
        self.lock()
            .lag
            .get(group)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Takes one sample of every partition and group. Each partition's lock is taken once,
    /// for its size; offsets are atomics.
    pub fn sample(&self, broker: &Broker, now_ms: i64) {
        let mut logs = HashMap::new();
        for topic in broker.topics() {
            for p in &topic.partitions {
                let t = &p.traffic;
                logs.insert(
                    (p.topic_id, p.index),
                    (
                        t.records_in.load(Ordering::Relaxed),
                        t.bytes_in.load(Ordering::Relaxed),
                        t.bytes_out.load(Ordering::Relaxed),
                    ),
                );
            }
        }
        let mut committed = HashMap::new();
        let mut lags = Vec::new();
        for (group, ..) in broker.groups.list() {
            let offsets = broker.groups.fetch_offsets(&group);
            let mut lag = 0i64;
            for (topic, partitions) in offsets {
                let t = broker.topic(&topic);
                for (index, c) in partitions {
                    if let Some(p) = t.as_ref().and_then(|t| t.partition(index)) {
                        lag += (p.high_watermark() - c.offset).max(0);
                    }
                    committed.insert((group.clone(), topic.clone(), index), c.offset);
                }
            }
            lags.push((group, lag));
        }
        let mut inner = self.lock();
        let mut sample = Throughput {
            at_ms: now_ms,
            ..Default::default()
        };
        for (key, &(records, bytes_in, bytes_out)) in &logs {
            if let Some(&(r0, i0, o0)) = inner.logs.get(key) {
                sample.records_in += records.saturating_sub(r0);
                sample.bytes_in += bytes_in.saturating_sub(i0);
                sample.bytes_out += bytes_out.saturating_sub(o0);
            }
        }
        for (key, &offset) in &committed {
            if let Some(&prev) = inner.committed.get(key) {
                sample.records_consumed += (offset - prev).max(0) as u64;
            }
        }
        if inner.primed {
            push(&mut inner.throughput, sample);
        }
        inner.primed = true;
        inner.logs = logs;
        inner.committed = committed;
        inner.lag.retain(|g, _| lags.iter().any(|(l, _)| l == g));
        for (group, lag) in lags {
            let tracked = inner.lag.len();
            match inner.lag.get_mut(&group) {
                Some(ring) => push(ring, (now_ms, lag)),
                None if tracked < MAX_GROUPS => {
                    let mut ring = VecDeque::with_capacity(POINTS);
                    ring.push_back((now_ms, lag));
                    inner.lag.insert(group, ring);
                }
                None => {}
            }
        }
    }
}

/// Samples every [`INTERVAL`] once the broker is ready, until `shutdown` turns true.
pub async fn run(
    state: std::sync::Arc<super::HttpState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        }
        if let Some(broker) = state.broker() {
            let broker = broker.clone();
            let state = state.clone();
            // Sizes take partition locks: off the async threads.
            let sampled = tokio::task::spawn_blocking(move || {
                state.history.sample(&broker, crate::clock::now_ms());
            })
            .await;
            if let Err(e) = sampled {
                tracing::warn!(error = %e, "the console's sampler failed");
            }
        }
    }
}

/// A line chart of one or more series over time, drawn as inline SVG. `series` are
/// (label, CSS class, values) with one value per entry of `times`.
pub fn chart(times: &[i64], series: &[(&str, &str, Vec<f64>)], unit: fn(f64) -> String) -> Markup {
    const W: f64 = 640.0;
    const H: f64 = 160.0;
    const LEFT: f64 = 70.0;
    const BOTTOM: f64 = 20.0;
    if times.len() < 2 {
        return html! {
            p.muted { "Collecting: a point every " (INTERVAL.as_secs()) " s, the chart appears after two." }
        };
    }
    let max = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1.0);
    let (t0, t1) = (times[0], times[times.len() - 1]);
    let span = (t1 - t0).max(1) as f64;
    let x = |t: i64| LEFT + (t - t0) as f64 / span * (W - LEFT - 10.0);
    let y = |v: f64| 10.0 + (1.0 - v / max) * (H - BOTTOM - 10.0);
    let points = |values: &[f64]| {
        times
            .iter()
            .zip(values)
            .map(|(&t, &v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let minutes = (t1 - t0) as f64 / 60_000.0;
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {W} {H}")) width=(W) height=(H) role="img" {
                line x1=(LEFT) y1=(y(max)) x2=(W - 10.0) y2=(y(max)) class="grid" {}
                line x1=(LEFT) y1=(y(0.0)) x2=(W - 10.0) y2=(y(0.0)) class="axis" {}
                text x=(LEFT - 6.0) y=(y(max) + 4.0) text-anchor="end" { (unit(max)) }
                text x=(LEFT - 6.0) y=(y(0.0) + 4.0) text-anchor="end" { "0" }
                text x=(LEFT) y=(H - 4.0) { (format!("−{minutes:.1} min")) }
                text x=(W - 10.0) y=(H - 4.0) text-anchor="end" { "now" }
                @for (label, class, values) in series {
                    polyline class=(class) points=(points(values)) {
                        title { (label) }
                    }
                }
            }
            figcaption {
                @for (label, class, _) in series {
                    span class=(format!("key {class}")) { "■ " } (label) " "
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_needs_two_points_and_scales_to_the_largest() {
        let none = chart(&[1_000], &[("in", "s1", vec![5.0])], |v| format!("{v}")).into_string();
        assert!(none.contains("Collecting"), "{none}");
        let svg = chart(
            &[0, 10_000, 20_000],
            &[("in", "s1", vec![0.0, 50.0, 100.0])],
            |v| format!("{v}"),
        )
        .into_string();
        assert!(
            svg.contains("<polyline class=\"s1\" points=\"70.0,140.0 350.0,75.0 630.0,10.0\">"),
            "{svg}"
        );
        assert!(svg.contains(">100</text>"), "{svg}");
    }

    #[test]
    fn rings_stay_bounded() {
        let mut ring = VecDeque::new();
        for i in 0..(POINTS * 3) {
            push(&mut ring, i);
        }
        assert_eq!(ring.len(), POINTS);
        assert_eq!(ring.front(), Some(&(POINTS * 2)));
    }

    #[test]
    fn throughput_is_the_growth_between_samples() {
        let (_dir, broker) = crate::broker::test_broker();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let topic = rt
            .block_on(broker.create_topic("t", 1, 1, vec![], false))
            .unwrap();
        let partition = topic.partition(0).unwrap();
        let history = History::default();
        history.sample(&broker, 1_000);
        assert!(
            history.throughput().is_empty(),
            "the first sample is the baseline"
        );
        let batch = crate::log::record_batch::tests::make_batch(5_000, &[b"one", b"two", b"three"]);
        broker
            .replica_manager
            .append_records(&topic, &partition, &batch, 1, 5_000, &|_, _| Ok(()))
            .unwrap();
        history.sample(&broker, 11_000);
        let committed = crate::broker::groups::CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: None,
            commit_timestamp: 15_000,
        };
        rt.block_on(
            broker
                .groups
                .commit("g", -1, "", None, 8, vec![("t".into(), 0, committed)]),
        )
        .unwrap();
        history.sample(&broker, 21_000);
        let samples = history.throughput();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].at_ms, 11_000);
        assert_eq!(samples[0].records_in, 3);
        assert_eq!(samples[0].bytes_in, batch.len() as u64);
        assert_eq!((samples[1].records_in, samples[1].bytes_in), (0, 0));
        // Lag: high watermark 3 minus the committed 1, from the group's first sample on.
        assert_eq!(history.lag("g"), vec![(21_000, 2)]);
    }
}
