//! The admin UI's reads: roll-ups for charts and reports (migration 0007),
//! partitions with their backlog, pauses. Each query is bounded by an index
//! or a small table, so pages stay fast with a million deliveries.

use rusqlite::{Connection, params};

/// (minute, deliveries) from `from_minute` on.
pub fn per_minute(c: &Connection, from_minute: i64) -> rusqlite::Result<Vec<(i64, i64)>> {
    c.prepare_cached("SELECT minute, n FROM volume_minutes WHERE minute >= ?1")?
        .query_map([from_minute], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// (hour, deliveries) from `from_hour` on.
pub fn per_hour(c: &Connection, from_hour: i64) -> rusqlite::Result<Vec<(i64, i64)>> {
    c.prepare_cached("SELECT hour, n FROM volume_hours WHERE hour >= ?1")?
        .query_map([from_hour], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// (day, owner, event, deliveries) from `from_day` on.
pub fn per_day(c: &Connection, from_day: i64) -> rusqlite::Result<Vec<(i64, String, String, i64)>> {
    c.prepare_cached("SELECT day, owner, event, n FROM volume_days WHERE day >= ?1")?
        .query_map([from_day], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect()
}

/// (sink, outcome, latency bucket, attempts) from `from_hour` on.
pub fn attempts(
    c: &Connection,
    from_hour: i64,
) -> rusqlite::Result<Vec<(String, String, usize, i64)>> {
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
pub fn attempt_outcomes(
    c: &Connection,
    from_minute: i64,
) -> rusqlite::Result<Vec<(i64, String, i64)>> {
    c.prepare_cached(
        "SELECT minute, outcome, SUM(n) FROM attempt_minutes WHERE minute >= ?1
         GROUP BY minute, outcome",
    )?
    .query_map([from_minute], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
    .collect()
}

/// Each sink's sampled lag (ms) and dead letters per minute, from
/// `from_minute` on: (minute, sink, lag_ms, dead).
pub fn sink_samples(
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
    pub held: bool,
    /// The first pending job, the one the partition waits on.
    pub head: Option<Head>,
    pub dead: i64,
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

/// Partitions with work, a lease or a pause first (most pending first),
/// then the rest by name; at most `limit`. `sink` narrows to one sink.
pub fn partitions(
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
                      p.paused_until_ms, p.held,
                      (SELECT COUNT(*) FROM jobs j WHERE j.sink = p.sink
                         AND j.partition_key = p.partition_key AND j.state = 'pending') AS pending,
                      (SELECT MIN(j.id) FROM jobs j WHERE j.sink = p.sink
                         AND j.partition_key = p.partition_key AND j.state = 'pending') AS head
               FROM partitions p
               WHERE ?1 IS NULL OR p.sink = ?1
               ORDER BY (pending > 0 OR p.held = 1 OR p.paused_until_ms > ?2
                         OR p.lease_until_ms > ?2) DESC,
                        pending DESC, p.sink, p.partition_key
               LIMIT ?3)
             SELECT ps.sink, ps.partition_key, ps.lease_owner, ps.lease_until_ms,
                    ps.paused_until_ms, ps.held, ps.pending, d.received_at_ms,
                    h.id, h.attempts, h.next_at_ms, a.status_code, a.error, a.outcome,
                    h.delivery_id
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
                held: r.get::<_, i64>(5)? != 0,
                pending: r.get(6)?,
                oldest_ms: r.get(7)?,
                head,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((rows, total))
}

/// Partitions paused now: held by an operator, or waiting out a
/// consumer's Retry-After. At most `limit`.
pub fn paused(
    c: &Connection,
    now_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<(String, String, i64, bool)>> {
    c.prepare_cached(
        "SELECT sink, partition_key, paused_until_ms, held FROM partitions
         WHERE held = 1 OR paused_until_ms > ?1 ORDER BY sink, partition_key LIMIT ?2",
    )?
    .query_map(params![now_ms, limit as i64], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0))
    })?
    .collect()
}

/// The gateway's cache over all clients since `from_minute`: requests,
/// answered from cache (fresh or revalidated), rate-limit units saved.
pub fn cache_totals(c: &Connection, from_minute: i64) -> rusqlite::Result<(i64, i64, i64)> {
    c.query_row(
        "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(hits + revalidated), 0),
                COALESCE(SUM(units_saved), 0)
         FROM client_usage WHERE minute >= ?1",
        [from_minute],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
}
