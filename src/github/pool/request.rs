//! A request to GitHub and its answer, and the validators that make a
//! revalidation cost nothing.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::credential::CredId;

/// A request to GitHub, relative to the API base (`/repos/o/r?x=1`).
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// What the caller holds of an earlier answer, to ask conditionally.
    pub validators: Option<Validators>,
}

impl Request {
    pub fn get(path: &str) -> Request {
        Request::bare(Method::GET, path)
    }

    /// A POST without a body (`.../deliveries/{id}/attempts`, say).
    pub fn post(path: &str) -> Request {
        Request::bare(Method::POST, path)
    }

    fn bare(method: Method, path: &str) -> Request {
        Request {
            method,
            path: path.to_string(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            validators: None,
        }
    }
}

/// Validators of a stored answer. GitHub's ETags belong to the token that
/// read them (a validator from another token never matches), so the pool
/// prefers the credential that holds the ETag and sends `If-None-Match`
/// only when that same token is still in use; otherwise it falls back to
/// `If-Modified-Since`, which does not depend on the token.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    pub etag: Option<HeldEtag>,
    /// `Last-Modified`, only when a later change is sure to move it (see
    /// the gateway's cache): it has one-second resolution.
    pub last_modified: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HeldEtag {
    pub etag: String,
    pub credential: CredId,
    /// [`Answer::token_tag`] of the answer that carried the ETag.
    pub token_tag: String,
}

/// GitHub's answer, and which credential paid for it.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub credential: CredId,
    /// A fingerprint of the exact token used (installation tokens rotate
    /// hourly), never the token itself.
    pub token_tag: String,
    /// Rate-limit units this request spent: 0 for a 304, GraphQL's points
    /// from the budget it reported, else 1.
    pub cost: u64,
}

/// Adds the validator that can work for this credential and token, after
/// dropping any the caller passed (they belong to the caller's cache).
pub(super) fn add_validators(
    headers: &mut HeaderMap,
    v: Option<&Validators>,
    cred: &CredId,
    token_tag: &str,
) {
    let Some(v) = v else {
        return;
    };
    headers.remove(http::header::IF_NONE_MATCH);
    headers.remove(http::header::IF_MODIFIED_SINCE);
    if let Some(e) = &v.etag
        && &e.credential == cred
        && e.token_tag == token_tag
        && let Ok(value) = HeaderValue::from_str(&e.etag)
    {
        headers.insert(http::header::IF_NONE_MATCH, value);
        return;
    }
    if let Some(lm) = &v.last_modified
        && let Ok(value) = HeaderValue::from_str(lm)
    {
        headers.insert(http::header::IF_MODIFIED_SINCE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etag_is_sent_only_by_the_token_that_read_it_else_the_date() {
        let a = CredId::Token("a".into());
        let v = Validators {
            etag: Some(HeldEtag {
                etag: "\"e1\"".into(),
                credential: a.clone(),
                token_tag: "t1".into(),
            }),
            last_modified: Some("Tue, 01 Dec 2026 10:00:00 GMT".into()),
        };
        let sent = |cred: &CredId, tag: &str| {
            let mut h = HeaderMap::new();
            // The caller's own validators never pass through.
            h.insert(http::header::IF_NONE_MATCH, "\"theirs\"".parse().unwrap());
            add_validators(&mut h, Some(&v), cred, tag);
            (
                h.get(http::header::IF_NONE_MATCH)
                    .map(|v| v.to_str().unwrap().to_string()),
                h.get(http::header::IF_MODIFIED_SINCE).is_some(),
            )
        };
        assert_eq!(sent(&a, "t1"), (Some("\"e1\"".into()), false));
        assert_eq!(
            sent(&a, "t2"),
            (None, true),
            "the installation token rotated"
        );
        assert_eq!(sent(&CredId::Token("b".into()), "t1"), (None, true));
        let mut h = HeaderMap::new();
        h.insert(http::header::IF_NONE_MATCH, "\"theirs\"".parse().unwrap());
        add_validators(&mut h, None, &a, "t1");
        assert!(
            h.contains_key(http::header::IF_NONE_MATCH),
            "nothing held: left as asked"
        );
    }
}
