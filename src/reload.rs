//! Reload without restart (`systemctl reload gatehouse`: SIGHUP, and
//! `gatehouse reload`): the config file and every secret file it names are
//! read again and checked whole first (the config, the App keys, the
//! clients file); a bad one keeps the running config, and says why in the
//! log, `gatehouse_config_reload_ok` and `gatehouse status`. A good one
//! applies, without dropping a request in flight:
//! - webhook secrets (list the old and the new while GitHub's side
//!   changes: both are accepted);
//! - routes: added, changed (the next job uses the new URL, secret, retry
//!   schedule...), removed (their pending jobs and dead letters are kept,
//!   reported, and wait for the route to return or `gatehouse routes drop`);
//! - GitHub App keys and tokens (rotation: the next request signs or sends
//!   with the new one);
//! - the gateway's clients file;
//! - the open problems' thresholds.
//!
//! What needs a restart (listen addresses, storage, the processing pool,
//! the set of credentials, notification receivers, ...) is named as such
//! and left as it is.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::config::{Config, ProblemsConfig, Secret};
use crate::live::Live;
use crate::scheduler::sink::Sink;
use crate::sinks::Catalog;
use crate::store::Store;

/// The parts of the config the running server reads live.
#[derive(Clone)]
pub struct LiveConfig {
    pub secrets: Live<Vec<Secret>>,
    pub catalog: Live<Catalog>,
    /// Configured routes and built-in sinks, by name.
    pub names: Live<Vec<String>>,
    pub thresholds: Live<ProblemsConfig>,
}

impl LiveConfig {
    pub fn new(config: &Config) -> LiveConfig {
        let catalog = Catalog::new(config);
        LiveConfig {
            secrets: Live::new(config.webhooks.secrets.clone()),
            names: Live::new(catalog.names()),
            catalog: Live::new(catalog),
            thresholds: Live::new(config.problems.clone()),
        }
    }
}

/// What the last reload did, for `gatehouse status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub at_ms: i64,
    /// False: the new config was refused and the old one runs.
    pub ok: bool,
    /// Why it was refused.
    pub error: Option<String>,
    /// What changed and applies now.
    pub applied: Vec<String>,
    /// What changed but applies only after a restart.
    pub restart_needed: Vec<String>,
}

#[derive(Clone, Default)]
pub struct ReloadMetrics {
    pub reloads: Family<ResultLabel, Counter>,
    pub ok: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

impl ReloadMetrics {
    pub fn register(r: &mut Registry) -> ReloadMetrics {
        let me = ReloadMetrics::default();
        me.ok.set(1);
        r.register(
            "config_reloads",
            "Config reloads (SIGHUP, gatehouse reload), by result: applied, refused",
            me.reloads.clone(),
        );
        r.register(
            "config_reload_ok",
            "1 while the config last read is the one running; 0 after a refused reload",
            me.ok.clone(),
        );
        me
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no config file: the embedded default has nothing to read again")]
    NoFile,
    #[error("{0}")]
    Config(String),
    #[error("[github]: {0}")]
    Github(crate::github::PoolError),
    #[error("[gateway] clients_file: {0}")]
    Clients(crate::gateway::registry::RegistryError),
}

pub struct Reloader {
    pub path: Option<PathBuf>,
    pub live: LiveConfig,
    /// The scheduler's sinks, replaced whole.
    pub sinks: crate::scheduler::Sinks,
    pub actions: Option<Arc<crate::sinks::actions::ActionsSink>>,
    pub pool: Option<Arc<crate::github::Pool>>,
    pub journal: Store,
    pub gateway_metrics: crate::gateway::metrics::GatewayMetrics,
    pub metrics: ReloadMetrics,
    /// The config running now (one reload at a time holds it).
    pub current: tokio::sync::Mutex<Config>,
    /// When it was read (ms).
    pub loaded_at_ms: std::sync::atomic::AtomicI64,
    pub last: std::sync::Mutex<Option<ReloadStatus>>,
    /// Told after each reload, so it is reported at once.
    pub reloaded: tokio::sync::Notify,
}

impl Reloader {
    /// When the running config was read.
    pub fn loaded_at_ms(&self) -> i64 {
        self.loaded_at_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn last(&self) -> Option<ReloadStatus> {
        self.last.lock().expect("reload status lock").clone()
    }

    /// Reads, checks and applies the config file; one at a time.
    pub async fn reload(&self) -> ReloadStatus {
        let now = crate::clock::now_ms();
        // The embedded default has no file: nothing is wrong, and nothing
        // to read (said, not counted as a refusal).
        if self.path.is_none() {
            tracing::info!("reload: the embedded default has no config file to read again");
            let status = ReloadStatus {
                at_ms: now,
                ok: true,
                restart_needed: vec![
                    "the embedded default has no config file: run with --config to reload one"
                        .into(),
                ],
                ..ReloadStatus::default()
            };
            *self.last.lock().expect("reload status lock") = Some(status.clone());
            self.reloaded.notify_one();
            return status;
        }
        crate::systemd::notify("RELOADING=1");
        let mut current = self.current.lock().await;
        let status = match self.apply(&current).await {
            Ok((config, status)) => {
                *current = config;
                self.loaded_at_ms
                    .store(now, std::sync::atomic::Ordering::Relaxed);
                status
            }
            Err(e) => ReloadStatus {
                at_ms: now,
                ok: false,
                error: Some(e.to_string()),
                ..ReloadStatus::default()
            },
        };
        drop(current);
        let result = if status.ok { "applied" } else { "refused" };
        self.metrics
            .reloads
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
        self.metrics.ok.set(i64::from(status.ok));
        if status.ok {
            tracing::info!(
                applied = ?status.applied,
                restart_needed = ?status.restart_needed,
                "config reloaded"
            );
            for what in &status.restart_needed {
                tracing::warn!(change = %what, "this change needs a restart; the running value stays");
            }
        } else {
            tracing::error!(
                error = status.error.as_deref().unwrap_or(""),
                "config reload refused; the running config stays"
            );
        }
        *self.last.lock().expect("reload status lock") = Some(status.clone());
        self.reloaded.notify_one();
        crate::systemd::notify("READY=1");
        status
    }

    async fn apply(&self, old: &Config) -> Result<(Config, ReloadStatus), ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoFile)?;
        // Everything is checked before anything changes.
        let new = Config::load(path).map_err(|e| ReloadError::Config(e.to_string()))?;
        let clients_file = new
            .gateway
            .as_ref()
            .map(|g| g.clients_file.clone())
            .filter(|f| !f.as_os_str().is_empty());
        if let Some(f) = &clients_file
            && let Err(e) = crate::gateway::registry::load(f)
        {
            let m = &self.gateway_metrics;
            m.clients_file_loads
                .get_or_create(&crate::gateway::metrics::ResultLabel {
                    result: "refused".into(),
                })
                .inc();
            m.clients_file_ok.set(0);
            return Err(ReloadError::Clients(e));
        }
        let mut status = ReloadStatus {
            at_ms: crate::clock::now_ms(),
            ok: true,
            restart_needed: restart_needed(old, &new),
            ..ReloadStatus::default()
        };
        if let Some(pool) = &self.pool {
            let rotation = pool.rotate(&new.github).map_err(ReloadError::Github)?;
            status.applied.extend(
                rotation
                    .rotated
                    .into_iter()
                    .map(|r| format!("{r}: new key")),
            );
            status.restart_needed.extend(rotation.restart);
        } else if !new.github.apps.is_empty() || !new.github.tokens.is_empty() {
            status
                .restart_needed
                .push("[github] credentials (none ran)".into());
        }

        if new.webhooks.secrets != old.webhooks.secrets {
            self.live.secrets.set(new.webhooks.secrets.clone());
            status
                .applied
                .push(format!("webhook secrets ({})", new.webhooks.secrets.len()));
        }
        status.applied.extend(self.apply_routes(old, &new).await);
        if new.problems != old.problems {
            self.live.thresholds.set(new.problems.clone());
            status.applied.push("[problems] thresholds".into());
        }
        if let Some(f) = &clients_file {
            let a =
                crate::gateway::registry::apply_counted(&self.journal, f, &self.gateway_metrics)
                    .await
                    .map_err(ReloadError::Clients)?;
            let parts: Vec<String> = [
                ("added", &a.added),
                ("changed", &a.changed),
                ("revoked", &a.revoked),
            ]
            .into_iter()
            .filter(|(_, names)| !names.is_empty())
            .map(|(what, names)| format!("{what} {}", names.join(", ")))
            .collect();
            if !parts.is_empty() {
                status
                    .applied
                    .push(format!("clients file: {}", parts.join("; ")));
            }
        }
        Ok((new, status))
    }

    /// Swaps the routes in: unchanged ones keep their sink (and its
    /// breaker and memory), changed and new ones get a new one, removed
    /// ones go, their jobs kept and reported.
    async fn apply_routes(&self, old: &Config, new: &Config) -> Vec<String> {
        let mut said = Vec::new();
        let catalog = Catalog::new(new);
        if old.routes == new.routes {
            return said;
        }
        let running = self.sinks.get();
        let fresh: HashMap<String, Arc<dyn Sink>> = crate::sinks::scheduled_with(
            &new.routes,
            self.actions.clone(),
            new.processing.workers,
            self.pool.clone(),
        )
        .into_iter()
        .map(|(name, sink)| {
            let same = old.routes.iter().find(|r| r.name == name)
                == new.routes.iter().find(|r| r.name == name);
            match running.get(&name) {
                Some(kept) if same => (name, kept.clone()),
                _ => (name, sink),
            }
        })
        .collect();
        for r in &new.routes {
            match old.routes.iter().find(|o| o.name == r.name) {
                None => said.push(format!("route {} added", r.name)),
                Some(o) if o != r => said.push(format!("route {} changed", r.name)),
                _ => {}
            }
        }
        let removed: Vec<String> = old
            .routes
            .iter()
            .filter(|o| !new.routes.iter().any(|r| r.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        self.sinks.set(fresh);
        self.live.names.set(catalog.names());
        self.live.catalog.set(catalog);
        if !removed.is_empty() {
            let kept = self
                .journal
                .orphans(&self.live.names.get())
                .await
                .unwrap_or_default();
            for name in removed {
                let jobs = kept
                    .iter()
                    .find(|o| o.sink == name)
                    .map_or(String::from("no jobs"), |o| {
                        format!("{} pending and {} dead kept", o.pending, o.dead)
                    });
                tracing::warn!(route = %name, jobs, "route removed: its jobs wait for it to return, or for `gatehouse routes drop`");
                said.push(format!("route {name} removed ({jobs})"));
            }
        }
        // New jobs of changed or added routes are picked up at the
        // scheduler's next look; pending ones are due already.
        said
    }
}

/// The settings a running server cannot change, by name, where they
/// differ.
fn restart_needed(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, same: bool| {
        if !same {
            out.push(what.to_string());
        }
    };
    check("[server]", old.server == new.server);
    check("[storage]", old.storage == new.storage);
    check("[processing]", old.processing == new.processing);
    check(
        "[webhooks] partition_by, max_body_bytes",
        old.webhooks.partition_by == new.webhooks.partition_by
            && old.webhooks.max_body_bytes == new.webhooks.max_body_bytes,
    );
    check("[admin]", old.admin == new.admin);
    check("[log]", old.log == new.log);
    let without_file = |g: &Option<crate::config::GatewayConfig>| {
        g.clone().map(|mut g| {
            g.clients_file = PathBuf::new();
            g
        })
    };
    check(
        "[gateway] (other than clients_file)",
        without_file(&old.gateway) == without_file(&new.gateway),
    );
    check("[recovery]", old.recovery == new.recovery);
    check(
        "[actions_metrics]",
        old.actions_metrics == new.actions_metrics,
    );
    check("[[notify]]", old.notify == new.notify);
    out
}
