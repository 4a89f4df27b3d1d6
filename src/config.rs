//! Configuration: one TOML file, one struct tree, defaults in one place.
//!
//! Unknown keys and bad values are errors that name the key and the line, so
//! an operator can fix a file without reading our source. Every secret `x`
//! has an `x_file` twin so systemd credentials (`LoadCredential=`) work.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The listen address and database path of the embedded default (DESIGN.md).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DB_PATH: &str = "gatehouse-data/gatehouse.db";
/// GitHub caps webhook payloads at 25 MB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 25 * 1024 * 1024;
/// Far above anything GitHub sends; a guard against a typo that would let a
/// sender make us buffer gigabytes.
const MAX_MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;

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

/// What is wrong with a config file, with the key and line when known.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}{}: {key}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        file: String,
        line: Option<usize>,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads, parses and validates a config file, and reads every `*_file`
    /// secret it names. Secrets from files end up in `webhooks.secrets`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses config text; `file` names it in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            let key = line
                .and_then(|l| key_at_line(text, l))
                .unwrap_or_else(|| "(file)".to_string());
            ConfigError::Invalid {
                file: file.to_string(),
                line,
                key,
                message: e.message().trim().to_string(),
            }
        })?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                file: file.to_string(),
                line: line_of_key(text, key),
                key: key.to_string(),
                message,
            })?;
        config
            .read_secret_files()
            .map_err(|(key, message)| ConfigError::Invalid {
                file: file.to_string(),
                // A route's secret file sits in its [[routes]] table.
                line: line_of_key(
                    text,
                    if key.starts_with("routes") {
                        "routes.secret_file"
                    } else {
                        "webhooks.secret_files"
                    },
                ),
                key,
                message,
            })?;
        if config.webhooks.secrets.is_empty() {
            return Err(ConfigError::Invalid {
                file: file.to_string(),
                line: line_of_key(text, "webhooks"),
                key: "webhooks.secrets".to_string(),
                message: "at least one webhook secret is required (secrets or secret_files); \
                          GitHub signs every delivery with it"
                    .to_string(),
            });
        }
        Ok(config)
    }

    /// Checks values that serde's types alone do not rule out. Returns the
    /// dotted key and what is wrong with it.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.server.max_connections == 0 {
            return Err(("server.max_connections", "must be at least 1".into()));
        }
        for (key, secs) in [
            (
                "server.header_timeout_secs",
                self.server.header_timeout_secs,
            ),
            ("server.body_timeout_secs", self.server.body_timeout_secs),
        ] {
            if secs == 0 {
                return Err((key, "must be at least 1 second".into()));
            }
        }
        if self.server.idle_timeout_secs == 0 || self.server.h2_max_concurrent_streams == 0 {
            return Err((
                "server",
                "idle_timeout_secs and h2_max_concurrent_streams must be at least 1".into(),
            ));
        }
        let largest_body = self
            .gateway
            .as_ref()
            .map_or(0, |g| g.max_body_bytes)
            .max(self.webhooks.max_body_bytes);
        if let Some(budget) = self.server.body_budget_bytes
            && budget < largest_body
        {
            return Err((
                "server.body_budget_bytes",
                format!(
                    "{budget} is below the largest body allowed ({largest_body}, max_body_bytes): such a body could never be read"
                ),
            ));
        }
        if self.storage.path.as_os_str().is_empty() {
            return Err(("storage.path", "must not be empty".into()));
        }
        if self.webhooks.max_body_bytes == 0 || self.webhooks.max_body_bytes > MAX_MAX_BODY_BYTES {
            return Err((
                "webhooks.max_body_bytes",
                format!("must be between 1 and {MAX_MAX_BODY_BYTES}"),
            ));
        }
        if self.webhooks.secrets.iter().any(|s| s.0.is_empty()) {
            return Err(("webhooks.secrets", "a secret must not be empty".into()));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(("log.level", format!("not a valid filter: {e}")));
        }
        let p = &self.processing;
        if p.workers == 0 || p.lease_secs == 0 || p.batch_size == 0 {
            return Err((
                "processing",
                "workers, lease_secs and batch_size must be at least 1".into(),
            ));
        }
        if let Some(g) = &self.gateway {
            if self.github.apps.is_empty() && self.github.tokens.is_empty() {
                return Err((
                    "gateway",
                    "the gateway needs credentials to spend: add [[github.apps]] or [[github.tokens]]"
                        .into(),
                ));
            }
            if g.max_body_bytes == 0 || g.max_body_bytes > MAX_MAX_BODY_BYTES {
                return Err((
                    "gateway.max_body_bytes",
                    format!("must be between 1 and {MAX_MAX_BODY_BYTES}"),
                ));
            }
            if !g.public_url.is_empty()
                && (!(g.public_url.starts_with("http://") || g.public_url.starts_with("https://"))
                    || g.public_url.parse::<http::Uri>().is_err())
            {
                return Err((
                    "gateway.public_url",
                    format!("{:?} is not an http(s) URL", g.public_url),
                ));
            }
            for f in &g.fresh {
                if let Err(e) = regex::Regex::new(&f.path) {
                    return Err(("gateway.fresh.path", format!("{:?}: {e}", f.path)));
                }
            }
        }
        for t in &self.github.tokens {
            if t.confined && t.owners.is_empty() {
                return Err((
                    "github.tokens.confined",
                    format!(
                        "token {:?}: confined = true needs the owners it is confined to",
                        t.name
                    ),
                ));
            }
        }
        let r = &self.recovery;
        if r.interval_secs == 0 || r.lookback_hours == 0 || r.reask_after_secs == 0 {
            return Err((
                "recovery",
                "interval_secs, lookback_hours and reask_after_secs must be at least 1".into(),
            ));
        }
        if !(1..=100).contains(&r.per_page) {
            return Err(("recovery.per_page", "must be between 1 and 100".into()));
        }
        if self.github.timeout_secs == 0 {
            return Err(("github.timeout_secs", "must be at least 1".into()));
        }
        let admin = &self.admin;
        if admin.session_idle_minutes == 0 || admin.login_attempts_per_minute == 0 {
            return Err((
                "admin",
                "session_idle_minutes and login_attempts_per_minute must be at least 1".into(),
            ));
        }
        if admin.password_hash.is_some() && admin.password_hash_file.is_some() {
            return Err((
                "admin.password_hash",
                "set password_hash or password_hash_file, not both".into(),
            ));
        }
        if let Some(h) = &admin.password_hash
            && let Err(e) = argon2::password_hash::phc::PasswordHash::new(h)
        {
            return Err((
                "admin.password_hash",
                format!(
                    "not a password hash (PHC string, as `gatehouse admin set-password` writes): {e}"
                ),
            ));
        }
        let a = &self.actions_metrics;
        if a.stale_after_secs < 60 {
            return Err((
                "actions_metrics.stale_after_secs",
                "must be at least 60".into(),
            ));
        }
        for (key, n) in [
            ("actions_metrics.max_repositories", a.max_repositories),
            ("actions_metrics.max_workflows", a.max_workflows),
            ("actions_metrics.max_job_names", a.max_job_names),
            (
                "actions_metrics.max_runner_label_sets",
                a.max_runner_label_sets,
            ),
        ] {
            if n == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.routes {
            if r.name.is_empty()
                || !r
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err((
                    "routes.name",
                    format!("{:?}: use letters, digits, - and _", r.name),
                ));
            }
            if r.name == crate::sinks::actions::SINK {
                return Err((
                    "routes.name",
                    format!("{:?} is the built-in Actions metrics sink's name", r.name),
                ));
            }
            if !names.insert(r.name.as_str()) {
                return Err(("routes.name", format!("{:?} is used twice", r.name)));
            }
            if !(r.url.starts_with("http://") || r.url.starts_with("https://"))
                || r.url.parse::<http::Uri>().is_err()
            {
                return Err((
                    "routes.url",
                    format!("route {:?}: {:?} is not an http(s) URL", r.name, r.url),
                ));
            }
            if r.max_attempts == 0 || r.timeout_secs == 0 {
                return Err((
                    "routes.max_attempts",
                    format!(
                        "route {:?}: max_attempts and timeout_secs must be at least 1",
                        r.name
                    ),
                ));
            }
        }
        Ok(())
    }

    fn read_secret_files(&mut self) -> Result<(), (String, String)> {
        for (i, path) in self.webhooks.secret_files.iter().enumerate() {
            let key = format!("webhooks.secret_files[{i}]");
            let secret = read_secret_file(path).map_err(|m| (key, m))?;
            self.webhooks.secrets.push(secret);
        }
        for (i, app) in self.github.apps.iter_mut().enumerate() {
            if let Some(path) = &app.private_key_file {
                let key = format!("github.apps[{i}].private_key_file");
                app.private_key = Some(read_secret_file(path).map_err(|m| (key, m))?);
            }
            let key = app.private_key.as_ref().ok_or_else(|| {
                (
                    format!("github.apps[{i}]"),
                    format!("app {}: needs private_key or private_key_file", app.id),
                )
            })?;
            jsonwebtoken::EncodingKey::from_rsa_pem(key.expose()).map_err(|e| {
                (
                    format!("github.apps[{i}].private_key_file"),
                    format!(
                        "app {}: not an RSA private key in PEM (PKCS#1 or PKCS#8): {e}",
                        app.id
                    ),
                )
            })?;
        }
        for (i, t) in self.github.tokens.iter_mut().enumerate() {
            if let Some(path) = &t.token_file {
                let key = format!("github.tokens[{i}].token_file");
                t.token = Some(read_secret_file(path).map_err(|m| (key, m))?);
            }
            if t.token.is_none() {
                return Err((
                    format!("github.tokens[{i}]"),
                    format!("token {:?}: needs token or token_file", t.name),
                ));
            }
        }
        for (i, route) in self.routes.iter_mut().enumerate() {
            if let Some(path) = &route.secret_file {
                let key = format!("routes[{i}].secret_file");
                route.secret = Some(read_secret_file(path).map_err(|m| (key, m))?);
            }
        }
        Ok(())
    }
}

/// Reads one secret from a file (a systemd credential, say). Paths may start
/// with `$CREDENTIALS_DIRECTORY/`, which systemd sets for `LoadCredential=`.
/// A trailing newline is not part of the secret.
pub fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let path = expand_credentials_dir(path);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(format!("secret file {} is empty", path.display()));
    }
    Ok(Secret(value.to_string()))
}

pub(crate) fn expand_credentials_dir(path: &Path) -> PathBuf {
    const PREFIX: &str = "$CREDENTIALS_DIRECTORY/";
    match path.to_str().and_then(|p| p.strip_prefix(PREFIX)) {
        Some(rest) => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => PathBuf::from(dir).join(rest),
            None => path.to_path_buf(),
        },
        None => path.to_path_buf(),
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key on a given 1-based line: the enclosing `[table]` plus the
/// key before `=`, or the table itself on a header line.
fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(header) = table_header(l) {
            table = header;
            if i + 1 == line {
                return Some(table);
            }
        } else if i + 1 == line {
            let key = l.split('=').next()?.trim().trim_matches('"');
            return Some(if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    None
}

/// The line where a dotted key (`table.key`, or a bare table) is written.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (want_table, want_key) = match dotted.rsplit_once('.') {
        Some((t, k)) => (t, Some(k)),
        None => (dotted, None),
    };
    let mut table = String::new();
    let mut table_line = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(header) = table_header(l) {
            table = header;
            if table == dotted {
                return Some(i + 1);
            }
            if table == want_table {
                table_line = Some(i + 1);
            }
        } else if table == want_table
            && let Some(k) = want_key
            && l.split('=').next().map(|s| s.trim().trim_matches('"')) == Some(k)
            && l.contains('=')
        {
            return Some(i + 1);
        }
    }
    table_line
}

fn table_header(line: &str) -> Option<String> {
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    Some(inner[..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "t.toml").unwrap_err().to_string()
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = err(
            "[webhooks]\nsecrets = [\"x\"]\n\n[server]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n",
        );
        assert!(e.starts_with("t.toml:6: server.listne:"), "{e}");
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn unknown_table_is_an_error() {
        let e = err("[webhooks]\nsecrets = [\"x\"]\n[sever]\nlisten = 1\n");
        assert!(e.contains("unknown field `sever`"), "{e}");
    }

    #[test]
    fn bad_listen_address_names_key() {
        let e = err("[server]\nlisten = \"localhost\"\n[webhooks]\nsecrets=[\"x\"]\n");
        assert!(e.starts_with("t.toml:2: server.listen:"), "{e}");
    }

    #[test]
    fn bad_partition_by_names_key() {
        let e = err("[webhooks]\nsecrets = [\"x\"]\npartition_by = \"org\"\n");
        assert!(e.starts_with("t.toml:3: webhooks.partition_by:"), "{e}");
    }

    #[test]
    fn zero_max_body_is_rejected_with_line() {
        let e = err("[webhooks]\nsecrets = [\"x\"]\nmax_body_bytes = 0\n");
        assert!(
            e.starts_with("t.toml:3: webhooks.max_body_bytes: must be"),
            "{e}"
        );
    }

    #[test]
    fn negative_max_body_is_rejected() {
        let e = err("[webhooks]\nsecrets = [\"x\"]\nmax_body_bytes = -5\n");
        assert!(e.starts_with("t.toml:3: webhooks.max_body_bytes:"), "{e}");
    }

    #[test]
    fn no_secret_is_an_error() {
        let e = err("[webhooks]\nmax_body_bytes = 10\n");
        assert!(
            e.contains("webhooks.secrets: at least one webhook secret"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_secret_file_names_path_not_content() {
        let e = err("[webhooks]\nsecret_files = [\"/nonexistent/gh-secret\"]\n");
        assert!(
            e.starts_with(
                "t.toml:2: webhooks.secret_files[0]: cannot read secret file /nonexistent/gh-secret"
            ),
            "{e}"
        );
    }

    #[test]
    fn secret_file_trailing_newline_is_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "abc\n").unwrap();
        let c = Config::parse(
            &format!(
                "[webhooks]\nsecret_files = [{:?}]\n",
                p.display().to_string()
            ),
            "t",
        )
        .unwrap();
        assert_eq!(c.webhooks.secrets, vec![Secret::new("abc")]);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = Config::parse("[webhooks]\nsecrets = [\"hunter2-very-secret\"]\n", "t").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn actions_metrics_is_on_by_default_and_validated() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n";
        let c = Config::parse(base, "t").unwrap();
        assert!(c.actions_metrics.enabled);
        assert_eq!(c.actions_metrics.stale_after_secs, 86_400);
        let e = err(&format!("{base}[actions_metrics]\nstale_after_secs = 5\n"));
        assert!(e.contains("actions_metrics.stale_after_secs"), "{e}");
        let e = err(&format!("{base}[actions_metrics]\nmax_repositories = 0\n"));
        assert!(e.contains("actions_metrics.max_repositories"), "{e}");
        let e = err(&format!("{base}[actions_metrics]\nrepos = []\n"));
        assert!(e.contains("repos"), "{e}");
        let e = err(&format!(
            "{base}[[routes]]\nname = \"actions-metrics\"\nurl = \"http://x\"\n"
        ));
        assert!(e.contains("built-in Actions metrics sink"), "{e}");
        let off = Config::parse(&format!("{base}[actions_metrics]\nenabled = false\n"), "t");
        assert!(!off.unwrap().actions_metrics.enabled);
    }

    #[test]
    fn recovery_defaults_and_hooks() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n";
        let c = Config::parse(base, "t").unwrap();
        assert!(c.recovery.enabled);
        assert_eq!(
            (c.recovery.interval_secs, c.recovery.lookback_hours),
            (300, 72)
        );
        let e = err(&format!("{base}[recovery]\nper_page = 500\n"));
        assert!(e.contains("recovery.per_page"), "{e}");
        let e = err(&format!("{base}[recovery]\ninterval_secs = 0\n"));
        assert!(e.contains("recovery"), "{e}");
        let c = Config::parse(
            &format!(
                "{base}[[github.hooks]]\nowner = \"octo-org\"\nrepo = \"widgets\"\nid = 7\n[[github.hooks]]\nowner = \"octo-org\"\nid = 8\n"
            ),
            "t",
        )
        .unwrap();
        assert_eq!(c.github.hooks.len(), 2);
        assert_eq!(c.github.hooks[1].repo, None);
        let e = err(&format!("{base}[[github.hooks]]\nowner = \"o\"\n"));
        assert!(e.contains("id"), "{e}");
    }

    #[test]
    fn routes_are_validated() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n";
        let e = err(&format!(
            "{base}[[routes]]\nname = \"a\"\nurl = \"ftp://x\"\n"
        ));
        assert!(
            e.contains("routes.url") && e.contains("not an http(s) URL"),
            "{e}"
        );
        let e = err(&format!(
            "{base}[[routes]]\nname = \"a\"\nurl = \"http://x\"\n[[routes]]\nname = \"a\"\nurl = \"http://y\"\n"
        ));
        assert!(e.contains("\"a\" is used twice"), "{e}");
        let e = err(&format!(
            "{base}[[routes]]\nname = \"a\"\nurl = \"http://x\"\nordering = \"fifo\"\n"
        ));
        assert!(e.starts_with("t.toml:6: routes.ordering:"), "{e}");
        let e = err(&format!(
            "{base}\n[[routes]]\nname = \"a\"\nurl = \"http://x\"\nsecret_file = \"/nonexistent/r\"\n"
        ));
        assert!(
            e.starts_with("t.toml:7: routes[0].secret_file: cannot read secret file"),
            "{e}"
        );
        let ok = Config::parse(
            &format!("{base}[[routes]]\nname = \"ci-1\"\nurl = \"https://ci.internal/hook\"\n"),
            "t",
        )
        .unwrap();
        assert_eq!(ok.routes[0].max_attempts, 12);
        assert_eq!(ok.routes[0].ordering, Ordering::Strict);
    }

    #[test]
    fn github_credentials_are_read_and_checked() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n";
        let e = err(&format!(
            "{base}[[github.apps]]\nid = 1\nprivate_key_file = \"/nonexistent/k.pem\"\n"
        ));
        assert!(
            e.contains(
                "github.apps[0].private_key_file: cannot read secret file /nonexistent/k.pem"
            ),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a key").unwrap();
        let e = err(&format!(
            "{base}[[github.apps]]\nid = 1\nprivate_key_file = {:?}\n",
            bad.display().to_string()
        ));
        assert!(e.contains("not an RSA private key"), "{e}");
        assert!(
            !e.contains("not a key"),
            "the key's content is never echoed: {e}"
        );
        let e = err(&format!("{base}[[github.tokens]]\nname = \"bot\"\n"));
        assert!(
            e.contains("github.tokens[0]: token \"bot\": needs token or token_file"),
            "{e}"
        );
        let good = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fakehub/testdata/app-a.pkcs1.pem"
        );
        let c = Config::parse(&format!("{base}[github]\napi_url = \"https://ghe.example/api/v3\"\n[[github.apps]]\nid = 7\nprivate_key_file = {good:?}\n"), "t").unwrap();
        assert_eq!(c.github.apps[0].id, 7);
        assert!(
            !format!("{c:?}").contains("PRIVATE KEY"),
            "Debug hides the key"
        );
    }

    #[test]
    fn gateway_is_checked() {
        let base = "[webhooks]\nsecrets = [\"x\"]\n";
        let e = err(&format!("{base}[gateway]\nlisten = \"127.0.0.1:0\"\n"));
        assert!(e.contains("gateway: the gateway needs credentials"), "{e}");
        let creds = "[[github.tokens]]\nname = \"bot\"\ntoken = \"t\"\n";
        let e = err(&format!(
            "{base}{creds}[gateway]\n[[gateway.fresh]]\npath = \"(\"\nsecs = 5\n"
        ));
        assert!(e.contains("gateway.fresh.path"), "{e}");
        let e = err(&format!(
            "{base}{creds}[gateway]\npublic_url = \"ftp://x\"\n"
        ));
        assert!(e.contains("gateway.public_url"), "{e}");
        let c = Config::parse(
            &format!("{base}[storage]\npath = \"/d/g.db\"\n{creds}[gateway]\n"),
            "t",
        )
        .unwrap();
        let g = c.gateway.as_ref().unwrap();
        assert_eq!(g.listen.to_string(), "127.0.0.1:8081");
        assert!(g.fresh.is_empty(), "no fresh window unless configured");
        assert_eq!(
            c.gateway_cache_path().unwrap(),
            PathBuf::from("/d/gateway-cache.db")
        );
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::parse("[webhooks]\nsecrets = [\"x\"]\n", "t").unwrap();
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.webhooks.max_body_bytes, 26_214_400);
        assert_eq!(c.webhooks.partition_by, PartitionBy::Owner);
    }
}
