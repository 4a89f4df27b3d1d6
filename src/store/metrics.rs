//! What the store counts: commits (group size, time, failures), and the
//! file's size and health, set at scrape time; on a shared database also
//! each operation's time, waits for a pooled connection, notifications
//! heard, replicas alive, the clock offset and which duties this replica
//! holds. Registered by this part.

use std::time::Duration;

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DutyLabel {
    pub duty: &'static str,
}

fn op_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0002, 2.0, 16))
}

#[derive(Clone)]
pub struct JournalMetrics {
    batch_size: Histogram,
    commit_latency: Histogram,
    pub commit_failures: Counter,
    /// Time of each store operation on a shared database.
    pub op_latency: Family<OpLabel, Histogram, fn() -> Histogram>,
    /// Time waited for a pooled connection.
    pub pool_wait: Histogram,
    /// Work notices heard from other replicas (and this one).
    pub notifications: Counter,
    /// Replicas seen alive recently (1 on SQLite).
    pub replicas_alive: Gauge,
    /// The database's clock minus this replica's.
    pub clock_offset: Gauge<f64, AtomicU64>,
    /// 1 for each periodic duty this replica does now.
    pub duty_held: Family<DutyLabel, Gauge>,
}

impl JournalMetrics {
    /// Counted, but in no registry: an operator command's store.
    pub fn unregistered() -> JournalMetrics {
        JournalMetrics {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            commit_latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            commit_failures: Counter::default(),
            op_latency: Family::new_with_constructor(op_histogram as fn() -> Histogram),
            pool_wait: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            notifications: Counter::default(),
            replicas_alive: Gauge::default(),
            clock_offset: Gauge::default(),
            duty_held: Family::default(),
        }
    }

    /// Times one store operation.
    pub fn observe_op(&self, op: &'static str, took: Duration) {
        self.op_latency
            .get_or_create(&OpLabel { op })
            .observe(took.as_secs_f64());
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

impl JournalMetrics {
    pub fn register(r: &mut Registry) -> JournalMetrics {
        let me = JournalMetrics::unregistered();
        r.register(
            "journal_commit_batch_size",
            "Operations committed per journal transaction (group commit)",
            me.batch_size.clone(),
        );
        r.register_with_unit(
            "journal_commit_duration",
            "Time to write and durably commit one journal transaction",
            Unit::Seconds,
            me.commit_latency.clone(),
        );
        r.register(
            "journal_commit_failures",
            "Journal transactions that failed to commit (nothing in them was acknowledged)",
            me.commit_failures.clone(),
        );
        r.register_with_unit(
            "storage_operation_duration",
            "Time of each store operation on PostgreSQL, by operation",
            Unit::Seconds,
            me.op_latency.clone(),
        );
        r.register_with_unit(
            "storage_pool_wait_duration",
            "Time a store operation waited for a pooled PostgreSQL connection",
            Unit::Seconds,
            me.pool_wait.clone(),
        );
        r.register(
            "storage_notifications_received",
            "Work notices heard through PostgreSQL LISTEN (every replica's new work)",
            me.notifications.clone(),
        );
        r.register(
            "storage_replicas_alive",
            "Replicas that announced themselves in the last 30 s (1 on SQLite)",
            me.replicas_alive.clone(),
        );
        r.register_with_unit(
            "storage_clock_offset",
            "The database's clock minus this replica's, as last measured (leases are judged on the database's)",
            Unit::Seconds,
            me.clock_offset.clone(),
        );
        r.register(
            "duty_held",
            "1 while this replica does the periodic duty (retention, recovery), 0 while another does",
            me.duty_held.clone(),
        );
        me
    }
}

impl JournalGauges {
    pub fn register(r: &mut Registry) -> JournalGauges {
        let me = JournalGauges::default();
        r.register_with_unit(
            "journal_size",
            "Bytes on disk of the journal database and its WAL",
            Unit::Bytes,
            me.size_bytes.clone(),
        );
        r.register(
            "journal_writable",
            "1 when the last journal commit succeeded, 0 after a failure",
            me.writable.clone(),
        );
        me
    }
}
