//! A route's circuit breaker. After `failures` consecutive failed
//! attempts across the route's partitions within `window`, the route
//! opens: no partition sends, but the one holding the route's oldest
//! pending delivery sends it as a probe once every `probe_every`; the
//! first success closes the route and every partition goes on, in order.
//! The open state is kept in the store (a restart, or another replica,
//! finds it open); the count of consecutive failures is this process's.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::config::BreakerConfig;
use crate::store::{Store, StoreError};

/// What a partition's turn may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed: send as usual.
    Closed,
    /// Open, and this turn holds the probe: send one delivery.
    Probe,
    /// Open: look again then.
    Wait(i64),
}

pub struct Breaker {
    failures: usize,
    window_ms: i64,
    probe_ms: i64,
    /// When each consecutive failure happened (a success empties it).
    recent: Mutex<VecDeque<i64>>,
}

impl Breaker {
    /// None when the route's breaker is off (`failures = 0`); a checked
    /// config's times.
    pub fn new(c: &BreakerConfig) -> Option<Breaker> {
        let (window, probe) = c.times().ok()?;
        (c.failures > 0).then(|| Breaker {
            failures: c.failures as usize,
            window_ms: window.as_millis() as i64,
            probe_ms: probe.as_millis() as i64,
            recent: Mutex::default(),
        })
    }

    pub fn probe_ms(&self) -> i64 {
        self.probe_ms
    }

    /// Whether `partition`'s turn may send at `now_ms`.
    pub async fn gate(
        &self,
        store: &Store,
        sink: &str,
        partition: &str,
        now_ms: i64,
    ) -> Result<Gate, StoreError> {
        let Some(open) = store.breaker(sink).await? else {
            return Ok(Gate::Closed);
        };
        if open.probe_at_ms > now_ms {
            return Ok(Gate::Wait(open.probe_at_ms));
        }
        // The probe is the route's oldest pending delivery.
        if store.oldest_head(sink).await?.as_deref() != Some(partition) {
            return Ok(Gate::Wait(now_ms + self.probe_ms));
        }
        if store
            .claim_probe(sink, now_ms, now_ms + self.probe_ms)
            .await?
        {
            Ok(Gate::Probe)
        } else {
            Ok(Gate::Wait(now_ms + self.probe_ms))
        }
    }

    /// A failed attempt at `now_ms` while closed; opens the route when it
    /// is the `failures`th in a row within the window. True when this
    /// call opened it.
    pub async fn failed(&self, store: &Store, sink: &str, now_ms: i64) -> Result<bool, StoreError> {
        let trip = {
            let mut recent = self.recent.lock().expect("breaker lock");
            recent.push_back(now_ms);
            while recent
                .front()
                .is_some_and(|t| *t <= now_ms - self.window_ms)
            {
                recent.pop_front();
            }
            let trip = recent.len() >= self.failures;
            if trip {
                recent.clear();
            }
            trip
        };
        if !trip {
            return Ok(false);
        }
        let opened = store
            .open_breaker(sink, now_ms, now_ms + self.probe_ms)
            .await?;
        if opened {
            tracing::warn!(
                sink,
                failures = self.failures,
                window_ms = self.window_ms,
                probe_every_ms = self.probe_ms,
                "route breaker opened: consecutive failures; only a probe goes until one succeeds"
            );
        }
        Ok(opened)
    }

    /// A successful attempt: the failures are no longer consecutive.
    pub fn succeeded(&self) {
        self.recent.lock().expect("breaker lock").clear();
    }

    /// The probe succeeded: closes the route and wakes its partitions.
    pub async fn close(&self, store: &Store, sink: &str) -> Result<(), StoreError> {
        if store.close_breaker(sink).await? {
            tracing::info!(sink, "route breaker closed: the probe succeeded");
        }
        self.succeeded();
        for (s, partition, _) in store.due_partitions().await? {
            if s == sink {
                store.wake(s, partition);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_zero_failures_mean_off() {
        let c = BreakerConfig::default();
        let b = Breaker::new(&c).unwrap();
        assert_eq!((b.failures, b.window_ms, b.probe_ms), (10, 60_000, 30_000));
        let off = BreakerConfig {
            failures: 0,
            ..c.clone()
        };
        assert!(Breaker::new(&off).is_none());
        let bad = BreakerConfig {
            window: "soon".into(),
            ..c
        };
        assert!(bad.times().unwrap_err().contains("breaker.window"));
    }
}
