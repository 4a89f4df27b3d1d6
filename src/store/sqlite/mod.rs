//! The SQLite backend: the embedded journal. Writes go through one
//! group-commit writer thread; reads go through an r2d2 pool and run on
//! blocking threads, never on the async executor. Every SQL statement of
//! gatehouse's journal is in this folder.

mod actions;
mod backup;
pub mod cache;
mod checkpoint;
mod clients;
mod deliveries;
mod guard;
mod jobs;
mod lock;
mod operator;
mod reader;
mod recovery;
mod schema;
mod sessions;
mod views;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

pub use guard::Health;
pub use lock::LockError;
use reader::Reader;
pub use schema::{MIGRATIONS, SchemaError, latest_version};
pub use writer::DEFAULT_WAL_LIMIT_BYTES;

use super::{StoreError, WorkNotice};
use crate::store::metrics::JournalMetrics;
use writer::{Command, ExecOp, Writer};

/// Appends wait here when the writer is behind; the bound turns a flood into
/// backpressure on the HTTP side instead of unbounded memory.
const QUEUE_CAPACITY: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot open read pool for {path}: {source}")]
    Pool { path: PathBuf, source: r2d2::Error },
    #[error(
        "the journal {path} is corrupt ({detail}): restore it from a backup (see the README, Backup and restore)"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "no journal at {0} (is [storage] path right? `gatehouse serve` creates it on its first start)"
    )]
    Missing(PathBuf),
    #[error(
        "journal schema version {found}, this gatehouse expects {want}: start `gatehouse serve` once to migrate, or use the matching release"
    )]
    Version { found: u32, want: u32 },
}

/// At start the journal is checked for corrupt pages (SQLite's
/// quick_check) for at most this long, so a damaged file is refused with a
/// clear word instead of answering 503 for everything; a journal too large
/// to check in that time is left to the checks of every commit.
const START_CHECK: Duration = Duration::from_secs(5);

/// Runs `PRAGMA quick_check` for up to `limit` (interrupted from a timer
/// thread after that). Ok(true): checked whole and sound; Ok(false): not
/// finished in time.
fn quick_check(conn: &Connection, limit: Duration) -> Result<bool, String> {
    let interrupt = conn.get_interrupt_handle();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let timer = std::thread::spawn(move || {
        if wait.recv_timeout(limit).is_err() {
            interrupt.interrupt();
        }
    });
    let found = conn.prepare("PRAGMA quick_check(20)").and_then(|mut st| {
        st.query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>()
    });
    let _ = done.send(());
    let _ = timer.join();
    match found {
        Ok(rows) if rows == ["ok"] => Ok(true),
        Ok(rows) => Err(rows.join("; ")),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) => {
            Ok(false)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The open journal.
pub struct Sqlite {
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    guard: Arc<guard::Guard>,
    reader: Reader,
    db_path: PathBuf,
    wal_path: PathBuf,
    threads: Mutex<Vec<JoinHandle<()>>>,
    checkpointer: Mutex<Option<checkpoint::Stop>>,
    notices: Mutex<Option<mpsc::UnboundedReceiver<WorkNotice>>>,
    /// The writer's end of the notices, for work made outside appends.
    wake: mpsc::UnboundedSender<WorkNotice>,
    /// The server's; an operator's store beside it has none.
    _lock: Option<lock::ProcessLock>,
}

impl Sqlite {
    pub fn open(
        path: &Path,
        metrics: JournalMetrics,
        options: super::Options,
    ) -> Result<Sqlite, OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::files::private_dir(dir).map_err(|source| OpenError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let lock = lock::ProcessLock::acquire(path)?;
        let corrupt = |detail: String| OpenError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let open_err = |source: rusqlite::Error| {
            if guard::is_corrupt(&source) {
                corrupt(source.to_string())
            } else {
                OpenError::Open {
                    path: path.to_path_buf(),
                    source,
                }
            }
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        schema::configure(&conn).map_err(open_err)?;
        schema::enable_wal(&conn).map_err(|e| match e {
            SchemaError::Sqlite(e) => open_err(e),
            other => other.into(),
        })?;
        // Checkpoints run on their own thread, off the commit path: each
        // one would add 10-35 ms to the commit that meets it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_size_limit", options.wal_limit_bytes as i64)
            .map_err(open_err)?;
        match quick_check(&conn, START_CHECK) {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                limit_secs = START_CHECK.as_secs(),
                "journal too large to check whole at start; every commit is still checked"
            ),
            Err(detail) => return Err(corrupt(detail)),
        }
        schema::migrate(&mut conn).map_err(|e| match e {
            SchemaError::Migration { source, .. } if guard::is_corrupt(&source) => {
                corrupt(source.to_string())
            }
            other => other.into(),
        })?;

        let reader = Reader::open(path).map_err(|source| OpenError::Pool {
            path: path.to_path_buf(),
            source,
        })?;
        let wal_path = sibling(path, "-wal");
        // SQLite gives its -wal and -shm the database file's mode; older
        // releases left all three readable by others.
        for f in [wal_path.clone(), sibling(path, "-shm")] {
            crate::files::tighten(&f, crate::files::FILE_MODE).map_err(|source| {
                OpenError::CreateDir {
                    path: f.clone(),
                    source,
                }
            })?;
        }
        let guard = Arc::new(guard::Guard::new(path, &wal_path).map_err(|source| {
            OpenError::CreateDir {
                path: path.to_path_buf(),
                source,
            }
        })?);
        let (stop, checkpoint_thread) = checkpoint::spawn(path).map_err(open_err)?;
        let mut me = Sqlite::start(
            path,
            conn,
            reader,
            guard,
            metrics,
            Some(options.wal_limit_bytes),
        );
        me.threads.get_mut().expect("lock").push(checkpoint_thread);
        *me.checkpointer.get_mut().expect("lock") = Some(stop);
        tracing::info!(path = %path.display(), lock = %lock.path().display(), "journal open");
        me._lock = Some(lock);
        Ok(me)
    }

    /// The schema version of the file at `path` (0: no file yet), read
    /// without a lock or a change.
    pub fn version_of(path: &Path) -> Result<u32, OpenError> {
        if !path.exists() {
            return Ok(0);
        }
        let open_err = |source: rusqlite::Error| OpenError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(open_err)?;
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)
    }

    /// Opens an existing journal for an operator command, beside a running
    /// server or not: no lock, no migration (another schema version is
    /// refused), no checkpoints (the server's), but the same writer. WAL
    /// lets both read; SQLite serialises the two writers (busy_timeout
    /// waits).
    pub fn open_beside(path: &Path) -> Result<Sqlite, OpenError> {
        if !path.exists() {
            return Err(OpenError::Missing(path.to_path_buf()));
        }
        let open_err = |source: rusqlite::Error| OpenError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(open_err)?;
        schema::configure(&conn).map_err(open_err)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        let found: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(open_err)?;
        if found != latest_version() {
            return Err(OpenError::Version {
                found,
                want: latest_version(),
            });
        }
        let reader = Reader::open(path).map_err(|source| OpenError::Pool {
            path: path.to_path_buf(),
            source,
        })?;
        let wal_path = sibling(path, "-wal");
        let guard = Arc::new(guard::Guard::new(path, &wal_path).map_err(|source| {
            OpenError::CreateDir {
                path: path.to_path_buf(),
                source,
            }
        })?);
        // The WAL is the server's to manage.
        Ok(Sqlite::start(
            path,
            conn,
            reader,
            guard,
            JournalMetrics::unregistered(),
            None,
        ))
    }

    /// Starts the writer thread on `conn`.
    fn start(
        path: &Path,
        conn: Connection,
        reader: Reader,
        guard: Arc<guard::Guard>,
        metrics: JournalMetrics,
        wal_limit: Option<u64>,
    ) -> Sqlite {
        let wal_path = sibling(path, "-wal");
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (notices, notices_rx) = mpsc::unbounded_channel();
        let writer = Writer {
            conn,
            rx,
            guard: guard.clone(),
            metrics,
            wal_path: wal_path.clone(),
            notices: notices.clone(),
            wal_limit,
            wal_over: false,
        };
        let writer_thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run())
            .expect("spawn journal writer thread");
        Sqlite {
            tx: Mutex::new(Some(tx)),
            guard,
            reader,
            db_path: path.to_path_buf(),
            wal_path,
            threads: Mutex::new(vec![writer_thread]),
            checkpointer: Mutex::new(None),
            notices: Mutex::new(Some(notices_rx)),
            wake: notices,
            _lock: None,
        }
    }

    fn sender(&self) -> Result<mpsc::Sender<Command>, StoreError> {
        self.tx
            .lock()
            .expect("journal sender lock")
            .clone()
            .ok_or(StoreError::Closed)
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(writer::Reply<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` inside the writer's next group commit and returns its value
    /// once the transaction is durably committed.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
    {
        self.request(|reply| {
            Command::Exec(Box::new(ExecOp {
                f: Some(f),
                value: None,
                reply: Some(reply),
            }))
        })
        .await
    }

    /// Runs `f` on a pooled read-only connection, on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.reader.run(move |r| r.query(f)).await
    }
}

#[async_trait::async_trait]
impl super::Lifecycle for Sqlite {
    async fn probe(&self) -> Result<(), StoreError> {
        self.request(Command::Probe).await
    }

    fn is_writable(&self) -> bool {
        self.guard.is_writable()
    }

    fn health(&self) -> Health {
        self.guard.health()
    }

    fn check_files(&self) -> bool {
        self.guard.files_in_place()
    }

    /// The database file plus its WAL.
    fn size_bytes(&self) -> u64 {
        [&self.db_path, &self.wal_path]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    fn take_work_notices(&self) -> Option<mpsc::UnboundedReceiver<WorkNotice>> {
        self.notices.lock().expect("lock").take()
    }

    fn wake(&self, sink: String, partition: String) {
        let _ = self.wake.send((sink, partition));
    }

    fn close(&self) {
        self.tx.lock().expect("journal sender lock").take();
        if let Some(stop) = self.checkpointer.lock().expect("lock").take() {
            stop.stop();
        }
        let threads = std::mem::take(&mut *self.threads.lock().expect("lock"));
        for t in threads {
            let _ = t.join();
        }
        tracing::info!("journal closed");
    }

    fn backup(&self, dest: &Path) -> Result<super::BackupDone, StoreError> {
        backup::backup(&self.reader, &self.db_path, dest)
    }

    /// One server per file (the process lock): its duties are its own.
    async fn take_duty(&self, _: &str, _: &str, _: i64, _: i64) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn release_duty(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// One server per file: it holds every lane, and what it learns stays
    /// in its memory; nothing to share.
    async fn take_lane(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: i64,
    ) -> Result<Option<Option<String>>, StoreError> {
        Ok(Some(None))
    }

    async fn release_lane(&self, _: &str, _: &str, _: Option<String>) -> Result<(), StoreError> {
        Ok(())
    }

    async fn lane_notes(&self, _: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(Vec::new())
    }

    /// One server per file: itself.
    async fn heartbeat(&self, _: &str, _: i64, _: i64) -> Result<usize, StoreError> {
        Ok(1)
    }

    async fn report(&self, holder: &str, body: String, now_ms: i64) -> Result<(), StoreError> {
        let holder = holder.to_string();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO replica_reports (holder, reported_at_ms, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (holder) DO UPDATE
                 SET reported_at_ms = excluded.reported_at_ms, body = excluded.body",
            )?
            .execute(rusqlite::params![holder, now_ms, body])?;
            tx.prepare_cached("DELETE FROM replica_reports WHERE reported_at_ms < ?1")?
                .execute([now_ms - 86_400_000])?;
            Ok(())
        })
        .await
    }

    async fn replica_reports(&self) -> Result<Vec<(String, i64, String)>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT holder, reported_at_ms, body FROM replica_reports
                 ORDER BY reported_at_ms DESC",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect()
        })
        .await
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Read(e.to_string())
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
