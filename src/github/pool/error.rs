//! What can go wrong sending through the pool.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::credential::CredId;
use crate::github::budget::Resource;

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no credential can act for {0:?}: no App is installed there and no token is allowed")]
    NoCredential(String),
    /// The caller is limited to some owners and no credential confined to
    /// them can serve this owner (see [`super::Reach`]).
    #[error(
        "no credential confined to {within} can act for {owner:?}: only an App installation on \
         {owner:?} or a [[github.tokens]] entry with confined = true and owners within {within} \
         may serve a client limited to {within}"
    )]
    NotConfined { owner: String, within: String },
    /// The owner's App installations each see only selected repositories,
    /// this one among none of them, and no token serves the owner.
    #[error(
        "no credential can act for {owner}/{repo}: no App gatehouse holds is installed on that \
         repository (its installations on {owner:?} see selected repositories only), and no \
         token serves {owner:?}"
    )]
    NotInstalledOnRepo { owner: String, repo: String },
    /// Credentials can act for the owner, but none may be spent on this.
    #[error(
        "no credential that can act for {owner:?} may be spent on {purpose}: add {purpose:?} \
         to the purposes of an App or token that can"
    )]
    NotForPurpose {
        owner: String,
        purpose: &'static str,
    },
    /// Every candidate is spent or paused; the earliest moment one returns.
    #[error("every credential for this owner is rate limited until {reset}")]
    Exhausted { reset: i64, resource: Resource },
    #[error(
        "no credential serves requests without an owner: give the client an owner, \
         set [gateway] default_owner, or add a [[github.tokens]] entry without owners"
    )]
    NoDefault,
    #[error("too many requests waiting for {0}")]
    QueueFull(CredId),
    #[error("GitHub request failed: {0}")]
    Http(String),
    #[error("{0}")]
    Config(String),
}

/// A failed exchange with GitHub with its causes: reqwest's own text
/// ("error sending request for url ...") hides whether it timed out, was
/// refused or was cut.
pub(super) fn http_error(e: reqwest::Error) -> PoolError {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    PoolError::Http(text)
}

impl PoolError {
    /// The answer GitHub itself gives when a budget is spent, for callers
    /// that speak GitHub's API (the gateway).
    pub fn github_shaped(&self) -> Option<(StatusCode, HeaderMap, Bytes)> {
        let PoolError::Exhausted { reset, resource } = self else {
            return None;
        };
        let (mut h, body) = crate::github::error_answer(
            "API rate limit exceeded for every credential gatehouse holds for this owner.",
            "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        );
        h.insert("x-ratelimit-remaining", HeaderValue::from(0));
        h.insert("x-ratelimit-reset", HeaderValue::from(*reset));
        h.insert(
            "x-ratelimit-resource",
            HeaderValue::from_static(resource.as_str()),
        );
        Some((StatusCode::FORBIDDEN, h, body))
    }
}
