//! The journal of deliveries on PostgreSQL: appends are group-committed by
//! one writer task per replica (many deliveries, one transaction, one
//! fsync); reads go through the pool.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;

use super::{PgError, Postgres, read_err, write_err};
use crate::journal::model::{
    Appended, ContentKind, DeliveryMeta, DeliveryRow, NewDelivery, ParseStatus,
};
use crate::store::metrics::JournalMetrics;
use crate::store::{Payload, Pruned, StoreError, WorkNotice};

/// Appends one transaction takes at most.
const MAX_BATCH: usize = 256;
/// Appends waiting for the writer; past it, ingest waits for room.
const QUEUE: usize = 4_096;
/// A batch that deadlocks with another replica's, or fails to serialize,
/// is tried again this many times before its deliveries are refused.
const TRIES: usize = 3;

pub(super) struct Append {
    delivery: NewDelivery,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// Starts the writer task; appends are sent to it.
pub(super) fn start_writer(
    pool: Pool,
    metrics: JournalMetrics,
    writable: Arc<AtomicBool>,
    wake: mpsc::UnboundedSender<WorkNotice>,
) -> mpsc::Sender<Append> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(writer(pool, rx, metrics, writable, wake));
    tx
}

async fn writer(
    pool: Pool,
    mut rx: mpsc::Receiver<Append>,
    metrics: JournalMetrics,
    writable: Arc<AtomicBool>,
    wake: mpsc::UnboundedSender<WorkNotice>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = Instant::now();
        let mut outcome = Err(PgError::Pool("not tried".into()));
        for _ in 0..TRIES {
            outcome = commit(&pool, &batch).await;
            match &outcome {
                Err(PgError::Db(e))
                    if matches!(
                        e.code(),
                        Some(&SqlState::T_R_DEADLOCK_DETECTED)
                            | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                    ) =>
                {
                    continue;
                }
                _ => break,
            }
        }
        match outcome {
            Ok(appended) => {
                writable.store(true, Ordering::SeqCst);
                metrics.observe_commit(batch.len(), started.elapsed());
                let mut work: Vec<WorkNotice> = batch
                    .iter()
                    .zip(&appended)
                    .filter(|(_, r)| matches!(r, Appended::Queued { .. }))
                    .flat_map(|(a, _)| {
                        let p = &a.delivery.meta.partition_key;
                        a.delivery.sinks.iter().map(|s| (s.clone(), p.clone()))
                    })
                    .collect();
                work.sort();
                work.dedup();
                for (a, result) in batch.drain(..).zip(appended) {
                    let _ = a.reply.send(Ok(result));
                }
                // This replica's scheduler at once; the others through
                // NOTIFY, after the commit.
                for w in &work {
                    let _ = wake.send(w.clone());
                }
                // Off the writer's path: the next batch need not wait.
                tokio::spawn(announce(pool.clone(), work));
            }
            Err(e) => {
                // Nothing was acknowledged: a failed commit, or one whose
                // outcome is unknown (the connection dropped at COMMIT),
                // answers 503 and GitHub delivers again.
                writable.store(false, Ordering::SeqCst);
                metrics.commit_failures.inc();
                tracing::warn!(error = %e, deliveries = batch.len(), "PostgreSQL commit failed");
                for a in batch.drain(..) {
                    let _ = a.reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
    }
}

/// NOTIFY every replica of new work; lost notifications are caught by
/// the listeners' rescans, so a failure here is only logged.
pub(super) async fn announce(pool: Pool, work: Vec<WorkNotice>) {
    if work.is_empty() {
        return;
    }
    let Ok(client) = pool.get().await else {
        return;
    };
    for payload in super::notices::payloads(&work) {
        if let Err(e) = client
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&super::notices::CHANNEL, &payload],
            )
            .await
        {
            tracing::warn!(error = %e, "NOTIFY of new work failed");
            return;
        }
    }
}

/// One transaction for the batch. Deliveries are taken in partition order
/// (received order within each), so replicas lock partition rows in one
/// order and cannot deadlock on them; the roll-ups, locked last, in key
/// order too.
async fn commit(pool: &Pool, batch: &[Append]) -> Result<Vec<Appended>, PgError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let next_seq = tx
        .prepare_cached(
            "INSERT INTO partition_seqs (partition_key, last_seq) VALUES ($1, 1)
             ON CONFLICT (partition_key) DO UPDATE SET last_seq = partition_seqs.last_seq + 1
             RETURNING last_seq",
        )
        .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (hook_id, guid, event, action, installation_id, target_type,
                 target_id, repository, owner, partition_key, received_at_ms, body_size,
                 content_kind, parse_status, parse_error, seq, recovered)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     EXISTS (SELECT 1 FROM recovery_requests
                             WHERE guid = $2 AND outcome IN ('asking', 'asked')))
             ON CONFLICT (hook_id, guid) DO NOTHING
             RETURNING id",
        )
        .await?;
    let payload = tx
        .prepare_cached(
            "INSERT INTO delivery_payloads (delivery_id, headers, body) VALUES ($1, $2, $3)",
        )
        .await?;
    let job = tx
        .prepare_cached(
            "INSERT INTO jobs (delivery_id, sink, partition_key, seq, state, attempts, next_at_ms,
                               updated_at_ms)
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
        )
        .await?;
    let partition = tx
        .prepare_cached(
            "INSERT INTO partitions (sink, partition_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .await?;
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| &batch[i].delivery.meta.partition_key;
        key(a).cmp(key(b)).then(a.cmp(&b))
    });
    let mut out = vec![Appended::Duplicate; batch.len()];
    let mut minutes: BTreeMap<i64, i64> = BTreeMap::new();
    let mut hours: BTreeMap<i64, i64> = BTreeMap::new();
    let mut days: BTreeMap<(i64, String, &str), i64> = BTreeMap::new();
    for i in order {
        let d = &batch[i].delivery;
        let m = &d.meta;
        // A duplicate still takes a number (a gap): order needs only that
        // numbers rise in commit order, which the row lock gives.
        let seq: i64 = tx.query_one(&next_seq, &[&m.partition_key]).await?.get(0);
        let row = tx
            .query_opt(
                &insert,
                &[
                    &m.hook_id,
                    &m.guid,
                    &m.event,
                    &m.action,
                    &m.installation_id,
                    &m.target_type,
                    &m.target_id,
                    &m.repository,
                    &m.owner,
                    &m.partition_key,
                    &m.received_at_ms,
                    &(d.body.len() as i64),
                    &m.content_kind.as_str(),
                    &m.parse_status.as_str(),
                    &m.parse_status.error(),
                    &seq,
                ],
            )
            .await?;
        let Some(row) = row else {
            continue;
        };
        let id: i64 = row.get(0);
        tx.execute(&payload, &[&id, &d.headers, &&d.body[..]])
            .await?;
        for sink in &d.sinks {
            tx.execute(
                &job,
                &[&id, sink, &m.partition_key, &seq, &m.received_at_ms],
            )
            .await?;
            tx.execute(&partition, &[sink, &m.partition_key]).await?;
        }
        *minutes.entry(m.received_at_ms / 60_000).or_default() += 1;
        *hours.entry(m.received_at_ms / 3_600_000).or_default() += 1;
        let owner = m.owner.clone().unwrap_or_default();
        *days
            .entry((m.received_at_ms / 86_400_000, owner, d.event_label))
            .or_default() += 1;
        out[i] = Appended::Queued { id };
    }
    for (minute, n) in minutes {
        tx.execute(
            "INSERT INTO volume_minutes (minute, n) VALUES ($1, $2)
             ON CONFLICT (minute) DO UPDATE SET n = volume_minutes.n + excluded.n",
            &[&minute, &n],
        )
        .await?;
    }
    for (hour, n) in hours {
        tx.execute(
            "INSERT INTO volume_hours (hour, n) VALUES ($1, $2)
             ON CONFLICT (hour) DO UPDATE SET n = volume_hours.n + excluded.n",
            &[&hour, &n],
        )
        .await?;
    }
    for ((day, owner, event), n) in days {
        tx.execute(
            "INSERT INTO volume_days (day, owner, event, n) VALUES ($1, $2, $3, $4)
             ON CONFLICT (day, owner, event) DO UPDATE SET n = volume_days.n + excluded.n",
            &[&day, &owner, &event, &n],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(out)
}

const COLUMNS: &str = "id, hook_id, guid, event, action, installation_id, target_type, target_id,
    repository, owner, partition_key, received_at_ms, body_size, content_kind, parse_status,
    parse_error";

pub(super) fn row_to_delivery(r: &tokio_postgres::Row) -> Result<DeliveryRow, StoreError> {
    let kind: String = r.get(13);
    let status: String = r.get(14);
    Ok(DeliveryRow {
        id: r.get(0),
        meta: DeliveryMeta {
            hook_id: r.get(1),
            guid: r.get(2),
            event: r.get(3),
            action: r.get(4),
            installation_id: r.get(5),
            target_type: r.get(6),
            target_id: r.get(7),
            repository: r.get(8),
            owner: r.get(9),
            partition_key: r.get(10),
            received_at_ms: r.get(11),
            content_kind: ContentKind::parse(&kind)
                .ok_or_else(|| StoreError::Read(format!("unknown content_kind {kind:?}")))?,
            parse_status: ParseStatus::from_columns(&status, r.get(15))
                .ok_or_else(|| StoreError::Read(format!("unknown parse_status {status:?}")))?,
        },
        body_size: r.get(12),
    })
}

#[async_trait]
impl crate::store::Deliveries for Postgres {
    async fn append(&self, delivery: NewDelivery) -> Result<Appended, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let (reply, answer) = oneshot::channel();
        let sent = self.appends.send(Append { delivery, reply }).await;
        let result = match sent {
            Ok(()) => answer.await.unwrap_or(Err(StoreError::Closed)),
            Err(_) => Err(StoreError::Closed),
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    async fn prune(
        &self,
        bodies_before_ms: i64,
        keys_before_ms: i64,
        limit: usize,
    ) -> Result<Pruned, StoreError> {
        let mut client = self.client("prune").await?;
        let tx = client.transaction().await.map_err(write_err)?;
        // The admin UI's roll-ups age out with the bodies.
        for sql in [
            "DELETE FROM volume_minutes WHERE minute < $1::bigint / 60000",
            "DELETE FROM volume_hours WHERE hour < $1::bigint / 3600000",
            "DELETE FROM volume_days WHERE day < $1::bigint / 86400000",
            "DELETE FROM attempt_hours WHERE hour < $1::bigint / 3600000",
        ] {
            tx.execute(sql, &[&bodies_before_ms])
                .await
                .map_err(write_err)?;
        }
        let bodies = tx
            .execute(
                "DELETE FROM delivery_payloads WHERE delivery_id IN (
                     SELECT p.delivery_id FROM delivery_payloads p
                     JOIN deliveries d ON d.id = p.delivery_id
                     WHERE d.received_at_ms < $1
                       AND NOT EXISTS (SELECT 1 FROM jobs j
                                       WHERE j.delivery_id = d.id AND j.state <> 'done')
                     ORDER BY p.delivery_id LIMIT $2)",
                &[&bodies_before_ms, &(limit as i64)],
            )
            .await
            .map_err(write_err)?;
        let deliveries = tx
            .execute(
                "DELETE FROM deliveries WHERE id IN (
                     SELECT d.id FROM deliveries d
                     WHERE d.received_at_ms < $1
                       AND NOT EXISTS (SELECT 1 FROM jobs j
                                       WHERE j.delivery_id = d.id AND j.state <> 'done')
                     ORDER BY d.id LIMIT $2)",
                &[&keys_before_ms.min(bodies_before_ms), &(limit as i64)],
            )
            .await
            .map_err(write_err)?;
        tx.commit().await.map_err(write_err)?;
        Ok(Pruned {
            bodies: bodies as usize,
            deliveries: deliveries as usize,
        })
    }

    async fn delivery(&self, hook_id: &str, guid: &str) -> Result<Option<DeliveryRow>, StoreError> {
        let client = self.client("delivery").await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM deliveries WHERE hook_id = $1 AND guid = $2"),
                &[&hook_id, &guid],
            )
            .await
            .map_err(read_err)?;
        row.as_ref().map(row_to_delivery).transpose()
    }

    async fn payload(&self, delivery_id: i64) -> Result<Option<Payload>, StoreError> {
        let client = self.client("payload").await?;
        let row = client
            .query_opt(
                "SELECT p.headers, p.body, d.recovered FROM delivery_payloads p
                 JOIN deliveries d ON d.id = p.delivery_id WHERE p.delivery_id = $1",
                &[&delivery_id],
            )
            .await
            .map_err(read_err)?;
        Ok(row.map(|r| Payload {
            headers: r.get(0),
            body: r.get(1),
            recovered: r.get(2),
        }))
    }

    /// Any hook: GitHub sends one GUID to every hook subscribed to an
    /// event.
    async fn journaled(&self, guids: Vec<String>) -> Result<HashSet<String>, StoreError> {
        let client = self.client("journaled").await?;
        let rows = client
            .query(
                "SELECT DISTINCT guid FROM deliveries WHERE guid = ANY($1)",
                &[&guids],
            )
            .await
            .map_err(read_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

impl Postgres {
    /// The partition's deliveries in received order (its sequence
    /// numbers), as (seq, GUID): what the scheduler will run them by.
    pub async fn partition_order(&self, partition: &str) -> Result<Vec<(i64, String)>, StoreError> {
        let client = self.client("partition_order").await?;
        let rows = client
            .query(
                "SELECT seq, guid FROM deliveries WHERE partition_key = $1 ORDER BY seq",
                &[&partition],
            )
            .await
            .map_err(read_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
