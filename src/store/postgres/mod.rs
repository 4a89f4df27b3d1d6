//! The store on PostgreSQL, for several replicas behind a load balancer
//! (`[storage] url`), held to the contracts in `store/mod.rs`:
//! connecting (a pool, `synchronous_commit = on` on every session, TLS
//! verified against the system's roots), migrations under an advisory
//! lock, and every trait. Appends are group-committed in a fixed number of
//! set-based statements, deduplicated by the unique index across replicas
//! and numbered per partition under the partition's row lock; the
//! scheduler's claims skip a lease row another replica is writing under,
//! every later write is fenced, and lease times are kept on the
//! database's clock (each replica converts its own by a measured offset);
//! work notices reach every replica through LISTEN/NOTIFY with a rescan
//! after each reconnect; duties and heartbeats let replicas share periodic
//! work and count each other; Actions rows carry a version so every
//! replica's sums can follow them. Statements are prepared once per
//! pooled connection.

mod actions;
mod cache;
mod clients;
mod deliveries;
mod jobs;
mod notices;
mod operator;
mod recovery;
pub mod schema;
mod views;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::mpsc;

use crate::store::metrics::JournalMetrics;
use crate::store::{BackupDone, Health, StoreError, WorkNotice};

/// Why the PostgreSQL store could not open or answer.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("PostgreSQL connection pool: {0}")]
    Pool(String),
    #[error(
        "database schema version {found} is newer than this gatehouse knows ({known}); \
         it was written by a newer release: run that release"
    )]
    TooNew { found: i32, known: i32 },
    #[error(
        "database schema version {found}, this gatehouse expects {want}: start `gatehouse serve` once to migrate, or use the matching release"
    )]
    Version { found: i32, want: i32 },
    #[error("TLS for PostgreSQL: {0}")]
    Tls(String),
}

impl From<deadpool_postgres::PoolError> for PgError {
    fn from(e: deadpool_postgres::PoolError) -> PgError {
        PgError::Pool(e.to_string())
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> StoreError {
        StoreError::Unavailable(e.to_string())
    }
}

/// Connections in the pool: the group-commit writer holds one at a time,
/// reads and the scheduler's writes share the rest.
const POOL_SIZE: usize = 16;
/// A store operation waits this long for a free connection, then fails
/// (503 on ingest) rather than queue without bound.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// The open store.
pub struct Postgres {
    pool: Pool,
    appends: mpsc::Sender<deliveries::Append>,
    writable: Arc<AtomicBool>,
    /// Appends sent and not yet answered (close waits for them).
    in_flight: Arc<AtomicUsize>,
    closed: AtomicBool,
    /// Every replica's new work, heard through LISTEN, for the scheduler.
    notices: Mutex<Option<mpsc::UnboundedReceiver<WorkNotice>>>,
    wake: mpsc::UnboundedSender<WorkNotice>,
    /// The database's size as last probed, for `/metrics`.
    size: AtomicU64,
    /// The database's clock minus this replica's, in ms (see `db_ms`).
    clock_offset_ms: AtomicI64,
    metrics: JournalMetrics,
}

/// Where the database is: a libpq-style URL
/// (`postgres://user@host:port/db?sslmode=require`), and the password
/// when it is kept apart from it. Neither is ever shown.
#[derive(Clone)]
pub struct Target {
    url: String,
    password: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Target(***)")
    }
}

impl Target {
    /// Checks the URL parses; the error never repeats the URL (it may
    /// hold a password).
    pub fn new(url: &str, password: Option<&str>) -> Result<Target, String> {
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            // tokio-postgres's parse errors name the key, not the value.
            format!("not a PostgreSQL connection URL ({e})")
        })?;
        if config.get_hosts().is_empty() {
            return Err("the URL names no host".into());
        }
        if config.get_dbname().is_none() {
            return Err("the URL names no database (postgres://user@host:port/DATABASE)".into());
        }
        if config.get_user().is_none() {
            return Err("the URL names no user (postgres://USER@host:port/db)".into());
        }
        Ok(Target {
            url: url.to_string(),
            password: password.map(str::to_string),
        })
    }

    /// `postgres://user@host:port/db`: for logs and pages (no password,
    /// no other parameters).
    pub fn describe(&self) -> String {
        let Ok(config) = self.url.parse::<tokio_postgres::Config>() else {
            return "postgres://(unparsable)".into();
        };
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => String::new(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres://{}@{host}:{port}/{}",
            config.get_user().unwrap_or_default(),
            config.get_dbname().unwrap_or_default()
        )
    }

    /// One connection outside any pool (its driver spawned), for a
    /// one-off job such as a copy or a migration.
    pub(crate) async fn connect_one(
        &self,
        purpose: &str,
    ) -> Result<tokio_postgres::Client, PgError> {
        let (client, connection) = self.config(purpose)?.connect(tls()?).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    /// The client configuration for one purpose (`application_name`, seen
    /// in `pg_stat_activity`).
    fn config(&self, purpose: &str) -> Result<tokio_postgres::Config, PgError> {
        let mut config: tokio_postgres::Config = self.url.parse()?;
        if let Some(p) = &self.password {
            config.password(p);
        }
        // Ack means durable: whatever the server's default, a commit
        // returns only once it is flushed (and replicated, when the
        // server runs synchronous replication).
        config.options("-c synchronous_commit=on");
        config.application_name(purpose);
        config.connect_timeout(CONNECT_TIMEOUT);
        Ok(config)
    }
}

/// The database's clock minus this replica's (system clock), in ms: the
/// database's reading against the midpoint of the round trip, so the
/// error is at most half of it.
async fn clock_offset(client: &tokio_postgres::Client) -> Result<i64, PgError> {
    let before = crate::clock::now_ms();
    let row = client
        .query_one(
            "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint",
            &[],
        )
        .await?;
    let after = crate::clock::now_ms();
    let db: i64 = row.get(0);
    Ok(db - (before + after) / 2)
}

/// A probe not answered in this long marks the store unwritable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection attempt that has not completed in this long has failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS for `sslmode=prefer|require`: the server's certificate is checked
/// against the system's trust store (as libpq's `verify-full`); with
/// `sslmode=disable` no TLS is attempted.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgError> {
    use rustls_platform_verifier::ConfigVerifierExt;
    let config =
        rustls::ClientConfig::with_platform_verifier().map_err(|e| PgError::Tls(e.to_string()))?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// What a connection is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The server: migrate, group-commit writer, LISTEN.
    Serve,
    /// An operator command beside running servers: the schema must be
    /// this build's, nothing is migrated, nothing listened for.
    Beside,
}

impl Postgres {
    /// Connects for the server: brings the schema to this build's version
    /// (under the advisory lock, so replicas starting together take
    /// turns), starts the group-commit writer and the LISTEN connection.
    /// Async: call within a runtime.
    pub async fn connect(target: &Target, metrics: JournalMetrics) -> Result<Postgres, PgError> {
        Postgres::connect_as(target, metrics, Mode::Serve).await
    }

    /// The database's schema version, and with `apply` the migrations this
    /// build has that it lacks, applied (under the advisory lock, beside
    /// running replicas). Returns the version before and after.
    pub async fn migrate_only(target: &Target, apply: bool) -> Result<(i32, i32), PgError> {
        let mut client = target.connect_one("gatehouse-migrate").await?;
        let before = schema::version(&client).await?;
        if before > schema::latest_version() {
            return Err(PgError::TooNew {
                found: before,
                known: schema::latest_version(),
            });
        }
        let after = if apply {
            schema::migrate(&mut client).await?;
            schema::version(&client).await?
        } else {
            before
        };
        Ok((before, after))
    }

    /// Connects for an operator command beside the servers: no migration
    /// (a schema of another version is refused), no LISTEN.
    pub async fn connect_beside(target: &Target) -> Result<Postgres, PgError> {
        Postgres::connect_as(target, JournalMetrics::unregistered(), Mode::Beside).await
    }

    async fn connect_as(
        target: &Target,
        metrics: JournalMetrics,
        mode: Mode,
    ) -> Result<Postgres, PgError> {
        let manager = Manager::from_config(
            target.config("gatehouse")?,
            tls()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(if mode == Mode::Serve { POOL_SIZE } else { 4 })
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        let mut client = pool.get().await?;
        match mode {
            Mode::Serve => {
                schema::migrate(&mut client).await?;
            }
            Mode::Beside => {
                let found = schema::version(&client).await?;
                if found != schema::latest_version() {
                    return Err(PgError::Version {
                        found,
                        want: schema::latest_version(),
                    });
                }
            }
        }
        let offset = clock_offset(&client).await?;
        drop(client);
        metrics.clock_offset.set(offset as f64 / 1000.0);
        let writable = Arc::new(AtomicBool::new(true));
        let (wake, notices) = mpsc::unbounded_channel();
        let appends = deliveries::start_writer(
            pool.clone(),
            metrics.clone(),
            writable.clone(),
            wake.clone(),
        );
        if mode == Mode::Serve {
            let listen_config = target.config("gatehouse-listen")?;
            tokio::spawn(notices::listen(
                listen_config,
                tls()?,
                pool.clone(),
                wake.clone(),
                metrics.notifications.clone(),
            ));
        }
        Ok(Postgres {
            pool,
            appends,
            writable,
            in_flight: Arc::new(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
            notices: Mutex::new(Some(notices)),
            wake,
            size: AtomicU64::new(0),
            clock_offset_ms: AtomicI64::new(offset),
            metrics,
        })
    }

    /// A time of this replica's clock (the caller's `now_ms`) on the
    /// database's clock. Leases are judged on the database's clock, so a
    /// replica whose clock runs ahead cannot take another's lease early:
    /// each replica converts by the offset it measured at connect and
    /// measures again on every probe.
    pub(crate) fn db_ms(&self, local_ms: i64) -> i64 {
        local_ms.saturating_add(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// The last measured offset of the database's clock from this
    /// replica's, in ms.
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// A pooled connection for operation `op`: the wait for it and the
    /// whole operation (until the connection goes back) are timed.
    async fn client(&self, op: &'static str) -> Result<Timed, StoreError> {
        checkout(&self.pool, &self.metrics, op).await
    }
}

/// A pooled connection for operation `op`, timed (see [`Timed`]).
async fn checkout(
    pool: &Pool,
    metrics: &JournalMetrics,
    op: &'static str,
) -> Result<Timed, StoreError> {
    let started = Instant::now();
    let conn = pool
        .get()
        .await
        .map_err(|e| StoreError::Unavailable(format!("PostgreSQL: {e}")))?;
    metrics.pool_wait.observe(started.elapsed().as_secs_f64());
    Ok(Timed {
        conn,
        op,
        started,
        metrics: metrics.clone(),
    })
}

/// A pooled connection that times its operation when given back.
struct Timed {
    conn: deadpool_postgres::Object,
    op: &'static str,
    started: Instant,
    metrics: JournalMetrics,
}

impl std::ops::Deref for Timed {
    type Target = deadpool_postgres::Object;
    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl std::ops::DerefMut for Timed {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.metrics.observe_op(self.op, self.started.elapsed());
    }
}

/// A failed read, in the store's terms.
fn read_err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Read(e.to_string())
}

/// A failed write: nothing was committed.
fn write_err(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

#[async_trait]
impl crate::store::Lifecycle for Postgres {
    /// Takes a transaction id: the server accepts writes now.
    /// A transaction id taken (a write the server must accept), and the
    /// database's size; a failure marks the store unwritable until a
    /// probe or commit succeeds.
    async fn probe(&self) -> Result<(), StoreError> {
        let probed = async {
            let client = self.client("probe").await?;
            let row = client
                .query_one(
                    "SELECT txid_current(), pg_database_size(current_database())",
                    &[],
                )
                .await
                .map_err(write_err)?;
            Ok::<_, StoreError>(row.get::<_, i64>(1) as u64)
        };
        match tokio::time::timeout(PROBE_TIMEOUT, probed).await {
            Ok(Ok(size)) => {
                self.size.store(size, Ordering::Relaxed);
                self.writable.store(true, Ordering::SeqCst);
                Ok(())
            }
            Ok(Err(e)) => {
                self.writable.store(false, Ordering::SeqCst);
                Err(e)
            }
            Err(_) => {
                self.writable.store(false, Ordering::SeqCst);
                Err(StoreError::Unavailable(
                    "PostgreSQL did not answer a probe in time".into(),
                ))
            }
        }
    }

    fn probe_always(&self) -> bool {
        true
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn shared_cache(&self) -> Option<Arc<dyn crate::store::cache::CacheStore>> {
        Some(Arc::new(cache::PgCache {
            pool: self.pool.clone(),
            metrics: self.metrics.clone(),
        }))
    }

    fn is_writable(&self) -> bool {
        self.writable.load(Ordering::SeqCst)
    }

    /// The server may be down for a while; it is never lost for good from
    /// here.
    fn health(&self) -> Health {
        if self.is_writable() {
            Health::Writable
        } else {
            Health::Unwritable
        }
    }

    /// No file of ours to lose.
    fn check_files(&self) -> bool {
        true
    }

    fn size_bytes(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    fn take_work_notices(&self) -> Option<mpsc::UnboundedReceiver<WorkNotice>> {
        self.notices.lock().expect("notices lock").take()
    }

    fn wake(&self, sink: String, partition: String) {
        let _ = self.wake.send((sink, partition));
    }

    /// Refuses new appends and waits (up to 10 s) for those in flight.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn backup(&self, _dest: &Path) -> Result<BackupDone, StoreError> {
        Err(StoreError::Invalid(
            "a PostgreSQL store is backed up with the server's own tools: pg_dump, or base \
             backups with WAL archiving"
                .into(),
        ))
    }

    async fn take_duty(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        // A duty is a lane whose notes nobody reads.
        Ok(self
            .take_lane(name, holder, now_ms, ttl_ms)
            .await?
            .is_some())
    }

    async fn release_duty(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.release_lane(name, holder, None).await
    }

    async fn take_lane(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Option<String>>, StoreError> {
        let client = self.client("take_lane").await?;
        let now = self.db_ms(now_ms);
        let stmt = client
            .prepare_cached(
                "INSERT INTO duties (name, holder, until_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE
                     SET holder = EXCLUDED.holder, until_ms = EXCLUDED.until_ms,
                         epoch = duties.epoch
                                 + CASE WHEN duties.holder = EXCLUDED.holder THEN 0 ELSE 1 END
                     WHERE duties.holder = EXCLUDED.holder OR duties.until_ms < $4
                 RETURNING state",
            )
            .await
            .map_err(write_err)?;
        let row = client
            .query_opt(&stmt, &[&name, &holder, &(now + ttl_ms), &now])
            .await
            .map_err(write_err)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn release_lane(
        &self,
        name: &str,
        holder: &str,
        notes: Option<String>,
    ) -> Result<(), StoreError> {
        let client = self.client("release_lane").await?;
        let stmt = client
            .prepare_cached(
                "UPDATE duties SET until_ms = 0, state = coalesce($3, state)
                 WHERE name = $1 AND holder = $2",
            )
            .await
            .map_err(write_err)?;
        client
            .execute(&stmt, &[&name, &holder, &notes])
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn lane_notes(&self, prefix: &str) -> Result<Vec<(String, String)>, StoreError> {
        let client = self.client("lane_notes").await?;
        let rows = client
            .query(
                "SELECT name, state FROM duties
                 WHERE starts_with(name, $1) AND state IS NOT NULL ORDER BY name",
                &[&prefix],
            )
            .await
            .map_err(read_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn heartbeat(
        &self,
        holder: &str,
        now_ms: i64,
        within_ms: i64,
    ) -> Result<usize, StoreError> {
        let client = self.client("heartbeat").await?;
        // The clock offset drifts: measured again with each heartbeat.
        if let Ok(offset) = clock_offset(&client).await {
            self.clock_offset_ms.store(offset, Ordering::Relaxed);
            self.metrics.clock_offset.set(offset as f64 / 1000.0);
        }
        let now = self.db_ms(now_ms);
        client
            .execute(
                "INSERT INTO replicas (name, started_ms, seen_ms) VALUES ($1, $2, $2)
                 ON CONFLICT (name) DO UPDATE SET seen_ms = EXCLUDED.seen_ms",
                &[&holder, &now],
            )
            .await
            .map_err(write_err)?;
        // Replicas gone for a day are forgotten.
        client
            .execute(
                "DELETE FROM replicas WHERE seen_ms < $1",
                &[&(now - 86_400_000)],
            )
            .await
            .map_err(write_err)?;
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM replicas WHERE seen_ms >= $1",
                &[&(now - within_ms)],
            )
            .await
            .map_err(read_err)?
            .get(0);
        Ok(n as usize)
    }

    async fn report(&self, holder: &str, body: String, now_ms: i64) -> Result<(), StoreError> {
        let client = self.client("report").await?;
        client
            .execute(
                "INSERT INTO replica_reports (holder, reported_at_ms, body) VALUES ($1, $2, $3)
                 ON CONFLICT (holder) DO UPDATE
                 SET reported_at_ms = EXCLUDED.reported_at_ms, body = EXCLUDED.body",
                &[&holder, &now_ms, &body],
            )
            .await
            .map_err(write_err)?;
        client
            .execute(
                "DELETE FROM replica_reports WHERE reported_at_ms < $1",
                &[&(now_ms - 86_400_000)],
            )
            .await
            .map_err(write_err)?;
        Ok(())
    }

    async fn replica_reports(&self) -> Result<Vec<(String, i64, String)>, StoreError> {
        let client = self.client("reports").await?;
        Ok(client
            .query(
                "SELECT holder, reported_at_ms, body FROM replica_reports
                 ORDER BY reported_at_ms DESC",
                &[],
            )
            .await
            .map_err(read_err)?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}
