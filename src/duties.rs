//! Periodic work that one replica at a time does (retention, recovery
//! walks): before each round, a replica takes or renews the duty in the
//! store, and skips the round when another holds it. On SQLite, one
//! server owns the file, so it always holds every duty. Also the
//! heartbeat by which replicas count each other.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::shutdown;
use crate::store::Store;
use crate::store::metrics::{DutyLabel, JournalMetrics};

/// How often a replica announces itself, and how recently one must have
/// to count as alive.
const HEARTBEAT: Duration = Duration::from_secs(10);
const ALIVE_WITHIN_MS: i64 = 30_000;

/// One periodic duty, as seen by one replica.
#[derive(Clone)]
pub struct Duty {
    store: Store,
    name: &'static str,
    holder: Arc<str>,
    ttl_ms: i64,
    clock: Arc<dyn Clock>,
    metrics: JournalMetrics,
}

impl Duty {
    /// `ttl` must outlast a round (or the round renews it, `mine` again,
    /// as it goes): past it another replica may take the duty over.
    pub fn new(
        store: Store,
        name: &'static str,
        holder: Arc<str>,
        ttl: Duration,
        clock: Arc<dyn Clock>,
        metrics: JournalMetrics,
    ) -> Duty {
        Duty {
            store,
            name,
            holder,
            ttl_ms: ttl.as_millis() as i64,
            clock,
            metrics,
        }
    }

    /// Takes or renews the duty; true when this replica should do it now.
    /// A store that cannot answer means no: the round waits.
    pub async fn mine(&self) -> bool {
        let held = match self
            .store
            .take_duty(self.name, &self.holder, self.clock.now_ms(), self.ttl_ms)
            .await
        {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!(duty = self.name, error = %e, "could not take the duty");
                false
            }
        };
        let gauge = self
            .metrics
            .duty_held
            .get_or_create(&DutyLabel { duty: self.name });
        if (gauge.get() == 1) != held {
            tracing::info!(
                duty = self.name,
                held,
                "periodic duty {}",
                if held {
                    "taken"
                } else {
                    "left to another replica"
                }
            );
        }
        gauge.set(i64::from(held));
        held
    }
}

/// Announces this replica every few seconds and keeps the count of
/// replicas alive for `/metrics`.
pub async fn heartbeat(
    store: Store,
    holder: Arc<str>,
    clock: Arc<dyn Clock>,
    metrics: JournalMetrics,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match store
            .heartbeat(&holder, clock.now_ms(), ALIVE_WITHIN_MS)
            .await
        {
            Ok(n) => {
                metrics.replicas_alive.set(n as i64);
            }
            Err(e) => tracing::debug!(error = %e, "heartbeat not recorded"),
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = shutdown::requested(&mut stop) => return,
        }
    }
}
