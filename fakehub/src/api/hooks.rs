//! The delivery log as GitHub exposes it: for an App's webhook (JWT) and
//! for repository and organisation hooks (a token that can see them).
//! Newest first, cursor pagination, redelivery by id.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::Cred;
use super::respond::{self, ApiError, ApiResult};
use crate::auth::Credential;
use crate::hub::Hub;
use crate::webhooks::HookRef;
use crate::world::key;

type Q = Query<HashMap<String, String>>;

fn app_hook(cred: &Credential) -> Result<HookRef, ApiError> {
    match cred {
        Credential::App { app_id } => Ok(HookRef::App(*app_id)),
        _ => Err(ApiError::jwt_required()),
    }
}

/// A repository or org hook the caller may administer.
fn owned_hook(
    hub: &Hub,
    cred: &Credential,
    owner: &str,
    repo: Option<&str>,
    hook: i64,
) -> Result<HookRef, ApiError> {
    let w = hub.world();
    let h = w.hooks.get(&hook).ok_or_else(ApiError::not_found)?;
    let same_repo = h.repo.as_deref().map(key) == repo.map(key);
    if key(&h.owner) != key(owner) || !same_repo {
        return Err(ApiError::not_found());
    }
    let allowed = match (cred, repo) {
        (Credential::Pat { .. } | Credential::Installation { .. }, Some(r)) => w
            .repos
            .get(&key(&format!("{owner}/{r}")))
            .is_some_and(|r| super::repos::can_see(&w, cred, r)),
        (Credential::Pat { .. }, None) => true,
        (
            Credential::Installation {
                installation_id, ..
            },
            None,
        ) => w
            .installations
            .get(installation_id)
            .is_some_and(|i| key(&i.account) == key(owner)),
        _ => false,
    };
    if !allowed {
        return Err(ApiError::not_found());
    }
    Ok(HookRef::Hook(hook))
}

fn list(hub: &Hub, hook: HookRef, uri: &http::Uri, q: &HashMap<String, String>) -> ApiResult {
    let per_page = q
        .get("per_page")
        .map(|v| {
            v.parse::<usize>()
                .map_err(|_| ApiError::invalid("per_page must be a number"))
        })
        .transpose()?
        .unwrap_or(30)
        .clamp(1, 100);
    let before = match q.get("cursor") {
        Some(c) => Some(
            c.strip_prefix("v1_")
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| ApiError::invalid("Invalid cursor"))?,
        ),
        None => None,
    };
    let log = hub.log.lock().expect("log lock");
    let (page, more) = log.page(hook, before, per_page);
    let body: Vec<Value> = page.iter().map(|r| r.summary()).collect();
    let mut resp = (StatusCode::OK, axum::Json(Value::Array(body))).into_response();
    if more && let Some(last) = page.last() {
        let base = hub.world().base.clone();
        let link = format!(
            "<{}{}?per_page={per_page}&cursor=v1_{}>; rel=\"next\"",
            super::respond::root_of(&base),
            uri.path(),
            last.id
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(http::header::LINK, v);
        }
    }
    Ok(resp)
}

fn get_one(hub: &Hub, hook: HookRef, id: i64, uri: &http::Uri) -> ApiResult {
    let log = hub.log.lock().expect("log lock");
    let r = log.get(hook, id).ok_or_else(ApiError::not_found)?;
    let url = format!("{}{}", hub.world().base, uri.path());
    respond::ok(r.detail(&url), None)
}

fn redeliver(hub: Arc<Hub>, hook: HookRef, id: i64) -> Result<Response, ApiError> {
    let out = hub
        .redeliver_outgoing(hook, id)
        .map_err(|_| ApiError::not_found())?;
    // Numbered now, in the order requests come; sent after the answer,
    // as GitHub does, so redeliveries can finish out of that order.
    let id = hub.next_delivery_id();
    tokio::spawn(async move {
        hub.send_as(out, id).await;
    });
    Ok((StatusCode::ACCEPTED, axum::Json(json!({}))).into_response())
}

pub async fn app_list(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    list(&hub, app_hook(&cred)?, &uri, &q)
}

pub async fn app_get(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<i64>,
) -> ApiResult {
    get_one(&hub, app_hook(&cred)?, id, &uri)
}

pub async fn app_redeliver(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path(id): Path<i64>,
) -> ApiResult {
    let hook = app_hook(&cred)?;
    redeliver(hub, hook, id)
}

pub async fn repo_list(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    OriginalUri(uri): OriginalUri,
    Path((owner, repo, hook)): Path<(String, String, i64)>,
    Query(q): Q,
) -> ApiResult {
    let hook = owned_hook(&hub, &cred, &owner, Some(&repo), hook)?;
    list(&hub, hook, &uri, &q)
}

pub async fn repo_get(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    OriginalUri(uri): OriginalUri,
    Path((owner, repo, hook, id)): Path<(String, String, i64, i64)>,
) -> ApiResult {
    let hook = owned_hook(&hub, &cred, &owner, Some(&repo), hook)?;
    get_one(&hub, hook, id, &uri)
}

pub async fn repo_redeliver(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((owner, repo, hook, id)): Path<(String, String, i64, i64)>,
) -> ApiResult {
    let hook = owned_hook(&hub, &cred, &owner, Some(&repo), hook)?;
    redeliver(hub, hook, id)
}

pub async fn org_list(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    OriginalUri(uri): OriginalUri,
    Path((org, hook)): Path<(String, i64)>,
    Query(q): Q,
) -> ApiResult {
    let hook = owned_hook(&hub, &cred, &org, None, hook)?;
    list(&hub, hook, &uri, &q)
}

pub async fn org_get(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    OriginalUri(uri): OriginalUri,
    Path((org, hook, id)): Path<(String, i64, i64)>,
) -> ApiResult {
    let hook = owned_hook(&hub, &cred, &org, None, hook)?;
    get_one(&hub, hook, id, &uri)
}

pub async fn org_redeliver(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((org, hook, id)): Path<(String, i64, i64)>,
) -> ApiResult {
    let hook = owned_hook(&hub, &cred, &org, None, hook)?;
    redeliver(hub, hook, id)
}
