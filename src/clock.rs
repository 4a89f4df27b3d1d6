//! Wall-clock time in the units the journal stores, and the [`Clock`]
//! the parts that compare times (leases, backoff, pauses) are given, so a
//! test can set and move it instead of sleeping; and the [`Term`] a
//! grant from a shared store (a lease, a lane) is trusted for.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long this process may act on something the store granted for a
/// term (a partition's lease, a credential's lane), by its own monotonic
/// clock, from before the write that granted it: never later than the
/// store's own idea. A freeze (SIGSTOP, a VM paused) spends it as any wait
/// does, so a process that wakes after the grant passed on does not act
/// on it.
#[derive(Debug, Clone, Copy)]
pub struct Term {
    until: Instant,
}

impl Term {
    /// Granted for `length` by a write issued at `before`.
    pub fn granted(before: Instant, length: Duration) -> Term {
        Term {
            until: before + length,
        }
    }

    /// Whether a step of `step`, starting now, ends within the term.
    pub fn covers(&self, step: Duration) -> bool {
        Instant::now() + step <= self.until
    }
}

/// Milliseconds since the Unix epoch, as some part sees them.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// The system's clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told: for tests.
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// Starts at the system's now.
    pub fn starting_now() -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(now_ms())))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `3m 12s`, `2h 5m`, `4d 1h`: the two largest units.
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) if ms < 1000 => format!("{}ms", ms.max(0)),
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// RFC 3339 (GitHub writes `2021-08-05T10:33:58Z`, sometimes with
/// fractions or an offset) → epoch ms; anything else is absent.
pub fn parse_rfc3339_ms(s: Option<&str>) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s?, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// A time that is neither an age nor an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error("--since {0:?}: use 30m, 6h, 2d or an RFC 3339 time")]
pub struct BadSince(pub String);

/// `6h`, `30m`, `2d`, `45s`, or an RFC 3339 time → epoch ms.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, BadSince> {
    let unit = |c: char| match c {
        's' => Some(1_000),
        'm' => Some(60_000),
        'h' => Some(3_600_000),
        'd' => Some(86_400_000),
        _ => None,
    };
    if let Some(last) = s.chars().last()
        && let Some(ms) = unit(last)
        && let Ok(n) = s[..s.len() - 1].parse::<i64>()
    {
        return Ok(now_ms - n * ms);
    }
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| BadSince(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::Term;
    use super::parse_rfc3339_ms as parse_time;
    use std::time::{Duration, Instant};

    #[test]
    fn a_term_covers_a_step_only_while_the_step_ends_within_it() {
        let before = Instant::now();
        let term = Term::granted(before, Duration::from_secs(30));
        assert!(term.covers(Duration::from_secs(20)));
        assert!(!term.covers(Duration::from_secs(31)));
        // Granted by a write issued 25 s ago (a process frozen since):
        // 5 s are left, whatever the store said then.
        let spent = Term::granted(before - Duration::from_secs(25), Duration::from_secs(30));
        assert!(spent.covers(Duration::from_secs(4)));
        assert!(!spent.covers(Duration::from_secs(6)));
    }

    #[test]
    fn times_come_from_rfc3339_in_any_of_githubs_spellings() {
        assert_eq!(parse_time(Some("1970-01-01T00:00:01Z")), Some(1000));
        assert_eq!(parse_time(Some("1970-01-01T00:00:01.250Z")), Some(1250));
        assert_eq!(parse_time(Some("1970-01-01T02:00:01+02:00")), Some(1000));
        assert_eq!(parse_time(Some("yesterday")), None);
        assert_eq!(parse_time(None), None);
    }
}
