//! Recovery's SQL: walks (with their resume point), the redeliveries
//! asked for, and CLI triggers. Plain functions on a connection, so the
//! server runs them inside the journal's group commit and the CLI on its
//! own connection.

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Where a walk stands (stored as its lowercase name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WalkState {
    /// Under way, or interrupted (a crash, a failed page): resumed next.
    Running,
    Complete,
    /// Replaced by a manual walk (`recovery run --since`).
    Abandoned,
}

impl WalkState {
    pub fn as_str(self) -> &'static str {
        match self {
            WalkState::Running => "running",
            WalkState::Complete => "complete",
            WalkState::Abandoned => "abandoned",
        }
    }

    fn parse(s: &str) -> Option<WalkState> {
        [
            WalkState::Running,
            WalkState::Complete,
            WalkState::Abandoned,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
    }
}

impl std::fmt::Display for WalkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A walk of one source's delivery log, as far as it has gone.
#[derive(Debug, Clone, Serialize)]
pub struct Walk {
    pub id: i64,
    pub source: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub state: WalkState,
    pub since_ms: i64,
    pub stop_at_id: Option<i64>,
    pub cursor: Option<String>,
    pub newest_id: Option<i64>,
    pub pages: i64,
    pub seen: i64,
    pub missing: i64,
    pub requested: i64,
    pub failures: i64,
    pub last_error: Option<String>,
}

const WALK_COLUMNS: &str = "id, source, started_at_ms, finished_at_ms, state, since_ms, stop_at_id,
    cursor, newest_id, pages, seen, missing, requested, failures, last_error";

fn walk_from(r: &rusqlite::Row) -> rusqlite::Result<Walk> {
    Ok(Walk {
        id: r.get(0)?,
        source: r.get(1)?,
        started_at_ms: r.get(2)?,
        finished_at_ms: r.get(3)?,
        state: {
            let s: String = r.get(4)?;
            WalkState::parse(&s).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    format!("unknown walk state {s:?}").into(),
                )
            })?
        },
        since_ms: r.get(5)?,
        stop_at_id: r.get(6)?,
        cursor: r.get(7)?,
        newest_id: r.get(8)?,
        pages: r.get(9)?,
        seen: r.get(10)?,
        missing: r.get(11)?,
        requested: r.get(12)?,
        failures: r.get(13)?,
        last_error: r.get(14)?,
    })
}

/// The source's unfinished walk (a crash or a failed page left it), to
/// resume from its cursor.
pub fn running(c: &Connection, source: &str) -> rusqlite::Result<Option<Walk>> {
    c.query_row(
        &format!(
            "SELECT {WALK_COLUMNS} FROM recovery_walks WHERE source = ?1 AND state = 'running'
             ORDER BY id DESC LIMIT 1"
        ),
        [source],
        walk_from,
    )
    .optional()
}

/// The newest log id of the source's last complete walk: where the next
/// one may stop.
pub fn checkpoint(c: &Connection, source: &str) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT newest_id FROM recovery_walks WHERE source = ?1 AND state = 'complete'
         ORDER BY id DESC LIMIT 1",
        [source],
        |r| r.get(0),
    )
    .optional()
    .map(Option::flatten)
}

pub fn start(
    c: &Connection,
    source: &str,
    now_ms: i64,
    since_ms: i64,
    stop_at_id: Option<i64>,
) -> rusqlite::Result<Walk> {
    // A manual walk replaces an unfinished one: it covers at least as much.
    c.execute(
        "UPDATE recovery_walks SET state = 'abandoned', finished_at_ms = ?2
         WHERE source = ?1 AND state = 'running'",
        params![source, now_ms],
    )?;
    c.execute(
        "INSERT INTO recovery_walks (source, started_at_ms, state, since_ms, stop_at_id)
         VALUES (?1, ?2, 'running', ?3, ?4)",
        params![source, now_ms, since_ms, stop_at_id],
    )?;
    c.query_row(
        &format!("SELECT {WALK_COLUMNS} FROM recovery_walks WHERE id = ?1"),
        [c.last_insert_rowid()],
        walk_from,
    )
}

/// Records how far the walk has gone; `done` completes it.
pub fn save(c: &Connection, w: &Walk, done: bool, now_ms: i64) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE recovery_walks SET cursor = ?2, newest_id = ?3, pages = ?4, seen = ?5,
             missing = ?6, requested = ?7, failures = ?8, last_error = ?9,
             state = CASE WHEN ?10 THEN 'complete' ELSE state END,
             finished_at_ms = CASE WHEN ?10 THEN ?11 ELSE finished_at_ms END
         WHERE id = ?1",
        params![
            w.id,
            w.cursor,
            w.newest_id,
            w.pages,
            w.seen,
            w.missing,
            w.requested,
            w.failures,
            w.last_error,
            done,
            now_ms
        ],
    )?;
    Ok(())
}

/// Claims the right to ask for `guid`'s redelivery: true unless it was
/// asked for within the window. Committed before the request goes out, so
/// a resumed walk does not ask again for what was asked before a crash.
/// A claim left 'asking' by a crash (the request may or may not have gone
/// out) and a failed request may be claimed again.
pub fn claim(
    c: &Connection,
    source: &str,
    guid: &str,
    delivery_id: i64,
    now_ms: i64,
    reask_before_ms: i64,
) -> rusqlite::Result<bool> {
    let n = c.execute(
        "INSERT INTO recovery_requests (source, guid, delivery_id, requested_at_ms, outcome)
         VALUES (?1, ?2, ?3, ?4, 'asking')
         ON CONFLICT (source, guid) DO UPDATE SET
             delivery_id = excluded.delivery_id, requested_at_ms = excluded.requested_at_ms,
             outcome = 'asking', status_code = NULL
         WHERE recovery_requests.outcome IN ('found', 'failed', 'asking')
            OR (recovery_requests.outcome = 'asked' AND recovery_requests.requested_at_ms < ?5)",
        params![source, guid, delivery_id, now_ms, reask_before_ms],
    )?;
    Ok(n == 1)
}

/// Keeps a missing delivery a walk found, to be asked for (oldest first)
/// once the walk is complete. True when it was not known yet.
pub fn found(
    c: &Connection,
    source: &str,
    guid: &str,
    delivery_id: i64,
    delivered_at_ms: Option<i64>,
) -> rusqlite::Result<bool> {
    let n = c
        .prepare_cached(
            "INSERT INTO recovery_requests (source, guid, delivery_id, requested_at_ms, outcome,
                                            delivered_at_ms)
             VALUES (?1, ?2, ?3, 0, 'found', ?4) ON CONFLICT (source, guid) DO NOTHING",
        )?
        .execute(params![source, guid, delivery_id, delivered_at_ms])?;
    Ok(n == 1)
}

/// What walks found and nobody asked for yet, oldest delivery first (then
/// by GitHub's log id, which grows with time, then GUID: `delivered_at`
/// has one-second resolution), so GitHub redelivers them in the order it
/// first sent them.
pub fn to_ask(c: &Connection, source: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    c.prepare_cached(
        "SELECT guid, delivery_id FROM recovery_requests WHERE source = ?1 AND outcome = 'found'
         ORDER BY delivered_at_ms IS NULL, delivered_at_ms, delivery_id, guid",
    )?
    .query_map([source], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// What GitHub answered to a redelivery request (None: no answer).
pub fn settle(
    c: &Connection,
    source: &str,
    guid: &str,
    status: Option<u16>,
) -> rusqlite::Result<()> {
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    c.execute(
        "UPDATE recovery_requests SET outcome = ?3, status_code = ?4 WHERE source = ?1 AND guid = ?2",
        params![source, guid, if ok { "asked" } else { "failed" }, status],
    )?;
    Ok(())
}

/// Requests to make again at the start of a walk: failed ones, claims a
/// crash left unanswered, and asked ones whose delivery has not come
/// within the window (their redelivery failed too). Settled ones whose
/// delivery is in the journal are marked 'arrived' and left alone.
pub fn due_again(
    c: &Connection,
    source: &str,
    reask_before_ms: i64,
) -> rusqlite::Result<Vec<(String, i64)>> {
    c.execute(
        "UPDATE recovery_requests SET outcome = 'arrived'
         WHERE source = ?1 AND outcome <> 'arrived'
           AND EXISTS (SELECT 1 FROM deliveries d WHERE d.guid = recovery_requests.guid)",
        [source],
    )?;
    c.prepare_cached(
        "SELECT guid, delivery_id FROM recovery_requests WHERE source = ?1
           AND (outcome IN ('failed', 'asking') OR (outcome = 'asked' AND requested_at_ms < ?2))
         ORDER BY delivered_at_ms IS NULL, delivered_at_ms, delivery_id, guid",
    )?
    .query_map(params![source, reask_before_ms], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?
    .collect()
}

/// The GUIDs among these that the journal holds (from any hook: GitHub
/// sends one GUID to every hook subscribed to an event).
pub fn journaled(c: &Connection, guids: &[String]) -> rusqlite::Result<HashSet<String>> {
    let mut st = c.prepare_cached("SELECT 1 FROM deliveries WHERE guid = ?1 LIMIT 1")?;
    let mut out = HashSet::new();
    for g in guids {
        if st.exists([g])? {
            out.insert(g.clone());
        }
    }
    Ok(out)
}

/// `gatehouse recovery run`: asks the running server for a walk of every
/// source, back to `since_ms` (None: since the last complete walk).
pub fn trigger(c: &Connection, since_ms: Option<i64>, now_ms: i64) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO recovery_triggers (since_ms, created_at_ms) VALUES (?1, ?2)",
        params![since_ms, now_ms],
    )?;
    Ok(c.last_insert_rowid())
}

/// The oldest trigger not yet taken, marked taken.
pub fn take_trigger(c: &Connection, now_ms: i64) -> rusqlite::Result<Option<(i64, Option<i64>)>> {
    let found: Option<(i64, Option<i64>)> = c
        .query_row(
            "SELECT id, since_ms FROM recovery_triggers WHERE taken_at_ms IS NULL ORDER BY id LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((id, _)) = found {
        c.execute(
            "UPDATE recovery_triggers SET taken_at_ms = ?2 WHERE id = ?1",
            params![id, now_ms],
        )?;
    }
    Ok(found)
}

pub fn pending_trigger(c: &Connection) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM recovery_triggers WHERE taken_at_ms IS NULL)",
        [],
        |r| r.get(0),
    )
}

pub fn trigger_taken(c: &Connection, id: i64) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT taken_at_ms FROM recovery_triggers WHERE id = ?1",
        [id],
        |r| r.get(0),
    )
}

/// Per source: its latest walk, when its last complete walk finished, and
/// how many redeliveries wait to be asked again.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub last_walk: Walk,
    pub last_complete_at_ms: Option<i64>,
    pub failed_requests: i64,
    pub requests_total: i64,
}

pub fn status(c: &Connection) -> rusqlite::Result<Vec<SourceStatus>> {
    let walks: Vec<Walk> = c
        .prepare(&format!(
            "SELECT {WALK_COLUMNS} FROM recovery_walks w
             WHERE id = (SELECT MAX(id) FROM recovery_walks WHERE source = w.source)
             ORDER BY source"
        ))?
        .query_map([], walk_from)?
        .collect::<Result<_, _>>()?;
    walks
        .into_iter()
        .map(|w| {
            let last_complete_at_ms = c.query_row(
                "SELECT MAX(finished_at_ms) FROM recovery_walks WHERE source = ?1 AND state = 'complete'",
                [&w.source],
                |r| r.get(0),
            )?;
            let (failed_requests, requests_total) = c.query_row(
                "SELECT COALESCE(SUM(outcome = 'failed'), 0), COUNT(*) FROM recovery_requests WHERE source = ?1",
                [&w.source],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(SourceStatus {
                source: w.source.clone(),
                last_walk: w,
                last_complete_at_ms,
                failed_requests,
                requests_total,
            })
        })
        .collect()
}

/// When each source's last complete walk finished, for `/metrics`.
pub fn last_complete(c: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    c.prepare_cached(
        "SELECT source, MAX(finished_at_ms) FROM recovery_walks WHERE state = 'complete' GROUP BY source",
    )?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}
