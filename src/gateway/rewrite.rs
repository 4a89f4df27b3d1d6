//! Headers and URLs between the client and GitHub: which headers cross,
//! and GitHub's API base rewritten to the gateway's in `Link`, `Location`
//! and JSON bodies, so pagination and `url` fields stay on the gateway.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use memchr::memmem;

/// Connection-level headers (RFC 9110, 7.6.1) and framing, which each hop
/// sets for itself.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "host"
    )
}

/// The client's headers as they go to GitHub: without its credentials
/// (the pool adds its own), its validators (they are the gateway's, see
/// `cache`), its cookies and the connection's own headers.
pub fn upstream_request_headers(client: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(client.len());
    for (name, value) in client {
        let drop = hop_by_hop(name)
            || name == header::AUTHORIZATION
            || name == header::COOKIE
            || name == header::IF_NONE_MATCH
            || name == header::IF_MODIFIED_SINCE
            // The pool asks GitHub for gzip itself and hands us plain bytes.
            || name == header::ACCEPT_ENCODING
            || name.as_str().starts_with("x-forwarded-");
        if !drop {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// GitHub's answer headers minus the connection's own.
pub fn end_to_end(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len());
    for (name, value) in upstream {
        if !hop_by_hop(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Replaces GitHub's API base with the gateway's, for one client.
pub struct Rewriter {
    upstream: String,
    base: String,
    enabled_for_bodies: bool,
}

impl Rewriter {
    /// `upstream`: the pool's API base; `base`: the gateway as this client
    /// reached it, with the prefix it used.
    pub fn new(upstream: &str, base: String, bodies: bool) -> Rewriter {
        Rewriter {
            upstream: upstream.trim_end_matches('/').to_string(),
            base: base.trim_end_matches('/').to_string(),
            enabled_for_bodies: bodies,
        }
    }

    /// Occurrences of the API base that end where a URL continues
    /// (`/`, `?`, `"`, `>`, or the end) are replaced.
    fn replace(&self, input: &[u8]) -> Option<Vec<u8>> {
        let needle = self.upstream.as_bytes();
        if needle.is_empty() || needle == self.base.as_bytes() {
            return None;
        }
        let finder = memmem::Finder::new(needle);
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0;
        for at in finder.find_iter(input) {
            let end = at + needle.len();
            let boundary = input
                .get(end)
                .is_none_or(|b| matches!(b, b'/' | b'?' | b'"' | b'>'));
            if !boundary {
                continue;
            }
            let buf = out.get_or_insert_with(|| Vec::with_capacity(input.len()));
            buf.extend_from_slice(&input[copied..at]);
            buf.extend_from_slice(self.base.as_bytes());
            copied = end;
        }
        let mut buf = out?;
        buf.extend_from_slice(&input[copied..]);
        Some(buf)
    }

    /// Rewrites `Link` and `Location` in place.
    pub fn headers(&self, h: &mut HeaderMap) {
        for name in [header::LINK, header::LOCATION] {
            let values: Vec<HeaderValue> = h.get_all(&name).iter().cloned().collect();
            if values.is_empty() {
                continue;
            }
            h.remove(&name);
            for v in values {
                let new = self
                    .replace(v.as_bytes())
                    .and_then(|b| HeaderValue::from_bytes(&b).ok())
                    .unwrap_or(v);
                h.append(name.clone(), new);
            }
        }
    }

    /// Rewrites API URLs in a JSON body; other bodies pass untouched.
    pub fn body(&self, h: &HeaderMap, body: Bytes) -> Bytes {
        let json = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.contains("json"));
        if !self.enabled_for_bodies || !json {
            return body;
        }
        match self.replace(&body) {
            Some(b) => Bytes::from(b),
            None => body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_bodies_point_back_at_the_gateway() {
        let r = Rewriter::new(
            "https://api.github.com",
            "http://gw:8081/api/v3".into(),
            true,
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::LINK,
            HeaderValue::from_static(
                "<https://api.github.com/repos/a/b/pulls?page=2>; rel=\"next\", <https://api.github.com/repos/a/b/pulls?page=5>; rel=\"last\"",
            ),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("https://api.github.com/repos/a/b/issues/comments/7"),
        );
        r.headers(&mut h);
        assert_eq!(
            h[header::LINK],
            "<http://gw:8081/api/v3/repos/a/b/pulls?page=2>; rel=\"next\", <http://gw:8081/api/v3/repos/a/b/pulls?page=5>; rel=\"last\""
        );
        assert_eq!(
            h[header::LOCATION],
            "http://gw:8081/api/v3/repos/a/b/issues/comments/7"
        );
        let body = Bytes::from_static(
            br#"{"url":"https://api.github.com/repos/a/b","html_url":"https://github.com/a/b","x":"https://api.github.com.evil/x"}"#,
        );
        assert_eq!(
            &r.body(&h, body)[..],
            &br#"{"url":"http://gw:8081/api/v3/repos/a/b","html_url":"https://github.com/a/b","x":"https://api.github.com.evil/x"}"#[..]
        );
    }

    #[test]
    fn credentials_and_validators_do_not_cross() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("token gth_x"),
        );
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"a\""));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        let up = upstream_request_headers(&h);
        assert_eq!(up.len(), 1);
        assert!(up.contains_key(header::ACCEPT));
    }
}
