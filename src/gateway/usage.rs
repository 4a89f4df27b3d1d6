//! Per-client accounting: Prometheus counters at once, and per-minute rows
//! in the journal (flushed every few seconds through the group-commit
//! writer) for `gatehouse clients list` and the admin UI.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::clients::Usage;
use crate::gateway::metrics::{
    ClientLabel, ClientOutcomeLabels, ClientStatusLabels, GatewayMetrics, OutcomeLabel,
};
use crate::store::Store;

/// Usage rows are kept this long.
const KEEP_MINUTES: i64 = 7 * 24 * 60;

/// How a request was answered (`X-Gatehouse-Cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From the cache, without asking GitHub (fresh window, or a copy of a
    /// concurrent identical request's answer).
    Hit,
    /// GitHub answered 304: the cached answer was served, for free.
    Revalidated,
    /// GitHub answered in full.
    Miss,
    /// Not cacheable (writes, GraphQL, `no-store`): passed through.
    Bypass,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Revalidated => "revalidated",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
        }
    }
}

/// One answered request, as accounted.
pub struct Served<'a> {
    pub client: &'a str,
    pub status: u16,
    pub outcome: Outcome,
    pub spent: u64,
    pub saved: u64,
    pub took: Duration,
}

pub struct Recorder {
    metrics: GatewayMetrics,
    journal: Store,
    pending: Mutex<HashMap<(String, i64), Usage>>,
    free: AtomicU64,
    cacheable: AtomicU64,
}

impl Recorder {
    pub fn new(metrics: GatewayMetrics, journal: Store) -> Recorder {
        Recorder {
            metrics,
            journal,
            pending: Mutex::default(),
            free: AtomicU64::new(0),
            cacheable: AtomicU64::new(0),
        }
    }

    pub fn record(&self, s: Served<'_>) {
        let m = &self.metrics;
        let client = s.client.to_string();
        m.requests
            .get_or_create(&ClientStatusLabels {
                client: client.clone(),
                status: s.status.to_string(),
            })
            .inc();
        m.cache
            .get_or_create(&ClientOutcomeLabels {
                client: client.clone(),
                outcome: s.outcome.as_str().to_string(),
            })
            .inc();
        let label = ClientLabel {
            client: client.clone(),
        };
        m.units_spent.get_or_create(&label).inc_by(s.spent);
        m.units_saved.get_or_create(&label).inc_by(s.saved);
        m.duration
            .get_or_create(&OutcomeLabel {
                outcome: s.outcome.as_str().to_string(),
            })
            .observe(s.took.as_secs_f64());
        if s.outcome != Outcome::Bypass {
            let cacheable = self.cacheable.fetch_add(1, Ordering::Relaxed) + 1;
            let free = if s.outcome == Outcome::Miss {
                self.free.load(Ordering::Relaxed)
            } else {
                self.free.fetch_add(1, Ordering::Relaxed) + 1
            };
            m.hit_ratio.set(free as f64 / cacheable as f64);
        }
        let minute = crate::clock::now_ms() / 60_000;
        let mut pending = self.pending.lock().expect("usage lock");
        let u = pending.entry((client, minute)).or_default();
        u.requests += 1;
        match s.outcome {
            Outcome::Hit => u.hits += 1,
            Outcome::Revalidated => u.revalidated += 1,
            Outcome::Miss => u.misses += 1,
            Outcome::Bypass => u.bypassed += 1,
        }
        u.units_spent += s.spent as i64;
        u.units_saved += s.saved as i64;
    }

    /// Adds the pending counts to the journal's per-minute rows.
    pub async fn flush(&self) {
        let rows: Vec<((String, i64), Usage)> =
            self.pending.lock().expect("usage lock").drain().collect();
        if rows.is_empty() {
            return;
        }
        let oldest = crate::clock::now_ms() / 60_000 - KEEP_MINUTES;
        let result = self.journal.add_usage(rows, oldest).await;
        if let Err(e) = result {
            // Lost rows only shorten `clients list`; the counters have them.
            tracing::warn!(error = %e, "gateway: cannot record client usage");
        }
    }
}
