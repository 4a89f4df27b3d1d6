//! The store on PostgreSQL, for several replicas behind a load balancer
//! (part 13), being built operation by operation against the contracts in
//! `store/mod.rs`. So far: connecting (a pool, `synchronous_commit = on`
//! on every session), migrations under an advisory lock, the journal of
//! deliveries (`Deliveries`): group-committed appends, deduplicated by the
//! unique index across replicas, ordered per partition by a sequence
//! number allocated under the partition's row lock; and the scheduler's
//! `Jobs`: claims that skip a lease row another replica is writing under,
//! fenced writes, jobs in sequence order. It becomes a
//! `Backend`, and `[storage] url` an arm of `store::open`, once every
//! trait is implemented and the conformance suite passes on it.

mod clients;
mod deliveries;
mod jobs;
pub mod schema;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::mpsc;

use crate::store::StoreError;
use crate::store::metrics::JournalMetrics;

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
        let appends = deliveries::start_writer(pool.clone(), metrics, writable.clone());
        Ok(Postgres {
            pool,
            appends,
            writable,
        })
    }

    /// False after a failed commit, until a later one succeeds.
    pub fn is_writable(&self) -> bool {
        self.writable.load(Ordering::SeqCst)
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
