//! Recovery: GitHub does not retry a failed webhook delivery, so
//! gatehouse walks each source's delivery log (an App's webhook, or a
//! repository or organisation hook from `[[github.hooks]]`) newest first,
//! back to the last complete walk or `lookback_hours`, keeps every GUID
//! that never succeeded there and that the journal lacks, and once the walk
//! is complete asks GitHub to redeliver them oldest first (by GitHub's
//! `delivered_at`, then its log id, then GUID), so a consumer gets
//! `issues.opened` before `issues.deleted`. Walks resume from their cursor after a crash; a GUID is asked
//! for at most once within `reask_after_secs` (the claim is committed
//! before the request goes out); failed requests are asked again on the
//! next walk; when the budget runs out the walk waits for the reset.

pub mod metrics;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use tokio::sync::watch;

use crate::clock;
use crate::config::{Config, Purpose, RecoveryConfig};
use crate::github::budget::{self, Resource};
use crate::github::{Answer, Pool, PoolError, Request};
use crate::recovery::metrics::{RecoveryMetrics, SourceLabel};
use crate::shutdown;
use crate::store::{Store, StoreError};

/// How often the server looks for a walk asked for from the CLI.
const TRIGGER_POLL: Duration = Duration::from_secs(5);

/// Tries per page of a delivery log when GitHub fails it (see `fetch_page`).
const PAGE_TRIES: u32 = 4;

/// A delivery log gatehouse can read and redeliver from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    App(i64),
    Hook {
        owner: String,
        repo: Option<String>,
        id: i64,
    },
}

impl Source {
    /// Every source the config names: each App that sends webhooks and
    /// may be spent on recovery, each `[[github.hooks]]`.
    pub fn all(config: &Config) -> Vec<Source> {
        let apps = config
            .github
            .apps
            .iter()
            .filter(|a| not_walked(a).is_none())
            .map(|a| Source::App(a.id));
        let hooks = config.github.hooks.iter().map(|h| Source::Hook {
            owner: h.owner.clone(),
            repo: h.repo.clone(),
            id: h.id,
        });
        apps.chain(hooks).collect()
    }

    /// The Apps recovery leaves alone, by source name, and why.
    pub fn skipped(config: &Config) -> Vec<(String, &'static str)> {
        config
            .github
            .apps
            .iter()
            .filter_map(|a| Some((Source::App(a.id).name(), not_walked(a)?)))
            .collect()
    }

    /// `app:ID`, `hook:OWNER/REPO:ID` or `hook:ORG:ID`.
    pub fn name(&self) -> String {
        match self {
            Source::App(id) => format!("app:{id}"),
            Source::Hook {
                owner,
                repo: Some(r),
                id,
            } => format!("hook:{owner}/{r}:{id}"),
            Source::Hook {
                owner,
                repo: None,
                id,
            } => format!("hook:{owner}:{id}"),
        }
    }

    fn log_path(&self) -> String {
        match self {
            Source::App(_) => "/app/hook/deliveries".into(),
            Source::Hook {
                owner,
                repo: Some(r),
                id,
            } => format!("/repos/{owner}/{r}/hooks/{id}/deliveries"),
            Source::Hook {
                owner,
                repo: None,
                id,
            } => format!("/orgs/{owner}/hooks/{id}/deliveries"),
        }
    }

    /// An App's log needs its JWT; a hook's, a credential for its owner.
    async fn send(&self, pool: &Pool, req: Request) -> Result<Answer, PoolError> {
        match self {
            Source::App(id) => pool.send_app(*id, req).await,
            Source::Hook { owner, .. } => pool.send_for(Purpose::Recovery, owner, req).await,
        }
    }
}

/// Why recovery does not walk an App's delivery log, if it does not.
fn not_walked(app: &crate::config::GithubAppConfig) -> Option<&'static str> {
    if !app.webhook {
        Some("webhook = false: the App sends no webhooks, so it has no delivery log to walk")
    } else if !app.purposes.contains(&Purpose::Recovery) {
        Some(
            "its purposes leave out recovery: its deliveries missed while down are not asked for again",
        )
    } else {
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error(transparent)]
    Journal(#[from] StoreError),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("GitHub answered {status} to {path}: {body}")]
    Status {
        status: StatusCode,
        path: String,
        body: String,
    },
    #[error("GitHub's delivery log is not what was expected: {0}")]
    Format(String),
    #[error("stopped")]
    Stopped,
}

/// One entry of GitHub's delivery log (the list form).
#[derive(Debug, Deserialize)]
struct LogEntry {
    id: i64,
    guid: String,
    delivered_at: Option<String>,
    status_code: u16,
}

/// What became of one redelivery request.
enum Ask {
    /// GitHub accepted it (2xx).
    Done,
    /// Asked for within the window already.
    Skipped,
    Failed,
}

pub struct Recovery {
    pub journal: Store,
    pub pool: Arc<Pool>,
    pub config: RecoveryConfig,
    pub metrics: RecoveryMetrics,
    pub sources: Vec<Source>,
    /// Scheduled walks are done by one replica at a time.
    pub duty: crate::duties::Duty,
    /// GitHub's redelivery window, once asked (see `lookback_hours`).
    pub window_hours: tokio::sync::OnceCell<u64>,
}

impl Recovery {
    /// Walks every source at start, then every `interval_secs`, and when the
    /// CLI asks; ends when `stop` turns true (a walk stops between
    /// requests and resumes at the next start).
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let interval = Duration::from_secs(self.config.interval_secs);
        let mut next = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next {
                if self.duty.mine().await {
                    self.walk_all(None, &stop).await;
                }
                next = tokio::time::Instant::now() + interval;
            }
            let nap = next
                .saturating_duration_since(tokio::time::Instant::now())
                .min(TRIGGER_POLL);
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = shutdown::requested(&mut stop) => return,
            }
            // Taken by the replica that holds the duty (the others leave it).
            let pending = self.journal.pending_trigger().await;
            if matches!(pending, Ok(true)) && self.duty.mine().await {
                let taken = self.journal.take_trigger(clock::now_ms()).await;
                if let Ok(Some((_, since))) = taken {
                    self.walk_all(since, &stop).await;
                    next = tokio::time::Instant::now() + interval;
                }
            }
        }
    }

    async fn walk_all(&self, since: Option<i64>, stop: &watch::Receiver<bool>) {
        for source in &self.sources {
            // Renewed per source: a long walk keeps its duty.
            if *stop.borrow() || !self.duty.mine().await {
                return;
            }
            let name = source.name();
            match self.walk(source, since, stop).await {
                Ok(()) | Err(WalkError::Stopped) => {}
                Err(e) => {
                    tracing::warn!(source = %name, error = %e, "recovery walk did not finish; the next one resumes it")
                }
            }
        }
    }

    /// How far back a first walk looks: `lookback_hours`, or GitHub's
    /// redelivery window, asked of the API once: 7 days on GitHub
    /// Enterprise Server, 3 on github.com (or when it cannot tell).
    async fn lookback_hours(&self) -> u64 {
        if let Some(h) = self.config.lookback_hours {
            return h;
        }
        *self
            .window_hours
            .get_or_init(async || match self.pool.enterprise_version().await {
                Some(version) => {
                    tracing::info!(
                        version,
                        "GitHub Enterprise Server: recovery looks back over its 7-day redelivery window"
                    );
                    crate::config::GHES_WINDOW_HOURS
                }
                None => crate::config::GITHUB_WINDOW_HOURS,
            })
            .await
    }

    /// One walk of one source: requests due again first, then the log from
    /// the newest entry back. None resumes an unfinished walk or walks to
    /// the last complete one; `since` (`recovery run --since`) walks back to
    /// that time (at most `lookback_hours`) whatever earlier walks saw.
    pub async fn walk(
        &self,
        source: &Source,
        since: Option<i64>,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), WalkError> {
        let name = source.name();
        let now = clock::now_ms();
        let lookback = now - self.lookback_hours().await as i64 * 3_600_000;
        let (asked_again, failed_again) = self.ask_again(source, &name, stop).await?;
        let resume = since.is_none();
        let running = self.journal.running_walk(&name).await?;
        let mut walk = match running.filter(|_| resume) {
            Some(w) => {
                tracing::info!(source = %name, pages = w.pages, "recovery walk resumed");
                w
            }
            None => {
                let since_ms = since.map_or(lookback, |s| s.max(lookback));
                self.journal
                    .start_walk(&name, now, since_ms, resume)
                    .await?
            }
        };
        walk.requested += asked_again;
        walk.failures += failed_again;
        let label = SourceLabel {
            source: name.clone(),
        };
        // GUIDs with a successful attempt seen so far in this walk.
        let mut ok: HashSet<String> = HashSet::new();
        loop {
            let mut path = format!("{}?per_page={}", source.log_path(), self.config.per_page);
            if let Some(c) = &walk.cursor {
                path.push_str("&cursor=");
                path.extend(form_urlencoded::byte_serialize(c.as_bytes()));
            }
            let answer = match self.fetch_page(source, &path, stop).await {
                Ok(a) => a,
                Err(e) => {
                    if !matches!(e, WalkError::Stopped) {
                        self.metrics.failures.get_or_create(&label).inc();
                        walk.failures += 1;
                        walk.last_error = Some(e.to_string());
                        self.journal
                            .save_walk(&walk, false, clock::now_ms())
                            .await?;
                    }
                    return Err(e);
                }
            };
            let page: Vec<LogEntry> = serde_json::from_slice(&answer.body)
                .map_err(|e| WalkError::Format(e.to_string()))?;
            let next = next_cursor(&answer.headers);
            let mut done = next.is_none();
            let mut candidates: Vec<(String, i64, Option<i64>)> = Vec::new();
            // Everything this page shows GitHub attempted: completeness's
            // denominator.
            let mut read: Vec<(String, i64)> = Vec::new();
            for e in page {
                let delivered = clock::parse_rfc3339_ms(e.delivered_at.as_deref());
                if walk.stop_at_id.is_some_and(|s| e.id <= s)
                    || delivered.is_some_and(|t| t < walk.since_ms)
                {
                    done = true;
                    break;
                }
                walk.newest_id = Some(walk.newest_id.map_or(e.id, |n| n.max(e.id)));
                walk.seen += 1;
                read.push((e.guid.clone(), delivered.unwrap_or(now)));
                // Newest first: a GUID's later success comes before its
                // failed attempts.
                if (200..300).contains(&e.status_code) {
                    ok.insert(e.guid);
                } else if !ok.contains(&e.guid) && !candidates.iter().any(|(g, _, _)| *g == e.guid)
                {
                    candidates.push((e.guid, e.id, delivered));
                }
            }
            self.journal.seen(&name, read).await?;
            let guids: Vec<String> = candidates.iter().map(|(g, _, _)| g.clone()).collect();
            let have = self.journal.journaled(guids).await?;
            let missing: Vec<_> = candidates
                .into_iter()
                .filter(|(g, _, _)| !have.contains(g))
                .collect();
            let new = self.journal.found(&name, missing).await?;
            walk.missing += new;
            self.metrics
                .missing
                .get_or_create(&label)
                .inc_by(new as u64);
            walk.pages += 1;
            walk.cursor = next;
            if done {
                // The whole log is read: ask for what is missing, oldest
                // first. A crash meanwhile leaves the walk running; its
                // resumption reads the last page again and asks the rest.
                let (asked, failed) = self.ask_found(source, &name, stop).await?;
                walk.requested += asked;
                walk.failures += failed;
            }
            self.journal.save_walk(&walk, done, clock::now_ms()).await?;
            if done {
                tracing::info!(
                    source = %name,
                    pages = walk.pages,
                    seen = walk.seen,
                    missing = walk.missing,
                    requested = walk.requested,
                    failures = walk.failures,
                    "recovery walk complete"
                );
                return Ok(());
            }
            if *stop.borrow() {
                return Err(WalkError::Stopped);
            }
        }
    }

    /// One page of the log. A 5xx or a failed connection is tried again
    /// after 1, 2 and 4 s before the walk gives up until its next run: a
    /// GitHub that fails now and then must not hold a long walk back for
    /// `interval_secs` at each failure, and four tries bound what a page
    /// can cost.
    async fn fetch_page(
        &self,
        source: &Source,
        path: &str,
        stop: &watch::Receiver<bool>,
    ) -> Result<Answer, WalkError> {
        let (mut tries, mut wait) = (0, Duration::from_secs(1));
        loop {
            tries += 1;
            let answer = match self.send_patiently(source, Request::get(path), stop).await {
                Ok(a) if a.status.is_success() => return Ok(a),
                Ok(a) if !a.status.is_server_error() || tries == PAGE_TRIES => {
                    return Err(WalkError::Status {
                        status: a.status,
                        path: path.to_string(),
                        body: String::from_utf8_lossy(&a.body).chars().take(200).collect(),
                    });
                }
                Err(WalkError::Pool(PoolError::Http(e))) if tries < PAGE_TRIES => e,
                Err(e) => return Err(e),
                Ok(a) => a.status.to_string(),
            };
            tracing::info!(source = %source.name(), path, answer, wait_secs = wait.as_secs(), "GitHub failed a log page; trying again");
            let mut stop = stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown::requested(&mut stop) => return Err(WalkError::Stopped),
            }
            wait *= 2;
        }
    }

    /// Requests to make again (see `Recovery::due_again` in the store), unless the delivery
    /// has arrived meanwhile; how many GitHub accepted and how many failed
    /// again, for the walk's counts.
    async fn ask_again(
        &self,
        source: &Source,
        name: &str,
        stop: &watch::Receiver<bool>,
    ) -> Result<(i64, i64), WalkError> {
        let reask_before = clock::now_ms() - self.config.reask_after_secs as i64 * 1000;
        let due = self.journal.due_again(name, reask_before).await?;
        self.ask_each(source, name, due, stop).await
    }

    /// Asks GitHub for every delivery walks found missing and nobody asked
    /// for yet, oldest first; how many it accepted and how many failed.
    async fn ask_found(
        &self,
        source: &Source,
        name: &str,
        stop: &watch::Receiver<bool>,
    ) -> Result<(i64, i64), WalkError> {
        let found = self.journal.to_ask(name).await?;
        self.ask_each(source, name, found, stop).await
    }

    /// Asks for each (GUID, log id) in turn; how many GitHub accepted and
    /// how many failed.
    async fn ask_each(
        &self,
        source: &Source,
        name: &str,
        list: Vec<(String, i64)>,
        stop: &watch::Receiver<bool>,
    ) -> Result<(i64, i64), WalkError> {
        let (mut done, mut failed) = (0, 0);
        for (guid, id) in list {
            match self.ask(source, name, &guid, id, stop).await? {
                Ask::Done => done += 1,
                Ask::Failed => failed += 1,
                Ask::Skipped => {}
            }
        }
        Ok((done, failed))
    }

    /// Claims the GUID (committed before the request goes out), asks GitHub
    /// to redeliver it, and records the answer.
    async fn ask(
        &self,
        source: &Source,
        name: &str,
        guid: &str,
        id: i64,
        stop: &watch::Receiver<bool>,
    ) -> Result<Ask, WalkError> {
        let now = clock::now_ms();
        let reask_before = now - self.config.reask_after_secs as i64 * 1000;
        let claimed = self
            .journal
            .claim(name, guid, id, now, reask_before)
            .await?;
        if !claimed {
            return Ok(Ask::Skipped);
        }
        let req = Request::post(&format!("{}/{id}/attempts", source.log_path()));
        let answered = self.send_patiently(source, req, stop).await;
        let status = match &answered {
            Ok(a) => Some(a.status.as_u16()),
            Err(e) => {
                tracing::warn!(source = %name, guid, error = %e, "redelivery request failed; asked again next walk");
                None
            }
        };
        self.journal.settle(name, guid, status).await?;
        let label = SourceLabel {
            source: name.to_string(),
        };
        if let Err(WalkError::Stopped) = answered {
            return Err(WalkError::Stopped);
        }
        if status.is_some_and(|s| (200..300).contains(&s)) {
            self.metrics.requested.get_or_create(&label).inc();
            Ok(Ask::Done)
        } else {
            self.metrics.failures.get_or_create(&label).inc();
            Ok(Ask::Failed)
        }
    }

    /// Sends through the pool; when the budget is spent (the pool knows it,
    /// or GitHub says so), waits for the reset instead of failing.
    async fn send_patiently(
        &self,
        source: &Source,
        req: Request,
        stop: &watch::Receiver<bool>,
    ) -> Result<Answer, WalkError> {
        loop {
            let answered = source.send(&self.pool, req.clone()).await;
            let reset = match &answered {
                Err(PoolError::Exhausted { reset, .. }) => *reset,
                Ok(a) => match spent_until(a) {
                    Some(reset) => reset,
                    None => return answered.map_err(WalkError::from),
                },
                Err(_) => return answered.map_err(WalkError::from),
            };
            let secs = (reset - clock::now_ms() / 1000).max(0) as u64 + 1;
            tracing::info!(source = %source.name(), wait_secs = secs, "recovery waits for the rate limit reset");
            let mut stop = stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
                _ = shutdown::requested(&mut stop) => return Err(WalkError::Stopped),
            }
        }
    }
}

/// GitHub's answer when a budget is spent (403 or 429 with nothing left,
/// read as the pool reads budgets): until when.
fn spent_until(a: &Answer) -> Option<i64> {
    let limited = a.status == StatusCode::FORBIDDEN || a.status == StatusCode::TOO_MANY_REQUESTS;
    let (_, b) = budget::from_headers(&a.headers, Resource::Core)?;
    (limited && b.remaining == 0).then_some(b.reset)
}

/// The `cursor` of the `Link: <...>; rel="next"` page, if there is one.
fn next_cursor(h: &HeaderMap) -> Option<String> {
    let link = h.get(http::header::LINK)?.to_str().ok()?;
    let next = link.split(',').find(|part| part.contains("rel=\"next\""))?;
    let url = next.split(';').next()?.trim().trim_matches(['<', '>']);
    let url = reqwest::Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_name_and_path_their_logs() {
        let hook = Source::Hook {
            owner: "octo-org".into(),
            repo: Some("widgets".into()),
            id: 7,
        };
        assert_eq!(hook.name(), "hook:octo-org/widgets:7");
        assert_eq!(
            hook.log_path(),
            "/repos/octo-org/widgets/hooks/7/deliveries"
        );
        let org = Source::Hook {
            owner: "octo-org".into(),
            repo: None,
            id: 8,
        };
        assert_eq!(org.log_path(), "/orgs/octo-org/hooks/8/deliveries");
        assert_eq!(Source::App(5).name(), "app:5");
    }

    #[test]
    fn the_next_cursor_comes_from_the_link_header() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::LINK,
            "<https://api.github.com/app/hook/deliveries?per_page=2&cursor=v1_12>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_cursor(&h).as_deref(), Some("v1_12"));
        h.insert(
            http::header::LINK,
            "<https://x/y?cursor=a>; rel=\"prev\"".parse().unwrap(),
        );
        assert_eq!(next_cursor(&h), None);
    }
}
