//! Per-client accounting: Prometheus counters at once, and per-minute rows
//! in the journal (flushed every few seconds through the group-commit
//! writer) for `gatehouse clients list` and the admin UI. From those rows
//! (every replica's) and what this process has not flushed yet, the units
//! each client spent upstream in the last hour, for its quota.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clients::Usage;
use crate::gateway::metrics::{
    ClientLabel, ClientOutcomeLabels, ClientRouteLabels, ClientRuleLabels, ClientStatusLabels,
    CredentialLabel, GatewayMetrics, OutcomeLabel,
};
use crate::store::Store;
use crate::store::clients::UsageLine;

/// Usage rows are kept this long.
const KEEP_MINUTES: i64 = 7 * 24 * 60;
/// Usage by route, owner and credential: 30 days of "incidents avoided".
const KEEP_LINE_MINUTES: i64 = 31 * 24 * 60;

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
    /// GitHub's route template (`GET /repos/{owner}/{repo}`).
    pub route: &'a str,
    /// Whose budget paid (or would have).
    pub owner: Option<&'a str>,
    /// The pool credential that answered; None for hits and refusals.
    pub credential: Option<&'a str>,
    /// The rule that refused it before it reached GitHub.
    pub refused_by: Option<&'static str>,
    pub status: u16,
    pub outcome: Outcome,
    pub spent: u64,
    pub saved: u64,
    pub took: Duration,
}

/// (minute, client, owner, route, credential, refused_by).
type LineKey = (i64, String, String, String, String, &'static str);

pub struct Recorder {
    metrics: GatewayMetrics,
    journal: Store,
    clock: Arc<dyn crate::clock::Clock>,
    pending: Mutex<HashMap<(String, i64), Usage>>,
    /// (requests, spent, saved) per line, not yet flushed.
    lines: Mutex<HashMap<LineKey, (i64, i64, i64)>>,
    /// Units per client and minute as last read back from the journal.
    flushed: Mutex<HashMap<String, BTreeMap<i64, u64>>>,
    /// Units flushed but not yet read back.
    in_transit: Mutex<HashMap<(String, i64), u64>>,
    free: AtomicU64,
    cacheable: AtomicU64,
}

/// A quota's window, in minutes.
const HOUR_MINUTES: i64 = 60;

impl Recorder {
    pub fn new(
        metrics: GatewayMetrics,
        journal: Store,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Recorder {
        Recorder {
            metrics,
            journal,
            clock,
            pending: Mutex::default(),
            lines: Mutex::default(),
            flushed: Mutex::default(),
            in_transit: Mutex::default(),
            free: AtomicU64::new(0),
            cacheable: AtomicU64::new(0),
        }
    }

    /// Now, as this recorder's clock tells it (quotas slide with it).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Units `client` spent upstream in the hour before now (minutes
    /// whole), and the minute its oldest counted units leave the hour.
    pub fn spent_in_hour(&self, client: &str) -> (u64, Option<i64>) {
        let now_minute = self.clock.now_ms() / 60_000;
        let first = now_minute - HOUR_MINUTES + 1;
        let mut by_minute: BTreeMap<i64, u64> = BTreeMap::new();
        if let Some(m) = self.flushed.lock().expect("usage lock").get(client) {
            for (minute, units) in m.range(first..) {
                *by_minute.entry(*minute).or_default() += units;
            }
        }
        for ((c, minute), units) in self.in_transit.lock().expect("usage lock").iter() {
            if c == client && *minute >= first {
                *by_minute.entry(*minute).or_default() += units;
            }
        }
        for ((c, minute), u) in self.pending.lock().expect("usage lock").iter() {
            if c == client && *minute >= first && u.units_spent > 0 {
                *by_minute.entry(*minute).or_default() += u.units_spent as u64;
            }
        }
        let oldest = by_minute.keys().next().copied();
        (by_minute.values().sum(), oldest)
    }

    /// Reads every replica's flushed units of the last hour back (after a
    /// flush, and at start).
    pub async fn read_back(&self) {
        let since = self.clock.now_ms() / 60_000 - HOUR_MINUTES;
        match self.journal.units_by_minute(since).await {
            Ok(rows) => {
                let mut m: HashMap<String, BTreeMap<i64, u64>> = HashMap::new();
                for (client, minute, units) in rows {
                    m.entry(client)
                        .or_default()
                        .insert(minute, units.max(0) as u64);
                }
                // One step: what was in transit is in what was read.
                let mut flushed = self.flushed.lock().expect("usage lock");
                *flushed = m;
                self.in_transit.lock().expect("usage lock").clear();
            }
            Err(e) => tracing::warn!(error = %e, "gateway: cannot read client usage back"),
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
        let route = ClientRouteLabels {
            client: client.clone(),
            route: s.route.to_string(),
        };
        m.route_requests.get_or_create(&route).inc();
        if s.spent > 0 {
            m.route_spent.get_or_create(&route).inc_by(s.spent);
        }
        if s.saved > 0 {
            m.route_saved.get_or_create(&route).inc_by(s.saved);
        }
        if let Some(c) = s.credential {
            let label = CredentialLabel {
                credential: c.to_string(),
            };
            if s.spent > 0 {
                m.credential_spent.get_or_create(&label).inc_by(s.spent);
            }
            // A 304 the credential got: a unit it did not spend.
            if s.saved > 0 {
                m.credential_saved.get_or_create(&label).inc_by(s.saved);
            }
        }
        if let Some(rule) = s.refused_by {
            m.refusals
                .get_or_create(&ClientRuleLabels {
                    client: client.clone(),
                    rule: rule.to_string(),
                })
                .inc();
        }
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
        let minute = self.clock.now_ms() / 60_000;
        {
            let key = (
                minute,
                client.clone(),
                s.owner.unwrap_or("").to_string(),
                route.route,
                s.credential.unwrap_or("").to_string(),
                s.refused_by.unwrap_or(""),
            );
            let mut lines = self.lines.lock().expect("usage lock");
            let l = lines.entry(key).or_default();
            l.0 += 1;
            l.1 += s.spent as i64;
            l.2 += s.saved as i64;
        }
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
        let rows: Vec<((String, i64), Usage)> = {
            let mut pending = self.pending.lock().expect("usage lock");
            let mut in_transit = self.in_transit.lock().expect("usage lock");
            let rows: Vec<_> = pending.drain().collect();
            for ((client, minute), u) in &rows {
                if u.units_spent > 0 {
                    *in_transit.entry((client.clone(), *minute)).or_default() +=
                        u.units_spent as u64;
                }
            }
            rows
        };
        let lines: Vec<UsageLine> = self
            .lines
            .lock()
            .expect("usage lock")
            .drain()
            .map(
                |((minute, client, owner, route, credential, refused_by), (n, spent, saved))| {
                    UsageLine {
                        minute,
                        client,
                        owner,
                        route,
                        credential,
                        refused_by: refused_by.to_string(),
                        requests: n,
                        units_spent: spent,
                        units_saved: saved,
                    }
                },
            )
            .collect();
        if !rows.is_empty() || !lines.is_empty() {
            let now_minute = self.clock.now_ms() / 60_000;
            let result = self
                .journal
                .add_usage(
                    rows,
                    lines,
                    now_minute - KEEP_MINUTES,
                    now_minute - KEEP_LINE_MINUTES,
                )
                .await;
            if let Err(e) = result {
                // Lost rows only shorten `clients list`; the counters have
                // them (and quotas, until the next read back).
                tracing::warn!(error = %e, "gateway: cannot record client usage");
                return;
            }
        }
        self.read_back().await;
    }
}
