//! `gatehouse backup PATH`: a consistent copy of a live journal.
//!
//! `VACUUM INTO` copies one read snapshot (WAL lets the server keep
//! writing meanwhile, and unlike the online backup API it never restarts
//! when the source changes). The copy is written beside PATH, checked with
//! `PRAGMA integrity_check`, synced, and only then renamed to PATH, so PATH
//! is either absent or a whole, checked journal.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::Connection;

use super::reader::Reader;
use crate::store::{BackupDone, StoreError};

pub fn backup(reader: &Reader, source: &Path, dest: &Path) -> Result<BackupDone, StoreError> {
    if dest.exists() {
        return Err(StoreError::Invalid(format!(
            "{} exists: give a new file (a backup never overwrites)",
            dest.display()
        )));
    }
    let tmp = partial_path(dest);
    let _ = std::fs::remove_file(&tmp);
    // VACUUM INTO writes into an empty file: made here, so the copy is
    // private (0600) whatever the umask.
    crate::files::private_file(&tmp)
        .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", tmp.display())))?;
    let total: u64 = [source.to_path_buf(), wal_of(source)]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let (done, tmp) = (done.clone(), tmp.clone());
        std::thread::spawn(move || {
            // The copy's size against the source's: an estimate (the copy
            // is vacuumed), but it shows the copy is moving.
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                if let Ok(m) = std::fs::metadata(&tmp) {
                    eprint!(
                        "\r  copied {:.0} MB of about {:.0} MB",
                        m.len() as f64 / 1e6,
                        total as f64 / 1e6
                    );
                }
            }
        })
    };
    let into = tmp.to_string_lossy().into_owned();
    // A pooled connection is query-only; VACUUM INTO writes only the copy.
    let copied = reader.query(|c| {
        c.pragma_update(None, "query_only", false)?;
        let done = c.execute("VACUUM INTO ?1", [&into]);
        c.pragma_update(None, "query_only", true)?;
        done
    });
    done.store(true, Ordering::SeqCst);
    let _ = progress.join();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&tmp);
        return Err(StoreError::Unavailable(format!(
            "copy failed (nothing written to {}): {e}",
            dest.display()
        )));
    }
    eprintln!();
    let check = Connection::open(&tmp)
        .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0)))
        .map_err(|e| e.to_string());
    match check {
        Ok(ok) if ok == "ok" => {}
        other => {
            let _ = std::fs::remove_file(&tmp);
            return Err(StoreError::Unavailable(format!(
                "the copy failed its integrity check: {other:?}"
            )));
        }
    }
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|_| std::fs::rename(&tmp, dest))
        .map_err(|e| StoreError::Unavailable(format!("cannot finish {}: {e}", dest.display())))?;
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    let deliveries: i64 = Connection::open(dest)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)))
        .unwrap_or(0);
    Ok(BackupDone { bytes, deliveries })
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn wal_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}
