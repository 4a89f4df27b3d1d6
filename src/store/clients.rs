//! Gateway clients as stored (token hashes only, invariant 8) and their
//! usage per minute.

use serde::{Deserialize, Serialize};

/// A client as the store keeps it: scopes and owners as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredClient {
    pub name: String,
    pub scopes: Vec<String>,
    pub owners: Vec<String>,
    pub limits: Limits,
}

/// What a client may spend of GitHub's rate limit through the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Rate-limit units its requests may spend upstream in any hour.
    pub quota_per_hour: Option<u64>,
    /// Its part of a fair share, against other clients' weights.
    pub weight: u32,
    /// High: served from the part of a budget the others cannot reach,
    /// and never held to a fair share.
    pub priority: Priority,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            quota_per_hour: None,
            weight: 1,
            priority: Priority::Normal,
        }
    }
}

impl Limits {
    /// As stored: JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("limits serialise")
    }

    /// From the stored JSON; a client stored before limits existed has
    /// none (`{}`).
    pub fn from_json(json: &str) -> Result<Limits, serde_json::Error> {
        serde_json::from_str(json)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    Normal,
    High,
}

/// What `gatehouse clients list` shows of one client.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRow {
    pub name: String,
    pub scopes: Vec<String>,
    pub owners: Vec<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub limits: Limits,
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
