//! Admin UI sessions, and failed authentications per address, as stored.

/// A session is marked seen again only when its mark is this much older:
/// page views within a minute of each other write nothing.
pub const SEEN_GRANULARITY_MS: i64 = 60_000;

/// A login about to be stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 of the cookie's token.
    pub token_digest: [u8; 32],
    pub csrf: String,
    /// SHA-256 of the password hash it logged in with: the session ends
    /// when that hash is no longer the one in use.
    pub password_digest: [u8; 32],
    pub now_ms: i64,
}

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub csrf: String,
    pub password_digest: [u8; 32],
    pub last_seen_ms: i64,
}

/// What [`crate::store::Sessions::tally_failure`] does with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// Only says whether the address is over its limit.
    Check,
    /// Counts the attempt as a failure unless the address is over its
    /// limit (check and count in one step).
    Reserve,
    /// Counts a failure.
    Record,
}
