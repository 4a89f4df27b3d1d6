//! Each sink's backlog, lag and dead letters once a minute, and the
//! minute's attempts by outcome, so the overview can chart them over the
//! last hour and day (a gauge on `/metrics` only says "now").
//!
//! Attempts are counted in memory as they happen and written once a
//! minute (and at shutdown), summed, so recording an attempt (what a
//! forward drain is bound by) writes no more than its own row. A crash
//! loses at most the last minute's counts of the chart, never an
//! attempt's own row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock;
use crate::shutdown;
use crate::store::{Store, StoreError};

/// Samples and per-minute attempt counts are kept this long: the charts
/// show a day.
pub const KEEP_MINUTES: i64 = 2 * 24 * 60;

/// Attempts by (minute, sink, outcome), not yet written.
#[derive(Default)]
pub struct AttemptMinutes(Mutex<HashMap<(i64, String, &'static str), i64>>);

impl AttemptMinutes {
    pub fn new() -> Arc<AttemptMinutes> {
        Arc::new(AttemptMinutes::default())
    }

    /// One attempt of `sink` that started at `at_ms`.
    pub fn add(&self, sink: &str, outcome: &'static str, at_ms: i64) {
        *self
            .0
            .lock()
            .expect("attempt minutes lock")
            .entry((at_ms / 60_000, sink.to_string(), outcome))
            .or_default() += 1;
    }

    fn take(&self) -> HashMap<(i64, String, &'static str), i64> {
        std::mem::take(&mut *self.0.lock().expect("attempt minutes lock"))
    }

    /// Puts counts that could not be written back, for the next try.
    fn restore(&self, counts: HashMap<(i64, String, &'static str), i64>) {
        let mut mine = self.0.lock().expect("attempt minutes lock");
        for (k, n) in counts {
            *mine.entry(k).or_default() += n;
        }
    }
}

/// Samples every minute until `stop`, then writes the last counts.
pub async fn run(journal: Store, attempts: Arc<AttemptMinutes>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = sample(&journal, &attempts, clock::now_ms()).await {
            tracing::debug!(error = %e, "could not sample the sinks' backlog");
        }
        // Just past the next minute's start, so each minute gets one.
        let into = clock::now_ms().rem_euclid(60_000) as u64;
        let wait = Duration::from_millis(60_000 - into + 500);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown::requested(&mut stop) => {
                if let Err(e) = flush(&journal, &attempts).await {
                    tracing::debug!(error = %e, "could not write the last attempt counts");
                }
                return;
            }
        }
    }
}

/// Writes the attempts counted so far (added to what a minute has).
pub async fn flush(store: &Store, attempts: &AttemptMinutes) -> Result<(), StoreError> {
    let counts = attempts.take();
    if counts.is_empty() {
        return Ok(());
    }
    let kept = counts.clone();
    let written = store
        .add_attempt_minutes(counts.into_iter().collect())
        .await;
    if written.is_err() {
        // The journal could not be written (disk full, say): keep the
        // counts for the next minute rather than lose them.
        attempts.restore(kept);
    }
    written
}

/// Records the sinks' state now with the attempts counted since the last
/// time, and drops what is older than [`KEEP_MINUTES`].
pub async fn sample(
    store: &Store,
    attempts: &AttemptMinutes,
    now_ms: i64,
) -> Result<(), StoreError> {
    flush(store, attempts).await?;
    store.sample_sinks(now_ms, KEEP_MINUTES).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sum_per_minute_and_come_back_when_not_written() {
        let a = AttemptMinutes::default();
        a.add("ci", "done", 60_000);
        a.add("ci", "done", 119_999);
        a.add("ci", "failed", 120_000);
        let taken = a.take();
        assert_eq!(taken[&(1, "ci".to_string(), "done")], 2);
        assert_eq!(taken[&(2, "ci".to_string(), "failed")], 1);
        assert!(a.take().is_empty());
        a.add("ci", "done", 60_000);
        a.restore(taken);
        assert_eq!(a.take()[&(1, "ci".to_string(), "done")], 3);
    }
}
