//! The admin password: an argon2id hash in PHC form (`$argon2id$v=19$...`),
//! configured, in a file, or generated on the embedded default's first start.

use std::path::Path;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::config::AdminConfig;

/// Hashes `password` with argon2id's recommended parameters and a fresh salt.
pub fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 hashing with default parameters")
        .to_string()
}

/// True when `password` matches `phc`. Slow by design (tens of ms): call it
/// off the async executor.
pub fn verify(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A new random password: 20 characters from an alphabet without
/// look-alikes (about 100 bits).
pub fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    rand::fill(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// Why the configured hash file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HashFileError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a password hash (write one with `gatehouse admin set-password`): {reason}"
    )]
    NotAHash {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// The configured hash: `password_hash`, else the hash file (configured or
/// beside the journal). None when there is none yet.
pub fn load(config: &AdminConfig, db_path: &Path) -> Result<Option<String>, HashFileError> {
    if let Some(h) = &config.password_hash {
        return Ok(Some(h.clone()));
    }
    let path = config.hash_path(db_path);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound && config.password_hash_file.is_none() =>
        {
            return Ok(None);
        }
        Err(source) => return Err(HashFileError::Unreadable { path, source }),
    };
    let phc = text.trim().to_string();
    if let Err(e) = PasswordHash::new(&phc) {
        return Err(HashFileError::NotAHash {
            path,
            reason: e.to_string(),
        });
    }
    Ok(Some(phc))
}

/// Writes `phc` to `path` (mode 0600), replacing what was there.
pub fn store(path: &Path, phc: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    // Write beside and rename, so a crash never leaves half a hash.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(f, "{phc}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "correct horsE"));
        assert!(!verify("not a hash", "correct horse"));
    }

    #[test]
    fn generated_passwords_differ_and_are_long() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
    }

    #[test]
    fn load_reads_the_file_beside_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.db");
        let cfg = AdminConfig::default();
        assert_eq!(load(&cfg, &db).unwrap(), None);
        let h = hash("pw");
        store(&cfg.hash_path(&db), &h).unwrap();
        assert_eq!(load(&cfg, &db).unwrap(), Some(h));
        std::fs::write(cfg.hash_path(&db), "garbage").unwrap();
        let e = load(&cfg, &db).unwrap_err();
        assert!(matches!(e, HashFileError::NotAHash { .. }), "{e}");
        assert!(e.to_string().contains("set-password"), "{e}");
        let missing = AdminConfig {
            password_hash_file: Some(dir.path().join("nope")),
            ..AdminConfig::default()
        };
        let e = load(&missing, &db).unwrap_err();
        assert!(matches!(e, HashFileError::Unreadable { .. }), "{e}");
    }
}
