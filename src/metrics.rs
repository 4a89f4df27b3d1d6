//! The registry every part registers its own metrics in, and the text
//! exposition. Each part owns its metrics (`store::metrics`,
//! `scheduler::metrics`, ...); this module only gathers them, so no part
//! depends on another through it.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::registry::Registry;

use crate::gateway::metrics::GatewayMetrics;
use crate::github::metrics::GithubMetrics;
use crate::ingest::metrics::IngestMetrics;
use crate::problems::report::ProblemMetrics;
use crate::recovery::metrics::RecoveryMetrics;
use crate::scheduler::metrics::{SinkGauges, SinkMetrics};
use crate::server::metrics::ConnectionMetrics;
use crate::store::metrics::{JournalGauges, JournalMetrics};

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
    pub problems: ProblemMetrics,
    pub reload: crate::reload::ReloadMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("gatehouse");
        Metrics {
            ingest: IngestMetrics::register(&mut r),
            journal: JournalMetrics::register(&mut r),
            journal_gauges: JournalGauges::register(&mut r),
            sinks: SinkMetrics::register(&mut r),
            sink_gauges: SinkGauges::register(&mut r),
            github: GithubMetrics::register(&mut r),
            gateway: GatewayMetrics::register(&mut r),
            connections: ConnectionMetrics::register(&mut r),
            recovery: RecoveryMetrics::register(&mut r),
            problems: ProblemMetrics::register(&mut r),
            reload: crate::reload::ReloadMetrics::register(&mut r),
            registry: Arc::new(r),
        }
    }

    /// The Prometheus/OpenMetrics text exposition: gatehouse's own metrics,
    /// then `unprefixed` ones when given (the Actions metrics, named as
    /// GitHub exporters name them, so without the `gatehouse_` prefix).
    pub fn render(&self, unprefixed: Option<Box<dyn Collector>>) -> String {
        use prometheus_client::encoding::text;
        let mut out = String::new();
        text::encode_registry(&mut out, &self.registry).expect("writing to a String cannot fail");
        if let Some(c) = unprefixed {
            let mut r = Registry::default();
            r.register_collector(c);
            text::encode_registry(&mut out, &r).expect("writing to a String cannot fail");
        }
        text::encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }
}
