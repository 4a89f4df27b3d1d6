//! What the journal knows of its own health beyond "the last commit
//! worked": that its file is still the one on disk, and that it is not
//! corrupt. Both are sticky: a deleted or replaced file and a corrupt page
//! end acknowledgements until an operator restarts (after restoring).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::files::FileId;

/// The journal's state, as `/readyz`, the metrics and the admin UI say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Writable,
    /// The last commit failed (disk full, I/O error); probes retry.
    Unwritable,
    /// The path no longer names the open file: SQLite would go on writing
    /// to an unlinked inode, and every acknowledgement would be lost at
    /// restart.
    Lost,
    /// SQLite found a corrupt page.
    Corrupt,
}

impl Health {
    /// What `/readyz` and the logs say.
    pub fn describe(self) -> &'static str {
        match self {
            Health::Writable => "ready",
            Health::Unwritable => "journal not writable",
            Health::Lost => {
                "the journal file was deleted or replaced while gatehouse ran: nothing more is acknowledged; restore it from a backup if it is lost, then restart gatehouse"
            }
            Health::Corrupt => {
                "the journal is corrupt: restore it from a backup (gatehouse backup, README), then restart gatehouse"
            }
        }
    }
}

const FINE: u8 = 0;
const LOST: u8 = 1;
const CORRUPT: u8 = 2;

/// The database file and WAL as they were at open, and the state flags.
pub struct Guard {
    db: PathBuf,
    db_id: FileId,
    wal: PathBuf,
    wal_id: Option<FileId>,
    writable: AtomicBool,
    fault: AtomicU8,
}

impl Guard {
    /// Remembers which files `db` and its WAL are now.
    pub fn new(db: &Path, wal: &Path) -> std::io::Result<Guard> {
        Ok(Guard {
            db: db.to_path_buf(),
            db_id: FileId::of(db)?,
            wal: wal.to_path_buf(),
            wal_id: FileId::of(wal).ok(),
            writable: AtomicBool::new(true),
            fault: AtomicU8::new(FINE),
        })
    }

    pub fn health(&self) -> Health {
        match self.fault.load(Ordering::SeqCst) {
            LOST => Health::Lost,
            CORRUPT => Health::Corrupt,
            _ if self.writable.load(Ordering::SeqCst) => Health::Writable,
            _ => Health::Unwritable,
        }
    }

    pub fn is_writable(&self) -> bool {
        self.health() == Health::Writable
    }

    /// True while the paths still name the files opened. A stat each: the
    /// writer asks after every commit, before acknowledging it.
    pub fn files_in_place(&self) -> bool {
        if self.fault.load(Ordering::SeqCst) == LOST {
            return false;
        }
        let db_ok = FileId::of(&self.db).is_ok_and(|id| id == self.db_id);
        let wal_ok = self
            .wal_id
            .is_none_or(|want| FileId::of(&self.wal).is_ok_and(|id| id == want));
        if db_ok && wal_ok {
            return true;
        }
        if self.fault.swap(LOST, Ordering::SeqCst) != LOST {
            self.writable.store(false, Ordering::SeqCst);
            tracing::error!(path = %self.db.display(), "{}", Health::Lost.describe());
        }
        false
    }

    /// A commit failed; corruption is remembered for good.
    pub fn failed(&self, e: &rusqlite::Error) -> bool {
        if is_corrupt(e) && self.fault.swap(CORRUPT, Ordering::SeqCst) == FINE {
            tracing::error!(path = %self.db.display(), error = %e, "{}", Health::Corrupt.describe());
        }
        self.writable.swap(false, Ordering::SeqCst)
    }

    /// A commit succeeded (and the files are in place): was it unwritable?
    pub fn succeeded(&self) -> bool {
        !self.writable.swap(true, Ordering::SeqCst)
    }
}

/// SQLite's word for a damaged file.
pub fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}
