//! The web console at `/`: server-rendered pages over the broker's state, read-only.

use super::HttpState;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

pub(super) fn router() -> Router<Arc<HttpState>> {
    Router::new().route("/", get(index))
}

async fn index() -> &'static str {
    "strata: /metrics, /health, /ready\n"
}
