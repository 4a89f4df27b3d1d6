//! Sinks: the consumers of the journal. Each `[[routes]]` entry is a
//! forward sink (`routes` decides which deliveries become its jobs and
//! `forward` replays them); `actions` is the built-in Actions metrics sink.

pub mod actions;
pub mod batch;
pub mod breaker;
pub mod forward;
pub mod routes;

use std::sync::Arc;

use crate::config::{Config, RouteConfig};
use crate::journal::DeliveryMeta;
use crate::scheduler::sink::Sink;

/// Headers GitHub sent that a consumer gets again (one delivery, or each
/// of a batch's, there less the signature).
fn forwarded(name: &str) -> bool {
    name.starts_with("x-github-")
        || name == "user-agent"
        || name == "content-type"
        || name == "x-hub-signature-256"
}

/// What the scheduler runs, by name: a forward sink per route (one HTTP
/// client, keeping up to `workers` idle connections per consumer host)
/// and the Actions metrics sink when it runs.
pub fn scheduled(
    routes: &[RouteConfig],
    actions: Option<Arc<actions::ActionsSink>>,
    workers: usize,
) -> Vec<(String, Arc<dyn Sink>)> {
    scheduled_with(routes, actions, workers, None)
}

/// The same, with the credential pool whose budgets `github_budget`
/// routes follow.
pub fn scheduled_with(
    routes: &[RouteConfig],
    actions: Option<Arc<actions::ActionsSink>>,
    workers: usize,
    pool: Option<Arc<crate::github::Pool>>,
) -> Vec<(String, Arc<dyn Sink>)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .build()
        .expect("HTTP client");
    let mut out: Vec<(String, Arc<dyn Sink>)> = routes
        .iter()
        .map(|r| {
            let mut sink = forward::ForwardSink::new(r.clone(), client.clone());
            if let (true, Some(pool)) = (r.github_budget, &pool) {
                sink = sink.following(pool.clone());
            }
            let sink: Arc<dyn Sink> = Arc::new(sink);
            (r.name.clone(), sink)
        })
        .collect();
    if let Some(a) = actions {
        out.push((actions::SINK.to_string(), a));
    }
    out
}

/// Which sinks exist and which deliveries each wants.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub routes: Vec<crate::config::RouteConfig>,
    pub actions: bool,
}

impl Catalog {
    pub fn new(config: &Config) -> Catalog {
        Catalog {
            routes: config.routes.clone(),
            actions: config.actions_metrics.enabled,
        }
    }

    /// The names of the sinks a delivery becomes a job for.
    pub fn sinks_for(&self, meta: &DeliveryMeta) -> Vec<String> {
        let mut sinks = routes::sinks_for(&self.routes, meta);
        if self.actions && actions::wants(meta) {
            sinks.push(actions::SINK.to_string());
        }
        sinks
    }

    /// Every configured sink's name: the routes, then the Actions sink.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.routes.iter().map(|r| r.name.clone()).collect();
        if self.actions {
            out.push(actions::SINK.to_string());
        }
        out
    }

    /// Whether a sink of this name is configured.
    pub fn has(&self, name: &str) -> bool {
        (name == actions::SINK && self.actions) || self.routes.iter().any(|r| r.name == name)
    }

    /// Whether sink `name` wants a delivery (false for an unknown sink).
    pub fn wants(&self, name: &str, meta: &DeliveryMeta) -> bool {
        if name == actions::SINK {
            return self.actions && actions::wants(meta);
        }
        self.routes
            .iter()
            .any(|r| r.name == name && routes::matches(r, meta))
    }
}
