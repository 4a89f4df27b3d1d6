//! Operator actions on a journal, live or not: list and show deliveries,
//! retry jobs (one GUID, dead letters matching a filter, or a back-fill for
//! a new route), pause and resume routes and partitions. The CLI uses these
//! now; the admin UI will later. A running server notices changes on its
//! next rescan (within 10 s).

use std::path::Path;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter};
use serde::Serialize;

use crate::clock;
use crate::journal::{DeliveryMeta, latest_version};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "no journal at {0} (is [storage] path right? `gatehouse serve` creates it on its first start)"
    )]
    Missing(String),
    #[error(
        "journal schema version {found}, this gatehouse expects {want}: start `gatehouse serve` once to migrate, or use the matching release"
    )]
    Version { found: u32, want: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Opens the journal for operator actions beside a running server: WAL
/// lets both read, and SQLite serialises the writes (busy_timeout waits).
pub fn open(path: &Path) -> Result<Connection, ControlError> {
    if !path.exists() {
        return Err(ControlError::Missing(path.display().to_string()));
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    crate::journal::configure(&conn)?;
    let found: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found != latest_version() {
        return Err(ControlError::Version {
            found,
            want: latest_version(),
        });
    }
    Ok(conn)
}

/// `6h`, `30m`, `2d`, `45s`, or an RFC 3339 time → epoch ms.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, ControlError> {
    let unit = |c: char| match c {
        's' => Some(1_000),
        'm' => Some(60_000),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        _ => None,
    };
    if let Some(last) = s.chars().last()
        && let Some(ms) = unit(last)
        && let Ok(n) = s[..s.len() - 1].parse::<i64>()
    {
        return Ok(now_ms - n * ms);
    }
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            ControlError::Invalid(format!(
                "--since {s:?}: use 30m, 6h, 2d or an RFC 3339 time"
            ))
        })
}

/// Which deliveries an action applies to. Built into SQL once, with every
/// value bound, never spliced.
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

impl Filter {
    fn sql(&self) -> Result<(String, Vec<SqlValue>), ControlError> {
        let mut clauses = vec!["1 = 1".to_string()];
        let mut values = Vec::new();
        let mut eq = |column: &str, v: &Option<String>| {
            if let Some(v) = v {
                clauses.push(format!("d.{column} = ?"));
                values.push(SqlValue::Text(v.clone()));
            }
        };
        eq("event", &self.event);
        eq("action", &self.action);
        eq("repository", &self.repository);
        eq("partition_key", &self.partition);
        eq("guid", &self.guid);
        // Ids follow arrival, so a time range is also an id range: one
        // probe of the time index finds each end, and the newest-first scan
        // by id stays inside it instead of wading through the rest. The
        // time test itself stays, so a clock step back costs at most a few
        // rows at the edges.
        if let Some(t) = self.since_ms {
            clauses.push(
                "d.received_at_ms >= ? AND d.id >= COALESCE((SELECT id FROM deliveries
                   WHERE received_at_ms >= ? ORDER BY received_at_ms LIMIT 1), 9223372036854775807)"
                    .into(),
            );
            values.extend([SqlValue::Integer(t), SqlValue::Integer(t)]);
        }
        if let Some(t) = self.until_ms {
            clauses.push(
                "d.received_at_ms < ? AND d.id <= COALESCE((SELECT id FROM deliveries
                   WHERE received_at_ms < ? ORDER BY received_at_ms DESC LIMIT 1), 0)"
                    .into(),
            );
            values.extend([SqlValue::Integer(t), SqlValue::Integer(t)]);
        }
        let state = match self.state.as_deref() {
            None => None,
            Some(s) => Some(*STATES.iter().find(|k| **k == s).ok_or_else(|| {
                ControlError::Invalid(format!("state {s:?}: pending, done or dead"))
            })?),
        };
        let sink = if self.route.is_some() {
            values.push(SqlValue::Text(self.route.clone().unwrap_or_default()));
            " AND j.sink = ?"
        } else {
            ""
        };
        match state {
            // Pending jobs and dead letters are few beside a million done
            // ones: let their partial indexes drive (the state is spliced
            // as a literal from the closed list above, so SQLite can use
            // them) instead of testing every delivery.
            Some(s @ ("pending" | "dead")) => clauses.push(format!(
                "d.id IN (SELECT j.delivery_id FROM jobs j WHERE j.state = '{s}'{sink})"
            )),
            Some(s) => clauses.push(format!(
                "EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id AND j.state = '{s}'{sink})"
            )),
            None if self.route.is_some() => clauses.push(format!(
                "EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id{sink})"
            )),
            None => {}
        }
        Ok((clauses.join(" AND "), values))
    }
}

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

/// The columns [`listed`] reads, in its order.
const LISTED: &str = "d.id, d.guid, d.hook_id, d.event, d.action, d.partition_key,
    d.received_at_ms, d.repository,
    (SELECT group_concat(j.sink || ':' || j.state, ' ') FROM jobs j WHERE j.delivery_id = d.id),
    d.recovered";
/// How many columns [`LISTED`] has: more come after it.
const LISTED_COLUMNS: usize = 10;

fn listed(r: &rusqlite::Row<'_>) -> rusqlite::Result<Listed> {
    let jobs: Option<String> = r.get(8)?;
    Ok(Listed {
        id: r.get(0)?,
        guid: r.get(1)?,
        hook_id: r.get(2)?,
        event: r.get(3)?,
        action: r.get(4)?,
        partition: r.get(5)?,
        received_at_ms: r.get(6)?,
        repository: r.get(7)?,
        jobs: jobs
            .map(|j| j.split(' ').map(String::from).collect())
            .unwrap_or_default(),
        recovered: r.get(9)?,
    })
}

pub fn list(conn: &Connection, f: &Filter, limit: usize) -> Result<Vec<Listed>, ControlError> {
    Ok(page(conn, f, Cursor::Newest, limit)?.rows)
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

pub fn page(
    conn: &Connection,
    f: &Filter,
    cursor: Cursor,
    limit: usize,
) -> Result<Page, ControlError> {
    let (w, mut values) = f.sql()?;
    let (keyset, order) = match cursor {
        Cursor::Newest => ("", "DESC"),
        Cursor::Before(id) => {
            values.push(SqlValue::Integer(id));
            (" AND d.id < ?", "DESC")
        }
        Cursor::After(id) => {
            values.push(SqlValue::Integer(id));
            (" AND d.id > ?", "ASC")
        }
    };
    // One more than asked says whether another page follows.
    values.push(SqlValue::Integer(limit as i64 + 1));
    let mut st = conn.prepare(&format!(
        "SELECT {LISTED} FROM deliveries d WHERE {w}{keyset} ORDER BY d.id {order} LIMIT ?"
    ))?;
    let mut rows = st
        .query_map(params_from_iter(values), listed)?
        .collect::<Result<Vec<_>, _>>()?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    Ok(match cursor {
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
    })
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

/// The journal ids of the deliveries with this GUID (one per hook).
pub fn ids_of_guid(conn: &Connection, guid: &str) -> Result<Vec<i64>, ControlError> {
    Ok(conn
        .prepare_cached("SELECT id FROM deliveries WHERE guid = ?1 ORDER BY id")?
        .query_map([guid], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// Every journaled delivery with this GUID (one per hook), with its jobs
/// and every attempt.
pub fn show(conn: &Connection, guid: &str) -> Result<Vec<Shown>, ControlError> {
    let mut out = Vec::new();
    for id in ids_of_guid(conn, guid)? {
        out.extend(show_one(conn, id)?);
    }
    Ok(out)
}

/// One delivery by journal id, with its jobs and every attempt.
pub fn show_one(conn: &Connection, id: i64) -> Result<Option<Shown>, ControlError> {
    let found = conn
        .query_row(
            &format!(
                "SELECT {LISTED}, d.installation_id, d.body_size, d.parse_status, d.content_kind,
                        d.parse_error
                 FROM deliveries d WHERE d.id = ?1"
            ),
            [id],
            |r| {
                let more = |i: usize| LISTED_COLUMNS + i;
                Ok(Shown {
                    // Jobs come with their attempts below.
                    listed: Listed {
                        jobs: vec![],
                        ..listed(r)?
                    },
                    repository: r.get(7)?,
                    installation_id: r.get(more(0))?,
                    body_size: r.get(more(1))?,
                    parse_status: r.get(more(2))?,
                    content_kind: r.get(more(3))?,
                    parse_error: r.get(more(4))?,
                    jobs: vec![],
                })
            },
        )
        .optional()?;
    let Some(mut s) = found else {
        return Ok(None);
    };
    type JobFacts = (i64, String, String, i64, i64, Option<i64>);
    let jobs: Vec<JobFacts> = conn
        .prepare_cached(
            "SELECT j.id, j.sink, j.state, j.attempts, j.next_at_ms,
                    CASE WHEN j.state = 'pending' THEN
                      (SELECT MIN(h.id) FROM jobs h WHERE h.sink = j.sink
                         AND h.partition_key = j.partition_key AND h.state = 'pending')
                    END
             FROM jobs j WHERE j.delivery_id = ?1 ORDER BY j.sink",
        )?
        .query_map([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    for (job_id, route, state, attempts, next_at_ms, head) in jobs {
        let history = conn
            .prepare_cached(
                "SELECT n, started_at_ms, duration_ms, status_code, outcome, error, response_excerpt,
                        url, response_headers
                 FROM attempts WHERE job_id = ?1 ORDER BY n",
            )?
            .query_map([job_id], |r| {
                let headers: Option<Vec<u8>> = r.get(8)?;
                Ok(AttemptRow {
                    n: r.get(0)?,
                    started_at_ms: r.get(1)?,
                    duration_ms: r.get(2)?,
                    status_code: r.get(3)?,
                    outcome: r.get(4)?,
                    error: r.get(5)?,
                    response_excerpt: r.get(6)?,
                    url: r.get(7)?,
                    response_headers: headers
                        .map(|h| {
                            crate::journal::model::decode_headers(&h)
                                .into_iter()
                                .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
            })?
            .collect::<Result<_, _>>()?;
        s.listed.jobs.push(format!("{route}:{state}"));
        s.jobs.push(JobDetail {
            id: job_id,
            route,
            state,
            attempts,
            next_at_ms,
            behind: head.filter(|h| *h != job_id),
            history,
        });
    }
    Ok(Some(s))
}

/// What a retry put back in the queue: how many jobs, and the (sink,
/// partition) pairs that now have work, so a live scheduler can be woken.
#[derive(Debug, Default)]
pub struct Requeued {
    pub jobs: usize,
    pub partitions: std::collections::BTreeSet<(String, String)>,
}

/// Runs every finished (done or dead) job matching `clause` again from a
/// clean slate. `values` bind the clause's placeholders, after the time.
fn requeue(
    conn: &Connection,
    clause: &str,
    values: Vec<SqlValue>,
) -> Result<Requeued, ControlError> {
    let mut all = vec![SqlValue::Integer(clock::now_ms())];
    all.extend(values);
    let mut st = conn.prepare(&format!(
        "UPDATE jobs SET state = 'pending', attempts = 0, next_at_ms = ?1, updated_at_ms = ?1
         WHERE state != 'pending' AND {clause} RETURNING sink, partition_key"
    ))?;
    let mut out = Requeued::default();
    let mut rows = st.query(params_from_iter(all))?;
    while let Some(r) = rows.next()? {
        out.jobs += 1;
        out.partitions.insert((r.get(0)?, r.get(1)?));
    }
    Ok(out)
}

fn route_value(route: Option<&str>) -> SqlValue {
    route.map_or(SqlValue::Null, |r| SqlValue::Text(r.to_string()))
}

/// Retries every job of one GUID (or only `route`'s).
pub fn retry_guid(
    conn: &Connection,
    guid: &str,
    route: Option<&str>,
) -> Result<Requeued, ControlError> {
    requeue(
        conn,
        "delivery_id IN (SELECT id FROM deliveries WHERE guid = ?2) AND (?3 IS NULL OR sink = ?3)",
        vec![SqlValue::Text(guid.to_string()), route_value(route)],
    )
}

/// Retries every finished job of one delivery (or only `route`'s).
pub fn retry_delivery(
    conn: &Connection,
    id: i64,
    route: Option<&str>,
) -> Result<Requeued, ControlError> {
    requeue(
        conn,
        "delivery_id = ?2 AND (?3 IS NULL OR sink = ?3)",
        vec![SqlValue::Integer(id), route_value(route)],
    )
}

/// The dead letters among the deliveries matching `f`, as SQL over `jobs`
/// (driven by the dead-letter index, then each delivery by id).
fn dead_of(f: &Filter) -> Result<(String, Vec<SqlValue>), ControlError> {
    let (w, mut values) = f.sql()?;
    // The route's `?` comes after the filter's, as its value does.
    let route_clause = if let Some(r) = &f.route {
        values.push(SqlValue::Text(r.clone()));
        " AND jobs.sink = ?"
    } else {
        ""
    };
    Ok((
        format!(
            "jobs.state = 'dead'
             AND EXISTS (SELECT 1 FROM deliveries d WHERE d.id = jobs.delivery_id AND {w}){route_clause}"
        ),
        values,
    ))
}

/// How many dead letters [`retry_dead`] would retry.
pub fn count_dead(conn: &Connection, f: &Filter) -> Result<i64, ControlError> {
    let (w, values) = dead_of(f)?;
    Ok(conn.query_row(
        &format!("SELECT COUNT(*) FROM jobs WHERE {w}"),
        params_from_iter(values),
        |r| r.get(0),
    )?)
}

/// Retries every dead letter among the deliveries matching `f`.
pub fn retry_dead(conn: &Connection, f: &Filter) -> Result<Requeued, ControlError> {
    let (w, values) = dead_of(f)?;
    requeue(conn, &w, values)
}

/// Creates `sink`'s jobs for deliveries since `since_ms` that it wants but
/// that arrived before it existed. Returns how many.
pub fn backfill(
    conn: &mut Connection,
    sink: &str,
    wants: impl Fn(&DeliveryMeta) -> bool,
    since_ms: i64,
) -> Result<usize, ControlError> {
    // Immediate, so a server writing meanwhile makes this wait rather than
    // fail when its first read turns into a write.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let candidates: Vec<(i64, DeliveryMeta)> = {
        let mut st = tx.prepare(&format!(
            "SELECT {} FROM deliveries d
             WHERE d.received_at_ms >= ?1
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id AND j.sink = ?2)
             ORDER BY d.id",
            crate::journal::DELIVERY_COLUMNS
        ))?;
        st.query_map(params![since_ms, sink], |r| {
            crate::journal::row_to_delivery(r).map(|d| (d.id, d.meta))
        })?
        .collect::<Result<_, _>>()?
    };
    let now = clock::now_ms();
    let mut n = 0;
    for (id, meta) in candidates.iter().filter(|(_, m)| wants(m)) {
        crate::journal::fan_out(&tx, *id, sink, &meta.partition_key, now)?;
        n += 1;
    }
    tx.commit()?;
    Ok(n)
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

/// Every configured sink, then every sink with jobs that is no longer
/// configured.
pub fn route_states(
    conn: &Connection,
    configured: &[String],
    now_ms: i64,
) -> Result<Vec<RouteState>, ControlError> {
    let backlog = crate::scheduler::store::backlog_on(conn, now_ms)?;
    let held = crate::scheduler::store::held_routes(conn)?;
    let paused: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT sink, COUNT(*) FROM partitions WHERE held = 1 OR paused_until_ms > ?1 GROUP BY sink",
        )?
        .query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(backlog
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
        .collect())
}

/// Pauses (or resumes) a whole route.
pub fn hold_route(conn: &Connection, route: &str, hold: bool) -> Result<(), ControlError> {
    if hold {
        conn.execute(
            "INSERT INTO route_holds (sink) VALUES (?1) ON CONFLICT DO NOTHING",
            [route],
        )?;
    } else {
        conn.execute("DELETE FROM route_holds WHERE sink = ?1", [route])?;
    }
    Ok(())
}

/// Pauses (or resumes) one route's partition.
pub fn hold_partition(
    conn: &Connection,
    route: &str,
    partition: &str,
    hold: bool,
) -> Result<(), ControlError> {
    conn.execute(
        "INSERT INTO partitions (sink, partition_key, held) VALUES (?1, ?2, ?3)
         ON CONFLICT (sink, partition_key) DO UPDATE SET held = excluded.held",
        params![route, partition, hold as i64],
    )?;
    Ok(())
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

/// Every sink with pending jobs or dead letters that `configured` lacks.
pub fn orphans(conn: &Connection, configured: &[String]) -> Result<Vec<Orphaned>, ControlError> {
    let mut st = conn.prepare_cached(
        "SELECT s.sink,
                (SELECT COUNT(*) FROM jobs j WHERE j.sink = s.sink AND j.state = 'pending'),
                (SELECT COUNT(*) FROM jobs j WHERE j.sink = s.sink AND j.state = 'dead')
         FROM (SELECT DISTINCT sink FROM partitions) s ORDER BY s.sink",
    )?;
    let rows = st
        .query_map([], |r| {
            Ok(Orphaned {
                sink: r.get(0)?,
                pending: r.get(1)?,
                dead: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows
        .into_iter()
        .filter(|o| !configured.contains(&o.sink) && o.pending + o.dead > 0)
        .collect())
}

/// Deletes every job (and attempt) of a sink that is no longer configured,
/// its partitions and its pause, so its deliveries can be pruned again.
/// Returns what it held: pending jobs and dead letters.
pub fn drop_sink(conn: &Connection, sink: &str) -> Result<Orphaned, ControlError> {
    let count = |state: &str| -> rusqlite::Result<i64> {
        conn.query_row(
            "SELECT COUNT(*) FROM jobs WHERE sink = ?1 AND state = ?2",
            params![sink, state],
            |r| r.get(0),
        )
    };
    let dropped = Orphaned {
        sink: sink.to_string(),
        pending: count("pending")?,
        dead: count("dead")?,
    };
    conn.execute("DELETE FROM jobs WHERE sink = ?1", [sink])?;
    conn.execute("DELETE FROM partitions WHERE sink = ?1", [sink])?;
    conn.execute("DELETE FROM route_holds WHERE sink = ?1", [sink])?;
    Ok(dropped)
}
