//! The store on PostgreSQL, for several replicas behind a load balancer
//! (part 13), being built operation by operation against the contracts in
//! `store/mod.rs`. So far: connecting (a pool, `synchronous_commit = on`
//! on every session), migrations under an advisory lock, the journal of
//! deliveries (`Deliveries`): group-committed appends, deduplicated by the
//! unique index across replicas, ordered per partition by a sequence
//! number allocated under the partition's row lock; and the scheduler's
//! `Jobs`: claims that skip a lease row another replica is writing under,
//! fenced writes, jobs in sequence order; `Operator` (lists, retries,
//! back-fills in sequence order, holds), `Recovery` (a claim is one
//! upsert, a trigger is taken by one replica), `ActionsState` (rows
//! merged by version, locked while compared), `Clients` and `Sessions`;
//! and
//! `Lifecycle`, whose work notices reach every replica through
//! LISTEN/NOTIFY with a rescan after each reconnect; and `Views`. Every
//! trait is implemented, so it is a `Backend`; next, `[storage] url` as an
//! arm of `store::open`, and the Actions sums in the database beside these
//! rows (so `/metrics` is the same on every replica).

mod actions;
mod clients;
mod deliveries;
mod jobs;
mod notices;
mod operator;
mod recovery;
pub mod schema;
mod views;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
}

impl Postgres {
    /// Connects to `url` (`postgres://user@host:port/db?sslmode=...`),
    /// brings the schema to this build's version, and starts the
    /// group-commit writer. Async: call within a runtime.
    pub async fn connect(url: &str, metrics: JournalMetrics) -> Result<Postgres, PgError> {
        let mut config: tokio_postgres::Config = url.parse()?;
        // Ack means durable: whatever the server's default, a commit
        // returns only once it is flushed (and replicated, when the
        // server runs synchronous replication).
        config.options("-c synchronous_commit=on");
        config.application_name("gatehouse");
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))?;
        let mut client = pool.get().await?;
        schema::migrate(&mut client).await?;
        drop(client);
        let writable = Arc::new(AtomicBool::new(true));
        let (wake, notices) = mpsc::unbounded_channel();
        let appends =
            deliveries::start_writer(pool.clone(), metrics, writable.clone(), wake.clone());
        let mut listen_config: tokio_postgres::Config = url.parse()?;
        listen_config.application_name("gatehouse-listen");
        tokio::spawn(notices::listen(listen_config, pool.clone(), wake.clone()));
        Ok(Postgres {
            pool,
            appends,
            writable,
            in_flight: Arc::new(AtomicUsize::new(0)),
            closed: AtomicBool::new(false),
            notices: Mutex::new(Some(notices)),
            wake,
            size: AtomicU64::new(0),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("PostgreSQL: {e}")))
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
    async fn probe(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT txid_current(), pg_database_size(current_database())",
                &[],
            )
            .await
            .map_err(write_err)?;
        self.size
            .store(row.get::<_, i64>(1) as u64, Ordering::Relaxed);
        self.writable.store(true, Ordering::SeqCst);
        Ok(())
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
}
