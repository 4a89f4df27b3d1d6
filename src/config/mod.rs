//! Configuration: one TOML file, one struct tree, defaults in one place.
//!
//! Unknown keys and bad values are errors that name the key and the line, so
//! an operator can fix a file without reading our source. Every secret `x`
//! has an `x_file` twin so systemd credentials (`LoadCredential=`) work.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod load;
pub mod validate;

mod actions;
mod admin;
mod gateway;
mod github;
mod log;
mod problems;
mod processing;
mod recovery;
mod routes;
mod secret;
mod server;
mod storage;
mod webhooks;

pub use actions::{ACTIONS_SINK, ActionsMetricsConfig};
pub use admin::AdminConfig;
pub use gateway::{FreshRule, GatewayConfig};
pub use github::{GithubAppConfig, GithubConfig, GithubHookConfig, GithubTokenConfig, Purpose};
pub use log::{LogConfig, LogFormat};
pub use problems::{NotifyConfig, ProblemsConfig};
pub use processing::{LEASE_MARGIN_SECS, ProcessingConfig};
pub use recovery::{GHES_WINDOW_HOURS, GITHUB_WINDOW_HOURS, RecoveryConfig};
pub use routes::{
    BatchConfig, BatchFormat, Batching, BreakerConfig, Coalesce, DEFAULT_RETRY, OnDeadConfig,
    Ordering, RouteConfig, Schedule,
};
pub use secret::Secret;
pub use server::ServerConfig;
pub use storage::StorageConfig;
pub use webhooks::{PartitionBy, WebhooksConfig};

pub(crate) use load::expand_credentials_dir;
pub use load::{ConfigError, Problem, Secrets, read_secret_file};

/// The listen address and database path of the embedded default (DESIGN.md).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DB_PATH: &str = "gatehouse-data/gatehouse.db";

/// GitHub caps webhook payloads at 25 MB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 25 * 1024 * 1024;

/// Far above anything GitHub sends; a guard against a typo that would let a
/// sender make us buffer gigabytes.
pub(crate) const MAX_MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub webhooks: WebhooksConfig,
    pub log: LogConfig,
    pub processing: ProcessingConfig,
    pub routes: Vec<RouteConfig>,
    pub github: GithubConfig,
    /// The API gateway; absent = no gateway listener.
    pub gateway: Option<GatewayConfig>,
    pub actions_metrics: ActionsMetricsConfig,
    pub recovery: RecoveryConfig,
    pub admin: AdminConfig,
    pub problems: ProblemsConfig,
    /// Where open and cleared problems are posted (none: nowhere).
    pub notify: Vec<NotifyConfig>,
    /// The file this was read from (None: the embedded default or text),
    /// and when: what `gatehouse status` shows.
    #[serde(skip)]
    pub source: Option<(PathBuf, i64)>,
}

impl Config {
    /// Where the gateway's cache lives.
    pub fn gateway_cache_path(&self) -> Option<PathBuf> {
        let g = self.gateway.as_ref()?;
        if !g.cache_path.as_os_str().is_empty() {
            return Some(g.cache_path.clone());
        }
        Some(
            self.storage
                .path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("gateway-cache.db"),
        )
    }
}
