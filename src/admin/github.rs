//! The GitHub page: each credential's budgets and reset times, where the
//! Apps are installed, and the gateway's clients with their usage.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use super::view::{self, Axis, Legend, Lines};
use super::{AdminError, Chrome, Session, Shared, render};
use crate::clock;
use crate::gateway::report::{self, By};
use crate::github::budget::Resource;
use crate::github::{Pool, Reach};

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
    /// Repositories recent deliveries name that no credential covers,
    /// with why.
    uncovered: Vec<(String, String)>,
    coverage_days: i64,
    tokens: Vec<(String, String)>,
    clients: Vec<ClientView>,
    spenders: Lines,
    routes: Vec<UsageView>,
    by_credential: Vec<UsageView>,
    owners: Vec<OwnerView>,
}

/// One row of a "who spends what" table.
pub struct UsageView {
    pub key: String,
    pub requests: String,
    pub spent: String,
    pub saved: String,
    pub refused: String,
}

/// Per owner: the outages the pool and cache prevented, and when its
/// budget runs out at the current rate.
pub struct OwnerView {
    pub owner: String,
    pub incidents: String,
    pub single: String,
    pub remaining: String,
    pub rate: String,
    pub runs_out: String,
}

fn usage_rows(rows: Vec<report::Row>, top: usize) -> Vec<UsageView> {
    rows.into_iter()
        .take(top)
        .map(|r| UsageView {
            requests: view::count(r.requests),
            spent: view::count(r.units_spent),
            saved: view::count(r.units_saved),
            refused: r
                .refused
                .iter()
                .map(|(rule, n)| format!("{rule} {}", view::count(*n)))
                .collect::<Vec<_>>()
                .join(", "),
            key: r.key,
        })
        .collect()
}

/// Units spent per 10 minutes over the last day: the three top spenders
/// and everyone else.
fn spenders_chart(rows: &[(String, i64, i64)], now_ms: i64) -> Lines {
    let axis = Axis::last_day(now_ms);
    let mut totals: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for (client, minute, units) in rows {
        if axis.index(*minute).is_some() {
            *totals.entry(client).or_default() += units;
        }
    }
    let mut top: Vec<(&str, i64)> = totals.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let named: Vec<&str> = top.iter().take(3).map(|t| t.0).collect();
    let mut series: Vec<(String, Vec<Option<i64>>)> = named
        .iter()
        .map(|c| (c.to_string(), vec![Some(0); axis.len]))
        .collect();
    let others = top.len() > named.len();
    if others {
        series.push(("others".into(), vec![Some(0); axis.len]));
    }
    for (client, minute, units) in rows {
        if let Some(i) = axis.index(*minute) {
            let s = named
                .iter()
                .position(|c| c == client)
                .unwrap_or(named.len());
            if let Some(v) = series.get_mut(s) {
                v.1[i] = v.1[i].map(|x| x + units);
            }
        }
    }
    Lines::new(
        "rate-limit units spent per 10 minutes, top spenders",
        &axis.labels(),
        series,
        view::count,
        Legend::Total,
    )
}

/// "Incidents avoided" and "runs out at", per owner that used the
/// gateway in the last 30 days.
async fn owners(
    state: &super::AdminState,
    pool: Option<&Pool>,
    now_ms: i64,
) -> Result<Vec<OwnerView>, AdminError> {
    let now_minute = now_ms / 60_000;
    let minutes = state
        .journal
        .owner_minutes(now_minute - 30 * 24 * 60)
        .await?;
    let configured = state
        .gateway
        .as_ref()
        .map_or(0, |g| g.single_credential_limit);
    let apps: Vec<String> = pool
        .map(|p| {
            p.installations()
                .into_iter()
                .filter(|i| i.installation.is_some())
                .map(|i| i.owner)
                .collect()
        })
        .unwrap_or_default();
    let single = |owner: &str| match configured {
        0 if apps.iter().any(|a| a.eq_ignore_ascii_case(owner)) => 15_000,
        0 => 5_000,
        n => n,
    };
    let incidents = report::incidents_avoided(&minutes, single);
    let mut out = Vec::new();
    for (owner, n) in incidents {
        let rate = report::rate(&minutes, &owner, now_minute, 10);
        let budget = match pool {
            Some(p) => p.owner_budget(&owner, Reach::Any, Resource::Core).await,
            None => None,
        };
        let (remaining, runs_out) = match budget {
            Some(b) => (
                format!(
                    "{} of {}",
                    view::count(b.remaining as i64),
                    view::count(b.limit as i64)
                ),
                match report::runs_out_at(b.remaining, rate, now_ms, b.reset * 1000) {
                    Some(at) => format!("{} UTC, before its reset", view::time(at)),
                    None => format!("lasts until its reset ({})", view::time(b.reset * 1000)),
                },
            ),
            None => ("not known yet".into(), "–".into()),
        };
        out.push(OwnerView {
            incidents: format!("{} min", view::count(n as i64)),
            single: format!("{}/h", view::count(single(&owner) as i64)),
            rate: format!("{:.1}/min", rate),
            remaining,
            runs_out,
            owner,
        });
    }
    Ok(out)
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
    let hour = state.journal.usage_lines(now / 60_000 - 60).await?;
    let day = state
        .journal
        .units_by_minute(now / 60_000 - 24 * 60)
        .await?;
    let owners = owners(&state, state.pool.as_deref(), now).await?;
    let uncovered = match state.pool.as_deref() {
        Some(pool) => pool.coverage(&state.journal, now, 500).await?.uncovered,
        None => vec![],
    };
    let page = GithubPage {
        uncovered,
        coverage_days: crate::github::COVERAGE_DAYS,
        chrome: Chrome::new(&session, "github"),
        configured: state.pool.is_some(),
        credentials: state.pool.as_deref().map(credentials).unwrap_or_default(),
        installations: installations
            .into_iter()
            .map(|i| {
                (
                    i.owner,
                    format!("app {}", i.app),
                    match (i.installation, &i.selected) {
                        (None, _) => "not installed".into(),
                        (Some(n), None) => format!("installation {n}, all repositories"),
                        (Some(n), Some(names)) => {
                            format!("installation {n}, selected: {}", names.join(", "))
                        }
                    },
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
        spenders: spenders_chart(&day, now),
        routes: usage_rows(report::breakdown(&hour, By::Route), 15),
        by_credential: usage_rows(report::breakdown(&hour, By::Credential), 15),
        owners,
    };
    render(page)
}
