//! Gateway clients as stored (token hashes only, invariant 8) and their
//! usage per minute.

use serde::{Deserialize, Serialize};

/// A client to create or, from the clients file, to make so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    pub name: String,
    pub token_hash: String,
    pub scopes: Vec<String>,
    pub owners: Vec<String>,
    pub limits: Limits,
}

/// Where a client came from; the clients file changes only its own, and
/// the CLI and the admin UI may not change those.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Cli,
    Admin,
    File,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Cli => "cli",
            Origin::Admin => "admin",
            Origin::File => "file",
        }
    }

    pub fn parse(s: &str) -> Origin {
        match s {
            "admin" => Origin::Admin,
            "file" => Origin::File,
            _ => Origin::Cli,
        }
    }
}

/// Who makes a change, for the audit log: `admin` (a UI login), the
/// CLI's user, or the clients file's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub origin: Origin,
    pub who: String,
}

impl Actor {
    pub fn label(&self) -> String {
        format!("{}:{}", self.origin.as_str(), self.who)
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// `origin:who`, as [`Actor::label`].
    pub actor: String,
    /// `add`, `rotate`, `revoke`, `change`.
    pub action: String,
    pub subject: String,
    pub detail: String,
}

/// What applying the clients file changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub revoked: Vec<String>,
    pub unchanged: usize,
}

/// Gateway usage in one minute for one client, owner, route template,
/// answering credential (`""` for a cache hit or a refusal) and refusing
/// rule (`""` when served).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UsageLine {
    pub minute: i64,
    pub client: String,
    pub owner: String,
    pub route: String,
    pub credential: String,
    pub refused_by: String,
    pub requests: i64,
    pub units_spent: i64,
    pub units_saved: i64,
}

impl UsageLine {
    /// What a line adds up under: all but its counts.
    pub fn key(&self) -> (i64, &str, &str, &str, &str, &str) {
        (
            self.minute,
            &self.client,
            &self.owner,
            &self.route,
            &self.credential,
            &self.refused_by,
        )
    }
}

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
    pub origin: Origin,
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

/// A stored client as the clients file's plan compares it.
#[derive(Debug, Clone)]
pub struct Current {
    pub spec: ClientSpec,
    pub origin: Origin,
    pub active: bool,
}

/// What to write so the file's clients become `specs`; both backends
/// read [`Current`] and write this plan inside one transaction.
#[derive(Debug, Default)]
pub struct Plan {
    /// Created, or made again under a revoked name.
    pub add: Vec<ClientSpec>,
    /// Active and the file's, with something different.
    pub change: Vec<(ClientSpec, String)>,
    pub revoke: Vec<String>,
    pub unchanged: usize,
}

impl Plan {
    /// Err names a spec that would take an active client the file does
    /// not own.
    pub fn new(specs: &[ClientSpec], current: &[Current]) -> Result<Plan, String> {
        let mut plan = Plan::default();
        for spec in specs {
            match current.iter().find(|c| c.spec.name == spec.name) {
                Some(c) if c.active && c.origin != Origin::File => {
                    return Err(format!(
                        "client {:?} was added with the {}; revoke it there before the clients file can own it",
                        spec.name,
                        match c.origin {
                            Origin::Admin => "admin UI",
                            _ => "CLI",
                        }
                    ));
                }
                Some(c) if c.active => {
                    let what = differences(&c.spec, spec);
                    if what.is_empty() {
                        plan.unchanged += 1;
                    } else {
                        plan.change.push((spec.clone(), what.join(", ")));
                    }
                }
                _ => plan.add.push(spec.clone()),
            }
        }
        for c in current {
            if c.active && c.origin == Origin::File && !specs.iter().any(|s| s.name == c.spec.name)
            {
                plan.revoke.push(c.spec.name.clone());
            }
        }
        Ok(plan)
    }
}

/// Why `by` may not revoke or rotate `name` (`found`: its rows), or None
/// when it may: an active client is needed, and the clients file's own
/// are changed only through the file.
pub fn refusal(found: &[Current], name: &str, by: &Actor) -> Option<super::StoreError> {
    match found.iter().find(|c| c.active) {
        None => Some(super::StoreError::NotFound(format!(
            "no active client named {name:?}"
        ))),
        Some(c) if c.origin == Origin::File && by.origin != Origin::File => {
            Some(super::StoreError::Invalid(format!(
                "client {name:?} is managed by the clients file: change it there"
            )))
        }
        Some(_) => None,
    }
}

/// What differs between two specs, by field name (never the hash).
pub fn differences(old: &ClientSpec, new: &ClientSpec) -> Vec<&'static str> {
    let mut what = Vec::new();
    if old.token_hash != new.token_hash {
        what.push("token");
    }
    if old.scopes != new.scopes {
        what.push("scopes");
    }
    if old.owners != new.owners {
        what.push("owners");
    }
    if old.limits != new.limits {
        what.push("limits");
    }
    what
}

/// The audit detail of a new client: what it may do, never its hash.
pub fn describe(spec: &ClientSpec) -> String {
    let mut parts = Vec::new();
    if !spec.scopes.is_empty() {
        parts.push(format!("scopes {}", spec.scopes.join("; ")));
    }
    if !spec.owners.is_empty() {
        parts.push(format!("owners {}", spec.owners.join(", ")));
    }
    if let Some(q) = spec.limits.quota_per_hour {
        parts.push(format!("quota {q}/h"));
    }
    if spec.limits.weight != 1 {
        parts.push(format!("weight {}", spec.limits.weight));
    }
    if spec.limits.priority == Priority::High {
        parts.push("priority high".into());
    }
    parts.join("; ")
}
