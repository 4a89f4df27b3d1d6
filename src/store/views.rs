//! What the admin UI's pages read: roll-ups for charts and reports, and
//! partitions with their backlog.

use super::jobs::Backlog;
use super::recovery::SourceStatus;

/// One (sink, partition) as the partitions page shows it.
pub struct PartitionRow {
    pub sink: String,
    pub partition: String,
    pub pending: i64,
    /// When the oldest pending delivery arrived.
    pub oldest_ms: Option<i64>,
    pub lease_owner: Option<String>,
    pub lease_until_ms: i64,
    pub paused_until_ms: i64,
    /// Why gatehouse paused it (None: the consumer asked).
    pub pause_reason: Option<String>,
    pub held: bool,
    /// The first pending job, the one the partition waits on.
    pub head: Option<Head>,
    pub dead: i64,
    /// The dead job it waits behind (`on_dead = "hold"`): (job, delivery).
    pub dead_head: Option<(i64, i64)>,
}

/// A partition's first pending job and how its last attempt went.
pub struct Head {
    pub job_id: i64,
    pub delivery_id: i64,
    /// Attempts that counted.
    pub attempts: i64,
    pub next_at_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_outcome: Option<String>,
}

/// What the partitions page reads.
pub struct PartitionsView {
    pub backlog: Backlog,
    pub held_routes: Vec<String>,
    pub rows: Vec<PartitionRow>,
    /// Partitions in all (the rows stop at a limit).
    pub total: i64,
}

/// What the overview reads, and from when.
#[derive(Debug, Clone, Copy)]
pub struct OverviewQuery {
    pub now_ms: i64,
    /// Deliveries per minute from this minute on ...
    pub from_minute: i64,
    /// ... and per hour from this hour on.
    pub from_hour: i64,
    /// At most this many paused partitions.
    pub paused_limit: usize,
    /// The gateway cache's totals from this minute on.
    pub cache_from_minute: i64,
    /// Attempt counts and sink samples from this minute on.
    pub samples_from_minute: i64,
    pub with_recovery: bool,
}

/// Everything the overview page shows, read in one go.
pub struct Overview {
    /// (minute, deliveries).
    pub per_minute: Vec<(i64, i64)>,
    /// (hour, deliveries).
    pub per_hour: Vec<(i64, i64)>,
    pub backlog: Backlog,
    /// Paused partitions.
    pub paused: Vec<Paused>,
    pub held_routes: Vec<String>,
    /// The gateway cache: requests, answered from cache, units saved.
    pub cache: (i64, i64, i64),
    /// (minute, outcome, attempts), every sink summed.
    pub attempt_outcomes: Vec<(i64, String, i64)>,
    /// (minute, sink, lag ms, dead letters).
    pub sink_samples: Vec<(i64, String, i64, i64)>,
    pub recovery: Option<Vec<SourceStatus>>,
}

/// What the reports page reads.
pub struct Reports {
    /// (day, owner, event, deliveries).
    pub per_day: Vec<(i64, String, String, i64)>,
    /// (sink, outcome, latency bucket, attempts).
    pub attempts: Vec<(String, String, usize, i64)>,
}

/// A paused partition: until when, whether an operator holds it, and why
/// gatehouse paused it (None: the consumer asked, or only the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    pub sink: String,
    pub partition: String,
    pub until_ms: i64,
    pub held: bool,
    pub reason: Option<String>,
}
