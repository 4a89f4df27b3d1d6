//! Primary rate limits per credential and resource, secondary (concurrency)
//! limits, and the usage stats tests read back.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::auth::Credential;
use crate::config::{RateLimitConfig, SecondaryConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Core,
    Graphql,
    Search,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Core => "core",
            Resource::Graphql => "graphql",
            Resource::Search => "search",
        }
    }
}

/// A fixed window: `used` of `limit`, until `reset` (epoch seconds).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Bucket {
    pub limit: u64,
    pub used: u64,
    pub reset: i64,
}

impl Bucket {
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

/// Usage of one token or one installation, as tests read it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub requests: u64,
    /// Answered 304 Not Modified (these cost nothing).
    pub not_modified: u64,
    /// Rate-limit units spent (REST requests, GraphQL points).
    pub units_spent: u64,
    /// Requests refused for an exhausted primary limit.
    pub rate_limited: u64,
    /// Requests refused for the secondary (concurrency) limit.
    pub secondary_limited: u64,
    pub in_flight: u64,
    /// The most requests ever in flight at once.
    pub max_concurrency: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// By token (installation tokens by value, PATs as `pat:NAME`, Apps as
    /// `app:ID`, and `anonymous`).
    pub tokens: BTreeMap<String, Usage>,
    pub installations: BTreeMap<i64, Usage>,
}

struct Inner {
    buckets: HashMap<(String, Resource), Bucket>,
    in_flight: HashMap<String, u64>,
    stats: Stats,
}

pub struct Limits {
    config: RateLimitConfig,
    secondary: SecondaryConfig,
    inner: Mutex<Inner>,
}

/// What the limiter says about a request about to run.
pub enum Admission {
    Go(InFlight),
    /// Over the concurrency limit: retry after this many seconds.
    Secondary(u64),
}

impl Limits {
    /// What one GraphQL query costs here.
    pub fn graphql_points(&self) -> u64 {
        self.config.graphql_points.max(1)
    }

    pub fn new(config: RateLimitConfig, secondary: SecondaryConfig) -> Arc<Limits> {
        Arc::new(Limits {
            config,
            secondary,
            inner: Mutex::new(Inner {
                buckets: HashMap::new(),
                in_flight: HashMap::new(),
                stats: Stats::default(),
            }),
        })
    }

    fn limit_for(&self, cred: &Credential, resource: Resource) -> u64 {
        match (cred, resource) {
            (Credential::Anonymous, Resource::Search) => 10,
            (Credential::Anonymous, _) => self.config.anonymous,
            (_, Resource::Core) => self.config.core,
            (_, Resource::Graphql) => self.config.graphql,
            (_, Resource::Search) => self.config.search,
        }
    }

    /// The bucket now, starting a window on first use or after a reset.
    pub fn bucket(&self, cred: &Credential, resource: Resource, now: i64) -> Bucket {
        let mut inner = self.inner.lock().expect("limits lock");
        *self.bucket_mut(&mut inner, cred, resource, now)
    }

    fn bucket_mut<'a>(
        &self,
        inner: &'a mut Inner,
        cred: &Credential,
        resource: Resource,
        now: i64,
    ) -> &'a mut Bucket {
        let limit = self.limit_for(cred, resource);
        let window = self.config.window_secs as i64;
        let b = inner
            .buckets
            .entry((cred.rate_key(), resource))
            .or_insert(Bucket {
                limit,
                used: 0,
                reset: now + window,
            });
        if now >= b.reset {
            b.used = 0;
            b.reset = now + window;
        }
        b
    }

    /// Takes `units` from the budget, or returns the exhausted bucket.
    pub fn try_spend(
        &self,
        cred: &Credential,
        resource: Resource,
        units: u64,
        now: i64,
    ) -> Result<Bucket, Bucket> {
        let mut inner = self.inner.lock().expect("limits lock");
        let b = self.bucket_mut(&mut inner, cred, resource, now);
        if b.remaining() < units.max(1) {
            let b = *b;
            let inner = &mut *inner;
            usage(&mut inner.stats, cred, |u| u.rate_limited += 1);
            return Err(b);
        }
        b.used += units;
        let b = *b;
        usage(&mut inner.stats, cred, |u| u.units_spent += units);
        Ok(b)
    }

    /// Gives back units spent on a request that turned out free (a 304).
    pub fn refund(&self, cred: &Credential, resource: Resource, units: u64, now: i64) {
        let mut inner = self.inner.lock().expect("limits lock");
        let b = self.bucket_mut(&mut inner, cred, resource, now);
        b.used = b.used.saturating_sub(units);
        usage(&mut inner.stats, cred, |u| {
            u.units_spent -= units.min(u.units_spent);
            u.not_modified += 1;
        });
    }

    /// Counts a request as in flight until the returned guard drops, and
    /// refuses it if that makes more than the secondary limit allows.
    pub fn enter(self: &Arc<Limits>, cred: &Credential) -> Admission {
        let mut inner = self.inner.lock().expect("limits lock");
        let key = cred.rate_key();
        let n = {
            let n = inner.in_flight.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        usage(&mut inner.stats, cred, |u| {
            u.requests += 1;
            u.in_flight += 1;
            u.max_concurrency = u.max_concurrency.max(u.in_flight);
        });
        let guard = InFlight {
            limits: self.clone(),
            cred: cred.clone(),
        };
        if n as usize > self.secondary.max_concurrent {
            usage(&mut inner.stats, cred, |u| u.secondary_limited += 1);
            drop(inner);
            drop(guard);
            return Admission::Secondary(self.secondary.retry_after_secs);
        }
        Admission::Go(guard)
    }

    pub fn stats(&self) -> Stats {
        self.inner.lock().expect("limits lock").stats.clone()
    }

    pub fn reset_stats(&self) {
        // Requests in flight now end later; their guards saturate at zero.
        self.inner.lock().expect("limits lock").stats = Stats::default();
    }
}

/// Applies `f` to the usage of the credential's token and installation.
fn usage(stats: &mut Stats, cred: &Credential, f: impl Fn(&mut Usage)) {
    f(stats.tokens.entry(cred.token_label()).or_default());
    if let Some(id) = cred.installation_id() {
        f(stats.installations.entry(id).or_default());
    }
}

/// A request in flight; dropping it ends it.
pub struct InFlight {
    limits: Arc<Limits>,
    cred: Credential,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut inner = self.limits.inner.lock().expect("limits lock");
        if let Some(n) = inner.in_flight.get_mut(&self.cred.rate_key()) {
            *n = n.saturating_sub(1);
        }
        usage(&mut inner.stats, &self.cred, |u| {
            u.in_flight = u.in_flight.saturating_sub(1)
        });
    }
}
