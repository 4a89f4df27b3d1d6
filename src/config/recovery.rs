//! The `[recovery]` section: walks of GitHub's delivery logs.

use serde::Deserialize;

/// Recovery of deliveries GitHub failed to make (it does not retry them):
/// each App's webhook and each `[[github.hooks]]` entry is walked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    pub enabled: bool,
    /// A walk at start and then every this many seconds.
    pub interval_secs: u64,
    /// How far back a first walk looks. Unset: GitHub's redelivery
    /// window, 7 days when the API says it is GitHub Enterprise Server
    /// (`/meta` names an `installed_version`), else 3.
    pub lookback_hours: Option<u64>,
    /// Deliveries per page of GitHub's delivery log (at most 100).
    pub per_page: u32,
    /// A GUID gatehouse asked to redeliver is not asked for again within
    /// this many seconds (its redelivery may be on its way, or failing too).
    pub reask_after_secs: u64,
}

/// GitHub's redelivery windows, in hours: github.com keeps a delivery
/// log 3 days, GitHub Enterprise Server 7.
pub const GITHUB_WINDOW_HOURS: u64 = 72;
pub const GHES_WINDOW_HOURS: u64 = 168;

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            enabled: true,
            interval_secs: 300,
            lookback_hours: None,
            per_page: 100,
            reask_after_secs: 3600,
        }
    }
}
