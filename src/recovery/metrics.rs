//! What recovery counts, by source (`app:ID`, `hook:...`: from the
//! config, so bounded). Registered by this part.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// Recovery of missed deliveries, by source (`app:ID`, `hook:...`: from
/// the config, so bounded).
#[derive(Clone, Default)]
pub struct RecoveryMetrics {
    pub missing: Family<SourceLabel, Counter>,
    pub requested: Family<SourceLabel, Counter>,
    pub failures: Family<SourceLabel, Counter>,
    /// Seconds since the source's last complete walk (set at scrape).
    pub since_complete: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Completeness over the redelivery window (set at scrape).
    pub completeness: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub oldest_missing: Family<SourceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub window_deliveries: Family<StateLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub source: String,
    /// attempted, held, recovered, missing.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

impl RecoveryMetrics {
    /// Sets the completeness gauges from a reading.
    pub fn set_completeness(&self, all: &[crate::store::recovery::Completeness], now_ms: i64) {
        for c in all {
            let label = SourceLabel {
                source: c.source.clone(),
            };
            self.completeness.get_or_create(&label).set(c.ratio());
            let age = c
                .oldest_missing_ms
                .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
            self.oldest_missing.get_or_create(&label).set(age);
            for (state, n) in [
                ("attempted", c.attempted.max(c.missing)),
                ("held", c.held()),
                ("recovered", c.recovered),
                ("missing", c.missing),
            ] {
                self.window_deliveries
                    .get_or_create(&StateLabels {
                        source: c.source.clone(),
                        state: state.into(),
                    })
                    .set(n);
            }
        }
    }

    pub fn register(r: &mut Registry) -> RecoveryMetrics {
        let me = RecoveryMetrics::default();
        r.register(
            "recovery_missing_found",
            "Deliveries GitHub failed to make and the journal lacks, found by recovery walks",
            me.missing.clone(),
        );
        r.register(
            "recovery_redeliveries_requested",
            "Redeliveries recovery asked GitHub for (answered 2xx)",
            me.requested.clone(),
        );
        r.register(
            "recovery_failures",
            "Recovery requests to GitHub that failed (listing or redelivery)",
            me.failures.clone(),
        );
        r.register_with_unit(
            "recovery_since_complete_walk",
            "Time since the source's last complete recovery walk",
            Unit::Seconds,
            me.since_complete.clone(),
        );
        r.register(
            "recovery_completeness_ratio",
            "Part of the deliveries GitHub attempted over its redelivery window that the journal holds (1 when none)",
            me.completeness.clone(),
        );
        r.register_with_unit(
            "recovery_oldest_missing",
            "Age of the oldest delivery GitHub attempted that the journal still lacks (0 when none)",
            Unit::Seconds,
            me.oldest_missing.clone(),
        );
        r.register(
            "recovery_window_deliveries",
            "Deliveries over GitHub's redelivery window, by state: attempted (GitHub's log), held (in the journal), recovered (redelivered after a walk found them missing), missing",
            me.window_deliveries.clone(),
        );
        me
    }
}
