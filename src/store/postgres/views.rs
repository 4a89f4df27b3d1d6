//! The admin UI's reads on PostgreSQL: the overview, the partitions page
//! and the reports, from the roll-ups every replica's writes keep; and the
//! per-minute samples the charts draw.

use async_trait::async_trait;

use super::{Postgres, read_err, write_err};
use crate::store::views::{
    Head, Overview, OverviewQuery, PartitionRow, PartitionsView, Paused, Reports,
};
use crate::store::{Jobs, Recovery, StoreError};

impl Postgres {
    async fn pairs(&self, sql: &str, from: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let client = self.client("pairs").await?;
        let rows = client.query(sql, &[&from]).await.map_err(read_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub(super) async fn held_routes(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client("held_routes").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached("SELECT sink FROM route_holds ORDER BY sink")
                    .await
                    .map_err(read_err)?,
                &[],
            )
            .await
            .map_err(read_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

#[async_trait]
impl crate::store::Views for Postgres {
    async fn overview(&self, q: OverviewQuery) -> Result<Overview, StoreError> {
        let client = self.client("overview").await?;
        let paused = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT sink, partition_key, paused_until_ms, held, pause_reason FROM partitions
                 WHERE held OR paused_until_ms > $1 ORDER BY sink, partition_key LIMIT $2",
                    )
                    .await
                    .map_err(read_err)?,
                &[&q.now_ms, &(q.paused_limit as i64)],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| Paused {
                sink: r.get(0),
                partition: r.get(1),
                until_ms: r.get(2),
                held: r.get(3),
                reason: r.get(4),
            })
            .collect();
        let cache = client
            .query_one(
                &client
                    .prepare_cached(
                        "SELECT COALESCE(SUM(requests), 0)::BIGINT,
                        COALESCE(SUM(hits + revalidated), 0)::BIGINT,
                        COALESCE(SUM(units_saved), 0)::BIGINT
                 FROM client_usage WHERE minute >= $1",
                    )
                    .await
                    .map_err(read_err)?,
                &[&q.cache_from_minute],
            )
            .await
            .map_err(read_err)?;
        let attempt_outcomes = client
            .query(
                &client.prepare_cached("SELECT minute, outcome, SUM(n)::BIGINT FROM attempt_minutes WHERE minute >= $1
                 GROUP BY minute, outcome").await.map_err(read_err)?,
                &[&q.samples_from_minute],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let sink_samples = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT minute, sink, lag_ms, dead FROM sink_samples WHERE minute >= $1
                 ORDER BY minute",
                    )
                    .await
                    .map_err(read_err)?,
                &[&q.samples_from_minute],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        drop(client);
        Ok(Overview {
            per_minute: self
                .pairs(
                    "SELECT minute, n FROM volume_minutes WHERE minute >= $1",
                    q.from_minute,
                )
                .await?,
            per_hour: self
                .pairs(
                    "SELECT hour, n FROM volume_hours WHERE hour >= $1",
                    q.from_hour,
                )
                .await?,
            backlog: self.backlog(q.now_ms).await?,
            paused,
            held_routes: self.held_routes().await?,
            cache: (cache.get(0), cache.get(1), cache.get(2)),
            attempt_outcomes,
            sink_samples,
            recovery: if q.with_recovery {
                Some(self.recovery_status().await?)
            } else {
                None
            },
        })
    }

    /// Partitions with work, a lease or a pause first (most pending
    /// first), each with its head: its first pending job in sequence
    /// order, and how that job's last attempt went.
    async fn partitions(
        &self,
        sink: Option<&str>,
        now_ms: i64,
        limit: usize,
    ) -> Result<PartitionsView, StoreError> {
        let client = self.client("partitions").await?;
        let total: i64 = client
            .query_one(
                &client
                    .prepare_cached(
                        "SELECT COUNT(*) FROM partitions WHERE $1::TEXT IS NULL OR sink = $1",
                    )
                    .await
                    .map_err(read_err)?,
                &[&sink],
            )
            .await
            .map_err(read_err)?
            .get(0);
        let dead: std::collections::HashMap<(String, String), i64> = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT sink, partition_key, COUNT(*) FROM jobs
                 WHERE state = 'dead' AND ($1::TEXT IS NULL OR sink = $1)
                 GROUP BY sink, partition_key",
                    )
                    .await
                    .map_err(read_err)?,
                &[&sink],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect();
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "WITH ps AS (
                   SELECT p.sink, p.partition_key, p.lease_owner, p.lease_until_ms,
                          p.paused_until_ms, p.held, p.pause_reason,
                          (SELECT COUNT(*) FROM jobs j WHERE j.sink = p.sink
                             AND j.partition_key = p.partition_key AND j.state = 'pending')
                            AS pending,
                          (SELECT j.id FROM jobs j WHERE j.sink = p.sink
                             AND j.partition_key = p.partition_key AND j.state = 'pending'
                           ORDER BY j.seq LIMIT 1) AS head,
                          p.dead_head
                   FROM partitions p
                   WHERE $1::TEXT IS NULL OR p.sink = $1),
                 top AS (
                   SELECT * FROM ps
                   ORDER BY (pending > 0 OR held OR paused_until_ms > $2
                             OR lease_until_ms > $2) DESC,
                            pending DESC, sink, partition_key
                   LIMIT $3)
                 SELECT top.sink, top.partition_key, top.lease_owner, top.lease_until_ms,
                        top.paused_until_ms, top.held, top.pending, d.received_at_ms,
                        h.id, h.attempts::BIGINT, h.next_at_ms, a.status_code::BIGINT,
                        a.error, a.outcome, h.delivery_id, top.dead_head,
                        (SELECT delivery_id FROM jobs WHERE id = top.dead_head), top.pause_reason
                 FROM top
                 LEFT JOIN jobs h ON h.id = top.head
                 LEFT JOIN deliveries d ON d.id = h.delivery_id
                 LEFT JOIN attempts a ON a.job_id = h.id
                      AND a.n = (SELECT MAX(n) FROM attempts WHERE job_id = h.id)
                 ORDER BY (top.pending > 0 OR top.held OR top.paused_until_ms > $2
                           OR top.lease_until_ms > $2) DESC,
                          top.pending DESC, top.sink, top.partition_key",
                    )
                    .await
                    .map_err(read_err)?,
                &[&sink, &now_ms, &(limit as i64)],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| {
                let (sink, partition): (String, String) = (r.get(0), r.get(1));
                let head = r.get::<_, Option<i64>>(8).map(|job_id| Head {
                    job_id,
                    attempts: r.get(9),
                    next_at_ms: r.get(10),
                    last_status: r.get(11),
                    last_error: r.get(12),
                    last_outcome: r.get(13),
                    delivery_id: r.get(14),
                });
                PartitionRow {
                    dead: dead
                        .get(&(sink.clone(), partition.clone()))
                        .copied()
                        .unwrap_or(0),
                    sink,
                    partition,
                    lease_owner: r.get(2),
                    // (kept on the database's clock: shown on ours)
                    lease_until_ms: r.get::<_, i64>(3) - self.clock_offset_ms(),
                    paused_until_ms: r.get(4),
                    pause_reason: r.get(17),
                    held: r.get(5),
                    pending: r.get(6),
                    oldest_ms: r.get(7),
                    head,
                    dead_head: match (r.get::<_, Option<i64>>(15), r.get::<_, Option<i64>>(16)) {
                        (Some(job), Some(delivery)) => Some((job, delivery)),
                        _ => None,
                    },
                }
            })
            .collect();
        drop(client);
        Ok(PartitionsView {
            backlog: self.backlog(now_ms).await?,
            held_routes: self.held_routes().await?,
            rows,
            total,
        })
    }

    async fn reports(&self, from_day: i64) -> Result<Reports, StoreError> {
        let client = self.client("reports").await?;
        let per_day = client
            .query(
                &client
                    .prepare_cached("SELECT day, owner, event, n FROM volume_days WHERE day >= $1")
                    .await
                    .map_err(read_err)?,
                &[&from_day],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let attempts = client
            .query(
                &client.prepare_cached("SELECT sink, outcome, bucket, SUM(n)::BIGINT FROM attempt_hours WHERE hour >= $1
                 GROUP BY 1, 2, 3 ORDER BY 1").await.map_err(read_err)?,
                &[&(from_day * 24)],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get::<_, i64>(2) as usize, r.get(3)))
            .collect();
        Ok(Reports { per_day, attempts })
    }

    async fn add_attempt_minutes(
        &self,
        counts: Vec<((i64, String, &'static str), i64)>,
    ) -> Result<(), StoreError> {
        let mut counts = counts;
        // Key order, so replicas adding at once lock rows alike.
        counts.sort();
        let mut client = self.client("add_attempt_minutes").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        for ((minute, sink, outcome), n) in &counts {
            tx.execute(
                &tx.prepare_cached("INSERT INTO attempt_minutes (minute, sink, outcome, n) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (minute, sink, outcome) DO UPDATE SET n = attempt_minutes.n + excluded.n").await.map_err(write_err)?,
                &[minute, sink, outcome, n],
            )
            .await
            .map_err(write_err)?;
        }
        tx.commit().await.map_err(write_err)
    }

    async fn sample_sinks(&self, now_ms: i64, keep_minutes: i64) -> Result<(), StoreError> {
        let backlog = self.backlog(now_ms).await?;
        let minute = now_ms / 60_000;
        let mut client = self.client("sample_sinks").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        for (sink, pending, oldest, dead) in &backlog.per_sink {
            let lag = oldest.map_or(0, |t| (now_ms - t).max(0));
            tx.execute(
                &tx.prepare_cached(
                    "INSERT INTO sink_samples (minute, sink, pending, lag_ms, dead)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (minute, sink) DO UPDATE SET pending = excluded.pending,
                   lag_ms = excluded.lag_ms, dead = excluded.dead",
                )
                .await
                .map_err(write_err)?,
                &[&minute, sink, pending, &lag, dead],
            )
            .await
            .map_err(write_err)?;
        }
        for sql in [
            "DELETE FROM sink_samples WHERE minute < $1",
            "DELETE FROM attempt_minutes WHERE minute < $1",
        ] {
            tx.execute(sql, &[&(minute - keep_minutes)])
                .await
                .map_err(write_err)?;
        }
        tx.commit().await.map_err(write_err)
    }
}
