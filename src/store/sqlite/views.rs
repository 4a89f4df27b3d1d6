//! The admin UI's reads on SQLite, and the per-minute samples behind its
//! charts: roll-ups for charts and reports (migration 0007),
//! partitions with their backlog, pauses. Each query is bounded by an index
//! or a small table, so pages stay fast with a million deliveries.

use async_trait::async_trait;
use rusqlite::{Connection, params};

use super::Sqlite;
use crate::store::StoreError;
use crate::store::views::{
    Head, Overview, OverviewQuery, PartitionRow, PartitionsView, Paused, Reports,
};

/// (minute, deliveries) from `from_minute` on.
fn per_minute(c: &Connection, from_minute: i64) -> rusqlite::Result<Vec<(i64, i64)>> {
    c.prepare_cached("SELECT minute, n FROM volume_minutes WHERE minute >= ?1")?
        .query_map([from_minute], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// (hour, deliveries) from `from_hour` on.
fn per_hour(c: &Connection, from_hour: i64) -> rusqlite::Result<Vec<(i64, i64)>> {
    c.prepare_cached("SELECT hour, n FROM volume_hours WHERE hour >= ?1")?
        .query_map([from_hour], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// (day, owner, event, deliveries) from `from_day` on.
fn per_day(c: &Connection, from_day: i64) -> rusqlite::Result<Vec<(i64, String, String, i64)>> {
    c.prepare_cached("SELECT day, owner, event, n FROM volume_days WHERE day >= ?1")?
        .query_map([from_day], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect()
}

/// (sink, outcome, latency bucket, attempts) from `from_hour` on.
fn attempts(c: &Connection, from_hour: i64) -> rusqlite::Result<Vec<(String, String, usize, i64)>> {
    c.prepare_cached(
        "SELECT sink, outcome, bucket, SUM(n) FROM attempt_hours WHERE hour >= ?1
         GROUP BY 1, 2, 3 ORDER BY 1",
    )?
    .query_map([from_hour], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get::<_, i64>(2)? as usize,
            r.get(3)?,
        ))
    })?
    .collect()
}

/// Forward attempts per minute and outcome (done, failed, paused), every
/// sink summed, from `from_minute` on.
fn attempt_outcomes(c: &Connection, from_minute: i64) -> rusqlite::Result<Vec<(i64, String, i64)>> {
    c.prepare_cached(
        "SELECT minute, outcome, SUM(n) FROM attempt_minutes WHERE minute >= ?1
         GROUP BY minute, outcome",
    )?
    .query_map([from_minute], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
    .collect()
}

/// Each sink's sampled lag (ms) and dead letters per minute, from
/// `from_minute` on: (minute, sink, lag_ms, dead).
fn sink_samples(
    c: &Connection,
    from_minute: i64,
) -> rusqlite::Result<Vec<(i64, String, i64, i64)>> {
    c.prepare_cached(
        "SELECT minute, sink, lag_ms, dead FROM sink_samples WHERE minute >= ?1 ORDER BY minute",
    )?
    .query_map([from_minute], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?
    .collect()
}

/// Partitions with work, a lease or a pause first (most pending first),
/// then the rest by name; at most `limit`. `sink` narrows to one sink.
fn partitions(
    c: &Connection,
    sink: Option<&str>,
    now_ms: i64,
    limit: usize,
) -> rusqlite::Result<(Vec<PartitionRow>, i64)> {
    let total = c.query_row(
        "SELECT COUNT(*) FROM partitions WHERE ?1 IS NULL OR sink = ?1",
        [sink],
        |r| r.get(0),
    )?;
    // Dead letters are few and indexed by sink: one pass, joined here.
    let dead: std::collections::HashMap<(String, String), i64> = c
        .prepare_cached(
            "SELECT sink, partition_key, COUNT(*) FROM jobs
             WHERE state = 'dead' AND (?1 IS NULL OR sink = ?1)
             GROUP BY sink, partition_key",
        )?
        .query_map([sink], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let rows = c
        .prepare_cached(
            "WITH ps AS (
               SELECT p.sink, p.partition_key, p.lease_owner, p.lease_until_ms,
                      p.paused_until_ms, p.held, p.pause_reason,
                      (SELECT COUNT(*) FROM jobs j WHERE j.sink = p.sink
                         AND j.partition_key = p.partition_key AND j.state = 'pending') AS pending,
                      (SELECT MIN(j.id) FROM jobs j WHERE j.sink = p.sink
                         AND j.partition_key = p.partition_key AND j.state = 'pending') AS head,
                      p.dead_head
               FROM partitions p
               WHERE ?1 IS NULL OR p.sink = ?1
               ORDER BY (pending > 0 OR p.held = 1 OR p.paused_until_ms > ?2
                         OR p.lease_until_ms > ?2) DESC,
                        pending DESC, p.sink, p.partition_key
               LIMIT ?3)
             SELECT ps.sink, ps.partition_key, ps.lease_owner, ps.lease_until_ms,
                    ps.paused_until_ms, ps.held, ps.pending, d.received_at_ms,
                    h.id, h.attempts, h.next_at_ms, a.status_code, a.error, a.outcome,
                    h.delivery_id, ps.dead_head,
                    (SELECT delivery_id FROM jobs WHERE id = ps.dead_head), ps.pause_reason
             FROM ps
             LEFT JOIN jobs h ON h.id = ps.head
             LEFT JOIN deliveries d ON d.id = h.delivery_id
             LEFT JOIN attempts a ON a.job_id = h.id
                  AND a.n = (SELECT MAX(n) FROM attempts WHERE job_id = h.id)
             ORDER BY (ps.pending > 0 OR ps.held = 1 OR ps.paused_until_ms > ?2
                       OR ps.lease_until_ms > ?2) DESC,
                      ps.pending DESC, ps.sink, ps.partition_key",
        )?
        .query_map(params![sink, now_ms, limit as i64], |r| {
            let sink: String = r.get(0)?;
            let partition: String = r.get(1)?;
            let head = match r.get::<_, Option<i64>>(8)? {
                Some(job_id) => Some(Head {
                    job_id,
                    attempts: r.get(9)?,
                    next_at_ms: r.get(10)?,
                    last_status: r.get(11)?,
                    last_error: r.get(12)?,
                    last_outcome: r.get(13)?,
                    delivery_id: r.get(14)?,
                }),
                None => None,
            };
            Ok(PartitionRow {
                dead: dead
                    .get(&(sink.clone(), partition.clone()))
                    .copied()
                    .unwrap_or(0),
                sink,
                partition,
                lease_owner: r.get(2)?,
                lease_until_ms: r.get(3)?,
                paused_until_ms: r.get(4)?,
                pause_reason: r.get(17)?,
                held: r.get::<_, i64>(5)? != 0,
                pending: r.get(6)?,
                oldest_ms: r.get(7)?,
                head,
                dead_head: match (r.get::<_, Option<i64>>(15)?, r.get::<_, Option<i64>>(16)?) {
                    (Some(job), Some(delivery)) => Some((job, delivery)),
                    _ => None,
                },
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((rows, total))
}

/// Partitions paused now: held by an operator, or waiting out a
/// consumer's Retry-After. At most `limit`.
fn paused(c: &Connection, now_ms: i64, limit: usize) -> rusqlite::Result<Vec<Paused>> {
    c.prepare_cached(
        "SELECT sink, partition_key, paused_until_ms, held, pause_reason FROM partitions
         WHERE held = 1 OR paused_until_ms > ?1 ORDER BY sink, partition_key LIMIT ?2",
    )?
    .query_map(params![now_ms, limit as i64], |r| {
        Ok(Paused {
            sink: r.get(0)?,
            partition: r.get(1)?,
            until_ms: r.get(2)?,
            held: r.get::<_, i64>(3)? != 0,
            reason: r.get(4)?,
        })
    })?
    .collect()
}

/// The gateway's cache over all clients since `from_minute`: requests,
/// answered from cache (fresh or revalidated), rate-limit units saved.
fn cache_totals(c: &Connection, from_minute: i64) -> rusqlite::Result<(i64, i64, i64)> {
    c.query_row(
        "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(hits + revalidated), 0),
                COALESCE(SUM(units_saved), 0)
         FROM client_usage WHERE minute >= ?1",
        [from_minute],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}

#[async_trait]
impl crate::store::Views for Sqlite {
    async fn overview(&self, q: OverviewQuery) -> Result<Overview, StoreError> {
        self.read(move |c| {
            Ok(Overview {
                per_minute: per_minute(c, q.from_minute)?,
                per_hour: per_hour(c, q.from_hour)?,
                backlog: super::jobs::backlog(c, q.now_ms)?,
                paused: paused(c, q.now_ms, q.paused_limit)?,
                held_routes: super::jobs::held_routes(c)?,
                cache: cache_totals(c, q.cache_from_minute)?,
                attempt_outcomes: attempt_outcomes(c, q.samples_from_minute)?,
                sink_samples: sink_samples(c, q.samples_from_minute)?,
                recovery: if q.with_recovery {
                    Some(super::recovery::status(c)?)
                } else {
                    None
                },
            })
        })
        .await
    }

    async fn partitions(
        &self,
        sink: Option<&str>,
        now_ms: i64,
        limit: usize,
    ) -> Result<PartitionsView, StoreError> {
        let sink = sink.map(str::to_string);
        // One connection for the page: each pooled connection has its own
        // page cache, and spreading one page over three cost it 20%.
        self.read(move |c| {
            let (rows, total) = partitions(c, sink.as_deref(), now_ms, limit)?;
            Ok(PartitionsView {
                backlog: super::jobs::backlog(c, now_ms)?,
                held_routes: super::jobs::held_routes(c)?,
                rows,
                total,
            })
        })
        .await
    }

    async fn reports(&self, from_day: i64) -> Result<Reports, StoreError> {
        self.read(move |c| {
            Ok(Reports {
                per_day: per_day(c, from_day)?,
                attempts: attempts(c, from_day * 24)?,
            })
        })
        .await
    }

    async fn add_attempt_minutes(
        &self,
        counts: Vec<((i64, String, &'static str), i64)>,
    ) -> Result<(), StoreError> {
        self.write(move |tx| {
            let mut put = tx.prepare_cached(
                "INSERT INTO attempt_minutes (minute, sink, outcome, n) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (minute, sink, outcome) DO UPDATE SET n = n + excluded.n",
            )?;
            for ((minute, sink, outcome), n) in &counts {
                put.execute(params![minute, sink, outcome, n])?;
            }
            Ok(())
        })
        .await
    }

    async fn sample_sinks(&self, now_ms: i64, keep_minutes: i64) -> Result<(), StoreError> {
        // Read apart from the writer (the backlog's counts are not cheap),
        // written in its next group commit.
        let backlog = self.read(move |c| super::jobs::backlog(c, now_ms)).await?;
        let minute = now_ms / 60_000;
        self.write(move |tx| {
            let mut put = tx.prepare_cached(
                "INSERT INTO sink_samples (minute, sink, pending, lag_ms, dead)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (minute, sink) DO UPDATE SET pending = excluded.pending,
                   lag_ms = excluded.lag_ms, dead = excluded.dead",
            )?;
            for (sink, pending, oldest, dead) in &backlog.per_sink {
                let lag = oldest.map_or(0, |t| (now_ms - t).max(0));
                put.execute(params![minute, sink, pending, lag, dead])?;
            }
            for sql in [
                "DELETE FROM sink_samples WHERE minute < ?1",
                "DELETE FROM attempt_minutes WHERE minute < ?1",
            ] {
                tx.prepare_cached(sql)?.execute([minute - keep_minutes])?;
            }
            Ok(())
        })
        .await
    }
}
