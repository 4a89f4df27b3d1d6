//! The `[admin]` section: the admin UI, its password and sessions.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::expand_credentials_dir;

/// The admin UI under `/admin/`. Its password is an argon2 hash (PHC string,
/// as `gatehouse admin set-password` writes): `password_hash`, or
/// `password_hash_file`, or else `admin-password.hash` beside the journal.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub enabled: bool,
    /// A listener of its own for the admin UI and `/metrics` (health is
    /// served there too); absent = they share `[server] listen`.
    pub listen: Option<SocketAddr>,
    pub password_hash: Option<String>,
    pub password_hash_file: Option<PathBuf>,
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: u64,
    /// Failed logins allowed per client address per minute; more wait.
    pub login_attempts_per_minute: u32,
    /// How operators reach the admin UI (`https://gatehouse.example.com`):
    /// the links in notifications. Empty: `http://` and the listen address.
    pub public_url: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: None,
            password_hash: None,
            password_hash_file: None,
            session_idle_minutes: 720,
            login_attempts_per_minute: 5,
            public_url: String::new(),
        }
    }
}

impl AdminConfig {
    /// Where `admin set-password` writes and, with no hash configured, where
    /// the server looks: the configured file, else beside the journal.
    pub fn hash_path(&self, db_path: &Path) -> PathBuf {
        self.password_hash_file
            .as_deref()
            .map(expand_credentials_dir)
            .unwrap_or_else(|| {
                db_path
                    .parent()
                    .unwrap_or_else(|| Path::new("."))
                    .join("admin-password.hash")
            })
    }
}
