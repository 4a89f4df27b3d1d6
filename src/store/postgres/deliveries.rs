//! The journal of deliveries on PostgreSQL: appends are group-committed by
//! one writer task per replica (many deliveries, one transaction, one
//! fsync); reads go through the pool.

use std::collections::{BTreeMap, HashMap, HashSet};
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
/// Group commits in flight at once per replica, each on its own
/// connection: while one waits on the server's flush (and, against a
/// database on another machine, on the network), the next batch forms
/// and commits. Safe for the reason several replicas are: numbers come
/// from the partition row's lock, and an ack only after its commit.
const WRITERS: usize = 2;

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
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..WRITERS {
        tokio::spawn(writer(
            pool.clone(),
            rx.clone(),
            metrics.clone(),
            writable.clone(),
            wake.clone(),
        ));
    }
    tx
}

async fn writer(
    pool: Pool,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Append>>>,
    metrics: JournalMetrics,
    writable: Arc<AtomicBool>,
    wake: mpsc::UnboundedSender<WorkNotice>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // One writer takes what is queued while the other commits its batch.
    while rx.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
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

/// One transaction for the batch, in a fixed number of statements
/// whatever its size (each takes the whole batch as arrays, prepared once
/// per connection): a round trip per delivery per table would cap a
/// replica at a few hundred deliveries per second. Partition rows are
/// locked in key order, so replicas (and this replica's writers) cannot
/// deadlock on them; the roll-ups, locked last, in key order too.
async fn commit(pool: &Pool, batch: &[Append]) -> Result<Vec<Appended>, PgError> {
    let meta = |i: usize| &batch[i].delivery.meta;
    // Arrival order within each partition: the order of its numbers.
    let mut arrival: Vec<usize> = (0..batch.len()).collect();
    arrival.sort_by(|&a, &b| {
        meta(a)
            .partition_key
            .cmp(&meta(b).partition_key)
            .then(a.cmp(&b))
    });
    // How many numbers each partition takes (a duplicate takes one too:
    // a gap; order needs only that numbers rise in commit order, which
    // the partition row's lock gives).
    let mut wanted: Vec<(&str, i64)> = Vec::new();
    for &i in &arrival {
        let p = meta(i).partition_key.as_str();
        match wanted.last_mut() {
            Some((last, n)) if *last == p => *n += 1,
            _ => wanted.push((p, 1)),
        }
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let keys: Vec<&str> = wanted.iter().map(|w| w.0).collect();
    let counts: Vec<i64> = wanted.iter().map(|w| w.1).collect();
    let taken = tx
        .query(
            &tx.prepare_cached(
                "INSERT INTO partition_seqs (partition_key, last_seq)
                 SELECT k, n FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS t(k, n, o)
                 ORDER BY o
                 ON CONFLICT (partition_key)
                     DO UPDATE SET last_seq = partition_seqs.last_seq + excluded.last_seq
                 RETURNING partition_key, last_seq",
            )
            .await?,
            &[&keys, &counts],
        )
        .await?;
    let mut next: HashMap<String, i64> = HashMap::with_capacity(taken.len());
    for r in &taken {
        let key: String = r.get(0);
        let last: i64 = r.get(1);
        let n = wanted.iter().find(|w| w.0 == key).map_or(0, |w| w.1);
        next.insert(key, last - n + 1);
    }
    let mut seq = vec![0i64; batch.len()];
    for &i in &arrival {
        let n = next
            .get_mut(&meta(i).partition_key)
            .expect("every partition got numbers");
        seq[i] = *n;
        *n += 1;
    }
    // The deliveries; a duplicate (journaled before, or earlier in this
    // batch) is skipped by the unique index. Inserted in key order, not
    // arrival order (their numbers say that), so two batches holding the
    // same two deliveries wait on each other's index entries in one order
    // and cannot deadlock.
    let mut order = arrival.clone();
    order.sort_by(|&a, &b| {
        let key = |i: usize| (&meta(i).partition_key, &meta(i).hook_id, &meta(i).guid);
        key(a).cmp(&key(b)).then(a.cmp(&b))
    });
    let text = |f: &dyn Fn(&DeliveryMeta) -> &str| -> Vec<&str> {
        order.iter().map(|&i| f(meta(i))).collect()
    };
    let maybe = |f: &dyn Fn(&DeliveryMeta) -> Option<&str>| -> Vec<Option<&str>> {
        order.iter().map(|&i| f(meta(i))).collect()
    };
    let installation: Vec<Option<i64>> = order.iter().map(|&i| meta(i).installation_id).collect();
    let received: Vec<i64> = order.iter().map(|&i| meta(i).received_at_ms).collect();
    let size: Vec<i64> = order
        .iter()
        .map(|&i| batch[i].delivery.body.len() as i64)
        .collect();
    let seqs: Vec<i64> = order.iter().map(|&i| seq[i]).collect();
    let inserted = tx
        .query(
            &tx.prepare_cached(
                "INSERT INTO deliveries (hook_id, guid, event, action, installation_id,
                     target_type, target_id, repository, owner, partition_key, received_at_ms,
                     body_size, content_kind, parse_status, parse_error, seq, recovered)
                 SELECT d.hook, d.guid, d.event, d.action, d.installation, d.target_type,
                        d.target_id, d.repository, d.owner, d.partition, d.received, d.size,
                        d.kind, d.status, d.error, d.seq,
                        EXISTS (SELECT 1 FROM recovery_requests r
                                WHERE r.guid = d.guid AND r.outcome IN ('asking', 'asked'))
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                             $11::bigint[], $12::bigint[], $13::text[], $14::text[],
                             $15::text[], $16::bigint[])
                      WITH ORDINALITY AS d(hook, guid, event, action, installation,
                                           target_type, target_id, repository, owner,
                                           partition, received, size, kind, status, error,
                                           seq, o)
                 ORDER BY d.o
                 ON CONFLICT (hook_id, guid) DO NOTHING
                 RETURNING id, hook_id, guid",
            )
            .await?,
            &[
                &text(&|m| &m.hook_id),
                &text(&|m| &m.guid),
                &text(&|m| &m.event),
                &maybe(&|m| m.action.as_deref()),
                &installation,
                &maybe(&|m| m.target_type.as_deref()),
                &maybe(&|m| m.target_id.as_deref()),
                &maybe(&|m| m.repository.as_deref()),
                &maybe(&|m| m.owner.as_deref()),
                &text(&|m| &m.partition_key),
                &received,
                &size,
                &text(&|m| m.content_kind.as_str()),
                &text(&|m| m.parse_status.as_str()),
                &maybe(&|m| m.parse_status.error()),
                &seqs,
            ],
        )
        .await?;
    let mut ids: HashMap<(String, String), i64> = inserted
        .iter()
        .map(|r| ((r.get(1), r.get(2)), r.get(0)))
        .collect();
    let mut out = vec![Appended::Duplicate; batch.len()];
    let (mut p_id, mut p_headers, mut p_body) = (Vec::new(), Vec::new(), Vec::new());
    let (mut j_id, mut j_sink, mut j_partition, mut j_seq, mut j_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut minutes: BTreeMap<i64, i64> = BTreeMap::new();
    let mut hours: BTreeMap<i64, i64> = BTreeMap::new();
    let mut days: BTreeMap<(i64, String, &str), i64> = BTreeMap::new();
    for &i in &order {
        let d = &batch[i].delivery;
        let m = &d.meta;
        // The first of two equal keys in the batch took the row.
        let Some(id) = ids.remove(&(m.hook_id.clone(), m.guid.clone())) else {
            continue;
        };
        p_id.push(id);
        p_headers.push(&d.headers[..]);
        p_body.push(&d.body[..]);
        for sink in &d.sinks {
            j_id.push(id);
            j_sink.push(sink.as_str());
            j_partition.push(m.partition_key.as_str());
            j_seq.push(seq[i]);
            j_at.push(m.received_at_ms);
        }
        *minutes.entry(m.received_at_ms / 60_000).or_default() += 1;
        *hours.entry(m.received_at_ms / 3_600_000).or_default() += 1;
        let owner = m.owner.clone().unwrap_or_default();
        *days
            .entry((m.received_at_ms / 86_400_000, owner, d.event_label))
            .or_default() += 1;
        out[i] = Appended::Queued { id };
    }
    let mut pairs: Vec<(&str, &str)> = j_sink
        .iter()
        .copied()
        .zip(j_partition.iter().copied())
        .collect();
    pairs.sort();
    pairs.dedup();
    let (sinks, parts): (Vec<&str>, Vec<&str>) = pairs.into_iter().unzip();
    let (m, m_n): (Vec<i64>, Vec<i64>) = minutes.into_iter().unzip();
    let (h, h_n): (Vec<i64>, Vec<i64>) = hours.into_iter().unzip();
    let (mut day, mut owner, mut event, mut d_n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((d, o, e), c) in days {
        day.push(d);
        owner.push(o);
        event.push(e);
        d_n.push(c);
    }
    // Sent together (tokio-postgres pipelines one connection's concurrent
    // statements): none needs another's answer. Each is skipped when it
    // has nothing to write.
    futures_util::future::try_join_all([
        run_unless(
            &tx,
            "INSERT INTO delivery_payloads (delivery_id, headers, body)
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])",
            &[&p_id, &p_headers, &p_body],
            p_id.is_empty(),
        ),
        run_unless(
            &tx,
            "INSERT INTO jobs (delivery_id, sink, partition_key, seq, state, attempts,
                               next_at_ms, updated_at_ms)
             SELECT id, sink, p, seq, 'pending', 0, at, at
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
                  AS j(id, sink, p, seq, at)",
            &[&j_id, &j_sink, &j_partition, &j_seq, &j_at],
            j_id.is_empty(),
        ),
        run_unless(
            &tx,
            "INSERT INTO partitions (sink, partition_key)
             SELECT s, p FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(s, p, o)
             ORDER BY o
             ON CONFLICT DO NOTHING",
            &[&sinks, &parts],
            sinks.is_empty(),
        ),
        run_unless(
            &tx,
            "INSERT INTO volume_minutes (minute, n)
             SELECT * FROM unnest($1::bigint[], $2::bigint[])
             ON CONFLICT (minute) DO UPDATE SET n = volume_minutes.n + excluded.n",
            &[&m, &m_n],
            m.is_empty(),
        ),
        run_unless(
            &tx,
            "INSERT INTO volume_hours (hour, n)
             SELECT * FROM unnest($1::bigint[], $2::bigint[])
             ON CONFLICT (hour) DO UPDATE SET n = volume_hours.n + excluded.n",
            &[&h, &h_n],
            h.is_empty(),
        ),
        run_unless(
            &tx,
            "INSERT INTO volume_days (day, owner, event, n)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])
             ON CONFLICT (day, owner, event) DO UPDATE SET n = volume_days.n + excluded.n",
            &[&day, &owner, &event, &d_n],
            day.is_empty(),
        ),
    ])
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// Runs `sql` unless there is nothing to write.
async fn run_unless(
    tx: &deadpool_postgres::Transaction<'_>,
    sql: &'static str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    skip: bool,
) -> Result<u64, tokio_postgres::Error> {
    if skip {
        return Ok(0);
    }
    tx.execute(&tx.prepare_cached(sql).await?, params).await
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
        // What recovery saw goes with the dedupe keys: outside GitHub's
        // redelivery window.
        tx.execute(
            "DELETE FROM recovery_seen WHERE delivered_at_ms < $1",
            &[&keys_before_ms.min(bodies_before_ms)],
        )
        .await
        .map_err(write_err)?;
        // Bodies only between the two horizons (older ones go with their
        // rows below), newest first: older rows may have lost theirs
        // already, and a scan from the oldest would step over all of them.
        let bodies = tx
            .execute(
                &tx.prepare_cached(
                    "DELETE FROM delivery_payloads WHERE delivery_id IN (
                     SELECT p.delivery_id FROM delivery_payloads p
                     JOIN deliveries d ON d.id = p.delivery_id
                     WHERE d.received_at_ms < $1 AND d.received_at_ms >= $3
                       AND NOT EXISTS (SELECT 1 FROM jobs j
                                       WHERE j.delivery_id = d.id AND j.state <> 'done')
                     ORDER BY p.delivery_id DESC LIMIT $2)",
                )
                .await
                .map_err(write_err)?,
                &[
                    &bodies_before_ms,
                    &(limit as i64),
                    &keys_before_ms.min(bodies_before_ms),
                ],
            )
            .await
            .map_err(write_err)?;
        let deliveries = tx
            .execute(
                &tx.prepare_cached(
                    "DELETE FROM deliveries WHERE id IN (
                     SELECT d.id FROM deliveries d
                     WHERE d.received_at_ms < $1
                       AND NOT EXISTS (SELECT 1 FROM jobs j
                                       WHERE j.delivery_id = d.id AND j.state <> 'done')
                     ORDER BY d.id LIMIT $2)",
                )
                .await
                .map_err(write_err)?,
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
                &client
                    .prepare_cached(
                        "SELECT p.headers, p.body, d.recovered FROM delivery_payloads p
                 JOIN deliveries d ON d.id = p.delivery_id WHERE p.delivery_id = $1",
                    )
                    .await
                    .map_err(read_err)?,
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

    async fn payloads(
        &self,
        delivery_ids: Vec<i64>,
        max_bytes: u64,
    ) -> Result<Vec<(i64, Option<Payload>)>, StoreError> {
        let client = self.client("payloads").await?;
        // Sizes first, so only what fits the budget crosses the wire.
        let sizes: std::collections::HashMap<i64, i64> = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT delivery_id, octet_length(body)::BIGINT FROM delivery_payloads
                 WHERE delivery_id = ANY($1)",
                    )
                    .await
                    .map_err(read_err)?,
                &[&delivery_ids],
            )
            .await
            .map_err(read_err)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut wanted = vec![];
        let mut bytes = 0u64;
        for &id in &delivery_ids {
            if bytes > max_bytes {
                break;
            }
            bytes += sizes.get(&id).copied().unwrap_or(0) as u64;
            wanted.push(id);
        }
        let mut found: std::collections::HashMap<i64, Payload> = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT p.delivery_id, p.headers, p.body, d.recovered FROM delivery_payloads p
                 JOIN deliveries d ON d.id = p.delivery_id WHERE p.delivery_id = ANY($1)",
                    )
                    .await
                    .map_err(read_err)?,
                &[&wanted],
            )
            .await
            .map_err(read_err)?
            .into_iter()
            .map(|r| {
                (
                    r.get(0),
                    Payload {
                        headers: r.get(1),
                        body: r.get(2),
                        recovered: r.get(3),
                    },
                )
            })
            .collect();
        Ok(wanted
            .into_iter()
            .map(|id| (id, found.remove(&id)))
            .collect())
    }

    /// Any hook: GitHub sends one GUID to every hook subscribed to an
    /// event.
    async fn journaled(&self, guids: Vec<String>) -> Result<HashSet<String>, StoreError> {
        let client = self.client("journaled").await?;
        let rows = client
            .query(
                &client
                    .prepare_cached("SELECT DISTINCT guid FROM deliveries WHERE guid = ANY($1)")
                    .await
                    .map_err(read_err)?,
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
                &client
                    .prepare_cached(
                        "SELECT seq, guid FROM deliveries WHERE partition_key = $1 ORDER BY seq",
                    )
                    .await
                    .map_err(read_err)?,
                &[&partition],
            )
            .await
            .map_err(read_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}
