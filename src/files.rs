//! Files that hold deliveries, cached answers (private repositories' too)
//! and secrets are private to the service: directories 0700, files 0600,
//! whatever the umask, and tightened when an older release or a loose
//! umask left them readable by others.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const DIR_MODE: u32 = 0o700;
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents, 0700) or tightens an existing one
/// to 0700.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    tighten(dir, DIR_MODE)
}

/// Makes sure `path` exists as a private file (created empty, 0600), or
/// tightens an existing one.
pub fn private_file(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(path, FILE_MODE)
}

/// Takes group and other permissions off `path` when it has any, saying
/// so once. A missing file is fine (SQLite creates its -wal and -shm
/// lazily).
pub fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let current = meta.mode() & 0o777;
    if current & 0o077 != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(mode))?;
        tracing::info!(
            path = %path.display(),
            from = format!("{current:o}"),
            to = format!("{mode:o}"),
            "tightened permissions"
        );
    }
    Ok(())
}

/// A file's identity: its device and inode. A path that no longer names
/// the file a process holds open (deleted, or replaced by another) has
/// another identity, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub fn of(path: &Path) -> io::Result<FileId> {
        let m = std::fs::metadata(path)?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn files_and_dirs_are_private_whatever_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b");
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, Permissions::from_mode(0o755)).unwrap();
        private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700, "an existing directory is tightened");
        let f = data.join("db");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).unwrap();
        private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"x", "kept, not truncated");
        let new = data.join("new");
        private_file(&new).unwrap();
        assert_eq!(mode(&new), 0o600);
    }

    #[test]
    fn a_replaced_file_has_another_identity() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("db");
        std::fs::write(&f, b"x").unwrap();
        let id = FileId::of(&f).unwrap();
        assert_eq!(FileId::of(&f).unwrap(), id);
        // Moved aside (its inode stays in use) and replaced by a new file.
        std::fs::rename(&f, dir.path().join("aside")).unwrap();
        assert!(FileId::of(&f).is_err(), "deleted: no identity");
        std::fs::write(&f, b"x").unwrap();
        assert_ne!(FileId::of(&f).unwrap(), id);
    }
}
