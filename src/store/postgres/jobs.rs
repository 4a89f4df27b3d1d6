//! Jobs, leases and attempts on PostgreSQL, shared by every replica. A
//! claim skips a lease row another replica has locked (`FOR UPDATE SKIP
//! LOCKED`) instead of queueing behind it; every write under a lease
//! starts with the fence check (owner and epoch) on the lease row, whose
//! row lock keeps a concurrent claim out until the transaction ends; a
//! partition's jobs run in its sequence order, never by id.

use async_trait::async_trait;
use deadpool_postgres::Transaction;

use super::{Postgres, read_err, write_err};
use crate::store::StoreError;
use crate::store::jobs::{
    After, Attempt, Backlog, Breaker, Fence, Job, Lease, Limit, OnDead, Outcome,
};

/// Extends the lease to `until_ms` if the fence still holds it; the row
/// lock it takes keeps another replica's claim waiting until commit.
pub(super) async fn renew(
    tx: &Transaction<'_>,
    sink: &str,
    partition: &str,
    fence: &Fence,
    until_ms: i64,
) -> Result<bool, tokio_postgres::Error> {
    let n = tx
        .execute(
            "UPDATE partitions SET lease_until_ms = $5
             WHERE sink = $1 AND partition_key = $2 AND lease_owner = $3 AND lease_epoch = $4",
            &[&sink, &partition, &fence.owner, &fence.epoch, &until_ms],
        )
        .await?;
    Ok(n == 1)
}

/// A job's last attempt counted, and it is `state` (done or dead).
async fn finish(
    tx: &Transaction<'_>,
    job_id: i64,
    state: &str,
    now: i64,
) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        &tx.prepare_cached(
            "UPDATE jobs SET state = $3, attempts = attempts + 1, updated_at_ms = $2 WHERE id = $1",
        )
        .await?,
        &[&job_id, &now, &state],
    )
    .await?;
    Ok(())
}

/// Moves one job on after an attempt: done, paused partition, dead at
/// the limit, or due again at `retry_at_ms`.
#[allow(clippy::too_many_arguments)]
async fn move_on(
    tx: &Transaction<'_>,
    job: &Job,
    sink: &str,
    partition: &str,
    attempt: &Attempt,
    limit: Limit,
    retry_at_ms: i64,
    now: i64,
) -> Result<After, tokio_postgres::Error> {
    insert_attempt(tx, job.id, attempt).await?;
    Ok(match attempt.outcome {
        Outcome::Done => {
            finish(tx, job.id, "done", now).await?;
            After::Done
        }
        Outcome::Pause { until_ms } => {
            // The job keeps its place and its attempt count.
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE partitions SET paused_until_ms = $3, pause_reason = NULL
                     WHERE sink = $1 AND partition_key = $2",
                )
                .await?,
                &[&sink, &partition, &until_ms],
            )
            .await?;
            After::Paused { until_ms }
        }
        Outcome::Failed if job.attempts + 1 >= limit.max_attempts => {
            finish(tx, job.id, "dead", now).await?;
            match limit.on_dead {
                // The first to die holds the partition.
                OnDead::Hold => {
                    tx.execute(
                        "UPDATE partitions SET dead_head = COALESCE(dead_head, $3)
                         WHERE sink = $1 AND partition_key = $2",
                        &[&sink, &partition, &job.id],
                    )
                    .await?;
                }
                OnDead::Skip => {
                    tx.execute(
                        "UPDATE jobs SET skipped_at_ms = $2, skipped_by = 'on_dead = skip' WHERE id = $1",
                        &[&job.id, &now],
                    )
                    .await?;
                }
                OnDead::Unordered => {}
            }
            After::Dead
        }
        Outcome::Failed => {
            tx.execute(
                &tx.prepare_cached(
                    "UPDATE jobs SET attempts = attempts + 1, next_at_ms = $2, updated_at_ms = $3
                     WHERE id = $1",
                )
                .await?,
                &[&job.id, &retry_at_ms, &now],
            )
            .await?;
            After::Retry {
                next_at_ms: retry_at_ms,
            }
        }
    })
}

/// Appends an attempt to a job's history, numbered after the last one.
async fn insert_attempt(
    tx: &Transaction<'_>,
    job_id: i64,
    a: &Attempt,
) -> Result<(), tokio_postgres::Error> {
    let outcome = match a.outcome {
        Outcome::Done => "done",
        Outcome::Pause { .. } => "paused",
        Outcome::Failed => "failed",
    };
    tx.execute(
        "INSERT INTO attempts (job_id, n, started_at_ms, duration_ms, status_code, outcome, error,
                               response_excerpt, url, response_headers)
         VALUES ($1, (SELECT COALESCE(MAX(n), 0) + 1 FROM attempts WHERE job_id = $1), $2, $3,
                 $4, $5, $6, $7, $8, $9)",
        &[
            &job_id,
            &a.started_at_ms,
            &a.duration_ms,
            &a.status_code.map(i32::from),
            &outcome,
            &a.error,
            &a.response_excerpt,
            &a.url,
            &a.response_headers,
        ],
    )
    .await?;
    // The reports' latency roll-up, in the same transaction.
    tx.execute(
        "INSERT INTO attempt_hours (hour, sink, outcome, bucket, n)
         SELECT $2::BIGINT / 3600000, sink, $3::TEXT,
                CASE WHEN $4::BIGINT <= 10 THEN 0 WHEN $4 <= 25 THEN 1 WHEN $4 <= 50 THEN 2
                     WHEN $4 <= 100 THEN 3 WHEN $4 <= 250 THEN 4 WHEN $4 <= 500 THEN 5
                     WHEN $4 <= 1000 THEN 6 WHEN $4 <= 2500 THEN 7 WHEN $4 <= 5000 THEN 8
                     WHEN $4 <= 10000 THEN 9 WHEN $4 <= 30000 THEN 10 ELSE 11 END, 1
         FROM jobs WHERE id = $1
         ON CONFLICT (hour, sink, outcome, bucket) DO UPDATE SET n = attempt_hours.n + 1",
        &[&job_id, &a.started_at_ms, &outcome, &a.duration_ms],
    )
    .await?;
    Ok(())
}

/// Ends a job that ran in-process: done, or dead with why; one attempt
/// row records it.
pub(super) async fn close(
    tx: &Transaction<'_>,
    job_id: i64,
    now_ms: i64,
    dead_because: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let state = if dead_because.is_none() {
        "done"
    } else {
        "dead"
    };
    finish(tx, job_id, state, now_ms).await?;
    insert_attempt(tx, job_id, &Attempt::in_process(now_ms, dead_because)).await
}

#[async_trait]
impl crate::store::Jobs for Postgres {
    /// Other replicas may be alive and holding leases: nothing here can
    /// prove them gone, so nothing is expired early; a dead replica's
    /// leases become claimable when they expire.
    async fn expire_leases_of_the_dead(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    async fn due_partitions(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let client = self.client("due_partitions").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT j.sink, j.partition_key,
                        GREATEST(MIN(j.next_at_ms), COALESCE(MAX(p.paused_until_ms), 0))
                 FROM jobs j LEFT JOIN partitions p USING (sink, partition_key)
                 WHERE j.state = 'pending' AND NOT COALESCE(p.held, false)
                   AND p.dead_head IS NULL
                   AND j.sink NOT IN (SELECT sink FROM route_holds)
                 GROUP BY j.sink, j.partition_key",
                    )
                    .await
                    .map_err(read_err)?,
                &[],
            )
            .await
            .map_err(read_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    async fn acquire(
        &self,
        sink: &str,
        partition: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Lease, StoreError> {
        let mut client = self.client("acquire").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let held: bool = tx
            .query_one(
                &tx.prepare_cached(
                    "SELECT COALESCE((SELECT held OR dead_head IS NOT NULL FROM partitions
                                      WHERE sink = $1 AND partition_key = $2), false)
                     OR EXISTS (SELECT 1 FROM route_holds WHERE sink = $1)",
                )
                .await
                .map_err(write_err)?,
                &[&sink, &partition],
            )
            .await
            .map_err(write_err)?
            .get(0);
        if held {
            return Ok(Lease::Held);
        }
        // A row another replica is writing under (a claim, a record) is
        // skipped, not waited for: it is busy either way.
        let taken = tx
            .query_opt(
                &tx.prepare_cached(
                    "WITH free AS MATERIALIZED (
                     SELECT sink, partition_key FROM partitions
                     WHERE sink = $1 AND partition_key = $2
                       AND (lease_owner IS NULL OR lease_owner = $3 OR lease_until_ms < $5)
                     FOR UPDATE SKIP LOCKED)
                 UPDATE partitions p SET lease_owner = $3, lease_until_ms = $4,
                                         lease_epoch = p.lease_epoch + 1
                 FROM free WHERE p.sink = free.sink AND p.partition_key = free.partition_key
                 RETURNING p.lease_epoch, p.paused_until_ms",
                )
                .await
                .map_err(write_err)?,
                &[
                    &sink,
                    &partition,
                    &owner,
                    &(self.db_ms(now_ms) + lease_ms),
                    &self.db_ms(now_ms),
                ],
            )
            .await
            .map_err(write_err)?;
        tx.commit().await.map_err(write_err)?;
        Ok(match taken {
            None => Lease::Busy,
            Some(r) => Lease::Taken {
                paused_until_ms: r.get(1),
                fence: Fence {
                    owner: owner.to_string(),
                    epoch: r.get(0),
                },
            },
        })
    }

    async fn release(&self, sink: &str, partition: &str, fence: &Fence) -> Result<(), StoreError> {
        let client = self.client("release").await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "UPDATE partitions SET lease_owner = NULL, lease_until_ms = 0
                 WHERE sink = $1 AND partition_key = $2 AND lease_owner = $3 AND lease_epoch = $4",
                    )
                    .await
                    .map_err(write_err)?,
                &[&sink, &partition, &fence.owner, &fence.epoch],
            )
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn extend(
        &self,
        sink: &str,
        partition: &str,
        fence: &Fence,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client("extend").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let held = renew(&tx, sink, partition, fence, self.db_ms(until_ms))
            .await
            .map_err(write_err)?;
        tx.commit().await.map_err(write_err)?;
        Ok(held)
    }

    /// In the partition's sequence order: commit order across replicas.
    async fn pending(
        &self,
        sink: &str,
        partition: &str,
        due_by: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let client = self.client("pending").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT id, delivery_id, attempts, next_at_ms FROM jobs
                 WHERE sink = $1 AND partition_key = $2 AND state = 'pending' AND next_at_ms <= $3
                 ORDER BY seq LIMIT $4",
                    )
                    .await
                    .map_err(read_err)?,
                &[
                    &sink,
                    &partition,
                    &due_by.unwrap_or(i64::MAX),
                    &(limit as i64),
                ],
            )
            .await
            .map_err(read_err)?;
        Ok(rows
            .iter()
            .map(|r| Job {
                id: r.get(0),
                delivery_id: r.get(1),
                attempts: r.get::<_, i32>(2) as u32,
                next_at_ms: r.get(3),
            })
            .collect())
    }

    async fn next_due(&self, sink: &str, partition: &str) -> Result<Option<i64>, StoreError> {
        let client = self.client("next_due").await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached(
                        "SELECT MIN(next_at_ms) FROM jobs
                 WHERE sink = $1 AND partition_key = $2 AND state = 'pending'",
                    )
                    .await
                    .map_err(read_err)?,
                &[&sink, &partition],
            )
            .await
            .map_err(read_err)?;
        Ok(row.get(0))
    }

    async fn record_batch(
        &self,
        done: &[Job],
        failed: &[Job],
        sink: &str,
        partition: &str,
        fence: &Fence,
        attempt: Attempt,
        limit: Limit,
        retry_at_ms: i64,
        lease_ms: i64,
    ) -> Result<After, StoreError> {
        let mut client = self.client("record").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let now = attempt.started_at_ms + attempt.duration_ms;
        // The fence check first: a lost lease writes nothing.
        if !renew(&tx, sink, partition, fence, self.db_ms(now) + lease_ms)
            .await
            .map_err(write_err)?
        {
            return Ok(After::LeaseLost);
        }
        let took = attempt.for_done();
        for job in done {
            insert_attempt(&tx, job.id, &took)
                .await
                .map_err(write_err)?;
            finish(&tx, job.id, "done", now).await.map_err(write_err)?;
        }
        let mut first = None;
        for job in failed {
            let after = move_on(&tx, job, sink, partition, &attempt, limit, retry_at_ms, now)
                .await
                .map_err(write_err)?;
            first.get_or_insert(after);
        }
        tx.commit().await.map_err(write_err)?;
        Ok(first.unwrap_or(After::Done))
    }

    async fn pause_partition(
        &self,
        sink: &str,
        partition: &str,
        fence: &Fence,
        until_ms: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut client = self.client("pause_partition").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        if !renew(&tx, sink, partition, fence, self.db_ms(until_ms))
            .await
            .map_err(write_err)?
        {
            return Ok(false);
        }
        tx.execute(
            "UPDATE partitions SET paused_until_ms = $3, pause_reason = $4
             WHERE sink = $1 AND partition_key = $2",
            &[&sink, &partition, &until_ms, &reason],
        )
        .await
        .map_err(write_err)?;
        tx.commit().await.map_err(write_err)?;
        Ok(true)
    }

    async fn bury(
        &self,
        job_id: i64,
        sink: &str,
        partition: &str,
        fence: &Fence,
        now_ms: i64,
        lease_ms: i64,
        why: &str,
    ) -> Result<bool, StoreError> {
        let mut client = self.client("bury").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        if !renew(&tx, sink, partition, fence, self.db_ms(now_ms) + lease_ms)
            .await
            .map_err(write_err)?
        {
            return Ok(false);
        }
        close(&tx, job_id, now_ms, Some(why))
            .await
            .map_err(write_err)?;
        tx.commit().await.map_err(write_err)?;
        Ok(true)
    }

    async fn breaker(&self, sink: &str) -> Result<Option<Breaker>, StoreError> {
        let client = self.client("breaker").await?;
        let row = client
            .query_opt(
                "SELECT opened_at_ms, probe_at_ms FROM route_breakers WHERE sink = $1",
                &[&sink],
            )
            .await
            .map_err(read_err)?;
        Ok(row.map(|r| Breaker {
            opened_at_ms: r.get(0),
            probe_at_ms: r.get(1),
        }))
    }

    async fn breakers(&self) -> Result<Vec<(String, Breaker)>, StoreError> {
        let client = self.client("breakers").await?;
        let rows = client
            .query(
                "SELECT sink, opened_at_ms, probe_at_ms FROM route_breakers",
                &[],
            )
            .await
            .map_err(read_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    Breaker {
                        opened_at_ms: r.get(1),
                        probe_at_ms: r.get(2),
                    },
                )
            })
            .collect())
    }

    async fn open_breaker(
        &self,
        sink: &str,
        now_ms: i64,
        probe_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let client = self.client("open_breaker").await?;
        let n = client
            .execute(
                "INSERT INTO route_breakers (sink, opened_at_ms, probe_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (sink) DO NOTHING",
                &[&sink, &now_ms, &probe_at_ms],
            )
            .await
            .map_err(write_err)?;
        Ok(n == 1)
    }

    async fn claim_probe(&self, sink: &str, now_ms: i64, next_ms: i64) -> Result<bool, StoreError> {
        let client = self.client("claim_probe").await?;
        let n = client
            .execute(
                "UPDATE route_breakers SET probe_at_ms = $3 WHERE sink = $1 AND probe_at_ms <= $2",
                &[&sink, &now_ms, &next_ms],
            )
            .await
            .map_err(write_err)?;
        Ok(n == 1)
    }

    async fn close_breaker(&self, sink: &str) -> Result<bool, StoreError> {
        let client = self.client("close_breaker").await?;
        let n = client
            .execute("DELETE FROM route_breakers WHERE sink = $1", &[&sink])
            .await
            .map_err(write_err)?;
        Ok(n == 1)
    }

    async fn oldest_head(&self, sink: &str) -> Result<Option<String>, StoreError> {
        let client = self.client("oldest_head").await?;
        let row = client
            .query_opt(
                "SELECT partition_key FROM jobs WHERE sink = $1 AND state = 'pending'
                 ORDER BY id LIMIT 1",
                &[&sink],
            )
            .await
            .map_err(read_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn backlog(&self, now_ms: i64) -> Result<Backlog, StoreError> {
        let client = self.client("backlog").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT s.sink,
                        (SELECT COUNT(*) FROM jobs j WHERE j.sink = s.sink AND j.state = 'pending'),
                        (SELECT MIN(d.received_at_ms) FROM jobs j
                           JOIN deliveries d ON d.id = j.delivery_id
                          WHERE j.sink = s.sink AND j.state = 'pending'),
                        (SELECT COUNT(*) FROM jobs j WHERE j.sink = s.sink AND j.state = 'dead')
                 FROM (SELECT DISTINCT sink FROM partitions) s",
                    )
                    .await
                    .map_err(read_err)?,
                &[],
            )
            .await
            .map_err(read_err)?;
        let paused: i64 = client
            .query_one(
                &client
                    .prepare_cached(
                        "SELECT COUNT(*) FROM partitions WHERE held OR paused_until_ms > $1
                     OR sink IN (SELECT sink FROM route_holds)",
                    )
                    .await
                    .map_err(read_err)?,
                &[&now_ms],
            )
            .await
            .map_err(read_err)?
            .get(0);
        let held_by_dead = client
            .query(
                "SELECT sink, COUNT(*) FROM partitions WHERE dead_head IS NOT NULL GROUP BY sink",
                &[],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(Backlog {
            per_sink: rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect(),
            partitions_paused: paused,
            held_by_dead,
        })
    }
}
