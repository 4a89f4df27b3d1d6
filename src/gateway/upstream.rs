//! Getting an answer from GitHub through the pool: cached reads (a stored
//! answer revalidated with the validator that can work for the credential
//! chosen, identical concurrent reads coalesced into one request) and
//! pass-through for everything else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::cache::{self, Cache, Entry, Key};
use super::rewrite;
use super::usage::Outcome;
use crate::github::{Answer, HeldEtag, Pool, PoolError, Reach, Request, Validators};
use crate::journal::model::{decode_headers, encode_headers};

/// An answer ready for the client, but for per-client URL rewriting.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub outcome: Outcome,
    pub spent: u64,
    pub saved: u64,
    /// Set for answers from (or now in) the cache: the validator clients
    /// get instead of GitHub's token-bound ETag.
    pub content_etag: Option<String>,
    /// The pool credential that answered (`token:ci`), when one did.
    pub credential: Option<String>,
    /// The spending rule that refused the request before it was sent.
    pub refused_by: Option<&'static str>,
}

impl Fetched {
    /// An answer that is not (and will not be) in the cache.
    pub fn uncached(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        outcome: Outcome,
    ) -> Fetched {
        Fetched {
            status,
            headers,
            body,
            outcome,
            spent: 0,
            saved: 0,
            content_etag: None,
            credential: None,
            refused_by: None,
        }
    }
}

/// Where a request goes: whose credentials, and under which cache scope.
pub struct Route<'a> {
    pub pool: &'a Pool,
    /// The owner whose credentials serve it; None = a default token.
    pub owner: Option<&'a str>,
    /// Which of the owner's credentials may answer.
    pub reach: Reach<'a>,
    pub scope: &'a str,
}

impl Route<'_> {
    async fn send(&self, req: Request) -> Result<Answer, PoolError> {
        match (self.owner, self.reach) {
            (Some(o), reach) => self.pool.send_within(o, reach, req).await,
            (None, Reach::Any) => self.pool.send_default(req).await,
            // A limited client always has an owner; never fall back to a
            // token that reaches everything.
            (None, Reach::Within(w)) => Err(PoolError::NotConfined {
                owner: String::new(),
                within: w.join(", "),
            }),
        }
    }
}

/// Headers of a 304 that say nothing about the stored body's bytes.
fn updates_stored(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "content-type" | "content-encoding" | "content-length" | "etag"
    )
}

type Cell = Arc<OnceCell<Arc<Fetched>>>;

/// Identical reads in flight, by cache key.
#[derive(Default)]
pub struct Inflight(Mutex<HashMap<Key, Cell>>);

/// A cacheable read (GET or HEAD). Identical concurrent reads share one
/// upstream request: the first runs it, the rest get its answer as hits.
pub async fn cached(
    route: &Route<'_>,
    cache: &Arc<Cache>,
    inflight: &Inflight,
    path_and_query: &str,
    client_headers: &HeaderMap,
    no_cache: bool,
) -> Arc<Fetched> {
    let key = cache::key(route.scope, path_and_query, client_headers);
    let cell = inflight
        .0
        .lock()
        .expect("inflight lock")
        .entry(key)
        .or_default()
        .clone();
    let led = AtomicBool::new(false);
    let fetched = cell
        .get_or_init(|| async {
            led.store(true, Ordering::Relaxed);
            Arc::new(fetch(route, cache, key, path_and_query, client_headers, no_cache).await)
        })
        .await
        .clone();
    if led.load(Ordering::Relaxed) {
        let mut map = inflight.0.lock().expect("inflight lock");
        if map.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            map.remove(&key);
        }
        return fetched;
    }
    // A follower: it sent nothing; what the leader read is its answer.
    let served_from_cache = fetched.content_etag.is_some();
    Arc::new(Fetched {
        status: fetched.status,
        headers: fetched.headers.clone(),
        body: fetched.body.clone(),
        outcome: if served_from_cache {
            Outcome::Hit
        } else {
            fetched.outcome
        },
        spent: 0,
        saved: u64::from(served_from_cache),
        content_etag: fetched.content_etag.clone(),
        credential: None,
        refused_by: None,
    })
}

async fn fetch(
    route: &Route<'_>,
    cache: &Arc<Cache>,
    key: Key,
    path_and_query: &str,
    client_headers: &HeaderMap,
    no_cache: bool,
) -> Fetched {
    let entry = cache.get(key).await;
    let now = crate::clock::now_ms();
    if let Some(e) = &entry
        && !no_cache
        && let Some(window) = cache.fresh_for(path_and_query)
        && now - e.validated_at_ms < window.as_millis() as i64
    {
        return from_entry(e, Outcome::Hit);
    }
    let req = Request {
        method: Method::GET,
        path: path_and_query.to_string(),
        headers: rewrite::upstream_request_headers(client_headers),
        body: Bytes::new(),
        validators: entry.as_ref().map(validators),
    };
    let answer = match route.send(req).await {
        Ok(a) => a,
        Err(e) => return pool_error(&e, Outcome::Miss),
    };
    match (answer.status, &entry) {
        (StatusCode::NOT_MODIFIED, Some(e)) => {
            // The 304's headers update the stored ones (RFC 9111, 4.3.4):
            // a page whose items did not change can still gain a `Link`
            // to a new last page.
            let e = freshened(e, &answer.headers);
            cache.revalidated(key, e.headers.clone()).await;
            let mut f = from_entry(&e, Outcome::Revalidated);
            f.spent = answer.cost;
            f.credential = Some(answer.credential.to_string());
            f
        }
        (StatusCode::OK, _) if has_validator(&answer.headers) => {
            let e = to_entry(route.scope, path_and_query, &answer);
            cache.put(key, e.clone()).await;
            let mut f = from_entry(&e, Outcome::Miss);
            f.spent = answer.cost;
            f.saved = 0;
            f.credential = Some(answer.credential.to_string());
            f
        }
        (StatusCode::NOT_FOUND | StatusCode::GONE, Some(_)) => {
            cache.remove(key).await;
            passed(answer, Outcome::Miss)
        }
        _ => passed(answer, Outcome::Miss),
    }
}

/// Anything not cacheable, passed through as it is.
pub async fn bypass(route: &Route<'_>, req: Request) -> Fetched {
    match route.send(req).await {
        Ok(a) => passed(a, Outcome::Bypass),
        Err(e) => pool_error(&e, Outcome::Bypass),
    }
}

fn has_validator(h: &HeaderMap) -> bool {
    h.contains_key(header::ETAG) || h.contains_key(header::LAST_MODIFIED)
}

/// The validators a stored entry offers. `Last-Modified` has one-second
/// resolution, so it is offered only when the entry was read at least a
/// second after it: a change in that same second would not move it.
fn validators(e: &Entry) -> Validators {
    let etag = match (&e.etag, &e.etag_credential, &e.token_tag) {
        (Some(etag), Some(cred), Some(tag)) => cred.parse().ok().map(|credential| HeldEtag {
            etag: etag.clone(),
            credential,
            token_tag: tag.clone(),
        }),
        _ => None,
    };
    let last_modified = e.last_modified.clone().filter(|lm| {
        httpdate::parse_http_date(lm)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|t| e.validated_at_ms >= (t.as_secs() as i64 + 1) * 1000)
    });
    Validators {
        etag,
        last_modified,
    }
}

fn content_etag(body: &[u8]) -> String {
    format!("W/\"gh-{}\"", hex::encode(&Sha256::digest(body)[..16]))
}

fn to_entry(scope: &str, path_and_query: &str, a: &Answer) -> Entry {
    let wire = encode(&rewrite::end_to_end(&a.headers));
    let text = |name| {
        a.headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    Entry {
        scope: scope.to_string(),
        path: path_and_query
            .split('?')
            .next()
            .unwrap_or(path_and_query)
            .to_string(),
        status: a.status.as_u16(),
        headers: wire,
        body: a.body.clone(),
        content_etag: content_etag(&a.body),
        etag: text(header::ETAG),
        etag_credential: Some(a.credential.to_string()),
        token_tag: Some(a.token_tag.clone()),
        last_modified: text(header::LAST_MODIFIED),
        validated_at_ms: crate::clock::now_ms(),
    }
}

fn decode(wire: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in decode_headers(wire) {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(n, v);
        }
    }
    headers
}

fn encode(h: &HeaderMap) -> Vec<u8> {
    encode_headers(
        h.iter()
            .filter(|(n, _)| *n != header::ETAG)
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
    )
}

/// The stored entry with a 304's headers in place of its own, and valid
/// as of now.
fn freshened(e: &Entry, not_modified: &HeaderMap) -> Entry {
    let mut headers = decode(&e.headers);
    let fresh = rewrite::end_to_end(not_modified);
    for name in fresh.keys() {
        if updates_stored(name) {
            headers.remove(name);
        }
    }
    for (name, value) in &fresh {
        if updates_stored(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    Entry {
        headers: encode(&headers),
        validated_at_ms: crate::clock::now_ms(),
        ..e.clone()
    }
}

/// The stored answer, with the gateway's validator.
fn from_entry(e: &Entry, outcome: Outcome) -> Fetched {
    let mut headers = decode(&e.headers);
    if let Ok(v) = HeaderValue::from_str(&e.content_etag) {
        headers.insert(header::ETAG, v);
    }
    Fetched {
        status: StatusCode::from_u16(e.status).unwrap_or(StatusCode::OK),
        headers,
        body: e.body.clone(),
        outcome,
        spent: 0,
        saved: 1,
        content_etag: Some(e.content_etag.clone()),
        credential: None,
        refused_by: None,
    }
}

fn passed(a: Answer, outcome: Outcome) -> Fetched {
    Fetched {
        spent: a.cost,
        credential: Some(a.credential.to_string()),
        ..Fetched::uncached(a.status, rewrite::end_to_end(&a.headers), a.body, outcome)
    }
}

/// The pool could not get an answer: say so the way GitHub would.
fn pool_error(e: &PoolError, outcome: Outcome) -> Fetched {
    if let Some((status, headers, body)) = e.github_shaped() {
        return Fetched::uncached(status, headers, body, outcome);
    }
    let (status, retry) = match e {
        PoolError::QueueFull(_) => (StatusCode::SERVICE_UNAVAILABLE, Some(1)),
        PoolError::Http(_) => (StatusCode::BAD_GATEWAY, None),
        PoolError::NoCredential(_)
        | PoolError::NoDefault
        | PoolError::NotConfined { .. }
        | PoolError::NotForPurpose { .. } => (StatusCode::FORBIDDEN, None),
        // As GitHub answers for a repository the credential cannot see.
        PoolError::NotInstalledOnRepo { .. } => (StatusCode::NOT_FOUND, None),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, "gateway: no answer from GitHub");
    }
    let (mut headers, body) = super::github_error(&format!("gatehouse: {e}"));
    if let Some(secs) = retry {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Fetched::uncached(status, headers, body, outcome)
}
