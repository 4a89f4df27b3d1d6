//! fakehub's configuration: the accounts, repositories, Apps, tokens and
//! hooks of its world, its limits and its faults. TOML for the binary, the
//! same struct (with builder helpers) for in-process tests.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The base URL put into bodies and `Link` headers; defaults to
    /// `http://<bound address>`.
    pub public_url: Option<String>,
    /// GitHub's webhook fixtures, the source of every body fakehub serves.
    pub fixtures: Option<PathBuf>,
    pub accounts: Vec<AccountConfig>,
    pub apps: Vec<AppConfig>,
    pub tokens: Vec<TokenConfig>,
    pub hooks: Vec<HookConfig>,
    pub rate_limit: RateLimitConfig,
    pub secondary: SecondaryConfig,
    pub faults: Vec<FaultConfig>,
    pub seed: SeedConfig,
    /// GitHub gives a webhook receiver 10 s; tests may shorten it.
    pub webhook_timeout_ms: u64,
    /// Installation tokens live an hour on GitHub; tests may shorten it.
    pub installation_token_secs: i64,
    /// Be GitHub Enterprise Server: the API only under `/api/v3` (GraphQL
    /// at `/api/graphql`), `installed_version` in `/meta`, GHES headers on
    /// deliveries.
    pub enterprise: Option<EnterpriseConfig>,
}

/// What a GitHub Enterprise Server says of itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnterpriseConfig {
    /// `installed_version` in `/meta`, `X-GitHub-Enterprise-Version`.
    pub version: String,
    /// `X-GitHub-Enterprise-Host` on deliveries.
    pub host: String,
}

impl Default for EnterpriseConfig {
    fn default() -> Self {
        EnterpriseConfig {
            version: "3.19.0".into(),
            host: "ghes.example".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum AccountKind {
    #[default]
    Organization,
    User,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub login: String,
    #[serde(default, rename = "type")]
    pub kind: AccountKind,
    /// Repository names (without the owner).
    #[serde(default)]
    pub repos: Vec<String>,
    /// Names of repositories that are private (invisible to anonymous reads).
    #[serde(default)]
    pub private: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    #[default]
    Json,
    Form,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub id: i64,
    #[serde(default = "default_slug")]
    pub slug: String,
    /// PEM of the App's RSA public key (or `public_key_file`).
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// The App's webhook: where deliveries go, signed with this secret.
    #[serde(default)]
    pub webhook_url: Option<String>,
    #[serde(default)]
    pub webhook_secret: Option<String>,
    #[serde(default)]
    pub content_type: ContentType,
    /// The App webhook's hook id (`X-GitHub-Hook-ID`); defaults to the App id.
    #[serde(default)]
    pub hook_id: Option<i64>,
    #[serde(default)]
    pub installations: Vec<InstallationConfig>,
}

fn default_slug() -> String {
    "fakehub-app".to_string()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallationConfig {
    pub id: i64,
    /// The account login it is installed on.
    pub account: String,
    /// Repository names it may see; absent = all of the account's.
    #[serde(default)]
    pub repositories: Option<Vec<String>>,
    /// Permission name → "read" | "write"; absent = GitHub's usual set, write.
    #[serde(default)]
    pub permissions: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A label for stats (never the token itself).
    pub name: String,
    pub token: String,
    /// The user the token belongs to (`GET /user`).
    #[serde(default = "default_login")]
    pub login: String,
    /// `owner/repo` full names it may see; absent = every repository.
    #[serde(default)]
    pub repositories: Option<Vec<String>>,
}

fn default_login() -> String {
    "fakehub-bot".to_string()
}

/// A repository or organisation webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    pub id: i64,
    /// The organisation (org hook) or owner of `repo` (repository hook).
    pub owner: String,
    #[serde(default)]
    pub repo: Option<String>,
    pub url: String,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub content_type: ContentType,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub core: u64,
    pub graphql: u64,
    pub search: u64,
    /// The window after which a credential's budget resets.
    pub window_secs: u64,
    /// Unauthenticated requests get this many per window.
    pub anonymous: u64,
    /// Points each GraphQL query costs (GitHub charges by the nodes a
    /// query may return; at least 1).
    pub graphql_points: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            core: 5000,
            graphql: 5000,
            search: 30,
            window_secs: 3600,
            anonymous: 60,
            graphql_points: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecondaryConfig {
    /// Concurrent requests allowed per credential; one more gets 403.
    pub max_concurrent: usize,
    pub retry_after_secs: u64,
}

impl Default for SecondaryConfig {
    fn default() -> Self {
        SecondaryConfig {
            max_concurrent: 100,
            retry_after_secs: 60,
        }
    }
}

/// Latency and failures for requests matching `route`: `"METHOD /path"`
/// where a `*` segment matches one path segment and a trailing `**` the
/// rest (`"GET /repos/*/*/pulls"`, `"* /graphql"`, `"* /**"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    pub route: String,
    #[serde(default)]
    pub latency_ms: u64,
    /// With this, latency is uniform in [latency_ms, latency_max_ms].
    #[serde(default)]
    pub latency_max_ms: Option<u64>,
    /// Share of matching requests answered with `error_status`.
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default = "default_error_status")]
    pub error_status: u16,
    /// Share of matching requests whose connection is dropped unanswered.
    #[serde(default)]
    pub reset_rate: f64,
    /// Only requests by this credential (`installation:ID`, `user:LOGIN`,
    /// `app:ID`, `anonymous`).
    #[serde(default)]
    pub credential: Option<String>,
    /// With an error status, answer as GitHub's secondary limit does: its
    /// message and `retry-after: N`.
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// The error's message instead of GitHub's (GitHub's older secondary
    /// limit said "You have triggered an abuse detection mechanism...").
    #[serde(default)]
    pub message: Option<String>,
    /// Stop injecting errors after this many.
    #[serde(default)]
    pub max_hits: Option<u64>,
}

fn default_error_status() -> u16 {
    502
}

/// How much data each repository starts with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeedConfig {
    pub pulls: usize,
    pub issues: usize,
    pub comments: usize,
    pub commits: usize,
    pub branches: usize,
}

impl Default for SeedConfig {
    fn default() -> Self {
        SeedConfig {
            pulls: 3,
            issues: 3,
            comments: 2,
            commits: 5,
            branches: 2,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:0".parse().expect("valid"),
            public_url: None,
            fixtures: None,
            accounts: Vec::new(),
            apps: Vec::new(),
            tokens: Vec::new(),
            hooks: Vec::new(),
            rate_limit: RateLimitConfig::default(),
            secondary: SecondaryConfig::default(),
            faults: Vec::new(),
            seed: SeedConfig::default(),
            webhook_timeout_ms: 10_000,
            installation_token_secs: crate::auth::INSTALLATION_TOKEN_SECS,
            // A whole test suite can run against GHES: set
            // FAKEHUB_ENTERPRISE to the version it should say it is.
            enterprise: std::env::var("FAKEHUB_ENTERPRISE")
                .ok()
                .filter(|v| !v.is_empty())
                .map(|version| EnterpriseConfig {
                    version,
                    ..EnterpriseConfig::default()
                }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // Relative files in the config are relative to the config's folder.
        let dir = path.parent().unwrap_or(Path::new("."));
        for app in &mut config.apps {
            if let Some(f) = &app.public_key_file {
                app.public_key_file = Some(dir.join(f));
            }
        }
        if let Some(f) = &config.fixtures {
            config.fixtures = Some(dir.join(f));
        }
        Ok(config)
    }

    /// Adds an organisation with repositories.
    pub fn org(mut self, login: &str, repos: &[&str]) -> Self {
        self.accounts.push(AccountConfig {
            login: login.into(),
            kind: AccountKind::Organization,
            repos: repos.iter().map(|r| r.to_string()).collect(),
            private: Vec::new(),
        });
        self
    }

    /// Adds a user account with repositories.
    pub fn user(mut self, login: &str, repos: &[&str]) -> Self {
        self.accounts.push(AccountConfig {
            login: login.into(),
            kind: AccountKind::User,
            repos: repos.iter().map(|r| r.to_string()).collect(),
            private: Vec::new(),
        });
        self
    }

    /// Makes an account's repository private (visible only to credentials
    /// that can see it).
    pub fn private(mut self, login: &str, repo: &str) -> Self {
        if let Some(a) = self.accounts.iter_mut().find(|a| a.login == login) {
            a.private.push(repo.to_string());
        }
        self
    }

    /// Adds an App with a public key and installations `(id, account)` on
    /// all of each account's repositories.
    pub fn app(mut self, id: i64, public_key_pem: &str, installations: &[(i64, &str)]) -> Self {
        self.apps.push(AppConfig {
            id,
            slug: format!("app-{id}"),
            public_key: Some(public_key_pem.to_string()),
            public_key_file: None,
            webhook_url: None,
            webhook_secret: None,
            content_type: ContentType::Json,
            hook_id: None,
            installations: installations
                .iter()
                .map(|&(id, account)| InstallationConfig {
                    id,
                    account: account.into(),
                    repositories: None,
                    permissions: None,
                })
                .collect(),
        });
        self
    }

    /// Adds a personal access token.
    pub fn token(mut self, name: &str, token: &str) -> Self {
        self.tokens.push(TokenConfig {
            name: name.into(),
            token: token.into(),
            login: default_login(),
            repositories: None,
        });
        self
    }

    /// Adds a token that sees only these `owner/repo` full names, as a
    /// fine-grained token does.
    pub fn token_for(mut self, name: &str, token: &str, repositories: &[&str]) -> Self {
        self.tokens.push(TokenConfig {
            name: name.into(),
            token: token.into(),
            login: name.into(),
            repositories: Some(repositories.iter().map(|r| r.to_string()).collect()),
        });
        self
    }

    /// Adds a fault rule.
    /// Plays GitHub Enterprise Server (`version`, host `ghes.example`).
    pub fn enterprise(mut self, version: &str) -> Self {
        self.enterprise = Some(EnterpriseConfig {
            version: version.into(),
            ..EnterpriseConfig::default()
        });
        self
    }

    pub fn fault(mut self, fault: FaultConfig) -> Self {
        self.faults.push(fault);
        self
    }
}

impl FaultConfig {
    pub fn new(route: &str) -> FaultConfig {
        FaultConfig {
            route: route.into(),
            latency_ms: 0,
            latency_max_ms: None,
            error_rate: 0.0,
            error_status: default_error_status(),
            reset_rate: 0.0,
            credential: None,
            retry_after_secs: None,
            message: None,
            max_hits: None,
        }
    }
}
