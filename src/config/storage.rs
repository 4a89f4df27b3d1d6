//! The `[storage]` section: the embedded SQLite journal (`path`, the
//! default), or a PostgreSQL database several replicas share (`url`).

use std::path::PathBuf;

use serde::Deserialize;

use super::DEFAULT_DB_PATH;
use super::secret::Secret;
use crate::store::Location;
use crate::store::postgres::Target;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The SQLite journal; with `url`, the directory beside it still holds
    /// this replica's own files (generated secrets, the gateway cache).
    pub path: PathBuf,
    /// PostgreSQL instead of SQLite: `postgres://user@host:port/db`, with
    /// `sslmode` and the other libpq keys as query parameters.
    pub url: Option<Secret>,
    /// The URL read from a file (a systemd credential), for when it holds
    /// the password.
    pub url_file: Option<PathBuf>,
    /// The password read from a file, kept out of the URL.
    pub password_file: Option<PathBuf>,
    /// Read from `password_file`.
    #[serde(skip)]
    pub password: Option<Secret>,
    /// Deliveries older than this are pruned; 0 keeps everything. Their
    /// dedupe keys are kept at least as long as GitHub may redeliver them
    /// (3 days; 7 with a GitHub Enterprise Server upstream).
    pub retention_days: u32,
    /// A write-ahead log past this is checkpointed by the writer, and its
    /// file cut back to this size once no reader needs its older frames.
    pub wal_limit_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from(DEFAULT_DB_PATH),
            url: None,
            url_file: None,
            password_file: None,
            password: None,
            retention_days: 30,
            wal_limit_bytes: 256 * 1024 * 1024,
        }
    }
}

impl StorageConfig {
    /// Whether the store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.url.is_some() || self.url_file.is_some()
    }

    /// The PostgreSQL target, once `url` (or `url_file`, read) and the
    /// password are known; a URL that does not parse says why.
    pub fn postgres(&self) -> Option<Result<Target, String>> {
        let url = self.url.as_ref()?;
        let url = std::str::from_utf8(url.expose()).unwrap_or_default();
        let password = self
            .password
            .as_ref()
            .map(|p| std::str::from_utf8(p.expose()).unwrap_or_default());
        Some(Target::new(url, password))
    }

    /// Where the store is. For PostgreSQL, call after the secret files were
    /// read (a config that loaded has a valid target).
    pub fn location(&self) -> Location {
        match self.postgres() {
            Some(Ok(target)) => Location::Postgres(target),
            _ => Location::Sqlite(self.path.clone()),
        }
    }

    /// A name for the store in logs and pages, never its password.
    pub fn describe(&self) -> String {
        match self.postgres() {
            Some(Ok(target)) => target.describe(),
            _ => self.path.display().to_string(),
        }
    }
}
