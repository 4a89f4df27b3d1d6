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

use crate::metrics::Metrics;
use crate::store::Store;

pub struct OpsState {
    pub journal: Store,
    pub metrics: Metrics,
    /// Set when shutdown begins, so a load balancer stops sending work.
    pub stopping: Arc<AtomicBool>,
    pub pool: Option<Arc<crate::github::Pool>>,
    pub actions: Option<Arc<crate::sinks::actions::ActionsSink>>,
    /// Recovery walks run: export the time since each source's last one.
    pub recovery: bool,
    /// Completeness over the redelivery window, exported per source.
    pub watch: Arc<crate::problems::Watch>,
    /// The request body budget, for its gauges.
    pub bodies: crate::server::body::Budget,
    /// Configured sinks: jobs of any other are orphaned.
    pub sinks: crate::live::Live<Vec<String>>,
}

/// `/healthz` and `/readyz`, for every listener a load balancer checks.
pub fn health(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// `/metrics`, beside the admin UI.
pub fn metrics(state: Arc<OpsState>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(state)
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
    let health = s.journal.health();
    if health != crate::store::Health::Writable {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": health.describe() })),
        )
            .into_response();
    }
    axum::Json(json!({ "status": "ready" })).into_response()
}

async fn render(State(s): State<Arc<OpsState>>) -> Response {
    let c = &s.metrics.connections;
    c.body_budget_in_use.set(s.bodies.in_use() as i64);
    c.body_budget.set(s.bodies.bytes() as i64);
    let g = &s.metrics.journal_gauges;
    g.size_bytes.set(s.journal.size_bytes() as i64);
    g.writable.set(s.journal.is_writable() as i64);
    let now = crate::clock::now_ms();
    let backlog = s.journal.backlog(now).await;
    match backlog {
        Ok(b) => {
            let sg = &s.metrics.sink_gauges;
            // Sinks dropped since the last scrape must not linger.
            sg.orphaned.clear();
            let configured = s.sinks.get();
            for (sink, pending, _, dead) in &b.per_sink {
                if !configured.contains(sink) && pending + dead > 0 {
                    sg.orphaned
                        .get_or_create(&crate::scheduler::metrics::SinkLabel { sink: sink.clone() })
                        .set(pending + dead);
                }
            }
            for (sink, pending, oldest, dead) in b.per_sink {
                let label = crate::scheduler::metrics::SinkLabel { sink };
                sg.pending.get_or_create(&label).set(pending);
                sg.dead.get_or_create(&label).set(dead);
                let lag = oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
                sg.lag_seconds.get_or_create(&label).set(lag);
            }
            sg.partitions_paused.set(b.partitions_paused);
            let open = s.journal.breakers().await.unwrap_or_default();
            for sink in configured.iter() {
                let is_open = open.iter().any(|(k, _)| k == sink);
                sg.breaker_open
                    .get_or_create(&crate::scheduler::metrics::SinkLabel { sink: sink.clone() })
                    .set(i64::from(is_open));
            }
            for sink in configured.iter() {
                let held = b
                    .held_by_dead
                    .iter()
                    .find(|(k, _)| k == sink)
                    .map_or(0, |(_, n)| *n);
                sg.held_by_dead
                    .get_or_create(&crate::scheduler::metrics::SinkLabel { sink: sink.clone() })
                    .set(held);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read the backlog"),
    }
    if let Some(pool) = &s.pool {
        pool.export_budgets();
    }
    if s.recovery {
        match s.journal.last_complete().await {
            Ok(walks) => {
                for (source, at) in walks {
                    let age = (now - at).max(0) as f64 / 1000.0;
                    let label = crate::recovery::metrics::SourceLabel { source };
                    s.metrics
                        .recovery
                        .since_complete
                        .get_or_create(&label)
                        .set(age);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot read recovery walks"),
        }
    }
    match s.watch.completeness().await {
        Ok(Some(all)) => s.metrics.recovery.set_completeness(&all, now),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read completeness"),
    }
    let actions = match &s.actions {
        Some(a) => match a.exposition(&s.journal).await {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the Actions state");
                None
            }
        },
        None => None,
    };
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(actions.map(|a| Box::new(a) as _)),
    )
        .into_response()
}
