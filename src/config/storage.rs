//! The `[storage]` section: the journal.

use std::path::PathBuf;

use serde::Deserialize;

use super::DEFAULT_DB_PATH;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// Deliveries older than this are pruned; 0 keeps everything.
    pub retention_days: u32,
    /// A write-ahead log past this is checkpointed by the writer, and its
    /// file cut back to this size once no reader needs its older frames.
    pub wal_limit_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from(DEFAULT_DB_PATH),
            retention_days: 30,
            wal_limit_bytes: 256 * 1024 * 1024,
        }
    }
}
