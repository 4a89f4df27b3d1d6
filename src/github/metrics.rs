//! What the credential pool counts, by credential (App and installation
//! id, or token name; never a secret). Registered by this part.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabel {
    pub credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BudgetLabels {
    pub credential: String,
    pub resource: String,
}

/// The GitHub credential pool, labelled by credential (App + installation
/// id, or token name; never a secret).
#[derive(Clone)]
pub struct GithubMetrics {
    pub requests: Family<CredentialLabel, Counter>,
    pub secondary_limits: Family<CredentialLabel, Counter>,
    pub wait: Family<CredentialLabel, Histogram>,
    pub limit: Family<BudgetLabels, Gauge>,
    pub remaining: Family<BudgetLabels, Gauge>,
    pub reset: Family<BudgetLabels, Gauge>,
    /// Requests that found every credential they may use spent.
    pub exhausted: Family<ResourceLabel, Counter>,
}

impl Default for GithubMetrics {
    fn default() -> Self {
        GithubMetrics {
            requests: Family::default(),
            secondary_limits: Family::default(),
            // 0.1 ms .. ~3 s in the credential's queue
            wait: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 16))
            }),
            limit: Family::default(),
            remaining: Family::default(),
            reset: Family::default(),
            exhausted: Family::default(),
        }
    }
}

impl GithubMetrics {
    pub fn register(r: &mut Registry) -> GithubMetrics {
        let me = GithubMetrics::default();
        r.register(
            "github_requests",
            "Requests sent to GitHub, by credential",
            me.requests.clone(),
        );
        r.register(
            "github_secondary_limits",
            "Secondary rate limits met, by credential (each pauses it)",
            me.secondary_limits.clone(),
        );
        r.register_with_unit(
            "github_queue_wait",
            "Time a request waited for its credential's lane (one in flight each)",
            Unit::Seconds,
            me.wait.clone(),
        );
        r.register(
            "github_rate_limit",
            "A credential's budget per window, as GitHub last reported it",
            me.limit.clone(),
        );
        r.register(
            "github_rate_remaining",
            "A credential's remaining budget, as GitHub last reported it",
            me.remaining.clone(),
        );
        r.register(
            "github_rate_reset_timestamp",
            "When a credential's budget is refilled (epoch seconds)",
            me.reset.clone(),
        );
        r.register(
            "github_budget_exhausted",
            "Requests that found every credential they may use spent, by resource (each waited for the reset or was refused)",
            me.exhausted.clone(),
        );
        me
    }
}
