//! The server's look at itself every `[problems] interval_secs`: gathers
//! the open problems, exports them as metrics, posts their changes to
//! `[[notify]]` (one replica at a time, under the `notify` duty), and
//! writes what `gatehouse status` prints to the store.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::notify::{Change, Notifier};
use super::{Problem, Severity, Watch};
use crate::duties::Duty;
use crate::shutdown;

/// What a server reports of itself (JSON in the store).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub version: String,
    /// The machine it runs on (`gatehouse reload` signals only its own).
    #[serde(default)]
    pub host: String,
    pub pid: u32,
    pub started_at_ms: i64,
    pub reported_at_ms: i64,
    /// The config file (None: the embedded default) and when it was read.
    pub config_file: Option<String>,
    pub config_loaded_at_ms: i64,
    /// The last reload (SIGHUP, `gatehouse reload`), if any.
    #[serde(default)]
    pub reload: Option<crate::reload::ReloadStatus>,
    /// What each listener serves, and where.
    pub listeners: Vec<(String, String)>,
    /// The journal's size on disk now, and its growth per day since this
    /// server started (None in its first minute).
    #[serde(default)]
    pub journal_bytes: u64,
    #[serde(default)]
    pub journal_growth_per_day: Option<i64>,
    /// Credential budgets: (credential, remaining, limit, reset epoch s).
    pub budgets: Vec<(String, u64, u64, i64)>,
    pub problems: Vec<Problem>,
    /// The problems last notified (by the `notify` duty holder): the next
    /// holder starts from them, so a restart does not notify again.
    #[serde(default)]
    pub notified: Option<Vec<Problem>>,
}

impl Report {
    /// Every replica's last report, newest first, with when it was
    /// written, as (holder, at, report); one that does not parse (an
    /// older release's) is left out.
    pub async fn all(
        store: &crate::store::Store,
    ) -> Result<Vec<(String, i64, Report)>, crate::store::StoreError> {
        Ok(store
            .replica_reports()
            .await?
            .into_iter()
            .filter_map(|(holder, at, body)| Some((holder, at, serde_json::from_str(&body).ok()?)))
            .collect())
    }
}

/// What this part counts. Registered by this part.
#[derive(Clone, Default)]
pub struct ProblemMetrics {
    pub open: Family<SeverityLabel, Gauge>,
    pub notifications: Family<ResultLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeverityLabel {
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

impl ProblemMetrics {
    pub fn register(r: &mut Registry) -> ProblemMetrics {
        let me = ProblemMetrics::default();
        r.register(
            "problems_open",
            "Open problems (the overview's list), by severity",
            me.open.clone(),
        );
        r.register(
            "notifications",
            "Problem notifications to [[notify]] receivers, by result (sent, failed, held_back)",
            me.notifications.clone(),
        );
        me
    }
}

/// Facts about this process the report carries.
#[derive(Debug, Clone)]
pub struct Facts {
    pub config_file: Option<String>,
    pub listeners: Vec<(String, String)>,
    /// Where notification links point.
    pub admin_base: String,
}

pub struct Reporter {
    pub watch: Arc<Watch>,
    pub notifiers: Vec<Notifier>,
    pub duty: Duty,
    pub holder: Arc<str>,
    /// When the running config was read, and the last reload.
    pub reloader: Arc<crate::reload::Reloader>,
    pub facts: Facts,
    pub metrics: ProblemMetrics,
}

impl Reporter {
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let started = self.watch.started_ms;
        let size_at_start = self.watch.store.size_bytes();
        // None until this replica holds the notify duty and knows what was
        // notified before.
        let mut notified: Option<Vec<Problem>> = None;
        loop {
            let every = Duration::from_secs(self.watch.thresholds.get().interval_secs.max(1));
            let problems = self.watch.gather().await;
            let now = self.watch.clock.now_ms();
            for severity in [Severity::Critical, Severity::Warning] {
                let n = problems.iter().filter(|p| p.severity == severity).count();
                self.metrics
                    .open
                    .get_or_create(&SeverityLabel {
                        severity: format!("{severity:?}").to_lowercase(),
                    })
                    .set(n as i64);
            }
            if !self.notifiers.is_empty() {
                notified = self.notify(notified, &problems, now).await;
            }
            let report = Report {
                version: env!("CARGO_PKG_VERSION").into(),
                host: hostname(),
                pid: std::process::id(),
                started_at_ms: started,
                reported_at_ms: now,
                config_file: self.facts.config_file.clone(),
                config_loaded_at_ms: self.reloader.loaded_at_ms(),
                reload: self.reloader.last(),
                listeners: self.facts.listeners.clone(),
                journal_bytes: self.watch.store.size_bytes(),
                journal_growth_per_day: growth(
                    size_at_start,
                    self.watch.store.size_bytes(),
                    now - started,
                ),
                budgets: budgets(&self.watch),
                problems,
                notified: notified.clone(),
            };
            let body = serde_json::to_string(&report).expect("a report serializes");
            if let Err(e) = self.watch.store.report(&self.holder, body, now).await {
                tracing::debug!(error = %e, "status report not recorded");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                // A reload is reported at once (`gatehouse reload` waits).
                _ = self.reloader.reloaded.notified() => {}
                _ = shutdown::requested(&mut stop) => return,
            }
        }
    }

    /// Posts what changed since the last notified state, if this replica
    /// holds the duty; returns the state notified now.
    async fn notify(
        &mut self,
        notified: Option<Vec<Problem>>,
        problems: &[Problem],
        now: i64,
    ) -> Option<Vec<Problem>> {
        if !self.duty.mine().await {
            return None;
        }
        let before = match notified {
            Some(b) => b,
            None => self.last_notified().await,
        };
        let changes = Change::between(&before, problems);
        for n in &mut self.notifiers {
            n.queue(&changes, now);
            let sent = n.flush(now, &self.facts.admin_base).await;
            for (result, count) in [
                ("sent", sent.sent),
                ("failed", sent.failed),
                ("held_back", sent.held_back),
            ] {
                if count > 0 {
                    self.metrics
                        .notifications
                        .get_or_create(&ResultLabel {
                            result: result.into(),
                        })
                        .inc_by(count);
                }
            }
        }
        Some(problems.to_vec())
    }

    /// What the last duty holder notified (from the newest report that
    /// says), so taking the duty over notifies only what changed since.
    async fn last_notified(&self) -> Vec<Problem> {
        Report::all(&self.watch.store)
            .await
            .unwrap_or_default()
            .into_iter()
            .find_map(|(_, _, r)| r.notified)
            .unwrap_or_default()
    }
}

/// Bytes per day from a change over `elapsed_ms` (None under a minute:
/// too short to say).
fn growth(from: u64, to: u64, elapsed_ms: i64) -> Option<i64> {
    (elapsed_ms >= 60_000).then(|| (to as i64 - from as i64) * 86_400_000 / elapsed_ms)
}

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

fn budgets(w: &Watch) -> Vec<(String, u64, u64, i64)> {
    let Some(pool) = &w.pool else {
        return Vec::new();
    };
    pool.snapshot()
        .into_iter()
        .filter_map(|c| {
            let (_, b) = c
                .budgets
                .iter()
                .find(|(r, _)| *r == crate::github::budget::Resource::Core)?;
            Some((c.id.to_string(), b.remaining, b.limit, b.reset))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::growth;

    #[test]
    fn growth_is_per_day_and_not_guessed_in_the_first_minute() {
        assert_eq!(growth(1_000, 2_000, 30_000), None);
        assert_eq!(growth(1_000, 2_000, 3_600_000), Some(24_000));
        assert_eq!(growth(2_000, 1_000, 86_400_000), Some(-1_000));
    }
}
