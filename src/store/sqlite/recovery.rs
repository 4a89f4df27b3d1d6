//! Recovery's SQL: walks (with their resume point), the redeliveries
//! asked for, and CLI triggers.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::Sqlite;
use crate::store::StoreError;
use crate::store::recovery::{Completeness, SourceStatus, Walk, WalkState};

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
fn running(c: &Connection, source: &str) -> rusqlite::Result<Option<Walk>> {
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
fn checkpoint(c: &Connection, source: &str) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT newest_id FROM recovery_walks WHERE source = ?1 AND state = 'complete'
         ORDER BY id DESC LIMIT 1",
        [source],
        |r| r.get(0),
    )
    .optional()
    .map(Option::flatten)
}

fn start(
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
fn save(c: &Connection, w: &Walk, done: bool, now_ms: i64) -> rusqlite::Result<()> {
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
fn claim(
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
fn found(
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
fn to_ask(c: &Connection, source: &str) -> rusqlite::Result<Vec<(String, i64)>> {
    c.prepare_cached(
        "SELECT guid, delivery_id FROM recovery_requests WHERE source = ?1 AND outcome = 'found'
         ORDER BY delivered_at_ms IS NULL, delivered_at_ms, delivery_id, guid",
    )?
    .query_map([source], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

/// What GitHub answered to a redelivery request (None: no answer).
fn settle(c: &Connection, source: &str, guid: &str, status: Option<u16>) -> rusqlite::Result<()> {
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
fn due_again(
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

/// `gatehouse recovery run`: asks the running server for a walk of every
/// source, back to `since_ms` (None: since the last complete walk).
fn trigger(c: &Connection, since_ms: Option<i64>, now_ms: i64) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT INTO recovery_triggers (since_ms, created_at_ms) VALUES (?1, ?2)",
        params![since_ms, now_ms],
    )?;
    Ok(c.last_insert_rowid())
}

/// The oldest trigger not yet taken, marked taken.
fn take_trigger(c: &Connection, now_ms: i64) -> rusqlite::Result<Option<(i64, Option<i64>)>> {
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

fn pending_trigger(c: &Connection) -> rusqlite::Result<bool> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM recovery_triggers WHERE taken_at_ms IS NULL)",
        [],
        |r| r.get(0),
    )
}

fn trigger_taken(c: &Connection, id: i64) -> rusqlite::Result<Option<i64>> {
    c.query_row(
        "SELECT taken_at_ms FROM recovery_triggers WHERE id = ?1",
        [id],
        |r| r.get(0),
    )
}

pub(super) fn status(c: &Connection) -> rusqlite::Result<Vec<SourceStatus>> {
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
            let requests: std::collections::BTreeMap<String, i64> = c
                .prepare_cached(
                    "SELECT outcome, COUNT(*) FROM recovery_requests WHERE source = ?1 GROUP BY outcome",
                )?
                .query_map([&w.source], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            Ok(SourceStatus::new(w, last_complete_at_ms, requests))
        })
        .collect()
}

/// Walks newest first, at most `limit`.
fn walks(c: &Connection, limit: usize) -> rusqlite::Result<Vec<Walk>> {
    c.prepare_cached(&format!(
        "SELECT {WALK_COLUMNS} FROM recovery_walks ORDER BY id DESC LIMIT ?1"
    ))?
    .query_map([limit as i64], walk_from)?
    .collect()
}

/// When each source's last complete walk finished, for `/metrics`.
fn last_complete(c: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    c.prepare_cached(
        "SELECT source, MAX(finished_at_ms) FROM recovery_walks WHERE state = 'complete' GROUP BY source",
    )?
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
    .collect()
}

#[async_trait]
impl crate::store::Recovery for Sqlite {
    async fn running_walk(&self, source: &str) -> Result<Option<Walk>, StoreError> {
        let source = source.to_string();
        self.read(move |c| running(c, &source)).await
    }

    async fn start_walk(
        &self,
        source: &str,
        now_ms: i64,
        since_ms: i64,
        to_checkpoint: bool,
    ) -> Result<Walk, StoreError> {
        let source = source.to_string();
        self.write(move |tx| {
            let stop_at = if to_checkpoint {
                checkpoint(tx, &source)?
            } else {
                None
            };
            start(tx, &source, now_ms, since_ms, stop_at)
        })
        .await
    }

    async fn save_walk(&self, walk: &Walk, done: bool, now_ms: i64) -> Result<(), StoreError> {
        let walk = walk.clone();
        self.write(move |tx| save(tx, &walk, done, now_ms)).await
    }

    async fn found(
        &self,
        source: &str,
        missing: Vec<(String, i64, Option<i64>)>,
    ) -> Result<i64, StoreError> {
        let source = source.to_string();
        self.write(move |tx| {
            let mut new = 0;
            for (guid, id, at) in &missing {
                new += i64::from(found(tx, &source, guid, *id, *at)?);
            }
            Ok(new)
        })
        .await
    }

    async fn to_ask(&self, source: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let source = source.to_string();
        self.read(move |c| to_ask(c, &source)).await
    }

    async fn due_again(
        &self,
        source: &str,
        reask_before_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let source = source.to_string();
        self.write(move |tx| due_again(tx, &source, reask_before_ms))
            .await
    }

    async fn claim(
        &self,
        source: &str,
        guid: &str,
        log_id: i64,
        now_ms: i64,
        reask_before_ms: i64,
    ) -> Result<bool, StoreError> {
        let (source, guid) = (source.to_string(), guid.to_string());
        self.write(move |tx| claim(tx, &source, &guid, log_id, now_ms, reask_before_ms))
            .await
    }

    async fn settle(
        &self,
        source: &str,
        guid: &str,
        status: Option<u16>,
    ) -> Result<(), StoreError> {
        let (source, guid) = (source.to_string(), guid.to_string());
        self.write(move |tx| settle(tx, &source, &guid, status))
            .await
    }

    async fn trigger(&self, since_ms: Option<i64>, now_ms: i64) -> Result<i64, StoreError> {
        self.write(move |tx| trigger(tx, since_ms, now_ms)).await
    }

    async fn take_trigger(&self, now_ms: i64) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        self.write(move |tx| take_trigger(tx, now_ms)).await
    }

    async fn pending_trigger(&self) -> Result<bool, StoreError> {
        self.read(pending_trigger).await
    }

    async fn trigger_taken(&self, id: i64) -> Result<Option<i64>, StoreError> {
        self.read(move |c| trigger_taken(c, id)).await
    }

    async fn recovery_status(&self) -> Result<Vec<SourceStatus>, StoreError> {
        self.read(status).await
    }

    async fn last_complete(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(last_complete).await
    }

    async fn walks(&self, limit: usize) -> Result<Vec<Walk>, StoreError> {
        self.read(move |c| walks(c, limit)).await
    }

    async fn seen(&self, source: &str, entries: Vec<(String, i64)>) -> Result<(), StoreError> {
        let source = source.to_string();
        self.write(move |tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO recovery_seen (source, guid, delivered_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (source, guid) DO UPDATE
                 SET delivered_at_ms = MIN(delivered_at_ms, excluded.delivered_at_ms)",
            )?;
            for (guid, at) in &entries {
                st.execute(params![source, guid, at])?;
            }
            Ok(())
        })
        .await
    }

    async fn completeness(&self, since_ms: i64) -> Result<Vec<Completeness>, StoreError> {
        self.read(move |c| {
            let seen = c
                .prepare_cached(
                    "SELECT source, COUNT(*) FROM recovery_seen WHERE delivered_at_ms >= ?1
                     GROUP BY source",
                )?
                .query_map([since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let found = c
                .prepare_cached(
                    "SELECT r.source, r.delivered_at_ms,
                            EXISTS (SELECT 1 FROM deliveries d WHERE d.guid = r.guid)
                     FROM recovery_requests r WHERE r.delivered_at_ms >= ?1",
                )?
                .query_map([since_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Completeness::tally(seen, found))
        })
        .await
    }
}
