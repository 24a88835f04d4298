//! The listeners: accept connections on every bound listener (TLS ones after their
//! handshake) within Kafka's connection limits and, on shutdown, stop accepting, let each
//! connection finish the request it is handling, then flush every log.
//!
//! A connection over a limit (`max.connections`, a listener's own `max.connections`,
//! `max.connections.per.ip` and its overrides, or the share of the open-file limit left to
//! connections) is accepted and closed at once: the newest connection is the one refused,
//! those already served are not disturbed.
//!
//! No files of its own; the broker flushes its logs at the end of a clean shutdown.

use crate::broker::Broker;
use crate::config::connections::canonical;
use crate::config::ConnectionSettings;
use crate::connection::RequestMemory;
use crate::metrics::{CloseReason, METRICS};
use crate::security::tls::TlsServer;
use crate::security::{Listener, Session};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long shutdown waits for connections to finish their in-flight requests.
const DRAIN: Duration = Duration::from_secs(10);

/// A bound socket and what its connections are.
pub struct Bound {
    pub socket: TcpListener,
    /// Name, protocol and advertised address, shared by the listener's sessions.
    pub listener: Arc<Listener>,
    /// For SSL and SASL_SSL listeners: the handshake and the certificates.
    pub tls: Option<Arc<TlsServer>>,
}

pub async fn run(listeners: Vec<Bound>, broker: Broker, shutdown: impl Future) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let settings = &broker.config.connections;
    let listener_limits = listeners
        .iter()
        .map(|b| {
            let n = broker
                .config
                .props
                .for_listener(&b.listener.name, "max.connections");
            n.parse::<usize>().unwrap_or(settings.max_connections)
        })
        .collect();
    let limits = Arc::new(Mutex::new(Limits::new(
        settings,
        listener_limits,
        file_limit_share(),
    )));
    let memory = RequestMemory::new(
        settings.queued_max_request_bytes,
        settings.socket_request_max_bytes,
    );
    let mut refusals = RefusalLog::default();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            (accepted, index) = accept_any(&listeners) => match accepted {
                Ok((stream, peer)) => {
                    let bound = &listeners[index];
                    backoff = Duration::from_millis(10);
                    let admitted = Limits::admit(&limits, index, peer.ip());
                    let slot = match admitted {
                        Ok(slot) => slot,
                        Err(refusal) => {
                            METRICS.closed(refusal.reason());
                            refusals.refused(&refusal, peer, &bound.listener.name);
                            // Dropping the stream closes the newest connection at once.
                            drop(stream);
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let stop = stop_rx.clone();
                    let listener = bound.listener.clone();
                    let tls = bound.tls.clone();
                    let memory = memory.clone();
                    connections.spawn(async move {
                        let _slot = slot;
                        match tls {
                            None => crate::connection::serve_tcp(broker, stream, peer, listener, memory, stop).await,
                            // Boxed: a plaintext connection's task need not hold room for
                            // a TLS handshake and session.
                            Some(tls) => Box::pin(serve_tls(tls, broker, stream, peer, listener, memory, stop)).await,
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(listener = %listeners[index].listener.name, error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            },
        }
    }
    tracing::info!(
        connections = connections.len(),
        "shutting down: no longer accepting"
    );
    drop(listeners);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still busy after {DRAIN:?}; closing them");
        connections.abort_all();
    }
    broker.shut_down().await;
    tracing::info!("logs flushed; stopped");
}

/// A TLS connection: the handshake, then the connection over it.
async fn serve_tls(
    tls: Arc<TlsServer>,
    broker: Broker,
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    listener: Arc<Listener>,
    memory: RequestMemory,
    stop: watch::Receiver<bool>,
) {
    let mut handshake_stop = stop.clone();
    let Some((stream, principal)) = tls.accept(stream, peer, &mut handshake_stop).await else {
        METRICS.closed(CloseReason::Tls);
        return;
    };
    let mut session = Session::new(listener, peer);
    if let Some(p) = principal {
        session.principal = p;
    }
    let (rd, wr) = tokio::io::split(stream);
    crate::connection::serve(broker, rd, wr, session, memory, stop).await;
}

/// Open files kept for everything but connections and segment files (the archive's files,
/// state files, the HTTP listener's sockets, the runtime's own); a quarter of the limit
/// when that is less.
const OTHER_FILES: u64 = 1024;

/// The connections the process's open-file limit leaves room for: what the segment-file
/// cache (sized from the same limit, which it raised to the hard limit at start) and
/// `OTHER_FILES` leave. A connection past it is refused like one past `max.connections`,
/// rather than `accept` (and segment opens) failing with "too many open files".
fn file_limit_share() -> usize {
    let Some(limit) = crate::log::file_cache::open_file_limit() else {
        return usize::MAX;
    };
    let (_, segment_files) = crate::log::file_cache::stats();
    let other = OTHER_FILES.min(limit / 4);
    let share = limit.saturating_sub(other + segment_files as u64);
    usize::try_from(share).unwrap_or(usize::MAX).max(1)
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    /// `max.connections` (or the listener's own).
    Total { limit: usize },
    /// The share of the open-file limit left to connections.
    Files { limit: usize },
    /// `max.connections.per.ip` or the address's override.
    PerIp { ip: IpAddr, limit: usize },
}

impl Refusal {
    fn reason(&self) -> CloseReason {
        match self {
            Refusal::Total { .. } | Refusal::Files { .. } => CloseReason::Limit,
            Refusal::PerIp { .. } => CloseReason::IpLimit,
        }
    }
}

/// Connections open, in all and by listener and address.
#[derive(Debug)]
struct Limits {
    max_total: usize,
    max_files: usize,
    per_listener_max: Vec<usize>,
    settings: ConnectionSettings,
    total: usize,
    per_listener: Vec<usize>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Limits {
    fn new(settings: &ConnectionSettings, per_listener_max: Vec<usize>, max_files: usize) -> Self {
        Limits {
            max_total: settings.max_connections,
            max_files,
            per_listener: vec![0; per_listener_max.len()],
            per_listener_max,
            settings: settings.clone(),
            total: 0,
            per_ip: HashMap::new(),
        }
    }

    /// Counts a new connection in, or says which limit it is over. The slot counts it out
    /// when dropped, however the connection ends.
    fn admit(this: &Arc<Mutex<Self>>, listener: usize, ip: IpAddr) -> Result<Slot, Refusal> {
        let ip = canonical(ip);
        let mut l = this.lock().unwrap_or_else(|p| p.into_inner());
        if l.total >= l.max_total {
            return Err(Refusal::Total { limit: l.max_total });
        }
        let on_listener = l.per_listener.get(listener).copied().unwrap_or(0);
        let listener_max = l
            .per_listener_max
            .get(listener)
            .copied()
            .unwrap_or(usize::MAX);
        if on_listener >= listener_max {
            return Err(Refusal::Total {
                limit: listener_max,
            });
        }
        if l.total >= l.max_files {
            return Err(Refusal::Files { limit: l.max_files });
        }
        let from_ip = l.per_ip.get(&ip).copied().unwrap_or(0);
        let ip_max = l.settings.limit_for(ip);
        if from_ip >= ip_max {
            return Err(Refusal::PerIp { ip, limit: ip_max });
        }
        l.total += 1;
        if let Some(n) = l.per_listener.get_mut(listener) {
            *n += 1;
        }
        *l.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Slot {
            limits: this.clone(),
            listener,
            ip,
        })
    }

    fn release(&mut self, listener: usize, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_listener.get_mut(listener) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

/// One admitted connection's place in the counts.
struct Slot {
    limits: Arc<Mutex<Limits>>,
    listener: usize,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut l = self.limits.lock().unwrap_or_else(|p| p.into_inner());
        l.release(self.listener, self.ip);
    }
}

/// Refusals are logged at most once a second, with how many were not logged since: a flood
/// of connections does not flood the log.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    fn refused(&mut self, refusal: &Refusal, peer: std::net::SocketAddr, listener: &str) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            self.unlogged += 1;
            return;
        }
        self.last = Some(Instant::now());
        let also = std::mem::take(&mut self.unlogged);
        match refusal {
            Refusal::Total { limit } => tracing::warn!(
                %peer, listener, limit, also_refused_since_last_line = also,
                "max.connections reached: closing the newest connection"
            ),
            Refusal::Files { limit } => tracing::warn!(
                %peer, listener, limit, also_refused_since_last_line = also,
                "connections would leave too few open files for segment files and the rest \
                 (see the open-file limit): closing the newest connection"
            ),
            Refusal::PerIp { ip, limit } => tracing::warn!(
                %peer, listener, limit, also_refused_since_last_line = also,
                "address {ip} already has max.connections.per.ip connections: closing the newest connection"
            ),
        }
    }
}

/// The next connection on any listener, with the listener's index. `accept` is
/// cancel-safe, so the futures of the listeners that lost the race are simply dropped.
async fn accept_any(
    listeners: &[Bound],
) -> (
    std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)>,
    usize,
) {
    if listeners.is_empty() {
        return std::future::pending().await;
    }
    let accepts = listeners
        .iter()
        .map(|b| Box::pin(b.socket.accept()))
        .collect::<Vec<_>>();
    let (result, index, _) = futures::future::select_all(accepts).await;
    (result, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(total: usize, per_ip: usize, overrides: &[(&str, usize)]) -> ConnectionSettings {
        ConnectionSettings {
            max_connections: total,
            max_per_ip: per_ip,
            per_ip_overrides: overrides
                .iter()
                .map(|(ip, n)| (ip.parse().expect("ip"), *n))
                .collect(),
            ..Default::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_connection_over_a_limit_is_refused_and_a_closed_one_frees_its_place() {
        let limits = Arc::new(Mutex::new(Limits::new(
            &settings(3, 2, &[("10.0.0.9", 0)]),
            vec![usize::MAX],
            usize::MAX,
        )));
        let a1 = Limits::admit(&limits, 0, ip("10.0.0.1")).expect("first");
        let _a2 = Limits::admit(&limits, 0, ip("10.0.0.1")).expect("second");
        assert_eq!(
            Limits::admit(&limits, 0, ip("10.0.0.1")).err(),
            Some(Refusal::PerIp {
                ip: ip("10.0.0.1"),
                limit: 2
            })
        );
        assert!(matches!(
            Limits::admit(&limits, 0, ip("10.0.0.9")),
            Err(Refusal::PerIp { limit: 0, .. })
        ));
        let _b1 = Limits::admit(&limits, 0, ip("10.0.0.2")).expect("other address");
        assert_eq!(
            Limits::admit(&limits, 0, ip("10.0.0.3")).err(),
            Some(Refusal::Total { limit: 3 })
        );
        drop(a1);
        let _a3 = Limits::admit(&limits, 0, ip("::ffff:10.0.0.1")).expect("freed place");
        let l = limits.lock().expect("lock");
        assert_eq!(l.total, 3);
        assert_eq!(l.per_ip[&ip("10.0.0.1")], 2);
    }

    #[test]
    fn listener_and_open_file_limits_apply_too() {
        let limits = Arc::new(Mutex::new(Limits::new(
            &settings(100, 100, &[]),
            vec![1, usize::MAX],
            2,
        )));
        let _a = Limits::admit(&limits, 0, ip("10.0.0.1")).expect("first");
        assert_eq!(
            Limits::admit(&limits, 0, ip("10.0.0.2")).err(),
            Some(Refusal::Total { limit: 1 })
        );
        let _b = Limits::admit(&limits, 1, ip("10.0.0.2")).expect("other listener");
        assert_eq!(
            Limits::admit(&limits, 1, ip("10.0.0.3")).err(),
            Some(Refusal::Files { limit: 2 })
        );
    }
}
