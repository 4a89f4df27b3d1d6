//! One delivery: what GitHub sent (headers, payload), its jobs with every
//! attempt, retry buttons and the raw body. Payloads come from whoever
//! holds the webhook secret and are shown as escaped text, never markup.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use http::{HeaderValue, header};
use serde::Deserialize;

use super::view;
use super::{AdminError, Chrome, Session, Shared, render, see_other, woken};
use crate::clock;
use crate::store::operator::Waiting;

/// Bigger payloads are offered as a download only: pretty-printing 25 MB
/// into a page helps nobody.
const SHOW_LIMIT: usize = 2 * 1024 * 1024;
/// Sections smaller than this start open.
const OPEN_BELOW: usize = 4 * 1024;
/// Headers whose values are credentials, should a sender include them.
const HIDDEN_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

pub struct Section {
    pub key: String,
    pub summary: String,
    pub text: String,
    pub open: bool,
}

pub struct AttemptView {
    pub n: i64,
    pub time: String,
    pub duration: String,
    pub status: String,
    pub outcome: String,
    pub error: String,
    pub excerpt: String,
    pub url: String,
    pub response_headers: Vec<(String, String)>,
}

pub struct JobView {
    pub sink: String,
    pub state: String,
    /// Attempts that counted towards max_attempts, and how many of those
    /// listed did not (pauses asked for by the consumer).
    pub attempts: i64,
    /// " of N" for a forward route; empty for a built-in sink.
    pub max_attempts: String,
    pub paused: usize,
    pub next: String,
    pub can_retry: bool,
    /// Dead and its partition waits behind it: it can be skipped.
    pub holding: bool,
    /// "order moved past it at T (by X)" for a skipped dead letter.
    pub skipped: String,
    pub history: Vec<AttemptView>,
}

#[derive(Template)]
#[template(path = "delivery.html")]
struct DeliveryPage {
    chrome: Chrome,
    id: i64,
    facts: Vec<(&'static str, String)>,
    parse_error: Option<String>,
    headers: Vec<(String, String)>,
    sections: Vec<Section>,
    /// Shown instead of sections: not JSON, or too large.
    raw: Option<String>,
    note: Option<String>,
    /// False once retention pruned the stored request.
    has_body: bool,
    jobs: Vec<JobView>,
    any_retry: bool,
    retried: Option<usize>,
    skipped: Option<usize>,
}

#[derive(Deserialize)]
pub struct Retried {
    retried: Option<usize>,
    skipped: Option<usize>,
}

/// A delivery by journal id or, as the CLI speaks, by GUID: one delivery
/// with that GUID opens, several (one per hook) list, none is a 404 page.
pub async fn page(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
    Path(key): Path<String>,
    Query(q): Query<Retried>,
) -> Result<Response, AdminError> {
    let id = match key.parse::<i64>() {
        Ok(id) => id,
        Err(_) => {
            let guid = key.clone();
            let ids = state.journal.ids_of_guid(&guid).await?;
            return match ids.as_slice() {
                [] => Err(AdminError::NoDelivery(key)),
                [one] => Ok(see_other(&format!("/admin/deliveries/{one}"))),
                _ => {
                    let q = form_urlencoded::Serializer::new(String::new())
                        .append_pair("guid", &key)
                        .finish();
                    Ok(see_other(&format!("/admin/deliveries?{q}")))
                }
            };
        }
    };
    let shown = state
        .journal
        .show(id)
        .await?
        .ok_or_else(|| AdminError::NoDelivery(key.clone()))?;
    // None once retention pruned the stored request (the row and its
    // dedupe key stay while GitHub may redeliver it).
    let payload = state.journal.payload(id).await?;
    let now = clock::now_ms();
    let l = &shown.listed;
    let mut facts = vec![
        ("GUID", l.guid.clone()),
        ("Event", l.event.clone()),
        ("Action", l.action.clone().unwrap_or_else(|| "–".into())),
        (
            "Repository",
            shown.repository.clone().unwrap_or_else(|| "–".into()),
        ),
        ("Partition", l.partition.clone()),
        (
            "Hook",
            if l.hook_id.is_empty() {
                "–".into()
            } else {
                l.hook_id.clone()
            },
        ),
        (
            "Installation",
            shown.installation_id.map_or("–".into(), |i| i.to_string()),
        ),
        (
            "Received",
            format!(
                "{} ({} ago)",
                view::time(l.received_at_ms),
                view::span(now - l.received_at_ms)
            ),
        ),
        (
            "Body",
            format!(
                "{} ({})",
                view::bytes(shown.body_size as u64),
                shown.content_kind
            ),
        ),
    ];
    if l.recovered {
        facts.push((
            "Recovered",
            "GitHub sent it again because gatehouse asked; it may have come after later deliveries"
                .into(),
        ));
    }
    let (stored_headers, body) = match &payload {
        Some(p) => (&p.headers[..], &p.body[..]),
        None => (&[][..], &[][..]),
    };
    let headers = crate::journal::model::decode_headers(stored_headers)
        .into_iter()
        .map(|(name, value)| {
            let value = if HIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                "(hidden)".to_string()
            } else {
                String::from_utf8_lossy(&value).into_owned()
            };
            (name, value)
        })
        .collect();
    let (sections, raw, note) = match payload {
        Some(_) => payload_view(&shown.content_kind, body),
        None => (
            Vec::new(),
            None,
            Some(
                "Pruned by retention: the headers and body are gone; the delivery's \
                 GUID is kept while GitHub may still redeliver it, so a redelivery \
                 stays a duplicate."
                    .to_string(),
            ),
        ),
    };
    let has_body = payload.is_some();
    let jobs: Vec<JobView> = shown
        .jobs
        .iter()
        .map(|j| JobView {
            sink: j.route.clone(),
            state: j.state.clone(),
            attempts: j.attempts,
            paused: j.history.iter().filter(|a| a.outcome == "paused").count(),
            max_attempts: state
                .route(&j.route)
                .map_or(String::new(), |r| format!(" of {}", r.max_attempts)),
            next: match j.waiting(now, state.route(&j.route).is_none_or(|r| r.strict)) {
                Waiting::Nothing => String::new(),
                Waiting::Behind(head) => {
                    format!("waiting behind job #{head}, the first pending job of its partition")
                }
                Waiting::At(at) => format!(
                    "next attempt at {} (in {})",
                    view::time(at),
                    view::span(at - now)
                ),
                Waiting::Now => "due now".into(),
            },
            can_retry: j.state != "pending",
            holding: j.holding,
            skipped: j.skipped.as_ref().map_or(String::new(), |(at, by)| {
                format!("order moved past it at {} ({by})", view::time(*at))
            }),
            history: j
                .history
                .iter()
                .map(|a| AttemptView {
                    n: a.n,
                    time: view::time(a.started_at_ms),
                    duration: view::span(a.duration_ms),
                    status: a.status_code.map_or("–".into(), |c| c.to_string()),
                    outcome: a.outcome.clone(),
                    error: a.error.clone().unwrap_or_default(),
                    excerpt: a.response_excerpt.clone().unwrap_or_default(),
                    url: a.url.clone().unwrap_or_else(|| "(in gatehouse)".into()),
                    response_headers: a.response_headers.clone(),
                })
                .collect(),
        })
        .collect();
    let page = DeliveryPage {
        chrome: Chrome::new(&session, "deliveries"),
        id,
        facts,
        parse_error: shown.parse_error.clone(),
        headers,
        sections,
        raw,
        note,
        has_body,
        any_retry: jobs.iter().any(|j| j.can_retry),
        jobs,
        retried: q.retried,
        skipped: q.skipped,
    };
    render(page)
}

/// The payload as collapsible top-level sections when it is a JSON object
/// of a showable size; else as text, or only a note.
fn payload_view(kind: &str, body: &[u8]) -> (Vec<Section>, Option<String>, Option<String>) {
    if body.len() > SHOW_LIMIT {
        return (
            vec![],
            None,
            Some(format!(
                "The payload is {}: download it to read it.",
                view::bytes(body.len() as u64)
            )),
        );
    }
    let form_json;
    let json: &[u8] = if kind == "form" {
        match crate::webhook::form_payload(body) {
            Some(j) => {
                form_json = j;
                &form_json
            }
            None => body,
        }
    } else {
        body
    };
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(map)) => {
            let sections = map
                .into_iter()
                .map(|(key, value)| {
                    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
                    let summary = match &value {
                        serde_json::Value::Object(m) => format!("{{…}} {} keys", m.len()),
                        serde_json::Value::Array(a) => format!("[…] {} items", a.len()),
                        other => {
                            let s = other.to_string();
                            if s.chars().count() > 80 {
                                format!("{}…", s.chars().take(80).collect::<String>())
                            } else {
                                s
                            }
                        }
                    };
                    Section {
                        key,
                        summary,
                        open: text.len() < OPEN_BELOW,
                        text,
                    }
                })
                .collect();
            (sections, None, None)
        }
        Ok(other) => (
            vec![],
            Some(serde_json::to_string_pretty(&other).unwrap_or_default()),
            None,
        ),
        Err(_) => (
            vec![],
            Some(String::from_utf8_lossy(body).into_owned()),
            Some(
                "Not shown as JSON (not JSON, or nested deeper than 128 levels): shown as text."
                    .into(),
            ),
        ),
    }
}

#[derive(Deserialize)]
pub struct RetryForm {
    /// One sink's job; absent = every finished job of the delivery.
    sink: Option<String>,
}

/// A journal id from the path; anything else is a 404 page (not axum's
/// plain-text 400).
fn journal_id(key: &str) -> Result<i64, AdminError> {
    key.parse()
        .map_err(|_| AdminError::NoDelivery(key.to_string()))
}

pub async fn retry(
    State(state): State<Shared>,
    Path(key): Path<String>,
    Form(form): Form<RetryForm>,
) -> Result<Response, AdminError> {
    let id = journal_id(&key)?;
    let sink = form.sink.filter(|s| !s.is_empty());
    let which = sink.clone();
    let n = woken(
        &state,
        state.journal.retry_delivery(id, which.as_deref()).await?,
    );
    tracing::info!(delivery = id, sink = ?sink, jobs = n, "admin: retried");
    Ok(see_other(&format!("/admin/deliveries/{id}?retried={n}")))
}

/// Lets order move past a dead letter its partition waits behind: it
/// stays dead (retry it later if wanted); the deliveries behind it go.
pub async fn skip(
    State(state): State<Shared>,
    Extension(session): Extension<super::Session>,
    Path(key): Path<String>,
    Form(form): Form<RetryForm>,
) -> Result<Response, AdminError> {
    let id = journal_id(&key)?;
    let sink = form.sink.filter(|s| !s.is_empty());
    let by = format!("admin:session {}", session.tag());
    let done = state
        .journal
        .skip_dead(id, sink.as_deref(), &by, clock::now_ms())
        .await?;
    let n = done.jobs;
    woken(&state, done);
    tracing::warn!(delivery = id, sink = ?sink, jobs = n, by = %by, "admin: skipped a dead letter; order moves past it");
    Ok(see_other(&format!("/admin/deliveries/{id}?skipped={n}")))
}

/// The raw body, byte for byte, as an attachment (never rendered).
pub async fn body(
    State(state): State<Shared>,
    Path(key): Path<String>,
) -> Result<Response, AdminError> {
    let id = journal_id(&key)?;
    let payload = state
        .journal
        .payload(id)
        .await?
        .ok_or_else(|| AdminError::NoDelivery(key.clone()))?;
    let disposition = format!("attachment; filename=\"delivery-{id}.body\"");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition).expect("ASCII"),
            ),
        ],
        payload.body,
    )
        .into_response())
}
