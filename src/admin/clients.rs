//! The Clients page: the gateway's clients with their limits and last
//! hour, a form to add one, rotate and revoke buttons, and the audit log
//! of every change (from here, the CLI or the clients file). A new token
//! is shown once, in the answer to the POST that made it; it is never
//! stored, logged or put in a URL.

use std::net::SocketAddr;

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use super::view;
use super::{AdminError, Chrome, Session, Shared, render, see_other};
use crate::clock;
use crate::gateway::clients::{self, Actor, ClientError, Limits, Origin, Priority, Settings};

pub struct Row {
    pub name: String,
    pub revoked: bool,
    /// The clients file owns it: change it there.
    pub from_file: bool,
    pub origin: &'static str,
    pub may: String,
    pub limits: String,
    pub requests: String,
    pub spent: String,
    pub saved: String,
}

pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "clients.html")]
struct ClientsPage {
    chrome: Chrome,
    clients: Vec<Row>,
    audit: Vec<AuditRow>,
    clients_file: String,
    revoked: bool,
}

#[derive(Template)]
#[template(path = "client_token.html")]
struct TokenPage {
    chrome: Chrome,
    name: String,
    rotated: bool,
    token: String,
}

#[derive(serde::Deserialize, Default)]
pub struct Done {
    revoked: Option<u8>,
}

fn limits_text(l: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some(q) = l.quota_per_hour {
        parts.push(format!("quota {}/h", view::count(q as i64)));
    }
    if l.weight != 1 {
        parts.push(format!("weight {}", l.weight));
    }
    if l.priority == Priority::High {
        parts.push("priority high".into());
    }
    if parts.is_empty() {
        "fair share".into()
    } else {
        parts.join(", ")
    }
}

pub async fn page(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
    Query(done): Query<Done>,
) -> Result<Response, AdminError> {
    let now = clock::now_ms();
    let rows = clients::list(&state.journal, now)
        .await
        .map_err(|e| AdminError::BadRequest(format!("gateway clients: {e}")))?;
    let audit = state.journal.audit_log(100).await?;
    let page = ClientsPage {
        chrome: Chrome::new(&session, "clients"),
        clients: rows
            .into_iter()
            .map(|c| {
                let may = match (c.scopes.is_empty(), c.owners.is_empty()) {
                    (true, true) => "any request, any owner".to_string(),
                    (true, false) => format!("any request for {}", c.owners.join(", ")),
                    (false, true) => c.scopes.join("; "),
                    (false, false) => {
                        format!("{} for {}", c.scopes.join("; "), c.owners.join(", "))
                    }
                };
                Row {
                    revoked: c.revoked_at_ms.is_some(),
                    from_file: c.origin == Origin::File,
                    origin: c.origin.as_str(),
                    limits: limits_text(&c.limits),
                    may,
                    requests: view::count(c.last_hour.requests),
                    spent: view::count(c.last_hour.units_spent),
                    saved: view::count(c.last_hour.units_saved),
                    name: c.name,
                }
            })
            .collect(),
        audit: audit
            .into_iter()
            .map(|a| AuditRow {
                at: view::time(a.at_ms),
                actor: a.actor,
                action: a.action,
                subject: a.subject,
                detail: a.detail,
            })
            .collect(),
        clients_file: state.clients_file.clone(),
        revoked: done.revoked.is_some(),
    };
    render(page)
}

/// Who acts from the UI, for the audit log: the session (by a tag of its
/// cookie's digest, never the cookie) and the address it came from.
fn actor(session: &Session, peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> Actor {
    let from = peer.map_or_else(|| "unknown address".into(), |p| p.0.0.ip().to_string());
    Actor {
        origin: Origin::Admin,
        who: format!("session {} from {from}", session.tag()),
    }
}

/// The token page must not be kept by a browser or a proxy.
fn token_page(page: TokenPage) -> Result<Response, AdminError> {
    let mut resp = render(page)?;
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn refused(e: ClientError) -> AdminError {
    match e {
        ClientError::Store(e) => e.into(),
        e => AdminError::BadRequest(e.to_string()),
    }
}

#[derive(serde::Deserialize)]
pub struct AddForm {
    name: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    owners: String,
    #[serde(default)]
    quota: String,
    #[serde(default)]
    weight: String,
    #[serde(default)]
    priority: String,
}

impl AddForm {
    fn settings(&self) -> Result<Settings, ClientError> {
        let quota = match self.quota.trim() {
            "" => None,
            q => Some(clients::parse_quota(q)?),
        };
        let weight = match self.weight.trim() {
            "" => 1,
            w => w.parse().map_err(|_| {
                ClientError::Invalid(format!("weight {w:?}: give a whole number, 1 or more"))
            })?,
        };
        let priority = match self.priority.as_str() {
            "" | "normal" => Priority::Normal,
            "high" => Priority::High,
            p => {
                return Err(ClientError::Invalid(format!(
                    "priority {p:?}: normal or high"
                )));
            }
        };
        Ok(Settings {
            name: self.name.trim().to_string(),
            scopes: self
                .scopes
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
            owners: self
                .owners
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|o| !o.is_empty())
                .map(str::to_string)
                .collect(),
            limits: Limits {
                quota_per_hour: quota,
                weight,
                priority,
            },
        })
    }
}

pub async fn add(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<AddForm>,
) -> Result<Response, AdminError> {
    let settings = form.settings().map_err(refused)?;
    let by = actor(&session, peer);
    let token = clients::add(&state.journal, &settings, &by, clock::now_ms())
        .await
        .map_err(refused)?;
    tracing::info!(client = %settings.name, by = %by.label(), "admin: gateway client added");
    token_page(TokenPage {
        chrome: Chrome::new(&session, "clients"),
        name: settings.name,
        rotated: false,
        token,
    })
}

#[derive(serde::Deserialize)]
pub struct NameForm {
    name: String,
}

pub async fn rotate(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<NameForm>,
) -> Result<Response, AdminError> {
    let by = actor(&session, peer);
    let token = clients::rotate(&state.journal, &form.name, &by, clock::now_ms())
        .await
        .map_err(refused)?;
    tracing::info!(client = %form.name, by = %by.label(), "admin: gateway client token rotated");
    token_page(TokenPage {
        chrome: Chrome::new(&session, "clients"),
        name: form.name,
        rotated: true,
        token,
    })
}

pub async fn revoke(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<NameForm>,
) -> Result<Response, AdminError> {
    let by = actor(&session, peer);
    clients::revoke(&state.journal, &form.name, &by, clock::now_ms())
        .await
        .map_err(refused)?;
    tracing::info!(client = %form.name, by = %by.label(), "admin: gateway client revoked");
    Ok(see_other("/admin/clients?revoked=1").into_response())
}
