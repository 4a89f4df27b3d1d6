//! The parts of an incoming webhook request we check before trusting it:
//! content type, GitHub's headers, and a body read under a size limit.

use http::HeaderMap;

use super::Rejection;
use crate::journal::ContentKind;

/// GitHub's identifying headers, checked for presence and sanity.
pub struct GithubHeaders {
    pub event: String,
    pub guid: String,
    pub hook_id: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
}

/// A header value we are willing to store in an indexed column: short
/// printable ASCII. GUIDs are 36 characters, event names shorter.
fn token(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, Rejection> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(Rejection::InvalidHeader(name))?;
    Ok(Some(s.to_string()))
}

/// Headers that must come once: with two, which delivery, event, hook or
/// signature is meant is ambiguous, and a consumer could be shown the
/// other one.
const SINGLE: [&str; 7] = [
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-github-hook-installation-target-type",
    "x-github-hook-installation-target-id",
    "x-hub-signature-256",
    "content-type",
];

impl GithubHeaders {
    pub fn parse(headers: &HeaderMap) -> Result<GithubHeaders, Rejection> {
        if let Some(name) = SINGLE
            .iter()
            .find(|n| headers.get_all(**n).iter().nth(1).is_some())
        {
            return Err(Rejection::RepeatedHeader(name));
        }
        let event =
            token(headers, "x-github-event")?.ok_or(Rejection::MissingHeader("X-GitHub-Event"))?;
        let guid = token(headers, "x-github-delivery")?
            .ok_or(Rejection::MissingHeader("X-GitHub-Delivery"))?;
        Ok(GithubHeaders {
            event,
            guid,
            hook_id: token(headers, "x-github-hook-id")?.unwrap_or_default(),
            target_type: token(headers, "x-github-hook-installation-target-type")?,
            target_id: token(headers, "x-github-hook-installation-target-id")?,
        })
    }
}

/// The two content types GitHub sends; anything else is refused.
pub fn content_kind(headers: &HeaderMap) -> Result<ContentKind, Rejection> {
    let raw = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = raw.split(';').next().unwrap_or("").trim();
    if media.eq_ignore_ascii_case("application/json") {
        Ok(ContentKind::Json)
    } else if media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(ContentKind::Form)
    } else {
        Err(Rejection::UnsupportedMediaType(
            raw.chars().take(100).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_identity_header_is_refused() {
        let mut h = HeaderMap::new();
        h.insert("x-github-event", "push".parse().unwrap());
        h.insert("x-github-delivery", "a".parse().unwrap());
        assert!(GithubHeaders::parse(&h).is_ok());
        h.append("x-github-delivery", "b".parse().unwrap());
        assert!(matches!(
            GithubHeaders::parse(&h),
            Err(Rejection::RepeatedHeader("x-github-delivery"))
        ));
    }

    #[test]
    fn content_type_parameters_and_case_are_accepted() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(content_kind(&h).unwrap(), ContentKind::Json);
        h.insert("content-type", "text/plain".parse().unwrap());
        assert!(content_kind(&h).is_err());
    }
}
