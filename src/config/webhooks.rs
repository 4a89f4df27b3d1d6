//! The `[webhooks]` section: secrets and partitioning.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::{DEFAULT_MAX_BODY_BYTES, Secret};

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    pub secrets: Vec<Secret>,
    pub secret_files: Vec<PathBuf>,
    pub max_body_bytes: u64,
    pub partition_by: PartitionBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PartitionBy {
    #[default]
    Owner,
    Repository,
}

impl fmt::Debug for WebhooksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhooksConfig")
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("secret_files", &self.secret_files)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("partition_by", &self.partition_by)
            .finish()
    }
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            secrets: Vec::new(),
            secret_files: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            partition_by: PartitionBy::Owner,
        }
    }
}
