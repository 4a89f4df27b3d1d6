//! The SQLite journal: the narrow storage interface the rest of gatehouse
//! uses. Writes go through one group-commit writer thread; reads go through
//! an r2d2 pool and run on blocking threads, never on the async executor.

mod checkpoint;
mod lock;
pub mod model;
mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

pub use lock::LockError;
pub use model::{Appended, ContentKind, DeliveryMeta, DeliveryRow, NewDelivery, ParseStatus};
pub use reader::{Payload, Reader};
pub use schema::{SchemaError, configure, latest_version};

use crate::metrics::JournalMetrics;
pub use writer::WorkNotice;
use writer::{Command, ExecOp, Writer};

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
}

/// A handle to the open journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    writable: Arc<AtomicBool>,
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
    /// Opens (creating if needed) the database at `path`, takes the process
    /// lock, applies migrations and starts the writer. Blocking: call it
    /// from a blocking context.
    pub fn open(path: &Path, metrics: JournalMetrics) -> Result<Journal, OpenError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OpenError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let lock = lock::ProcessLock::acquire(path)?;
        let open_err = |source| OpenError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        schema::configure(&conn).map_err(open_err)?;
        schema::enable_wal(&conn)?;
        // Checkpoints run on their own thread, off the commit path: each
        // one would add 10-35 ms to the commit that meets it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(open_err)?;
        schema::migrate(&mut conn)?;

        let reader = Reader::open(path).map_err(|source| OpenError::Pool {
            path: path.to_path_buf(),
            source,
        })?;
        let wal_path = sibling(path, "-wal");
        let writable = Arc::new(AtomicBool::new(true));
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (notices, notices_rx) = mpsc::unbounded_channel();
        let writer = Writer {
            conn,
            rx,
            writable: writable.clone(),
            metrics,
            wal_path: wal_path.clone(),
            notices: notices.clone(),
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
                writable,
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

    /// False after a failed commit, until a later commit succeeds.
    pub fn is_writable(&self) -> bool {
        self.inner.writable.load(Ordering::SeqCst)
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
