//! Repository resources: the repository, pull requests (files, commits),
//! issues and comments, commits, statuses, check runs, branches; and the
//! mutations that change them (and so their ETags).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{OriginalUri, Path, Query, State};
use serde_json::{Value, json};

use super::Cred;
use super::respond::{self, ApiError, ApiResult};
use crate::auth::Credential;
use crate::hub::Hub;
use crate::world::{Repo, World, iso, key, now_secs, parse_iso};

type Q = Query<HashMap<String, String>>;

/// Whether `cred` may read `repo`: an installation token its installation's
/// (and its own narrowed) repositories, a PAT its allowed ones, anonymous
/// callers public ones, an App JWT none.
pub fn can_see(w: &World, cred: &Credential, repo: &Repo) -> bool {
    match cred {
        Credential::Anonymous => !repo.private,
        Credential::App { .. } => false,
        Credential::Pat { token, .. } => w.pats.get(token).is_some_and(|p| {
            p.repositories
                .as_ref()
                .is_none_or(|s| s.contains(&key(&repo.full_name())))
        }),
        Credential::Installation {
            installation_id,
            token,
        } => {
            let inst_ok = w
                .installations
                .get(installation_id)
                .is_some_and(|i| i.covers(repo));
            let token_ok = w.installation_tokens.get(token).is_some_and(|t| {
                t.repositories
                    .as_ref()
                    .is_none_or(|s| s.contains(&key(&repo.full_name())))
            });
            inst_ok && token_ok
        }
    }
}

/// A repository the caller may see; GitHub answers 404, not 403, for
/// repositories a token cannot see.
fn repo<'w>(
    w: &'w World,
    cred: &Credential,
    owner: &str,
    name: &str,
) -> Result<&'w Repo, ApiError> {
    w.repos
        .get(&key(&format!("{owner}/{name}")))
        .filter(|r| can_see(w, cred, r))
        .ok_or_else(ApiError::not_found)
}

fn repo_mut<'w>(
    w: &'w mut World,
    cred: &Credential,
    owner: &str,
    name: &str,
    permission: &str,
) -> Result<&'w mut Repo, ApiError> {
    let full = key(&format!("{owner}/{name}"));
    let r = w.repos.get(&full).ok_or_else(ApiError::not_found)?;
    if !can_see(w, cred, r) {
        return Err(ApiError::not_found());
    }
    let allowed = match cred {
        Credential::Installation { token, .. } => w
            .installation_tokens
            .get(token)
            .is_some_and(|t| t.permissions.get(permission).map(String::as_str) == Some("write")),
        Credential::Pat { .. } => true,
        _ => false,
    };
    if !allowed {
        return Err(ApiError::not_accessible());
    }
    Ok(w.repos.get_mut(&full).expect("checked above"))
}

fn latest(items: impl Iterator<Item = i64>) -> Option<i64> {
    items.max()
}

fn user_json(w: &World, login: &str) -> Value {
    let mut v = crate::templates::Rewriter::for_base(&w.base)
        .and("Codertocat", login)
        .apply(&w.templates.user);
    if let Some(a) = w.accounts.get(&key(login)) {
        v = a.json.clone();
    }
    v
}

pub async fn get_user(State(hub): State<Arc<Hub>>, Cred(cred): Cred) -> ApiResult {
    match &cred {
        Credential::Pat { login, .. } => respond::ok(user_json(&hub.world(), login), None),
        Credential::Anonymous => Err(ApiError::unauthorized("Requires authentication")),
        _ => Err(ApiError::not_accessible()),
    }
}

/// `GET /repositories/{id}`: a repository by its id, if the caller can see it.
pub async fn get_repo_by_id(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path(id): Path<i64>,
) -> ApiResult {
    let w = hub.world();
    let r = w
        .repos
        .values()
        .find(|r| r.id == id && can_see(&w, &cred, r))
        .ok_or_else(ApiError::not_found)?;
    respond::ok(r.json.clone(), Some(r.updated))
}

/// `GET /user/repos`: every repository a user's token can see (GitHub
/// refuses installation tokens here).
pub async fn list_user_repos(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    match &cred {
        Credential::Pat { .. } => {}
        Credential::Anonymous => return Err(ApiError::unauthorized("Requires authentication")),
        _ => return Err(ApiError::not_accessible()),
    }
    let w = hub.world();
    let items = w
        .repos
        .values()
        .filter(|r| can_see(&w, &cred, r))
        .map(|r| r.json.clone())
        .collect();
    respond::page(&w.base, &uri, &q, items, None)
}

/// `GET /search/repositories?q=`: repositories the caller can see whose
/// full name contains each word of `q` (qualifiers such as `org:x` match
/// the owner).
pub async fn search_repos(State(hub): State<Arc<Hub>>, Cred(cred): Cred, Query(q): Q) -> ApiResult {
    let query = q
        .get("q")
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("Validation Failed"))?;
    let w = hub.world();
    let matches = |r: &Repo| {
        query
            .split_whitespace()
            .all(|word| match word.split_once(':') {
                Some(("org" | "user", o)) => key(&r.owner) == key(o),
                Some(("repo", full)) => key(&r.full_name()) == key(full),
                Some(_) => true,
                None => key(&r.full_name()).contains(&key(word)),
            })
    };
    let items: Vec<Value> = w
        .repos
        .values()
        .filter(|r| can_see(&w, &cred, r) && matches(r))
        .map(|r| r.json.clone())
        .collect();
    respond::ok(
        json!({"total_count": items.len(), "incomplete_results": false, "items": items}),
        None,
    )
}

pub async fn get_account(State(hub): State<Arc<Hub>>, Path(login): Path<String>) -> ApiResult {
    let w = hub.world();
    let a = w
        .accounts
        .get(&key(&login))
        .ok_or_else(ApiError::not_found)?;
    respond::ok(a.json.clone(), None)
}

pub async fn list_account_repos(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path(login): Path<String>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    let w = hub.world();
    if !w.accounts.contains_key(&key(&login)) {
        return Err(ApiError::not_found());
    }
    let items = w
        .repos
        .values()
        .filter(|r| key(&r.owner) == key(&login) && can_see(&w, &cred, r))
        .map(|r| r.json.clone())
        .collect();
    respond::page(&w.base, &uri, &q, items, None)
}

pub async fn get_repo(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r)): Path<(String, String)>,
) -> ApiResult {
    let w = hub.world();
    let repo = repo(&w, &cred, &o, &r)?;
    respond::ok(repo.json.clone(), Some(repo.updated))
}

fn state_filter(q: &HashMap<String, String>) -> Result<&str, ApiError> {
    match q.get("state").map(String::as_str) {
        None => Ok("open"),
        Some(s @ ("open" | "closed" | "all")) => Ok(s),
        Some(_) => Err(ApiError::invalid(
            "Validation Failed: state must be open, closed or all",
        )),
    }
}

/// One page of pull requests or issues (newest first) in the `state`
/// the query asks for (open by default), as GitHub lists them.
fn list_by_state<'a>(
    w: &World,
    uri: &http::Uri,
    q: &HashMap<String, String>,
    items: impl DoubleEndedIterator<Item = (&'a Value, i64)>,
) -> ApiResult {
    let state = state_filter(q)?;
    let chosen: Vec<(&Value, i64)> = items
        .rev()
        .filter(|(json, _)| state == "all" || json["state"] == state)
        .collect();
    let lm = latest(chosen.iter().map(|(_, updated)| *updated));
    respond::page(
        &w.base,
        uri,
        q,
        chosen.into_iter().map(|(j, _)| j.clone()).collect(),
        lm,
    )
}

pub async fn list_pulls(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    let w = hub.world();
    let repo = repo(&w, &cred, &o, &r)?;
    list_by_state(
        &w,
        &uri,
        &q,
        repo.pulls.values().map(|p| (&p.json, p.updated)),
    )
}

fn pull(repo: &Repo, n: u64) -> Result<&crate::world::Pull, ApiError> {
    repo.pulls.get(&n).ok_or_else(ApiError::not_found)
}

pub async fn get_pull(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, n)): Path<(String, String, u64)>,
) -> ApiResult {
    let w = hub.world();
    let p = pull(repo(&w, &cred, &o, &r)?, n)?;
    respond::ok(p.json.clone(), Some(p.updated))
}

pub async fn pull_files(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, n)): Path<(String, String, u64)>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    let w = hub.world();
    let p = pull(repo(&w, &cred, &o, &r)?, n)?;
    respond::page(&w.base, &uri, &q, p.files.clone(), Some(p.updated))
}

pub async fn pull_commits(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, n)): Path<(String, String, u64)>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    let w = hub.world();
    let p = pull(repo(&w, &cred, &o, &r)?, n)?;
    respond::page(&w.base, &uri, &q, p.commits.clone(), Some(p.updated))
}

pub async fn list_issues(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    let w = hub.world();
    let repo = repo(&w, &cred, &o, &r)?;
    list_by_state(
        &w,
        &uri,
        &q,
        repo.issues.values().map(|i| (&i.json, i.updated)),
    )
}

pub async fn get_issue(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, n)): Path<(String, String, u64)>,
) -> ApiResult {
    let w = hub.world();
    let i = repo(&w, &cred, &o, &r)?
        .issues
        .get(&n)
        .ok_or_else(ApiError::not_found)?;
    respond::ok(i.json.clone(), Some(i.updated))
}

pub async fn list_comments(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, n)): Path<(String, String, u64)>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    let w = hub.world();
    let i = repo(&w, &cred, &o, &r)?
        .issues
        .get(&n)
        .ok_or_else(ApiError::not_found)?;
    respond::page(&w.base, &uri, &q, i.comments.clone(), Some(i.updated))
}

/// `POST .../issues/{n}/comments`: adds a comment; the issue's comment
/// count and `updated_at` change, and with them its ETag.
pub async fn create_comment(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, n)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> ApiResult {
    let text = body
        .get("body")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("Invalid request.\n\n\"body\" wasn't supplied."))?
        .to_string();
    let mut w = hub.world();
    let id = w.next_id();
    let base = w.base.clone();
    let author = match &cred {
        Credential::Pat { login, .. } => user_json(&w, login),
        _ => user_json(&w, "fakehub-app[bot]"),
    };
    let repo = repo_mut(&mut w, &cred, &o, &r, "issues")?;
    let full = repo.full_name();
    let issue = repo.issues.get_mut(&n).ok_or_else(ApiError::not_found)?;
    let now = now_secs();
    let mut c = issue.comments.first().cloned().unwrap_or_else(|| json!({}));
    c["id"] = json!(id);
    c["body"] = json!(text);
    c["user"] = author;
    c["created_at"] = json!(iso(now));
    c["updated_at"] = json!(iso(now));
    c["url"] = json!(format!("{base}/repos/{full}/issues/comments/{id}"));
    c["html_url"] = json!(format!(
        "https://github.com/{full}/issues/{n}#issuecomment-{id}"
    ));
    c["issue_url"] = json!(format!("{base}/repos/{full}/issues/{n}"));
    issue.comments.push(c.clone());
    issue.json["comments"] = json!(issue.comments.len());
    issue.json["updated_at"] = json!(iso(now));
    issue.updated = now;
    repo.updated = now;
    respond::created(c)
}

pub async fn list_commits(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    let w = hub.world();
    let repo = repo(&w, &cred, &o, &r)?;
    let lm = repo
        .commits
        .first()
        .and_then(|c| c["commit"]["committer"]["date"].as_str())
        .and_then(parse_iso);
    respond::page(&w.base, &uri, &q, repo.commits.clone(), lm)
}

fn commit_sha(repo: &Repo, r: &str) -> Result<String, ApiError> {
    repo.resolve_ref(r)
        .ok_or_else(|| ApiError::invalid(format!("No commit found for SHA: {r}")))
}

pub async fn get_commit(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, reference)): Path<(String, String, String)>,
) -> ApiResult {
    let w = hub.world();
    let repo = repo(&w, &cred, &o, &r)?;
    let sha = commit_sha(repo, &reference)?;
    let c = repo
        .commits
        .iter()
        .find(|c| c["sha"] == sha.as_str())
        .ok_or_else(ApiError::not_found)?;
    let lm = c["commit"]["committer"]["date"]
        .as_str()
        .and_then(parse_iso);
    let mut c = c.clone();
    c["stats"] = json!({"total": 12, "additions": 10, "deletions": 2});
    c["files"] = json!([]);
    respond::ok(c, lm)
}

pub async fn list_statuses(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, reference)): Path<(String, String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    let w = hub.world();
    let repo = repo(&w, &cred, &o, &r)?;
    let sha = commit_sha(repo, &reference)?;
    let items = repo.statuses.get(&sha).cloned().unwrap_or_default();
    let lm = latest(
        items
            .iter()
            .filter_map(|s| s["updated_at"].as_str().and_then(parse_iso)),
    );
    respond::page(&w.base, &uri, &q, items, lm)
}

/// The combined status: the latest status per context, and their verdict.
pub async fn combined_status(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, reference)): Path<(String, String, String)>,
) -> ApiResult {
    let w = hub.world();
    let repo = repo(&w, &cred, &o, &r)?;
    let sha = commit_sha(repo, &reference)?;
    let mut latest_by_context: Vec<Value> = Vec::new();
    for s in repo.statuses.get(&sha).into_iter().flatten() {
        if !latest_by_context
            .iter()
            .any(|x| x["context"] == s["context"])
        {
            latest_by_context.push(s.clone());
        }
    }
    let states: Vec<&str> = latest_by_context
        .iter()
        .filter_map(|s| s["state"].as_str())
        .collect();
    let state = if states.iter().any(|s| *s == "failure" || *s == "error") {
        "failure"
    } else if states.is_empty() || states.contains(&"pending") {
        "pending"
    } else {
        "success"
    };
    let full = repo.full_name();
    respond::ok(
        json!({
            "state": state,
            "statuses": latest_by_context,
            "sha": sha,
            "total_count": states.len(),
            "repository": repo.json,
            "commit_url": format!("{}/repos/{full}/commits/{sha}", w.base),
            "url": format!("{}/repos/{full}/commits/{sha}/status", w.base),
        }),
        None,
    )
}

pub async fn list_check_runs(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, reference)): Path<(String, String, String)>,
) -> ApiResult {
    let w = hub.world();
    let repo = repo(&w, &cred, &o, &r)?;
    let sha = commit_sha(repo, &reference)?;
    let runs = repo.check_runs.get(&sha).cloned().unwrap_or_default();
    respond::ok(json!({"total_count": runs.len(), "check_runs": runs}), None)
}

/// `POST .../statuses/{sha}`.
pub async fn create_status(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, sha)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> ApiResult {
    let state = body.get("state").and_then(Value::as_str).unwrap_or("");
    if !["error", "failure", "pending", "success"].contains(&state) {
        return Err(ApiError::invalid(
            "Validation Failed: state must be one of error, failure, pending, success",
        ));
    }
    let mut w = hub.world();
    let id = w.next_id();
    let base = w.base.clone();
    let creator = match &cred {
        Credential::Pat { login, .. } => user_json(&w, login),
        _ => user_json(&w, "fakehub-app[bot]"),
    };
    let repo = repo_mut(&mut w, &cred, &o, &r, "statuses")?;
    let sha = commit_sha(repo, &sha)?;
    let now = now_secs();
    let status = json!({
        "url": format!("{base}/repos/{}/statuses/{sha}", repo.full_name()),
        "id": id,
        "node_id": format!("SC_{id}"),
        "state": state,
        "description": body.get("description").cloned().unwrap_or(Value::Null),
        "target_url": body.get("target_url").cloned().unwrap_or(Value::Null),
        "context": body.get("context").and_then(Value::as_str).unwrap_or("default"),
        "created_at": iso(now),
        "updated_at": iso(now),
        "creator": creator,
    });
    repo.statuses
        .entry(sha)
        .or_default()
        .insert(0, status.clone());
    repo.updated = now;
    respond::created(status)
}

/// `POST .../check-runs`: only GitHub Apps may create check runs.
pub async fn create_check_run(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> ApiResult {
    if !matches!(cred, Credential::Installation { .. }) {
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "You must authenticate via a GitHub App.",
        ));
    }
    let name = body.get("name").and_then(Value::as_str);
    let head = body.get("head_sha").and_then(Value::as_str);
    let (Some(name), Some(head)) = (name, head) else {
        return Err(ApiError::invalid(
            "Invalid request.\n\n\"name\" and \"head_sha\" are required.",
        ));
    };
    let mut w = hub.world();
    let id = w.next_id();
    let repo = repo_mut(&mut w, &cred, &o, &r, "checks")?;
    let sha = commit_sha(repo, head)?;
    let now = now_secs();
    let mut run = repo
        .check_runs
        .values()
        .flatten()
        .next()
        .cloned()
        .unwrap_or_else(|| json!({}));
    let status = body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("queued");
    run["id"] = json!(id);
    run["name"] = json!(name);
    run["head_sha"] = json!(sha);
    run["status"] = json!(status);
    run["conclusion"] = body.get("conclusion").cloned().unwrap_or(Value::Null);
    run["started_at"] = json!(iso(now));
    run["completed_at"] = if status == "completed" {
        json!(iso(now))
    } else {
        Value::Null
    };
    for k in ["details_url", "external_id", "output"] {
        if let Some(v) = body.get(k) {
            run[k] = v.clone();
        }
    }
    repo.check_runs
        .entry(sha)
        .or_default()
        .insert(0, run.clone());
    repo.updated = now;
    respond::created(run)
}

pub async fn list_branches(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r)): Path<(String, String)>,
    OriginalUri(uri): OriginalUri,
    Query(q): Q,
) -> ApiResult {
    let w = hub.world();
    let repo = repo(&w, &cred, &o, &r)?;
    respond::page(&w.base, &uri, &q, repo.branches.clone(), None)
}

pub async fn get_branch(
    State(hub): State<Arc<Hub>>,
    Cred(cred): Cred,
    Path((o, r, b)): Path<(String, String, String)>,
) -> ApiResult {
    let w = hub.world();
    let repo = repo(&w, &cred, &o, &r)?;
    let branch = repo
        .branches
        .iter()
        .find(|x| x["name"] == b.as_str())
        .ok_or_else(|| ApiError::new(http::StatusCode::NOT_FOUND, "Branch not found"))?;
    let sha = branch["commit"]["sha"].as_str().unwrap_or("");
    let commit = repo
        .commits
        .iter()
        .find(|c| c["sha"] == sha)
        .cloned()
        .unwrap_or(Value::Null);
    respond::ok(
        json!({
            "name": b,
            "commit": commit,
            "protected": branch["protected"],
            "_links": {"self": format!("{}/repos/{}/branches/{b}", w.base, repo.full_name())},
        }),
        None,
    )
}
