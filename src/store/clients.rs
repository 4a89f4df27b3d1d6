//! Gateway clients as stored (token hashes only, invariant 8) and their
//! usage per minute.

use serde::Serialize;

/// A client as the store keeps it: scopes and owners as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    pub name: String,
    pub scopes: Vec<String>,
    pub owners: Vec<String>,
}

/// What `gatehouse clients list` shows of one client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRow {
    pub name: String,
    pub scopes: Vec<String>,
    pub owners: Vec<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub last_hour: Usage,
}

/// Requests and rate-limit units over a window.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub requests: i64,
    pub hits: i64,
    pub revalidated: i64,
    pub misses: i64,
    pub bypassed: i64,
    pub units_spent: i64,
    pub units_saved: i64,
}
