//! The credential pool. Per owner, the candidates are each App's
//! installation on that owner plus the tokens allowed for it
//! ([`discovery`]). A request goes to the candidate with the most remaining
//! budget that is neither spent until its reset nor paused by a secondary
//! limit ([`selection`], from [`bookkeeping`]), with the Authorization
//! [`minting`] gives it, and waits in that credential's fair queue: at most
//! one request is in flight per credential (GitHub's advice to
//! integrators; invariant 5).

mod bookkeeping;
mod credential;
mod discovery;
mod error;
mod minting;
mod request;
mod selection;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use credential::{CredId, CredStatus, NotACredential, Reach};
pub use discovery::{Installed, ProbeRow};
pub use error::PoolError;
pub use request::{Answer, HeldEtag, Request, Validators};

use http::StatusCode;

use super::app::AppAuth;
use super::budget::Resource;
use crate::clock::{Clock, Term};
use crate::config::{GithubConfig, Purpose};
use bookkeeping::Slot;
use credential::TokenEntry;
use error::http_error;
use minting::AppEntry;

/// How far back `coverage` reads the repositories deliveries named.
pub const COVERAGE_DAYS: i64 = 7;

/// What recent deliveries say of the pool's reach.
pub struct Coverage {
    /// Repositories the deliveries named.
    pub seen: usize,
    /// Those no credential can serve, with why.
    pub uncovered: Vec<(String, String)>,
}

/// An installation's 404 looks its owner up again only if what was
/// learned is older than this.
const RELOOK_MS: i64 = 30_000;

/// Choosing again after finding the chosen credential paused or spent.
const MAX_CHOICES: usize = 8;

pub struct Pool {
    http: reqwest::Client,
    api: String,
    apps: Vec<AppEntry>,
    tokens: Vec<TokenEntry>,
    slots: Mutex<HashMap<CredId, Arc<Slot>>>,
    max_queue: usize,
    reserve: u64,
    max_wait_secs: u64,
    metrics: crate::github::metrics::GithubMetrics,
    /// Budgets' resets, pauses and token expiry are read on this clock.
    clock: Arc<dyn Clock>,
    /// Where replicas share a store: each credential's lane across them.
    shared: Option<SharedLanes>,
    /// How long a request to GitHub may take.
    timeout: Duration,
    /// When a request last found every credential it may use spent (ms;
    /// 0: never): "callers waiting" in the open problems.
    last_exhausted_ms: std::sync::atomic::AtomicI64,
}

/// One request in flight per credential across replicas, and one budget:
/// before sending, a replica takes the credential's lane row in the shared
/// store (held past the request's timeout, so a holder that dies or
/// freezes frees it by itself) and adopts the budget notes the last holder
/// left on it; after, it leaves its own notes (what GitHub's answer said
/// of remaining, reset and secondary limits) and gives the lane back.
/// What a reload did to the pool's credentials.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Credentials whose key or token changed and is in use now.
    pub rotated: Vec<String>,
    /// Changes left for a restart.
    pub restart: Vec<String>,
}

/// Within a replica the in-process lane already queues callers.
struct SharedLanes {
    store: crate::store::Store,
    replica: Arc<str>,
}

/// While another replica's request holds a lane, look again this often.
const SHARED_LANE_POLL: Duration = Duration::from_millis(5);

/// How often a replica reads the budgets the others left.
const SHARED_REFRESH: Duration = Duration::from_secs(2);

/// Lane rows are named after their credential under this prefix.
const LANE_PREFIX: &str = "github:";

fn lane_name(id: &CredId) -> String {
    format!("{LANE_PREFIX}{id}")
}

impl Pool {
    pub fn new(cfg: &GithubConfig) -> Result<Pool, PoolError> {
        let apps =
            cfg.apps
                .iter()
                .map(|a| {
                    let pem = a.private_key.as_ref().ok_or_else(|| {
                        PoolError::Config(format!("app {}: no private key", a.id))
                    })?;
                    let auth = AppAuth::new(a.id, pem.expose())
                        .map_err(|e| PoolError::Config(format!("app {}: {e}", a.id)))?;
                    Ok(AppEntry::new(auth, a.purposes.clone()))
                })
                .collect::<Result<_, PoolError>>()?;
        let tokens = cfg
            .tokens
            .iter()
            .filter_map(|t| {
                Some(TokenEntry {
                    name: t.name.clone(),
                    secret: std::sync::RwLock::new(t.token.clone()?),
                    owners: t.owners.iter().map(|o| o.to_lowercase()).collect(),
                    confined: t.confined,
                    purposes: t.purposes.clone(),
                })
            })
            .collect();
        Ok(Pool {
            http: reqwest::Client::builder()
                .user_agent("gatehouse")
                // A redirect (a renamed repository's 301) goes back to the
                // caller, who asks again: following it here would read a
                // path no scope or owner check has seen.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(cfg.timeout_secs.min(10)))
                .timeout(Duration::from_secs(cfg.timeout_secs))
                .build()
                .map_err(|e| PoolError::Config(e.to_string()))?,
            api: cfg.api_url.trim_end_matches('/').to_string(),
            apps,
            tokens,
            slots: Mutex::default(),
            max_queue: cfg.max_queue.max(1),
            reserve: cfg.reserve,
            max_wait_secs: cfg.max_wait_secs,
            metrics: crate::github::metrics::GithubMetrics::default(),
            clock: crate::clock::system(),
            last_exhausted_ms: std::sync::atomic::AtomicI64::new(0),
            shared: None,
            timeout: Duration::from_secs(cfg.timeout_secs),
        })
    }

    /// Shares each credential's lane with the other replicas on `store`,
    /// this one named `replica`.
    pub fn with_shared_lanes(mut self, store: crate::store::Store, replica: Arc<str>) -> Pool {
        self.shared = Some(SharedLanes { store, replica });
        self
    }

    /// Waits (up to `max_wait_secs`) for the credential's lane across
    /// replicas and adopts the notes on it; true once held. A store that
    /// cannot answer is waited out the same way: sending without the lane
    /// could put two requests in flight.
    async fn take_shared_lane(&self, shared: &SharedLanes, slot: &Slot) -> bool {
        let name = lane_name(&slot.id);
        // Held past the request's own timeout: a holder that never gives
        // it back (killed, frozen) frees it by itself.
        let hold = self.timeout + Duration::from_secs(5);
        let ttl_ms = hold.as_millis() as i64;
        let deadline = Instant::now() + Duration::from_secs(self.max_wait_secs.max(1));
        loop {
            let before = Instant::now();
            let taken = shared
                .store
                .take_lane(&name, &shared.replica, self.clock.now_ms(), ttl_ms)
                .await;
            // The request must end within the hold as this process counts
            // it. A replica frozen (or answered late) after the take may
            // find the lane lapsed and taken by another: it takes it again,
            // which fails while the other holds it.
            if let Ok(Some(notes)) = taken
                && Term::granted(before, hold).covers(self.timeout)
            {
                if let Some(notes) = notes {
                    slot.adopt(&notes);
                }
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(SHARED_LANE_POLL).await;
        }
    }

    /// Where replicas share lanes: adopts the budget notes every other
    /// replica left, so choosing a credential (and `/metrics`, and
    /// `github status`) sees what they learned. A credential whose lane
    /// this replica is using is skipped: its own notes are newer. Called
    /// every few seconds.
    pub async fn refresh_shared(&self) {
        let Some(shared) = &self.shared else {
            return;
        };
        let notes = match shared.store.lane_notes(LANE_PREFIX).await {
            Ok(notes) => notes,
            Err(e) => {
                tracing::debug!(error = %e, "shared budgets not read");
                return;
            }
        };
        for (name, n) in notes {
            let Some(id) = name
                .strip_prefix(LANE_PREFIX)
                .and_then(|id| id.parse::<CredId>().ok())
            else {
                continue;
            };
            let slot = self.slot(&id);
            if let Ok(_idle) = slot.lane.try_acquire() {
                slot.adopt(&n);
            }
        }
    }

    /// [`Pool::refresh_shared`] every [`SHARED_REFRESH`] until `stop`.
    pub async fn follow_shared(self: Arc<Pool>, mut stop: tokio::sync::watch::Receiver<bool>) {
        while self.shared.is_some() {
            self.refresh_shared().await;
            tokio::select! {
                _ = tokio::time::sleep(SHARED_REFRESH) => {}
                _ = crate::shutdown::requested(&mut stop) => return,
            }
        }
    }

    /// Reads time on this clock instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Pool {
        self.clock = clock;
        self
    }

    fn now_secs(&self) -> i64 {
        self.clock.now_ms() / 1000
    }

    /// Records into these metrics (the server's registry) from now on.
    pub fn with_metrics(mut self, metrics: crate::github::metrics::GithubMetrics) -> Pool {
        // At zero from the start: Prometheus's increase() needs a sample
        // before the first one, or an alert never sees it.
        for r in [Resource::Core, Resource::Graphql, Resource::Search] {
            drop(
                metrics
                    .exhausted
                    .get_or_create(&crate::github::metrics::ResourceLabel {
                        resource: r.as_str().to_string(),
                    }),
            );
        }
        self.metrics = metrics;
        self
    }

    /// Publishes every known credential's budgets into the gauges; called
    /// at scrape time.
    pub fn export_budgets(&self) {
        use crate::github::metrics::BudgetLabels;
        for c in self.snapshot() {
            for (resource, b) in c.budgets {
                let l = BudgetLabels {
                    credential: c.id.to_string(),
                    resource: resource.as_str().to_string(),
                };
                self.metrics.limit.get_or_create(&l).set(b.limit as i64);
                self.metrics
                    .remaining
                    .get_or_create(&l)
                    .set(b.remaining as i64);
                self.metrics.reset.get_or_create(&l).set(b.reset);
            }
        }
    }

    fn slot(&self, id: &CredId) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("slots lock")
            .entry(id.clone())
            .or_insert_with(|| {
                // A credential's secondary limits count from zero, for
                // the same reason as `exhausted`.
                drop(self.metrics.secondary_limits.get_or_create(
                    &crate::github::metrics::CredentialLabel {
                        credential: id.to_string(),
                    },
                ));
                Arc::new(Slot::new(id.clone()))
            })
            .clone()
    }

    /// Sends `req` on behalf of `owner` (the org or user the path is about)
    /// with the best credential for it, whatever its purposes (tools and
    /// tests; gatehouse's own parts say theirs).
    pub async fn send(&self, owner: &str, req: Request) -> Result<Answer, PoolError> {
        self.send_as(owner, Reach::Any, None, req).await
    }

    /// [`Pool::send`], among the credentials that may be spent on
    /// `purpose`.
    pub async fn send_for(
        &self,
        purpose: Purpose,
        owner: &str,
        req: Request,
    ) -> Result<Answer, PoolError> {
        self.send_as(owner, Reach::Any, Some(purpose), req).await
    }

    /// For the gateway: [`Pool::send`] among only the credentials `reach`
    /// allows that may serve the gateway.
    pub async fn send_within(
        &self,
        owner: &str,
        reach: Reach<'_>,
        req: Request,
    ) -> Result<Answer, PoolError> {
        self.send_as(owner, reach, Some(Purpose::Gateway), req)
            .await
    }

    /// Among the credentials for `owner` (and the repository the path is
    /// about, when an installation sees only a selection) that `reach` and
    /// `purpose` allow. An installation that answers 404 for a repository
    /// it was thought to see is looked up again, and the request goes once
    /// more to another candidate if there is one.
    async fn send_as(
        &self,
        owner: &str,
        reach: Reach<'_>,
        purpose: Option<Purpose>,
        req: Request,
    ) -> Result<Answer, PoolError> {
        let repo = discovery::repo_of(&req.path).map(str::to_string);
        let candidates = self
            .candidates(owner, reach, purpose, repo.as_deref())
            .await?;
        if candidates.is_empty() {
            return Err(self.none_for(owner, reach, purpose, repo).await?);
        }
        let again = repo.is_some().then(|| req.clone());
        let answer = self.send_among(&candidates, req).await?;
        let Some(req) = again.filter(|_| {
            answer.status == StatusCode::NOT_FOUND
                && matches!(answer.credential, CredId::Installation { .. })
        }) else {
            return Ok(answer);
        };
        // The selection may have changed: learn it again (unless just
        // learned), try another.
        self.forget_owner_learned_before(owner, self.clock.now_ms() - RELOOK_MS);
        let others: Vec<CredId> = self
            .candidates(owner, reach, purpose, repo.as_deref())
            .await?
            .into_iter()
            .filter(|c| *c != answer.credential)
            .collect();
        if others.is_empty() {
            return Ok(answer);
        }
        tracing::info!(
            owner,
            repo = repo.as_deref().unwrap_or(""),
            credential = %answer.credential,
            "an installation answered 404 for a repository it was thought to see: looked up again, trying another credential"
        );
        self.send_among(&others, req).await
    }

    /// The repositories deliveries of the last [`COVERAGE_DAYS`] name (at
    /// most `limit`) and those of them no credential can serve, each with
    /// why: for `github status` and the GitHub page.
    pub async fn coverage(
        &self,
        store: &crate::store::Store,
        now_ms: i64,
        limit: usize,
    ) -> Result<Coverage, crate::store::StoreError> {
        let seen = store
            .repositories_seen(now_ms - COVERAGE_DAYS * 86_400_000, limit)
            .await?;
        Ok(Coverage {
            seen: seen.len(),
            uncovered: self.uncovered(&seen).await,
        })
    }

    /// Of `repositories` (`owner/name`), those no credential can serve,
    /// each with why; an owner that could not be looked up is said so.
    /// Looks each owner up (cached, as for any request).
    async fn uncovered(&self, repositories: &[String]) -> Vec<(String, String)> {
        let mut out = vec![];
        for full in repositories {
            let Some((owner, repo)) = full.split_once('/') else {
                continue;
            };
            match self.candidates(owner, Reach::Any, None, Some(repo)).await {
                Ok(c) if !c.is_empty() => {}
                Ok(_) => {
                    let why = match self
                        .none_for(owner, Reach::Any, None, Some(repo.into()))
                        .await
                    {
                        Ok(e) => e.to_string(),
                        Err(e) => e.to_string(),
                    };
                    out.push((full.clone(), why));
                }
                Err(e) => out.push((full.clone(), format!("could not look {owner} up: {e}"))),
            }
        }
        out
    }

    /// Why no credential can serve: the most specific reason.
    async fn none_for(
        &self,
        owner: &str,
        reach: Reach<'_>,
        purpose: Option<Purpose>,
        repo: Option<String>,
    ) -> Result<PoolError, PoolError> {
        Ok(match (reach, purpose) {
            (Reach::Within(allowed), _) => PoolError::NotConfined {
                owner: owner.to_string(),
                within: allowed.join(", "),
            },
            (Reach::Any, Some(p))
                if !self.candidates(owner, reach, None, None).await?.is_empty()
                    && self
                        .candidates(owner, reach, Some(p), None)
                        .await?
                        .is_empty() =>
            {
                PoolError::NotForPurpose {
                    owner: owner.to_string(),
                    purpose: p.as_str(),
                }
            }
            (Reach::Any, _) => match repo {
                Some(repo)
                    if !self
                        .candidates(owner, reach, purpose, None)
                        .await?
                        .is_empty() =>
                {
                    PoolError::NotInstalledOnRepo {
                        owner: owner.to_string(),
                        repo,
                    }
                }
                _ => PoolError::NoCredential(owner.to_string()),
            },
        })
    }

    /// What remains of `owner`'s budget for `resource` across the
    /// credentials `reach` allows that serve the gateway, as GitHub last
    /// reported each (limits
    /// and remaining summed, above `reserve`; the earliest reset). None
    /// while any of them is unused or past its reset: then plenty remains.
    pub async fn owner_budget(
        &self,
        owner: &str,
        reach: Reach<'_>,
        resource: Resource,
    ) -> Option<crate::github::budget::Budget> {
        let candidates = self
            .candidates(owner, reach, Some(Purpose::Gateway), None)
            .await
            .ok()?;
        let now = self.now_secs();
        let mut sum: Option<crate::github::budget::Budget> = None;
        for id in &candidates {
            let b = self.slot(id).budget(resource).filter(|b| b.reset > now)?;
            let s = sum.get_or_insert(crate::github::budget::Budget {
                limit: 0,
                remaining: 0,
                reset: b.reset,
            });
            s.limit += b.limit.saturating_sub(self.reserve);
            s.remaining += b.remaining.saturating_sub(self.reserve);
            s.reset = s.reset.min(b.reset);
        }
        sum
    }

    /// When `owner`'s credentials for the sinks can be used again, if
    /// every one of them is known spent (core remaining at `reserve` until
    /// its reset) or paused by a secondary limit: the earliest, epoch ms.
    /// None when any could serve now (or none is known: then none is
    /// known spent).
    pub async fn owner_blocked_until(&self, owner: &str) -> Option<i64> {
        let candidates = self
            .candidates(owner, Reach::Any, Some(Purpose::Sinks), None)
            .await
            .ok()?;
        let now_ms = self.clock.now_ms();
        let mut until: Option<i64> = None;
        for id in &candidates {
            match self.slot(id).usable(Resource::Core, now_ms, self.reserve) {
                Ok(_) => return None,
                Err(secs) => until = Some(until.map_or(secs * 1000, |u| u.min(secs * 1000))),
            }
        }
        until
    }

    /// Sends a request as App `app_id` itself (its JWT), one at a time
    /// like every credential, within the budget GitHub reports for it.
    pub async fn send_app(&self, app_id: i64, req: Request) -> Result<Answer, PoolError> {
        self.app(app_id)?;
        self.send_among(&[CredId::App(app_id)], req).await
    }

    /// For the gateway: sends a request that concerns no particular owner
    /// (`/user`, `/search/...`) with a token allowed for any owner.
    pub async fn send_default(&self, req: Request) -> Result<Answer, PoolError> {
        let candidates: Vec<CredId> = self
            .tokens
            .iter()
            .filter(|t| t.owners.is_empty() && t.for_purpose(Some(Purpose::Gateway)))
            .map(|t| CredId::Token(t.name.clone()))
            .collect();
        if candidates.is_empty() {
            return Err(PoolError::NoDefault);
        }
        self.send_among(&candidates, req).await
    }

    async fn send_among(&self, candidates: &[CredId], req: Request) -> Result<Answer, PoolError> {
        let resource = Resource::for_path(&req.path);
        let prefer = req
            .validators
            .as_ref()
            .and_then(|v| v.etag.as_ref())
            .map(|e| &e.credential);
        let mut waited = false;
        for _ in 0..MAX_CHOICES {
            let chosen = self.choose(candidates, resource, prefer);
            if matches!(chosen, Err(PoolError::Exhausted { .. })) {
                self.metrics
                    .exhausted
                    .get_or_create(&crate::github::metrics::ResourceLabel {
                        resource: resource.as_str().to_string(),
                    })
                    .inc();
                self.last_exhausted_ms
                    .store(self.clock.now_ms(), Ordering::Relaxed);
            }
            let slot = match chosen {
                Ok(slot) => slot,
                // Everything spent, but a reset is near: wait for it, once.
                Err(PoolError::Exhausted { reset, .. })
                    if !waited && reset - self.now_secs() <= self.max_wait_secs as i64 =>
                {
                    waited = true;
                    let ms = ((reset - self.now_secs()).max(0) * 1000 + 250) as u64;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if slot.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
                slot.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(PoolError::QueueFull(slot.id.clone()));
            }
            let queued = Instant::now();
            let permit = slot.lane.acquire().await.expect("lanes are never closed");
            slot.waiting.fetch_sub(1, Ordering::SeqCst);
            let label = crate::github::metrics::CredentialLabel {
                credential: slot.id.to_string(),
            };
            self.metrics
                .wait
                .get_or_create(&label)
                .observe(queued.elapsed().as_secs_f64());
            // Something may have paused or spent it while we queued: send
            // nothing to it then, choose again.
            if slot
                .usable(resource, self.clock.now_ms(), self.reserve)
                .is_err()
            {
                drop(permit);
                continue;
            }
            if let Some(shared) = &self.shared {
                if !self.take_shared_lane(shared, &slot).await {
                    drop(permit);
                    return Err(PoolError::QueueFull(slot.id.clone()));
                }
                // Another replica may have spent or paused it: then leave
                // the lane as found and choose again.
                let usable = slot
                    .usable(resource, self.clock.now_ms(), self.reserve)
                    .is_ok();
                let answer = if usable {
                    Some(self.send_with(&slot, &req, resource).await)
                } else {
                    None
                };
                let notes = usable.then(|| slot.notes());
                let name = lane_name(&slot.id);
                if let Err(e) = shared
                    .store
                    .release_lane(&name, &shared.replica, notes)
                    .await
                {
                    tracing::debug!(credential = %slot.id, error = %e, "lane not given back; it lapses");
                }
                drop(permit);
                match answer {
                    Some(answer) => return answer,
                    None => continue,
                }
            }
            let answer = self.send_with(&slot, &req, resource).await;
            drop(permit);
            return answer;
        }
        // Every choice was taken from under us; report the earliest return.
        Err(self
            .choose(candidates, resource, None)
            .err()
            .unwrap_or(PoolError::Exhausted {
                reset: self.now_secs() + 1,
                resource,
            }))
    }

    /// The usable candidate with the most remaining budget, or `prefer`
    /// when it is usable.
    fn choose(
        &self,
        candidates: &[CredId],
        resource: Resource,
        prefer: Option<&CredId>,
    ) -> Result<Arc<Slot>, PoolError> {
        let lanes: Vec<Arc<Slot>> = candidates.iter().map(|id| self.slot(id)).collect();
        selection::choose(&lanes, resource, prefer, self.reserve, self.clock.now_ms())
            .map_err(|reset| PoolError::Exhausted { reset, resource })
    }

    async fn send_with(
        &self,
        slot: &Slot,
        req: &Request,
        resource: Resource,
    ) -> Result<Answer, PoolError> {
        for retry in 0..2 {
            let (auth, token_tag) = self.authorization(&slot.id, retry > 0).await?;
            let mut headers = req.headers.clone();
            headers.remove(http::header::AUTHORIZATION);
            headers.remove(http::header::HOST);
            request::add_validators(&mut headers, req.validators.as_ref(), &slot.id, &token_tag);
            let resp = self
                .http
                .request(req.method.clone(), self.url(&req.path))
                .headers(headers)
                .header(http::header::AUTHORIZATION, auth)
                .body(req.body.clone())
                .send()
                .await
                .map_err(http_error)?;
            let label = crate::github::metrics::CredentialLabel {
                credential: slot.id.to_string(),
            };
            self.metrics.requests.get_or_create(&label).inc();
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(http_error)?;
            let cost = self.observe(slot, status, &headers, &body, resource);
            // A token GitHub no longer accepts: mint a fresh one, once.
            if status == StatusCode::UNAUTHORIZED
                && retry == 0
                && matches!(slot.id, CredId::Installation { .. })
            {
                continue;
            }
            return Ok(Answer {
                status,
                headers,
                body,
                credential: slot.id.clone(),
                token_tag,
                cost,
            });
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Learns from an answer (see [`Slot::observe`]), counting and
    /// logging a secondary limit; returns the units the request spent.
    fn observe(
        &self,
        slot: &Slot,
        status: http::StatusCode,
        h: &http::HeaderMap,
        body: &[u8],
        asked: Resource,
    ) -> u64 {
        let seen = slot.observe(status, h, body, asked, self.clock.now_ms());
        if let Some(wait) = seen.paused_secs {
            self.metrics
                .secondary_limits
                .get_or_create(&crate::github::metrics::CredentialLabel {
                    credential: slot.id.to_string(),
                })
                .inc();
            tracing::warn!(credential = %slot.id, wait_secs = wait, "secondary rate limit: credential paused");
        }
        seen.cost
    }

    /// The full URL of an API path. GitHub Enterprise Server serves REST
    /// under `/api/v3` but GraphQL at `/api/graphql`.
    fn url(&self, path: &str) -> String {
        if let Some(rest) = path.strip_prefix("/graphql")
            && let Some(host) = self.api.strip_suffix("/api/v3")
        {
            return format!("{host}/api/graphql{rest}");
        }
        format!("{}{}", self.api, path)
    }

    /// The GitHub Enterprise Server release the API says it is (`/meta`
    /// `installed_version`); None for github.com, or when `/meta` cannot
    /// be read. Asked without a credential, then (GHES in private mode
    /// wants one even there) with the first App's JWT.
    pub async fn enterprise_version(&self) -> Option<String> {
        let url = format!("{}/meta", self.api);
        let mut resp = self.http.get(&url).send().await.ok()?;
        if !resp.status().is_success()
            && let Some(app) = self.apps.first()
        {
            resp = self
                .http
                .get(&url)
                .bearer_auth(app.auth.jwt())
                .send()
                .await
                .ok()?;
        }
        if !resp.status().is_success() {
            return None;
        }
        let meta: serde_json::Value = resp.json().await.ok()?;
        meta["installed_version"].as_str().map(String::from)
    }

    /// The API base URL GitHub's own links start with.
    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// Each token's name and the owners it may serve (empty: any).
    pub fn token_owners(&self) -> Vec<(String, Vec<String>)> {
        self.tokens
            .iter()
            .map(|t| (t.name.clone(), t.owners.clone()))
            .collect()
    }

    /// Each known credential's budgets and pause, for status and metrics.
    /// Takes a reloaded `[github]` section: new key material for the Apps
    /// and tokens configured already is used from the next request (an
    /// App's minted installation tokens are forgotten, so new ones come
    /// from the new key); requests in flight finish with what they began
    /// with. Anything else that changed (Apps or tokens added or removed,
    /// their owners or purposes, the API URL, the pool's limits) is
    /// returned as needing a restart, and left as it is.
    pub fn rotate(&self, cfg: &GithubConfig) -> Result<Rotation, PoolError> {
        let mut out = Rotation::default();
        let ids: Vec<i64> = self.apps.iter().map(|a| a.auth.id).collect();
        let new_ids: Vec<i64> = cfg.apps.iter().map(|a| a.id).collect();
        let names: Vec<&str> = self.tokens.iter().map(|t| t.name.as_str()).collect();
        let new_names: Vec<&str> = cfg
            .tokens
            .iter()
            .filter(|t| t.token.is_some())
            .map(|t| t.name.as_str())
            .collect();
        if ids != new_ids || names != new_names {
            out.restart
                .push("[[github.apps]] or [[github.tokens]] added or removed".into());
        }
        if cfg.api_url.trim_end_matches('/') != self.api
            || cfg.reserve != self.reserve
            || cfg.max_wait_secs != self.max_wait_secs
            || cfg.max_queue.max(1) != self.max_queue
        {
            out.restart
                .push("[github] api_url, reserve, max_wait_secs or max_queue".into());
        }
        // Parse every key first: a bad one changes nothing.
        let mut keys = Vec::new();
        for a in &cfg.apps {
            let Some(entry) = self.apps.iter().find(|e| e.auth.id == a.id) else {
                continue;
            };
            if entry.purposes != a.purposes {
                out.restart.push(format!("app {}: purposes", a.id));
            }
            let pem = a
                .private_key
                .as_ref()
                .ok_or_else(|| PoolError::Config(format!("app {}: no private key", a.id)))?;
            crate::github::app::AppAuth::new(a.id, pem.expose())
                .map_err(|e| PoolError::Config(format!("app {}: {e}", a.id)))?;
            keys.push((entry, pem.clone()));
        }
        for (entry, pem) in keys {
            let changed = entry
                .auth
                .rotate(pem.expose())
                .map_err(|e| PoolError::Config(format!("app {}: {e}", entry.auth.id)))?;
            if changed {
                entry.forget_tokens();
                out.rotated.push(format!("app {}", entry.auth.id));
            }
        }
        for t in &cfg.tokens {
            let (Some(entry), Some(secret)) =
                (self.tokens.iter().find(|e| e.name == t.name), &t.token)
            else {
                continue;
            };
            let owners: Vec<String> = t.owners.iter().map(|o| o.to_lowercase()).collect();
            if entry.owners != owners
                || entry.confined != t.confined
                || entry.purposes != t.purposes
            {
                out.restart
                    .push(format!("token {}: owners, confined or purposes", t.name));
            }
            let mut current = entry.secret.write().expect("token lock");
            if current.expose() != secret.expose() {
                *current = secret.clone();
                out.rotated.push(format!("token {}", t.name));
            }
        }
        Ok(out)
    }

    /// When a request last found every credential it may use spent (None:
    /// never since start).
    pub fn last_exhausted_ms(&self) -> Option<i64> {
        Some(self.last_exhausted_ms.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }

    /// The credential's reserve: below it a budget counts as spent.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    pub fn snapshot(&self) -> Vec<CredStatus> {
        let now_ms = self.clock.now_ms();
        let slots = self.slots.lock().expect("slots lock");
        let mut out: Vec<_> = slots
            .values()
            .map(|s| {
                let budgets = {
                    let st = s.state.lock().expect("slot lock");
                    st.budgets.iter().map(|(r, b)| (*r, *b)).collect()
                };
                CredStatus {
                    id: s.id.clone(),
                    budgets,
                    paused: s.paused(now_ms),
                }
            })
            .collect();
        out.sort_by_key(|c| c.id.to_string());
        out
    }
}
