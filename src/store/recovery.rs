//! Recovery's records: walks of GitHub's delivery logs (with their resume
//! point), the redeliveries asked for, and CLI triggers.

use serde::Serialize;

/// Where a walk stands (stored as its lowercase name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WalkState {
    /// Under way, or interrupted (a crash, a failed page): resumed next.
    Running,
    Complete,
    /// Replaced by a manual walk (`recovery run --since`).
    Abandoned,
}

impl WalkState {
    pub fn as_str(self) -> &'static str {
        match self {
            WalkState::Running => "running",
            WalkState::Complete => "complete",
            WalkState::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<WalkState> {
        [
            WalkState::Running,
            WalkState::Complete,
            WalkState::Abandoned,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
    }
}

impl std::fmt::Display for WalkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A walk of one source's delivery log, as far as it has gone.
#[derive(Debug, Clone, Serialize)]
pub struct Walk {
    pub id: i64,
    pub source: String,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub state: WalkState,
    pub since_ms: i64,
    pub stop_at_id: Option<i64>,
    pub cursor: Option<String>,
    pub newest_id: Option<i64>,
    pub pages: i64,
    pub seen: i64,
    pub missing: i64,
    pub requested: i64,
    pub failures: i64,
    pub last_error: Option<String>,
}

/// Per source: its latest walk, when its last complete walk finished, and
/// how many redeliveries wait to be asked again.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub source: String,
    pub last_walk: Walk,
    pub last_complete_at_ms: Option<i64>,
    pub failed_requests: i64,
    pub requests_total: i64,
    /// Redelivery requests by outcome: found (not yet asked), asking,
    /// asked, failed, arrived.
    pub requests: std::collections::BTreeMap<String, i64>,
}

impl SourceStatus {
    /// A source's status from its latest walk, when its last complete walk
    /// finished, and its requests counted by outcome.
    pub fn new(
        last_walk: Walk,
        last_complete_at_ms: Option<i64>,
        requests: std::collections::BTreeMap<String, i64>,
    ) -> SourceStatus {
        SourceStatus {
            source: last_walk.source.clone(),
            last_walk,
            last_complete_at_ms,
            failed_requests: requests.get("failed").copied().unwrap_or(0),
            requests_total: requests.values().sum(),
            requests,
        }
    }
}
