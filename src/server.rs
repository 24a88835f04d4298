//! The listeners: accept connections on every bound listener (TLS ones after their
//! handshake) up to one shared limit and, on shutdown, stop accepting, let each connection
//! finish the request it is handling, then flush every log.
//!
//! No files of its own; the broker flushes its logs at the end of a clean shutdown.

use crate::broker::Broker;
use crate::metrics::{CloseReason, METRICS};
use crate::security::tls::TlsServer;
use crate::security::{Listener, Session};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
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
    // Bounds the number of connections (and so of per-connection buffers).
    let limit = Arc::new(Semaphore::new(broker.config.max_connections.max(1)));
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
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, listener = %bound.listener.name,
                            "connection limit reached; refusing");
                        METRICS.closed(CloseReason::Limit);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let stop = stop_rx.clone();
                    let listener = bound.listener.clone();
                    let tls = bound.tls.clone();
                    connections.spawn(async move {
                        match tls {
                            None => crate::connection::serve_tcp(broker, stream, peer, listener, stop).await,
                            Some(tls) => {
                                let mut handshake_stop = stop.clone();
                                let accepted = tls.accept(stream, peer, &mut handshake_stop).await;
                                if accepted.is_none() {
                                    METRICS.closed(CloseReason::Tls);
                                }
                                if let Some((stream, principal)) = accepted {
                                    let mut session = Session::new(listener, peer);
                                    if let Some(p) = principal {
                                        session.principal = p;
                                    }
                                    let (rd, wr) = tokio::io::split(stream);
                                    crate::connection::serve(broker, rd, wr, session, stop).await;
                                }
                            }
                        }
                        drop(permit);
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
