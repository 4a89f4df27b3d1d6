//! `[problems]`: when a condition becomes an open problem (the overview's
//! list, `gatehouse status`, notifications), and `[[notify]]`: where its
//! opening and clearing are posted. The defaults match the shipped alert
//! rules' (deploy/prometheus/gatehouse-alerts.yml).

use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProblemsConfig {
    /// A route whose oldest pending delivery waited longer than this.
    pub lag_secs: u64,
    /// Partitions paused (by a consumer or an operator) while their route's
    /// oldest pending delivery waited longer than this.
    pub paused_secs: u64,
    /// An Actions job queued (no runner took it) longer than this.
    pub queued_secs: u64,
    /// The part of GitHub's attempted deliveries the journal should hold
    /// over the redelivery window (0.999 = 99.9%).
    pub completeness_objective: f64,
    /// How often the server looks (and notifies).
    pub interval_secs: u64,
}

impl Default for ProblemsConfig {
    fn default() -> Self {
        ProblemsConfig {
            lag_secs: 900,
            paused_secs: 1800,
            queued_secs: 1800,
            completeness_objective: 0.999,
            interval_secs: 15,
        }
    }
}

/// One `[[notify]]` receiver: a JSON POST (`text`, Slack-compatible) when
/// a problem opens and when it clears.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Where to post (a Slack incoming webhook, say). A secret: never
    /// logged; prefer `url_file`.
    pub url: Option<Secret>,
    pub url_file: Option<PathBuf>,
    /// At most this many messages an hour to this receiver; changes past
    /// it are counted and told in the next message allowed.
    pub max_per_hour: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            url: None,
            url_file: None,
            max_per_hour: 30,
        }
    }
}
