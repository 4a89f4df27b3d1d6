//! Failed authentications per client address: past a number per minute,
//! the address is refused before its credential is even looked at, so a
//! guesser learns nothing and costs little. Used by the admin login and
//! the API gateway's token check. On one node failures are counted in
//! memory; where replicas share a store they are counted in it, so a
//! guesser spreading attempts over the replicas behind a load balancer
//! meets one limit (and memory takes over while the store cannot answer).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use crate::store::Store;
use crate::store::sessions::Tally;

/// Addresses remembered at most; past it, those quiet for a minute go.
const MAX_ADDRESSES: usize = 10_000;
const WINDOW_MS: i64 = 60_000;

pub struct Throttle {
    per_minute: u32,
    /// Failure times (epoch ms on `clock`) per address.
    failures: Mutex<HashMap<IpAddr, Vec<i64>>>,
    clock: Arc<dyn Clock>,
    /// Where replicas share a store: it, and what this throttle's
    /// addresses are kept under there (the login's and the gateway's apart).
    shared: Option<(Store, &'static str)>,
}

/// How long until the oldest counted failure leaves the window, and a
/// second more.
fn wait_from(oldest: i64, now: i64) -> Duration {
    Duration::from_millis((WINDOW_MS - (now - oldest)).max(0) as u64) + Duration::from_secs(1)
}

fn recent(t: i64, now: i64) -> bool {
    now - t < WINDOW_MS
}

impl Throttle {
    pub fn new(per_minute: u32) -> Throttle {
        Throttle {
            per_minute: per_minute.max(1),
            failures: Mutex::default(),
            clock: crate::clock::system(),
            shared: None,
        }
    }

    /// Counts failures in `store` (under `kind`), with every replica on it.
    pub fn shared(mut self, store: Store, kind: &'static str) -> Throttle {
        self.shared = Some((store, kind));
        self
    }

    /// Counts as `tally` says in the shared store: Some(answer) when it
    /// answered, None when there is none or it could not.
    async fn tally(&self, from: IpAddr, tally: Tally) -> Option<Option<Duration>> {
        let (store, kind) = self.shared.as_ref()?;
        let now = self.clock.now_ms();
        let address = format!("{kind}:{from}");
        match store
            .tally_failure(&address, tally, now, WINDOW_MS, self.per_minute)
            .await
        {
            Ok(over) => Some(over.map(|oldest| wait_from(oldest, now))),
            Err(e) => {
                tracing::debug!(error = %e, "shared throttle unavailable; counting here");
                None
            }
        }
    }

    /// How long `from` must wait before trying again; None when it may try.
    pub async fn wait(&self, from: IpAddr) -> Option<Duration> {
        match self.tally(from, Tally::Check).await {
            Some(answer) => answer,
            None => self.wait_here(from),
        }
    }

    /// Counts an attempt from `from` as a failure before it is checked,
    /// or says how long to wait: the check and the count are one step, so
    /// concurrent attempts (on any replica) cannot all pass the check
    /// before any is counted. A success calls [`Throttle::forgive`].
    pub async fn reserve(&self, from: IpAddr) -> Result<(), Duration> {
        match self.tally(from, Tally::Reserve).await {
            Some(None) => Ok(()),
            Some(Some(wait)) => Err(wait),
            None => self.reserve_here(from),
        }
    }

    pub async fn fail(&self, from: IpAddr) {
        if self.tally(from, Tally::Record).await.is_none() {
            self.fail_here(from);
        }
    }

    /// A success: the address starts again from nothing.
    pub async fn forgive(&self, from: IpAddr) {
        if let Some((store, kind)) = &self.shared
            && let Err(e) = store.forgive_failures(&format!("{kind}:{from}")).await
        {
            tracing::debug!(error = %e, "shared throttle not reset");
        }
        self.failures.lock().expect("throttle lock").remove(&from);
    }

    /// Reads time on this clock instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Throttle {
        self.clock = clock;
        self
    }

    fn wait_here(&self, from: IpAddr) -> Option<Duration> {
        let mut failures = self.failures.lock().expect("throttle lock");
        let now = self.clock.now_ms();
        let list = failures.get_mut(&from)?;
        list.retain(|t| recent(*t, now));
        if list.len() < self.per_minute as usize {
            return None;
        }
        let oldest = list.first().copied()?;
        Some(wait_from(oldest, now))
    }

    fn reserve_here(&self, from: IpAddr) -> Result<(), Duration> {
        let mut failures = self.failures.lock().expect("throttle lock");
        let now = self.clock.now_ms();
        if failures.len() >= MAX_ADDRESSES {
            failures.retain(|_, l| l.last().is_some_and(|t| recent(*t, now)));
        }
        let list = failures.entry(from).or_default();
        list.retain(|t| recent(*t, now));
        if list.len() >= self.per_minute as usize {
            let oldest = list.first().copied().unwrap_or(now);
            return Err(wait_from(oldest, now));
        }
        list.push(now);
        Ok(())
    }

    fn fail_here(&self, from: IpAddr) {
        let mut failures = self.failures.lock().expect("throttle lock");
        let now = self.clock.now_ms();
        if failures.len() >= MAX_ADDRESSES {
            failures.retain(|_, l| l.last().is_some_and(|t| recent(*t, now)));
        }
        let list = failures.entry(from).or_default();
        list.push(now);
        // Only the last `per_minute` matter for the wait.
        if list.len() > self.per_minute as usize {
            list.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_counted_before_the_check() {
        let t = std::sync::Arc::new(Throttle::new(5));
        let a: IpAddr = "10.0.0.9".parse().unwrap();
        let passed: usize = (0..60)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || t.reserve_here(a).is_ok() as usize)
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(passed, 5, "60 at once, 5 a minute");
        t.failures.lock().unwrap().remove(&a);
        assert!(t.reserve_here(a).is_ok());
    }

    #[test]
    fn an_address_waits_after_its_failures_and_others_do_not() {
        let t = Throttle::new(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.wait_here(a), None);
            t.fail_here(a);
        }
        let wait = t.wait_here(a).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(61),
            "{wait:?}"
        );
        assert_eq!(t.wait_here(b), None);
        t.failures.lock().unwrap().remove(&a);
        assert_eq!(t.wait_here(a), None);
    }

    #[test]
    fn failures_leave_the_window_a_minute_later_on_the_throttles_clock() {
        let clock = crate::clock::ManualClock::starting_now();
        let t = Throttle::new(2).with_clock(clock.clone());
        let a: IpAddr = "10.0.0.3".parse().unwrap();
        t.fail_here(a);
        clock.advance(30_000);
        t.fail_here(a);
        assert_eq!(
            t.wait_here(a),
            Some(Duration::from_secs(31)),
            "30 s left, and one"
        );
        assert!(t.reserve_here(a).is_err());
        clock.advance(30_000);
        // The first failure is a minute old: one slot is free again.
        assert_eq!(t.wait_here(a), None);
        assert!(t.reserve_here(a).is_ok());
        assert!(
            t.reserve_here(a).is_err(),
            "the second and the reservation count"
        );
        clock.advance(60_000);
        assert!(t.reserve_here(a).is_ok());
    }
}
