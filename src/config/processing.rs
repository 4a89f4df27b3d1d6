//! The `[processing]` section: the scheduler.

use serde::Deserialize;

/// The scheduler: how many partitions are worked on at once, how long a
/// lease lasts without renewal, and how many jobs one lease takes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    pub workers: usize,
    pub lease_secs: u64,
    pub batch_size: usize,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            workers: 16,
            lease_secs: 30,
            batch_size: 50,
        }
    }
}
