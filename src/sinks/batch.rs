//! Batches for routes with `batch`: which of a partition's pending
//! deliveries go together, the request body that carries them, and what
//! the consumer's answer says was done.
//!
//! Order: a batch is always the partition's oldest pending delivery (the
//! head) and deliveries after it, in journal order. Without `coalesce`
//! they are the ones right behind the head. With `coalesce =
//! "pull_request"` a batch is one pull request's events, taken past other
//! pull requests' events but never past an event about no pull request;
//! so order holds within each pull request and around every other event,
//! and only events of different pull requests trade places.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;

use crate::config::{BatchFormat, Batching, Coalesce};
use crate::journal::model::decode_headers;
use crate::store::Payload;
use crate::store::jobs::Job;

/// A pending job with its stored request.
pub struct Item {
    pub job: Job,
    pub payload: Payload,
}

/// Which pull request an event is about: (repository, number).
type PullKey = (String, u64);

/// Head commits of pull requests a route has seen, so a `status` event
/// (which names only its commit) finds its pull request even when no
/// other event of it is pending. Bounded: forgotten all at once when
/// full; a status it cannot place goes as an event about no pull
/// request, which keeps order.
#[derive(Default)]
pub struct Heads {
    by_sha: HashMap<(String, String), u64>,
}

impl Heads {
    const MAX: usize = 10_000;

    fn learn(&mut self, repo: &str, sha: String, number: u64) {
        if self.by_sha.len() >= Heads::MAX {
            self.by_sha.clear();
        }
        self.by_sha.insert((repo.to_string(), sha), number);
    }

    fn find(&self, repo: &str, sha: &str) -> Option<u64> {
        self.by_sha
            .get(&(repo.to_string(), sha.to_string()))
            .copied()
    }
}

/// Takes the next batch from `queue` (pending jobs in journal order, the
/// head first), leaving the rest in order. At most `b.max` deliveries and,
/// past the first, `b.max_bytes` of payload.
pub fn take(queue: &mut Vec<Item>, b: &Batching, heads: &Mutex<Heads>) -> Vec<Item> {
    let picked: Vec<usize> = match b.coalesce {
        None => prefix(queue, b),
        Some(Coalesce::PullRequest) => same_pull_request(queue, b, heads),
    };
    let mut out = Vec::with_capacity(picked.len());
    // Remove from the back so earlier indices stay valid.
    for &i in picked.iter().rev() {
        out.push(queue.remove(i));
    }
    out.reverse();
    out
}

/// Indices of the head and those right behind it that fit.
fn prefix(queue: &[Item], b: &Batching) -> Vec<usize> {
    let mut bytes = 0u64;
    let mut out = vec![];
    for (i, item) in queue.iter().enumerate() {
        if !fits(&out, bytes, item, b) {
            break;
        }
        bytes += item.payload.body.len() as u64;
        out.push(i);
    }
    out
}

fn fits(taken: &[usize], bytes: u64, item: &Item, b: &Batching) -> bool {
    taken.is_empty()
        || (taken.len() < b.max && bytes + item.payload.body.len() as u64 <= b.max_bytes)
}

/// The head's pull request's events from the queue, or, when the head is
/// about none, the events about none right behind it.
fn same_pull_request(queue: &[Item], b: &Batching, heads: &Mutex<Heads>) -> Vec<usize> {
    let keys = pull_keys(queue, heads);
    let head = keys.first().cloned().flatten();
    let mut bytes = 0u64;
    let mut out = vec![];
    for (i, (item, key)) in queue.iter().zip(&keys).enumerate() {
        match (&head, key) {
            // An event about no pull request is a barrier: nothing later
            // goes ahead of it.
            (Some(_), None) => break,
            (Some(h), Some(k)) if h != k => continue,
            (None, Some(_)) => break,
            _ => {}
        }
        if !fits(&out, bytes, item, b) {
            break;
        }
        bytes += item.payload.body.len() as u64;
        out.push(i);
    }
    out
}

/// The pull request each queued event is about, where the payload says:
/// `pull_request*` events, `issue_comment` on a pull request, `check_run`
/// and `check_suite` naming exactly one, and `status` events whose commit
/// is the head of a pull request seen (in the queue, or before). The
/// payloads are read without the route's lock; only what they teach and
/// ask of `heads` holds it.
fn pull_keys(queue: &[Item], heads: &Mutex<Heads>) -> Vec<Option<PullKey>> {
    enum Seen {
        Pull(PullKey, Option<String>),
        Commit(String, String),
        Neither,
    }
    let seen: Vec<Seen> = queue
        .iter()
        .map(|item| {
            let Some(p) = parsed(&item.payload) else {
                return Seen::Neither;
            };
            let Some(repo) = p.repository.map(|r| r.full_name.to_lowercase()) else {
                return Seen::Neither;
            };
            let (number, sha) = if let Some(pr) = p.pull_request {
                (Some(pr.number), pr.head.map(|h| h.sha))
            } else if let Some(issue) = p.issue.filter(|i| i.pull_request.is_some()) {
                (Some(issue.number), None)
            } else if let Some(c) = p.check_run.or(p.check_suite) {
                match c.pull_requests.as_slice() {
                    [one] => (Some(one.number), c.head_sha),
                    _ => (None, None),
                }
            } else {
                (None, p.sha)
            };
            match (number, sha) {
                (Some(n), sha) => Seen::Pull((repo, n), sha),
                (None, Some(sha)) => Seen::Commit(repo, sha),
                (None, None) => Seen::Neither,
            }
        })
        .collect();
    let mut heads = heads.lock().expect("heads lock");
    for s in &seen {
        if let Seen::Pull((repo, n), Some(sha)) = s {
            heads.learn(repo, sha.clone(), *n);
        }
    }
    // Commits are placed after the whole queue was read: a pull request's
    // later event names its head as well as an earlier one.
    seen.into_iter()
        .map(|s| match s {
            Seen::Pull(key, _) => Some(key),
            Seen::Commit(repo, sha) => heads.find(&repo, &sha).map(|n| (repo, n)),
            Seen::Neither => None,
        })
        .collect()
}

/// The few fields of a payload that name its pull request.
#[derive(Deserialize)]
struct Fields {
    repository: Option<Repository>,
    pull_request: Option<PullRequest>,
    issue: Option<Issue>,
    check_run: Option<Check>,
    check_suite: Option<Check>,
    /// A `status` event's commit.
    sha: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Deserialize)]
struct PullRequest {
    number: u64,
    head: Option<Head>,
}

#[derive(Deserialize)]
struct Head {
    sha: String,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Check {
    head_sha: Option<String>,
    #[serde(default)]
    pull_requests: Vec<Number>,
}

#[derive(Deserialize)]
struct Number {
    number: u64,
}

fn parsed(p: &Payload) -> Option<Fields> {
    serde_json::from_slice(&json_of(p)?).ok()
}

/// The payload's JSON: the body as GitHub sent it, or for a form-encoded
/// delivery the `payload=` field. None when it is not JSON.
fn json_of(p: &Payload) -> Option<std::borrow::Cow<'_, [u8]>> {
    let form = decode_headers(&p.headers).iter().any(|(n, v)| {
        n == "content-type"
            && v.to_ascii_lowercase()
                .starts_with(b"application/x-www-form-urlencoded")
    });
    let json: std::borrow::Cow<'_, [u8]> = if form {
        let field = form_urlencoded::parse(&p.body).find(|(k, _)| k == "payload")?;
        field.1.into_owned().into_bytes().into()
    } else {
        p.body.as_slice().into()
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(&json).ok()?;
    Some(json)
}

/// Headers a batch item keeps: GitHub's, less its signature (the batch is
/// signed as a whole, and a form-encoded delivery's was over other bytes).
fn kept(name: &str) -> bool {
    super::forwarded(name) && name != "x-hub-signature-256"
}

/// The request body for `items`, and its content type. Each delivery is
/// `{"headers": {...}, "payload": ...}`: GitHub's headers (names in lower
/// case) with `x-gatehouse-attempt` and, for one recovery brought back,
/// `x-gatehouse-recovered`; the payload as GitHub sent it (a
/// form-encoded delivery's decoded), or a JSON string of the body when it
/// is not JSON.
pub fn body(items: &[Item], format: BatchFormat) -> (Vec<u8>, &'static str) {
    let mut out = Vec::new();
    if format == BatchFormat::Json {
        out.push(b'[');
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(match format {
                BatchFormat::Json => b",",
                BatchFormat::Ndjson => b"\n",
            });
        }
        let mut headers = serde_json::Map::new();
        for (name, value) in decode_headers(&item.payload.headers) {
            if kept(&name) {
                headers.insert(name, String::from_utf8_lossy(&value).into_owned().into());
            }
        }
        headers.insert(
            "x-gatehouse-attempt".into(),
            (item.job.attempts + 1).to_string().into(),
        );
        if item.payload.recovered {
            headers.insert("x-gatehouse-recovered".into(), "true".into());
        }
        out.extend_from_slice(b"{\"headers\":");
        out.extend_from_slice(&serde_json::to_vec(&headers).expect("a map of strings"));
        out.extend_from_slice(b",\"payload\":");
        match json_of(&item.payload) {
            // Verbatim: the consumer sees GitHub's bytes.
            Some(json) => out.extend_from_slice(&json),
            None => out.extend_from_slice(
                &serde_json::to_vec(&String::from_utf8_lossy(&item.payload.body))
                    .expect("a string"),
            ),
        }
        out.push(b'}');
    }
    match format {
        BatchFormat::Json => {
            out.push(b']');
            (out, "application/json")
        }
        BatchFormat::Ndjson => {
            out.push(b'\n');
            (out, "application/x-ndjson")
        }
    }
}

/// How many of a batch of `n` the consumer's answer says were done, from
/// the first: all on a 2xx, none otherwise, unless the answer is a JSON
/// object with `"done": K` (then the first K, whatever the status).
pub fn done(success: bool, answer: &str, n: usize) -> usize {
    #[derive(Deserialize)]
    struct Answer {
        done: u64,
    }
    match serde_json::from_str::<Answer>(answer.trim()) {
        Ok(a) => (a.done as usize).min(n),
        Err(_) if success => n,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::model::encode_headers;

    fn item(id: i64, body: &str) -> Item {
        Item {
            job: Job {
                id,
                delivery_id: id,
                attempts: 0,
                next_at_ms: 0,
            },
            payload: Payload {
                headers: encode_headers([
                    ("content-type", &b"application/json"[..]),
                    ("x-github-event", b"x"),
                    ("x-hub-signature-256", b"sha256=00"),
                ]),
                body: body.as_bytes().to_vec(),
                recovered: false,
            },
        }
    }

    fn pr(id: i64, n: u64, sha: &str) -> Item {
        item(
            id,
            &format!(
                r#"{{"repository":{{"full_name":"o/r"}},"pull_request":{{"number":{n},"head":{{"sha":"{sha}"}}}}}}"#
            ),
        )
    }

    fn batching(max: usize, coalesce: Option<Coalesce>) -> Batching {
        Batching {
            max,
            wait: std::time::Duration::ZERO,
            max_bytes: 1 << 20,
            format: BatchFormat::Json,
            coalesce,
        }
    }

    fn ids(items: &[Item]) -> Vec<i64> {
        items.iter().map(|i| i.job.id).collect()
    }

    #[test]
    fn a_plain_batch_is_the_head_and_those_right_behind_it() {
        let mut q: Vec<Item> = (1..=5).map(|i| item(i, "{}")).collect();
        assert_eq!(
            ids(&take(&mut q, &batching(3, None), &Mutex::default())),
            [1, 2, 3]
        );
        assert_eq!(ids(&q), [4, 5]);
        let mut b = batching(10, None);
        b.max_bytes = 5;
        let mut q = vec![item(1, "{\"a\":1234}"), item(2, "{}")];
        assert_eq!(
            ids(&take(&mut q, &b, &Mutex::default())),
            [1],
            "one always goes, then bytes bound"
        );
    }

    #[test]
    fn coalescing_takes_one_pull_request_past_others_but_not_past_other_events() {
        let status = |id, sha: &str| {
            item(
                id,
                &format!(r#"{{"repository":{{"full_name":"O/R"}},"sha":"{sha}"}}"#),
            )
        };
        let push = |id| item(id, r#"{"repository":{"full_name":"o/r"},"ref":"main"}"#);
        let mut q = vec![
            pr(1, 7, "aaa"),
            pr(2, 8, "bbb"),
            status(3, "aaa"),
            pr(4, 7, "aaa"),
            push(5),
            pr(6, 7, "aaa"),
        ];
        let c = batching(10, Some(Coalesce::PullRequest));
        let heads = Mutex::new(Heads::default());
        assert_eq!(
            ids(&take(&mut q, &c, &heads)),
            [1, 3, 4],
            "stops at the push"
        );
        assert_eq!(ids(&take(&mut q, &c, &heads)), [2]);
        assert_eq!(
            ids(&take(&mut q, &c, &heads)),
            [5],
            "events about none go alone"
        );
        assert_eq!(ids(&take(&mut q, &c, &heads)), [6]);
        assert!(q.is_empty());
        // A status placed by a later event of its pull request, or by one
        // seen before.
        let mut q = vec![status(7, "ccc"), pr(8, 9, "ccc"), status(9, "aaa")];
        assert_eq!(ids(&take(&mut q, &c, &heads)), [7, 8]);
        assert_eq!(ids(&take(&mut q, &c, &heads)), [9], "pull request 7's");
        let mut q = vec![status(10, "zzz"), pr(11, 7, "aaa")];
        assert_eq!(
            ids(&take(&mut q, &c, &Mutex::default())),
            [10],
            "a commit no pull request names is about none"
        );
    }

    #[test]
    fn the_body_holds_headers_and_payloads_verbatim() {
        let items = vec![item(1, "{\"a\": 1}"), item(2, "not json")];
        let (json, ct) = body(&items, BatchFormat::Json);
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v[0]["payload"]["a"], 1);
        assert_eq!(v[1]["payload"], "not json");
        assert_eq!(v[0]["headers"]["x-github-event"], "x");
        assert_eq!(v[0]["headers"]["x-gatehouse-attempt"], "1");
        assert!(v[0]["headers"].get("x-hub-signature-256").is_none());
        assert!(
            json.windows(8).any(|w| w == b"{\"a\": 1}"),
            "payload bytes kept"
        );
        let (nd, ct) = body(&items, BatchFormat::Ndjson);
        assert_eq!(ct, "application/x-ndjson");
        let lines: Vec<&[u8]> = nd
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 2);
        for l in lines {
            serde_json::from_slice::<serde_json::Value>(l).unwrap();
        }
    }

    #[test]
    fn an_answer_may_mark_a_prefix_done() {
        assert_eq!(done(true, "", 5), 5);
        assert_eq!(done(true, "ok", 5), 5);
        assert_eq!(done(false, "oops", 5), 0);
        assert_eq!(done(false, r#"{"done": 2, "error": "x"}"#, 5), 2);
        assert_eq!(done(true, r#"{"done": 3}"#, 5), 3);
        assert_eq!(done(true, r#"{"done": 9}"#, 5), 5);
    }
}
