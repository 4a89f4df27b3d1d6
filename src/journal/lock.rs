//! One process owns a database file. A second `gatehouse serve` on the same
//! file would run a second group-commit writer and a second scheduler over
//! the same leases, so it is refused with a clear message instead.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Holds an exclusive advisory lock on `<db>.lock` for as long as it lives.
/// The kernel drops the lock when the process dies, even by kill -9, so a
/// crash never leaves a stale lock behind.
#[derive(Debug)]
pub struct ProcessLock {
    _file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "database {db} is in use by another gatehouse process{}; stop it first, or point [storage] path at another file",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { db: PathBuf, pid: Option<u32> },
    #[error("cannot open lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ProcessLock {
    pub fn acquire(db_path: &Path) -> Result<ProcessLock, LockError> {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::InUse {
                    db: db_path.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // The pid is only for the message a second process prints.
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(ProcessLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}
