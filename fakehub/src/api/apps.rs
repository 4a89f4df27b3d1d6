//! `/app...` (JWT only), installation lookup, installation access tokens,
//! `/installation/repositories` and `/rate_limit`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::Cred;
use super::respond::{self, ApiError, ApiResult};
use crate::auth::{self, Credential};
use crate::hub::Hub;
use crate::limits::Resource;
use crate::world::{InstallationToken, World, iso, key, now_secs};

fn require_app(cred: &Credential) -> Result<i64, ApiError> {
    match cred {
        Credential::App { app_id } => Ok(*app_id),
        _ => Err(ApiError::jwt_required()),
    }
}

pub async fn get_app(State(hub): State<Arc<Hub>>, Cred(cred): Cred) -> ApiResult {
    let app_id = require_app(&cred)?;
    let w = hub.world();
    respond::ok(w.apps[&app_id].json.clone(), None)
}

pub async fn list_installations(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    OriginalUri(uri): OriginalUri,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let app_id = require_app(&cred)?;
    let w = hub.world();
    let items = w
        .installations
        .values()
        .filter(|i| i.app_id == app_id)
        .map(|i| i.json.clone())
        .collect();
    respond::page(&w.base, &uri, &q, items, None)
}

pub async fn get_installation(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path(id): Path<i64>,
) -> ApiResult {
    let app_id = require_app(&cred)?;
    let w = hub.world();
    match w.installations.get(&id) {
        Some(i) if i.app_id == app_id => respond::ok(i.json.clone(), None),
        _ => Err(ApiError::not_found()),
    }
}

fn account_installation(w: &World, app_id: i64, account: &str, kind: &str) -> ApiResult {
    let Some(acct) = w.accounts.get(&key(account)) else {
        return Err(ApiError::not_found());
    };
    let kind_matches = match kind {
        "org" => acct.kind == crate::config::AccountKind::Organization,
        _ => acct.kind == crate::config::AccountKind::User,
    };
    match w.installation_for_account(app_id, account) {
        Some(i) if kind_matches => respond::ok(i.json.clone(), None),
        _ => Err(ApiError::not_found()),
    }
}

pub async fn org_installation(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path(org): Path<String>,
) -> ApiResult {
    let app_id = require_app(&cred)?;
    account_installation(&hub.world(), app_id, &org, "org")
}

pub async fn user_installation(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path(user): Path<String>,
) -> ApiResult {
    let app_id = require_app(&cred)?;
    account_installation(&hub.world(), app_id, &user, "user")
}

pub async fn repo_installation(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((owner, repo)): Path<(String, String)>,
) -> ApiResult {
    let app_id = require_app(&cred)?;
    let w = hub.world();
    let repo = w
        .repos
        .get(&key(&format!("{owner}/{repo}")))
        .ok_or_else(ApiError::not_found)?;
    w.installations
        .values()
        .find(|i| i.app_id == app_id && i.covers(repo))
        .map(|i| respond::ok(i.json.clone(), None))
        .unwrap_or_else(|| Err(ApiError::not_found()))
}

/// `POST /app/installations/{id}/access_tokens`: a token valid one hour,
/// optionally narrowed to some repositories and permissions.
pub async fn create_token(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path(id): Path<i64>,
    body: Option<axum::Json<Value>>,
) -> ApiResult {
    let app_id = require_app(&cred)?;
    let body = body.map(|b| b.0).unwrap_or(Value::Null);
    let mut w = hub.world();
    let inst = match w.installations.get(&id) {
        Some(i) if i.app_id == app_id => i,
        _ => return Err(ApiError::not_found()),
    };
    let visible: Vec<&crate::world::Repo> = w.repos.values().filter(|r| inst.covers(r)).collect();
    let mut narrowed: Option<BTreeSet<String>> = None;
    let inaccessible = || {
        ApiError::invalid(
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
        )
    };
    if let Some(names) = body.get("repositories").and_then(Value::as_array) {
        let set = narrowed.get_or_insert_with(BTreeSet::new);
        for n in names {
            let n = n.as_str().ok_or_else(inaccessible)?;
            let r = visible
                .iter()
                .find(|r| r.name.eq_ignore_ascii_case(n))
                .ok_or_else(inaccessible)?;
            set.insert(key(&r.full_name()));
        }
    }
    if let Some(ids) = body.get("repository_ids").and_then(Value::as_array) {
        let set = narrowed.get_or_insert_with(BTreeSet::new);
        for n in ids {
            let r = visible
                .iter()
                .find(|r| Some(r.id) == n.as_i64())
                .ok_or_else(inaccessible)?;
            set.insert(key(&r.full_name()));
        }
    }
    let mut permissions = inst.permissions.clone();
    if let Some(asked) = body.get("permissions").and_then(Value::as_object) {
        let mut granted = BTreeMap::new();
        for (name, level) in asked {
            let level = level.as_str().unwrap_or("");
            let ok = match inst.permissions.get(name).map(String::as_str) {
                Some("write") => level == "read" || level == "write",
                Some("read") => level == "read",
                _ => false,
            };
            if !ok {
                return Err(ApiError::invalid(
                    "The permissions requested are not granted to this installation.",
                ));
            }
            granted.insert(name.clone(), level.to_string());
        }
        permissions = granted;
    }
    let selection = if narrowed.is_some() || inst.repositories.is_some() {
        "selected"
    } else {
        "all"
    };
    let repositories: Option<Vec<Value>> = narrowed.as_ref().map(|set| {
        visible
            .iter()
            .filter(|r| set.contains(&key(&r.full_name())))
            .map(|r| r.json.clone())
            .collect()
    });
    let token = auth::new_installation_token();
    let expires_at = now_secs() + w.token_lifetime_secs;
    let mut answer = json!({
        "token": token,
        "expires_at": iso(expires_at),
        "permissions": permissions,
        "repository_selection": selection,
    });
    if let Some(repos) = repositories {
        answer["repositories"] = Value::Array(repos);
    }
    w.installation_tokens.insert(
        token,
        InstallationToken {
            installation_id: id,
            expires_at,
            repositories: narrowed,
            permissions,
        },
    );
    respond::created(answer)
}

pub async fn installation_repositories(State(hub): State<Arc<Hub>>, Cred(cred): Cred) -> ApiResult {
    let Credential::Installation { .. } = &cred else {
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "This endpoint requires an installation access token.",
        ));
    };
    let w = hub.world();
    let repos: Vec<Value> = w
        .repos
        .values()
        .filter(|r| super::repos::can_see(&w, &cred, r))
        .map(|r| r.json.clone())
        .collect();
    respond::ok(
        json!({"total_count": repos.len(), "repository_selection": "all", "repositories": repos}),
        None,
    )
}

/// `GET /rate_limit`: free, and reports every resource's budget.
pub async fn rate_limit(State(hub): State<Arc<Hub>>, Cred(cred): Cred) -> impl IntoResponse {
    let now = now_secs();
    let mut resources = serde_json::Map::new();
    for r in [Resource::Core, Resource::Graphql, Resource::Search] {
        let b = hub.limits.bucket(&cred, r, now);
        resources.insert(
            r.as_str().into(),
            json!({"limit": b.limit, "remaining": b.remaining(), "used": b.used, "reset": b.reset, "resource": r.as_str()}),
        );
    }
    let core = resources["core"].clone();
    axum::Json(json!({"resources": resources, "rate": core}))
}
