//! `[[routes]]`: forward routes to internal consumers.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;

/// Whether a failing job holds up the rest of its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// A failing head blocks its partition until it succeeds or dies.
    #[default]
    Strict,
    /// Failed jobs step aside; later ones go ahead.
    None,
}

/// A forward sink: one internal consumer that receives matching deliveries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    pub url: String,
    /// Event names; empty = all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Payload actions; empty = all.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Repository full names, `*` matching any run of characters
    /// (`"octo-org/*"`); empty = all.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Re-sign `X-Hub-Signature-256` with this; absent = pass GitHub's through.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default = "default_route_timeout")]
    pub timeout_secs: u64,
    /// Attempts before a job is dead. 0 (unset) = one more than `retry`
    /// has delays; set without `retry`, the delays double from 1 s
    /// (capped at an hour), as before part 15.
    #[serde(default)]
    pub max_attempts: u32,
    /// Delays between attempts (`["5s", "30s", "2m"]`); empty = the
    /// default schedule, [`DEFAULT_RETRY`], which spans over a day.
    #[serde(default)]
    pub retry: Vec<String>,
    #[serde(default)]
    pub ordering: Ordering,
    /// What a dead job does to its partition under strict order: `hold`
    /// (the default) keeps the partition waiting behind it until an
    /// operator retries or skips it; `skip` lets later ones go ahead and
    /// records that order broke there.
    #[serde(default)]
    pub on_dead: Option<OnDeadConfig>,
    /// The consumer calls GitHub with the pool's credentials: pause an
    /// organisation's partitions while its credentials are known spent
    /// (until their reset, or a secondary limit's end).
    #[serde(default)]
    pub github_budget: bool,
    /// The route's circuit breaker.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Send a partition's pending deliveries several to a request.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// Merge a pull request's pending events into one batch (needs
    /// `batch`).
    #[serde(default)]
    pub coalesce: Option<Coalesce>,
}

/// `batch = { max = 50, wait = "200ms" }`: up to `max` of a partition's
/// pending deliveries in one request, in order; a batch smaller than
/// `max` waits up to `wait` after its first delivery arrived for more.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    pub max: usize,
    #[serde(default = "default_batch_wait")]
    pub wait: String,
    /// A batch stops growing past this many bytes of body (one delivery
    /// always goes, however large).
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: u64,
    #[serde(default)]
    pub format: BatchFormat,
}

/// How a batch's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BatchFormat {
    /// `application/json`: one array of deliveries.
    #[default]
    Json,
    /// `application/x-ndjson`: one delivery per line.
    Ndjson,
}

/// What a batch may gather from further back than its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coalesce {
    /// A batch is one pull request's pending events (or events about no
    /// pull request), taken past other pull requests' events.
    PullRequest,
}

fn default_batch_wait() -> String {
    "200ms".into()
}

fn default_batch_bytes() -> u64 {
    10 * 1024 * 1024
}

/// A checked `batch` (and `coalesce`), as the forward sink runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batching {
    pub max: usize,
    pub wait: Duration,
    pub max_bytes: u64,
    pub format: BatchFormat,
    pub coalesce: Option<Coalesce>,
}

impl Batching {
    /// In words, for check-config and the pages.
    pub fn summary(&self) -> String {
        let format = match self.format {
            BatchFormat::Json => "a JSON array",
            BatchFormat::Ndjson => "NDJSON",
        };
        let coalesce = match self.coalesce {
            Some(Coalesce::PullRequest) => ", a pull request's events together",
            None => "",
        };
        format!(
            "batches of up to {} as {format}, waiting up to {} for more{coalesce}",
            self.max,
            humantime::format_duration(self.wait)
        )
    }
}

/// Largest `batch.max` and `batch.wait` accepted.
pub const BATCH_MAX: usize = 1000;
pub const BATCH_WAIT_MAX: Duration = Duration::from_secs(60);

/// After `failures` consecutive failures across a route's partitions
/// within `window`, the route opens: nothing is sent but one probe (its
/// oldest pending delivery) every `probe_every`, and the first success
/// closes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// 0 = never open.
    pub failures: u32,
    pub window: String,
    pub probe_every: String,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 10,
            window: "1m".into(),
            probe_every: "30s".into(),
        }
    }
}

impl BreakerConfig {
    /// (window, probe interval), or what in them is not a duration.
    pub fn times(&self) -> Result<(Duration, Duration), String> {
        let parse = |key: &str, v: &str| {
            humantime::parse_duration(v)
                .map_err(|e| format!("breaker.{key} {v:?}: {e}"))
                .and_then(|d| {
                    if d.is_zero() {
                        Err(format!("breaker.{key} must be longer than 0"))
                    } else {
                        Ok(d)
                    }
                })
        };
        Ok((
            parse("window", &self.window)?,
            parse("probe_every", &self.probe_every)?,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDeadConfig {
    Hold,
    Skip,
}

fn default_route_timeout() -> u64 {
    10
}

/// The default retry schedule: quick at first, then hours apart, so a
/// consumer down for a day loses nothing (31 h 42 m over 13 attempts).
pub const DEFAULT_RETRY: &[&str] = &[
    "1s", "5s", "30s", "2m", "10m", "30m", "1h", "2h", "4h", "8h", "8h", "8h",
];

/// When a route's failed job is tried again, and how often at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// The delay before each retry, in order.
    Delays(Vec<Duration>),
    /// Doubling from 1 s, capped at an hour, for `max_attempts` attempts.
    Doubling { max_attempts: u32 },
}

impl Schedule {
    /// The default schedule, [`DEFAULT_RETRY`].
    pub fn standard() -> Schedule {
        Schedule::Delays(
            DEFAULT_RETRY
                .iter()
                .map(|d| humantime::parse_duration(d).expect("the default delays parse"))
                .collect(),
        )
    }

    /// In words, for check-config and the pages: "13 attempts over
    /// 31h 42m (1s, 5s, ...)".
    pub fn summary(&self) -> String {
        let span = crate::clock::span(self.span().as_millis() as i64);
        match self {
            Schedule::Delays(d) => {
                let delays: Vec<String> = d
                    .iter()
                    .map(|d| humantime::format_duration(*d).to_string())
                    .collect();
                format!(
                    "{} attempts over {span} ({})",
                    self.max_attempts(),
                    delays.join(", ")
                )
            }
            Schedule::Doubling { max_attempts } => {
                format!("{max_attempts} attempts, doubling from 1 s, over {span}")
            }
        }
    }

    /// Attempts before a job is dead.
    pub fn max_attempts(&self) -> u32 {
        match self {
            Schedule::Delays(d) => d.len() as u32 + 1,
            Schedule::Doubling { max_attempts } => *max_attempts,
        }
    }

    /// The delay before retry `n` (1-based: after the `n`th attempt),
    /// without jitter.
    pub fn delay(&self, n: u32) -> Duration {
        match self {
            Schedule::Delays(d) => d
                .get(n.saturating_sub(1) as usize)
                .or(d.last())
                .copied()
                .unwrap_or(Duration::from_secs(1)),
            Schedule::Doubling { .. } => Duration::from_secs(1u64 << n.saturating_sub(1).min(20))
                .min(Duration::from_secs(3600)),
        }
    }

    /// From the first attempt to the last, retry delays summed.
    pub fn span(&self) -> Duration {
        (1..self.max_attempts()).map(|n| self.delay(n)).sum()
    }
}

impl RouteConfig {
    /// The route's schedule; Err names what in `retry` is not a duration
    /// or why it and `max_attempts` disagree.
    pub fn schedule(&self) -> Result<Schedule, String> {
        let parse = |list: &[&str]| -> Result<Vec<Duration>, String> {
            list.iter()
                .map(|d| {
                    humantime::parse_duration(d)
                        .map_err(|e| format!("retry {d:?}: {e} (write delays as 5s, 2m, 1h)"))
                })
                .collect()
        };
        if self.retry.is_empty() {
            if self.max_attempts > 0 {
                return Ok(Schedule::Doubling {
                    max_attempts: self.max_attempts,
                });
            }
            return Ok(Schedule::standard());
        }
        let delays = parse(&self.retry.iter().map(String::as_str).collect::<Vec<_>>())?;
        if delays.iter().any(Duration::is_zero) {
            return Err("retry: every delay must be longer than 0".into());
        }
        let derived = delays.len() as u32 + 1;
        if self.max_attempts > 0 && self.max_attempts != derived {
            return Err(format!(
                "max_attempts {} disagrees with retry ({} delays make {derived} attempts): leave max_attempts out",
                self.max_attempts,
                delays.len()
            ));
        }
        Ok(Schedule::Delays(delays))
    }

    /// Attempts before a job is dead (a checked config's schedule).
    pub fn max_attempts(&self) -> u32 {
        self.schedule().map_or(1, |s| s.max_attempts())
    }

    /// The route's batching (None: one delivery per request); Err names
    /// the key (`batch` or `coalesce`) and what is wrong with it.
    pub fn batching(&self) -> Result<Option<Batching>, (&'static str, String)> {
        let Some(b) = &self.batch else {
            return match self.coalesce {
                Some(_) => Err((
                    "coalesce",
                    "coalesce merges events into batches: set batch too".into(),
                )),
                None => Ok(None),
            };
        };
        self.batch_of(b).map(Some).map_err(|e| ("batch", e))
    }

    fn batch_of(&self, b: &BatchConfig) -> Result<Batching, String> {
        if b.max == 0 || b.max > BATCH_MAX {
            return Err(format!(
                "batch.max {} must be between 1 and {BATCH_MAX}",
                b.max
            ));
        }
        let wait = humantime::parse_duration(&b.wait)
            .map_err(|e| format!("batch.wait {:?}: {e} (write it as 200ms, 1s)", b.wait))?;
        if wait > BATCH_WAIT_MAX {
            return Err(format!(
                "batch.wait {:?} is longer than {}",
                b.wait,
                humantime::format_duration(BATCH_WAIT_MAX)
            ));
        }
        if b.max_bytes == 0 {
            return Err("batch.max_bytes must be at least 1".into());
        }
        Ok(Batching {
            max: b.max,
            wait,
            max_bytes: b.max_bytes,
            format: b.format,
            coalesce: self.coalesce,
        })
    }

    /// How the route sends, in words: one delivery per request, or its
    /// batches (or what is wrong with them).
    pub fn sends(&self) -> String {
        match self.batching() {
            Ok(None) => "one delivery per request".into(),
            Ok(Some(b)) => b.summary(),
            Err((_, e)) => e,
        }
    }

    /// What a dead job does: strict routes hold unless told to skip;
    /// unordered ones have no order to keep.
    pub fn on_dead(&self) -> crate::store::jobs::OnDead {
        use crate::store::jobs::OnDead;
        match (self.ordering, self.on_dead) {
            (Ordering::None, _) => OnDead::Unordered,
            (Ordering::Strict, Some(OnDeadConfig::Skip)) => OnDead::Skip,
            (Ordering::Strict, _) => OnDead::Hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(retry: &[&str], max_attempts: u32) -> RouteConfig {
        RouteConfig {
            name: "ci".into(),
            url: "http://x".into(),
            events: vec![],
            actions: vec![],
            repositories: vec![],
            secret: None,
            secret_file: None,
            timeout_secs: 10,
            max_attempts,
            retry: retry.iter().map(|s| s.to_string()).collect(),
            ordering: Ordering::Strict,
            on_dead: None,
            github_budget: false,
            breaker: BreakerConfig::default(),
            batch: None,
            coalesce: None,
        }
    }

    #[test]
    fn a_schedule_gives_its_delays_and_derives_max_attempts() {
        let s = route(&["5s", "2m", "1h"], 0).schedule().unwrap();
        assert_eq!(s.max_attempts(), 4);
        assert_eq!(s.delay(1), Duration::from_secs(5));
        assert_eq!(s.delay(3), Duration::from_secs(3600));
        assert_eq!(s.span(), Duration::from_secs(5 + 120 + 3600));
        assert_eq!(s.summary(), "4 attempts over 1h 2m (5s, 2m, 1h)");
        assert!(
            route(&["5s"], 3)
                .schedule()
                .unwrap_err()
                .contains("max_attempts 3")
        );
        assert!(
            route(&["5 parsecs"], 0)
                .schedule()
                .unwrap_err()
                .contains("5 parsecs")
        );
        assert!(route(&["0s"], 0).schedule().is_err());
    }

    #[test]
    fn max_attempts_alone_keeps_doubling_from_a_second() {
        let s = route(&[], 5).schedule().unwrap();
        assert_eq!(s.max_attempts(), 5);
        assert_eq!(s.delay(1), Duration::from_secs(1));
        assert_eq!(s.delay(4), Duration::from_secs(8));
        assert_eq!(
            route(&[], 40).schedule().unwrap().delay(30),
            Duration::from_secs(3600)
        );
    }
}
