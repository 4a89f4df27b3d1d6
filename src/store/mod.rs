//! The one storage seam. Everything gatehouse keeps goes through the
//! [`Store`] handle: domain operations on domain types, one [`StoreError`].
//! No module outside `store/` names a driver, a SQL string or a table.
//!
//! A backend is a folder (`sqlite/`, `postgres/`) implementing the traits
//! below, plus one arm in [`open`]. Each operation's doc comment is its
//! contract: what it guarantees about atomicity, ordering and idempotence.
//! Every backend is held to it by the shared cases in
//! `tests/common/conformance.rs` (run by `tests/store_conformance.rs` and
//! `tests/store_postgres.rs`).
//!
//! Writes are durable when they return `Ok`: an error means nothing of
//! the operation was committed (never "maybe"), except where a method says
//! otherwise.

pub mod actions;
pub mod cache;
pub mod clients;
pub mod copy;
pub mod jobs;
pub mod metrics;
pub mod operator;
pub mod postgres;
pub mod recovery;
pub mod sessions;
mod sqlite;
pub mod views;

use std::collections::HashSet;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::journal::model::{Appended, DeliveryRow, NewDelivery};
use crate::store::metrics::JournalMetrics;

pub use sqlite::{Health, LockError};

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Sqlite(#[from] sqlite::OpenError),
    #[error(transparent)]
    Postgres(#[from] postgres::PgError),
    #[error("opening a PostgreSQL store needs a tokio runtime (call it from spawn_blocking)")]
    NoRuntime,
}

use actions::{Change, Finished, JobRow, Observation, RunRow};
use clients::{ClientRow, StoredClient, Usage};
use jobs::{After, Attempt, Backlog, Fence, Job, Lease};
use operator::{Cursor, Filter, Orphaned, Page, Requeued, RouteState, Shown};
use recovery::{Completeness, SourceStatus, Walk};
use views::{Overview, OverviewQuery, PartitionsView, Reports};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be written now (disk full, I/O error, a lost
    /// file). Nothing was committed; ingest answers 503.
    #[error("journal cannot be written: {0}")]
    Unavailable(String),
    #[error("journal is shut down")]
    Closed,
    #[error("journal read failed: {0}")]
    Read(String),
    /// The operation's input is not acceptable (an unknown job state, a
    /// name taken); nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// What the operation names does not exist (or no longer).
    #[error("{0}")]
    NotFound(String),
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Stored requests (headers and body) removed, rows kept.
    pub bodies: usize,
    /// Deliveries removed whole, dedupe key included.
    pub deliveries: usize,
}

/// A delivery's request as received: headers in wire form, raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub headers: Vec<u8>,
    pub body: Vec<u8>,
    /// GitHub redelivered it because recovery asked.
    pub recovered: bool,
}

/// New work for the scheduler: a (sink, partition) that just got a job.
pub type WorkNotice = (String, String);

/// Where the store lives. One variant per backend.
#[derive(Debug, Clone)]
pub enum Location {
    /// The embedded journal: a SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by several replicas.
    Postgres(postgres::Target),
}

/// How a store is opened by the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// A WAL past this is checkpointed by the writer and cut back to it.
    pub wal_limit_bytes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            wal_limit_bytes: sqlite::DEFAULT_WAL_LIMIT_BYTES,
        }
    }
}

/// A handle to the open store; cheap to clone. Its operations are the
/// methods of [`Backend`] and the traits it gathers.
#[derive(Clone)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// A handle on a backend opened directly (a test's PostgreSQL store).
    pub fn from_backend(backend: Arc<dyn Backend>) -> Store {
        Store(backend)
    }
}

impl Deref for Store {
    type Target = dyn Backend;
    fn deref(&self) -> &(dyn Backend + 'static) {
        &*self.0
    }
}

/// Opens the store for the server: on SQLite takes the process lock (one
/// server per file), on PostgreSQL connects its pool and LISTEN
/// connection; checks and migrates the schema, starts the writer.
/// Blocking: call it from a blocking context (for PostgreSQL, one inside
/// a tokio runtime, such as `spawn_blocking`).
pub fn open(
    location: &Location,
    metrics: JournalMetrics,
    options: Options,
) -> Result<Store, OpenError> {
    match location {
        Location::Sqlite(path) => Ok(Store(Arc::new(sqlite::Sqlite::open(
            path, metrics, options,
        )?))),
        Location::Postgres(target) => {
            let handle = tokio::runtime::Handle::try_current().map_err(|_| OpenError::NoRuntime)?;
            let pg = handle.block_on(postgres::Postgres::connect(target, metrics))?;
            Ok(Store(Arc::new(pg)))
        }
    }
}

/// Opens the store for an operator command beside a running server (or
/// none): no process lock, no migration (a schema of another version is
/// refused), but the same operations through the same writer code, so the
/// CLI has no write path of its own. Blocking.
pub fn open_beside(location: &Location) -> Result<Store, OpenError> {
    match location {
        Location::Sqlite(path) => Ok(Store(Arc::new(sqlite::Sqlite::open_beside(path)?))),
        Location::Postgres(target) => {
            let handle = tokio::runtime::Handle::try_current().map_err(|_| OpenError::NoRuntime)?;
            let pg = handle.block_on(postgres::Postgres::connect_beside(target))?;
            Ok(Store(Arc::new(pg)))
        }
    }
}

/// Where a store's schema stands against this build's migrations.
#[derive(Debug, Clone)]
pub struct SchemaPlan {
    /// The version before (0: a new store).
    pub found: u32,
    /// The version after (equal to `found` on a dry run).
    pub now: u32,
    /// This build's migrations newer than `found`: (number, name).
    pub pending: Vec<(u32, &'static str)>,
}

/// Reads the schema version of the store at `location` and, with `apply`,
/// brings it to this build's: on SQLite under the process lock (so not
/// beside a running server: `serve` migrates at start anyway), on
/// PostgreSQL under the advisory lock, beside running replicas. A store
/// from a newer release is refused. Blocking, as [`open`].
pub fn migrate(location: &Location, apply: bool) -> Result<SchemaPlan, OpenError> {
    let names = |found: u32, all: &[(u32, &'static str)]| {
        all.iter()
            .filter(|m| m.0 > found)
            .copied()
            .collect::<Vec<_>>()
    };
    match location {
        Location::Sqlite(path) => {
            let found = sqlite::Sqlite::version_of(path)?;
            let all: Vec<(u32, &'static str)> =
                sqlite::MIGRATIONS.iter().map(|m| (m.0, m.1)).collect();
            if found > sqlite::latest_version() {
                return Err(sqlite::OpenError::Schema(sqlite::SchemaError::TooNew {
                    found,
                    known: sqlite::latest_version(),
                })
                .into());
            }
            let now = if apply && found < sqlite::latest_version() {
                let store =
                    sqlite::Sqlite::open(path, JournalMetrics::unregistered(), Options::default())?;
                store.close();
                sqlite::latest_version()
            } else {
                found
            };
            Ok(SchemaPlan {
                found,
                now,
                pending: names(found, &all),
            })
        }
        Location::Postgres(target) => {
            let handle = tokio::runtime::Handle::try_current().map_err(|_| OpenError::NoRuntime)?;
            let (found, now) = handle.block_on(postgres::Postgres::migrate_only(target, apply))?;
            let all: Vec<(u32, &'static str)> = postgres::schema::MIGRATIONS
                .iter()
                .map(|m| (m.0 as u32, m.1))
                .collect();
            Ok(SchemaPlan {
                found: found as u32,
                now: now as u32,
                pending: names(found as u32, &all),
            })
        }
    }
}

/// The schema version this build writes (for `--version` and the CLI).
pub fn schema_version() -> u32 {
    sqlite::latest_version()
}

/// Everything a store does; the handle's methods.
pub trait Backend:
    Lifecycle + Deliveries + Jobs + Operator + Recovery + ActionsState + Clients + Sessions + Views
{
}
impl<T> Backend for T where
    T: Lifecycle
        + Deliveries
        + Jobs
        + Operator
        + Recovery
        + ActionsState
        + Clients
        + Sessions
        + Views
{
}

/// The store's own state and its end.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    /// A tiny write: Ok only if the store can commit right now.
    async fn probe(&self) -> Result<(), StoreError>;
    /// False after a failed commit, until a later commit succeeds; and for
    /// good once the store is lost or corrupt.
    fn is_writable(&self) -> bool;
    /// Writable, unwritable for now, or lost or corrupt for good.
    fn health(&self) -> Health;
    /// Checks, cheaply, that the store is still the one opened (a deleted
    /// file, say); without traffic, nothing else would notice.
    fn check_files(&self) -> bool;
    /// Whether the store can go away without this process writing (a
    /// database server): then it is probed every second even while
    /// writable, so `/readyz` follows it without traffic.
    fn probe_always(&self) -> bool {
        false
    }
    /// Whether other processes (replicas) use this store at the same time.
    fn is_shared(&self) -> bool {
        false
    }
    /// Where replicas share this store, the gateway's response cache in
    /// it; None where each process keeps its own ([`cache::CacheFile`]).
    fn shared_cache(&self) -> Option<Arc<dyn cache::CacheStore>> {
        None
    }
    /// Bytes on disk, for `/metrics`.
    fn size_bytes(&self) -> u64;
    /// The stream of (sink, partition) pairs that just got a job; one
    /// taker (the scheduler). None once taken, and for an operator's store.
    fn take_work_notices(&self) -> Option<mpsc::UnboundedReceiver<WorkNotice>>;
    /// Tells this process's scheduler that (sink, partition) has work now
    /// (a retry), rather than at its next rescan.
    fn wake(&self, sink: String, partition: String);
    /// Stops taking writes, commits everything queued, and waits for the
    /// store's threads. Blocking.
    fn close(&self);
    /// A consistent, checked copy of the whole store at `dest`, which must
    /// not exist: written beside it and renamed, so `dest` is absent or
    /// whole. Progress goes to stderr. Blocking.
    fn backup(&self, dest: &Path) -> Result<BackupDone, StoreError>;
    /// Takes, or keeps, the periodic duty `name` (retention, recovery
    /// walks) for `holder` until `now_ms + ttl_ms`, unless another
    /// holder's has not expired: one replica at a time does each. True
    /// when `holder` holds it now. Atomic; expiry is judged as leases are.
    async fn take_duty(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Gives the duty back (only if `holder` holds it), so another may take
    /// it at once rather than after its term.
    async fn release_duty(&self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// [`Lifecycle::take_duty`] for a lane that carries notes (a
    /// credential's budget): when `holder` holds it now, the notes the
    /// last holder left (None: none yet); when another does, None.
    async fn take_lane(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Option<String>>, StoreError>;
    /// Gives the lane back, leaving `notes` (None: the last ones stay),
    /// only if `holder` still holds it: a holder whose term lapsed and
    /// passed to another writes nothing.
    async fn release_lane(
        &self,
        name: &str,
        holder: &str,
        notes: Option<String>,
    ) -> Result<(), StoreError>;
    /// The notes of every lane whose name starts with `prefix`.
    async fn lane_notes(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError>;
    /// Records `holder` alive at `now_ms` and returns how many replicas
    /// (itself included) were seen within the last `within_ms`.
    async fn heartbeat(
        &self,
        holder: &str,
        now_ms: i64,
        within_ms: i64,
    ) -> Result<usize, StoreError>;
    /// Replaces what `holder` reports of itself (JSON, for `gatehouse
    /// status`) and forgets reports older than a day.
    async fn report(&self, holder: &str, body: String, now_ms: i64) -> Result<(), StoreError>;
    /// Every replica's last report, newest first: (holder, at, body).
    async fn replica_reports(&self) -> Result<Vec<(String, i64, String)>, StoreError>;
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupDone {
    pub bytes: u64,
    pub deliveries: i64,
}

/// The journal of deliveries.
#[async_trait]
pub trait Deliveries: Send + Sync {
    /// Journals a delivery: deduplicated by (hook id, GUID), a pending job
    /// for each of its sinks, the volume roll-ups, all in one transaction
    /// shared with other appends (group commit). Returns once durably
    /// committed, or known a duplicate (nothing written), or failed
    /// (nothing written). New jobs are announced on the work notices.
    async fn append(&self, delivery: NewDelivery) -> Result<Appended, StoreError>;
    /// Retention, for deliveries whose jobs are all finished (a delivery
    /// with pending work or a dead letter keeps everything): up to `limit`
    /// received between `keys_before_ms` and `bodies_before_ms` lose
    /// their stored request (headers and body), and up to `limit`
    /// received before `keys_before_ms` go whole, their dedupe key with
    /// them. The caller
    /// keeps `keys_before_ms` at or before `bodies_before_ms`, and outside
    /// GitHub's redelivery window, so a redelivery is still a duplicate
    /// after its body is gone. One transaction; returns what went.
    async fn prune(
        &self,
        bodies_before_ms: i64,
        keys_before_ms: i64,
        limit: usize,
    ) -> Result<Pruned, StoreError>;
    /// One delivery by (hook id, GUID).
    async fn delivery(&self, hook_id: &str, guid: &str) -> Result<Option<DeliveryRow>, StoreError>;
    /// The stored headers and raw body of one delivery.
    async fn payload(&self, delivery_id: i64) -> Result<Option<Payload>, StoreError>;
    /// The stored requests of several deliveries in one read, in the
    /// order asked (None: pruned), stopping after the one that takes the
    /// bodies past `max_bytes` (so the first always comes, and memory
    /// stays bounded whatever the deliveries weigh).
    async fn payloads(
        &self,
        delivery_ids: Vec<i64>,
        max_bytes: u64,
    ) -> Result<Vec<(i64, Option<Payload>)>, StoreError>;
    /// The GUIDs among `guids` that the journal holds, from any hook.
    async fn journaled(&self, guids: Vec<String>) -> Result<HashSet<String>, StoreError>;
}

/// Jobs, leases and attempts: what the scheduler runs on.
#[async_trait]
pub trait Jobs: Send + Sync {
    /// Marks every lease expired, keeping owner and epoch (so an old fence
    /// stays refused). Only at start, when this backend can prove every
    /// holder is gone; returns how many were live.
    async fn expire_leases_of_the_dead(&self) -> Result<usize, StoreError>;
    /// Every (sink, partition) with pending work that no operator holds,
    /// and when it is next due (its earliest job, or the end of a pause).
    async fn due_partitions(&self) -> Result<Vec<(String, String, i64)>, StoreError>;
    /// Takes the lease on (sink, partition) unless another owner holds an
    /// unexpired one or an operator holds the partition or its route.
    /// Atomic; every claim (the same owner's again included) raises the
    /// epoch, so at most one fence is ever current.
    async fn acquire(
        &self,
        sink: &str,
        partition: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Lease, StoreError>;
    /// Gives the lease back if this fence still holds it; else nothing.
    async fn release(&self, sink: &str, partition: &str, fence: &Fence) -> Result<(), StoreError>;
    /// Extends the lease to `until_ms`; false (and nothing written) when
    /// the fence no longer holds it.
    async fn extend(
        &self,
        sink: &str,
        partition: &str,
        fence: &Fence,
        until_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Pending jobs of a partition in received (journal) order, at most
    /// `limit`; with `due_by`, only those due by then.
    async fn pending(
        &self,
        sink: &str,
        partition: &str,
        due_by: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError>;
    /// The earliest due time among a partition's pending jobs.
    async fn next_due(&self, sink: &str, partition: &str) -> Result<Option<i64>, StoreError>;
    /// Under the fence, in one transaction: renews the lease, appends the
    /// attempt (numbered after the job's last), and moves the job on
    /// (done; paused partition, attempt not counted; dead at
    /// `limit.max_attempts`, and then by `limit.on_dead` the partition
    /// held behind it or the job marked skipped; else due again at
    /// `retry_at_ms`). When the fence no longer holds, writes nothing and
    /// says [`After::LeaseLost`].
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        job: &Job,
        sink: &str,
        partition: &str,
        fence: &Fence,
        attempt: Attempt,
        limit: jobs::Limit,
        retry_at_ms: i64,
        lease_ms: i64,
    ) -> Result<After, StoreError> {
        let one = std::slice::from_ref(job);
        let (done, failed): (&[Job], &[Job]) = match attempt.outcome {
            jobs::Outcome::Done => (one, &[]),
            _ => (&[], one),
        };
        self.record_batch(
            done,
            failed,
            sink,
            partition,
            fence,
            attempt,
            limit,
            retry_at_ms,
            lease_ms,
        )
        .await
    }
    /// One attempt that carried several jobs (a batch), as [`Jobs::record`]
    /// in one transaction under the fence: each of `done` is done with
    /// the attempt as a success; each of `failed` moves on by the
    /// attempt's outcome, as `record` moves a job (a hold names the
    /// first of them to die). Jobs in neither are not touched. Says where
    /// the first of `failed` stands ([`After::Done`] when none failed),
    /// or [`After::LeaseLost`] with nothing written.
    #[allow(clippy::too_many_arguments)]
    async fn record_batch(
        &self,
        done: &[Job],
        failed: &[Job],
        sink: &str,
        partition: &str,
        fence: &Fence,
        attempt: Attempt,
        limit: jobs::Limit,
        retry_at_ms: i64,
        lease_ms: i64,
    ) -> Result<After, StoreError>;
    /// Under the fence: the partition waits until `until_ms` because of
    /// `reason` (gatehouse's own pause, not the consumer's), nothing
    /// attempted. False (nothing written) when the fence no longer holds.
    async fn pause_partition(
        &self,
        sink: &str,
        partition: &str,
        fence: &Fence,
        until_ms: i64,
        reason: &str,
    ) -> Result<bool, StoreError>;
    /// Under the fence: the job is dead because it can never run (its
    /// delivery is gone), with one attempt row saying why. False (nothing
    /// written) when the fence no longer holds.
    #[allow(clippy::too_many_arguments)]
    async fn bury(
        &self,
        job_id: i64,
        sink: &str,
        partition: &str,
        fence: &Fence,
        now_ms: i64,
        lease_ms: i64,
        why: &str,
    ) -> Result<bool, StoreError>;
    /// Per sink: pending, oldest pending delivery, dead letters; and how
    /// many partitions are paused at `now_ms`.
    async fn backlog(&self, now_ms: i64) -> Result<Backlog, StoreError>;
    /// A route's circuit breaker, when open.
    async fn breaker(&self, sink: &str) -> Result<Option<jobs::Breaker>, StoreError>;
    /// Every open breaker, by route.
    async fn breakers(&self) -> Result<Vec<(String, jobs::Breaker)>, StoreError>;
    /// Opens a route's breaker, its first probe at `probe_at_ms`; an open
    /// one keeps its times. True when this call opened it.
    async fn open_breaker(
        &self,
        sink: &str,
        now_ms: i64,
        probe_at_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Takes an open breaker's probe when it is due at `now_ms`, moving
    /// the next one to `next_ms`, atomically: one probe per interval
    /// whatever the workers and replicas. False when none is due (or it
    /// is closed).
    async fn claim_probe(&self, sink: &str, now_ms: i64, next_ms: i64) -> Result<bool, StoreError>;
    /// Closes a route's breaker; true when it was open.
    async fn close_breaker(&self, sink: &str) -> Result<bool, StoreError>;
    /// The partition of a route's oldest pending job (its probe's).
    async fn oldest_head(&self, sink: &str) -> Result<Option<String>, StoreError>;
}

/// What operators do, from the CLI or the admin UI: the same operations
/// either way.
#[async_trait]
pub trait Operator: Send + Sync {
    /// Newest-first deliveries matching `filter`, one keyset page (a page
    /// deep in a million rows costs what the first does).
    async fn list(&self, filter: &Filter, cursor: Cursor, limit: usize)
    -> Result<Page, StoreError>;
    /// The journal ids of the deliveries with this GUID (one per hook).
    async fn ids_of_guid(&self, guid: &str) -> Result<Vec<i64>, StoreError>;
    /// The repositories (full names, as sent) deliveries received since
    /// `since_ms` name, sorted, at most `limit`.
    async fn repositories_seen(
        &self,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// One delivery by journal id, with its jobs and every attempt.
    async fn show(&self, delivery_id: i64) -> Result<Option<Shown>, StoreError>;
    /// Every finished job of the deliveries with this GUID (or only
    /// `route`'s) pending again from a clean slate, atomically.
    async fn retry_guid(&self, guid: &str, route: Option<&str>) -> Result<Requeued, StoreError>;
    /// The same for one delivery by journal id. A partition held behind a
    /// job retried (`on_dead = "hold"`) runs again, in the same
    /// transaction; so do the retries above.
    async fn retry_delivery(&self, id: i64, route: Option<&str>) -> Result<Requeued, StoreError>;
    /// Lets order move past a delivery's dead jobs (or `route`'s),
    /// atomically: each is marked skipped by `by` at `now_ms`, stays a
    /// dead letter, and a partition held behind it runs again.
    async fn skip_dead(
        &self,
        id: i64,
        route: Option<&str>,
        by: &str,
        now_ms: i64,
    ) -> Result<Requeued, StoreError>;
    /// How many dead letters [`Operator::retry_dead`] would retry.
    async fn count_dead(&self, filter: &Filter) -> Result<i64, StoreError>;
    /// Every dead letter among the deliveries matching `filter` pending
    /// again, atomically.
    async fn retry_dead(&self, filter: &Filter) -> Result<Requeued, StoreError>;
    /// Gives `sink` a pending job for every delivery since `since_ms` that
    /// it wants and has none (deliveries from before the route existed),
    /// in journal order, in one transaction; idempotent. Returns how many.
    async fn backfill(
        &self,
        sink: &str,
        wants: operator::Wants,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError>;
    /// Every configured sink, then every sink with jobs no longer
    /// configured, with its backlog and pauses.
    async fn route_states(
        &self,
        configured: &[String],
        now_ms: i64,
    ) -> Result<Vec<RouteState>, StoreError>;
    /// Pauses (or resumes) a whole route; idempotent.
    async fn hold_route(&self, route: &str, hold: bool) -> Result<(), StoreError>;
    /// Pauses (or resumes) one route's partition; idempotent.
    async fn hold_partition(
        &self,
        route: &str,
        partition: &str,
        hold: bool,
    ) -> Result<(), StoreError>;
    /// Sinks with pending jobs or dead letters that `configured` lacks.
    async fn orphans(&self, configured: &[String]) -> Result<Vec<Orphaned>, StoreError>;
    /// Deletes every job, attempt, partition and pause of a sink, in one
    /// transaction, returning what it held.
    async fn drop_sink(&self, sink: &str) -> Result<Orphaned, StoreError>;
}

/// Recovery's walks of GitHub's delivery logs, their checkpoints, the
/// redeliveries asked for, and CLI triggers.
#[async_trait]
pub trait Recovery: Send + Sync {
    /// The source's unfinished walk, to resume from its cursor.
    async fn running_walk(&self, source: &str) -> Result<Option<Walk>, StoreError>;
    /// Starts a walk back to `since_ms`, abandoning an unfinished one,
    /// atomically; with `to_checkpoint`, it also stops at the newest log id
    /// of the source's last complete walk.
    async fn start_walk(
        &self,
        source: &str,
        now_ms: i64,
        since_ms: i64,
        to_checkpoint: bool,
    ) -> Result<Walk, StoreError>;
    /// Records how far a walk has gone; `done` completes it.
    async fn save_walk(&self, walk: &Walk, done: bool, now_ms: i64) -> Result<(), StoreError>;
    /// Keeps the missing deliveries a walk page found (guid, log id,
    /// delivered at), to be asked for once the walk completes; one
    /// transaction; idempotent. Returns how many were new.
    async fn found(
        &self,
        source: &str,
        missing: Vec<(String, i64, Option<i64>)>,
    ) -> Result<i64, StoreError>;
    /// What walks found and nobody asked for yet, oldest delivery first.
    async fn to_ask(&self, source: &str) -> Result<Vec<(String, i64)>, StoreError>;
    /// Requests to make again: failed, left unanswered by a crash, or
    /// asked before `reask_before_ms` with no delivery since. Those whose
    /// delivery arrived are settled for good first.
    async fn due_again(
        &self,
        source: &str,
        reask_before_ms: i64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Claims the right to ask for `guid`'s redelivery; committed before
    /// the request goes out. False when it was asked within the window.
    async fn claim(
        &self,
        source: &str,
        guid: &str,
        log_id: i64,
        now_ms: i64,
        reask_before_ms: i64,
    ) -> Result<bool, StoreError>;
    /// What GitHub answered to a redelivery request (None: no answer).
    async fn settle(&self, source: &str, guid: &str, status: Option<u16>)
    -> Result<(), StoreError>;
    /// Asks the running server for a walk of every source (`recovery run`).
    async fn trigger(&self, since_ms: Option<i64>, now_ms: i64) -> Result<i64, StoreError>;
    /// The oldest trigger not yet taken, marked taken (atomically).
    async fn take_trigger(&self, now_ms: i64) -> Result<Option<(i64, Option<i64>)>, StoreError>;
    async fn pending_trigger(&self) -> Result<bool, StoreError>;
    /// When trigger `id` was taken (None: not yet).
    async fn trigger_taken(&self, id: i64) -> Result<Option<i64>, StoreError>;
    /// Per source: its latest walk and its request counts.
    async fn recovery_status(&self) -> Result<Vec<SourceStatus>, StoreError>;
    /// When each source's last complete walk finished.
    async fn last_complete(&self) -> Result<Vec<(String, i64)>, StoreError>;
    /// Walks of every source, newest first, at most `limit`: the history
    /// `recovery status --walks` shows.
    async fn walks(&self, limit: usize) -> Result<Vec<Walk>, StoreError>;
    /// Keeps the deliveries a walk page read (GUID, GitHub's delivered
    /// at), once per (source, GUID), keeping the earliest time; one
    /// transaction; idempotent.
    async fn seen(&self, source: &str, entries: Vec<(String, i64)>) -> Result<(), StoreError>;
    /// Per source with anything seen or found since `since_ms` (GitHub's
    /// delivered at): what was attempted, recovered and is still missing
    /// (a found delivery counts as recovered once its GUID is journaled).
    async fn completeness(&self, since_ms: i64) -> Result<Vec<Completeness>, StoreError>;
}

/// The Actions metrics' state: one row per run and per job.
#[async_trait]
pub trait ActionsState: Send + Sync {
    /// The workflow deliveries behind a batch of jobs, in the batch's
    /// order: (event, content kind, body), None when pruned.
    async fn workflow_bodies(
        &self,
        delivery_ids: Vec<i64>,
    ) -> Result<Vec<Option<(String, String, Vec<u8>)>>, StoreError>;
    /// Under the fence, in one transaction: each observation merged into
    /// its row (the row becomes whichever ranks higher by
    /// `Observation::version`, so the result is the same under any order
    /// and any repeats), and each job closed (done, or dead with why).
    /// None, and nothing written, when the fence no longer holds.
    #[allow(clippy::too_many_arguments)]
    async fn apply_workflow_jobs(
        &self,
        partition: &str,
        fence: &Fence,
        now_ms: i64,
        lease_ms: i64,
        jobs: Vec<(i64, Result<Observation, String>)>,
    ) -> Result<Option<Vec<Change>>, StoreError>;
    /// Every row as a change from nothing, a page at a time (to rebuild
    /// the sums at start without holding millions of rows): at most
    /// `limit` after `after`, runs by (run id, attempt) then jobs by id;
    /// an empty page is the end.
    async fn workflow_rows(
        &self,
        after: actions::RowsAfter,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError>;
    /// Unfinished runs and jobs, for the gauges.
    async fn active_workflows(&self) -> Result<(Vec<RunRow>, Vec<JobRow>), StoreError>;
    /// The rows' version, raised by every `apply_workflow_jobs` that
    /// changed one, in commit order; None where this process is the only
    /// writer (its own changes are all there are).
    async fn workflow_version(&self) -> Result<Option<i64>, StoreError>;
    /// Runs and jobs completed since `since_ms`, for the reports.
    async fn finished_workflows(&self, since_ms: i64) -> Result<Finished, StoreError>;
}

/// Gateway clients, their usage, and the audit log of their changes.
#[async_trait]
pub trait Clients: Send + Sync {
    /// Creates a client (a revoked one's name may be reused) and logs it,
    /// atomically. [`StoreError::Invalid`] when an active client has the
    /// name.
    async fn add_client(
        &self,
        spec: &clients::ClientSpec,
        by: &clients::Actor,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Revokes and logs, atomically. [`StoreError::NotFound`] when no
    /// active client has the name; [`StoreError::Invalid`] when the
    /// clients file owns it and `by` is not the file.
    async fn revoke_client(
        &self,
        name: &str,
        by: &clients::Actor,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Gives an active client a new token hash (the old token stops
    /// working at once) and logs it, atomically. Errors as
    /// [`Clients::revoke_client`].
    async fn rotate_client(
        &self,
        name: &str,
        token_hash: &str,
        by: &clients::Actor,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// Makes the file's clients what `specs` says, in one transaction:
    /// adds the missing, changes those that differ, revokes the file's
    /// clients no longer listed; logs each change. Clients from the CLI
    /// or the UI are not touched; a spec naming an active one of those is
    /// [`StoreError::Invalid`] and nothing changes.
    async fn apply_client_file(
        &self,
        specs: &[clients::ClientSpec],
        by: &clients::Actor,
        now_ms: i64,
    ) -> Result<clients::Applied, StoreError>;
    /// The newest `limit` audit entries, newest first.
    async fn audit_log(&self, limit: usize) -> Result<Vec<clients::AuditEntry>, StoreError>;
    /// The active client holding this token hash.
    async fn client_by_token(&self, token_hash: &str) -> Result<Option<StoredClient>, StoreError>;
    /// Every client, newest first, with its usage over the hour before now.
    async fn clients(&self, now_ms: i64) -> Result<Vec<ClientRow>, StoreError>;
    /// Units spent upstream per client and minute, from `since_minute` on
    /// (every replica's, as flushed).
    async fn units_by_minute(
        &self,
        since_minute: i64,
    ) -> Result<Vec<(String, i64, i64)>, StoreError>;
    /// Adds per-minute usage to each (client, minute) and each usage
    /// line's key, and drops client minutes before `oldest_minute` and
    /// lines before `oldest_line_minute`, in one transaction.
    async fn add_usage(
        &self,
        rows: Vec<((String, i64), Usage)>,
        lines: Vec<clients::UsageLine>,
        oldest_minute: i64,
        oldest_line_minute: i64,
    ) -> Result<(), StoreError>;
    /// Usage lines from `since_minute` on, summed over minutes (`minute`
    /// is then the first minute summed).
    async fn usage_lines(&self, since_minute: i64) -> Result<Vec<clients::UsageLine>, StoreError>;
    /// Units spent and saved per owner and minute from `since_minute` on:
    /// (owner, minute, spent, saved).
    async fn owner_minutes(
        &self,
        since_minute: i64,
    ) -> Result<Vec<(String, i64, i64, i64)>, StoreError>;
}

/// Admin UI sessions, in the store so that every replica knows a login.
/// A session is named by the SHA-256 of its cookie token (the token itself
/// is never stored).
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Stores a new session; in the same transaction, ends those last
    /// seen before `idle_before_ms` and then, while `max` or more remain,
    /// the least recently seen.
    async fn open_session(
        &self,
        session: &sessions::NewSession,
        idle_before_ms: i64,
        max: usize,
    ) -> Result<(), StoreError>;
    /// The session under `token_digest` unless it was last seen before
    /// `idle_before_ms` (then it is ended). Marks it seen at `now_ms`,
    /// to within [`sessions::SEEN_GRANULARITY_MS`] (so most page views
    /// write nothing), best effort: a store that cannot be written now
    /// still answers from what it can read.
    async fn session(
        &self,
        token_digest: [u8; 32],
        now_ms: i64,
        idle_before_ms: i64,
    ) -> Result<Option<sessions::Session>, StoreError>;
    /// Ends a session; idempotent.
    async fn end_session(&self, token_digest: [u8; 32]) -> Result<(), StoreError>;
    /// Failed authentications from `address` in the `window_ms` before
    /// `now_ms`, counted for every process on the store: with `limit` or
    /// more, the time of the oldest counted (so the caller can say how long
    /// to wait) and, for [`sessions::Tally::Reserve`], nothing counted;
    /// else None, after counting as `tally` says. Atomic: concurrent
    /// reservations from any replica never pass `limit` together.
    /// Failures older than the window are forgotten.
    async fn tally_failure(
        &self,
        address: &str,
        tally: sessions::Tally,
        now_ms: i64,
        window_ms: i64,
        limit: u32,
    ) -> Result<Option<i64>, StoreError>;
    /// A success: `address` starts again from nothing.
    async fn forgive_failures(&self, address: &str) -> Result<(), StoreError>;
}

/// Roll-ups for charts, reports and the overview.
#[async_trait]
pub trait Views: Send + Sync {
    /// Everything the overview page reads, in one go.
    async fn overview(&self, q: OverviewQuery) -> Result<Overview, StoreError>;
    /// Partitions with work, a lease or a pause first (most pending
    /// first), then the rest by name; at most `limit`, and the total;
    /// with the backlog per sink and the held routes, read in one go.
    async fn partitions(
        &self,
        sink: Option<&str>,
        now_ms: i64,
        limit: usize,
    ) -> Result<PartitionsView, StoreError>;
    /// Deliveries per day, owner and event, and attempts per sink,
    /// outcome and latency bucket, from `from_day` on.
    async fn reports(&self, from_day: i64) -> Result<Reports, StoreError>;
    /// Adds attempts per (minute, sink, outcome), atomically.
    async fn add_attempt_minutes(
        &self,
        counts: Vec<((i64, String, &'static str), i64)>,
    ) -> Result<(), StoreError>;
    /// Records each sink's backlog at `now_ms`'s minute and drops samples
    /// and attempt counts older than `keep_minutes`. The backlog is read
    /// before the write: a sample, not a snapshot of one transaction.
    async fn sample_sinks(&self, now_ms: i64, keep_minutes: i64) -> Result<(), StoreError>;
}
