//! `[[routes]]`: forward routes to internal consumers.

use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

/// Whether a failing job holds up the rest of its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// A failing head blocks its partition until it succeeds or dies.
    #[default]
    Strict,
    /// Failed jobs step aside; later ones go ahead.
    None,
}

/// A forward sink: one internal consumer that receives matching deliveries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    pub url: String,
    /// Event names; empty = all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Payload actions; empty = all.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Repository full names, `*` matching any run of characters
    /// (`"octo-org/*"`); empty = all.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Re-sign `X-Hub-Signature-256` with this; absent = pass GitHub's through.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default = "default_route_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub ordering: Ordering,
}

fn default_route_timeout() -> u64 {
    10
}

fn default_max_attempts() -> u32 {
    12
}
