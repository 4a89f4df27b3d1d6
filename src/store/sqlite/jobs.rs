//! Jobs, leases and attempts on SQLite. Writes run inside the writer's
//! group commit; reads go through the read pool on blocking threads.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::Sqlite;
use crate::store::StoreError;
use crate::store::jobs::{
    After, Attempt, Backlog, Breaker, Fence, Job, Lease, Limit, OnDead, Outcome,
};

#[async_trait]
impl crate::store::Jobs for Sqlite {
    /// Leases left by a process that is gone. On this backend the process lock
    /// proves it: no other process has the file open, so every lease in it is
    /// expired now. They are not wiped: owner and epoch stay, and the next
    /// claim raises the epoch, so a write fenced with an old claim is refused
    /// whatever happens.
    async fn expire_leases_of_the_dead(&self) -> Result<usize, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE partitions SET lease_until_ms = 0 WHERE lease_until_ms != 0",
                [],
            )
        })
        .await
    }

    /// Every (sink, partition) with pending work, and when it is next due
    /// (its earliest job, or the end of a pause).
    async fn due_partitions(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self
        .read(|c| {
            {
                let mut st = c.prepare(
                    "SELECT j.sink, j.partition_key, MAX(MIN(j.next_at_ms), COALESCE(p.paused_until_ms, 0))
                     FROM jobs j LEFT JOIN partitions p USING (sink, partition_key)
                     WHERE j.state = 'pending' AND COALESCE(p.held, 0) = 0
                       AND p.dead_head IS NULL
                       AND j.sink NOT IN (SELECT sink FROM route_holds)
                     GROUP BY j.sink, j.partition_key",
                )?;
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            }
        })
        .await
    }

    /// Takes the lease on (sink, partition) unless another owner holds an
    /// unexpired one; every claim (ours again included) raises the epoch.
    async fn acquire(
        &self,
        sink: &str,
        partition: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Lease, StoreError> {
        let (sink, partition, owner) = (sink.to_string(), partition.to_string(), owner.to_string());
        self.write(move |tx| {
            let held: bool = tx.query_row(
                "SELECT COALESCE((SELECT held OR dead_head IS NOT NULL FROM partitions
                                  WHERE sink = ?1 AND partition_key = ?2), 0)
                     OR EXISTS (SELECT 1 FROM route_holds WHERE sink = ?1)",
                params![sink, partition],
                |r| r.get(0),
            )?;
            if held {
                return Ok(Lease::Held);
            }
            let taken = tx
                .query_row(
                    "UPDATE partitions SET lease_owner = ?3, lease_until_ms = ?4,
                            lease_epoch = lease_epoch + 1
                     WHERE sink = ?1 AND partition_key = ?2
                       AND (lease_owner IS NULL OR lease_owner = ?3 OR lease_until_ms < ?5)
                     RETURNING lease_epoch, paused_until_ms",
                    params![sink, partition, owner, now_ms + lease_ms, now_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(match taken {
                None => Lease::Busy,
                Some((epoch, paused_until_ms)) => Lease::Taken {
                    paused_until_ms,
                    fence: Fence { owner, epoch },
                },
            })
        })
        .await
    }

    /// Gives the lease back, if this fence still holds it (a lease that
    /// passed on is not ours to free).
    async fn release(&self, sink: &str, partition: &str, fence: &Fence) -> Result<(), StoreError> {
        let (sink, partition, fence) = (sink.to_string(), partition.to_string(), fence.clone());
        self.write(move |tx| {
            tx.execute(
                "UPDATE partitions SET lease_owner = NULL, lease_until_ms = 0
                 WHERE sink = ?1 AND partition_key = ?2 AND lease_owner = ?3 AND lease_epoch = ?4",
                params![sink, partition, fence.owner, fence.epoch],
            )
        })
        .await
        .map(|_| ())
    }

    /// Pending jobs of a partition in received order; with `due_by`, only
    /// those due by then (for `ordering = "none"`).
    async fn pending(
        &self,
        sink: &str,
        partition: &str,
        due_by: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError> {
        let (sink, partition) = (sink.to_string(), partition.to_string());
        self
        .read(move |c| {
            {
                let mut st = c.prepare_cached(
                    "SELECT id, delivery_id, attempts, next_at_ms FROM jobs
                     WHERE sink = ?1 AND partition_key = ?2 AND state = 'pending' AND next_at_ms <= ?3
                     ORDER BY id LIMIT ?4",
                )?;
                st.query_map(
                    params![sink, partition, due_by.unwrap_or(i64::MAX), limit as i64],
                    |r| {
                        Ok(Job {
                            id: r.get(0)?,
                            delivery_id: r.get(1)?,
                            attempts: r.get(2)?,
                            next_at_ms: r.get(3)?,
                        })
                    },
                )?
                .collect()
            }
        })
        .await
    }

    /// The earliest due time among a partition's pending jobs.
    async fn next_due(&self, sink: &str, partition: &str) -> Result<Option<i64>, StoreError> {
        let (sink, partition) = (sink.to_string(), partition.to_string());
        self
        .read(move |c| {
            {
                c.query_row(
                    "SELECT MIN(next_at_ms) FROM jobs WHERE sink = ?1 AND partition_key = ?2 AND state = 'pending'",
                    params![sink, partition],
                    |r| r.get(0),
                )
                .optional()
                .map(Option::flatten)
            }
        })
        .await
    }

    /// Records one attempt that carried `done` and `failed` (a batch, or
    /// one job) and moves each job on, renewing the lease, in one
    /// transaction; or, when the fence no longer holds, writes nothing and
    /// says [`After::LeaseLost`].
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
        let (done, failed, sink, partition, fence) = (
            done.to_vec(),
            failed.to_vec(),
            sink.to_string(),
            partition.to_string(),
            fence.clone(),
        );
        self.write(move |tx| {
            let now = attempt.started_at_ms + attempt.duration_ms;
            // The renewal is the fence check: one statement, first, so a
            // lost lease writes nothing.
            if !renew(tx, &sink, &partition, &fence, now + lease_ms)? {
                return Ok(After::LeaseLost);
            }
            let took = attempt.for_done();
            for job in &done {
                insert_attempt(tx, job.id, &took)?;
                finish(tx, job.id, "done", now)?;
            }
            let mut first = None;
            for job in &failed {
                let after = move_on(
                    tx,
                    job,
                    &sink,
                    &partition,
                    &attempt,
                    limit,
                    retry_at_ms,
                    now,
                )?;
                first.get_or_insert(after);
            }
            Ok(first.unwrap_or(After::Done))
        })
        .await
    }

    async fn pause_partition(
        &self,
        sink: &str,
        partition: &str,
        fence: &Fence,
        until_ms: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let (sink, partition, fence, reason) = (
            sink.to_string(),
            partition.to_string(),
            fence.clone(),
            reason.to_string(),
        );
        self.write(move |tx| {
            // The lease stays until the pause ends; it is given back then.
            if !renew(tx, &sink, &partition, &fence, until_ms)? {
                return Ok(false);
            }
            tx.execute(
                "UPDATE partitions SET paused_until_ms = ?3, pause_reason = ?4
                 WHERE sink = ?1 AND partition_key = ?2",
                params![sink, partition, until_ms, reason],
            )?;
            Ok(true)
        })
        .await
    }

    /// A job whose delivery is gone (pruned) cannot run: it is dead. False
    /// when the fence no longer holds (nothing written).
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
        let (why, sink, partition, fence) = (
            why.to_string(),
            sink.to_string(),
            partition.to_string(),
            fence.clone(),
        );
        self.write(move |tx| {
            if !renew(tx, &sink, &partition, &fence, now_ms + lease_ms)? {
                return Ok(false);
            }
            close(tx, job_id, now_ms, Some(&why))?;
            Ok(true)
        })
        .await
    }

    /// Extends the lease on its own (before an attempt that might outlast
    /// what is left of it); false when it passed on.
    async fn extend(
        &self,
        sink: &str,
        partition: &str,
        fence: &Fence,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let (sink, partition, fence) = (sink.to_string(), partition.to_string(), fence.clone());
        self.write(move |tx| renew(tx, &sink, &partition, &fence, until_ms))
            .await
    }

    async fn backlog(&self, now_ms: i64) -> Result<Backlog, StoreError> {
        self.read(move |c| backlog(c, now_ms)).await
    }

    async fn breaker(&self, sink: &str) -> Result<Option<Breaker>, StoreError> {
        let sink = sink.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT opened_at_ms, probe_at_ms FROM route_breakers WHERE sink = ?1",
            )?
            .query_row([sink], |r| {
                Ok(Breaker {
                    opened_at_ms: r.get(0)?,
                    probe_at_ms: r.get(1)?,
                })
            })
            .optional()
        })
        .await
    }

    async fn breakers(&self) -> Result<Vec<(String, Breaker)>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT sink, opened_at_ms, probe_at_ms FROM route_breakers")?
                .query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        Breaker {
                            opened_at_ms: r.get(1)?,
                            probe_at_ms: r.get(2)?,
                        },
                    ))
                })?
                .collect()
        })
        .await
    }

    async fn open_breaker(
        &self,
        sink: &str,
        now_ms: i64,
        probe_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let sink = sink.to_string();
        self.write(move |tx| {
            let n = tx.execute(
                "INSERT INTO route_breakers (sink, opened_at_ms, probe_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sink) DO NOTHING",
                params![sink, now_ms, probe_at_ms],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn claim_probe(&self, sink: &str, now_ms: i64, next_ms: i64) -> Result<bool, StoreError> {
        let sink = sink.to_string();
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE route_breakers SET probe_at_ms = ?3 WHERE sink = ?1 AND probe_at_ms <= ?2",
                params![sink, now_ms, next_ms],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn close_breaker(&self, sink: &str) -> Result<bool, StoreError> {
        let sink = sink.to_string();
        self.write(move |tx| {
            Ok(tx.execute("DELETE FROM route_breakers WHERE sink = ?1", [sink])? == 1)
        })
        .await
    }

    async fn oldest_head(&self, sink: &str) -> Result<Option<String>, StoreError> {
        let sink = sink.to_string();
        self.read(move |c| {
            c.prepare_cached(
                "SELECT partition_key FROM jobs WHERE sink = ?1 AND state = 'pending'
                 ORDER BY id LIMIT 1",
            )?
            .query_row([sink], |r| r.get(0))
            .optional()
        })
        .await
    }
}

/// Ends a job that ran in-process (no consumer to ask): done, or dead
/// with why it can never succeed; one attempt row records it. Runs inside
/// the caller's transaction.
pub(super) fn close(
    tx: &rusqlite::Transaction<'_>,
    job_id: i64,
    now_ms: i64,
    dead_because: Option<&str>,
) -> rusqlite::Result<()> {
    let state = if dead_because.is_none() {
        "done"
    } else {
        "dead"
    };
    finish(tx, job_id, state, now_ms)?;
    insert_attempt(tx, job_id, &Attempt::in_process(now_ms, dead_because))
}

/// A job's last attempt counted, and it is `state` (done or dead).
fn finish(
    tx: &rusqlite::Transaction<'_>,
    job_id: i64,
    state: &str,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "UPDATE jobs SET state = ?3, attempts = attempts + 1, updated_at_ms = ?2 WHERE id = ?1",
    )?
    .execute(params![job_id, now, state])?;
    Ok(())
}

/// Moves one job on after an attempt: done, paused partition, dead at
/// the limit, or due again at `retry_at_ms`.
#[allow(clippy::too_many_arguments)]
fn move_on(
    tx: &rusqlite::Transaction<'_>,
    job: &Job,
    sink: &str,
    partition: &str,
    attempt: &Attempt,
    limit: Limit,
    retry_at_ms: i64,
    now: i64,
) -> rusqlite::Result<After> {
    insert_attempt(tx, job.id, attempt)?;
    Ok(match attempt.outcome {
        Outcome::Done => {
            finish(tx, job.id, "done", now)?;
            After::Done
        }
        Outcome::Pause { until_ms } => {
            // The job keeps its place and its attempt count.
            tx.execute(
                "UPDATE partitions SET paused_until_ms = ?3, pause_reason = NULL
                 WHERE sink = ?1 AND partition_key = ?2",
                params![sink, partition, until_ms],
            )?;
            After::Paused { until_ms }
        }
        Outcome::Failed if job.attempts + 1 >= limit.max_attempts => {
            finish(tx, job.id, "dead", now)?;
            match limit.on_dead {
                // The first to die holds the partition.
                OnDead::Hold => {
                    tx.execute(
                        "UPDATE partitions SET dead_head = COALESCE(dead_head, ?3)
                         WHERE sink = ?1 AND partition_key = ?2",
                        params![sink, partition, job.id],
                    )?;
                }
                OnDead::Skip => {
                    tx.execute(
                        "UPDATE jobs SET skipped_at_ms = ?2, skipped_by = 'on_dead = skip' WHERE id = ?1",
                        params![job.id, now],
                    )?;
                }
                OnDead::Unordered => {}
            }
            After::Dead
        }
        Outcome::Failed => {
            tx.execute(
                "UPDATE jobs SET attempts = attempts + 1, next_at_ms = ?2, updated_at_ms = ?3 WHERE id = ?1",
                params![job.id, retry_at_ms, now],
            )?;
            After::Retry {
                next_at_ms: retry_at_ms,
            }
        }
    })
}

/// Appends an attempt to a job's history, numbered after the last one.
fn insert_attempt(
    tx: &rusqlite::Transaction<'_>,
    job_id: i64,
    a: &Attempt,
) -> rusqlite::Result<()> {
    let outcome = match a.outcome {
        Outcome::Done => "done",
        Outcome::Pause { .. } => "paused",
        Outcome::Failed => "failed",
    };
    tx.prepare_cached(
        "INSERT INTO attempts (job_id, n, started_at_ms, duration_ms, status_code, outcome, error,
                               response_excerpt, url, response_headers)
         VALUES (?1, (SELECT COALESCE(MAX(n), 0) + 1 FROM attempts WHERE job_id = ?1), ?2, ?3, ?4,
                 ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        job_id,
        a.started_at_ms,
        a.duration_ms,
        a.status_code,
        outcome,
        a.error,
        a.response_excerpt,
        a.url,
        a.response_headers
    ])?;
    Ok(())
}

/// Extends our lease on (sink, partition) to `until_ms`; false when the
/// fence no longer holds it (another claim came in between). Every write
/// under a lease starts with this, so it is also the fence check: the
/// writer runs one transaction at a time, so nothing comes between the
/// check and the writes after it.
pub(super) fn renew(
    tx: &rusqlite::Transaction<'_>,
    sink: &str,
    partition: &str,
    fence: &Fence,
    until_ms: i64,
) -> rusqlite::Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE partitions SET lease_until_ms = ?5
             WHERE sink = ?1 AND partition_key = ?2 AND lease_owner = ?3 AND lease_epoch = ?4",
        )?
        .execute(params![sink, partition, fence.owner, fence.epoch, until_ms])?;
    Ok(n == 1)
}

/// Routes an operator paused as a whole.
pub(super) fn held_routes(c: &rusqlite::Connection) -> rusqlite::Result<Vec<String>> {
    c.prepare_cached("SELECT sink FROM route_holds ORDER BY sink")?
        .query_map([], |r| r.get(0))?
        .collect()
}

pub(super) fn backlog(c: &rusqlite::Connection, now_ms: i64) -> rusqlite::Result<Backlog> {
    {
        let mut st = c.prepare_cached(
            "SELECT s.sink,
                    (SELECT COUNT(*) FROM jobs j WHERE j.sink = s.sink AND j.state = 'pending'),
                    (SELECT MIN(d.received_at_ms) FROM jobs j JOIN deliveries d ON d.id = j.delivery_id
                      WHERE j.sink = s.sink AND j.state = 'pending'),
                    (SELECT COUNT(*) FROM jobs j WHERE j.sink = s.sink AND j.state = 'dead')
             FROM (SELECT DISTINCT sink FROM partitions) s",
        )?;
        let per_sink = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        let partitions_paused = c.query_row(
            "SELECT COUNT(*) FROM partitions WHERE held = 1 OR paused_until_ms > ?1
                 OR sink IN (SELECT sink FROM route_holds)",
            [now_ms],
            |r| r.get(0),
        )?;
        let held_by_dead = c
            .prepare_cached(
                "SELECT sink, COUNT(*) FROM partitions WHERE dead_head IS NOT NULL GROUP BY sink",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok(Backlog {
            per_sink,
            partitions_paused,
            held_by_dead,
        })
    }
}
