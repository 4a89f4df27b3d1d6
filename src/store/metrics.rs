//! What the store counts: commits (group size, time, failures), and the
//! file's size and health, set at scrape time. Registered by this part.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

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
