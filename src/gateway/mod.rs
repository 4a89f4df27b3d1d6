//! The GitHub API gateway: one base URL that speaks GitHub's REST (also
//! under `/api/v3`) and GraphQL APIs. Each request passes one pipeline:
//! client token → scopes and owners → the owner whose credentials serve
//! it → cache (reads) or pass-through (everything else) through the
//! credential pool → GitHub's answer with URLs pointing back here.

pub mod cache;
pub mod clients;
pub mod graphql;
pub mod metrics;
pub mod paths;
pub mod refusal;
pub mod registry;
pub mod report;
pub mod rewrite;
pub mod route;
pub mod share;
pub mod upstream;
pub mod usage;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::config::GatewayConfig;
use crate::github::{Pool, Reach};
use crate::server::body::{self, BodyError};
use crate::store::Store;
use cache::Cache;
use clients::Client;
use refusal::Refusal;
use upstream::{Fetched, Inflight, Route};
use usage::{Outcome, Recorder, Served};

/// Client label for requests whose token was missing or unknown.
const UNAUTHENTICATED: &str = "(unauthenticated)";
const DOCS: &str = "https://docs.github.com/rest";

pub struct GatewayState {
    pub pool: Arc<Pool>,
    pub journal: Store,
    pub cache: Arc<Cache>,
    pub usage: Arc<Recorder>,
    pub config: GatewayConfig,
    pub inflight: Inflight,
    /// Bad tokens per client address.
    pub throttle: crate::throttle::Throttle,
    /// Fair shares and the priority part of each owner's budget.
    pub shares: share::Shares,
    /// How request bodies are read (the budget is shared with ingest).
    pub body: body::Limits,
}

pub fn router(state: Arc<GatewayState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// GitHub's error shape, pointing at the REST docs.
pub fn github_error(message: &str) -> (HeaderMap, Bytes) {
    crate::github::error_answer(message, DOCS)
}

fn refuse(status: StatusCode, message: &str) -> Fetched {
    let (headers, body) = github_error(message);
    Fetched::uncached(status, headers, body, Outcome::Bypass)
}

fn refused(why: &Refusal) -> Fetched {
    refuse(why.status(), &why.to_string())
}

async fn handle(State(s): State<Arc<GatewayState>>, req: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let Some(target) = route::target(&parts.uri) else {
        // Not a GitHub API path: nothing to authenticate, nothing to send.
        let (headers, body) = github_error("Not Found");
        let f = Fetched::uncached(StatusCode::NOT_FOUND, headers, body, Outcome::Bypass);
        let who = Who {
            client: UNAUTHENTICATED,
            route: "(not GitHub's API)",
            owner: None,
        };
        return finish(&s, who, &parts, "", f, started);
    };
    // Set by our listener; without it all such requests share one throttle.
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    let route = paths::template(&parts.method, &target.path);
    let client = match authenticate(&s, &parts.headers, peer).await {
        Ok(c) => c,
        Err(refusal) => {
            let who = Who {
                client: UNAUTHENTICATED,
                route: &route,
                owner: target.owner.as_deref(),
            };
            return finish(&s, who, &parts, target.prefix, refusal, started);
        }
    };
    let owner = owner_of(&s, &client, &target);
    let fetched = serve(&s, &client, owner.as_deref(), &parts, &target, body).await;
    let who = Who {
        client: &client.name,
        route: &route,
        owner: owner.as_deref(),
    };
    finish(&s, who, &parts, target.prefix, fetched, started)
}

/// Whom an answer is accounted to.
struct Who<'a> {
    client: &'a str,
    route: &'a str,
    owner: Option<&'a str>,
}

/// Accounts for the answer and makes it the client's: URLs rewritten to
/// this gateway, the client's own conditional request honoured.
fn finish(
    s: &GatewayState,
    who: Who<'_>,
    parts: &Parts,
    prefix: &str,
    f: Fetched,
    started: Instant,
) -> Response {
    let rewriter = rewrite::Rewriter::new(
        s.pool.api_url(),
        base_url(&s.config, parts, prefix),
        s.config.rewrite_body_urls,
    );
    let mut headers = f.headers;
    rewriter.headers(&mut headers);
    headers.insert(
        "x-gatehouse-cache",
        HeaderValue::from_static(f.outcome.as_str()),
    );
    let mut status = f.status;
    let unchanged = f
        .content_etag
        .as_deref()
        .is_some_and(|etag| not_modified(&parts.headers, etag, headers.get(header::LAST_MODIFIED)));
    if unchanged {
        status = StatusCode::NOT_MODIFIED;
        headers.remove(header::CONTENT_TYPE);
    }
    let body = if unchanged || parts.method == Method::HEAD {
        Bytes::new()
    } else {
        rewriter.body(&headers, f.body)
    };
    s.usage.record(Served {
        client: who.client,
        route: who.route,
        owner: who.owner,
        credential: f.credential.as_deref(),
        refused_by: f.refused_by,
        status: status.as_u16(),
        outcome: f.outcome,
        spent: f.spent,
        saved: f.saved,
        took: started.elapsed(),
    });
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Whether the client's own validators (ours, from an earlier answer)
/// still hold. If-None-Match wins over If-Modified-Since (RFC 9110).
fn not_modified(h: &HeaderMap, etag: &str, last_modified: Option<&HeaderValue>) -> bool {
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
    if let Some(inm) = h.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return inm
            .split(',')
            .any(|t| t.trim() == "*" || weak(t) == weak(etag));
    }
    let date = |v: Option<&HeaderValue>| {
        v.and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok())
    };
    match (date(h.get(header::IF_MODIFIED_SINCE)), date(last_modified)) {
        (Some(since), Some(lm)) => lm <= since,
        _ => false,
    }
}

/// The gateway's base URL as this client reached it, with the prefix it
/// used (`/api/v3` for GHES-style clients).
fn base_url(config: &GatewayConfig, parts: &Parts, prefix: &str) -> String {
    if !config.public_url.is_empty() {
        return format!("{}{prefix}", config.public_url.trim_end_matches('/'));
    }
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    format!("http://{host}{prefix}")
}

/// The client holding the request's token (`token X` or `Bearer X`). An
/// address that sent too many bad tokens is refused first: tokens are
/// compared by their SHA-256 (one index probe), so no timing tells a
/// guesser anything, and the throttle makes guessing slow besides.
async fn authenticate(
    s: &GatewayState,
    h: &HeaderMap,
    peer: std::net::IpAddr,
) -> Result<Client, Fetched> {
    if let Some(wait) = s.throttle.wait(peer).await {
        let mut f = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "gatehouse: too many bad tokens from your address; retry in {} s",
                wait.as_secs()
            ),
        );
        f.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
        return Err(f);
    }
    let refused = authenticate_token(s, h).await;
    if let Err(f) = &refused
        && f.status == StatusCode::UNAUTHORIZED
    {
        s.throttle.fail(peer).await;
    }
    refused
}

async fn authenticate_token(s: &GatewayState, h: &HeaderMap) -> Result<Client, Fetched> {
    let Some(auth) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(refuse(StatusCode::UNAUTHORIZED, "Requires authentication"));
    };
    let token = auth
        .strip_prefix("token ")
        .or_else(|| auth.strip_prefix("Bearer "))
        .or_else(|| auth.strip_prefix("bearer "))
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() {
        return Err(refuse(StatusCode::UNAUTHORIZED, "Bad credentials"));
    }
    let hash = clients::hash_token(token);
    let found = clients::lookup(&s.journal, &hash).await;
    match found {
        Ok(Some(c)) => Ok(c),
        Ok(None) => Err(refuse(StatusCode::UNAUTHORIZED, "Bad credentials")),
        Err(e) => {
            tracing::warn!(error = %e, "gateway: cannot read clients");
            Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "gatehouse: cannot check the token right now",
            ))
        }
    }
}

/// Refuses a request that would spend what its client may not (quota,
/// priority, fair share) before anything is sent upstream; accounts for
/// what the rest spent; gives a client with a quota its own budget in the
/// `x-ratelimit-*` headers (the credential's move aside).
async fn serve(
    s: &GatewayState,
    client: &Client,
    owner: Option<&str>,
    parts: &Parts,
    target: &route::Target,
    body: Body,
) -> Fetched {
    // Checked first, so that a request this client may not send neither
    // counts it active for an owner's shares nor reads its quota; every
    // request but GraphQL's is refused so before its body is read.
    if let Err(why) = may_send(client, owner, parts, target) {
        return refused(&why);
    }
    // The budget the body holds is given back once GitHub has answered.
    let (body, _held) = match read_body(s, parts, body).await {
        Ok(read) => read.into_parts(),
        Err(refusal) => return refusal,
    };
    if target.graphql
        && parts.method == Method::POST
        && let Err(why) = may_run(client, &body, &target.path)
    {
        return refused(&why);
    }
    let resource = crate::github::budget::Resource::for_path(&target.path);
    // Only what a rule needs is looked up: most clients have no quota.
    let mut admitted = match client.limits.quota_per_hour {
        Some(_) => {
            let (used, oldest) = s.usage.spent_in_hour(&client.name);
            share::quota(client, used, oldest, s.usage.now_ms())
        }
        None => Ok(()),
    };
    if admitted.is_ok()
        && s.shares.enabled()
        && let Some(o) = owner
    {
        let within = sorted(&client.owners);
        let budget = s.pool.owner_budget(o, reach(&within), resource).await;
        admitted = s.shares.admit(client, o, resource, budget);
    }
    let mut f = match admitted {
        Ok(()) => serve_admitted(s, client, owner, parts, target, body).await,
        Err(r) => {
            let mut f = refuse(StatusCode::FORBIDDEN, &r.message);
            f.refused_by = Some(r.rule.as_str());
            r.headers(&mut f.headers);
            return f;
        }
    };
    if let Some(o) = owner {
        s.shares.spent(&client.name, o, resource, f.spent);
    }
    if let Some(q) = client.limits.quota_per_hour {
        let (used, oldest) = s.usage.spent_in_hour(&client.name);
        // Not yet recorded: this request's own units.
        let used = used + f.spent;
        for name in [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-used",
            "x-ratelimit-reset",
            "x-ratelimit-resource",
        ] {
            if let Some(v) = f.headers.remove(name) {
                let aside = format!("x-gatehouse-upstream-{}", &name[2..]);
                f.headers.insert(
                    http::HeaderName::from_bytes(aside.as_bytes()).expect("a valid name"),
                    v,
                );
            }
        }
        share::ratelimit_headers(
            &mut f.headers,
            q,
            q.saturating_sub(used),
            used,
            share::quota_reset(oldest, s.usage.now_ms()),
            crate::github::budget::Resource::Core,
        );
    }
    f
}

/// The owner whose credentials serve a request: the path's, else the
/// client's first, else the configured default.
fn owner_of(s: &GatewayState, client: &Client, target: &route::Target) -> Option<String> {
    target
        .owner
        .clone()
        .or_else(|| client.owners.first().cloned())
        .or_else(|| Some(s.config.default_owner.to_lowercase()).filter(|o| !o.is_empty()))
}

fn sorted(owners: &[String]) -> Vec<String> {
    let mut v = owners.to_vec();
    v.sort();
    v
}

/// A client limited to owners is served only by credentials confined to
/// them.
fn reach(within: &[String]) -> Reach<'_> {
    if within.is_empty() {
        Reach::Any
    } else {
        Reach::Within(within)
    }
}

/// The checks that need no body: the path, the scope (GraphQL's depends
/// on the operation in the body, so it comes once that is read), and the
/// owner. Requests that name no owner act for the client's first owner,
/// else the configured default, else a token allowed for any owner. A
/// client limited to owners is served only by credentials confined to
/// them, whatever the path: GraphQL, /search or /repositories/{id} can
/// reach any repository the credential can.
fn may_send(
    client: &Client,
    owner: Option<&str>,
    parts: &Parts,
    target: &route::Target,
) -> Result<(), Refusal> {
    route::check_path(&target.path)?;
    let graphql_post = target.graphql && parts.method == Method::POST;
    if !graphql_post {
        client.check_scope(&parts.method, &target.path)?;
    }
    match owner {
        Some(o) => client.check_owner(o),
        None => Ok(()),
    }
}

/// A GraphQL request's scope: which operation its body runs.
fn may_run(client: &Client, body: &[u8], path: &str) -> Result<(), Refusal> {
    client.check_graphql(graphql::operation(body)?, path)
}

async fn serve_admitted(
    s: &GatewayState,
    client: &Client,
    owner: Option<&str>,
    parts: &Parts,
    target: &route::Target,
    body: Bytes,
) -> Fetched {
    let within = sorted(&client.owners);
    let reach = reach(&within);
    // Whose credentials read an answer decides who may see it again: an
    // answer read by a credential that reaches further is never served to
    // a client confined to fewer owners.
    let scope = match (owner, reach) {
        (Some(o), Reach::Within(w)) => format!("{o}|within:{}", w.join(",")),
        (Some(o), Reach::Any) => o.to_string(),
        (None, _) => "*default".into(),
    };
    let route = Route {
        pool: &s.pool,
        owner,
        reach,
        scope: &scope,
    };
    let cache_control = parts
        .headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let read = parts.method == Method::GET || parts.method == Method::HEAD;
    if read && !target.graphql && !cache_control.contains("no-store") {
        let f = upstream::cached(
            &route,
            &s.cache,
            &s.inflight,
            &target.path_and_query,
            &parts.headers,
            cache_control.contains("no-cache"),
        )
        .await;
        return Arc::unwrap_or_clone(f);
    }
    let mut headers = rewrite::upstream_request_headers(&parts.headers);
    // The client's validators are not GitHub's; pass-through requests
    // carry them unchanged (the client talks to GitHub directly then).
    for name in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE] {
        if let Some(v) = parts.headers.get(&name) {
            headers.insert(name, v.clone());
        }
    }
    let f = upstream::bypass(
        &route,
        crate::github::Request {
            method: parts.method.clone(),
            path: target.path_and_query.clone(),
            headers,
            body,
            validators: None,
        },
    )
    .await;
    if !read && f.status.is_success() && !target.graphql {
        // A change made through us: cached reads of that repository (or
        // owner) are revalidated before they are served again.
        s.cache.expire_prefix(changed_prefix(&target.path)).await;
    }
    f
}

/// The request body under the size limit, the shared memory budget and
/// the minimum pace; refusals shaped as GitHub's errors.
async fn read_body(s: &GatewayState, parts: &Parts, body: Body) -> Result<body::Read, Fetched> {
    let read = match body::declared(&parts.headers, s.body.max_bytes) {
        Ok(declared) => body::read(body, declared, &s.body).await,
        Err(e) => Err(e),
    };
    read.map_err(|e| {
        let status = match e {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Timeout | BodyError::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        };
        let mut f = refuse(status, &format!("gatehouse: {e}"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            f.headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        f
    })
}

/// `/repos/o/r/issues/1/comments` → `/repos/o/r`; `/orgs/o/...` → `/orgs/o`.
fn changed_prefix(path: &str) -> String {
    let depth = if path.starts_with("/repos/") { 3 } else { 2 };
    path.split('/')
        .take(depth + 1)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_validators_are_honoured() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"gh-1\", W/\"gh-2\""),
        );
        assert!(not_modified(&h, "W/\"gh-2\"", None));
        assert!(!not_modified(&h, "W/\"gh-3\"", None));
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Tue, 01 Sep 2026 10:00:00 GMT"),
        );
        let lm = HeaderValue::from_static("Tue, 01 Sep 2026 09:00:00 GMT");
        assert!(not_modified(&h, "W/\"x\"", Some(&lm)));
        let later = HeaderValue::from_static("Tue, 01 Sep 2026 11:00:00 GMT");
        assert!(!not_modified(&h, "W/\"x\"", Some(&later)));
    }

    #[test]
    fn changes_expire_their_repository() {
        assert_eq!(changed_prefix("/repos/o/r/issues/1/comments"), "/repos/o/r");
        assert_eq!(changed_prefix("/orgs/o/teams"), "/orgs/o");
        assert_eq!(changed_prefix("/user/repos"), "/user/repos");
    }
}
