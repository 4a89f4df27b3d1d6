//! Routes and partitions: backlog, lease, pauses and why; pause and resume
//! buttons for a whole route or one partition.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;

use super::overview::pause_reason;
use super::view;
use super::{AdminError, Chrome, Session, Shared, read, render, see_other, store};
use crate::clock;
use crate::control;

/// Rows on one page; the busiest come first.
const LIMIT: usize = 500;

pub struct RouteView {
    pub name: String,
    pub held: bool,
    pub pending: String,
    pub dead: String,
    pub oldest: String,
}

pub struct PartitionView {
    pub sink: String,
    pub partition: String,
    pub pending: String,
    pub oldest: String,
    pub lease: String,
    pub held: bool,
    pub why: String,
}

#[derive(Template)]
#[template(path = "partitions.html")]
struct PartitionsPage {
    chrome: Chrome,
    routes: Vec<RouteView>,
    rows: Vec<PartitionView>,
    total: i64,
    sink: String,
    sinks: Vec<String>,
}

#[derive(Deserialize)]
pub struct SinkQuery {
    #[serde(default)]
    sink: String,
}

pub async fn page(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
    Query(q): Query<SinkQuery>,
) -> Result<Response, AdminError> {
    let now = clock::now_ms();
    let sink = Some(q.sink.clone()).filter(|s| !s.is_empty());
    let (backlog, held, (rows, total)) = read(&state, move |c| {
        Ok((
            crate::scheduler::store::backlog_on(c, now)?,
            store::held_routes(c)?,
            store::partitions(c, sink.as_deref(), now, LIMIT)?,
        ))
    })
    .await?;
    let routes = state
        .sinks
        .iter()
        .map(|name| {
            let b = backlog.per_sink.iter().find(|b| &b.0 == name);
            let (pending, oldest, dead) = b.map_or((0, None, 0), |b| (b.1, b.2, b.3));
            RouteView {
                name: name.clone(),
                held: held.contains(name),
                pending: view::count(pending),
                dead: view::count(dead),
                oldest: oldest.map_or("–".into(), |t| view::span(now - t)),
            }
        })
        .collect();
    let rows = rows
        .into_iter()
        .map(|p| PartitionView {
            why: if held.contains(&p.sink) && !p.held {
                "its route is paused".into()
            } else {
                pause_reason(p.held, p.paused_until_ms, now)
            },
            lease: match &p.lease_owner {
                Some(owner) if p.lease_until_ms > now => {
                    format!("{owner}, {} left", view::span(p.lease_until_ms - now))
                }
                _ => "–".into(),
            },
            pending: view::count(p.pending),
            oldest: p.oldest_ms.map_or("–".into(), |t| view::span(now - t)),
            held: p.held,
            sink: p.sink,
            partition: p.partition,
        })
        .collect();
    render(PartitionsPage {
        chrome: Chrome::new(&session, "partitions"),
        routes,
        rows,
        total,
        sink: q.sink,
        sinks: state.sinks.clone(),
    })
}

#[derive(Deserialize)]
pub struct HoldForm {
    sink: String,
    /// Absent: the whole route.
    partition: Option<String>,
    /// "pause" or "resume".
    action: String,
}

pub async fn hold(
    State(state): State<Shared>,
    Form(form): Form<HoldForm>,
) -> Result<Response, AdminError> {
    let hold = match form.action.as_str() {
        "pause" => true,
        "resume" => false,
        other => {
            return Err(AdminError::BadRequest(format!(
                "action {other:?}: pause or resume"
            )));
        }
    };
    if !state.sinks.contains(&form.sink) {
        return Err(AdminError::BadRequest(format!(
            "no route {:?} in the config",
            form.sink
        )));
    }
    let (sink, partition) = (
        form.sink.clone(),
        form.partition.clone().filter(|p| !p.is_empty()),
    );
    let p = partition.clone();
    state
        .journal
        .exec(move |tx| {
            Ok(match &p {
                Some(p) => control::hold_partition(tx, &sink, p, hold),
                None => control::hold_route(tx, &sink, hold),
            })
        })
        .await??;
    tracing::info!(sink = %form.sink, partition = ?partition, hold, "admin: pause changed");
    // A resumed partition runs now; a resumed route's partitions at the
    // scheduler's next rescan (within 10 s).
    if let (false, Some(p)) = (hold, partition) {
        state.journal.wake(form.sink.clone(), p);
    }
    let back = form_urlencoded::Serializer::new(String::new())
        .append_pair("sink", &form.sink)
        .finish();
    Ok(see_other(&format!("/admin/partitions?{back}")))
}
