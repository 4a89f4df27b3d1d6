//! Recovery on PostgreSQL: walks, the redeliveries found and asked for,
//! and CLI triggers, shared by every replica. A claim is one upsert, so two
//! replicas walking the same source never both ask for one delivery; a
//! trigger is taken by exactly one replica (`FOR UPDATE SKIP LOCKED`).

use async_trait::async_trait;

use super::{Postgres, read_err, write_err};
use crate::store::StoreError;
use crate::store::recovery::{Completeness, SourceStatus, Walk, WalkState};

const WALK_COLUMNS: &str = "id, source, started_at_ms, finished_at_ms, state, since_ms, stop_at_id,
    cursor, newest_id, pages, seen, missing, requested, failures, last_error";

fn walk_from(r: &tokio_postgres::Row) -> Result<Walk, StoreError> {
    let state: String = r.get(4);
    Ok(Walk {
        id: r.get(0),
        source: r.get(1),
        started_at_ms: r.get(2),
        finished_at_ms: r.get(3),
        state: WalkState::parse(&state)
            .ok_or_else(|| StoreError::Read(format!("unknown walk state {state:?}")))?,
        since_ms: r.get(5),
        stop_at_id: r.get(6),
        cursor: r.get(7),
        newest_id: r.get(8),
        pages: r.get(9),
        seen: r.get(10),
        missing: r.get(11),
        requested: r.get(12),
        failures: r.get(13),
        last_error: r.get(14),
    })
}

/// Oldest delivery first (then GitHub's log id, then GUID), so GitHub
/// redelivers in the order it first sent.
const OLDEST_FIRST: &str = "delivered_at_ms IS NULL, delivered_at_ms, delivery_id, guid";

async fn walks_where(
    c: &tokio_postgres::Client,
    clause: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Walk>, StoreError> {
    c.query(
        &format!("SELECT {WALK_COLUMNS} FROM recovery_walks {clause}"),
        params,
    )
    .await
    .map_err(read_err)?
    .iter()
    .map(walk_from)
    .collect()
}

#[async_trait]
impl crate::store::Recovery for Postgres {
    async fn running_walk(&self, source: &str) -> Result<Option<Walk>, StoreError> {
        let client = self.client("running_walk").await?;
        Ok(walks_where(
            &client,
            "WHERE source = $1 AND state = 'running' ORDER BY id DESC LIMIT 1",
            &[&source],
        )
        .await?
        .pop())
    }

    async fn start_walk(
        &self,
        source: &str,
        now_ms: i64,
        since_ms: i64,
        to_checkpoint: bool,
    ) -> Result<Walk, StoreError> {
        let mut client = self.client("start_walk").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let stop_at: Option<i64> = if to_checkpoint {
            tx.query_opt(
                &tx.prepare_cached(
                    "SELECT newest_id FROM recovery_walks WHERE source = $1 AND state = 'complete'
                 ORDER BY id DESC LIMIT 1",
                )
                .await
                .map_err(write_err)?,
                &[&source],
            )
            .await
            .map_err(write_err)?
            .and_then(|r| r.get(0))
        } else {
            None
        };
        // A manual walk replaces an unfinished one: it covers at least as
        // much.
        tx.execute(
            &tx.prepare_cached(
                "UPDATE recovery_walks SET state = 'abandoned', finished_at_ms = $2
             WHERE source = $1 AND state = 'running'",
            )
            .await
            .map_err(write_err)?,
            &[&source, &now_ms],
        )
        .await
        .map_err(write_err)?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO recovery_walks (source, started_at_ms, state, since_ms, stop_at_id)
                     VALUES ($1, $2, 'running', $3, $4) RETURNING {WALK_COLUMNS}"
                ),
                &[&source, &now_ms, &since_ms, &stop_at],
            )
            .await
            .map_err(write_err)?;
        let walk = walk_from(&row)?;
        tx.commit().await.map_err(write_err)?;
        Ok(walk)
    }

    async fn save_walk(&self, w: &Walk, done: bool, now_ms: i64) -> Result<(), StoreError> {
        let client = self.client("save_walk").await?;
        client
            .execute(
                &client.prepare_cached("UPDATE recovery_walks SET cursor = $2, newest_id = $3, pages = $4, seen = $5,
                     missing = $6, requested = $7, failures = $8, last_error = $9,
                     state = CASE WHEN $10 THEN 'complete' ELSE state END,
                     finished_at_ms = CASE WHEN $10 THEN $11 ELSE finished_at_ms END
                 WHERE id = $1").await.map_err(write_err)?,
                &[
                    &w.id,
                    &w.cursor,
                    &w.newest_id,
                    &w.pages,
                    &w.seen,
                    &w.missing,
                    &w.requested,
                    &w.failures,
                    &w.last_error,
                    &done,
                    &now_ms,
                ],
            )
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn found(
        &self,
        source: &str,
        missing: Vec<(String, i64, Option<i64>)>,
    ) -> Result<i64, StoreError> {
        let mut client = self.client("found").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO recovery_requests (source, guid, delivery_id, requested_at_ms, outcome,
                                                delivered_at_ms)
                 VALUES ($1, $2, $3, 0, 'found', $4) ON CONFLICT (source, guid) DO NOTHING",
            )
            .await
            .map_err(write_err)?;
        let mut new = 0;
        for (guid, id, at) in &missing {
            new += tx
                .execute(&insert, &[&source, guid, id, at])
                .await
                .map_err(write_err)? as i64;
        }
        tx.commit().await.map_err(write_err)?;
        Ok(new)
    }

    async fn to_ask(&self, source: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.client("to_ask").await?;
        let rows = client
            .query(
                &format!(
                    "SELECT guid, delivery_id FROM recovery_requests
                     WHERE source = $1 AND outcome = 'found' ORDER BY {OLDEST_FIRST}"
                ),
                &[&source],
            )
            .await
            .map_err(read_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn due_again(
        &self,
        source: &str,
        reask_before_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut client = self.client("due_again").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        tx.execute(
            &tx.prepare_cached(
                "UPDATE recovery_requests SET outcome = 'arrived'
             WHERE source = $1 AND outcome <> 'arrived'
               AND EXISTS (SELECT 1 FROM deliveries d WHERE d.guid = recovery_requests.guid)",
            )
            .await
            .map_err(write_err)?,
            &[&source],
        )
        .await
        .map_err(write_err)?;
        let rows = tx
            .query(
                &format!(
                    "SELECT guid, delivery_id FROM recovery_requests WHERE source = $1
                       AND (outcome IN ('failed', 'asking')
                            OR (outcome = 'asked' AND requested_at_ms < $2))
                     ORDER BY {OLDEST_FIRST}"
                ),
                &[&source, &reask_before_ms],
            )
            .await
            .map_err(write_err)?;
        tx.commit().await.map_err(write_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn claim(
        &self,
        source: &str,
        guid: &str,
        log_id: i64,
        now_ms: i64,
        reask_before_ms: i64,
    ) -> Result<bool, StoreError> {
        let client = self.client("claim").await?;
        let n = client
            .execute(
                &client.prepare_cached("INSERT INTO recovery_requests (source, guid, delivery_id, requested_at_ms, outcome)
                 VALUES ($1, $2, $3, $4, 'asking')
                 ON CONFLICT (source, guid) DO UPDATE SET
                     delivery_id = excluded.delivery_id,
                     requested_at_ms = excluded.requested_at_ms,
                     outcome = 'asking', status_code = NULL
                 WHERE recovery_requests.outcome IN ('found', 'failed', 'asking')
                    OR (recovery_requests.outcome = 'asked'
                        AND recovery_requests.requested_at_ms < $5)").await.map_err(write_err)?,
                &[&source, &guid, &log_id, &now_ms, &reask_before_ms],
            )
            .await
            .map_err(write_err)?;
        Ok(n == 1)
    }

    async fn settle(
        &self,
        source: &str,
        guid: &str,
        status: Option<u16>,
    ) -> Result<(), StoreError> {
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        let client = self.client("settle").await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "UPDATE recovery_requests SET outcome = $3, status_code = $4
                 WHERE source = $1 AND guid = $2",
                    )
                    .await
                    .map_err(write_err)?,
                &[
                    &source,
                    &guid,
                    &if ok { "asked" } else { "failed" },
                    &status.map(i32::from),
                ],
            )
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn trigger(&self, since_ms: Option<i64>, now_ms: i64) -> Result<i64, StoreError> {
        let client = self.client("trigger").await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached(
                        "INSERT INTO recovery_triggers (since_ms, created_at_ms) VALUES ($1, $2)
                 RETURNING id",
                    )
                    .await
                    .map_err(write_err)?,
                &[&since_ms, &now_ms],
            )
            .await
            .map_err(write_err)?;
        Ok(row.get(0))
    }

    async fn take_trigger(&self, now_ms: i64) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        let client = self.client("take_trigger").await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "UPDATE recovery_triggers t SET taken_at_ms = $1
                 FROM (SELECT id FROM recovery_triggers WHERE taken_at_ms IS NULL
                       ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) next
                 WHERE t.id = next.id RETURNING t.id, t.since_ms",
                    )
                    .await
                    .map_err(write_err)?,
                &[&now_ms],
            )
            .await
            .map_err(write_err)?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    async fn pending_trigger(&self) -> Result<bool, StoreError> {
        let client = self.client("pending_trigger").await?;
        let row = client
            .query_one(
                &client
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM recovery_triggers WHERE taken_at_ms IS NULL)",
                    )
                    .await
                    .map_err(read_err)?,
                &[],
            )
            .await
            .map_err(read_err)?;
        Ok(row.get(0))
    }

    async fn trigger_taken(&self, id: i64) -> Result<Option<i64>, StoreError> {
        let client = self.client("trigger_taken").await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached("SELECT taken_at_ms FROM recovery_triggers WHERE id = $1")
                    .await
                    .map_err(read_err)?,
                &[&id],
            )
            .await
            .map_err(read_err)?;
        Ok(row.and_then(|r| r.get(0)))
    }

    async fn recovery_status(&self) -> Result<Vec<SourceStatus>, StoreError> {
        let client = self.client("recovery_status").await?;
        let latest = walks_where(
            &client,
            "w WHERE id = (SELECT MAX(id) FROM recovery_walks WHERE source = w.source)
             ORDER BY source",
            &[],
        )
        .await?;
        let mut out = Vec::new();
        for w in latest {
            let last_complete_at_ms: Option<i64> = client
                .query_one(
                    &client
                        .prepare_cached(
                            "SELECT MAX(finished_at_ms) FROM recovery_walks
                     WHERE source = $1 AND state = 'complete'",
                        )
                        .await
                        .map_err(read_err)?,
                    &[&w.source],
                )
                .await
                .map_err(read_err)?
                .get(0);
            let requests: std::collections::BTreeMap<String, i64> = client
                .query(
                    &client
                        .prepare_cached(
                            "SELECT outcome, COUNT(*) FROM recovery_requests WHERE source = $1
                     GROUP BY outcome",
                        )
                        .await
                        .map_err(read_err)?,
                    &[&w.source],
                )
                .await
                .map_err(read_err)?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            out.push(SourceStatus::new(w, last_complete_at_ms, requests));
        }
        Ok(out)
    }

    async fn last_complete(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let client = self.client("last_complete").await?;
        let rows = client
            .query(
                &client.prepare_cached("SELECT source, MAX(finished_at_ms) FROM recovery_walks WHERE state = 'complete'
                 GROUP BY source").await.map_err(read_err)?,
                &[],
            )
            .await
            .map_err(read_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn walks(&self, limit: usize) -> Result<Vec<Walk>, StoreError> {
        let client = self.client("walks").await?;
        walks_where(&client, "ORDER BY id DESC LIMIT $1", &[&(limit as i64)]).await
    }

    async fn seen(&self, source: &str, entries: Vec<(String, i64)>) -> Result<(), StoreError> {
        let mut client = self.client("seen").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO recovery_seen (source, guid, delivered_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (source, guid) DO UPDATE
                 SET delivered_at_ms = LEAST(recovery_seen.delivered_at_ms, excluded.delivered_at_ms)",
            )
            .await
            .map_err(write_err)?;
        for (guid, at) in &entries {
            tx.execute(&insert, &[&source, guid, at])
                .await
                .map_err(write_err)?;
        }
        tx.commit().await.map_err(write_err)
    }

    async fn completeness(&self, since_ms: i64) -> Result<Vec<Completeness>, StoreError> {
        let client = self.client("completeness").await?;
        let seen = client
            .query(
                "SELECT source, COUNT(*) FROM recovery_seen WHERE delivered_at_ms >= $1
                 GROUP BY source",
                &[&since_ms],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let found = client
            .query(
                "SELECT r.source, r.delivered_at_ms,
                        EXISTS (SELECT 1 FROM deliveries d WHERE d.guid = r.guid)
                 FROM recovery_requests r WHERE r.delivered_at_ms >= $1",
                &[&since_ms],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        Ok(Completeness::tally(seen, found))
    }
}
