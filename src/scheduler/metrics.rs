//! What the scheduler and its sinks count, by sink (never by partition, so
//! cardinality stays bounded however many organisations there are), and
//! the backlog gauges set at scrape time. Registered by this part.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

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
    budget_pauses: Family<SinkLabel, Counter>,
    breaker_opens: Family<SinkLabel, Counter>,
    batch_size: Family<SinkLabel, Histogram>,
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
    /// (another holder's lease), lease_lost or gathering (a batch
    /// waiting for more).
    pub fn turn(&self, sink: &str, result: &str) {
        self.turns
            .get_or_create(&SinkOutcome {
                sink: sink.into(),
                outcome: result.into(),
            })
            .inc();
    }

    /// A partition paused because its organisation's GitHub credentials
    /// are spent (`github_budget`).
    pub fn budget_pause(&self, sink: &str) {
        self.budget_pauses
            .get_or_create(&SinkLabel { sink: sink.into() })
            .inc();
    }

    /// One batch sent, of `deliveries`.
    pub fn batch(&self, sink: &str, deliveries: usize) {
        self.batch_size
            .get_or_create(&SinkLabel { sink: sink.into() })
            .observe(deliveries as f64);
    }

    /// A route's circuit breaker opened.
    pub fn breaker_opened(&self, sink: &str) {
        self.breaker_opens
            .get_or_create(&SinkLabel { sink: sink.into() })
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
    /// Partitions waiting behind a dead letter, per sink.
    pub held_by_dead: Family<SinkLabel, Gauge>,
    /// 1 while a route's circuit breaker is open.
    pub breaker_open: Family<SinkLabel, Gauge>,
    /// Jobs (pending and dead) of sinks no longer configured.
    pub orphaned: Family<SinkLabel, Gauge>,
}

impl SinkMetrics {
    pub fn register(r: &mut Registry) -> SinkMetrics {
        let me = SinkMetrics {
            attempts: Family::default(),
            finished: Family::default(),
            leases_lost: Family::default(),
            budget_pauses: Family::default(),
            breaker_opens: Family::default(),
            turns: Family::default(),
            batch_size: Family::new_with_constructor(|| {
                // 1 .. 1024 deliveries
                Histogram::new(exponential_buckets(1.0, 2.0, 11))
            }),
            latency: Family::new_with_constructor(|| {
                // 1 ms .. ~30 s
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
        };
        r.register(
            "forward_attempts",
            "Forward attempts by sink and outcome (done, failed, paused)",
            me.attempts.clone(),
        );
        r.register(
            "jobs_finished",
            "Jobs that reached a final state, by sink and state (done, dead)",
            me.finished.clone(),
        );
        r.register(
            "scheduler_turns",
            "Partition turns the scheduler took, by sink and outcome (ran, held, busy, lease_lost, gathering): proof it looked",
            me.turns.clone(),
        );
        r.register(
            "leases_lost",
            "Times a worker found its partition lease claimed by another (it stopped there), by sink",
            me.leases_lost.clone(),
        );
        r.register(
            "route_breaker_opened",
            "Times a route's circuit breaker opened after consecutive failures",
            me.breaker_opens.clone(),
        );
        r.register(
            "partitions_paused_for_github_budget",
            "Times a github_budget route paused a partition because its organisation's credentials were spent",
            me.budget_pauses.clone(),
        );
        r.register(
            "forward_batch_deliveries",
            "Deliveries per batch sent to a batching route's consumer, by sink",
            me.batch_size.clone(),
        );
        r.register_with_unit(
            "forward_duration",
            "Time for a consumer to answer one forwarded delivery",
            Unit::Seconds,
            me.latency.clone(),
        );
        me
    }
}

impl SinkGauges {
    pub fn register(r: &mut Registry) -> SinkGauges {
        let me = SinkGauges::default();
        r.register(
            "jobs_pending",
            "Jobs waiting to run, by sink",
            me.pending.clone(),
        );
        r.register_with_unit(
            "sink_lag",
            "Age of the oldest pending job's delivery, by sink",
            Unit::Seconds,
            me.lag_seconds.clone(),
        );
        r.register(
            "dead_letters",
            "Jobs that used up their attempts, by sink, until retried",
            me.dead.clone(),
        );
        r.register(
            "jobs_orphaned",
            "Jobs (pending and dead) of a sink no longer configured: they wait for it to return or for `gatehouse routes drop`",
            me.orphaned.clone(),
        );
        r.register(
            "route_breaker_open",
            "1 while a route's circuit breaker is open (only a probe is sent)",
            me.breaker_open.clone(),
        );
        r.register(
            "partitions_held_by_dead_letter",
            "Partitions waiting behind a dead letter (on_dead = hold) until it is retried or skipped",
            me.held_by_dead.clone(),
        );
        r.register(
            "partitions_paused",
            "Partitions paused by a consumer (Retry-After, rate limit) or an operator",
            me.partitions_paused.clone(),
        );
        me
    }
}
