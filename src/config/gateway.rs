//! The `[gateway]` section: the API gateway and its cache.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::DEFAULT_MAX_BODY_BYTES;

/// The GitHub API gateway: its listener, how it routes requests that name
/// no owner, and its response cache.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// The base URL clients use (`https://gh-proxy.internal`), for the
    /// `Link`/`Location` headers and API URLs in bodies; empty = taken from
    /// each request's `Host`, over http.
    pub public_url: String,
    /// Whose credentials serve requests that name no owner (`/user`,
    /// `/search/...`, GraphQL) for a client without `--owner`; empty = a
    /// token allowed for any owner.
    pub default_owner: String,
    pub max_body_bytes: u64,
    /// Rewrite GitHub's API base in JSON bodies to the gateway's, so
    /// clients that follow `url` fields (PyGithub does) stay on it.
    pub rewrite_body_urls: bool,
    /// The cache's own SQLite file; empty = `gateway-cache.db` beside the
    /// journal. It holds nothing that cannot be fetched again.
    pub cache_path: PathBuf,
    /// Size bound of the cache (bodies and headers); least recently used
    /// entries go first.
    pub cache_max_bytes: u64,
    /// Paths served from the cache without asking GitHub for a while.
    pub fresh: Vec<FreshRule>,
    /// Requests with a bad token allowed per client address per minute;
    /// past it the address gets 429 without its token being looked at.
    pub auth_failures_per_minute: u32,
    /// Below this part of an owner's budget (until its reset), the
    /// clients active for it share what remains by weight; 0 = off.
    pub fair_share_below: f64,
    /// This last part of an owner's budget is kept for `--priority high`
    /// clients; 0 = none.
    pub priority_share: f64,
    /// The client registry as a reviewed file (`clients.toml`, relative
    /// to this config's folder); applied at start, on SIGHUP and by
    /// `gatehouse reload`. Empty = clients only from the CLI and the UI.
    pub clients_file: PathBuf,
    /// Rate-limit units per hour one credential would have had, for the
    /// "incidents avoided" panel; 0 = 15,000 for an owner served by an App
    /// installation, 5,000 for tokens.
    pub single_credential_limit: u64,
}

/// Serve answers for paths matching `path` (a regex on the path and query)
/// for `secs` after they were fetched or revalidated, without asking
/// GitHub. Off unless configured: a change on GitHub shows up late.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreshRule {
    pub path: String,
    pub secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "127.0.0.1:8081".parse().expect("valid default address"),
            public_url: String::new(),
            default_owner: String::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            rewrite_body_urls: true,
            cache_path: PathBuf::new(),
            cache_max_bytes: 256 * 1024 * 1024,
            fresh: Vec::new(),
            auth_failures_per_minute: 20,
            fair_share_below: 0.25,
            priority_share: 0.1,
            clients_file: PathBuf::new(),
            single_credential_limit: 0,
        }
    }
}
