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

/// How much of what GitHub attempted from one source since a time the
/// journal holds: the completeness of "never miss a webhook".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Completeness {
    pub source: String,
    /// Deliveries (distinct GUIDs) walks read in GitHub's log.
    pub attempted: i64,
    /// Found missing by a walk and in the journal since (redelivered).
    pub recovered: i64,
    /// Found missing by a walk and still not in the journal.
    pub missing: i64,
    /// When GitHub first tried the oldest delivery still missing.
    pub oldest_missing_ms: Option<i64>,
}

impl Completeness {
    /// Deliveries GitHub attempted that the journal holds.
    pub fn held(&self) -> i64 {
        self.attempted.max(self.missing) - self.missing
    }

    /// The part held, from 0 to 1 (1 when nothing was attempted).
    pub fn ratio(&self) -> f64 {
        let attempted = self.attempted.max(self.missing);
        if attempted == 0 {
            1.0
        } else {
            self.held() as f64 / attempted as f64
        }
    }

    /// Every source's counts summed (the oldest missing of all).
    pub fn total(all: &[Completeness]) -> Completeness {
        all.iter()
            .fold(Completeness::default(), |t, c| Completeness {
                source: "all".into(),
                attempted: t.attempted + c.attempted.max(c.missing),
                recovered: t.recovered + c.recovered,
                missing: t.missing + c.missing,
                oldest_missing_ms: match (t.oldest_missing_ms, c.oldest_missing_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            })
    }

    /// Counts from the seen totals and the found rows (source, delivered
    /// at, in the journal now): the one reading both backends share.
    pub fn tally(seen: Vec<(String, i64)>, found: Vec<(String, i64, bool)>) -> Vec<Completeness> {
        let mut by: std::collections::BTreeMap<String, Completeness> = seen
            .into_iter()
            .map(|(source, attempted)| {
                let c = Completeness {
                    source: source.clone(),
                    attempted,
                    ..Completeness::default()
                };
                (source, c)
            })
            .collect();
        for (source, at, journaled) in found {
            let c = by.entry(source.clone()).or_insert_with(|| Completeness {
                source,
                ..Completeness::default()
            });
            if journaled {
                c.recovered += 1;
            } else {
                c.missing += 1;
                c.oldest_missing_ms = Some(c.oldest_missing_ms.map_or(at, |o| o.min(at)));
            }
        }
        by.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness_counts_held_recovered_and_missing() {
        let all = Completeness::tally(
            vec![("app:1".into(), 1000), ("hook:o:2".into(), 10)],
            vec![
                ("app:1".into(), 50, true),
                ("app:1".into(), 70, false),
                ("app:1".into(), 60, false),
                ("hook:o:2".into(), 5, true),
            ],
        );
        assert_eq!(all[0].source, "app:1");
        assert_eq!((all[0].recovered, all[0].missing), (1, 2));
        assert_eq!(all[0].oldest_missing_ms, Some(60));
        assert_eq!(all[0].held(), 998);
        assert!((all[0].ratio() - 0.998).abs() < 1e-9);
        assert_eq!(all[1].ratio(), 1.0);
        let t = Completeness::total(&all);
        assert_eq!((t.attempted, t.missing, t.recovered), (1010, 2, 2));
        assert_eq!(Completeness::default().ratio(), 1.0);
    }
}
