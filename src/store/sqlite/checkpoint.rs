//! WAL checkpoints on their own thread and connection. The writer has
//! autocheckpoint off, so no commit pays for copying pages back into the
//! database file; a PASSIVE checkpoint here never blocks the writer.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::schema;

const INTERVAL: Duration = Duration::from_millis(500);

pub struct Stop(mpsc::Sender<()>);

impl Stop {
    pub fn stop(self) {
        let _ = self.0.send(());
    }
}

pub fn spawn(path: &Path) -> rusqlite::Result<(Stop, JoinHandle<()>)> {
    let conn = Connection::open(path)?;
    schema::configure(&conn)?;
    let (tx, rx) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("journal-checkpoint".into())
        .spawn(move || {
            // Ends on an explicit stop or when the journal is dropped.
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(INTERVAL) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "background checkpoint failed");
                }
            }
        })
        .expect("spawn checkpoint thread");
    Ok((Stop(tx), handle))
}
