//! Sending webhooks as GitHub does, and the delivery log GitHub keeps:
//! every attempt recorded with its outcome; a failed one (target down,
//! too slow, non-2xx) stays failed until someone asks for a redelivery.

pub mod storm;

use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::ContentType;
use crate::world::{HookTarget, iso, now_secs};

/// Which hook a delivery belongs to: an App's webhook, or a repository or
/// organisation hook by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum HookRef {
    App(i64),
    Hook(i64),
}

/// One attempt, as GitHub's delivery log records it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub id: i64,
    pub hook: HookRef,
    pub guid: String,
    pub delivered_at: i64,
    pub redelivery: bool,
    pub duration: f64,
    pub status: String,
    pub status_code: u16,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub repository_id: Option<i64>,
    pub request_headers: Vec<(String, String)>,
    pub payload: Value,
    pub response_headers: Vec<(String, String)>,
    pub response_body: String,
}

impl Record {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status_code)
    }

    /// The list form of `GET .../hook/deliveries`.
    pub fn summary(&self) -> Value {
        json!({
            "id": self.id,
            "guid": self.guid,
            "delivered_at": iso(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": null,
        })
    }

    /// The full form of `GET .../hook/deliveries/{id}`.
    pub fn detail(&self, url: &str) -> Value {
        let headers = |h: &[(String, String)]| -> Value {
            Value::Object(h.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        };
        let mut v = self.summary();
        v["url"] = json!(url);
        v["request"] = json!({"headers": headers(&self.request_headers), "payload": self.payload});
        v["response"] =
            json!({"headers": headers(&self.response_headers), "payload": self.response_body});
        v
    }
}

/// Every attempt ever made, in order (ids increase).
#[derive(Default)]
pub struct DeliveryLog {
    records: Vec<Record>,
    next_id: i64,
    /// GitHub lists (and redelivers) deliveries this recent only: 3 days
    /// on github.com, 7 on GitHub Enterprise Server. 0: forever.
    keep_secs: i64,
}

/// How long GitHub keeps a delivery log, in seconds.
pub const GITHUB_LOG_SECS: i64 = 3 * 86_400;
pub const GHES_LOG_SECS: i64 = 7 * 86_400;

impl DeliveryLog {
    /// A log that forgets deliveries older than `keep_secs`.
    pub fn keeping(keep_secs: i64) -> DeliveryLog {
        DeliveryLog {
            keep_secs,
            ..DeliveryLog::default()
        }
    }

    /// Whether GitHub still has `r` to list and redeliver.
    fn kept(&self, r: &Record) -> bool {
        self.keep_secs == 0 || r.delivered_at >= now_secs() - self.keep_secs
    }

    /// Makes every delivery so far `secs` older, as if sent that long ago
    /// (for tests of the redelivery window).
    pub fn age(&mut self, secs: i64) {
        for r in &mut self.records {
            r.delivered_at -= secs;
        }
    }

    pub fn next_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn push(&mut self, r: Record) {
        self.records.push(r);
    }

    pub fn get(&self, hook: HookRef, id: i64) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.hook == hook && r.id == id)
            .filter(|r| self.kept(r))
    }

    /// Newest first, ids below `before` (a cursor), at most `n`, and
    /// whether more remain.
    pub fn page(&self, hook: HookRef, before: Option<i64>, n: usize) -> (Vec<&Record>, bool) {
        let mut it = self
            .records
            .iter()
            .rev()
            .filter(|r| r.hook == hook && before.is_none_or(|b| r.id < b) && self.kept(r));
        let page: Vec<&Record> = it.by_ref().take(n).collect();
        let more = it.next().is_some();
        (page, more)
    }

    pub fn all(&self) -> &[Record] {
        &self.records
    }
}

/// A delivery about to be sent.
pub struct Outgoing {
    pub hook: HookRef,
    pub target: HookTarget,
    pub guid: String,
    pub event: String,
    pub payload: Value,
    pub target_type: &'static str,
    pub target_id: i64,
    pub redelivery: bool,
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The request GitHub would send: compact JSON (or `payload=` form), its
/// headers, signed with the hook's secret.
pub fn build_request(
    content_type: ContentType,
    secret: Option<&str>,
    event: &str,
    guid: &str,
    hook_id: i64,
    target: (&str, i64),
    payload: &Value,
) -> (Vec<(String, String)>, Vec<u8>) {
    let json = serde_json::to_vec(payload).expect("a Value serializes");
    let (ct, body) = match content_type {
        ContentType::Json => ("application/json", json),
        ContentType::Form => {
            let text = String::from_utf8(json).expect("serde_json writes UTF-8");
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("payload", &text)
                .finish();
            ("application/x-www-form-urlencoded", body.into_bytes())
        }
    };
    let mut headers = vec![
        ("Accept".to_string(), "*/*".to_string()),
        ("Content-Type".to_string(), ct.to_string()),
        (
            "User-Agent".to_string(),
            "GitHub-Hookshot/fakehub".to_string(),
        ),
        ("X-GitHub-Delivery".to_string(), guid.to_string()),
        ("X-GitHub-Event".to_string(), event.to_string()),
        ("X-GitHub-Hook-ID".to_string(), hook_id.to_string()),
        (
            "X-GitHub-Hook-Installation-Target-ID".to_string(),
            target.1.to_string(),
        ),
        (
            "X-GitHub-Hook-Installation-Target-Type".to_string(),
            target.0.to_string(),
        ),
    ];
    if let Some(s) = secret {
        headers.push(("X-Hub-Signature-256".to_string(), sign(s, &body)));
    }
    (headers, body)
}

/// Sends one delivery and returns its log record (not yet logged).
pub async fn send(
    client: &reqwest::Client,
    timeout: Duration,
    out: Outgoing,
    id: i64,
    enterprise: Option<&crate::config::EnterpriseConfig>,
) -> Record {
    let (mut headers, body) = build_request(
        out.target.content_type,
        out.target.secret.as_deref(),
        &out.event,
        &out.guid,
        out.target.hook_id,
        (out.target_type, out.target_id),
        &out.payload,
    );
    if let Some(e) = enterprise {
        headers.push(("X-GitHub-Enterprise-Host".into(), e.host.clone()));
        headers.push(("X-GitHub-Enterprise-Version".into(), e.version.clone()));
    }
    let mut req = client.post(&out.target.url).timeout(timeout).body(body);
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let started = Instant::now();
    let delivered_at = now_secs();
    let result = req.send().await;
    let (status, status_code, response_headers, response_body) = match result {
        Ok(resp) => {
            let code = resp.status().as_u16();
            let rh = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let text = resp.text().await.unwrap_or_default();
            let status = if (200..300).contains(&code) {
                "OK".to_string()
            } else {
                format!("Invalid HTTP Response: {code}")
            };
            (status, code, rh, text)
        }
        Err(e) if e.is_timeout() => ("timed out".into(), 0, vec![], String::new()),
        Err(_) => ("failed to connect to host".into(), 0, vec![], String::new()),
    };
    Record {
        id,
        hook: out.hook,
        guid: out.guid,
        delivered_at,
        redelivery: out.redelivery,
        duration: started.elapsed().as_secs_f64(),
        status,
        status_code,
        action: out
            .payload
            .get("action")
            .and_then(Value::as_str)
            .map(String::from),
        installation_id: out
            .payload
            .pointer("/installation/id")
            .and_then(Value::as_i64),
        repository_id: out
            .payload
            .pointer("/repository/id")
            .and_then(Value::as_i64),
        event: out.event,
        request_headers: headers,
        payload: out.payload,
        response_headers,
        response_body,
    }
}
