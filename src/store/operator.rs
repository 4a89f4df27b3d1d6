//! What operators act on, from the CLI or the admin UI: deliveries by
//! filter, their jobs and attempts, retries, back-fills, pauses.

use serde::Serialize;

use crate::journal::model::DeliveryMeta;

/// Which deliveries a back-filled sink wants (its route's match rules).
pub type Wants = Box<dyn for<'m> Fn(&'m DeliveryMeta) -> bool + Send + Sync>;

/// Which deliveries an action applies to. A backend builds it into one
/// query with every value bound, never spliced.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub event: Option<String>,
    pub action: Option<String>,
    pub repository: Option<String>,
    pub partition: Option<String>,
    pub guid: Option<String>,
    /// A job state: pending, done or dead.
    pub state: Option<String>,
    pub route: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// Job states, the only values a state filter takes.
pub const STATES: [&str; 3] = ["pending", "done", "dead"];

#[derive(Debug, Serialize)]
pub struct Listed {
    pub id: i64,
    pub guid: String,
    pub hook_id: String,
    pub event: String,
    pub action: Option<String>,
    pub partition: String,
    pub repository: Option<String>,
    pub received_at_ms: i64,
    /// `route:state` for each job.
    pub jobs: Vec<String>,
    /// GitHub redelivered it because recovery asked.
    pub recovered: bool,
}

/// Where a page of the newest-first list starts: keyset pagination by
/// journal id, so a page deep in a million deliveries costs what the first
/// one does (no OFFSET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    Newest,
    /// Rows older than this id.
    Before(i64),
    /// Rows newer than this id (the page before, going back up).
    After(i64),
}

#[derive(Debug, Serialize)]
pub struct Page {
    /// Newest first.
    pub rows: Vec<Listed>,
    /// There are matching rows newer than the first / older than the last.
    pub has_newer: bool,
    pub has_older: bool,
}

impl Page {
    /// A page from the rows a backend read for `cursor`: up to `limit + 1`
    /// of them in its scan order (newest first, or oldest first going back
    /// up), the extra one saying another page follows.
    pub fn of(mut rows: Vec<Listed>, limit: usize, cursor: Cursor) -> Page {
        let more = rows.len() > limit;
        rows.truncate(limit);
        match cursor {
            Cursor::Newest => Page {
                rows,
                has_newer: false,
                has_older: more,
            },
            Cursor::Before(_) => Page {
                rows,
                has_newer: true,
                has_older: more,
            },
            Cursor::After(_) => {
                rows.reverse();
                Page {
                    rows,
                    has_newer: more,
                    has_older: true,
                }
            }
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AttemptRow {
    pub n: i64,
    pub started_at_ms: i64,
    pub duration_ms: i64,
    pub status_code: Option<i64>,
    pub outcome: String,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    /// Where it was sent (None: an in-process sink, or before part 11).
    pub url: Option<String>,
    /// The consumer's answer headers, as (name, value).
    pub response_headers: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
pub struct JobDetail {
    pub id: i64,
    pub route: String,
    pub state: String,
    /// Attempts that counted against max_attempts (pauses do not).
    pub attempts: i64,
    pub next_at_ms: i64,
    /// For a pending job that is not its partition's first: the job it
    /// waits behind (under strict ordering).
    pub behind: Option<i64>,
    /// A dead job its partition waits behind (`on_dead = "hold"`) until
    /// it is retried or skipped.
    pub holding: bool,
    /// Order moved past this dead job: when, and who let it.
    pub skipped: Option<(i64, String)>,
    pub history: Vec<AttemptRow>,
}

/// What a pending job waits for, in the order the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Done or dead: nothing.
    Nothing,
    /// Strict order: another job of its partition goes first.
    Behind(i64),
    /// Its next attempt is due then (a retry's backoff).
    At(i64),
    /// Due: the scheduler takes it at its next turn.
    Now,
}

impl JobDetail {
    /// What this job waits for now; `strict` is its route's ordering.
    pub fn waiting(&self, now_ms: i64, strict: bool) -> Waiting {
        match (self.state.as_str(), self.behind) {
            ("pending", Some(head)) if strict => Waiting::Behind(head),
            ("pending", _) if self.next_at_ms > now_ms => Waiting::At(self.next_at_ms),
            ("pending", _) => Waiting::Now,
            _ => Waiting::Nothing,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Shown {
    pub listed: Listed,
    pub repository: Option<String>,
    pub installation_id: Option<i64>,
    pub body_size: i64,
    /// json or form.
    pub content_kind: String,
    pub parse_status: String,
    pub parse_error: Option<String>,
    pub jobs: Vec<JobDetail>,
}

/// What a retry put back in the queue: how many jobs, and the (sink,
/// partition) pairs that now have work, so a live scheduler can be woken.
#[derive(Debug, Default)]
pub struct Requeued {
    pub jobs: usize,
    pub partitions: std::collections::BTreeSet<(String, String)>,
}

/// One sink as `gatehouse routes list` shows it.
#[derive(Debug, Serialize)]
pub struct RouteState {
    pub route: String,
    /// Paused by an operator as a whole.
    pub paused: bool,
    pub pending: i64,
    pub dead: i64,
    /// When the oldest pending delivery arrived.
    pub oldest_pending_ms: Option<i64>,
    /// Partitions paused on their own (held, or waiting out a consumer).
    pub partitions_paused: i64,
    /// In the config (false: its jobs wait for it to return).
    pub configured: bool,
}

impl RouteState {
    /// Every configured sink, then every sink with jobs no longer
    /// configured, from the backlog, the held routes, and the count of
    /// paused partitions per sink: what each backend reads, joined alike.
    pub fn all(
        backlog: &crate::store::jobs::Backlog,
        configured: &[String],
        held: &[String],
        paused: &[(String, i64)],
    ) -> Vec<RouteState> {
        backlog
            .by_sink(configured)
            .into_iter()
            .map(|b| RouteState {
                paused: held.contains(&b.sink),
                pending: b.pending,
                oldest_pending_ms: b.oldest_ms,
                dead: b.dead,
                partitions_paused: paused.iter().find(|p| p.0 == b.sink).map_or(0, |p| p.1),
                configured: b.configured,
                route: b.sink,
            })
            .collect()
    }
}

/// A sink that has jobs but is no longer configured (a route removed from
/// the config, or the Actions sink turned off): its jobs wait for it to
/// return, counted pending, and keep their deliveries from being pruned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Orphaned {
    pub sink: String,
    pub pending: i64,
    pub dead: i64,
}
