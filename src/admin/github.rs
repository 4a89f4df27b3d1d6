//! The GitHub page: each credential's budgets and reset times, where the
//! Apps are installed, and the gateway's clients with their usage.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use super::view;
use super::{AdminError, Chrome, Session, Shared, render};
use crate::clock;
use crate::github::Pool;

pub struct BudgetView {
    pub resource: &'static str,
    pub remaining: u64,
    pub limit: u64,
    /// Below this the bar shows as low (10%).
    pub low: u64,
    pub text: String,
    pub reset: String,
}

pub struct CredView {
    pub id: String,
    pub paused: bool,
    pub budgets: Vec<BudgetView>,
}

/// The pool's credentials as the pages show them; tokens appear by their
/// configured name only, never their value.
pub fn credentials(pool: &Pool) -> Vec<CredView> {
    let now_s = clock::now_ms() / 1000;
    pool.snapshot()
        .into_iter()
        .map(|c| CredView {
            id: c.id.to_string(),
            paused: c.paused,
            budgets: c
                .budgets
                .iter()
                .map(|(r, b)| BudgetView {
                    resource: r.as_str(),
                    remaining: b.remaining,
                    limit: b.limit.max(1),
                    low: b.limit / 10,
                    text: format!(
                        "{} of {}",
                        view::count(b.remaining as i64),
                        view::count(b.limit as i64)
                    ),
                    reset: if b.reset > now_s {
                        format!(
                            "resets in {} ({})",
                            view::span((b.reset - now_s) * 1000),
                            view::time(b.reset * 1000)
                        )
                    } else {
                        "reset passed".into()
                    },
                })
                .collect(),
        })
        .collect()
}

pub struct ClientView {
    pub name: String,
    pub revoked: bool,
    pub scopes: String,
    pub owners: String,
    pub requests: String,
    pub cached: String,
    pub spent: String,
    pub saved: String,
}

#[derive(Template)]
#[template(path = "github.html")]
struct GithubPage {
    chrome: Chrome,
    configured: bool,
    credentials: Vec<CredView>,
    installations: Vec<(String, String, String)>,
    tokens: Vec<(String, String)>,
    clients: Vec<ClientView>,
}

pub async fn page(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
) -> Result<Response, AdminError> {
    let now = clock::now_ms();
    let clients = crate::gateway::clients::list(&state.journal, now)
        .await
        .map_err(|e| AdminError::BadRequest(format!("gateway clients: {e}")))?;
    let installations = state
        .pool
        .as_deref()
        .map(Pool::installations)
        .unwrap_or_default();
    let tokens = state
        .pool
        .as_deref()
        .map(Pool::token_owners)
        .unwrap_or_default();
    let page = GithubPage {
        chrome: Chrome::new(&session, "github"),
        configured: state.pool.is_some(),
        credentials: state.pool.as_deref().map(credentials).unwrap_or_default(),
        installations: installations
            .into_iter()
            .map(|i| {
                (
                    i.owner,
                    format!("app {}", i.app),
                    i.installation
                        .map_or("not installed".into(), |n| format!("installation {n}")),
                )
            })
            .collect(),
        tokens: tokens
            .into_iter()
            .map(|(name, owners)| {
                (
                    name,
                    if owners.is_empty() {
                        "any owner".into()
                    } else {
                        owners.join(", ")
                    },
                )
            })
            .collect(),
        clients: clients
            .into_iter()
            .map(|c| {
                let u = &c.last_hour;
                ClientView {
                    name: c.name,
                    revoked: c.revoked_at_ms.is_some(),
                    scopes: if c.scopes.is_empty() {
                        "any request".into()
                    } else {
                        c.scopes.join("; ")
                    },
                    owners: if c.owners.is_empty() {
                        "any owner".into()
                    } else {
                        c.owners.join(", ")
                    },
                    requests: view::count(u.requests),
                    cached: view::percent(u.hits + u.revalidated, u.requests),
                    spent: view::count(u.units_spent),
                    saved: view::count(u.units_saved),
                }
            })
            .collect(),
    };
    render(page)
}
