//! The forward sink: replays a delivery to a consumer as GitHub sent it
//! (DESIGN.md, "Forwarding a delivery") and classifies the answer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;

use std::collections::VecDeque;

use super::batch::{self, Item};
use super::breaker::{Breaker, Gate};
use super::forwarded;
use crate::config::Ordering;
use crate::config::{BatchFormat, Batching, RouteConfig, Schedule};
use crate::journal::model::{decode_headers, encode_headers};
use crate::scheduler::in_flight::Sending;
use crate::scheduler::sink::{Attempt, Batch, Outcome, Sink, Turn, TurnResult};
use crate::store::StoreError;
use crate::store::jobs::{After, Job, Limit, OnDead};
use crate::webhook::signature;

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
    let headers = request_headers(route, &replay, attempt);
    send(client, route, headers, replay.body, started_at_ms)
        .await
        .0
}

/// Sends a batch to a route's consumer (see `batch`): one request, signed
/// as a whole with the route's secret. Returns the attempt and how many
/// of the batch, from the first, the consumer says it took; the attempt
/// is done only when it took them all.
pub async fn forward_batch(
    client: &reqwest::Client,
    route: &RouteConfig,
    items: &[Item],
    format: BatchFormat,
    started_at_ms: i64,
) -> (Attempt, usize) {
    let (body, content_type) = batch::body(items, format);
    let mut headers: Vec<(String, Vec<u8>)> = vec![
        ("content-type".into(), content_type.as_bytes().to_vec()),
        (
            "user-agent".into(),
            concat!("gatehouse/", env!("CARGO_PKG_VERSION")).into(),
        ),
        (
            "x-gatehouse-batch".into(),
            items.len().to_string().into_bytes(),
        ),
        (
            "x-gatehouse-attempt".into(),
            (items[0].job.attempts + 1).to_string().into_bytes(),
        ),
    ];
    if let Some(secret) = &route.secret {
        headers.push((
            "x-hub-signature-256".into(),
            signature::sign(secret.expose(), &body).into_bytes(),
        ));
    }
    let (mut attempt, answer) =
        send(client, route, headers, Bytes::from(body), started_at_ms).await;
    let n = items.len();
    let done = match attempt.status_code {
        Some(code) => batch::done((200..300).contains(&code), &answer, n),
        None => 0,
    };
    if done < n && attempt.outcome == Outcome::Done {
        attempt.outcome = Outcome::Failed;
    }
    if done < n && attempt.outcome == Outcome::Failed {
        let why = attempt.error.take().unwrap_or_default();
        attempt.error = Some(
            format!("{why} (the consumer took {done} of a batch of {n})")
                .trim_start()
                .to_string(),
        );
    }
    (attempt, done)
}

/// The answer's text a batch reads (`{"done": K}`) stops here.
const ANSWER_LIMIT: usize = 64 * 1024;

/// One request to the route's consumer, its answer classified; with the
/// answer's text (its first 64 KiB).
async fn send(
    client: &reqwest::Client,
    route: &RouteConfig,
    headers: Vec<(String, Vec<u8>)>,
    body: Bytes,
    started_at_ms: i64,
) -> (Attempt, String) {
    let started = Instant::now();
    let mut req = client
        .post(&route.url)
        .timeout(Duration::from_secs(route.timeout_secs));
    for (name, value) in headers {
        req = req.header(name, value);
    }
    let mut response_headers = None;
    let mut answer = String::new();
    let result = req.body(body).send().await;
    let (outcome, status_code, error, response_excerpt) = match result {
        Ok(resp) => {
            let status = resp.status();
            response_headers = Some(encode_headers(
                resp.headers()
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_bytes())),
            ));
            let pause = pause_until(status.as_u16(), resp.headers(), started_at_ms);
            answer = resp.text().await.unwrap_or_default();
            let excerpt = (!answer.is_empty()).then(|| cut(&answer, EXCERPT));
            answer = cut(&answer, ANSWER_LIMIT);
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
    (
        Attempt {
            outcome,
            status_code,
            started_at_ms,
            duration_ms: started.elapsed().as_millis() as i64,
            error,
            response_excerpt,
            url: Some(route.url.clone()),
            response_headers,
        },
        answer,
    )
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
/// due jobs in journal order, one request at a time (one job each, or a
/// batch with `batch`), each recorded under the lease before the next;
/// strict order stops at a job waiting for its retry.
pub struct ForwardSink {
    route: RouteConfig,
    schedule: Schedule,
    batching: Option<Batching>,
    client: reqwest::Client,
    /// `github_budget`: the pool whose budgets pause an organisation.
    budgets: Option<std::sync::Arc<crate::github::Pool>>,
    breaker: Option<Breaker>,
    /// Pull requests' head commits seen, for `coalesce`.
    heads: std::sync::Mutex<batch::Heads>,
}

impl ForwardSink {
    /// `route` as checked: a schedule that does not parse is the default,
    /// a batch that does not parse is none.
    pub fn new(route: RouteConfig, client: reqwest::Client) -> ForwardSink {
        let schedule = route.schedule().unwrap_or_else(|_| Schedule::standard());
        let batching = route.batching().ok().flatten();
        let breaker = Breaker::new(&route.breaker);
        ForwardSink {
            route,
            schedule,
            batching,
            client,
            budgets: None,
            breaker,
            heads: Default::default(),
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

/// A turn's pending jobs: one at a time, each read when sent; or, for a
/// batching route, read ahead (within a byte budget) to form batches.
enum Queue {
    One(VecDeque<Job>),
    Many(Vec<Item>),
}

impl Queue {
    fn head(&self) -> Option<&Job> {
        match self {
            Queue::One(q) => q.front(),
            Queue::Many(q) => q.first().map(|i| &i.job),
        }
    }
}

/// What came of taking the queue's next request.
enum Next {
    Sent(Sent),
    /// The head's delivery is gone: it was buried, nothing sent.
    Buried,
    LeaseLost,
}

/// What one request carried, and what the consumer said.
struct Sent {
    items: Vec<Item>,
    attempt: Attempt,
    /// How many of `items`, from the first, were done.
    done: usize,
}

impl ForwardSink {
    /// Jobs one turn reads: the scheduler's batch size, or for a batching
    /// route enough for a batch (four, to coalesce across other pull
    /// requests' events).
    fn window(&self, batch_size: usize) -> usize {
        match &self.batching {
            None => batch_size,
            Some(b) if b.coalesce.is_some() => batch_size.max(b.max * 4),
            Some(b) => batch_size.max(b.max),
        }
    }

    /// The partition's pending jobs for this turn, in journal order.
    async fn pending(&self, turn: &Turn<'_>) -> Result<Vec<Job>, StoreError> {
        let due_by = match self.route.ordering {
            Ordering::Strict => None,
            Ordering::None => Some(turn.now_ms()),
        };
        turn.store
            .pending(
                turn.sink,
                turn.partition,
                due_by,
                self.window(turn.batch_size),
            )
            .await
    }

    /// The turn's queue of `jobs`; for a batching route with their
    /// requests read, each gone one buried. None: the lease was lost
    /// while burying.
    async fn queue(&self, turn: &Turn<'_>, jobs: Vec<Job>) -> Result<Option<Queue>, StoreError> {
        let Some(b) = &self.batching else {
            return Ok(Some(Queue::One(jobs.into())));
        };
        let now = turn.now_ms();
        // Only due jobs batch (the head is): strict order stops at one
        // waiting.
        let due: Vec<Job> = jobs
            .into_iter()
            .take_while(|j| j.next_at_ms <= now)
            .collect();
        let budget = match b.coalesce {
            Some(_) => b.max_bytes.saturating_mul(4),
            None => b.max_bytes,
        };
        let ids = due.iter().map(|j| j.delivery_id).collect();
        let read = turn.store.payloads(ids, budget).await?;
        let mut items = Vec::with_capacity(read.len());
        for (job, (_, payload)) in due.into_iter().zip(read) {
            match payload {
                Some(payload) => items.push(Item { job, payload }),
                None => {
                    if !self.bury(turn, &job).await? {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(Some(Queue::Many(items)))
    }

    /// A job whose delivery is gone (pruned) can never run: dead. False
    /// when the lease was lost.
    async fn bury(&self, turn: &Turn<'_>, job: &Job) -> Result<bool, StoreError> {
        let why = "delivery no longer in the journal";
        turn.store
            .bury(
                job.id,
                turn.sink,
                turn.partition,
                &turn.fence,
                turn.now_ms(),
                turn.lease_ms,
                why,
            )
            .await
    }

    /// Until when a batch waits for more to join: while fewer than `max`
    /// are pending and its head, never tried, arrived less than `wait`
    /// ago. A backlog never waits.
    fn gather_until(&self, jobs: &[Job], now_ms: i64) -> Option<i64> {
        let b = self.batching.as_ref()?;
        let head = jobs.first()?;
        if jobs.len() >= b.max || head.attempts > 0 || head.next_at_ms > now_ms {
            return None;
        }
        let until = head.next_at_ms + b.wait.as_millis() as i64;
        (until > now_ms).then_some(until)
    }

    /// Sends the queue's next request: its head alone, or a batch.
    async fn send_next(&self, turn: &mut Turn<'_>, queue: &mut Queue) -> Result<Next, StoreError> {
        let mut items = match queue {
            Queue::Many(q) => batch::take(
                q,
                self.batching
                    .as_ref()
                    .expect("a read-ahead queue is a batching route's"),
                &self.heads,
            ),
            Queue::One(q) => {
                let job = q.pop_front().expect("a head");
                let Some(payload) = turn.store.payload(job.delivery_id).await? else {
                    return Ok(match self.bury(turn, &job).await? {
                        true => Next::Buried,
                        false => Next::LeaseLost,
                    });
                };
                vec![Item { job, payload }]
            }
        };
        let timeout = Duration::from_secs(self.route.timeout_secs);
        if !turn.ensure_lease(timeout).await? {
            return Ok(Next::LeaseLost);
        }
        let head = &items[0].job;
        let sending = turn.in_flight.mark(
            turn.sink,
            turn.partition,
            Sending {
                job_id: head.id,
                attempt: head.attempts + 1,
                since_ms: turn.now_ms(),
            },
        );
        let (attempt, done) = match &self.batching {
            None => {
                // Sent once; only the job is kept after.
                let body = std::mem::take(&mut items[0].payload.body);
                let item = &items[0];
                let attempt = forward(
                    &self.client,
                    &self.route,
                    Replay {
                        stored_headers: &item.payload.headers,
                        body: Bytes::from(body),
                        recovered: item.payload.recovered,
                    },
                    item.job.attempts + 1,
                    turn.now_ms(),
                )
                .await;
                let done = usize::from(attempt.outcome == Outcome::Done);
                (attempt, done)
            }
            Some(b) => {
                turn.metrics.batch(turn.sink, items.len());
                forward_batch(&self.client, &self.route, &items, b.format, turn.now_ms()).await
            }
        };
        drop(sending);
        Ok(Next::Sent(Sent {
            items,
            attempt,
            done,
        }))
    }

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
        let jobs = self.pending(turn).await?;
        let Some(head) = jobs.first() else {
            return turn.store.next_due(sink, partition).await.map(Batch::Next);
        };
        if head.next_at_ms > now {
            // Strict order: the head is waiting for its retry, and so is
            // everything behind it.
            return Ok(Batch::Next(Some(head.next_at_ms)));
        }
        // A young, small batch waits for more, its worker free meanwhile.
        if let Some(until) = self.gather_until(&jobs, now) {
            return Ok(Batch::Gather(until));
        }
        let Some(mut queue) = self.queue(turn, jobs).await? else {
            return Ok(Batch::LeaseLost);
        };
        while let Some(head) = queue.head() {
            if turn.stopping() {
                return Ok(Batch::Next(Some(turn.now_ms())));
            }
            if head.next_at_ms > turn.now_ms() {
                // Strict order: the head is waiting for its retry, and so
                // is everything behind it.
                return Ok(Batch::Next(Some(head.next_at_ms)));
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
            let Sent {
                items,
                mut attempt,
                done,
            } = match self.send_next(turn, &mut queue).await? {
                Next::Sent(sent) => sent,
                Next::Buried => continue,
                Next::LeaseLost => return Ok(Batch::LeaseLost),
            };
            // The first not taken (or the head): its attempts set the retry.
            let first = items.get(done).unwrap_or(&items[0]).job.clone();
            if let Some(err) = &attempt.error {
                tracing::info!(sink, partition, job = first.id, attempt = first.attempts + 1, deliveries = items.len(), error = %err, "forward failed");
            }
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
            let jobs: Vec<Job> = items.into_iter().map(|i| i.job).collect();
            let (took, rest) = jobs.split_at(done.min(jobs.len()));
            // Under strict order only the first not taken failed: the rest
            // wait behind it, their attempts uncounted, as they would
            // unbatched. Without order each of them failed.
            let failed = match (route.ordering, rest) {
                (_, []) => &[][..],
                (Ordering::Strict, [first, ..]) => std::slice::from_ref(first),
                (Ordering::None, rest) => rest,
            };
            let retry_at = turn.now_ms() + jittered(self.schedule.delay(first.attempts + 1));
            let before = Instant::now();
            let after = turn
                .store
                .record_batch(
                    took,
                    failed,
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
            for _ in took {
                turn.metrics.finished(sink, "done");
            }
            if after == After::Dead {
                turn.metrics.finished(sink, "dead");
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
                            job = first.id,
                            "job dead-lettered after max_attempts: its partition waits behind it until it is retried or skipped"
                        );
                        return Ok(Batch::Next(None));
                    }
                    OnDead::Skip => tracing::warn!(
                        sink,
                        partition,
                        job = first.id,
                        "job dead-lettered after max_attempts: later jobs go ahead of it (on_dead = skip)"
                    ),
                    OnDead::Unordered => tracing::warn!(
                        sink,
                        partition,
                        job = first.id,
                        "job dead-lettered after max_attempts"
                    ),
                }
            }
            if opened || (route.ordering == Ordering::Strict && !rest.is_empty()) {
                // Just opened: nothing more this turn, the next waits for
                // the probe. Or a batch came back part done: what it left
                // is older than the queue, so read the partition again.
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
