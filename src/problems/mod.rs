//! Open problems: each condition an operator must act on, as one line
//! with its reason and the admin page that acts on it; nothing when all is
//! well. The overview leads with them, the server reports them for
//! `gatehouse status` and posts their opening and clearing to `[[notify]]`.
//! They follow the shipped alert rules (deploy/prometheus), with the same
//! default thresholds, for operators without Prometheus; the rules that
//! need a rate over time (ingest and gateway 5xx ratios, a scrape that
//! stopped) are Prometheus's alone.

pub mod notify;
pub mod report;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::{Clock, span};
use crate::config::{Config, ProblemsConfig};
use crate::github::Pool;
use crate::github::budget::Resource;
use crate::store::recovery::Completeness;
use crate::store::{Health, Store, StoreError};

/// A secondary limit or a spent budget seen this recently is still news.
const RECENT_MS: i64 = 10 * 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Webhooks or API calls fail now.
    Critical,
    /// Work waits, or will fail if nobody acts.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable while the condition lasts (`dead_letters:ROUTE`): what opens
    /// and clears, whatever the numbers in `text` do meanwhile.
    pub key: String,
    pub severity: Severity,
    /// One line: what is wrong, why, and what to do.
    pub text: String,
    /// The admin page that acts on it.
    pub link: String,
}

/// Recovery as the problems see it: the sources walked, over which window.
#[derive(Debug, Clone)]
pub struct RecoveryWatch {
    pub sources: Vec<String>,
    pub window_hours: u64,
}

impl RecoveryWatch {
    /// The sources `config` walks, over its redelivery window (or
    /// `lookback_hours`), when recovery runs at all.
    pub fn of(config: &Config) -> Option<RecoveryWatch> {
        let sources: Vec<String> = crate::recovery::Source::all(config)
            .iter()
            .map(|s| s.name())
            .collect();
        let runs = config.recovery.enabled
            && !sources.is_empty()
            && (!config.github.apps.is_empty() || !config.github.tokens.is_empty());
        runs.then(|| RecoveryWatch {
            sources,
            window_hours: config.recovery.lookback_hours.unwrap_or(
                u64::from(crate::retention::redelivery_window_days(
                    &config.github.api_url,
                )) * 24,
            ),
        })
    }

    pub fn window_ms(&self) -> i64 {
        self.window_hours as i64 * 3_600_000
    }
}

/// What the problems are read from.
pub struct Watch {
    pub store: Store,
    pub pool: Option<Arc<Pool>>,
    /// Configured routes.
    pub sinks: crate::live::Live<Vec<String>>,
    pub recovery: Option<RecoveryWatch>,
    /// The Actions metrics' stale horizon (None: no Actions metrics).
    pub actions_stale_ms: Option<i64>,
    pub thresholds: crate::live::Live<ProblemsConfig>,
    pub clock: Arc<dyn Clock>,
    /// When this process started: a source never walked is overdue only
    /// after half a window of running.
    pub started_ms: i64,
}

impl Watch {
    pub fn new(
        config: &Config,
        store: Store,
        pool: Option<Arc<Pool>>,
        clock: Arc<dyn Clock>,
    ) -> Watch {
        Watch {
            store,
            pool,
            sinks: crate::live::Live::new(crate::sinks::Catalog::new(config).names()),
            recovery: RecoveryWatch::of(config),
            actions_stale_ms: config
                .actions_metrics
                .enabled
                .then_some(config.actions_metrics.stale_after_secs as i64 * 1000),
            thresholds: crate::live::Live::new(config.problems.clone()),
            started_ms: clock.now_ms(),
            clock,
        }
    }

    /// Completeness over the redelivery window, per walked source (a
    /// source recovery does not walk is not counted), None without
    /// recovery.
    pub async fn completeness(&self) -> Result<Option<Vec<Completeness>>, StoreError> {
        let Some(r) = &self.recovery else {
            return Ok(None);
        };
        let all = self
            .store
            .completeness(self.clock.now_ms() - r.window_ms())
            .await?;
        Ok(Some(
            r.sources
                .iter()
                .map(|s| {
                    all.iter()
                        .find(|c| &c.source == s)
                        .cloned()
                        .unwrap_or_else(|| Completeness {
                            source: s.clone(),
                            ..Completeness::default()
                        })
                })
                .collect(),
        ))
    }

    /// Every open problem now, the most severe first. A part that cannot
    /// be read is a problem itself, not a silence.
    pub async fn gather(&self) -> Vec<Problem> {
        self.look().await.0
    }

    /// [`Watch::gather`], and the completeness reading the problems were
    /// judged on, for a caller that shows both (read once: it is the
    /// costly part).
    pub async fn look(&self) -> (Vec<Problem>, Result<Option<Vec<Completeness>>, StoreError>) {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        self.journal(&mut out);
        if let Err(e) = self.routes(now, &mut out).await {
            out.push(unreadable("routes", &e));
        }
        self.credentials(now, &mut out);
        let completeness = self.completeness().await;
        if let Err(e) = self.recovery(now, &completeness, &mut out).await {
            out.push(unreadable("recovery", &e));
        }
        if let Err(e) = self.actions(now, &mut out).await {
            out.push(unreadable("actions", &e));
        }
        out.sort_by_key(|p| p.severity != Severity::Critical);
        (out, completeness)
    }

    fn journal(&self, out: &mut Vec<Problem>) {
        let health = self.store.health();
        if health != Health::Writable {
            out.push(Problem {
                key: "journal".into(),
                severity: Severity::Critical,
                text: format!(
                    "The journal cannot be written ({}): webhooks are answered 503 until it can. Free disk space or fix the storage; GitHub's failed deliveries are recovered after.",
                    health.describe()
                ),
                link: "/admin/".into(),
            });
        }
    }

    async fn routes(&self, now: i64, out: &mut Vec<Problem>) -> Result<(), StoreError> {
        let t = self.thresholds.get();
        let states = self.store.route_states(&self.sinks.get(), now).await?;
        let backlog = self.store.backlog(now).await?;
        let breakers = self.store.breakers().await?;
        for r in &states {
            let route = &r.route;
            let waited = r.oldest_pending_ms.map(|o| now - o);
            let link = format!("/admin/partitions?sink={route}");
            if let Some((_, b)) = breakers.iter().find(|(s, _)| s == route) {
                out.push(Problem {
                    key: format!("breaker:{route}"),
                    severity: Severity::Critical,
                    text: format!(
                        "Route {route}'s consumer keeps failing: its circuit breaker has been open for {} and only a probe is sent. Check the consumer; it closes at the first success.",
                        span(now - b.opened_at_ms)
                    ),
                    link: link.clone(),
                });
            }
            if r.dead > 0 {
                out.push(Problem {
                    key: format!("dead_letters:{route}"),
                    severity: Severity::Warning,
                    text: format!(
                        "Route {route} has {} dead letter(s): deliveries that used up their attempts. Fix the consumer, then retry them.",
                        r.dead
                    ),
                    link: format!("/admin/deliveries?state=dead&route={route}"),
                });
            }
            if let Some((_, n)) = backlog.held_by_dead.iter().find(|(s, _)| s == route)
                && *n > 0
            {
                out.push(Problem {
                    key: format!("held_by_dead:{route}"),
                    severity: Severity::Warning,
                    text: format!(
                        "{n} partition(s) of route {route} wait behind a dead letter, in order (on_dead = \"hold\"): retry or skip it."
                    ),
                    link: link.clone(),
                });
            }
            let over = |secs: u64| waited.is_some_and(|w| w > secs as i64 * 1000);
            if (r.paused || r.partitions_paused > 0) && over(t.paused_secs) {
                let what = if r.paused {
                    "is paused by an operator".to_string()
                } else {
                    format!("has {} partition(s) paused", r.partitions_paused)
                };
                out.push(Problem {
                    key: format!("paused:{route}"),
                    severity: Severity::Warning,
                    text: format!(
                        "Route {route} {what} and its oldest pending delivery has waited {}: resume it, or see why its consumer asked to wait.",
                        span(waited.unwrap_or(0))
                    ),
                    link: link.clone(),
                });
            } else if r.configured && over(t.lag_secs) {
                out.push(Problem {
                    key: format!("lag:{route}"),
                    severity: Severity::Warning,
                    text: format!(
                        "Route {route} is behind: its oldest pending delivery has waited {} (over {}). See its partitions for what holds it.",
                        span(waited.unwrap_or(0)),
                        span(t.lag_secs as i64 * 1000)
                    ),
                    link,
                });
            }
        }
        Ok(())
    }

    fn credentials(&self, now: i64, out: &mut Vec<Problem>) {
        let Some(pool) = &self.pool else {
            return;
        };
        let recent = pool
            .last_exhausted_ms()
            .is_some_and(|t| now - t < RECENT_MS);
        let now_s = now / 1000;
        for c in pool.snapshot() {
            if c.paused {
                out.push(Problem {
                    key: format!("secondary:{}", c.id),
                    severity: Severity::Warning,
                    text: format!(
                        "GitHub credential {} is paused by a secondary rate limit: spread requests out (fewer concurrent writes, fewer searches).",
                        c.id
                    ),
                    link: "/admin/github".into(),
                });
            }
            let spent = c.budgets.iter().find(|(r, b)| {
                *r == Resource::Core && b.remaining <= pool.reserve() && b.reset > now_s
            });
            if let (true, Some((_, b))) = (recent, spent) {
                out.push(Problem {
                    key: format!("spent:{}", c.id),
                    severity: Severity::Critical,
                    text: format!(
                        "GitHub credential {} is spent ({} of {} left) until its reset in {}, and requests found no budget in the last 10 minutes: add a credential, or find the client spending it.",
                        c.id,
                        b.remaining,
                        b.limit,
                        span((b.reset - now_s) * 1000)
                    ),
                    link: "/admin/github".into(),
                });
            }
        }
    }

    async fn recovery(
        &self,
        now: i64,
        completeness: &Result<Option<Vec<Completeness>>, StoreError>,
        out: &mut Vec<Problem>,
    ) -> Result<(), StoreError> {
        let Some(r) = &self.recovery else {
            return Ok(());
        };
        let half = r.window_ms() / 2;
        let last = self.store.last_complete().await?;
        for source in &r.sources {
            let done = last.iter().find(|(s, _)| s == source).map(|(_, t)| *t);
            let since = done.unwrap_or(self.started_ms);
            if now - since > half {
                out.push(Problem {
                    key: format!("walk:{source}"),
                    severity: Severity::Warning,
                    text: format!(
                        "Recovery has not completely walked {source} {}: GitHub's {}h redelivery window closes on what it missed. See `gatehouse recovery status` for the last error.",
                        done.map_or("since this server started".into(), |t| format!("for {}", span(now - t))),
                        r.window_hours
                    ),
                    link: "/admin/".into(),
                });
            }
        }
        let objective = self.thresholds.get().completeness_objective;
        let all = match completeness {
            Ok(all) => all.as_deref().unwrap_or_default(),
            // Said as gather says any part it cannot read.
            Err(e) => {
                out.push(unreadable("recovery", e));
                return Ok(());
            }
        };
        for c in all {
            if c.missing > 0 && c.ratio() < objective {
                out.push(Problem {
                    key: format!("completeness:{}", c.source),
                    severity: Severity::Warning,
                    text: format!(
                        "{} of {} deliveries GitHub attempted from {} in the last {}h are not in the journal ({}, objective {}); the oldest since {}. Recovery asks GitHub again at each walk.",
                        c.missing,
                        c.attempted.max(c.missing),
                        c.source,
                        r.window_hours,
                        percent(c.ratio()),
                        percent(objective),
                        c.oldest_missing_ms.map_or("?".into(), |t| format!("{} ago", span(now - t)))
                    ),
                    link: "/admin/".into(),
                });
            }
        }
        Ok(())
    }

    async fn actions(&self, now: i64, out: &mut Vec<Problem>) -> Result<(), StoreError> {
        let Some(stale) = self.actions_stale_ms else {
            return Ok(());
        };
        let limit = self.thresholds.get().queued_secs as i64 * 1000;
        let (_, jobs) = self.store.active_workflows().await?;
        let mut stuck: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        for j in &jobs {
            let queued = j.rank() == crate::store::actions::QUEUED;
            if let (true, Some(created)) = (queued, j.created_at_ms)
                && now - created > limit
                && now - created <= stale
            {
                let e = stuck.entry(j.runs_on()).or_insert((0, now));
                e.0 += 1;
                e.1 = e.1.min(created);
            }
        }
        for (labels, (n, oldest)) in stuck {
            out.push(Problem {
                key: format!("queued:{labels}"),
                severity: Severity::Warning,
                text: format!(
                    "{n} Actions job(s) for runners [{labels}] have been queued for up to {} with no runner taking them: check that runners with these labels are online.",
                    span(now - oldest)
                ),
                link: "/admin/reports".into(),
            });
        }
        Ok(())
    }
}

fn unreadable(part: &str, e: &StoreError) -> Problem {
    Problem {
        key: format!("unreadable:{part}"),
        severity: Severity::Critical,
        text: format!("Cannot read the {part} state from the store: {e}"),
        link: "/admin/".into(),
    }
}

/// 0.99998 as "99.998%": as many digits as it takes to not round a
/// shortfall up to 100%.
pub fn percent(ratio: f64) -> String {
    if ratio >= 1.0 {
        return "100%".into();
    }
    for digits in 1..6 {
        let s = format!("{:.*}", digits, ratio * 100.0);
        if s != "100.0" && !s.starts_with("100.") {
            return format!("{}%", s.trim_end_matches('0').trim_end_matches('.'));
        }
    }
    "99.99999%".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shortfall_never_reads_as_a_hundred_percent() {
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.99998), "99.998%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.9999999), "99.99999%");
    }
}
