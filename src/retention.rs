//! Retention: deliveries older than `retention_days` whose work is
//! finished lose their stored request, and, once GitHub can no longer
//! redeliver them (3 days; 7 from GitHub Enterprise Server), their row and
//! dedupe key. Done by one replica at a time, in small batches that share
//! the writer with ingest.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::duties::Duty;
use crate::shutdown;
use crate::store::{Pruned, Store};

const DAY_MS: i64 = 86_400_000;
/// Pruning shares the journal's one writer with ingest: a batch's deletes
/// ride in the same group commit as the acks queued beside it. Batches of
/// 10 with a 10 ms rest keep ack p99 within 2x of normal while pruning
/// (BENCHMARKS.md, retention) and still delete ~800 deliveries/s, far
/// above any organisation's arrival rate.
const BATCH: usize = 10;
const REST: Duration = Duration::from_millis(10);
const INTERVAL: Duration = Duration::from_secs(600);
/// The duty is held for two minutes (app.rs); a round renews it this often.
const RENEW_EVERY: Duration = Duration::from_secs(30);

/// How long GitHub may still redeliver a delivery: its dedupe key is kept
/// at least this long, whatever the retention.
pub fn redelivery_window_days(api_url: &str) -> u32 {
    if api_url.trim_end_matches('/') == "https://api.github.com" {
        3
    } else {
        7
    }
}

/// The two horizons at `now_ms`: bodies before the first, whole
/// deliveries (keys) before the second.
pub fn horizons(now_ms: i64, retention_days: u32, window_days: u32) -> (i64, i64) {
    let bodies = now_ms - i64::from(retention_days) * DAY_MS;
    let keys = now_ms - i64::from(retention_days.max(window_days)) * DAY_MS;
    (bodies, keys)
}

pub struct Retention {
    pub store: Store,
    pub days: u32,
    pub window_days: u32,
    pub clock: Arc<dyn Clock>,
    pub duty: Duty,
}

impl Retention {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        if self.days == 0 {
            return;
        }
        loop {
            if self.duty.mine().await {
                self.round(&stop).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(INTERVAL) => {}
                _ = shutdown::requested(&mut stop) => return,
            }
        }
    }

    /// Prunes until nothing is left to prune, renewing the duty as it goes.
    pub async fn round(&self, stop: &watch::Receiver<bool>) -> Pruned {
        let (bodies, keys) = horizons(self.clock.now_ms(), self.days, self.window_days);
        let mut total = Pruned::default();
        let mut renewed = std::time::Instant::now();
        loop {
            match self.store.prune(bodies, keys, BATCH).await {
                Ok(n) => {
                    total.bodies += n.bodies;
                    total.deliveries += n.deliveries;
                    if n.bodies < BATCH && n.deliveries < BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention pruning failed");
                    break;
                }
            }
            if *stop.borrow() {
                break;
            }
            // Renewed well inside its term, not after every small batch.
            if renewed.elapsed() >= RENEW_EVERY {
                if !self.duty.mine().await {
                    break;
                }
                renewed = std::time::Instant::now();
            }
            tokio::time::sleep(REST).await;
        }
        if total != Pruned::default() {
            tracing::info!(
                bodies = total.bodies,
                deliveries = total.deliveries,
                days = self.days,
                keys_kept_days = self.days.max(self.window_days),
                "pruned old deliveries"
            );
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_outlive_bodies_until_github_cannot_redeliver() {
        let now = 100 * DAY_MS;
        assert_eq!(redelivery_window_days("https://api.github.com"), 3);
        assert_eq!(redelivery_window_days("https://ghe.example.com/api/v3"), 7);
        // A day of bodies; keys for the three days github.com redelivers.
        assert_eq!(horizons(now, 1, 3), (99 * DAY_MS, 97 * DAY_MS));
        // Retention past the window: both go together.
        assert_eq!(horizons(now, 30, 7), (70 * DAY_MS, 70 * DAY_MS));
    }
}
