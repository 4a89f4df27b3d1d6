//! Why the gateway refuses a request before anything goes upstream, as a
//! type: the handler picks the status from it and sends its text in
//! GitHub's error shape.

use http::StatusCode;

/// A request the gateway will not send, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "gatehouse: path segment {segment:?} is not allowed (dot segments and encoded slashes are refused)"
    )]
    Path { segment: String },
    #[error(
        "gatehouse: client {client:?} may not {what} {path}: no scope allows it (scopes: {scopes})"
    )]
    Scope {
        client: String,
        what: String,
        path: String,
        scopes: String,
    },
    #[error(
        "gatehouse: client {client:?} may act only for {owners}; this request is for {owner:?}"
    )]
    Owner {
        client: String,
        owners: String,
        owner: String,
    },
    #[error("gatehouse: cannot tell which GraphQL operation this runs: {0}")]
    Graphql(#[from] super::graphql::Unreadable),
}

impl Refusal {
    /// 400 for a request no client may send, 403 for one this client may not.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Path { .. } | Refusal::Graphql(_) => StatusCode::BAD_REQUEST,
            Refusal::Scope { .. } | Refusal::Owner { .. } => StatusCode::FORBIDDEN,
        }
    }
}
