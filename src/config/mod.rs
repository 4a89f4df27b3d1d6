//! Configuration: one TOML file, one struct tree, defaults in one place.
//!
//! Unknown keys and bad values are errors that name the key and the line, so
//! an operator can fix a file without reading our source. Every secret `x`
//! has an `x_file` twin so systemd credentials (`LoadCredential=`) work.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod load;
pub mod validate;

pub(crate) use load::expand_credentials_dir;
pub use load::{ConfigError, Problem, Secrets, read_secret_file};

/// The listen address and database path of the embedded default (DESIGN.md).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DB_PATH: &str = "gatehouse-data/gatehouse.db";
/// GitHub caps webhook payloads at 25 MB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 25 * 1024 * 1024;
/// Far above anything GitHub sends; a guard against a typo that would let a
/// sender make us buffer gigabytes.
pub(crate) const MAX_MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub webhooks: WebhooksConfig,
    pub log: LogConfig,
    pub processing: ProcessingConfig,
    pub routes: Vec<RouteConfig>,
    pub github: GithubConfig,
    /// The API gateway; absent = no gateway listener.
    pub gateway: Option<GatewayConfig>,
    pub actions_metrics: ActionsMetricsConfig,
    pub recovery: RecoveryConfig,
    pub admin: AdminConfig,
}

/// The admin UI under `/admin/`. Its password is an argon2 hash (PHC string,
/// as `gatehouse admin set-password` writes): `password_hash`, or
/// `password_hash_file`, or else `admin-password.hash` beside the journal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub enabled: bool,
    /// A listener of its own for the admin UI and `/metrics` (health is
    /// served there too); absent = they share `[server] listen`.
    pub listen: Option<SocketAddr>,
    pub password_hash: Option<String>,
    pub password_hash_file: Option<PathBuf>,
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: u64,
    /// Failed logins allowed per client address per minute; more wait.
    pub login_attempts_per_minute: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: None,
            password_hash: None,
            password_hash_file: None,
            session_idle_minutes: 720,
            login_attempts_per_minute: 5,
        }
    }
}

impl AdminConfig {
    /// Where `admin set-password` writes and, with no hash configured, where
    /// the server looks: the configured file, else beside the journal.
    pub fn hash_path(&self, db_path: &Path) -> PathBuf {
        self.password_hash_file
            .as_deref()
            .map(expand_credentials_dir)
            .unwrap_or_else(|| {
                db_path
                    .parent()
                    .unwrap_or_else(|| Path::new("."))
                    .join("admin-password.hash")
            })
    }
}

/// Recovery of deliveries GitHub failed to make (it does not retry them):
/// each App's webhook and each `[[github.hooks]]` entry is walked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    pub enabled: bool,
    /// A walk at start and then every this many seconds.
    pub interval_secs: u64,
    /// How far back a first walk looks (GitHub keeps delivery logs for 3
    /// days, 7 on GHES).
    pub lookback_hours: u64,
    /// Deliveries per page of GitHub's delivery log (at most 100).
    pub per_page: u32,
    /// A GUID gatehouse asked to redeliver is not asked for again within
    /// this many seconds (its redelivery may be on its way, or failing too).
    pub reask_after_secs: u64,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            enabled: true,
            interval_secs: 300,
            lookback_hours: 72,
            per_page: 100,
            reask_after_secs: 3600,
        }
    }
}

/// The built-in `actions-metrics` sink: GitHub Actions metrics derived from
/// `workflow_run` and `workflow_job` deliveries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsMetricsConfig {
    pub enabled: bool,
    /// A job or run unfinished for longer than this stops counting as
    /// queued or in progress and is counted as stale instead (its final
    /// delivery was probably lost).
    pub stale_after_secs: u64,
    /// Repository globs (`octo-org/*`) that get their own label; others
    /// are counted as `other`. Empty = every repository.
    pub allow_repositories: Vec<String>,
    /// Repository globs left out of the metrics altogether.
    pub deny_repositories: Vec<String>,
    /// At most this many repositories get their own label (the longest
    /// known first); the rest are counted as `other`.
    pub max_repositories: usize,
    /// Per repository, at most this many workflow names keep theirs; a
    /// pull request can add a workflow with any name.
    pub max_workflows: usize,
    /// Per workflow, at most this many job names keep theirs (names come
    /// from expressions: `build ${{ github.sha }}` makes one per commit).
    pub max_job_names: usize,
    /// Per workflow, at most this many runner label sets (`runs-on`) keep
    /// theirs.
    pub max_runner_label_sets: usize,
    /// Branch globs that keep their name in `head_branch`; other branches
    /// (pull request branches, say) are counted as `other`.
    pub head_branches: Vec<String>,
}

impl Default for ActionsMetricsConfig {
    fn default() -> Self {
        ActionsMetricsConfig {
            enabled: true,
            stale_after_secs: 24 * 3600,
            allow_repositories: Vec::new(),
            deny_repositories: Vec::new(),
            max_repositories: 200,
            max_workflows: 50,
            max_job_names: 100,
            max_runner_label_sets: 20,
            head_branches: vec!["main".into(), "master".into()],
        }
    }
}

/// The GitHub API gateway: its listener, how it routes requests that name
/// no owner, and its response cache.
#[derive(Debug, Clone, Deserialize)]
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
}

/// Serve answers for paths matching `path` (a regex on the path and query)
/// for `secs` after they were fetched or revalidated, without asking
/// GitHub. Off unless configured: a change on GitHub shows up late.
#[derive(Debug, Clone, Deserialize)]
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
        }
    }
}

impl Config {
    /// Where the gateway's cache lives.
    pub fn gateway_cache_path(&self) -> Option<PathBuf> {
        let g = self.gateway.as_ref()?;
        if !g.cache_path.as_os_str().is_empty() {
            return Some(g.cache_path.clone());
        }
        Some(
            self.storage
                .path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("gateway-cache.db"),
        )
    }
}

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAppConfig {
    pub id: i64,
    /// PEM, PKCS#1 or PKCS#8 (or `private_key_file`).
    #[serde(default)]
    pub private_key: Option<Secret>,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
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
    /// The operator declares that this token can reach nothing beyond
    /// `owners` (a fine-grained token whose resource owner is that
    /// organisation): only such tokens, and App installations, serve
    /// gateway clients limited with `--owner`.
    #[serde(default)]
    pub confined: bool,
}

/// The scheduler: how many partitions are worked on at once, how long a
/// lease lasts without renewal, and how many jobs one lease takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingConfig {
    pub workers: usize,
    pub lease_secs: u64,
    pub batch_size: usize,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            workers: 16,
            lease_secs: 30,
            batch_size: 50,
        }
    }
}

/// Whether a failing job holds up the rest of its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// A failing head blocks its partition until it succeeds or dies.
    #[default]
    Strict,
    /// Failed jobs step aside; later ones go ahead.
    None,
}

/// A forward sink: one internal consumer that receives matching deliveries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub name: String,
    pub url: String,
    /// Event names; empty = all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Payload actions; empty = all.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Repository full names, `*` matching any run of characters
    /// (`"octo-org/*"`); empty = all.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Re-sign `X-Hub-Signature-256` with this; absent = pass GitHub's through.
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default = "default_route_timeout")]
    pub timeout_secs: u64,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub ordering: Ordering,
}

fn default_route_timeout() -> u64 {
    10
}

fn default_max_attempts() -> u32 {
    12
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Open connections beyond this wait in the kernel's backlog, so memory
    /// stays bounded under a flood.
    pub max_connections: usize,
    /// A client that has not sent its request headers by then is cut off.
    pub header_timeout_secs: u64,
    /// A request body that has not fully arrived by then gets 408.
    pub body_timeout_secs: u64,
    /// On SIGTERM, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// Connections served at once for one client address (an IPv6 /64);
    /// past it they wait for one of that address's own, as many again may
    /// wait, and the rest are closed at once, so one address cannot take
    /// every slot. Absent = a quarter of `max_connections`; 0 = no cap.
    /// Behind a reverse proxy on this host every connection comes from its
    /// address.
    pub max_connections_per_address: Option<usize>,
    /// A body must average at least this many bytes per second after its
    /// first 5 s, or gets 408; 0 = only `body_timeout_secs` applies.
    pub min_body_bytes_per_sec: u64,
    /// Request bodies held in memory at once, across all connections
    /// (webhooks and the gateway); past it a request gets 503 with
    /// Retry-After before its body is read. Absent = sized for the machine.
    pub body_budget_bytes: Option<u64>,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/1 keep-alive and HTTP/2 alike).
    pub idle_timeout_secs: u64,
    /// Requests one HTTP/2 connection may have open at once.
    pub h2_max_concurrent_streams: u32,
}

/// The default body budget: a quarter of the memory this process may
/// use (the cgroup's limit, else the machine's), between 64 MiB and
/// 512 MiB.
fn machine_body_budget() -> u64 {
    const MIB: u64 = 1024 * 1024;
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    });
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let memory = [meminfo, cgroup].into_iter().flatten().min();
    memory.map_or(512 * MIB, |m| (m / 4).clamp(64 * MIB, 512 * MIB))
}

impl ServerConfig {
    /// Connections served at once per client address (0 = no cap).
    pub fn per_address(&self) -> usize {
        self.max_connections_per_address
            .unwrap_or((self.max_connections / 4).max(1))
    }

    /// The budget for request bodies in memory at once.
    pub fn body_budget(&self) -> u64 {
        self.body_budget_bytes.unwrap_or_else(machine_body_budget)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// Deliveries older than this are pruned; 0 keeps everything.
    pub retention_days: u32,
    /// A write-ahead log past this is checkpointed by the writer, and its
    /// file cut back to this size once no reader needs its older frames.
    pub wal_limit_bytes: u64,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    pub secrets: Vec<Secret>,
    pub secret_files: Vec<PathBuf>,
    pub max_body_bytes: u64,
    pub partition_by: PartitionBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PartitionBy {
    #[default]
    Owner,
    Repository,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `gatehouse=debug`; `RUST_LOG` wins.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A secret value: its Debug form never shows the value, so a config dump in
/// a log cannot leak it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Debug for WebhooksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhooksConfig")
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .field("secret_files", &self.secret_files)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("partition_by", &self.partition_by)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            max_connections: 1024,
            header_timeout_secs: 10,
            body_timeout_secs: 60,
            shutdown_grace_secs: 20,
            max_connections_per_address: None,
            min_body_bytes_per_sec: 1024,
            body_budget_bytes: None,
            idle_timeout_secs: 60,
            h2_max_concurrent_streams: 16,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from(DEFAULT_DB_PATH),
            retention_days: 30,
            wal_limit_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            secrets: Vec::new(),
            secret_files: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            partition_by: PartitionBy::Owner,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}
