//! The API side: GitHub's REST paths (also under `/api/v3`), GraphQL, and
//! fakehub's own `/_fakehub` control endpoints. Every GitHub request passes
//! one pipeline: auth → concurrency (secondary limit) → injected faults →
//! primary limit → handler → conditional request (ETag, Last-Modified) →
//! `x-ratelimit-*` headers.

mod apps;
mod control;
mod graphql;
mod hooks;
mod introspection;
mod repos;
pub mod respond;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::auth::{self, Credential};
use crate::hub::Hub;
use crate::limits::{Admission, Bucket, Resource};
use crate::world::now_secs;
use respond::ApiError;

/// The caller, as the pipeline authenticated it.
pub struct Cred(pub Credential);

impl<S: Send + Sync> FromRequestParts<S> for Cred {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Credential>()
            .cloned()
            .map(Cred)
            .ok_or_else(|| ApiError::unauthorized("Requires authentication"))
    }
}

fn github_routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/app", get(apps::get_app))
        .route("/app/installations", get(apps::list_installations))
        .route("/app/installations/{id}", get(apps::get_installation))
        .route(
            "/app/installations/{id}/access_tokens",
            post(apps::create_token),
        )
        .route("/orgs/{org}/installation", get(apps::org_installation))
        .route("/users/{user}/installation", get(apps::user_installation))
        .route(
            "/repos/{owner}/{repo}/installation",
            get(apps::repo_installation),
        )
        .route(
            "/installation/repositories",
            get(apps::installation_repositories),
        )
        .route("/app/hook/deliveries", get(hooks::app_list))
        .route("/app/hook/deliveries/{id}", get(hooks::app_get))
        .route(
            "/app/hook/deliveries/{id}/attempts",
            post(hooks::app_redeliver),
        )
        .route(
            "/repos/{owner}/{repo}/hooks/{hook}/deliveries",
            get(hooks::repo_list),
        )
        .route(
            "/repos/{owner}/{repo}/hooks/{hook}/deliveries/{id}",
            get(hooks::repo_get),
        )
        .route(
            "/repos/{owner}/{repo}/hooks/{hook}/deliveries/{id}/attempts",
            post(hooks::repo_redeliver),
        )
        .route("/orgs/{org}/hooks/{hook}/deliveries", get(hooks::org_list))
        .route(
            "/orgs/{org}/hooks/{hook}/deliveries/{id}",
            get(hooks::org_get),
        )
        .route(
            "/orgs/{org}/hooks/{hook}/deliveries/{id}/attempts",
            post(hooks::org_redeliver),
        )
        .route("/rate_limit", get(apps::rate_limit))
        .route("/user", get(repos::get_user))
        .route("/user/repos", get(repos::list_user_repos))
        .route("/repositories/{id}", get(repos::get_repo_by_id))
        .route("/search/repositories", get(repos::search_repos))
        .route("/users/{user}", get(repos::get_account))
        .route("/orgs/{org}", get(repos::get_account))
        .route("/orgs/{org}/repos", get(repos::list_account_repos))
        .route("/users/{user}/repos", get(repos::list_account_repos))
        .route("/repos/{owner}/{repo}", get(repos::get_repo))
        .route("/repos/{owner}/{repo}/pulls", get(repos::list_pulls))
        .route("/repos/{owner}/{repo}/pulls/{n}", get(repos::get_pull))
        .route(
            "/repos/{owner}/{repo}/pulls/{n}/files",
            get(repos::pull_files),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{n}/commits",
            get(repos::pull_commits),
        )
        .route("/repos/{owner}/{repo}/issues", get(repos::list_issues))
        .route("/repos/{owner}/{repo}/issues/{n}", get(repos::get_issue))
        .route(
            "/repos/{owner}/{repo}/issues/{n}/comments",
            get(repos::list_comments).post(repos::create_comment),
        )
        .route("/repos/{owner}/{repo}/commits", get(repos::list_commits))
        .route("/repos/{owner}/{repo}/commits/{r}", get(repos::get_commit))
        .route(
            "/repos/{owner}/{repo}/commits/{r}/statuses",
            get(repos::list_statuses),
        )
        .route(
            "/repos/{owner}/{repo}/commits/{r}/status",
            get(repos::combined_status),
        )
        .route(
            "/repos/{owner}/{repo}/commits/{r}/check-runs",
            get(repos::list_check_runs),
        )
        .route(
            "/repos/{owner}/{repo}/statuses/{sha}",
            post(repos::create_status),
        )
        .route(
            "/repos/{owner}/{repo}/check-runs",
            post(repos::create_check_run),
        )
        .route("/repos/{owner}/{repo}/branches", get(repos::list_branches))
        .route("/repos/{owner}/{repo}/branches/{b}", get(repos::get_branch))
}

pub fn router(hub: Arc<Hub>) -> Router {
    let gh = github_routes().route("/meta", get(meta));
    // github.com answers at the root (and, as fakehub always did, under
    // /api/v3 too); GHES only under its prefixes.
    let root = match hub.enterprise {
        Some(_) => Router::new(),
        None => gh.clone().route("/graphql", post(graphql::handle)),
    };
    root.nest("/api/v3", gh)
        .route("/api/graphql", post(graphql::handle))
        .route("/_fakehub/stats", get(control::stats))
        .route("/_fakehub/stats/reset", post(control::reset_stats))
        .route("/_fakehub/deliver", post(control::deliver))
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn_with_state(hub.clone(), pipeline))
        .with_state(hub)
}

/// `GET /meta`: what GitHub says of itself; GHES adds `installed_version`.
async fn meta(State(hub): State<Arc<Hub>>) -> Response {
    let mut v = serde_json::json!({
        "verifiable_password_authentication": false,
        "hooks": ["127.0.0.1/32"],
    });
    if let Some(e) = &hub.enterprise {
        v["installed_version"] = e.version.clone().into();
    }
    axum::Json(v).into_response()
}

/// The path without the GHES prefix.
pub fn api_path(path: &str) -> &str {
    path.strip_prefix("/api/v3").unwrap_or(path)
}

async fn pipeline(State(hub): State<Arc<Hub>>, mut req: Request, next: Next) -> Response {
    let path = api_path(req.uri().path()).to_string();
    if path.starts_with("/_fakehub") {
        return next.run(req).await;
    }
    let now = now_secs();
    let cred = {
        let world = hub.world.lock().expect("world lock");
        auth::authenticate(&world, req.headers(), now)
    };
    let cred = match cred {
        Ok(c) => c,
        Err(e) => return ApiError::unauthorized(e.to_string()).into_response(),
    };
    let resource = if path == "/graphql" || path == "/api/graphql" {
        Resource::Graphql
    } else if path.starts_with("/search/") {
        Resource::Search
    } else {
        Resource::Core
    };
    // In flight from here (including injected latency) until answered.
    let _in_flight = match hub.limits.enter(&cred) {
        Admission::Go(g) => g,
        Admission::Secondary(after) => return secondary_limited(after, None),
    };
    let fault = hub
        .faults
        .decide(req.method().as_str(), &path, Some(&cred.rate_key()));
    if !fault.latency.is_zero() {
        tokio::time::sleep(fault.latency).await;
    }
    if let Some(status) = fault.error_status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        let message = fault.message.as_deref();
        if let Some(after) = fault.retry_after {
            let mut r = secondary_limited(after, message);
            *r.status_mut() = status;
            return r;
        }
        return ApiError::new(status, message.unwrap_or("Server Error")).into_response();
    }
    // `/rate_limit` is free; GraphQL charges points once it knows the cost.
    let charged = resource != Resource::Graphql && path != "/rate_limit";
    if charged && let Err(bucket) = hub.limits.try_spend(&cred, resource, 1, now) {
        let message = cred.exhausted_message(&hub.world.lock().expect("world lock"));
        let mut r = ApiError {
            status: StatusCode::FORBIDDEN,
            message,
            docs: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        }
        .into_response();
        rate_headers(r.headers_mut(), resource, &bucket);
        return r;
    }
    let conditional = req.method() == Method::GET && resource != Resource::Graphql;
    let validators = Validators::from(req.headers());
    req.extensions_mut().insert(cred.clone());
    let mut resp = next.run(req).await;
    if conditional && resp.status() == StatusCode::OK {
        resp = apply_validators(resp, &cred, &validators).await;
        if resp.status() == StatusCode::NOT_MODIFIED && charged {
            hub.limits.refund(&cred, resource, 1, now);
        }
    }
    let bucket = hub.limits.bucket(&cred, resource, now);
    rate_headers(resp.headers_mut(), resource, &bucket);
    let request_id = format!(
        "{:08X}:{:04X}",
        rand::random::<u32>(),
        rand::random::<u16>()
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-github-request-id", v);
    }
    resp
}

/// GitHub's answer to a secondary limit (its current message, unless
/// `message` says otherwise), with `retry-after`.
fn secondary_limited(after: u64, message: Option<&str>) -> Response {
    let mut r = ApiError {
        status: StatusCode::FORBIDDEN,
        message: message.unwrap_or("You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.").into(),
        docs: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
    }
    .into_response();
    r.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(after));
    r
}

pub fn rate_headers(h: &mut HeaderMap, resource: Resource, b: &Bucket) {
    h.insert("x-ratelimit-limit", HeaderValue::from(b.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(b.remaining()));
    h.insert("x-ratelimit-used", HeaderValue::from(b.used));
    h.insert("x-ratelimit-reset", HeaderValue::from(b.reset));
    h.insert(
        "x-ratelimit-resource",
        HeaderValue::from_static(resource.as_str()),
    );
}

struct Validators {
    if_none_match: Option<String>,
    if_modified_since: Option<std::time::SystemTime>,
}

impl Validators {
    fn from(h: &HeaderMap) -> Validators {
        Validators {
            if_none_match: h
                .get(http::header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            if_modified_since: h
                .get(http::header::IF_MODIFIED_SINCE)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| httpdate::parse_http_date(s).ok()),
        }
    }
}

/// The ETag of a body as read by one credential. GitHub's ETags vary with
/// the token (its responses `Vary: Authorization`), so a validator stored
/// under one token does not match under another.
pub fn etag_for(cred: &Credential, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(cred.token_label().as_bytes());
    h.update([0]);
    h.update(body);
    format!("W/\"{}\"", &hex::encode(h.finalize())[..40])
}

fn strip_weak(tag: &str) -> &str {
    tag.trim().strip_prefix("W/").unwrap_or(tag.trim())
}

/// Adds `ETag`, and turns the answer into a bodiless 304 when the client's
/// validator still holds ("Use conditional requests if appropriate").
async fn apply_validators(resp: Response, cred: &Credential, v: &Validators) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let etag = etag_for(cred, &bytes);
    parts.headers.insert(
        http::header::ETAG,
        HeaderValue::from_str(&etag).expect("ascii etag"),
    );
    parts.headers.insert(
        http::header::VARY,
        HeaderValue::from_static("Accept, Authorization, Cookie, X-GitHub-OTP"),
    );
    let not_modified = match (&v.if_none_match, v.if_modified_since) {
        // If-None-Match wins over If-Modified-Since (RFC 9110, 13.2.2).
        (Some(inm), _) => inm
            .split(',')
            .any(|t| t.trim() == "*" || strip_weak(t) == strip_weak(&etag)),
        (None, Some(since)) => parts
            .headers
            .get(http::header::LAST_MODIFIED)
            .and_then(|lm| lm.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok())
            .is_some_and(|lm| lm <= since),
        (None, None) => false,
    };
    if not_modified {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(http::header::CONTENT_LENGTH);
        parts.headers.remove(http::header::CONTENT_TYPE);
        return Response::from_parts(parts, axum::body::Body::empty());
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}
