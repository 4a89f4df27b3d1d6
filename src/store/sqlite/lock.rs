//! One process owns a database file. A second `gatehouse serve` on the same
//! file would run a second group-commit writer and a second scheduler over
//! the same leases, so it is refused with a clear message instead.
//!
//! The lock is taken on the database file itself (flock, which SQLite's
//! own fcntl locks do not touch), so a symlink or a hard link to it names
//! the same lock whatever path a second process was given; and on
//! `<canonical path>.lock`, which holds the owner's pid for the message
//! and is what releases before part 10 locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Holds the locks for as long as it lives. The kernel drops them when the
/// process dies, even by kill -9, so a crash never leaves a stale lock.
#[derive(Debug)]
pub struct ProcessLock {
    _db: File,
    _pid: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "database {db} is in use by another gatehouse process{}; stop it first, or point [storage] path at another file",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    InUse { db: PathBuf, pid: Option<u32> },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn try_lock(file: &File) -> Result<bool, std::io::Error> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

impl ProcessLock {
    /// Creates the database file (0600) when missing, then locks it.
    pub fn acquire(db_path: &Path) -> Result<ProcessLock, LockError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { path, source }
        };
        crate::files::private_file(db_path).map_err(io(db_path))?;
        let db = File::open(db_path).map_err(io(db_path))?;
        let canonical = std::fs::canonicalize(db_path).map_err(io(db_path))?;
        let mut name = canonical.into_os_string();
        name.push(".lock");
        let path = PathBuf::from(name);
        let mut pid = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(crate::files::FILE_MODE)
            .open(&path)
            .map_err(io(&path))?;
        let db_free = try_lock(&db).map_err(io(db_path))?;
        if !db_free || !try_lock(&pid).map_err(io(&path))? {
            let mut text = String::new();
            let _ = pid.read_to_string(&mut text);
            return Err(LockError::InUse {
                db: db_path.to_path_buf(),
                pid: text.trim().parse().ok(),
            });
        }
        // The pid is only for the message a second process prints.
        pid.set_len(0).map_err(io(&path))?;
        pid.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        write!(pid, "{}", std::process::id()).map_err(io(&path))?;
        Ok(ProcessLock {
            _db: db,
            _pid: pid,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_to_the_file_meets_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.db");
        let held = ProcessLock::acquire(&db).unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        let hard = dir.path().join("hard.db");
        std::fs::hard_link(&db, &hard).unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let via_dir = elsewhere.path().join("d");
        std::os::unix::fs::symlink(dir.path(), &via_dir).unwrap();
        // Symlinks resolve to the same pid file; a hard link has no path
        // in common, but the same inode.
        for (other, pid_known) in [(link, true), (via_dir.join("g.db"), true), (hard, false)] {
            match ProcessLock::acquire(&other) {
                Err(LockError::InUse { pid, .. }) => {
                    assert_eq!(pid, pid_known.then(std::process::id), "{}", other.display())
                }
                r => panic!("{}: {r:?}", other.display()),
            }
        }
        drop(held);
        assert!(ProcessLock::acquire(&dir.path().join("hard.db")).is_ok());
    }
}
