//! The `[processing]` section: the scheduler.

use serde::Deserialize;

/// An attempt starts only if the lease, by this process's own monotonic
/// clock, outlives the route's timeout by this much; else the lease is
/// extended first (the trust window: a worker frozen past its lease must
/// not send after it passed on). A route's `timeout_secs` plus this must
/// fit in `lease_secs`.
pub const LEASE_MARGIN_SECS: u64 = 5;

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
