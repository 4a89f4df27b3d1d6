//! What the API gateway counts, by client (clients are made by an
//! operator, so the set is bounded) and cache outcome. Registered by this
//! part.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientStatusLabels {
    pub client: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientOutcomeLabels {
    pub client: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabel {
    pub client: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientRuleLabels {
    pub client: String,
    pub rule: String,
}

/// A route is GitHub's path template (`GET /repos/{owner}/{repo}`), so
/// the set is bounded by GitHub's API, not by what clients send.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientRouteLabels {
    pub client: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabel {
    pub credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// The API gateway, labelled by client name (clients are created by an
/// operator, so the set is bounded) and cache outcome.
#[derive(Clone)]
pub struct GatewayMetrics {
    pub requests: Family<ClientStatusLabels, Counter>,
    pub cache: Family<ClientOutcomeLabels, Counter>,
    pub units_spent: Family<ClientLabel, Counter>,
    pub units_saved: Family<ClientLabel, Counter>,
    pub duration: Family<OutcomeLabel, Histogram>,
    /// (hits + revalidated) / (hits + revalidated + misses), all clients.
    pub hit_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub cache_bytes: Gauge,
    pub cache_entries: Gauge,
    pub cache_evictions: Counter,
    /// Requests refused before reaching GitHub, by client and rule
    /// (quota, priority, fair_share).
    pub refusals: Family<ClientRuleLabels, Counter>,
    pub route_requests: Family<ClientRouteLabels, Counter>,
    pub route_spent: Family<ClientRouteLabels, Counter>,
    pub route_saved: Family<ClientRouteLabels, Counter>,
    pub credential_spent: Family<CredentialLabel, Counter>,
    pub credential_saved: Family<CredentialLabel, Counter>,
    /// Clients file applications, applied or refused.
    pub clients_file_loads: Family<ResultLabel, Counter>,
    /// 1 while the last application of the clients file succeeded.
    pub clients_file_ok: Gauge,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics {
            requests: Family::default(),
            cache: Family::default(),
            units_spent: Family::default(),
            units_saved: Family::default(),
            // 0.1 ms .. ~3 s
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 16))
            }),
            hit_ratio: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_entries: Gauge::default(),
            cache_evictions: Counter::default(),
            refusals: Family::default(),
            route_requests: Family::default(),
            route_spent: Family::default(),
            route_saved: Family::default(),
            credential_spent: Family::default(),
            credential_saved: Family::default(),
            clients_file_loads: Family::default(),
            clients_file_ok: Gauge::default(),
        }
    }
}

impl GatewayMetrics {
    pub fn register(r: &mut Registry) -> GatewayMetrics {
        let me = GatewayMetrics::default();
        r.register(
            "gateway_requests",
            "API gateway requests, by client and answer status",
            me.requests.clone(),
        );
        r.register(
            "gateway_cache",
            "API gateway answers by client and cache outcome (hit, revalidated, miss, bypass)",
            me.cache.clone(),
        );
        r.register(
            "gateway_refusals",
            "Requests refused before reaching GitHub to keep a budget for others, by client and rule",
            me.refusals.clone(),
        );
        r.register(
            "gateway_rate_limit_units_spent",
            "GitHub rate-limit units spent for a client's requests",
            me.units_spent.clone(),
        );
        r.register(
            "gateway_rate_limit_units_saved",
            "GitHub rate-limit units a client's requests did not spend thanks to the cache",
            me.units_saved.clone(),
        );
        r.register(
            "gateway_route_requests",
            "API gateway requests by client and GitHub route template",
            me.route_requests.clone(),
        );
        r.register(
            "gateway_route_units_spent",
            "GitHub rate-limit units spent by client and route template",
            me.route_spent.clone(),
        );
        r.register(
            "gateway_route_units_saved",
            "GitHub rate-limit units the cache saved, by client and route template",
            me.route_saved.clone(),
        );
        r.register(
            "gateway_credential_units_spent",
            "GitHub rate-limit units gateway requests spent, by pool credential",
            me.credential_spent.clone(),
        );
        r.register(
            "gateway_credential_units_saved",
            "GitHub rate-limit units a pool credential did not spend because GitHub answered 304",
            me.credential_saved.clone(),
        );
        r.register(
            "gateway_clients_file_loads",
            "Applications of the clients file, by result (applied, refused)",
            me.clients_file_loads.clone(),
        );
        r.register(
            "gateway_clients_file_ok",
            "1 while the clients file last applied is the registry; 0 after a refused one",
            me.clients_file_ok.clone(),
        );
        r.register_with_unit(
            "gateway_request_duration",
            "Time to answer a gateway request, by cache outcome",
            Unit::Seconds,
            me.duration.clone(),
        );
        r.register(
            "gateway_cache_hit_ratio",
            "Share of cacheable requests answered without spending rate limit",
            me.hit_ratio.clone(),
        );
        r.register_with_unit(
            "gateway_cache_size",
            "Bytes held by the gateway cache",
            Unit::Bytes,
            me.cache_bytes.clone(),
        );
        r.register(
            "gateway_cache_entries",
            "Answers held by the gateway cache",
            me.cache_entries.clone(),
        );
        r.register(
            "gateway_cache_evictions",
            "Gateway cache entries evicted to stay within cache_max_bytes",
            me.cache_evictions.clone(),
        );
        me
    }
}
