//! Budget bookkeeping: per credential, what GitHub last reported of each
//! budget, and a pause after a secondary limit; from these, whether the
//! credential may be sent to now and what a request cost.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use http::{HeaderMap, StatusCode};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use super::credential::CredId;
use crate::github::budget::{self, Budget, Resource};

/// GitHub asks to wait at least a minute after a secondary limit that
/// names no time; later hits back off further.
const SECONDARY_BASE_SECS: u64 = 60;

#[derive(Default)]
pub(super) struct SlotState {
    pub budgets: HashMap<Resource, Budget>,
    /// Epoch ms on the pool's clock.
    pub paused_until_ms: Option<i64>,
    secondary_hits: u32,
}

/// One credential's lane: one permit, so one request in flight, and
/// tokio's semaphore queues waiters in order.
pub(super) struct Slot {
    pub id: CredId,
    pub lane: Semaphore,
    pub waiting: AtomicUsize,
    pub state: Mutex<SlotState>,
}

/// A credential's state as replicas share it (JSON on its lane row).
#[derive(Serialize, Deserialize)]
struct Notes {
    budgets: Vec<SharedBudget>,
    paused_until_ms: Option<i64>,
    secondary_hits: u32,
}

#[derive(Serialize, Deserialize)]
struct SharedBudget {
    resource: String,
    limit: u64,
    remaining: u64,
    reset: i64,
}

/// What one answer taught about its credential.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Observed {
    /// Rate-limit units the request spent.
    pub cost: u64,
    /// A secondary limit: the credential is paused this many seconds.
    pub paused_secs: Option<u64>,
}

impl Slot {
    pub fn new(id: CredId) -> Slot {
        Slot {
            id,
            lane: Semaphore::new(1),
            waiting: AtomicUsize::new(0),
            state: Mutex::default(),
        }
    }

    /// Remaining budget above `reserve`, or when (epoch seconds) it is
    /// usable again.
    pub fn usable(&self, resource: Resource, now_ms: i64, reserve: u64) -> Result<u64, i64> {
        let now = now_ms / 1000;
        let st = self.state.lock().expect("slot lock");
        if let Some(until) = st.paused_until_ms.filter(|u| *u > now_ms) {
            return Err((until + 999) / 1000);
        }
        match st.budgets.get(&resource) {
            Some(b) if b.exhausted(now) || (b.remaining <= reserve && b.reset > now) => {
                Err(b.reset)
            }
            Some(b) => Ok(b.remaining),
            // Not used yet: worth trying before any partly spent one.
            None => Ok(u64::MAX),
        }
    }

    /// What this credential's state is, as notes for the other replicas
    /// (kept on its lane row).
    pub fn notes(&self) -> String {
        let st = self.state.lock().expect("slot lock");
        let mut budgets: Vec<SharedBudget> = st
            .budgets
            .iter()
            .map(|(r, b)| SharedBudget {
                resource: r.as_str().to_string(),
                limit: b.limit,
                remaining: b.remaining,
                reset: b.reset,
            })
            .collect();
        budgets.sort_by(|a, b| a.resource.cmp(&b.resource));
        serde_json::to_string(&Notes {
            budgets,
            paused_until_ms: st.paused_until_ms,
            secondary_hits: st.secondary_hits,
        })
        .expect("notes serialize")
    }

    /// Takes what another replica learned last (its notes replace this
    /// replica's view: the lane orders their requests, so the last holder's
    /// notes are the newest). Notes it cannot read change nothing.
    pub fn adopt(&self, notes: &str) {
        let Ok(n) = serde_json::from_str::<Notes>(notes) else {
            tracing::debug!(credential = %self.id, "unreadable budget notes ignored");
            return;
        };
        let mut st = self.state.lock().expect("slot lock");
        st.budgets = n
            .budgets
            .iter()
            .filter_map(|b| {
                Some((
                    Resource::parse(&b.resource)?,
                    Budget {
                        limit: b.limit,
                        remaining: b.remaining,
                        reset: b.reset,
                    },
                ))
            })
            .collect();
        st.paused_until_ms = n.paused_until_ms;
        st.secondary_hits = n.secondary_hits;
    }

    /// What GitHub last reported of this credential's `resource` budget.
    pub fn budget(&self, resource: Resource) -> Option<Budget> {
        self.state
            .lock()
            .expect("slot lock")
            .budgets
            .get(&resource)
            .copied()
    }

    pub fn paused(&self, now_ms: i64) -> bool {
        let st = self.state.lock().expect("slot lock");
        st.paused_until_ms.is_some_and(|u| u > now_ms)
    }

    /// Learns from an answer: the budget it reports, and secondary limits
    /// (403/429 with `retry-after`, or GitHub's secondary-limit message,
    /// current or the older "abuse detection" one).
    pub fn observe(
        &self,
        status: StatusCode,
        h: &HeaderMap,
        body: &[u8],
        asked: Resource,
        now_ms: i64,
    ) -> Observed {
        let mut st = self.state.lock().expect("slot lock");
        let mut cost = u64::from(status != StatusCode::NOT_MODIFIED);
        if let Some((resource, b)) = budget::from_headers(h, asked) {
            // GraphQL costs points by query; with one request in flight per
            // credential, the drop in `remaining` within one window is it.
            if resource == Resource::Graphql
                && let Some(prev) = st.budgets.get(&resource)
                && prev.reset == b.reset
                && prev.remaining >= b.remaining
            {
                cost = (prev.remaining - b.remaining).max(cost);
            }
            st.budgets.insert(resource, b);
        }
        let limited = status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS;
        let retry_after = h
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let secondary = limited && (retry_after.is_some() || secondary_message(body));
        let mut paused_secs = None;
        if secondary {
            st.secondary_hits += 1;
            let wait = retry_after.unwrap_or_else(|| {
                let step = SECONDARY_BASE_SECS << (st.secondary_hits - 1).min(5);
                rand::rng().random_range(step..=step + step / 2)
            });
            st.paused_until_ms = Some(now_ms + wait as i64 * 1000);
            paused_secs = Some(wait);
        } else if status.is_success() {
            st.secondary_hits = 0;
        }
        Observed { cost, paused_secs }
    }
}

/// GitHub's words for a secondary limit: today's, and the older wording
/// GitHub Enterprise Server releases still send.
fn secondary_message(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.contains("secondary rate limit") || text.contains("abuse detection mechanism")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    pub fn budget(remaining: &str, reset: &str) -> HeaderMap {
        headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", remaining),
            ("x-ratelimit-reset", reset),
        ])
    }

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn an_unused_credential_comes_first_and_a_reported_budget_counts() {
        let s = Slot::new(CredId::App(1));
        assert_eq!(s.usable(Resource::Core, NOW, 0), Ok(u64::MAX));
        let o = s.observe(
            StatusCode::OK,
            &budget("4999", "1700003600"),
            b"",
            Resource::Core,
            NOW,
        );
        assert_eq!(
            o,
            Observed {
                cost: 1,
                paused_secs: None
            }
        );
        assert_eq!(s.usable(Resource::Core, NOW, 0), Ok(4999));
        // Another resource's budget is its own.
        assert_eq!(s.usable(Resource::Search, NOW, 0), Ok(u64::MAX));
    }

    #[test]
    fn a_budget_at_the_reserve_waits_for_its_reset_and_a_past_reset_refills() {
        let s = Slot::new(CredId::App(1));
        s.observe(
            StatusCode::OK,
            &budget("100", "1700000060"),
            b"",
            Resource::Core,
            NOW,
        );
        assert_eq!(s.usable(Resource::Core, NOW, 100), Err(1_700_000_060));
        assert_eq!(s.usable(Resource::Core, NOW, 99), Ok(100));
        s.observe(
            StatusCode::OK,
            &budget("0", "1700000060"),
            b"",
            Resource::Core,
            NOW,
        );
        assert_eq!(s.usable(Resource::Core, NOW, 0), Err(1_700_000_060));
        // Past the reset, the last report no longer binds.
        assert!(s.usable(Resource::Core, NOW + 61_000, 0).is_ok());
    }

    #[test]
    fn a_not_modified_costs_nothing_and_graphql_costs_its_points() {
        let s = Slot::new(CredId::App(1));
        let o = s.observe(
            StatusCode::NOT_MODIFIED,
            &budget("10", "9"),
            b"",
            Resource::Core,
            NOW,
        );
        assert_eq!(o.cost, 0);
        let gql = |remaining: &str| {
            let mut h = budget(remaining, "1700003600");
            h.insert("x-ratelimit-resource", "graphql".parse().unwrap());
            s.observe(StatusCode::OK, &h, b"", Resource::Graphql, NOW)
                .cost
        };
        assert_eq!(gql("4990"), 1, "the first report: no previous to compare");
        assert_eq!(gql("4975"), 15);
        assert_eq!(gql("4975"), 1, "a query costs at least one");
    }

    #[test]
    fn the_older_abuse_wording_and_a_bare_retry_after_are_secondary_limits() {
        let s = Slot::new(CredId::App(1));
        let abuse = br#"{"message":"You have triggered an abuse detection mechanism. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/v3/#abuse-rate-limits"}"#;
        let o = s.observe(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            abuse,
            Resource::Core,
            NOW,
        );
        assert!((60..=90).contains(&o.paused_secs.unwrap()), "{o:?}");
        let s = Slot::new(CredId::App(2));
        let o = s.observe(
            StatusCode::FORBIDDEN,
            &headers(&[("retry-after", "45")]),
            br#"{"message":"Forbidden"}"#,
            Resource::Core,
            NOW,
        );
        assert_eq!(o.paused_secs, Some(45));
        // A 403 that is neither (no permission) pauses nothing.
        let o = s.observe(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            br#"{"message":"Resource not accessible by integration"}"#,
            Resource::Core,
            NOW + 60_000,
        );
        assert_eq!(o.paused_secs, None);
    }

    #[test]
    fn a_secondary_limit_pauses_the_credential_for_its_retry_after_or_a_minute_and_more() {
        let s = Slot::new(CredId::App(1));
        let o = s.observe(
            StatusCode::FORBIDDEN,
            &headers(&[("retry-after", "30")]),
            b"",
            Resource::Core,
            NOW,
        );
        assert_eq!(o.paused_secs, Some(30));
        assert!(s.paused(NOW + 29_000));
        assert_eq!(s.usable(Resource::Core, NOW, 0), Err(NOW / 1000 + 30));
        assert!(!s.paused(NOW + 30_000));
        // No time named: a minute or more, growing with each hit.
        let body = b"You have exceeded a secondary rate limit";
        let first = s.observe(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            body,
            Resource::Core,
            NOW,
        );
        let second = s.observe(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            body,
            Resource::Core,
            NOW,
        );
        let (a, b) = (first.paused_secs.unwrap(), second.paused_secs.unwrap());
        assert!((120..=180).contains(&a), "{a}: the second hit in a row");
        assert!((240..=360).contains(&b), "{b}");
        // A success starts the count again; a plain 403 pauses nothing.
        s.observe(StatusCode::OK, &HeaderMap::new(), b"", Resource::Core, NOW);
        let plain = s.observe(
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            b"no",
            Resource::Core,
            NOW,
        );
        assert_eq!(plain.paused_secs, None);
        let again = s.observe(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            body,
            Resource::Core,
            NOW,
        );
        assert!((60..=90).contains(&again.paused_secs.unwrap()));
    }
}
