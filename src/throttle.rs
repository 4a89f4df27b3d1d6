//! Failed authentications per client address: past a number per minute,
//! the address is refused before its credential is even looked at, so a
//! guesser learns nothing and costs little. Shared by the admin login and
//! the API gateway's token check.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;

/// Addresses remembered at most; past it, those quiet for a minute go.
const MAX_ADDRESSES: usize = 10_000;
const WINDOW_MS: i64 = 60_000;

pub struct Throttle {
    per_minute: u32,
    /// Failure times (epoch ms on `clock`) per address.
    failures: Mutex<HashMap<IpAddr, Vec<i64>>>,
    clock: Arc<dyn Clock>,
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
        }
    }

    /// Reads time on this clock instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Throttle {
        self.clock = clock;
        self
    }

    /// How long `from` must wait before trying again; None when it may try.
    pub fn wait(&self, from: IpAddr) -> Option<Duration> {
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

    /// Counts an attempt from `from` as a failure before it is checked,
    /// or says how long to wait: the check and the count are one step, so
    /// concurrent attempts cannot all pass the check before any is
    /// counted. A success calls [`Throttle::forgive`].
    pub fn reserve(&self, from: IpAddr) -> Result<(), Duration> {
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

    pub fn fail(&self, from: IpAddr) {
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

    /// A success: the address starts again from nothing.
    pub fn forgive(&self, from: IpAddr) {
        self.failures.lock().expect("throttle lock").remove(&from);
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
                std::thread::spawn(move || t.reserve(a).is_ok() as usize)
            })
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(passed, 5, "60 at once, 5 a minute");
        t.forgive(a);
        assert!(t.reserve(a).is_ok());
    }

    #[test]
    fn an_address_waits_after_its_failures_and_others_do_not() {
        let t = Throttle::new(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.wait(a), None);
            t.fail(a);
        }
        let wait = t.wait(a).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(61),
            "{wait:?}"
        );
        assert_eq!(t.wait(b), None);
        t.forgive(a);
        assert_eq!(t.wait(a), None);
    }

    #[test]
    fn failures_leave_the_window_a_minute_later_on_the_throttles_clock() {
        let clock = crate::clock::ManualClock::starting_now();
        let t = Throttle::new(2).with_clock(clock.clone());
        let a: IpAddr = "10.0.0.3".parse().unwrap();
        t.fail(a);
        clock.advance(30_000);
        t.fail(a);
        assert_eq!(
            t.wait(a),
            Some(Duration::from_secs(31)),
            "30 s left, and one"
        );
        assert!(t.reserve(a).is_err());
        clock.advance(30_000);
        // The first failure is a minute old: one slot is free again.
        assert_eq!(t.wait(a), None);
        assert!(t.reserve(a).is_ok());
        assert!(
            t.reserve(a).is_err(),
            "the second and the reservation count"
        );
        clock.advance(60_000);
        assert!(t.reserve(a).is_ok());
    }
}
