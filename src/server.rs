//! The listener: accepts connections up to a limit and, on shutdown, stops accepting, lets
//! each connection finish the request it is handling, then flushes every log.
//!
//! No files of its own; the broker flushes its logs at the end of a clean shutdown.

use crate::broker::Broker;
use crate::security::Listener;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// How long shutdown waits for connections to finish their in-flight requests.
const DRAIN: Duration = Duration::from_secs(10);

pub async fn run(listener: TcpListener, broker: Broker, shutdown: impl Future) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut listener_info = Listener::plaintext(&broker.advertised_host, broker.advertised_port);
    // The one bound listener takes the name and protocol of the first `listeners` entry
    // when that protocol needs no TLS (PLAINTEXT or SASL_PLAINTEXT).
    if let Some((name, protocol)) =
        crate::security::sasl::configured_listeners(&broker.config.props)
            .into_iter()
            .next()
            .filter(|(_, p)| !p.uses_tls())
    {
        (listener_info.name, listener_info.protocol) = (name, protocol);
    }
    let listener_info = Arc::new(listener_info);
    // Bounds the number of connections (and so of per-connection buffers).
    let limit = Arc::new(Semaphore::new(broker.config.max_connections.max(1)));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(10);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(10);
                    let Ok(permit) = limit.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "connection limit reached; refusing");
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let stop = stop_rx.clone();
                    let listener_info = listener_info.clone();
                    connections.spawn(async move {
                        crate::connection::serve_tcp(broker, stream, peer, listener_info, stop).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed");
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
    drop(listener);
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
