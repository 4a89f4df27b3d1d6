//! The overview: is it flowing, who is behind, what is paused, how much
//! rate limit is left, what the cache saves.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use super::github::{CredView, credentials};
use super::view::{self, Axis, Bars, Legend, Lines, clock_label};
use super::{AdminError, Chrome, Session, Shared, render};
use crate::clock;
use crate::store::views::{self, OverviewQuery};

/// Seconds between live refreshes of the overview.
const REFRESH_SECS: u32 = 10;

pub struct SinkRow {
    pub name: String,
    /// No longer configured: its jobs wait, and may be dropped.
    pub orphan: bool,
    pub pending: String,
    pub oldest: String,
    pub dead: String,
    pub has_dead: bool,
    pub held: bool,
}

pub struct PausedRow {
    pub sink: String,
    pub partition: String,
    pub why: String,
}

/// One refused webhook request.
pub struct RefusedRow {
    pub at: String,
    pub status: u16,
    pub event: String,
    pub from: String,
    pub reason: String,
}

/// Refused webhook requests in the last hour.
pub struct Refusals {
    pub total: String,
    /// (kind, count), most first.
    pub by_kind: Vec<(&'static str, String)>,
    pub last: Vec<RefusedRow>,
    /// A wrong secret looks like silence: say so when signatures fail.
    pub bad_signatures: bool,
}

pub struct RecoveryRow {
    pub source: String,
    pub state: String,
    pub last_complete: String,
    pub found: String,
    pub requested: String,
    pub failed: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    chrome: Chrome,
    per_minute: Bars,
    per_hour: Bars,
    last_hour: String,
    last_day: String,
    sinks: Vec<SinkRow>,
    paused: Vec<PausedRow>,
    paused_total: i64,
    /// Every open problem, the most severe first; empty when all is well.
    problems: Vec<crate::problems::Problem>,
    /// The headline: how much of what GitHub attempted the journal holds.
    completeness: Option<CompletenessView>,
    credentials: Vec<CredView>,
    cache: Option<(String, String, String)>,
    recovery: Option<Vec<RecoveryRow>>,
    refused: Refusals,
    /// Forward attempts by outcome, last hour and last day.
    forwarded: (Lines, Lines),
    /// Lag per sink, last hour and last day.
    lag: (Lines, Lines),
    /// Dead letters per sink, last day.
    dead: Lines,
    journal_size: String,
}

/// "99.998% of the last 7 days' deliveries are in the journal; 0 missing".
pub struct CompletenessView {
    pub headline: String,
    pub missing: i64,
    pub sources: Vec<CompletenessRow>,
}

pub struct CompletenessRow {
    pub source: String,
    pub percent: String,
    pub attempted: String,
    pub recovered: String,
    pub missing: String,
    pub oldest: String,
}

impl CompletenessView {
    fn new(all: &[crate::store::recovery::Completeness], window_hours: u64, now: i64) -> Self {
        let total = crate::store::recovery::Completeness::total(all);
        let window = if window_hours.is_multiple_of(24) {
            format!("{} days'", window_hours / 24)
        } else {
            format!("{window_hours} hours'")
        };
        let headline = format!(
            "{} of the last {window} deliveries are in the journal; {} missing",
            crate::problems::percent(total.ratio()),
            view::count(total.missing)
        );
        CompletenessView {
            headline,
            missing: total.missing,
            sources: all
                .iter()
                .map(|c| CompletenessRow {
                    source: c.source.clone(),
                    percent: crate::problems::percent(c.ratio()),
                    attempted: view::count(c.attempted.max(c.missing)),
                    recovered: view::count(c.recovered),
                    missing: view::count(c.missing),
                    oldest: c
                        .oldest_missing_ms
                        .map_or("–".into(), |t| format!("{} ago", view::span(now - t))),
                })
                .collect(),
        }
    }
}

pub async fn page(
    State(state): State<Shared>,
    Extension(session): Extension<Session>,
) -> Result<Response, AdminError> {
    let now = clock::now_ms();
    let (minute0, hour0) = (now / 60_000 - 59, now / 3_600_000 - 23);
    let recovery = state.recovery;
    let sinks_known = state.sinks();
    let data = state
        .journal
        .overview(OverviewQuery {
            now_ms: now,
            from_minute: minute0,
            from_hour: hour0,
            paused_limit: 20,
            cache_from_minute: now / 60_000 - 24 * 60,
            samples_from_minute: now / 60_000 - DAY_MINUTES,
            with_recovery: recovery,
        })
        .await?;
    let views::Overview {
        per_minute: minutes,
        per_hour: hours,
        backlog,
        paused,
        held_routes,
        cache,
        attempt_outcomes: outcomes,
        sink_samples: samples,
        recovery: walks,
    } = data;
    let (hour, day) = (Axis::last_hour(now), Axis::last_day(now));
    let (problems, completeness) = state.problems.look().await;
    let completeness = match (completeness?, &state.problems.recovery) {
        (Some(all), Some(r)) => Some(CompletenessView::new(&all, r.window_hours, now)),
        _ => None,
    };

    let minute_points: Vec<(String, i64)> = view::dense(&minutes, minute0, 60)
        .into_iter()
        .enumerate()
        .map(|(i, n)| (clock_label((minute0 + i as i64) * 60_000), n))
        .collect();
    let hour_points: Vec<(String, i64)> = view::dense(&hours, hour0, 24)
        .into_iter()
        .enumerate()
        .map(|(i, n)| (clock_label((hour0 + i as i64) * 3_600_000), n))
        .collect();

    // Every configured sink shows, with or without work so far.
    let sinks: Vec<SinkRow> = backlog
        .by_sink(&sinks_known)
        .into_iter()
        .map(|b| SinkRow {
            orphan: !b.configured,
            pending: view::count(b.pending),
            oldest: b.oldest_ms.map_or("–".into(), |t| view::span(now - t)),
            dead: view::count(b.dead),
            has_dead: b.dead > 0,
            held: held_routes.contains(&b.sink),
            name: b.sink,
        })
        .collect();
    let cache = (cache.0 > 0).then(|| {
        (
            view::percent(cache.1, cache.0),
            view::count(cache.0),
            view::count(cache.2),
        )
    });
    let page = Overview {
        chrome: Chrome {
            refresh: REFRESH_SECS,
            ..Chrome::new(&session, "overview")
        },
        last_hour: view::count(minute_points.iter().map(|p| p.1).sum()),
        last_day: view::count(hour_points.iter().map(|p| p.1).sum()),
        per_minute: Bars::new("Deliveries per minute, last hour", &minute_points, 600, 80),
        per_hour: Bars::new("Deliveries per hour, last day", &hour_points, 600, 80),
        sinks,
        // A paused route pauses all its partitions: one line for it, then
        // the partitions paused on their own.
        paused: held_routes
            .iter()
            .map(|sink| PausedRow {
                sink: sink.clone(),
                partition: "(every partition)".into(),
                why: "route paused by an operator".into(),
            })
            .chain(
                paused
                    .into_iter()
                    .filter(|p| !held_routes.contains(&p.sink))
                    .map(|p| PausedRow {
                        why: pause_reason(p.held, p.until_ms, p.reason.as_deref(), now),
                        sink: p.sink,
                        partition: p.partition,
                    }),
            )
            .collect(),
        paused_total: backlog.partitions_paused,
        problems,
        completeness,
        credentials: state.pool.as_deref().map(credentials).unwrap_or_default(),
        cache,
        recovery: walks.map(|w| {
            w.into_iter()
                .map(|s| RecoveryRow {
                    source: s.source,
                    state: s.last_walk.state.as_str().to_string(),
                    last_complete: s
                        .last_complete_at_ms
                        .map_or("never".into(), |t| format!("{} ago", view::span(now - t))),
                    found: view::count(s.last_walk.missing),
                    requested: view::count(s.last_walk.requested),
                    failed: view::count(s.failed_requests),
                })
                .collect()
        }),
        refused: refusals(&state.rejections, now),
        forwarded: (
            outcome_chart(&hour, &outcomes, "Forward attempts per minute"),
            outcome_chart(&day, &outcomes, "Forward attempts per 10 minutes"),
        ),
        lag: (
            sample_chart(
                &hour,
                &samples,
                "Lag (oldest pending) by sink",
                |s| s.2,
                view::span,
            ),
            sample_chart(
                &day,
                &samples,
                "Lag (oldest pending) by sink",
                |s| s.2,
                view::span,
            ),
        ),
        dead: sample_chart(&day, &samples, "Dead letters by sink", |s| s.3, view::count),
        journal_size: view::bytes(state.journal.size_bytes()),
    };
    render(page)
}

/// Minutes charted for "the last day".
const DAY_MINUTES: i64 = 24 * 60;

/// Attempts by outcome; no attempt in a bucket is a zero.
fn outcome_chart(axis: &Axis, rows: &[(i64, String, i64)], label: &str) -> Lines {
    let series = ["done", "failed", "paused"]
        .into_iter()
        .map(|outcome| {
            let mut v = vec![Some(0); axis.len];
            for (minute, o, n) in rows {
                if let (true, Some(i)) = (o == outcome, axis.index(*minute)) {
                    v[i] = v[i].map(|x| x + n);
                }
            }
            (outcome.to_string(), v)
        })
        .collect();
    Lines::new(label, &axis.labels(), series, view::count, Legend::Total)
}

/// One line per sink of a sampled value (the largest in each bucket); a
/// bucket without a sample (gatehouse was not running) is a gap.
fn sample_chart(
    axis: &Axis,
    rows: &[(i64, String, i64, i64)],
    label: &str,
    value: fn(&(i64, String, i64, i64)) -> i64,
    fmt: fn(i64) -> String,
) -> Lines {
    let mut sinks: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    sinks.sort_unstable();
    sinks.dedup();
    let series = sinks
        .into_iter()
        .map(|sink| {
            let mut v: Vec<Option<i64>> = vec![None; axis.len];
            for r in rows.iter().filter(|r| r.1 == sink) {
                if let Some(i) = axis.index(r.0) {
                    v[i] = Some(v[i].map_or(value(r), |x| x.max(value(r))));
                }
            }
            (sink.to_string(), v)
        })
        .collect();
    Lines::new(label, &axis.labels(), series, fmt, Legend::Latest)
}

/// The last hour of refused webhook requests.
fn refusals(r: &crate::ingest::rejections::Rejections, now: i64) -> Refusals {
    let (by, last) = r.since(now - 3_600_000);
    Refusals {
        total: view::count(by.iter().map(|(_, n)| *n as i64).sum()),
        bad_signatures: by.iter().any(|(k, _)| *k == "bad signature"),
        by_kind: by
            .into_iter()
            .map(|(k, n)| (k, view::count(n as i64)))
            .collect(),
        last: last
            .into_iter()
            .take(8)
            .map(|r| RefusedRow {
                at: view::time(r.at_ms),
                status: r.status,
                event: r.event,
                from: r.from.map_or("-".into(), |ip| ip.to_string()),
                reason: r.reason,
            })
            .collect(),
    }
}

/// Why a partition runs nothing now, in words.
pub fn pause_reason(held: bool, until_ms: i64, reason: Option<&str>, now_ms: i64) -> String {
    if let (false, true, Some(why)) = (held, until_ms > now_ms, reason) {
        return format!(
            "{why}: until {} ({} more)",
            view::time(until_ms),
            view::span(until_ms - now_ms)
        );
    }
    match (held, until_ms > now_ms) {
        (true, true) => format!(
            "paused by an operator; consumer asked to wait {} more",
            view::span(until_ms - now_ms)
        ),
        (true, false) => "paused by an operator".into(),
        (false, true) => format!(
            "consumer asked to wait (Retry-After or rate limit) until {} ({} more)",
            view::time(until_ms),
            view::span(until_ms - now_ms)
        ),
        (false, false) => "running".into(),
    }
}

#[derive(serde::Deserialize)]
pub struct DropForm {
    sink: String,
}

/// Deletes every job of a sink the config no longer has (see
/// `gatehouse routes drop`); a configured one is refused.
pub async fn drop_sink(
    State(state): State<Shared>,
    axum::Form(form): axum::Form<DropForm>,
) -> Result<Response, AdminError> {
    if state.sinks().contains(&form.sink) {
        return Err(AdminError::BadRequest(format!(
            "route {:?} is in the config: remove it there first",
            form.sink
        )));
    }
    let dropped = state.journal.drop_sink(&form.sink).await?;
    tracing::info!(sink = %form.sink, pending = dropped.pending, dead = dropped.dead, "admin: jobs of a removed route dropped");
    Ok(super::see_other(&format!(
        "/admin/?dropped={}",
        dropped.pending + dropped.dead
    )))
}
