//! Routes and partitions: backlog, lease, pauses and why; pause and resume
//! buttons for a whole route or one partition.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::{Extension, Form};
use serde::Deserialize;

use super::overview::pause_reason;
use super::view;
use super::{AdminError, Chrome, Session, Shared, render, see_other};
use crate::clock;
use crate::scheduler::in_flight::Sending;
use crate::store::views as store;

/// Rows on one page; the busiest come first.
const LIMIT: usize = 500;

pub struct RouteView {
    /// Its retry schedule in words.
    pub schedule: String,
    /// One delivery per request, or its batches, in words.
    pub sends: String,
    pub name: String,
    pub held: bool,
    pub pending: String,
    pub dead: String,
    pub oldest: String,
}

pub struct PartitionView {
    /// The dead letter it waits behind, to retry or skip there.
    pub dead_head_delivery: Option<i64>,
    pub sink: String,
    pub partition: String,
    pub pending: String,
    pub dead: String,
    pub has_dead: bool,
    pub oldest: String,
    pub lease: String,
    pub held: bool,
    /// Its state in words: paused (why), sending, retrying, due, idle.
    pub why: String,
    /// The head job: which, attempt n of max.
    pub head: String,
    /// The head job's delivery, for a link.
    pub head_delivery: Option<i64>,
    /// The head's last attempt: status and error.
    pub last: String,
    /// When the head is tried next.
    pub next: String,
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
    let store::PartitionsView {
        backlog,
        held_routes: held,
        rows,
        total,
    } = state
        .journal
        .partitions(sink.as_deref(), now, LIMIT)
        .await?;
    let routes = backlog
        .by_sink(&state.sinks())
        .into_iter()
        .filter(|b| b.configured)
        .map(|b| RouteView {
            schedule: state.route(&b.sink).map_or(String::new(), |r| r.schedule),
            sends: state.route(&b.sink).map_or(String::new(), |r| r.sends),
            held: held.contains(&b.sink),
            pending: view::count(b.pending),
            dead: view::count(b.dead),
            oldest: b.oldest_ms.map_or("–".into(), |t| view::span(now - t)),
            name: b.sink,
        })
        .collect();
    let breakers = state.journal.breakers().await?;
    let rows = rows
        .into_iter()
        .map(|p| {
            let breaker = breakers.iter().find(|(s, _)| *s == p.sink).map(|(_, b)| b);
            let sending = state.in_flight.get(&p.sink, &p.partition);
            let max = state.route(&p.sink).map(|r| r.max_attempts);
            let route_held = held.contains(&p.sink);
            partition_view(p, sending, max, route_held, breaker, now)
        })
        .collect();
    render(PartitionsPage {
        chrome: Chrome::new(&session, "partitions"),
        routes,
        rows,
        total,
        sink: q.sink,
        sinks: state.sinks(),
    })
}

/// One partition in words, from its row and what this process sends now.
fn partition_view(
    p: store::PartitionRow,
    sending: Option<Sending>,
    max_attempts: Option<u32>,
    route_held: bool,
    breaker: Option<&crate::store::jobs::Breaker>,
    now: i64,
) -> PartitionView {
    let of_max = |n: i64| match max_attempts {
        Some(max) => format!("{n} of {max}"),
        None => n.to_string(),
    };
    let paused = p.held || route_held || p.paused_until_ms > now || p.dead_head.is_some();
    let why = if let Some((job, _)) = p.dead_head {
        format!(
            "waiting behind dead letter #{job} ({} behind it): retry or skip it to go on",
            view::count(p.pending)
        )
    } else if let Some(b) = breaker {
        format!("route breaker {}", breaker_text(b, now))
    } else if route_held && !p.held {
        "its route is paused".into()
    } else if paused {
        pause_reason(p.held, p.paused_until_ms, p.pause_reason.as_deref(), now)
    } else if let Some(s) = &sending {
        format!(
            "sending #{} (attempt {}), for {}",
            s.job_id,
            of_max(s.attempt as i64),
            view::span(now - s.since_ms)
        )
    } else {
        match &p.head {
            None => "idle".into(),
            Some(h) if h.next_at_ms > now => format!(
                "retrying #{} in {}; {} behind it",
                h.job_id,
                view::span(h.next_at_ms - now),
                view::count(p.pending - 1)
            ),
            Some(_) => match &p.lease_owner {
                Some(owner) if p.lease_until_ms > now => format!("leased by {owner}"),
                _ => "due now".into(),
            },
        }
    };
    let (head, last, next) = match &p.head {
        None => ("–".into(), String::new(), String::new()),
        Some(h) => (
            format!("#{}, attempt {}", h.job_id, of_max(h.attempts + 1)),
            match (h.last_status, &h.last_error, &h.last_outcome) {
                (None, None, None) => String::new(),
                (status, error, outcome) => [
                    outcome.clone(),
                    status.map(|c| c.to_string()),
                    error.clone(),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · "),
            },
            if paused {
                "when resumed".into()
            } else if h.next_at_ms > now {
                format!(
                    "{} (in {})",
                    view::time(h.next_at_ms),
                    view::span(h.next_at_ms - now)
                )
            } else {
                "now".into()
            },
        ),
    };
    PartitionView {
        why,
        dead_head_delivery: p.dead_head.map(|(_, delivery)| delivery),
        head_delivery: p.head.as_ref().map(|h| h.delivery_id),
        head,
        last,
        next,
        lease: match &p.lease_owner {
            Some(owner) if p.lease_until_ms > now => {
                format!("{owner}, {} left", view::span(p.lease_until_ms - now))
            }
            _ => "–".into(),
        },
        pending: view::count(p.pending),
        dead: view::count(p.dead),
        has_dead: p.dead > 0,
        oldest: p.oldest_ms.map_or("–".into(), |t| view::span(now - t)),
        held: p.held,
        sink: p.sink,
        partition: p.partition,
    }
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
    if !state.sinks().contains(&form.sink) {
        return Err(AdminError::BadRequest(format!(
            "no route {:?} in the config",
            form.sink
        )));
    }
    let partition = form.partition.clone().filter(|p| !p.is_empty());
    match &partition {
        Some(p) => state.journal.hold_partition(&form.sink, p, hold).await?,
        None => state.journal.hold_route(&form.sink, hold).await?,
    }
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

/// What an open breaker does, in words.
fn breaker_text(b: &crate::store::jobs::Breaker, now_ms: i64) -> String {
    format!(
        "open for {}: nothing is sent but one probe (its oldest pending delivery); next probe {}",
        view::span(now_ms - b.opened_at_ms),
        if b.probe_at_ms > now_ms {
            format!("in {}", view::span(b.probe_at_ms - now_ms))
        } else {
            "due now".into()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(head_next_at: Option<i64>, lease: Option<&str>) -> store::PartitionRow {
        store::PartitionRow {
            sink: "ci".into(),
            partition: "acme".into(),
            pending: 3,
            oldest_ms: Some(0),
            lease_owner: lease.map(String::from),
            lease_until_ms: 10_000,
            paused_until_ms: 0,
            pause_reason: None,
            held: false,
            head: head_next_at.map(|next_at_ms| store::Head {
                job_id: 9,
                delivery_id: 4,
                attempts: 3,
                next_at_ms,
                last_status: Some(502),
                last_error: Some("HTTP 502".into()),
                last_outcome: Some("failed".into()),
            }),
            dead: 1,
            dead_head: None,
        }
    }

    #[test]
    fn a_partition_says_what_it_waits_for() {
        let now = 1_000;
        let v = partition_view(row(Some(61_000), None), None, Some(12), false, None, now);
        assert_eq!(v.why, "retrying #9 in 1m 0s; 2 behind it");
        assert_eq!(v.head, "#9, attempt 4 of 12");
        assert_eq!(v.last, "failed · 502 · HTTP 502");
        assert!(v.next.contains("(in 1m 0s)"), "{}", v.next);
        let v = partition_view(row(Some(0), None), None, Some(12), false, None, now);
        assert_eq!((v.why.as_str(), v.next.as_str()), ("due now", "now"));
        let v = partition_view(
            row(Some(0), Some("vm-2 pid 7")),
            None,
            None,
            false,
            None,
            now,
        );
        assert_eq!(v.why, "leased by vm-2 pid 7");
        assert_eq!(v.head, "#9, attempt 4", "no max for a built-in sink");
        let v = partition_view(row(Some(0), None), None, Some(12), true, None, now);
        assert_eq!(
            (v.why.as_str(), v.next.as_str()),
            ("its route is paused", "when resumed")
        );
        let v = partition_view(row(None, None), None, Some(12), false, None, now);
        assert_eq!(v.why, "idle");
        // An open route: only its probe goes; a dead head still comes first.
        let open = crate::store::jobs::Breaker {
            opened_at_ms: 0,
            probe_at_ms: 31_000,
        };
        let v = partition_view(row(Some(0), None), None, Some(12), false, Some(&open), now);
        assert!(v.why.starts_with("route breaker open for 1s"), "{}", v.why);
        assert!(v.why.ends_with("next probe in 30s"), "{}", v.why);
        let mut held = row(Some(0), None);
        held.dead_head = Some((9, 4));
        let v = partition_view(held, None, Some(12), false, Some(&open), now);
        assert!(
            v.why.starts_with("waiting behind dead letter #9"),
            "{}",
            v.why
        );
    }
}
