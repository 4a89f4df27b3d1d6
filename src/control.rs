//! Operator actions on a journal, live or not: list and show deliveries,
//! retry jobs (one GUID, dead letters matching a filter, or a back-fill for
//! a new route), pause and resume routes and partitions. The CLI uses these
//! now; the admin UI will later. A running server notices changes on its
//! next rescan (within 10 s).

use std::path::Path;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags, params, params_from_iter};
use serde::Serialize;

use crate::clock;
use crate::journal::{ContentKind, DeliveryMeta, ParseStatus, latest_version};

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
    pub partition: Option<String>,
    /// A job state: pending, done or dead.
    pub state: Option<String>,
    pub route: Option<String>,
    pub since_ms: Option<i64>,
}

impl Filter {
    fn sql(&self) -> Result<(String, Vec<SqlValue>), ControlError> {
        let mut clauses = vec!["1 = 1".to_string()];
        let mut values = Vec::new();
        if let Some(e) = &self.event {
            clauses.push("d.event = ?".into());
            values.push(SqlValue::Text(e.clone()));
        }
        if let Some(p) = &self.partition {
            clauses.push("d.partition_key = ?".into());
            values.push(SqlValue::Text(p.clone()));
        }
        if let Some(t) = self.since_ms {
            clauses.push("d.received_at_ms >= ?".into());
            values.push(SqlValue::Integer(t));
        }
        if self.state.is_some() || self.route.is_some() {
            let mut job = vec!["j.delivery_id = d.id".to_string()];
            if let Some(s) = &self.state {
                if !["pending", "done", "dead"].contains(&s.as_str()) {
                    return Err(ControlError::Invalid(format!(
                        "--state {s:?}: pending, done or dead"
                    )));
                }
                job.push("j.state = ?".into());
                values.push(SqlValue::Text(s.clone()));
            }
            if let Some(r) = &self.route {
                job.push("j.sink = ?".into());
                values.push(SqlValue::Text(r.clone()));
            }
            clauses.push(format!(
                "EXISTS (SELECT 1 FROM jobs j WHERE {})",
                job.join(" AND ")
            ));
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
    pub received_at_ms: i64,
    /// `route:state` for each job.
    pub jobs: Vec<String>,
}

pub fn list(conn: &Connection, f: &Filter, limit: usize) -> Result<Vec<Listed>, ControlError> {
    let (w, mut values) = f.sql()?;
    values.push(SqlValue::Integer(limit as i64));
    let mut st = conn.prepare(&format!(
        "SELECT d.id, d.guid, d.hook_id, d.event, d.action, d.partition_key, d.received_at_ms,
                (SELECT group_concat(j.sink || ':' || j.state, ' ') FROM jobs j WHERE j.delivery_id = d.id)
         FROM deliveries d WHERE {w} ORDER BY d.id DESC LIMIT ?"
    ))?;
    let rows = st
        .query_map(params_from_iter(values), |r| {
            let jobs: Option<String> = r.get(7)?;
            Ok(Listed {
                id: r.get(0)?,
                guid: r.get(1)?,
                hook_id: r.get(2)?,
                event: r.get(3)?,
                action: r.get(4)?,
                partition: r.get(5)?,
                received_at_ms: r.get(6)?,
                jobs: jobs
                    .map(|j| j.split(' ').map(String::from).collect())
                    .unwrap_or_default(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
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
}

#[derive(Debug, Serialize)]
pub struct JobDetail {
    pub route: String,
    pub state: String,
    pub attempts: i64,
    pub next_at_ms: i64,
    pub history: Vec<AttemptRow>,
}

#[derive(Debug, Serialize)]
pub struct Shown {
    pub listed: Listed,
    pub repository: Option<String>,
    pub installation_id: Option<i64>,
    pub body_size: i64,
    pub parse_status: String,
    pub jobs: Vec<JobDetail>,
}

/// Every journaled delivery with this GUID (one per hook), with its jobs
/// and every attempt.
pub fn show(conn: &Connection, guid: &str) -> Result<Vec<Shown>, ControlError> {
    let mut st = conn.prepare(
        "SELECT id, hook_id, event, action, partition_key, received_at_ms, repository,
                installation_id, body_size, parse_status
         FROM deliveries WHERE guid = ?1 ORDER BY id",
    )?;
    let found = st
        .query_map([guid], |r| {
            Ok(Shown {
                listed: Listed {
                    id: r.get(0)?,
                    guid: guid.to_string(),
                    hook_id: r.get(1)?,
                    event: r.get(2)?,
                    action: r.get(3)?,
                    partition: r.get(4)?,
                    received_at_ms: r.get(5)?,
                    jobs: vec![],
                },
                repository: r.get(6)?,
                installation_id: r.get(7)?,
                body_size: r.get(8)?,
                parse_status: r.get(9)?,
                jobs: vec![],
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for mut s in found {
        let mut jst = conn.prepare(
            "SELECT id, sink, state, attempts, next_at_ms FROM jobs WHERE delivery_id = ?1 ORDER BY sink",
        )?;
        let jobs: Vec<(i64, String, String, i64, i64)> = jst
            .query_map([s.listed.id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        for (id, route, state, attempts, next_at_ms) in jobs {
            let mut ast = conn.prepare(
                "SELECT n, started_at_ms, duration_ms, status_code, outcome, error, response_excerpt
                 FROM attempts WHERE job_id = ?1 ORDER BY n",
            )?;
            let history = ast
                .query_map([id], |r| {
                    Ok(AttemptRow {
                        n: r.get(0)?,
                        started_at_ms: r.get(1)?,
                        duration_ms: r.get(2)?,
                        status_code: r.get(3)?,
                        outcome: r.get(4)?,
                        error: r.get(5)?,
                        response_excerpt: r.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            s.listed.jobs.push(format!("{route}:{state}"));
            s.jobs.push(JobDetail {
                route,
                state,
                attempts,
                next_at_ms,
                history,
            });
        }
        out.push(s);
    }
    Ok(out)
}

/// Runs a finished (done or dead) job again from a clean slate.
const REQUEUE: &str =
    "UPDATE jobs SET state = 'pending', attempts = 0, next_at_ms = ?1, updated_at_ms = ?1
     WHERE state != 'pending' AND ";

/// Retries every job of one GUID (or only `route`'s).
pub fn retry_guid(
    conn: &Connection,
    guid: &str,
    route: Option<&str>,
) -> Result<usize, ControlError> {
    let now = clock::now_ms();
    Ok(conn.execute(
        &format!(
            "{REQUEUE} delivery_id IN (SELECT id FROM deliveries WHERE guid = ?2) AND (?3 IS NULL OR sink = ?3)"
        ),
        params![now, guid, route],
    )?)
}

/// Retries every dead letter among the deliveries matching `f`.
pub fn retry_dead(conn: &Connection, f: &Filter) -> Result<usize, ControlError> {
    let (w, values) = f.sql()?;
    let now = clock::now_ms();
    let mut all = vec![SqlValue::Integer(now)];
    all.extend(values);
    all.extend(f.route.clone().map(SqlValue::Text));
    let route_clause = if f.route.is_some() {
        " AND sink = ?"
    } else {
        ""
    };
    Ok(conn.execute(
        &format!(
            "{REQUEUE} state = 'dead' AND delivery_id IN (SELECT d.id FROM deliveries d WHERE {w}){route_clause}"
        ),
        params_from_iter(all),
    )?)
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
        let mut st = tx.prepare(
            "SELECT d.id, d.hook_id, d.guid, d.event, d.action, d.installation_id, d.repository,
                    d.owner, d.partition_key, d.received_at_ms, d.parse_status, d.parse_error
             FROM deliveries d
             WHERE d.received_at_ms >= ?1
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id AND j.sink = ?2)
             ORDER BY d.id",
        )?;
        st.query_map(params![since_ms, sink], |r| {
            Ok((
                r.get(0)?,
                DeliveryMeta {
                    hook_id: r.get(1)?,
                    guid: r.get(2)?,
                    event: r.get(3)?,
                    action: r.get(4)?,
                    installation_id: r.get(5)?,
                    target_type: None,
                    target_id: None,
                    repository: r.get(6)?,
                    owner: r.get(7)?,
                    partition_key: r.get(8)?,
                    received_at_ms: r.get(9)?,
                    content_kind: ContentKind::Json,
                    parse_status: ParseStatus::from_columns(&r.get::<_, String>(10)?, r.get(11)?)
                        .unwrap_or(ParseStatus::Ok),
                },
            ))
        })?
        .collect::<Result<_, _>>()?
    };
    let now = clock::now_ms();
    let mut n = 0;
    for (id, meta) in candidates.iter().filter(|(_, m)| wants(m)) {
        tx.execute(
            "INSERT INTO jobs (delivery_id, sink, partition_key, state, attempts, next_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
            params![id, sink, meta.partition_key, now],
        )?;
        tx.execute(
            "INSERT INTO partitions (sink, partition_key) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![sink, meta.partition_key],
        )?;
        n += 1;
    }
    tx.commit()?;
    Ok(n)
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
