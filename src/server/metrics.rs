//! Connections per listener (webhooks, gateway, admin) and the request
//! body budget they share. Registered by this part.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

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

impl ConnectionMetrics {
    pub fn register(r: &mut Registry) -> ConnectionMetrics {
        let me = ConnectionMetrics::default();
        r.register(
            "connections_open",
            "Open client connections, by listener (webhooks, gateway, admin)",
            me.open.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at once, by listener and reason (per_address: the address already holds max_connections_per_address)",
            me.refused.clone(),
        );
        r.register_with_unit(
            "body_budget_in_use",
            "Request body bytes held in memory now (webhooks and gateway), of body_budget_bytes",
            Unit::Bytes,
            me.body_budget_in_use.clone(),
        );
        r.register_with_unit(
            "body_budget",
            "Request body bytes that may be held in memory at once ([server] body_budget_bytes)",
            Unit::Bytes,
            me.body_budget.clone(),
        );
        me
    }
}
