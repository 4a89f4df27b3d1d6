//! Who may spend what is left of an owner's budget. Three rules, checked
//! before a request goes anywhere (nothing is sent upstream for a refused
//! one):
//!
//! - **quota**: a client with `--quota N/h` may spend N rate-limit units
//!   upstream in any hour (counted by [`super::usage::Recorder`]);
//! - **priority**: the last `priority_share` of an owner's budget is kept
//!   for `--priority high` clients;
//! - **fair share**: once what remains of an owner's budget until its reset
//!   falls below `fair_share_below` of its limit, the clients active for
//!   that owner (a request in the last 10 minutes) share what remained
//!   then, less the priority part, by weight; one over its share is
//!   refused while the others keep working. High-priority clients are
//!   never held to it. Each replica keeps its own tally, so with several
//!   replicas alive each one grants its part of a share (the share over
//!   the replicas alive): their sum stays within what remained, whichever
//!   replicas a client's requests reach.
//!
//! A refusal is what GitHub sends when a limit is spent (403 with
//! `x-ratelimit-*`), so well-behaved clients wait for the reset it names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderValue};
use prometheus_client::metrics::gauge::Gauge;

use super::clients::{Client, Priority};
use crate::clock::Clock;
use crate::github::budget::{Budget, Resource};

/// A client counts as active for an owner this long after its request.
const ACTIVE_MS: i64 = 10 * 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Quota,
    Priority,
    FairShare,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Quota => "quota",
            Rule::Priority => "priority",
            Rule::FairShare => "fair_share",
        }
    }
}

/// Why a request was refused, in the terms its headers carry.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub rule: Rule,
    pub limit: u64,
    pub used: u64,
    /// Epoch seconds when the client may spend again.
    pub reset: i64,
    pub resource: Resource,
    pub message: String,
}

impl Refusal {
    /// GitHub's headers for a spent limit.
    pub fn headers(&self, h: &mut HeaderMap) {
        ratelimit_headers(h, self.limit, 0, self.used, self.reset, self.resource);
    }
}

/// Sets `x-ratelimit-*` as GitHub does.
pub fn ratelimit_headers(
    h: &mut HeaderMap,
    limit: u64,
    remaining: u64,
    used: u64,
    reset: i64,
    resource: Resource,
) {
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-used", HeaderValue::from(used));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
    h.insert(
        "x-ratelimit-resource",
        HeaderValue::from_static(resource.as_str()),
    );
}

/// An owner's budget for one resource.
type OwnerKey = (String, Resource);
/// The clients seen for an owner: their weight and when last.
type Seen = HashMap<String, (u32, i64)>;

/// One owner's contended window: what the shares divide, and what each
/// client spent of it so far.
struct Episode {
    reset: i64,
    divided: u64,
    spent: HashMap<String, u64>,
}

pub struct Shares {
    below: f64,
    priority_part: f64,
    clock: Arc<dyn Clock>,
    /// Replicas alive (the heartbeat's count; 0 before its first beat).
    replicas: Gauge,
    /// Per (owner, resource): the clients seen, their weights and when.
    active: Mutex<HashMap<OwnerKey, Seen>>,
    episodes: Mutex<HashMap<OwnerKey, Episode>>,
}

impl Shares {
    pub fn new(below: f64, priority_part: f64, clock: Arc<dyn Clock>, replicas: Gauge) -> Shares {
        Shares {
            below,
            priority_part,
            clock,
            replicas,
            active: Mutex::default(),
            episodes: Mutex::default(),
        }
    }

    /// Whether either rule is on (else nothing needs an owner's budget).
    pub fn enabled(&self) -> bool {
        self.below > 0.0 || self.priority_part > 0.0
    }

    /// The priority and fair-share rules for `client` spending `owner`'s
    /// `budget` (None: not known to be low).
    pub fn admit(
        &self,
        client: &Client,
        owner: &str,
        resource: Resource,
        budget: Option<Budget>,
    ) -> Result<(), Refusal> {
        let now = self.clock.now_ms();
        let key = (owner.to_string(), resource);
        if client.limits.priority == Priority::High {
            return Ok(());
        }
        // The weights of the normal clients active for this owner.
        let weights: u64 = {
            let mut active = self.active.lock().expect("shares lock");
            let seen = active.entry(key.clone()).or_default();
            seen.retain(|_, (_, at)| now - *at < ACTIVE_MS);
            seen.insert(client.name.clone(), (client.limits.weight.max(1), now));
            seen.values().map(|(w, _)| u64::from(*w)).sum()
        };
        let Some(b) = budget.filter(|b| b.limit > 0) else {
            return Ok(());
        };
        let kept = (b.limit as f64 * self.priority_part).ceil() as u64;
        let refusal = |rule, limit, used, message: String| Refusal {
            rule,
            limit,
            used,
            reset: b.reset,
            resource,
            message,
        };
        if kept > 0 && b.remaining <= kept {
            return Err(refusal(
                Rule::Priority,
                b.limit,
                b.limit - b.remaining,
                format!(
                    "API rate limit exceeded for client {:?}: the rest of {owner}'s {} budget \
                     until its reset is kept for high-priority clients (gatehouse rule: \
                     priority). It may spend again after the reset.",
                    client.name,
                    resource.as_str()
                ),
            ));
        }
        if (b.remaining as f64) >= b.limit as f64 * self.below {
            return Ok(());
        }
        let mut episodes = self.episodes.lock().expect("shares lock");
        let e = episodes.entry(key).or_insert_with(|| Episode {
            reset: b.reset,
            divided: b.remaining - kept,
            spent: HashMap::new(),
        });
        if e.reset != b.reset {
            *e = Episode {
                reset: b.reset,
                divided: b.remaining - kept,
                spent: HashMap::new(),
            };
        }
        // Another replica knows neither what this one granted nor who is
        // active here: each grants its part, so that a client whose
        // requests reach every replica still gets one share in all, and one
        // pinned elsewhere is never left with nothing.
        let replicas = self.replicas.get().max(1) as u64;
        let share = e.divided * u64::from(client.limits.weight.max(1)) / weights.max(1) / replicas;
        let spent = e.spent.get(&client.name).copied().unwrap_or(0);
        if spent >= share {
            let part = if replicas > 1 {
                format!(" on this replica, one of {replicas}")
            } else {
                String::new()
            };
            return Err(refusal(
                Rule::FairShare,
                share,
                spent,
                format!(
                    "API rate limit exceeded for client {:?}: {owner}'s {} budget is low and \
                     this client has spent its fair share ({share} units{part}) of what \
                     remained (gatehouse rule: fair_share). It may spend again after the reset.",
                    client.name,
                    resource.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// `units` that `client` spent of `owner`'s budget.
    pub fn spent(&self, client: &str, owner: &str, resource: Resource, units: u64) {
        if units == 0 {
            return;
        }
        if let Some(e) = self
            .episodes
            .lock()
            .expect("shares lock")
            .get_mut(&(owner.to_string(), resource))
        {
            *e.spent.entry(client.to_string()).or_default() += units;
        }
    }
}

/// The quota rule: `used` units in the hour, the oldest counted in
/// `oldest_minute`.
pub fn quota(
    client: &Client,
    used: u64,
    oldest_minute: Option<i64>,
    now_ms: i64,
) -> Result<(), Refusal> {
    let Some(q) = client.limits.quota_per_hour else {
        return Ok(());
    };
    if used < q {
        return Ok(());
    }
    Err(Refusal {
        rule: Rule::Quota,
        limit: q,
        used,
        reset: quota_reset(oldest_minute, now_ms),
        resource: Resource::Core,
        // GitHub's own wording first: clients (PyGithub) recognise a
        // primary limit by it and wait for the reset.
        message: format!(
            "API rate limit exceeded for client {:?}: it has spent its quota of {q} rate-limit \
             units in the last hour (gatehouse rule: quota). It may spend again at the reset.",
            client.name
        ),
    })
}

/// When a quota's oldest counted units leave the hour (epoch seconds).
pub fn quota_reset(oldest_minute: Option<i64>, now_ms: i64) -> i64 {
    match oldest_minute {
        Some(m) => (m + 60) * 60,
        None => now_ms / 1000 + 3600,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::clients::Limits;

    fn client(name: &str, weight: u32, priority: Priority) -> Client {
        Client {
            name: name.into(),
            scopes: vec![],
            owners: vec![],
            limits: Limits {
                quota_per_hour: None,
                weight,
                priority,
            },
        }
    }

    fn budget(remaining: u64) -> Option<Budget> {
        Some(Budget {
            limit: 1000,
            remaining,
            reset: 2_000_000_000,
        })
    }

    #[test]
    fn when_the_budget_is_low_each_active_client_gets_its_weighted_share() {
        let s = Shares::new(0.25, 0.1, crate::clock::system(), Gauge::default());
        let (a, b) = (
            client("a", 1, Priority::Normal),
            client("b", 3, Priority::Normal),
        );
        let core = Resource::Core;
        // Plenty: nobody is counted.
        assert!(s.admit(&a, "o", core, budget(900)).is_ok());
        assert!(s.admit(&b, "o", core, budget(900)).is_ok());
        // 200 left, 100 kept for high priority: a gets 25, b 75.
        let mut spent_a = 0;
        while s.admit(&a, "o", core, budget(200)).is_ok() {
            s.spent("a", "o", core, 1);
            spent_a += 1;
            assert!(spent_a <= 100);
        }
        assert_eq!(spent_a, 25);
        let r = s.admit(&a, "o", core, budget(175)).unwrap_err();
        assert_eq!((r.rule, r.limit, r.used), (Rule::FairShare, 25, 25));
        assert!(
            s.admit(&b, "o", core, budget(175)).is_ok(),
            "b keeps working"
        );
        // The priority part: refused to normal clients, open to high.
        let r = s.admit(&b, "o", core, budget(100)).unwrap_err();
        assert_eq!(r.rule, Rule::Priority);
        assert!(
            s.admit(&client("deploy", 1, Priority::High), "o", core, budget(5))
                .is_ok()
        );
        // A new reset window starts the shares again.
        let fresh = Some(Budget {
            limit: 1000,
            remaining: 200,
            reset: 2_000_003_600,
        });
        assert!(s.admit(&a, "o", core, fresh).is_ok());
    }

    #[test]
    fn with_replicas_alive_each_grants_its_part_of_a_share() {
        let replicas = Gauge::default();
        let s = Shares::new(0.25, 0.1, crate::clock::system(), replicas.clone());
        let a = client("a", 1, Priority::Normal);
        let core = Resource::Core;
        // 200 left, 100 kept: alone here, a's share is 100, a third of it
        // on each of three replicas.
        replicas.set(3);
        let mut spent = 0;
        while s.admit(&a, "o", core, budget(200)).is_ok() {
            s.spent("a", "o", core, 1);
            spent += 1;
            assert!(spent <= 100);
        }
        assert_eq!(spent, 33);
        let r = s.admit(&a, "o", core, budget(167)).unwrap_err();
        assert_eq!((r.rule, r.limit), (Rule::FairShare, 33));
        assert!(
            r.message.contains("on this replica, one of 3"),
            "{}",
            r.message
        );
        // The others gone, this replica grants the whole share again.
        replicas.set(1);
        assert!(s.admit(&a, "o", core, budget(167)).is_ok());
    }

    #[test]
    fn a_quota_counts_units_and_resets_when_the_oldest_leave_the_hour() {
        let mut c = client("q", 1, Priority::Normal);
        c.limits.quota_per_hour = Some(100);
        assert!(quota(&c, 99, Some(1000), 0).is_ok());
        let r = quota(&c, 100, Some(1000), 0).unwrap_err();
        assert_eq!((r.rule, r.limit, r.reset), (Rule::Quota, 100, 1060 * 60));
        assert!(quota(&client("free", 1, Priority::Normal), 10_000, None, 0).is_ok());
    }
}
