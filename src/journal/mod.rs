//! The SQLite journal: the narrow storage interface the rest of gatehouse
//! uses. Writes go through one group-commit writer thread; reads go through
//! an r2d2 pool and run on blocking threads, never on the async executor.

mod checkpoint;
mod guard;
mod lock;
pub mod model;
mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

pub use guard::Health;
pub use lock::LockError;
pub use model::{Appended, ContentKind, DeliveryMeta, DeliveryRow, NewDelivery, ParseStatus};
pub use reader::{COLUMNS as DELIVERY_COLUMNS, Payload, Reader, row_to_delivery};
pub use schema::{SchemaError, configure, latest_version};

use crate::metrics::JournalMetrics;
use writer::{Command, ExecOp, Writer};
pub use writer::{WorkNotice, fan_out};

/// Appends wait here when the writer is behind; the bound turns a flood into
/// backpressure on the HTTP side instead of unbounded memory.
const QUEUE_CAPACITY: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal cannot be written now (disk full, I/O error). Callers
    /// answer 503 and acknowledge nothing.
    #[error("journal cannot be written: {0}")]
    Unavailable(String),
    #[error("journal is shut down")]
    Closed,
    #[error("journal read failed: {0}")]
    Read(String),
}

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

/// How a journal is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// A WAL past this is checkpointed by the writer and cut back to it.
    pub wal_limit_bytes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            wal_limit_bytes: writer::DEFAULT_WAL_LIMIT_BYTES,
        }
    }
}

/// A handle to the open journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
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
    _lock: lock::ProcessLock,
}

impl Journal {
    /// [`Journal::open_with`] with the default options.
    pub fn open(path: &Path, metrics: JournalMetrics) -> Result<Journal, OpenError> {
        Journal::open_with(path, metrics, Options::default())
    }

    /// Opens (creating if needed) the database at `path`, takes the process
    /// lock, checks the file for corrupt pages, applies migrations and
    /// starts the writer. Every file is private (0700 directory, 0600
    /// files). Blocking: call it from a blocking context.
    pub fn open_with(
        path: &Path,
        metrics: JournalMetrics,
        options: Options,
    ) -> Result<Journal, OpenError> {
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
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (notices, notices_rx) = mpsc::unbounded_channel();
        let writer = Writer {
            conn,
            rx,
            guard: guard.clone(),
            metrics,
            wal_path: wal_path.clone(),
            notices: notices.clone(),
            wal_limit: options.wal_limit_bytes,
            wal_over: false,
        };
        let writer_thread = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run())
            .expect("spawn journal writer thread");
        let (stop, checkpoint_thread) = checkpoint::spawn(path).map_err(open_err)?;
        tracing::info!(path = %path.display(), lock = %lock.path().display(), "journal open");
        Ok(Journal {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                guard,
                reader,
                db_path: path.to_path_buf(),
                wal_path,
                threads: Mutex::new(vec![writer_thread, checkpoint_thread]),
                checkpointer: Mutex::new(Some(stop)),
                notices: Mutex::new(Some(notices_rx)),
                wake: notices,
                _lock: lock,
            }),
        })
    }

    fn sender(&self) -> Result<mpsc::Sender<Command>, JournalError> {
        self.inner
            .tx
            .lock()
            .expect("journal sender lock")
            .clone()
            .ok_or(JournalError::Closed)
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(writer::Reply<T>) -> Command,
    ) -> Result<T, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(make(reply))
            .await
            .map_err(|_| JournalError::Closed)?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Journals a delivery. Returns only once it is durably committed (or
    /// known to be a duplicate, or known to have failed).
    pub async fn append(&self, delivery: NewDelivery) -> Result<Appended, JournalError> {
        self.request(|reply| Command::Append(Box::new(delivery), reply))
            .await
    }

    /// A tiny write through the writer: succeeds only if the journal can
    /// commit right now.
    pub async fn probe(&self) -> Result<(), JournalError> {
        self.request(Command::Probe).await
    }

    /// Deletes up to `limit` deliveries received before `before_ms`.
    pub async fn prune(&self, before_ms: i64, limit: usize) -> Result<usize, JournalError> {
        self.request(|reply| Command::Prune {
            before_ms,
            limit,
            reply,
        })
        .await
    }

    /// Runs `f` inside the writer's next group commit and returns its value
    /// once the transaction is durably committed. For writes whose SQL
    /// belongs to another module (the scheduler's jobs and leases).
    pub async fn exec<T, F>(&self, f: F) -> Result<T, JournalError>
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

    /// The stream of (sink, partition) pairs that just got a job; one
    /// taker (the scheduler).
    pub fn take_work_notices(&self) -> Option<mpsc::UnboundedReceiver<WorkNotice>> {
        self.inner.notices.lock().expect("lock").take()
    }

    /// Tells the scheduler that (sink, partition) has new work now (a
    /// retry committed through [`Journal::exec`]), rather than at its next
    /// rescan.
    pub fn wake(&self, sink: String, partition: String) {
        let _ = self.inner.wake.send((sink, partition));
    }

    /// False after a failed commit, until a later commit succeeds; and for
    /// good once the file is gone or corrupt.
    pub fn is_writable(&self) -> bool {
        self.inner.guard.is_writable()
    }

    /// Writable, unwritable for now, or lost or corrupt for good.
    pub fn health(&self) -> Health {
        self.inner.guard.health()
    }

    /// Checks that the journal's path still names its open file (one stat
    /// each): without traffic, nothing else would notice a deleted file.
    pub fn check_files(&self) -> bool {
        self.inner.guard.files_in_place()
    }

    pub fn reader(&self) -> &Reader {
        &self.inner.reader
    }

    /// Bytes on disk: the database file plus its WAL.
    pub fn size_bytes(&self) -> u64 {
        [&self.inner.db_path, &self.inner.wal_path]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Stops taking appends, lets the writer commit everything queued,
    /// checkpoints, and waits for the threads. Blocking.
    pub fn close(&self) {
        self.inner.tx.lock().expect("journal sender lock").take();
        if let Some(stop) = self.inner.checkpointer.lock().expect("lock").take() {
            stop.stop();
        }
        let threads = std::mem::take(&mut *self.inner.threads.lock().expect("lock"));
        for t in threads {
            let _ = t.join();
        }
        tracing::info!("journal closed");
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
