//! Operational endpoints: `/healthz` (alive), `/readyz` (journal writable,
//! not shutting down) and `/metrics` (Prometheus text).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::json;

use crate::journal::Journal;
use crate::metrics::Metrics;

pub struct OpsState {
    pub journal: Journal,
    pub metrics: Metrics,
    /// Set when shutdown begins, so a load balancer stops sending work.
    pub stopping: Arc<AtomicBool>,
}

pub fn router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(s): State<Arc<OpsState>>) -> Response {
    if s.stopping.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "stopping" })),
        )
            .into_response();
    }
    if !s.journal.is_writable() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "journal not writable" })),
        )
            .into_response();
    }
    axum::Json(json!({ "status": "ready" })).into_response()
}

async fn metrics(State(s): State<Arc<OpsState>>) -> Response {
    let g = &s.metrics.journal_gauges;
    g.size_bytes.set(s.journal.size_bytes() as i64);
    g.writable.set(s.journal.is_writable() as i64);
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}
