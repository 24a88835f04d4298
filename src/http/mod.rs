//! The HTTP listener beside the Kafka listeners: `/health`, `/ready`, `/metrics` and the
//! console.
//!
//! It runs on the same runtime but never on a Kafka connection's path: a scrape reads
//! atomics, takes each partition's lock for as long as reading its sizes and closed
//! segments takes and the group coordinator's for as long as copying the groups' offsets
//! takes, and a slow HTTP client only holds its own task.

pub mod console;
pub mod metrics;

use crate::broker::Broker;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the HTTP side knows of the broker: nothing until recovery is done.
pub struct HttpState {
    ready: AtomicBool,
    broker: OnceLock<Broker>,
    pub(crate) registry: Registry,
    /// When the process started, for the console's uptime.
    pub(crate) started: std::time::Instant,
    /// The console's throughput and lag history, filled by its sampler.
    pub(crate) history: console::history::History,
}

impl HttpState {
    pub fn new() -> Arc<Self> {
        Arc::new_cyclic(|weak: &std::sync::Weak<HttpState>| {
            let mut registry = Registry::default();
            metrics::register(&mut registry, weak.clone());
            HttpState {
                ready: AtomicBool::new(false),
                broker: OnceLock::new(),
                registry,
                started: std::time::Instant::now(),
                history: console::history::History::default(),
            }
        })
    }

    /// The broker the console and `/metrics` show, from when it serves.
    pub fn set_broker(&self, broker: Broker) {
        let _ = self.broker.set(broker);
    }

    /// Recovery is done (every partition's log is open) and the Kafka listeners accept
    /// connections.
    pub fn set_ready(&self, broker: Broker) {
        self.set_broker(broker);
        self.ready.store(true, Ordering::Release);
    }

    pub fn broker(&self) -> Option<&Broker> {
        self.broker.get()
    }
}

/// `--http-listen`: an address, or `none` for no HTTP listener.
pub async fn bind(address: &str) -> anyhow::Result<Option<TcpListener>> {
    if address.eq_ignore_ascii_case("none") || address.is_empty() {
        return Ok(None);
    }
    let socket = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("binding the HTTP listener on {address}: {e}"))?;
    tracing::info!(bound = %socket.local_addr()?, "HTTP listening (console, /metrics, /health, /ready)");
    Ok(Some(socket))
}

/// Serves until `shutdown` turns true.
pub fn spawn(
    socket: TcpListener,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = router(state.clone());
    tokio::spawn(console::history::run(state, shutdown.clone()));
    tokio::spawn(async move {
        let stop = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(socket, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "the HTTP listener stopped");
        }
    })
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics::scrape))
        .merge(console::router())
        .with_state(state)
}

async fn health() -> &'static str {
    "ok\n"
}

async fn ready(State(state): State<Arc<HttpState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "recovering\n").into_response()
    }
}
