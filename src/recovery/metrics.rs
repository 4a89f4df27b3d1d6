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
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

impl RecoveryMetrics {
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
        me
    }
}
