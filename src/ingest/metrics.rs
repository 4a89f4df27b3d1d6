//! What ingest counts: deliveries by event and result, and how long an
//! answer took. Registered by this part.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
    /// `event` must already be bounded (see `journal::events::label`): a
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

impl IngestMetrics {
    pub fn register(r: &mut Registry) -> IngestMetrics {
        let me = IngestMetrics {
            deliveries: Family::default(),
            // 0.25 ms .. ~8 s
            latency: Histogram::new(exponential_buckets(0.00025, 2.0, 16)),
        };
        r.register(
            "webhook_deliveries",
            "Webhook deliveries received, by event and result",
            me.deliveries.clone(),
        );
        r.register_with_unit(
            "webhook_ingest_duration",
            "Time from request start to answer, for POST /webhooks/github",
            Unit::Seconds,
            me.latency.clone(),
        );
        me
    }
}
