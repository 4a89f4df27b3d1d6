//! The `[github]` section: where GitHub is and the credentials gatehouse may spend there.

use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

/// Where GitHub is and which credentials gatehouse may spend there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// `https://api.github.com`, or `https://HOST/api/v3` for GHES.
    pub api_url: String,
    pub apps: Vec<GithubAppConfig>,
    pub tokens: Vec<GithubTokenConfig>,
    /// Callers waiting for one credential beyond this are refused at once.
    pub max_queue: usize,
    /// Remaining budget each credential keeps for people and other tools;
    /// gatehouse treats a credential at or below it as spent.
    pub reserve: u64,
    /// When every candidate is spent but one resets within this many
    /// seconds, wait for it instead of answering 403 at once.
    pub max_wait_secs: u64,
    /// One request to GitHub (connect, send, whole answer) may take this
    /// long; then it fails, so a hung GitHub cannot hold a caller, a
    /// credential's lane or a recovery walk.
    pub timeout_secs: u64,
    /// Repository and organisation webhooks whose delivery logs recovery
    /// walks (with a pool credential for `owner`).
    pub hooks: Vec<GithubHookConfig>,
}

/// A repository (`repo` set) or organisation webhook, by id.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubHookConfig {
    pub owner: String,
    #[serde(default)]
    pub repo: Option<String>,
    pub id: i64,
}

impl GithubConfig {
    /// Whether some App or token may be spent on `purpose`.
    pub fn spends_on(&self, purpose: Purpose) -> bool {
        self.apps.iter().any(|a| a.purposes.contains(&purpose))
            || self.tokens.iter().any(|t| t.purposes.contains(&purpose))
    }
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            api_url: "https://api.github.com".into(),
            apps: Vec::new(),
            tokens: Vec::new(),
            max_queue: 256,
            reserve: 0,
            max_wait_secs: 0,
            timeout_secs: 30,
            hooks: Vec::new(),
        }
    }
}

/// What gatehouse may spend a credential on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Clients' requests through the API gateway.
    Gateway,
    /// The sinks' consumers: the budget `github_budget` routes follow.
    Sinks,
    /// Walking delivery logs and asking for redeliveries.
    Recovery,
}

impl Purpose {
    pub const ALL: [Purpose; 3] = [Purpose::Gateway, Purpose::Sinks, Purpose::Recovery];

    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Gateway => "gateway",
            Purpose::Sinks => "sinks",
            Purpose::Recovery => "recovery",
        }
    }
}

fn all_purposes() -> Vec<Purpose> {
    Purpose::ALL.to_vec()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAppConfig {
    pub id: i64,
    /// PEM, PKCS#1 or PKCS#8 (or `private_key_file`).
    #[serde(default)]
    pub private_key: Option<Secret>,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// The App sends webhooks (false: it has none, and recovery does not
    /// walk its delivery log).
    #[serde(default = "yes")]
    pub webhook: bool,
    /// What its installations (and its own JWT) may be spent on.
    #[serde(default = "all_purposes")]
    pub purposes: Vec<Purpose>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubTokenConfig {
    pub name: String,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Owners this token may be used for; empty = any.
    #[serde(default)]
    pub owners: Vec<String>,
    /// What it may be spent on.
    #[serde(default = "all_purposes")]
    pub purposes: Vec<Purpose>,
    /// The operator declares that this token can reach nothing beyond
    /// `owners` (a fine-grained token whose resource owner is that
    /// organisation): only such tokens, and App installations, serve
    /// gateway clients limited with `--owner`.
    #[serde(default)]
    pub confined: bool,
}
