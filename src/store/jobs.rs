//! Jobs, leases and attempts: the types the scheduler and its sinks hand
//! the store. (The scheduler owns the contract with sinks; the attempt a
//! sink reports is defined here, the lowest layer that needs it, so the
//! store never imports the scheduler.)

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The consumer asked us to wait (429/503 with Retry-After, or a spent
    /// rate limit): pause the partition; the attempt does not count.
    Pause {
        until_ms: i64,
    },
    /// Anything else: retry later, or dead letter after max_attempts.
    Failed,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub outcome: Outcome,
    pub status_code: Option<u16>,
    pub started_at_ms: i64,
    pub duration_ms: i64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
    /// Where it was sent (None: run in-process).
    pub url: Option<String>,
    /// The consumer's answer headers, in wire form.
    pub response_headers: Option<Vec<u8>>,
}

impl Attempt {
    /// The same attempt as the jobs it finished saw it: done, whatever
    /// became of the rest of their batch.
    pub fn for_done(&self) -> Attempt {
        Attempt {
            outcome: Outcome::Done,
            error: None,
            ..self.clone()
        }
    }

    /// An attempt run in-process (no consumer): done, or failed with why.
    pub fn in_process(now_ms: i64, failed_because: Option<&str>) -> Attempt {
        Attempt {
            outcome: match failed_because {
                None => Outcome::Done,
                Some(_) => Outcome::Failed,
            },
            status_code: None,
            started_at_ms: now_ms,
            duration_ms: 0,
            error: failed_because.map(str::to_string),
            response_excerpt: None,
            url: None,
            response_headers: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub delivery_id: i64,
    pub attempts: u32,
    pub next_at_ms: i64,
}

/// A route's open circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub opened_at_ms: i64,
    /// When the next probe may go.
    pub probe_at_ms: i64,
}

/// What becomes of a partition when its job dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDead {
    /// Strict order, kept: the dead job holds its partition until an
    /// operator retries or skips it.
    Hold,
    /// Strict order, let go: later jobs go ahead, and the job is marked
    /// skipped (where order broke).
    Skip,
    /// No order to keep.
    Unordered,
}

/// How far a job goes before it is dead, and what its death does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max_attempts: u32,
    pub on_dead: OnDead,
}

impl Limit {
    /// Dead after `max_attempts`, nothing held.
    pub fn attempts(max_attempts: u32) -> Limit {
        Limit {
            max_attempts,
            on_dead: OnDead::Unordered,
        }
    }
}

/// Where a job stands after an attempt was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Done,
    Retry {
        next_at_ms: i64,
    },
    Dead,
    Paused {
        until_ms: i64,
    },
    /// The lease passed to another claim: nothing was written, and the
    /// holder must not touch the partition again.
    LeaseLost,
}

/// A claim on one (sink, partition): its holder and the epoch the claim
/// raised. Every write under the lease checks both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub owner: String,
    pub epoch: i64,
}

/// What taking a lease found.
pub enum Lease {
    /// Another owner holds an unexpired lease.
    Busy,
    /// An operator paused the partition or its route: run nothing.
    Held,
    /// Ours, under this fence; the partition is paused by its consumer
    /// until then (0: not).
    Taken { paused_until_ms: i64, fence: Fence },
}

/// Per sink: pending jobs, the oldest pending delivery's time, dead
/// letters; and how many partitions are paused now. For /metrics.
pub struct Backlog {
    pub per_sink: Vec<(String, i64, Option<i64>, i64)>,
    pub partitions_paused: i64,
    /// Per sink, partitions waiting behind a dead letter
    /// (`on_dead = "hold"`) until it is retried or skipped.
    pub held_by_dead: Vec<(String, i64)>,
}

/// One sink's backlog, as the admin pages and `gatehouse routes list`
/// show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkBacklog {
    pub sink: String,
    /// In the config (false: its jobs wait for it to return).
    pub configured: bool,
    pub pending: i64,
    /// When the oldest pending delivery arrived.
    pub oldest_ms: Option<i64>,
    pub dead: i64,
}

impl Backlog {
    /// Every configured sink (with or without work so far), then every
    /// sink with jobs that is no longer configured.
    pub fn by_sink(&self, configured: &[String]) -> Vec<SinkBacklog> {
        let orphans = self
            .per_sink
            .iter()
            .map(|b| &b.0)
            .filter(|name| !configured.contains(name));
        configured
            .iter()
            .chain(orphans)
            .map(|name| {
                let b = self.per_sink.iter().find(|b| &b.0 == name);
                SinkBacklog {
                    sink: name.clone(),
                    configured: configured.contains(name),
                    pending: b.map_or(0, |b| b.1),
                    oldest_ms: b.and_then(|b| b.2),
                    dead: b.map_or(0, |b| b.3),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_configured_sink_then_the_removed_ones_with_jobs() {
        let b = Backlog {
            per_sink: vec![("gone".into(), 2, Some(5), 1), ("ci".into(), 3, Some(7), 0)],
            partitions_paused: 0,
            held_by_dead: vec![],
        };
        let rows = b.by_sink(&["audit".into(), "ci".into()]);
        let names: Vec<(&str, bool, i64)> = rows
            .iter()
            .map(|r| (r.sink.as_str(), r.configured, r.pending))
            .collect();
        assert_eq!(
            names,
            [("audit", true, 0), ("ci", true, 3), ("gone", false, 2)]
        );
        assert_eq!((rows[1].oldest_ms, rows[2].dead), (Some(7), 1));
    }
}
