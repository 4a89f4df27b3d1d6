//! The forward sink: replays a delivery to a consumer as GitHub sent it
//! (DESIGN.md, "Forwarding a delivery") and classifies the answer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;

use super::breaker::{Breaker, Gate};
use crate::config::Ordering;
use crate::config::{RouteConfig, Schedule};
use crate::journal::model::{decode_headers, encode_headers};
use crate::scheduler::in_flight::Sending;
use crate::scheduler::sink::{Attempt, Batch, Outcome, Sink, Turn, TurnResult};
use crate::store::StoreError;
use crate::store::jobs::{After, Limit, OnDead};
use crate::webhook::signature;

/// Headers GitHub sent that the consumer gets again.
fn forwarded(name: &str) -> bool {
    name.starts_with("x-github-")
        || name == "user-agent"
        || name == "content-type"
        || name == "x-hub-signature-256"
}

/// A journaled delivery, as a forward needs it.
pub struct Replay<'a> {
    /// Request headers as GitHub sent them, in wire form.
    pub stored_headers: &'a [u8],
    pub body: Bytes,
    /// GitHub redelivered it because recovery asked.
    pub recovered: bool,
}

const EXCERPT: usize = 512;

fn cut(s: &str, n: usize) -> String {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The request a consumer receives: GitHub's headers (the signature
/// re-computed with the route's secret, or GitHub's passed through),
/// `X-Gatehouse-Attempt`, and `X-Gatehouse-Recovered: true` for a delivery
/// recovery brought back (it may come after later ones).
pub fn request_headers(
    route: &RouteConfig,
    replay: &Replay<'_>,
    attempt: u32,
) -> Vec<(String, Vec<u8>)> {
    let (stored, body) = (replay.stored_headers, &replay.body[..]);
    let mut out: Vec<(String, Vec<u8>)> = decode_headers(stored)
        .into_iter()
        .filter(|(n, _)| forwarded(n))
        .filter(|(n, _)| route.secret.is_none() || n != "x-hub-signature-256")
        .collect();
    if let Some(secret) = &route.secret {
        out.push((
            "x-hub-signature-256".into(),
            signature::sign(secret.expose(), body).into_bytes(),
        ));
    }
    out.push((
        "x-gatehouse-attempt".into(),
        attempt.to_string().into_bytes(),
    ));
    if replay.recovered {
        out.push(("x-gatehouse-recovered".into(), b"true".to_vec()));
    }
    out
}

/// Sends one delivery to a route's consumer, starting at `started_at_ms`
/// (the scheduler's clock: a pause it asks for is counted from then).
pub async fn forward(
    client: &reqwest::Client,
    route: &RouteConfig,
    replay: Replay<'_>,
    attempt: u32,
    started_at_ms: i64,
) -> Attempt {
    let started = Instant::now();
    let mut req = client
        .post(&route.url)
        .timeout(Duration::from_secs(route.timeout_secs));
    for (name, value) in request_headers(route, &replay, attempt) {
        req = req.header(name, value);
    }
    let mut response_headers = None;
    let result = req.body(replay.body).send().await;
    let (outcome, status_code, error, response_excerpt) = match result {
        Ok(resp) => {
            let status = resp.status();
            response_headers = Some(encode_headers(
                resp.headers()
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_bytes())),
            ));
            let pause = pause_until(status.as_u16(), resp.headers(), started_at_ms);
            let text = resp.text().await.unwrap_or_default();
            let excerpt = (!text.is_empty()).then(|| cut(&text, EXCERPT));
            let outcome = if status.is_success() {
                Outcome::Done
            } else if let Some(until_ms) = pause {
                Outcome::Pause { until_ms }
            } else {
                Outcome::Failed
            };
            let error = (!status.is_success()).then(|| format!("HTTP {}", status.as_u16()));
            (outcome, Some(status.as_u16()), error, excerpt)
        }
        Err(e) => {
            let what = if e.is_timeout() {
                format!("timed out after {} s", route.timeout_secs)
            } else if e.is_connect() {
                "connection failed".to_string()
            } else {
                cut(&e.to_string(), 200)
            };
            (Outcome::Failed, None, Some(what), None)
        }
    };
    Attempt {
        outcome,
        status_code,
        started_at_ms,
        duration_ms: started.elapsed().as_millis() as i64,
        error,
        response_excerpt,
        url: Some(route.url.clone()),
        response_headers,
    }
}

/// When a consumer asked us to come back: 429/503 with `Retry-After`
/// (seconds or an HTTP date), or GitHub-style `x-ratelimit-remaining: 0`
/// with `x-ratelimit-reset` (epoch seconds).
pub fn pause_until(status: u16, headers: &HeaderMap, now_ms: i64) -> Option<i64> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if (status == 429 || status == 503)
        && let Some(ra) = text("retry-after")
    {
        if let Ok(secs) = ra.parse::<u64>() {
            return Some(now_ms + secs.min(86_400) as i64 * 1000);
        }
        if let Ok(when) = httpdate::parse_http_date(ra) {
            let ms = when
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(now_ms);
            return Some(ms.max(now_ms));
        }
    }
    if !(200..300).contains(&status)
        && text("x-ratelimit-remaining") == Some("0")
        && let Some(reset) = text("x-ratelimit-reset").and_then(|r| r.parse::<i64>().ok())
    {
        return Some((reset * 1000).clamp(now_ms, now_ms + 86_400_000));
    }
    None
}

/// A forward route as the scheduler runs it: a turn sends the partition's
/// due jobs one at a time, in journal order, each recorded under the lease
/// before the next; strict order stops at a job waiting for its retry.
pub struct ForwardSink {
    route: RouteConfig,
    schedule: Schedule,
    client: reqwest::Client,
    /// `github_budget`: the pool whose budgets pause an organisation.
    budgets: Option<std::sync::Arc<crate::github::Pool>>,
    breaker: Option<Breaker>,
}

impl ForwardSink {
    /// `route` as checked: a schedule that does not parse is the default.
    pub fn new(route: RouteConfig, client: reqwest::Client) -> ForwardSink {
        let schedule = route.schedule().unwrap_or_else(|_| Schedule::standard());
        let breaker = Breaker::new(&route.breaker);
        ForwardSink {
            route,
            schedule,
            client,
            budgets: None,
            breaker,
        }
    }

    /// Pauses a partition while its organisation's credentials in `pool`
    /// are spent (`github_budget = true`).
    pub fn following(mut self, pool: std::sync::Arc<crate::github::Pool>) -> ForwardSink {
        self.budgets = Some(pool);
        self
    }

    /// When the partition's organisation can spend again, if its
    /// credentials are known spent now. A partition is an organisation,
    /// or `org/repo` with `partition_by = "repository"`.
    async fn spent_until(&self, partition: &str, now_ms: i64) -> Option<(i64, String)> {
        let pool = self.budgets.as_ref()?;
        let owner = partition.split('/').next().unwrap_or(partition);
        let until = pool.owner_blocked_until(owner).await?;
        (until > now_ms).then(|| {
            (
                until,
                format!("{owner}'s GitHub credentials are spent (github_budget)"),
            )
        })
    }
}

/// A delay with up to a fifth more added at random, never less: many
/// partitions failing together do not all come back in the same instant.
fn jittered(d: Duration) -> i64 {
    use rand::RngExt;
    let ms = d.as_millis() as i64;
    ms + rand::rng().random_range(0..=ms / 5)
}

impl Sink for ForwardSink {
    fn turn<'a>(&'a self, turn: &'a mut Turn<'_>) -> TurnResult<'a> {
        Box::pin(self.run(turn))
    }
}

impl ForwardSink {
    async fn run(&self, turn: &mut Turn<'_>) -> Result<Batch, StoreError> {
        let route = &self.route;
        let (sink, partition) = (turn.sink, turn.partition);
        let now = turn.now_ms();
        if turn.paused_until_ms > now {
            return Ok(Batch::Next(Some(turn.paused_until_ms)));
        }
        // An open route sends only its probe.
        let mut probing = false;
        if let Some(b) = &self.breaker {
            match b.gate(turn.store, sink, partition, now).await? {
                Gate::Closed => {}
                Gate::Probe => probing = true,
                Gate::Wait(at) => return Ok(Batch::Next(Some(at))),
            }
        }
        let due_by = match route.ordering {
            Ordering::Strict => None,
            Ordering::None => Some(now),
        };
        let jobs = turn
            .store
            .pending(sink, partition, due_by, turn.batch_size)
            .await?;
        if jobs.is_empty() {
            return turn.store.next_due(sink, partition).await.map(Batch::Next);
        }
        let timeout = Duration::from_secs(route.timeout_secs);
        for job in jobs {
            if turn.stopping() {
                return Ok(Batch::Next(Some(turn.now_ms())));
            }
            if job.next_at_ms > turn.now_ms() {
                // Strict order: the head is waiting for its retry, and so
                // is everything behind it.
                return Ok(Batch::Next(Some(job.next_at_ms)));
            }
            // Before the consumer meets a 403: wait for the reset here.
            if let Some((until, reason)) = self.spent_until(partition, turn.now_ms()).await {
                if !turn
                    .store
                    .pause_partition(sink, partition, &turn.fence, until, &reason)
                    .await?
                {
                    return Ok(Batch::LeaseLost);
                }
                tracing::info!(
                    sink,
                    partition,
                    until_ms = until,
                    "{reason}: partition paused until the reset"
                );
                turn.metrics.budget_pause(sink);
                return Ok(Batch::Next(Some(until)));
            }
            let Some(payload) = turn.store.payload(job.delivery_id).await? else {
                let why = "delivery no longer in the journal";
                let (fence, lease_ms) = (&turn.fence, turn.lease_ms);
                if !turn
                    .store
                    .bury(job.id, sink, partition, fence, turn.now_ms(), lease_ms, why)
                    .await?
                {
                    return Ok(Batch::LeaseLost);
                }
                continue;
            };
            if !turn.ensure_lease(timeout).await? {
                return Ok(Batch::LeaseLost);
            }
            let sending = turn.in_flight.mark(
                sink,
                partition,
                Sending {
                    job_id: job.id,
                    attempt: job.attempts + 1,
                    since_ms: turn.now_ms(),
                },
            );
            let attempt = forward(
                &self.client,
                route,
                Replay {
                    stored_headers: &payload.headers,
                    body: Bytes::from(payload.body),
                    recovered: payload.recovered,
                },
                job.attempts + 1,
                turn.now_ms(),
            )
            .await;
            drop(sending);
            if let Some(err) = &attempt.error {
                tracing::info!(sink, partition, job = job.id, attempt = job.attempts + 1, error = %err, "forward failed");
            }
            let mut attempt = attempt;
            let mut opened = false;
            if let Some(b) = &self.breaker {
                match (&attempt.outcome, probing) {
                    (Outcome::Done, true) => {
                        b.close(turn.store, sink).await?;
                        probing = false;
                    }
                    (Outcome::Done, false) => b.succeeded(),
                    // A failed probe is not counted against max_attempts:
                    // the partition waits for the next probe instead.
                    (Outcome::Failed, true) => {
                        attempt.outcome = Outcome::Pause {
                            until_ms: turn.now_ms() + b.probe_ms(),
                        };
                    }
                    (Outcome::Failed, false) => {
                        opened = b.failed(turn.store, sink, turn.now_ms()).await?;
                    }
                    (Outcome::Pause { .. }, _) => {}
                }
            }
            let outcome = match attempt.outcome {
                Outcome::Done => "done",
                Outcome::Pause { .. } => "paused",
                Outcome::Failed => "failed",
            };
            turn.attempted(
                outcome,
                attempt.started_at_ms,
                Duration::from_millis(attempt.duration_ms as u64),
            );
            let retry_at = turn.now_ms() + jittered(self.schedule.delay(job.attempts + 1));
            let before = Instant::now();
            let after = turn
                .store
                .record(
                    &job,
                    sink,
                    partition,
                    &turn.fence,
                    attempt,
                    Limit {
                        max_attempts: self.schedule.max_attempts(),
                        on_dead: route.on_dead(),
                    },
                    retry_at,
                    turn.lease_ms,
                )
                .await?;
            turn.renewed(before);
            match after {
                After::Done => turn.metrics.finished(sink, "done"),
                After::Dead => turn.metrics.finished(sink, "dead"),
                _ => {}
            }
            if opened {
                turn.metrics.breaker_opened(sink);
            }
            match (after, route.ordering) {
                (After::LeaseLost, _) => return Ok(Batch::LeaseLost),
                (After::Done | After::Dead, _) => {}
                (After::Paused { until_ms }, _) => return Ok(Batch::Next(Some(until_ms))),
                (After::Retry { next_at_ms }, Ordering::Strict) => {
                    return Ok(Batch::Next(Some(next_at_ms)));
                }
                (After::Retry { .. }, Ordering::None) => {}
            }
            if let After::Dead = after {
                match route.on_dead() {
                    OnDead::Hold => {
                        tracing::error!(
                            sink,
                            partition,
                            job = job.id,
                            "job dead-lettered after max_attempts: its partition waits behind it until it is retried or skipped"
                        );
                        return Ok(Batch::Next(None));
                    }
                    OnDead::Skip => tracing::warn!(
                        sink,
                        partition,
                        job = job.id,
                        "job dead-lettered after max_attempts: later jobs go ahead of it (on_dead = skip)"
                    ),
                    OnDead::Unordered => tracing::warn!(
                        sink,
                        partition,
                        job = job.id,
                        "job dead-lettered after max_attempts"
                    ),
                }
            }
            if opened {
                // Just opened: nothing more this turn; the next one waits
                // for the probe.
                return Ok(Batch::Next(Some(turn.now_ms())));
            }
        }
        // More may be pending (or retries due later): look again.
        Ok(Batch::Next(Some(turn.now_ms())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates_and_rate_limits() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(pause_until(429, &h, 1_000), Some(8_000));
        assert_eq!(pause_until(500, &h, 1_000), None, "only 429/503 pause");
        h.insert(
            "retry-after",
            "Thu, 01 Jan 1970 00:00:30 GMT".parse().unwrap(),
        );
        assert_eq!(pause_until(503, &h, 1_000), Some(30_000));
        let mut g = HeaderMap::new();
        g.insert("x-ratelimit-remaining", "0".parse().unwrap());
        g.insert("x-ratelimit-reset", "100".parse().unwrap());
        assert_eq!(pause_until(403, &g, 1_000), Some(100_000));
        assert_eq!(pause_until(200, &g, 1_000), None);
    }
}
