//! Operator actions on a journal, live or not: list and show deliveries,
//! retry jobs (one GUID, dead letters matching a filter, or a back-fill for
//! a new route), pause and resume routes and partitions. The CLI uses these
//! now; the admin UI will later. A running server notices changes on its
//! next rescan (within 10 s).

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::Sqlite;
use crate::journal::model::DeliveryMeta;
use crate::store::StoreError;
use crate::store::operator::{
    AttemptRow, Cursor, Filter, JobDetail, Listed, Orphaned, Page, Requeued, RouteState, STATES,
    Shown,
};

fn filter_sql(f: &Filter) -> Result<(String, Vec<SqlValue>), StoreError> {
    let mut clauses = vec!["1 = 1".to_string()];
    let mut values = Vec::new();
    let mut eq = |column: &str, v: &Option<String>| {
        if let Some(v) = v {
            clauses.push(format!("d.{column} = ?"));
            values.push(SqlValue::Text(v.clone()));
        }
    };
    eq("event", &f.event);
    eq("action", &f.action);
    eq("repository", &f.repository);
    eq("partition_key", &f.partition);
    eq("guid", &f.guid);
    // Ids follow arrival, so a time range is also an id range: one
    // probe of the time index finds each end, and the newest-first scan
    // by id stays inside it instead of wading through the rest. The
    // time test itself stays, so a clock step back costs at most a few
    // rows at the edges.
    if let Some(t) = f.since_ms {
        clauses.push(
                "d.received_at_ms >= ? AND d.id >= COALESCE((SELECT id FROM deliveries
                   WHERE received_at_ms >= ? ORDER BY received_at_ms LIMIT 1), 9223372036854775807)"
                    .into(),
            );
        values.extend([SqlValue::Integer(t), SqlValue::Integer(t)]);
    }
    if let Some(t) = f.until_ms {
        clauses.push(
            "d.received_at_ms < ? AND d.id <= COALESCE((SELECT id FROM deliveries
                   WHERE received_at_ms < ? ORDER BY received_at_ms DESC LIMIT 1), 0)"
                .into(),
        );
        values.extend([SqlValue::Integer(t), SqlValue::Integer(t)]);
    }
    let state =
        match f.state.as_deref() {
            None => None,
            Some(s) => Some(*STATES.iter().find(|k| **k == s).ok_or_else(|| {
                StoreError::Invalid(format!("state {s:?}: pending, done or dead"))
            })?),
        };
    let sink = if f.route.is_some() {
        values.push(SqlValue::Text(f.route.clone().unwrap_or_default()));
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
        None if f.route.is_some() => clauses.push(format!(
            "EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id{sink})"
        )),
        None => {}
    }
    Ok((clauses.join(" AND "), values))
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

/// One page of the list, `(w, values)` being the filter's clause.
fn page(
    conn: &Connection,
    (w, mut values): (String, Vec<SqlValue>),
    cursor: Cursor,
    limit: usize,
) -> rusqlite::Result<Page> {
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
    let rows = st
        .query_map(params_from_iter(values), listed)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::of(rows, limit, cursor))
}

/// The journal ids of the deliveries with this GUID (one per hook).
fn ids_of_guid(conn: &Connection, guid: &str) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached("SELECT id FROM deliveries WHERE guid = ?1 ORDER BY id")?
        .query_map([guid], |r| r.get(0))?
        .collect()
}

/// One delivery by journal id, with its jobs and every attempt.
fn show_one(conn: &Connection, id: i64) -> rusqlite::Result<Option<Shown>> {
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
    type JobFacts = (
        (i64, String, String, i64, i64, Option<i64>),
        (bool, Option<i64>, Option<String>),
    );
    // A pending job waits behind its partition's dead head, if one holds
    // it, else behind its first pending job.
    let jobs: Vec<JobFacts> = conn
        .prepare_cached(
            "SELECT j.id, j.sink, j.state, j.attempts, j.next_at_ms,
                    CASE WHEN j.state = 'pending' THEN
                      COALESCE((SELECT p.dead_head FROM partitions p WHERE p.sink = j.sink
                                  AND p.partition_key = j.partition_key),
                               (SELECT MIN(h.id) FROM jobs h WHERE h.sink = j.sink
                                  AND h.partition_key = j.partition_key AND h.state = 'pending'))
                    END,
                    EXISTS (SELECT 1 FROM partitions p WHERE p.sink = j.sink
                              AND p.partition_key = j.partition_key AND p.dead_head = j.id),
                    j.skipped_at_ms, j.skipped_by
             FROM jobs j WHERE j.delivery_id = ?1 ORDER BY j.sink",
        )?
        .query_map([id], |r| {
            Ok((
                (
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ),
                (r.get(6)?, r.get(7)?, r.get(8)?),
            ))
        })?
        .collect::<Result<_, _>>()?;
    for ((job_id, route, state, attempts, next_at_ms, head), (holding, skipped_at, skipped_by)) in
        jobs
    {
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
            holding,
            skipped: skipped_at.map(|at| (at, skipped_by.unwrap_or_default())),
            history,
        });
    }
    Ok(Some(s))
}

/// Runs every finished (done or dead) job matching `clause` again from a
/// clean slate. `values` bind the clause's placeholders, after the time.
fn requeue(
    conn: &Connection,
    now_ms: i64,
    clause: &str,
    values: Vec<SqlValue>,
) -> rusqlite::Result<Requeued> {
    let mut all = vec![SqlValue::Integer(now_ms)];
    all.extend(values);
    let mut st = conn.prepare(&format!(
        "UPDATE jobs SET state = 'pending', attempts = 0, next_at_ms = ?1, updated_at_ms = ?1,
                skipped_at_ms = NULL, skipped_by = NULL
         WHERE state != 'pending' AND {clause} RETURNING id, sink, partition_key"
    ))?;
    // A dead head retried is the head again: its partition runs.
    freed(conn, st.query(params_from_iter(all))?)
}

/// The jobs a retry or a skip changed (rows of id, sink, partition): what
/// to wake, and the partitions held behind one of them run again.
fn freed(conn: &Connection, mut rows: rusqlite::Rows<'_>) -> rusqlite::Result<Requeued> {
    let mut out = Requeued::default();
    let mut ids = Vec::new();
    while let Some(r) = rows.next()? {
        out.jobs += 1;
        ids.push(r.get::<_, i64>(0)?);
        out.partitions.insert((r.get(1)?, r.get(2)?));
    }
    let mut st =
        conn.prepare_cached("UPDATE partitions SET dead_head = NULL WHERE dead_head = ?1")?;
    for id in ids {
        st.execute([id])?;
    }
    Ok(out)
}

/// Lets order move past a delivery's dead jobs (or `route`'s): each is
/// marked skipped by `by`, and a partition held behind it runs.
fn skip_dead(
    conn: &Connection,
    delivery_id: i64,
    route: Option<&str>,
    by: &str,
    now_ms: i64,
) -> rusqlite::Result<Requeued> {
    let mut st = conn.prepare(
        "UPDATE jobs SET skipped_at_ms = ?3, skipped_by = ?4
         WHERE delivery_id = ?1 AND state = 'dead' AND skipped_at_ms IS NULL
           AND (?2 IS NULL OR sink = ?2)
         RETURNING id, sink, partition_key",
    )?;
    freed(conn, st.query(params![delivery_id, route, now_ms, by])?)
}

fn route_value(route: Option<&str>) -> SqlValue {
    route.map_or(SqlValue::Null, |r| SqlValue::Text(r.to_string()))
}

/// The dead letters among the deliveries matching `f`, as SQL over `jobs`
/// (driven by the dead-letter index, then each delivery by id).
fn dead_of(f: &Filter) -> Result<(String, Vec<SqlValue>), StoreError> {
    let (w, mut values) = filter_sql(f)?;
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

/// Creates `sink`'s jobs for deliveries since `since_ms` that it wants but
/// that arrived before it existed. Returns how many.
fn backfill(
    tx: &rusqlite::Transaction<'_>,
    sink: &str,
    wants: &dyn Fn(&DeliveryMeta) -> bool,
    since_ms: i64,
    now: i64,
) -> rusqlite::Result<usize> {
    let candidates: Vec<(i64, DeliveryMeta)> = {
        let mut st = tx.prepare(&format!(
            "SELECT {} FROM deliveries d
             WHERE d.received_at_ms >= ?1
               AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.delivery_id = d.id AND j.sink = ?2)
             ORDER BY d.id",
            super::reader::COLUMNS
        ))?;
        st.query_map(params![since_ms, sink], |r| {
            super::reader::row_to_delivery(r).map(|d| (d.id, d.meta))
        })?
        .collect::<Result<_, _>>()?
    };
    let mut n = 0;
    for (id, meta) in candidates.iter().filter(|(_, m)| wants(m)) {
        super::writer::fan_out(tx, *id, sink, &meta.partition_key, now)?;
        n += 1;
    }
    Ok(n)
}

/// Every configured sink, then every sink with jobs that is no longer
/// configured.
fn route_states(
    conn: &Connection,
    configured: &[String],
    now_ms: i64,
) -> rusqlite::Result<Vec<RouteState>> {
    let backlog = super::jobs::backlog(conn, now_ms)?;
    let held = super::jobs::held_routes(conn)?;
    let paused: Vec<(String, i64)> = conn
        .prepare_cached(
            "SELECT sink, COUNT(*) FROM partitions WHERE held = 1 OR paused_until_ms > ?1 GROUP BY sink",
        )?
        .query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(RouteState::all(&backlog, configured, &held, &paused))
}

/// Pauses (or resumes) a whole route.
fn hold_route(conn: &Connection, route: &str, hold: bool) -> rusqlite::Result<()> {
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
fn hold_partition(
    conn: &Connection,
    route: &str,
    partition: &str,
    hold: bool,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO partitions (sink, partition_key, held) VALUES (?1, ?2, ?3)
         ON CONFLICT (sink, partition_key) DO UPDATE SET held = excluded.held",
        params![route, partition, hold as i64],
    )?;
    Ok(())
}

/// Every sink with pending jobs or dead letters that `configured` lacks.
fn orphans(conn: &Connection, configured: &[String]) -> rusqlite::Result<Vec<Orphaned>> {
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
fn drop_sink(conn: &Connection, sink: &str) -> rusqlite::Result<Orphaned> {
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

#[async_trait]
impl crate::store::Operator for Sqlite {
    async fn list(
        &self,
        filter: &Filter,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let clause = filter_sql(filter)?;
        self.read(move |c| page(c, clause, cursor, limit)).await
    }

    async fn ids_of_guid(&self, guid: &str) -> Result<Vec<i64>, StoreError> {
        let guid = guid.to_string();
        self.read(move |c| ids_of_guid(c, &guid)).await
    }

    async fn show(&self, delivery_id: i64) -> Result<Option<Shown>, StoreError> {
        self.read(move |c| show_one(c, delivery_id)).await
    }

    async fn repositories_seen(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT DISTINCT repository FROM deliveries
                 WHERE received_at_ms >= ?1 AND repository IS NOT NULL
                 ORDER BY repository LIMIT ?2",
            )?
            .query_map(rusqlite::params![since_ms, limit as i64], |r| r.get(0))?
            .collect()
        })
        .await
    }

    async fn retry_guid(&self, guid: &str, route: Option<&str>) -> Result<Requeued, StoreError> {
        let values = vec![SqlValue::Text(guid.to_string()), route_value(route)];
        self.write(move |tx| {
            requeue(
                tx,
                crate::clock::now_ms(),
                "delivery_id IN (SELECT id FROM deliveries WHERE guid = ?2) AND (?3 IS NULL OR sink = ?3)",
                values,
            )
        })
        .await
    }

    async fn retry_delivery(&self, id: i64, route: Option<&str>) -> Result<Requeued, StoreError> {
        let values = vec![SqlValue::Integer(id), route_value(route)];
        self.write(move |tx| {
            requeue(
                tx,
                crate::clock::now_ms(),
                "delivery_id = ?2 AND (?3 IS NULL OR sink = ?3)",
                values,
            )
        })
        .await
    }

    async fn skip_dead(
        &self,
        id: i64,
        route: Option<&str>,
        by: &str,
        now_ms: i64,
    ) -> Result<Requeued, StoreError> {
        let (route, by) = (route.map(str::to_string), by.to_string());
        self.write(move |tx| skip_dead(tx, id, route.as_deref(), &by, now_ms))
            .await
    }

    async fn count_dead(&self, filter: &Filter) -> Result<i64, StoreError> {
        let (w, values) = dead_of(filter)?;
        self.read(move |c| {
            c.query_row(
                &format!("SELECT COUNT(*) FROM jobs WHERE {w}"),
                params_from_iter(values),
                |r| r.get(0),
            )
        })
        .await
    }

    async fn retry_dead(&self, filter: &Filter) -> Result<Requeued, StoreError> {
        let (w, values) = dead_of(filter)?;
        self.write(move |tx| requeue(tx, crate::clock::now_ms(), &w, values))
            .await
    }

    async fn backfill(
        &self,
        sink: &str,
        wants: crate::store::operator::Wants,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let sink = sink.to_string();
        self.write(move |tx| backfill(tx, &sink, &*wants, since_ms, now_ms))
            .await
    }

    async fn route_states(
        &self,
        configured: &[String],
        now_ms: i64,
    ) -> Result<Vec<RouteState>, StoreError> {
        let configured = configured.to_vec();
        self.read(move |c| route_states(c, &configured, now_ms))
            .await
    }

    async fn hold_route(&self, route: &str, hold: bool) -> Result<(), StoreError> {
        let route = route.to_string();
        self.write(move |tx| hold_route(tx, &route, hold)).await
    }

    async fn hold_partition(
        &self,
        route: &str,
        partition: &str,
        hold: bool,
    ) -> Result<(), StoreError> {
        let (route, partition) = (route.to_string(), partition.to_string());
        self.write(move |tx| hold_partition(tx, &route, &partition, hold))
            .await
    }

    async fn orphans(&self, configured: &[String]) -> Result<Vec<Orphaned>, StoreError> {
        let configured = configured.to_vec();
        self.read(move |c| orphans(c, &configured)).await
    }

    async fn drop_sink(&self, sink: &str) -> Result<Orphaned, StoreError> {
        let sink = sink.to_string();
        self.write(move |tx| drop_sink(tx, &sink)).await
    }
}
