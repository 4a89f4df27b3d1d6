//! Failed authentications per client address: past a number per minute,
//! the address is refused before its credential is even looked at, so a
//! guesser learns nothing and costs little. Shared by the admin login and
//! the API gateway's token check.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses remembered at most; past it, those quiet for a minute go.
const MAX_ADDRESSES: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(60);

pub struct Throttle {
    per_minute: u32,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

impl Throttle {
    pub fn new(per_minute: u32) -> Throttle {
        Throttle {
            per_minute: per_minute.max(1),
            failures: Mutex::default(),
        }
    }

    /// How long `from` must wait before trying again; None when it may try.
    pub fn wait(&self, from: IpAddr) -> Option<Duration> {
        let mut failures = self.failures.lock().expect("throttle lock");
        let now = Instant::now();
        let list = failures.get_mut(&from)?;
        list.retain(|t| now.duration_since(*t) < WINDOW);
        if list.len() < self.per_minute as usize {
            return None;
        }
        let oldest = list.first().copied()?;
        Some(WINDOW.saturating_sub(now.duration_since(oldest)) + Duration::from_secs(1))
    }

    /// Counts an attempt from `from` as a failure before it is checked,
    /// or says how long to wait: the check and the count are one step, so
    /// concurrent attempts cannot all pass the check before any is
    /// counted. A success calls [`Throttle::forgive`].
    pub fn reserve(&self, from: IpAddr) -> Result<(), Duration> {
        let mut failures = self.failures.lock().expect("throttle lock");
        let now = Instant::now();
        if failures.len() >= MAX_ADDRESSES {
            failures.retain(|_, l| l.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let list = failures.entry(from).or_default();
        list.retain(|t| now.duration_since(*t) < WINDOW);
        if list.len() >= self.per_minute as usize {
            let oldest = list.first().copied().unwrap_or(now);
            return Err(WINDOW.saturating_sub(now.duration_since(oldest)) + Duration::from_secs(1));
        }
        list.push(now);
        Ok(())
    }

    pub fn fail(&self, from: IpAddr) {
        let mut failures = self.failures.lock().expect("throttle lock");
        let now = Instant::now();
        if failures.len() >= MAX_ADDRESSES {
            failures.retain(|_, l| l.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
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
}
