//! Every metric gatehouse exports, registered and named in one place.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The outcome of one `POST /webhooks/github`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestResult {
    Queued,
    Duplicate,
    BadSignature,
    TooLarge,
    BadRequest,
    UnsupportedMediaType,
    Unavailable,
    /// Refused before reading: too many body bytes in flight.
    Busy,
}

impl IngestResult {
    pub fn as_str(self) -> &'static str {
        match self {
            IngestResult::Queued => "queued",
            IngestResult::Duplicate => "duplicate",
            IngestResult::BadSignature => "bad_signature",
            IngestResult::TooLarge => "too_large",
            IngestResult::BadRequest => "bad_request",
            IngestResult::UnsupportedMediaType => "unsupported_media_type",
            IngestResult::Unavailable => "unavailable",
            IngestResult::Busy => "busy",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    event: String,
    result: String,
}

#[derive(Clone)]
pub struct IngestMetrics {
    deliveries: Family<DeliveryLabels, Counter>,
    latency: Histogram,
}

impl IngestMetrics {
    /// `event` must already be bounded (see `github::events::label`): a
    /// sender could otherwise grow the label set without end.
    pub fn record(&self, event: &str, result: IngestResult, took: Duration) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                event: event.to_string(),
                result: result.as_str().to_string(),
            })
            .inc();
        self.latency.observe(took.as_secs_f64());
    }
}

#[derive(Clone)]
pub struct JournalMetrics {
    batch_size: Histogram,
    commit_latency: Histogram,
    pub commit_failures: Counter,
}

impl JournalMetrics {
    /// Counted, but in no registry: an operator command's store.
    pub fn unregistered() -> JournalMetrics {
        JournalMetrics {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            commit_failures: Counter::default(),
        }
    }

    pub fn observe_commit(&self, ops: usize, took: Duration) {
        self.batch_size.observe(ops as f64);
        self.commit_latency.observe(took.as_secs_f64());
    }
}

/// Gauges read at scrape time.
#[derive(Clone, Default)]
pub struct JournalGauges {
    pub size_bytes: Gauge,
    pub writable: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkOutcome {
    sink: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

/// Forwarding, labelled by sink (one per configured route) and never by
/// partition, so cardinality stays bounded however many orgs there are.
#[derive(Clone)]
pub struct SinkMetrics {
    attempts: Family<SinkOutcome, Counter>,
    finished: Family<SinkOutcome, Counter>,
    latency: Family<SinkLabel, Histogram>,
    leases_lost: Family<SinkLabel, Counter>,
    turns: Family<SinkOutcome, Counter>,
}

impl SinkMetrics {
    /// One attempt: `outcome` is done, failed or paused.
    pub fn attempt(&self, sink: &str, outcome: &str, took: Duration) {
        self.attempts
            .get_or_create(&SinkOutcome {
                sink: sink.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.latency
            .get_or_create(&SinkLabel { sink: sink.into() })
            .observe(took.as_secs_f64());
    }

    /// A job reached a final state: done or dead.
    pub fn finished(&self, sink: &str, state: &str) {
        self.finished
            .get_or_create(&SinkOutcome {
                sink: sink.into(),
                outcome: state.into(),
            })
            .inc();
    }

    /// The scheduler took a partition's turn: `result` is ran (lease
    /// taken, its due jobs worked), held (paused by an operator), busy
    /// (another holder's lease) or lease_lost.
    pub fn turn(&self, sink: &str, result: &str) {
        self.turns
            .get_or_create(&SinkOutcome {
                sink: sink.into(),
                outcome: result.into(),
            })
            .inc();
    }

    /// A worker found its lease claimed by another and stopped.
    pub fn lease_lost(&self, sink: &str) {
        self.leases_lost
            .get_or_create(&SinkLabel { sink: sink.into() })
            .inc();
    }
}

/// Read from the journal at scrape time.
#[derive(Clone, Default)]
pub struct SinkGauges {
    pub pending: Family<SinkLabel, Gauge>,
    pub lag_seconds: Family<SinkLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub dead: Family<SinkLabel, Gauge>,
    pub partitions_paused: Gauge,
    /// Jobs (pending and dead) of sinks no longer configured.
    pub orphaned: Family<SinkLabel, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabel {
    pub credential: String,
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
        }
    }
}

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
pub struct OutcomeLabel {
    pub outcome: String,
}

/// Recovery of missed deliveries, by source (`app:ID`, `hook:...`: from
/// the config, so bounded).
#[derive(Clone, Default)]
pub struct RecoveryMetrics {
    pub missing: Family<SourceLabel, Counter>,
    pub requested: Family<SourceLabel, Counter>,
    pub failures: Family<SourceLabel, Counter>,
    /// Seconds since the source's last complete walk (set at scrape).
    pub since_complete: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
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
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabel {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    listener: String,
    reason: String,
}

/// Connections per listener (webhooks, gateway, admin), and the request
/// body budget they share.
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    open: Family<ListenerLabel, Gauge>,
    refused: Family<RefusedLabels, Counter>,
    /// Set at scrape time.
    pub body_budget_in_use: Gauge,
    pub body_budget: Gauge,
}

impl ConnectionMetrics {
    /// The metrics of one listener.
    pub fn listener(&self, name: &str) -> ListenerMetrics {
        ListenerMetrics {
            name: name.to_string(),
            all: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ListenerMetrics {
    name: String,
    all: ConnectionMetrics,
}

/// Counts a connection as open until dropped.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl ListenerMetrics {
    pub fn open(&self) -> OpenConnection {
        let g = self
            .all
            .open
            .get_or_create(&ListenerLabel {
                listener: self.name.clone(),
            })
            .clone();
        g.inc();
        OpenConnection(g)
    }

    /// A connection closed at once, and why (`per_address`).
    pub fn refused(&self, reason: &str) {
        self.all
            .refused
            .get_or_create(&RefusedLabels {
                listener: self.name.clone(),
                reason: reason.to_string(),
            })
            .inc();
    }
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub ingest: IngestMetrics,
    pub journal: JournalMetrics,
    pub journal_gauges: JournalGauges,
    pub sinks: SinkMetrics,
    pub sink_gauges: SinkGauges,
    pub github: GithubMetrics,
    pub gateway: GatewayMetrics,
    pub recovery: RecoveryMetrics,
    pub connections: ConnectionMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gatehouse");
        let ingest = IngestMetrics {
            deliveries: Family::default(),
            // 0.25 ms .. ~8 s
            latency: Histogram::new(exponential_buckets(0.00025, 2.0, 16)),
        };
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries received, by event and result",
            ingest.deliveries.clone(),
        );
        registry.register_with_unit(
            "webhook_ingest_duration",
            "Time from request start to answer, for POST /webhooks/github",
            Unit::Seconds,
            ingest.latency.clone(),
        );
        let journal = JournalMetrics::unregistered();
        registry.register(
            "journal_commit_batch_size",
            "Operations committed per journal transaction (group commit)",
            journal.batch_size.clone(),
        );
        registry.register_with_unit(
            "journal_commit_duration",
            "Time to write and durably commit one journal transaction",
            Unit::Seconds,
            journal.commit_latency.clone(),
        );
        registry.register(
            "journal_commit_failures",
            "Journal transactions that failed to commit (nothing in them was acknowledged)",
            journal.commit_failures.clone(),
        );
        let journal_gauges = JournalGauges::default();
        registry.register_with_unit(
            "journal_size",
            "Bytes on disk of the journal database and its WAL",
            Unit::Bytes,
            journal_gauges.size_bytes.clone(),
        );
        registry.register(
            "journal_writable",
            "1 when the last journal commit succeeded, 0 after a failure",
            journal_gauges.writable.clone(),
        );
        let sinks = SinkMetrics {
            attempts: Family::default(),
            finished: Family::default(),
            leases_lost: Family::default(),
            turns: Family::default(),
            latency: Family::new_with_constructor(|| {
                // 1 ms .. ~30 s
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
        };
        registry.register(
            "forward_attempts",
            "Forward attempts by sink and outcome (done, failed, paused)",
            sinks.attempts.clone(),
        );
        registry.register(
            "jobs_finished",
            "Jobs that reached a final state, by sink and state (done, dead)",
            sinks.finished.clone(),
        );
        registry.register(
            "scheduler_turns",
            "Partition turns the scheduler took, by sink and outcome (ran, held, busy, lease_lost): proof it looked",
            sinks.turns.clone(),
        );
        registry.register(
            "leases_lost",
            "Times a worker found its partition lease claimed by another (it stopped there), by sink",
            sinks.leases_lost.clone(),
        );
        registry.register_with_unit(
            "forward_duration",
            "Time for a consumer to answer one forwarded delivery",
            Unit::Seconds,
            sinks.latency.clone(),
        );
        let sink_gauges = SinkGauges::default();
        registry.register(
            "jobs_pending",
            "Jobs waiting to run, by sink",
            sink_gauges.pending.clone(),
        );
        registry.register_with_unit(
            "sink_lag",
            "Age of the oldest pending job's delivery, by sink",
            Unit::Seconds,
            sink_gauges.lag_seconds.clone(),
        );
        registry.register(
            "dead_letters",
            "Jobs that used up their attempts, by sink, until retried",
            sink_gauges.dead.clone(),
        );
        registry.register(
            "jobs_orphaned",
            "Jobs (pending and dead) of a sink no longer configured: they wait for it to return or for `gatehouse routes drop`",
            sink_gauges.orphaned.clone(),
        );
        registry.register(
            "partitions_paused",
            "Partitions paused by a consumer (Retry-After, rate limit) or an operator",
            sink_gauges.partitions_paused.clone(),
        );
        let github = GithubMetrics::default();
        registry.register(
            "github_requests",
            "Requests sent to GitHub, by credential",
            github.requests.clone(),
        );
        registry.register(
            "github_secondary_limits",
            "Secondary rate limits met, by credential (each pauses it)",
            github.secondary_limits.clone(),
        );
        registry.register_with_unit(
            "github_queue_wait",
            "Time a request waited for its credential's lane (one in flight each)",
            Unit::Seconds,
            github.wait.clone(),
        );
        registry.register(
            "github_rate_limit",
            "A credential's budget per window, as GitHub last reported it",
            github.limit.clone(),
        );
        registry.register(
            "github_rate_remaining",
            "A credential's remaining budget, as GitHub last reported it",
            github.remaining.clone(),
        );
        registry.register(
            "github_rate_reset_timestamp",
            "When a credential's budget is refilled (epoch seconds)",
            github.reset.clone(),
        );
        let gateway = GatewayMetrics::default();
        registry.register(
            "gateway_requests",
            "API gateway requests, by client and answer status",
            gateway.requests.clone(),
        );
        registry.register(
            "gateway_cache",
            "API gateway answers by client and cache outcome (hit, revalidated, miss, bypass)",
            gateway.cache.clone(),
        );
        registry.register(
            "gateway_rate_limit_units_spent",
            "GitHub rate-limit units spent for a client's requests",
            gateway.units_spent.clone(),
        );
        registry.register(
            "gateway_rate_limit_units_saved",
            "GitHub rate-limit units a client's requests did not spend thanks to the cache",
            gateway.units_saved.clone(),
        );
        registry.register_with_unit(
            "gateway_request_duration",
            "Time to answer a gateway request, by cache outcome",
            Unit::Seconds,
            gateway.duration.clone(),
        );
        registry.register(
            "gateway_cache_hit_ratio",
            "Share of cacheable requests answered without spending rate limit",
            gateway.hit_ratio.clone(),
        );
        registry.register_with_unit(
            "gateway_cache_size",
            "Bytes held by the gateway cache",
            Unit::Bytes,
            gateway.cache_bytes.clone(),
        );
        registry.register(
            "gateway_cache_entries",
            "Answers held by the gateway cache",
            gateway.cache_entries.clone(),
        );
        registry.register(
            "gateway_cache_evictions",
            "Gateway cache entries evicted to stay within cache_max_bytes",
            gateway.cache_evictions.clone(),
        );
        let connections = ConnectionMetrics::default();
        registry.register(
            "connections_open",
            "Open client connections, by listener (webhooks, gateway, admin)",
            connections.open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once, by listener and reason (per_address: the address already holds max_connections_per_address)",
            connections.refused.clone(),
        );
        registry.register_with_unit(
            "body_budget_in_use",
            "Request body bytes held in memory now (webhooks and gateway), of body_budget_bytes",
            Unit::Bytes,
            connections.body_budget_in_use.clone(),
        );
        registry.register_with_unit(
            "body_budget",
            "Request body bytes that may be held in memory at once ([server] body_budget_bytes)",
            Unit::Bytes,
            connections.body_budget.clone(),
        );
        let recovery = RecoveryMetrics::default();
        registry.register(
            "recovery_missing_found",
            "Deliveries GitHub failed to make and the journal lacks, found by recovery walks",
            recovery.missing.clone(),
        );
        registry.register(
            "recovery_redeliveries_requested",
            "Redeliveries recovery asked GitHub for (answered 2xx)",
            recovery.requested.clone(),
        );
        registry.register(
            "recovery_failures",
            "Recovery requests to GitHub that failed (listing or redelivery)",
            recovery.failures.clone(),
        );
        registry.register_with_unit(
            "recovery_since_complete_walk",
            "Time since the source's last complete recovery walk",
            Unit::Seconds,
            recovery.since_complete.clone(),
        );
        Metrics {
            gateway,
            recovery,
            connections,
            registry: Arc::new(registry),
            ingest,
            journal,
            journal_gauges,
            sinks,
            sink_gauges,
            github,
        }
    }

    /// The Prometheus/OpenMetrics text exposition: gatehouse's own metrics,
    /// then the Actions metrics (named as GitHub exporters name them, so
    /// without the `gatehouse_` prefix) when that sink runs.
    pub fn render(&self, actions: Option<crate::sinks::actions::aggregate::Exposition>) -> String {
        use prometheus_client::encoding::text;
        let mut out = String::new();
        text::encode_registry(&mut out, &self.registry).expect("writing to a String cannot fail");
        if let Some(a) = actions {
            let mut r = Registry::default();
            r.register_collector(Box::new(a));
            text::encode_registry(&mut out, &r).expect("writing to a String cannot fail");
        }
        text::encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }
}
