//! A credential's rate-limit budget, as GitHub reports it on every answer
//! (`x-ratelimit-limit`, `-remaining`, `-reset`, `-resource`).

use http::HeaderMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Core,
    Graphql,
    Search,
}

impl Resource {
    /// What a request will spend, from its path.
    pub fn for_path(path: &str) -> Resource {
        if path.starts_with("/graphql") {
            Resource::Graphql
        } else if path.starts_with("/search/") {
            Resource::Search
        } else {
            Resource::Core
        }
    }

    pub fn parse(s: &str) -> Option<Resource> {
        match s {
            "core" => Some(Resource::Core),
            "graphql" => Some(Resource::Graphql),
            "search" => Some(Resource::Search),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Core => "core",
            Resource::Graphql => "graphql",
            Resource::Search => "search",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u64,
    pub remaining: u64,
    /// Epoch seconds when `remaining` is refilled.
    pub reset: i64,
}

impl Budget {
    /// Spent until its reset.
    pub fn exhausted(&self, now_secs: i64) -> bool {
        self.remaining == 0 && self.reset > now_secs
    }
}

/// The budget an answer reports, and for which resource (the header's,
/// else the one the request was for).
pub fn from_headers(h: &HeaderMap, asked: Resource) -> Option<(Resource, Budget)> {
    let num = |name: &str| h.get(name)?.to_str().ok()?.trim().parse::<i64>().ok();
    let budget = Budget {
        limit: num("x-ratelimit-limit")?.max(0) as u64,
        remaining: num("x-ratelimit-remaining")?.max(0) as u64,
        reset: num("x-ratelimit-reset")?,
    };
    let resource = h
        .get("x-ratelimit-resource")
        .and_then(|v| v.to_str().ok())
        .and_then(Resource::parse)
        .unwrap_or(asked);
    Some((resource, budget))
}
