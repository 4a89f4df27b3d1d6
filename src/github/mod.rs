//! Everything gatehouse sends to GitHub goes through one pool of
//! credentials (invariant 5): App installations and tokens, chosen by
//! remaining budget, one request in flight per credential, paused on
//! secondary limits.

pub mod app;
pub mod budget;
pub mod metrics;
pub mod pool;

pub use pool::{
    Answer, COVERAGE_DAYS, Coverage, CredId, CredStatus, HeldEtag, Pool, PoolError, ProbeRow,
    Reach, Request, Validators,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};

/// An error answer in GitHub's shape, `{"message", "documentation_url"}`,
/// for callers that speak GitHub's API (the gateway).
pub fn error_answer(message: &str, documentation_url: &str) -> (HeaderMap, Bytes) {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    let body = serde_json::json!({ "message": message, "documentation_url": documentation_url });
    (h, Bytes::from(body.to_string()))
}
