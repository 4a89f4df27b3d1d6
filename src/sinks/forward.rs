//! The forward sink: replays a delivery to a consumer as GitHub sent it
//! (DESIGN.md, "Forwarding a delivery") and classifies the answer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;

use crate::clock;
use crate::config::RouteConfig;
use crate::journal::model::{decode_headers, encode_headers};
use crate::webhook::signature;

/// Headers GitHub sent that the consumer gets again.
fn forwarded(name: &str) -> bool {
    name.starts_with("x-github-")
        || name == "user-agent"
        || name == "content-type"
        || name == "x-hub-signature-256"
}

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

pub async fn forward(
    client: &reqwest::Client,
    route: &RouteConfig,
    replay: Replay<'_>,
    attempt: u32,
) -> Attempt {
    let started_at_ms = clock::now_ms();
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
