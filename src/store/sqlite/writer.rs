//! The one writer. It owns the only read-write connection and commits many
//! operations per transaction (group commit): while one fsync is under way,
//! new requests queue up and all of them go into the next transaction, so
//! durable acks are not capped by the disk's fsync rate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::guard::Guard;
use crate::journal::model::{Appended, NewDelivery};
use crate::store::metrics::JournalMetrics;
use crate::store::{Pruned, StoreError, WorkNotice};

/// At most this many operations in one transaction, so one commit's latency
/// stays bounded when a large backlog has built up.
const MAX_BATCH_OPS: usize = 2048;
/// And at most this many body bytes, so a burst of large payloads does not
/// pile up in memory waiting for one giant commit.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Bodies larger than this are written through SQLite's incremental blob API,
/// which avoids a transient copy of the whole payload.
const STREAM_BLOB_ABOVE: usize = 1024 * 1024;
/// The WAL is checkpointed by a background thread; if it still outgrows its
/// limit (a long busy period, a long read), the writer checkpoints it
/// between commits. Also SQLite's `journal_size_limit`: a WAL that starts
/// over is cut back to it.
pub const DEFAULT_WAL_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(super) enum Command {
    Append(Box<NewDelivery>, Reply<Appended>),
    /// A tiny write that tells whether the journal is writable again.
    Probe(Reply<()>),
    /// Retention (see `Deliveries::prune`).
    Prune {
        bodies_before_ms: i64,
        keys_before_ms: i64,
        limit: usize,
        reply: Reply<Pruned>,
    },
    /// Any other write, run inside the next group commit (see `Journal::exec`).
    Exec(Box<dyn Op>),
}

/// A write whose SQL lives with its owner (the scheduler, say); its result
/// is handed back only after the transaction has committed.
pub(super) trait Op: Send {
    fn apply(&mut self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()>;
    fn finish(self: Box<Self>, result: Result<(), StoreError>);
}

pub(super) struct ExecOp<T, F> {
    pub f: Option<F>,
    pub value: Option<T>,
    pub reply: Option<Reply<T>>,
}

impl<T, F> Op for ExecOp<T, F>
where
    T: Send,
    F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send,
{
    fn apply(&mut self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        let f = self.f.take().expect("an op is applied once");
        self.value = Some(f(tx)?);
        Ok(())
    }

    fn finish(mut self: Box<Self>, result: Result<(), StoreError>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result.map(|()| self.value.take().expect("applied before commit")));
        }
    }
}

impl Command {
    fn body_len(&self) -> usize {
        match self {
            Command::Append(d, _) => d.body.len(),
            _ => 0,
        }
    }
}

pub(super) struct Writer {
    pub conn: Connection,
    pub rx: mpsc::Receiver<Command>,
    pub guard: Arc<Guard>,
    pub metrics: JournalMetrics,
    pub wal_path: PathBuf,
    pub notices: mpsc::UnboundedSender<WorkNotice>,
    /// Where the WAL is cut back, and whether it is checkpointed whole at
    /// the end; None for an operator command's writer beside a running
    /// server, whose WAL is the server's to manage.
    pub wal_limit: Option<u64>,
    /// The WAL is over its limit and not yet back under it (said once).
    pub wal_over: bool,
}

/// Why a batch was not acknowledged.
enum Failed {
    Sqlite(rusqlite::Error),
    /// Committed, but into a file the journal's path no longer names.
    Lost,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Sqlite(e) => e.fmt(f),
            Failed::Lost => f.write_str(super::guard::Health::Lost.describe()),
        }
    }
}

impl Writer {
    /// Runs until every sender is gone, then checkpoints and returns.
    pub fn run(mut self) {
        let mut batch: Vec<Command> = Vec::with_capacity(MAX_BATCH_OPS);
        let mut commits: u64 = 0;
        while let Some(first) = self.rx.blocking_recv() {
            let mut bytes = first.body_len();
            batch.push(first);
            while batch.len() < MAX_BATCH_OPS && bytes < MAX_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(cmd) => {
                        bytes += cmd.body_len();
                        batch.push(cmd);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
            commits += 1;
            if commits.is_multiple_of(64) {
                self.limit_wal();
            }
        }
        // Leave a small, fully checkpointed file behind on a clean shutdown.
        if self.wal_limit.is_none() {
            return;
        }
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "final checkpoint failed");
        }
    }

    fn commit(&mut self, batch: &mut Vec<Command>) {
        let started = Instant::now();
        let n = batch.len();
        // A commit into a file the path no longer names (deleted while we
        // run) is durable nowhere anyone will look: answer it as failed.
        let outcome = match self.apply(batch.as_mut_slice()) {
            Ok(results) if self.guard.files_in_place() => Ok(results),
            Ok(_) => Err(Failed::Lost),
            Err(e) => Err(Failed::Sqlite(e)),
        };
        match outcome {
            Ok(results) => {
                self.metrics.observe_commit(n, started.elapsed());
                if self.guard.succeeded() {
                    tracing::info!("journal is writable again");
                }
                for (cmd, result) in batch.drain(..).zip(results) {
                    match (cmd, result) {
                        (Command::Append(d, reply), Outcome::Appended(a)) => {
                            if matches!(a, Appended::Queued { .. }) {
                                for sink in &d.sinks {
                                    let _ = self
                                        .notices
                                        .send((sink.clone(), d.meta.partition_key.clone()));
                                }
                            }
                            let _ = reply.send(Ok(a));
                        }
                        (Command::Exec(op), _) => op.finish(Ok(())),
                        (Command::Probe(reply), _) => {
                            let _ = reply.send(Ok(()));
                        }
                        (Command::Prune { reply, .. }, Outcome::Pruned(n)) => {
                            let _ = reply.send(Ok(n));
                        }
                        _ => unreachable!("one outcome per command, in order"),
                    }
                }
            }
            Err(e) => {
                // Nothing in this batch is on disk: answer every caller with
                // an error so none of them acknowledges (invariant 1).
                let was_writable = match &e {
                    Failed::Sqlite(e) => self.guard.failed(e),
                    Failed::Lost => false,
                };
                if was_writable {
                    tracing::error!(error = %e, ops = n, "journal commit failed; answering 503");
                }
                self.metrics.commit_failures.inc();
                let msg = e.to_string();
                for cmd in batch.drain(..) {
                    let err = || StoreError::Unavailable(msg.clone());
                    match cmd {
                        Command::Append(_, reply) => {
                            let _ = reply.send(Err(err()));
                        }
                        Command::Probe(reply) => {
                            let _ = reply.send(Err(err()));
                        }
                        Command::Prune { reply, .. } => {
                            let _ = reply.send(Err(err()));
                        }
                        Command::Exec(op) => op.finish(Err(err())),
                    }
                }
            }
        }
    }

    fn apply(&mut self, batch: &mut [Command]) -> rusqlite::Result<Vec<Outcome>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(batch.len());
        let mut volume = Volume::default();
        for cmd in batch.iter_mut() {
            out.push(match cmd {
                Command::Append(d, _) => {
                    let appended = insert(&tx, d)?;
                    if matches!(appended, Appended::Queued { .. }) {
                        volume.add(d);
                    }
                    Outcome::Appended(appended)
                }
                Command::Probe(_) => {
                    tx.prepare_cached(
                        "INSERT INTO journal_meta (key, value) VALUES ('probe', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute([crate::clock::now_ms().to_string()])?;
                    Outcome::Probed
                }
                // Only deliveries whose every job is done: pending work and
                // dead letters are kept until they are retried.
                Command::Prune {
                    bodies_before_ms,
                    keys_before_ms,
                    limit,
                    ..
                } => {
                    let before_ms = bodies_before_ms;
                    // The admin UI's roll-ups age out with the deliveries.
                    for sql in [
                        "DELETE FROM volume_minutes WHERE minute < ?1 / 60000",
                        "DELETE FROM volume_hours WHERE hour < ?1 / 3600000",
                        "DELETE FROM volume_days WHERE day < ?1 / 86400000",
                        "DELETE FROM attempt_hours WHERE hour < ?1 / 3600000",
                    ] {
                        tx.prepare_cached(sql)?.execute([*before_ms])?;
                    }
                    // What recovery saw goes with the dedupe keys: outside
                    // GitHub's redelivery window.
                    tx.prepare_cached("DELETE FROM recovery_seen WHERE delivered_at_ms < ?1")?
                        .execute([*keys_before_ms])?;
                    // Bodies only between the two horizons (older ones go
                    // with their rows below), newest first: older rows may
                    // have lost theirs already, and a scan from the oldest
                    // would step over all of them.
                    let bodies = tx
                        .prepare_cached(
                            "DELETE FROM delivery_payloads WHERE delivery_id IN (
                             SELECT p.delivery_id FROM delivery_payloads p
                             JOIN deliveries d ON d.id = p.delivery_id
                             WHERE d.received_at_ms < ?1 AND d.received_at_ms >= ?3
                               AND NOT EXISTS (SELECT 1 FROM jobs j
                                               WHERE j.delivery_id = d.id AND j.state != 'done')
                             ORDER BY d.received_at_ms DESC LIMIT ?2)",
                        )?
                        .execute(params![*before_ms, *limit as i64, *keys_before_ms])?;
                    let deliveries = tx
                        .prepare_cached(
                            "DELETE FROM deliveries WHERE id IN (
                             SELECT d.id FROM deliveries d WHERE d.received_at_ms < ?1
                               AND NOT EXISTS (SELECT 1 FROM jobs j
                                               WHERE j.delivery_id = d.id AND j.state != 'done')
                             ORDER BY d.received_at_ms LIMIT ?2)",
                        )?
                        .execute(params![*keys_before_ms, *limit as i64])?;
                    Outcome::Pruned(Pruned { bodies, deliveries })
                }
                Command::Exec(op) => {
                    op.apply(&tx)?;
                    Outcome::Probed
                }
            });
        }
        volume.write(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Brings a WAL past its limit back. With commits arriving all the
    /// time the background checkpointer never catches the WAL's end, so
    /// SQLite never starts it over and it only grows; a checkpoint here,
    /// between two commits, backfills it whole unless a reader still needs
    /// older frames (it never waits for one). The next commit then starts
    /// the WAL over, and `journal_size_limit` cuts the file back to the
    /// limit. Said once when it goes over, once when it is back.
    fn limit_wal(&mut self) {
        let Some(limit) = self.wal_limit else {
            return;
        };
        let size = std::fs::metadata(&self.wal_path)
            .map(|m| m.len())
            .unwrap_or(0);
        if size <= limit {
            if std::mem::take(&mut self.wal_over) {
                tracing::info!(wal_bytes = size, "the WAL is back under its limit");
            }
            return;
        }
        if !std::mem::replace(&mut self.wal_over, true) {
            tracing::warn!(
                wal_bytes = size,
                limit_bytes = limit,
                "the WAL is over its limit (a long read or a busy spell): checkpointing it from the writer; it is cut back as soon as no reader needs its older frames"
            );
        }
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::debug!(error = %e, "writer checkpoint failed");
        }
    }
}

/// Deliveries journaled per minute, per hour, and per day × owner ×
/// event, for the admin UI's charts and reports: summed over a batch and
/// written once per key in its transaction, not once per delivery.
#[derive(Default)]
struct Volume {
    minutes: BTreeMap<i64, i64>,
    hours: BTreeMap<i64, i64>,
    days: BTreeMap<(i64, String, String), i64>,
}

impl Volume {
    fn add(&mut self, d: &NewDelivery) {
        let m = &d.meta;
        let at = m.received_at_ms;
        *self.minutes.entry(at / 60_000).or_default() += 1;
        *self.hours.entry(at / 3_600_000).or_default() += 1;
        *self
            .days
            .entry((
                at / 86_400_000,
                m.owner.clone().unwrap_or_default(),
                d.event_label.to_string(),
            ))
            .or_default() += 1;
    }

    fn write(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        for (minute, n) in &self.minutes {
            tx.prepare_cached(
                "INSERT INTO volume_minutes (minute, n) VALUES (?1, ?2)
                 ON CONFLICT (minute) DO UPDATE SET n = n + excluded.n",
            )?
            .execute(params![minute, n])?;
        }
        for (hour, n) in &self.hours {
            tx.prepare_cached(
                "INSERT INTO volume_hours (hour, n) VALUES (?1, ?2)
                 ON CONFLICT (hour) DO UPDATE SET n = n + excluded.n",
            )?
            .execute(params![hour, n])?;
        }
        for ((day, owner, event), n) in &self.days {
            tx.prepare_cached(
                "INSERT INTO volume_days (day, owner, event, n) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (day, owner, event) DO UPDATE SET n = n + excluded.n",
            )?
            .execute(params![day, owner, event, n])?;
        }
        Ok(())
    }
}

enum Outcome {
    Appended(Appended),
    Probed,
    Pruned(Pruned),
}

/// Inserts one delivery unless its (hook id, GUID) is already there. Within
/// one batch the second of two identical deliveries sees the first, so
/// dedupe holds inside a transaction too. A GUID recovery asked GitHub for
/// is marked recovered.
fn insert(tx: &rusqlite::Transaction<'_>, d: &NewDelivery) -> rusqlite::Result<Appended> {
    let m = &d.meta;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO deliveries (hook_id, guid, event, action, installation_id, target_type,
                 target_id, repository, owner, partition_key, received_at_ms, body_size,
                 content_kind, parse_status, parse_error, recovered)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                     EXISTS (SELECT 1 FROM recovery_requests
                             WHERE guid = ?2 AND outcome IN ('asking', 'asked')))
             ON CONFLICT (hook_id, guid) DO NOTHING",
        )?
        .execute(params![
            m.hook_id,
            m.guid,
            m.event,
            m.action,
            m.installation_id,
            m.target_type,
            m.target_id,
            m.repository,
            m.owner,
            m.partition_key,
            m.received_at_ms,
            d.body.len() as i64,
            m.content_kind.as_str(),
            m.parse_status.as_str(),
            m.parse_status.error(),
        ])?;
    if inserted == 0 {
        return Ok(Appended::Duplicate);
    }
    let id = tx.last_insert_rowid();
    if d.body.len() > STREAM_BLOB_ABOVE {
        tx.prepare_cached(
            "INSERT INTO delivery_payloads (delivery_id, headers, body) VALUES (?1, ?2, zeroblob(?3))",
        )?
        .execute(params![id, d.headers, d.body.len() as i64])?;
        let mut blob = tx.blob_open(rusqlite::MAIN_DB, "delivery_payloads", "body", id, false)?;
        blob.write_at(&d.body, 0)?;
    } else {
        tx.prepare_cached(
            "INSERT INTO delivery_payloads (delivery_id, headers, body) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id, d.headers, &d.body[..]])?;
    }
    for sink in &d.sinks {
        fan_out(tx, id, sink, &m.partition_key, m.received_at_ms)?;
    }
    Ok(Appended::Queued { id })
}

/// Gives `sink` a pending job for a journaled delivery, due at `at_ms`,
/// and makes sure its partition has a lease row. The one way jobs are
/// made: at ingest, and by a back-fill.
pub fn fan_out(
    tx: &rusqlite::Transaction<'_>,
    delivery_id: i64,
    sink: &str,
    partition_key: &str,
    at_ms: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO jobs (delivery_id, sink, partition_key, state, attempts, next_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
    )?
    .execute(params![delivery_id, sink, partition_key, at_ms])?;
    tx.prepare_cached(
        "INSERT INTO partitions (sink, partition_key) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?
    .execute(params![sink, partition_key])?;
    Ok(())
}
