//! The credential pool. Per owner, the candidates are each App's
//! installation on that owner plus the tokens allowed for it. A request
//! goes to the candidate with the most remaining budget that is neither
//! spent until its reset nor paused by a secondary limit, and waits in that
//! credential's fair queue: at most one request is in flight per credential
//! (GitHub's advice to integrators; invariant 5).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::app::AppAuth;
use super::budget::{self, Budget, Resource};
use crate::config::{GithubConfig, Secret};

/// Installation tokens live an hour; mint a new one this long before.
const REFRESH_AHEAD_SECS: i64 = 300;
/// GitHub asks to wait at least a minute after a secondary limit that
/// names no time; later hits back off further.
const SECONDARY_BASE_SECS: u64 = 60;
/// Choosing again after finding the chosen credential paused or spent.
const MAX_CHOICES: usize = 8;

fn now_secs() -> i64 {
    crate::clock::now_ms() / 1000
}

/// A credential, by what may be shown (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredId {
    /// The App itself, with its JWT: for the App's own endpoints
    /// (`/app/hook/deliveries`, say), not for any owner's data.
    App(i64),
    Installation {
        app: i64,
        installation: i64,
    },
    Token(String),
}

impl fmt::Display for CredId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredId::App(app) => write!(f, "app:{app}"),
            CredId::Installation { app, installation } => {
                write!(f, "app:{app}/installation:{installation}")
            }
            CredId::Token(name) => write!(f, "token:{name}"),
        }
    }
}

impl std::str::FromStr for CredId {
    type Err = String;
    /// The inverse of `Display`, for ids stored by the gateway's cache.
    fn from_str(s: &str) -> Result<CredId, String> {
        if let Some(name) = s.strip_prefix("token:") {
            return Ok(CredId::Token(name.to_string()));
        }
        let parsed =
            s.strip_prefix("app:")
                .and_then(|rest| match rest.split_once("/installation:") {
                    Some((app, inst)) => Some(CredId::Installation {
                        app: app.parse().ok()?,
                        installation: inst.parse().ok()?,
                    }),
                    None => Some(CredId::App(rest.parse().ok()?)),
                });
        parsed.ok_or_else(|| format!("not a credential id: {s:?}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no credential can act for {0:?}: no App is installed there and no token is allowed")]
    NoCredential(String),
    /// The caller is limited to some owners and no credential confined to
    /// them can serve this owner (see [`Reach`]).
    #[error(
        "no credential confined to {within} can act for {owner:?}: only an App installation on \
         {owner:?} or a [[github.tokens]] entry with confined = true and owners within {within} \
         may serve a client limited to {within}"
    )]
    NotConfined { owner: String, within: String },
    /// Every candidate is spent or paused; the earliest moment one returns.
    #[error("every credential for this owner is rate limited until {reset}")]
    Exhausted { reset: i64, resource: Resource },
    #[error(
        "no credential serves requests without an owner: give the client an owner, \
         set [gateway] default_owner, or add a [[github.tokens]] entry without owners"
    )]
    NoDefault,
    #[error("too many requests waiting for {0}")]
    QueueFull(CredId),
    #[error("GitHub request failed: {0}")]
    Http(String),
    #[error("{0}")]
    Config(String),
}

/// A failed exchange with GitHub with its causes: reqwest's own text
/// ("error sending request for url ...") hides whether it timed out, was
/// refused or was cut.
fn http_error(e: reqwest::Error) -> PoolError {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    PoolError::Http(text)
}

impl PoolError {
    /// The answer GitHub itself gives when a budget is spent, for callers
    /// that speak GitHub's API (the gateway).
    pub fn github_shaped(&self) -> Option<(StatusCode, HeaderMap, Bytes)> {
        let PoolError::Exhausted { reset, resource } = self else {
            return None;
        };
        let (mut h, body) = super::error_answer(
            "API rate limit exceeded for every credential gatehouse holds for this owner.",
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        );
        h.insert("x-ratelimit-remaining", HeaderValue::from(0));
        h.insert("x-ratelimit-reset", HeaderValue::from(*reset));
        h.insert(
            "x-ratelimit-resource",
            HeaderValue::from_static(resource.as_str()),
        );
        Some((StatusCode::FORBIDDEN, h, body))
    }
}

/// Which credentials may serve a request. A caller limited to some owners
/// (a gateway client added with `--owner`) must never be answered by a
/// credential that can read beyond them, whatever the path asks: GraphQL,
/// `/search`, `/repositories/{id}` or a redirect can reach any repository
/// the credential can. An App installation reaches only its account; a
/// token only when the operator declares it `confined` to its `owners`.
#[derive(Debug, Clone, Copy)]
pub enum Reach<'a> {
    /// Any credential that can act for the owner.
    Any,
    /// Only credentials whose reach lies within these owners (lowercase).
    Within(&'a [String]),
}

/// One credential's budget for one resource, as `GET /rate_limit` says.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeRow {
    pub credential: String,
    /// The account an installation is on, or the owners a token may serve.
    pub owner: String,
    pub resource: String,
    pub limit: u64,
    pub remaining: u64,
    pub reset: i64,
}

/// What the pool knows of one credential right now.
#[derive(Debug, Clone)]
pub struct CredStatus {
    pub id: CredId,
    pub budgets: Vec<(Resource, Budget)>,
    pub paused: bool,
}

/// Where an App is installed for an owner, as discovery found it.
pub struct Installed {
    pub app: i64,
    pub owner: String,
    pub installation: Option<i64>,
}

/// A request to GitHub, relative to the API base (`/repos/o/r?x=1`).
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the caller holds of an earlier answer, to ask conditionally.
    pub validators: Option<Validators>,
}

impl Request {
    pub fn get(path: &str) -> Request {
        Request::bare(Method::GET, path)
    }

    /// A POST without a body (`.../deliveries/{id}/attempts`, say).
    pub fn post(path: &str) -> Request {
        Request::bare(Method::POST, path)
    }

    fn bare(method: Method, path: &str) -> Request {
        Request {
            method,
            path: path.to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            validators: None,
        }
    }
}

/// Validators of a stored answer. GitHub's ETags belong to the token that
/// read them (a validator from another token never matches), so the pool
/// prefers the credential that holds the ETag and sends `If-None-Match`
/// only when that same token is still in use; otherwise it falls back to
/// `If-Modified-Since`, which does not depend on the token.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<HeldEtag>,
    /// `Last-Modified`, only when a later change is sure to move it (see
    /// the gateway's cache): it has one-second resolution.
    pub last_modified: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HeldEtag {
    pub etag: String,
    pub credential: CredId,
    /// [`Answer::token_tag`] of the answer that carried the ETag.
    pub token_tag: String,
}

/// GitHub's answer, and which credential paid for it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub credential: CredId,
    /// A fingerprint of the exact token used (installation tokens rotate
    /// hourly), never the token itself.
    pub token_tag: String,
    /// Rate-limit units this request spent: 0 for a 304, GraphQL's points
    /// from the budget it reported, else 1.
    pub cost: u64,
}

#[derive(Default)]
struct SlotState {
    budgets: HashMap<Resource, Budget>,
    paused_until: Option<Instant>,
    secondary_hits: u32,
}

/// One credential's lane: one permit, so one request in flight, and
/// tokio's semaphore queues waiters in order.
struct Slot {
    id: CredId,
    lane: Semaphore,
    waiting: AtomicUsize,
    state: Mutex<SlotState>,
}

impl Slot {
    /// Remaining budget above `reserve`, or when it is usable again.
    fn usable(&self, resource: Resource, now: i64, reserve: u64) -> Result<u64, i64> {
        let st = self.state.lock().expect("slot lock");
        if let Some(until) = st.paused_until
            && until > Instant::now()
        {
            let left = until.saturating_duration_since(Instant::now()).as_secs() as i64;
            return Err(now + left + 1);
        }
        match st.budgets.get(&resource) {
            Some(b) if b.exhausted(now) || (b.remaining <= reserve && b.reset > now) => {
                Err(b.reset)
            }
            Some(b) => Ok(b.remaining),
            // Not used yet: worth trying before any partly spent one.
            None => Ok(u64::MAX),
        }
    }
}

/// An installation's token and its expiry (epoch seconds), behind an
/// async mutex held while minting.
type TokenCell = Arc<tokio::sync::Mutex<Option<(String, i64)>>>;

struct AppEntry {
    auth: AppAuth,
    /// Owner (lowercase) → installation id, or None when not installed.
    installations: Mutex<HashMap<String, Option<i64>>>,
    /// Installation → its token; the async mutex makes minting
    /// single-flight per installation.
    tokens: Mutex<HashMap<i64, TokenCell>>,
}

struct TokenEntry {
    name: String,
    secret: Secret,
    owners: Vec<String>,
    /// The operator says this token reaches nothing beyond `owners` (a
    /// fine-grained token whose resource owner is that organisation).
    confined: bool,
}

impl TokenEntry {
    /// Whether this token may serve `owner` for a caller of this reach.
    fn serves(&self, owner: &str, reach: Reach<'_>) -> bool {
        let routed = self.owners.is_empty() || self.owners.iter().any(|o| o == owner);
        match reach {
            Reach::Any => routed,
            Reach::Within(allowed) => {
                self.confined
                    && !self.owners.is_empty()
                    && self.owners.iter().any(|o| o == owner)
                    && self.owners.iter().all(|o| allowed.contains(o))
            }
        }
    }
}

pub struct Pool {
    http: reqwest::Client,
    api: String,
    apps: Vec<AppEntry>,
    tokens: Vec<TokenEntry>,
    slots: Mutex<HashMap<CredId, Arc<Slot>>>,
    max_queue: usize,
    reserve: u64,
    max_wait_secs: u64,
    metrics: crate::metrics::GithubMetrics,
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
                    Ok(AppEntry {
                        auth,
                        installations: Mutex::default(),
                        tokens: Mutex::default(),
                    })
                })
                .collect::<Result<_, PoolError>>()?;
        let tokens = cfg
            .tokens
            .iter()
            .filter_map(|t| {
                Some(TokenEntry {
                    name: t.name.clone(),
                    secret: t.token.clone()?,
                    owners: t.owners.iter().map(|o| o.to_lowercase()).collect(),
                    confined: t.confined,
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
            metrics: crate::metrics::GithubMetrics::default(),
        })
    }

    /// Records into these metrics (the server's registry) from now on.
    pub fn with_metrics(mut self, metrics: crate::metrics::GithubMetrics) -> Pool {
        self.metrics = metrics;
        self
    }

    /// Publishes every known credential's budgets into the gauges; called
    /// at scrape time.
    pub fn export_budgets(&self) {
        use crate::metrics::BudgetLabels;
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
                Arc::new(Slot {
                    id: id.clone(),
                    lane: Semaphore::new(1),
                    waiting: AtomicUsize::new(0),
                    state: Mutex::default(),
                })
            })
            .clone()
    }

    /// Sends `req` on behalf of `owner` (the org or user the path is about)
    /// with the best credential for it.
    pub async fn send(&self, owner: &str, req: Request) -> Result<Answer, PoolError> {
        self.send_within(owner, Reach::Any, req).await
    }

    /// [`Pool::send`], among only the credentials `reach` allows.
    pub async fn send_within(
        &self,
        owner: &str,
        reach: Reach<'_>,
        req: Request,
    ) -> Result<Answer, PoolError> {
        let candidates = self.candidates(owner, reach).await?;
        if candidates.is_empty() {
            return Err(match reach {
                Reach::Any => PoolError::NoCredential(owner.to_string()),
                Reach::Within(allowed) => PoolError::NotConfined {
                    owner: owner.to_string(),
                    within: allowed.join(", "),
                },
            });
        }
        self.send_among(&candidates, req).await
    }

    /// Sends a request as App `app_id` itself (its JWT), one at a time
    /// like every credential, within the budget GitHub reports for it.
    pub async fn send_app(&self, app_id: i64, req: Request) -> Result<Answer, PoolError> {
        if !self.apps.iter().any(|a| a.auth.id == app_id) {
            return Err(PoolError::Config(format!("app {app_id} is not configured")));
        }
        self.send_among(&[CredId::App(app_id)], req).await
    }

    /// Sends a request that concerns no particular owner (`/user`,
    /// `/search/...`) with a token allowed for any owner.
    pub async fn send_default(&self, req: Request) -> Result<Answer, PoolError> {
        let candidates: Vec<CredId> = self
            .tokens
            .iter()
            .filter(|t| t.owners.is_empty())
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
            let slot = match self.choose(candidates, resource, prefer) {
                Ok(slot) => slot,
                // Everything spent, but a reset is near: wait for it, once.
                Err(PoolError::Exhausted { reset, .. })
                    if !waited && reset - now_secs() <= self.max_wait_secs as i64 =>
                {
                    waited = true;
                    let ms = ((reset - now_secs()).max(0) * 1000 + 250) as u64;
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
            let label = crate::metrics::CredentialLabel {
                credential: slot.id.to_string(),
            };
            self.metrics
                .wait
                .get_or_create(&label)
                .observe(queued.elapsed().as_secs_f64());
            // Something may have paused or spent it while we queued: send
            // nothing to it then, choose again.
            if slot.usable(resource, now_secs(), self.reserve).is_err() {
                drop(permit);
                continue;
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
                reset: now_secs() + 1,
                resource,
            }))
    }

    /// The usable candidate with the most remaining budget, or `prefer`
    /// when it is usable: it holds the ETag, and a 304 costs nothing.
    fn choose(
        &self,
        candidates: &[CredId],
        resource: Resource,
        prefer: Option<&CredId>,
    ) -> Result<Arc<Slot>, PoolError> {
        let now = now_secs();
        let mut best: Option<(u64, usize, Arc<Slot>)> = None;
        let mut earliest = i64::MAX;
        for id in candidates {
            let slot = self.slot(id);
            match slot.usable(resource, now, self.reserve) {
                Ok(_) if prefer == Some(id) => return Ok(slot),
                Ok(remaining) => {
                    let waiting = slot.waiting.load(Ordering::SeqCst);
                    let better = match &best {
                        None => true,
                        Some((r, w, _)) => remaining > *r || (remaining == *r && waiting < *w),
                    };
                    if better {
                        best = Some((remaining, waiting, slot));
                    }
                }
                Err(back_at) => earliest = earliest.min(back_at),
            }
        }
        best.map(|(_, _, s)| s).ok_or(PoolError::Exhausted {
            reset: earliest,
            resource,
        })
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
            add_validators(&mut headers, req.validators.as_ref(), &slot.id, &token_tag);
            let resp = self
                .http
                .request(req.method.clone(), self.url(&req.path))
                .headers(headers)
                .header(http::header::AUTHORIZATION, auth)
                .body(req.body.clone())
                .send()
                .await
                .map_err(http_error)?;
            let label = crate::metrics::CredentialLabel {
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

    /// Learns from an answer: the budget it reports, and secondary limits
    /// (403/429 with `retry-after`, or GitHub's secondary-limit message).
    /// Returns the units the request spent.
    fn observe(
        &self,
        slot: &Slot,
        status: StatusCode,
        h: &HeaderMap,
        body: &[u8],
        asked: Resource,
    ) -> u64 {
        let mut st = slot.state.lock().expect("slot lock");
        let mut cost = u64::from(status != StatusCode::NOT_MODIFIED);
        if let Some((resource, b)) = budget::from_headers(h, asked) {
            // GraphQL costs points by query; with one request in flight per
            // credential, the drop in `remaining` within one window is it.
            if resource == Resource::Graphql
                && let Some(prev) = st.budgets.get(&resource)
                && prev.reset == b.reset
                && prev.remaining >= b.remaining
            {
                cost = (prev.remaining - b.remaining).max(cost);
            }
            st.budgets.insert(resource, b);
        }
        let limited = status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS;
        let retry_after = h
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let secondary = limited
            && (retry_after.is_some()
                || String::from_utf8_lossy(body).contains("secondary rate limit"));
        if secondary {
            st.secondary_hits += 1;
            self.metrics
                .secondary_limits
                .get_or_create(&crate::metrics::CredentialLabel {
                    credential: slot.id.to_string(),
                })
                .inc();
            let wait = retry_after.unwrap_or_else(|| {
                let step = SECONDARY_BASE_SECS << (st.secondary_hits - 1).min(5);
                rand::rng().random_range(step..=step + step / 2)
            });
            st.paused_until = Some(Instant::now() + Duration::from_secs(wait));
            tracing::warn!(credential = %slot.id, wait_secs = wait, "secondary rate limit: credential paused");
        } else if status.is_success() {
            st.secondary_hits = 0;
        }
        cost
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

    /// The API base URL GitHub's own links start with.
    pub fn api_url(&self) -> &str {
        &self.api
    }

    /// The Authorization header for a credential, and its fingerprint.
    async fn authorization(&self, id: &CredId, fresh: bool) -> Result<(String, String), PoolError> {
        let header = match id {
            CredId::App(app) => {
                let app = self
                    .apps
                    .iter()
                    .find(|a| a.auth.id == *app)
                    .expect("known app");
                format!("Bearer {}", app.auth.jwt(now_secs()))
            }
            CredId::Token(name) => {
                let t = self
                    .tokens
                    .iter()
                    .find(|t| &t.name == name)
                    .expect("known token");
                format!("token {}", String::from_utf8_lossy(t.secret.expose()))
            }
            CredId::Installation { app, installation } => {
                let app = self
                    .apps
                    .iter()
                    .find(|a| a.auth.id == *app)
                    .expect("known app");
                format!(
                    "token {}",
                    self.installation_token(app, *installation, fresh).await?
                )
            }
        };
        let tag = hex::encode(&Sha256::digest(header.as_bytes())[..8]);
        Ok((header, tag))
    }

    /// A cached installation token, minted when missing, expiring soon, or
    /// refused; never minted twice at once for one installation.
    async fn installation_token(
        &self,
        app: &AppEntry,
        installation: i64,
        fresh: bool,
    ) -> Result<String, PoolError> {
        let cell = app
            .tokens
            .lock()
            .expect("tokens lock")
            .entry(installation)
            .or_default()
            .clone();
        let mut cached = cell.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && !fresh
            && *expires - REFRESH_AHEAD_SECS > now_secs()
        {
            return Ok(token.clone());
        }
        let resp = self
            .http
            .post(format!(
                "{}/app/installations/{installation}/access_tokens",
                self.api
            ))
            .bearer_auth(app.auth.jwt(now_secs()))
            .header(http::header::ACCEPT, "application/vnd.github+json")
            .send()
            .await
            .map_err(http_error)?;
        if resp.status() == StatusCode::NOT_FOUND {
            // Uninstalled: forget where we thought it was.
            app.installations
                .lock()
                .expect("installations lock")
                .retain(|_, v| *v != Some(installation));
        }
        if resp.status() != StatusCode::CREATED {
            return Err(PoolError::Http(format!(
                "app {} could not mint a token for installation {installation}: HTTP {}",
                app.auth.id,
                resp.status()
            )));
        }
        let v: serde_json::Value = resp.json().await.map_err(http_error)?;
        let token = v["token"]
            .as_str()
            .ok_or_else(|| PoolError::Http("no token in answer".into()))?;
        let expires = crate::clock::parse_rfc3339_ms(v["expires_at"].as_str())
            .map(|ms| ms / 1000)
            .unwrap_or(now_secs() + 3600);
        *cached = Some((token.to_string(), expires));
        Ok(token.to_string())
    }

    /// The installations and tokens that can act for `owner` within `reach`.
    async fn candidates(&self, owner: &str, reach: Reach<'_>) -> Result<Vec<CredId>, PoolError> {
        let lower = owner.to_lowercase();
        let mut out = Vec::new();
        // An installation reaches only the account it is installed on.
        let installations_allowed = match reach {
            Reach::Any => true,
            Reach::Within(allowed) => allowed.contains(&lower),
        };
        for app in self.apps.iter().filter(|_| installations_allowed) {
            if let Some(installation) = self.installation_of(app, owner).await? {
                out.push(CredId::Installation {
                    app: app.auth.id,
                    installation,
                });
            }
        }
        out.extend(
            self.tokens
                .iter()
                .filter(|t| t.serves(&lower, reach))
                .map(|t| CredId::Token(t.name.clone())),
        );
        Ok(out)
    }

    /// Where an App is installed for `owner` (an org, else a user), cached.
    async fn installation_of(&self, app: &AppEntry, owner: &str) -> Result<Option<i64>, PoolError> {
        let key = owner.to_lowercase();
        if let Some(found) = app
            .installations
            .lock()
            .expect("installations lock")
            .get(&key)
        {
            return Ok(*found);
        }
        let mut found = None;
        for kind in ["orgs", "users"] {
            let resp = self
                .http
                .get(format!("{}/{kind}/{owner}/installation", self.api))
                .bearer_auth(app.auth.jwt(now_secs()))
                .send()
                .await
                .map_err(http_error)?;
            match resp.status() {
                StatusCode::OK => {
                    let v: serde_json::Value = resp.json().await.map_err(http_error)?;
                    found = v["id"].as_i64();
                    break;
                }
                StatusCode::NOT_FOUND => continue,
                s => {
                    return Err(PoolError::Http(format!(
                        "installation lookup for {owner}: HTTP {s}"
                    )));
                }
            }
        }
        app.installations
            .lock()
            .expect("installations lock")
            .insert(key, found);
        Ok(found)
    }

    /// Asks GitHub for every credential's budgets now: each App's
    /// installations (through `GET /app/installations`) and each token, via
    /// `GET /rate_limit`, which costs nothing.
    pub async fn probe(&self) -> Result<Vec<ProbeRow>, PoolError> {
        let mut rows = Vec::new();
        for app in &self.apps {
            let resp = self
                .http
                .get(format!("{}/app/installations?per_page=100", self.api))
                .bearer_auth(app.auth.jwt(now_secs()))
                .send()
                .await
                .map_err(http_error)?;
            if !resp.status().is_success() {
                return Err(PoolError::Http(format!(
                    "app {}: GET /app/installations: HTTP {}",
                    app.auth.id,
                    resp.status()
                )));
            }
            let list: serde_json::Value = resp.json().await.map_err(http_error)?;
            for inst in list.as_array().into_iter().flatten() {
                let Some(id) = inst["id"].as_i64() else {
                    continue;
                };
                let owner = inst["account"]["login"].as_str().unwrap_or("?").to_string();
                let token = self.installation_token(app, id, false).await?;
                let cred = CredId::Installation {
                    app: app.auth.id,
                    installation: id,
                };
                rows.extend(
                    self.rate_limit_rows(&cred, &owner, &format!("token {token}"))
                        .await?,
                );
            }
        }
        for t in &self.tokens {
            let auth = format!("token {}", String::from_utf8_lossy(t.secret.expose()));
            let scope = if t.owners.is_empty() {
                "any owner".to_string()
            } else {
                t.owners.join(",")
            };
            rows.extend(
                self.rate_limit_rows(&CredId::Token(t.name.clone()), &scope, &auth)
                    .await?,
            );
        }
        Ok(rows)
    }

    async fn rate_limit_rows(
        &self,
        cred: &CredId,
        owner: &str,
        auth: &str,
    ) -> Result<Vec<ProbeRow>, PoolError> {
        let resp = self
            .http
            .get(format!("{}/rate_limit", self.api))
            .header(http::header::AUTHORIZATION, auth)
            .send()
            .await
            .map_err(http_error)?;
        if !resp.status().is_success() {
            return Err(PoolError::Http(format!(
                "{cred}: GET /rate_limit: HTTP {}",
                resp.status()
            )));
        }
        let v: serde_json::Value = resp.json().await.map_err(http_error)?;
        let mut rows = Vec::new();
        for (resource, b) in v["resources"].as_object().into_iter().flatten() {
            rows.push(ProbeRow {
                credential: cred.to_string(),
                owner: owner.to_string(),
                resource: resource.clone(),
                limit: b["limit"].as_u64().unwrap_or(0),
                remaining: b["remaining"].as_u64().unwrap_or(0),
                reset: b["reset"].as_i64().unwrap_or(0),
            });
        }
        Ok(rows)
    }

    /// Forgets what discovery learned about `owner` (an `installation`
    /// webhook said it changed).
    pub fn forget_owner(&self, owner: &str) {
        for app in &self.apps {
            app.installations
                .lock()
                .expect("installations lock")
                .remove(&owner.to_lowercase());
        }
    }

    /// What discovery has learned: per App, each owner it looked up and the
    /// installation there (None: not installed). For the admin UI.
    pub fn installations(&self) -> Vec<Installed> {
        let mut out: Vec<Installed> = self
            .apps
            .iter()
            .flat_map(|app| {
                let known = app.installations.lock().expect("installations lock");
                known
                    .iter()
                    .map(|(owner, inst)| Installed {
                        app: app.auth.id,
                        owner: owner.clone(),
                        installation: *inst,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| (&a.owner, a.app).cmp(&(&b.owner, b.app)));
        out
    }

    /// Each token's name and the owners it may serve (empty: any).
    pub fn token_owners(&self) -> Vec<(String, Vec<String>)> {
        self.tokens
            .iter()
            .map(|t| (t.name.clone(), t.owners.clone()))
            .collect()
    }

    /// Each known credential's budgets and pause, for status and metrics.
    pub fn snapshot(&self) -> Vec<CredStatus> {
        let slots = self.slots.lock().expect("slots lock");
        let mut out: Vec<_> = slots
            .values()
            .map(|s| {
                let st = s.state.lock().expect("slot lock");
                CredStatus {
                    id: s.id.clone(),
                    budgets: st.budgets.iter().map(|(r, b)| (*r, *b)).collect(),
                    paused: st.paused_until.is_some_and(|u| u > Instant::now()),
                }
            })
            .collect();
        out.sort_by_key(|c| c.id.to_string());
        out
    }
}

/// Adds the validator that can work for this credential and token, after
/// dropping any the caller passed (they belong to the caller's cache).
fn add_validators(headers: &mut HeaderMap, v: Option<&Validators>, cred: &CredId, token_tag: &str) {
    let Some(v) = v else {
        return;
    };
    headers.remove(http::header::IF_NONE_MATCH);
    headers.remove(http::header::IF_MODIFIED_SINCE);
    if let Some(e) = &v.etag
        && &e.credential == cred
        && e.token_tag == token_tag
        && let Ok(value) = HeaderValue::from_str(&e.etag)
    {
        headers.insert(http::header::IF_NONE_MATCH, value);
        return;
    }
    if let Some(lm) = &v.last_modified
        && let Ok(value) = HeaderValue::from_str(lm)
    {
        headers.insert(http::header::IF_MODIFIED_SINCE, value);
    }
}
