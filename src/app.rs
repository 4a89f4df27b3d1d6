//! Wires config → journal → tasks → routers, and owns shutdown. Tests call
//! [`start`] on port 0 exactly as `main` does through [`run`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, Secret};
use crate::metrics::Metrics;
use crate::server::activation::{self, Role};
use crate::store::{OpenError, Store, StoreError};
use crate::{clock, ingest, ops, server, shutdown, systemd};

/// How often the journal's file is checked and an unwritable journal
/// probed, so /readyz and the metrics follow by themselves, even with no
/// traffic.
const HEAL_INTERVAL: Duration = Duration::from_secs(1);
const GATEWAY_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Journal(#[from] OpenError),
    #[error("[github]: {0}")]
    Github(crate::github::PoolError),
    #[error("cannot start the scheduler: {0}")]
    Scheduler(StoreError),
    #[error("[gateway] cache: {0}")]
    Cache(#[from] crate::gateway::cache::CacheError),
    #[error("[gateway] {0}")]
    Clients(#[from] crate::gateway::registry::RegistryError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running gatehouse.
pub struct App {
    addr: SocketAddr,
    gateway_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    pool: Option<Arc<crate::github::Pool>>,
    stop: watch::Sender<bool>,
    stopping: Arc<AtomicBool>,
    done: JoinHandle<()>,
    journal: Store,
    attempt_minutes: Arc<crate::scheduler::samples::AttemptMinutes>,
    clock: Arc<dyn clock::Clock>,
}

impl App {
    /// Takes the once-a-minute sample now (sinks' backlog, attempts per
    /// minute): a step a test can run and then assert on.
    pub async fn sample_now(&self) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        crate::scheduler::samples::sample(&self.journal, &self.attempt_minutes, now).await
    }

    /// The address the webhook/admin listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin UI's own listener, when `[admin] listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The API gateway's listener, when `[gateway]` is configured.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.gateway_addr
    }

    pub fn journal(&self) -> &Store {
        &self.journal
    }

    /// The GitHub credential pool, when `[github]` names credentials.
    pub fn github_pool(&self) -> Option<&Arc<crate::github::Pool>> {
        self.pool.as_ref()
    }

    /// Begins a graceful shutdown: stop accepting, finish in-flight
    /// requests, commit what is pending.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
    }

    /// Waits until everything has stopped and the journal is closed.
    pub async fn stopped(self) {
        let _ = self.done.await;
    }
}

pub async fn start(config: Config) -> Result<App, StartError> {
    start_on(config, clock::system()).await
}

/// [`start`], every part reading time on `clock` (leases, backoff,
/// pauses, retention, sessions, throttles, budgets): a test's to move.
pub async fn start_on(config: Config, clock: Arc<dyn clock::Clock>) -> Result<App, StartError> {
    let metrics = Metrics::new();
    let location = config.storage.location();
    let journal_metrics = metrics.journal.clone();
    let options = crate::store::Options {
        wal_limit_bytes: config.storage.wal_limit_bytes,
    };
    let journal = tokio::task::spawn_blocking(move || {
        crate::store::open(&location, journal_metrics, options)
    })
    .await
    .expect("journal open task")?;

    // This process among the replicas: in leases, duties and heartbeats.
    let replica: Arc<str> = crate::scheduler::in_flight::worker_name(clock.now_ms()).into();
    let duty = |name, ttl| {
        crate::duties::Duty::new(
            journal.clone(),
            name,
            replica.clone(),
            ttl,
            clock.clone(),
            metrics.journal.clone(),
        )
    };

    let addr = config.server.listen;
    let (listener, webhooks_passed) = activation::listen(Role::Webhooks, addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let addr = listener.local_addr().expect("bound socket has an address");

    let pool = if config.github.apps.is_empty() && config.github.tokens.is_empty() {
        None
    } else {
        Some(Arc::new({
            let pool = crate::github::Pool::new(&config.github)
                .map_err(StartError::Github)?
                .with_metrics(metrics.github.clone())
                .with_clock(clock.clone());
            // One request per credential across replicas, not per one.
            if journal.is_shared() {
                pool.with_shared_lanes(journal.clone(), replica.clone())
            } else {
                pool
            }
        }))
    };
    let actions = if config.actions_metrics.enabled {
        let sink = crate::sinks::actions::ActionsSink::load(&journal, &config.actions_metrics)
            .await
            .map_err(StartError::Scheduler)?;
        Some(Arc::new(sink))
    } else {
        None
    };
    let sources = crate::recovery::Source::all(&config);
    for (source, why) in crate::recovery::Source::skipped(&config) {
        tracing::info!(source, "recovery does not walk {source}: {why}");
    }
    let recovery = pool
        .as_ref()
        .filter(|_| config.recovery.enabled && !sources.is_empty())
        .map(|pool| crate::recovery::Recovery {
            journal: journal.clone(),
            pool: pool.clone(),
            config: config.recovery.clone(),
            metrics: metrics.recovery.clone(),
            sources,
            duty: duty("recovery", Duration::from_secs(600)),
            window_hours: Default::default(),
        });
    // The open problems, read by the overview, /metrics and the reporter.
    let live = crate::reload::LiveConfig::new(&config);
    let watch = Arc::new(crate::problems::Watch {
        sinks: live.names.clone(),
        thresholds: live.thresholds.clone(),
        ..crate::problems::Watch::new(&config, journal.clone(), pool.clone(), clock.clone())
    });
    let stopping = Arc::new(AtomicBool::new(false));
    let (stop, stop_rx) = watch::channel(false);
    // One budget for every request body in memory, webhooks and gateway.
    let budget = server::body::Budget::new(config.server.body_budget());
    let body_limits = |max_bytes| server::body::Limits {
        max_bytes,
        budget: budget.clone(),
        deadline: Duration::from_secs(config.server.body_timeout_secs),
        min_rate: config.server.min_body_bytes_per_sec,
    };
    let rejections = Arc::new(ingest::rejections::Rejections::default());
    let in_flight = crate::scheduler::in_flight::InFlight::new();
    let attempt_minutes = crate::scheduler::samples::AttemptMinutes::new();
    let ingest = ingest::router(ingest::IngestState {
        journal: journal.clone(),
        secrets: live.secrets.clone(),
        partition_by: config.webhooks.partition_by,
        body: body_limits(config.webhooks.max_body_bytes),
        metrics: metrics.ingest.clone(),
        sinks: live.catalog.clone(),
        pool: pool.clone(),
        rejections: rejections.clone(),
    });
    let ops = ops::OpsState {
        journal: journal.clone(),
        metrics: metrics.clone(),
        stopping: stopping.clone(),
        pool: pool.clone(),
        actions: actions.clone(),
        recovery: recovery.is_some(),
        watch: watch.clone(),
        bodies: budget.clone(),
        sinks: live.names.clone(),
    };
    let admin = admin_router(
        &config,
        &journal,
        &pool,
        watch.clone(),
        &live,
        rejections,
        in_flight.clone(),
    );
    // With [admin] listen, the admin UI and /metrics get a listener of
    // their own, so a flood on the webhook port cannot lock operators out
    // (and GitHub's deliveries keep their slots); health answers on both.
    let (router, admin_listener) = match config.admin.listen {
        Some(admin_addr) => {
            let (listener, _) =
                activation::listen(Role::Admin, admin_addr)
                    .await
                    .map_err(|source| StartError::Listen {
                        addr: admin_addr,
                        source,
                    })?;
            let ops = Arc::new(ops);
            let admin = admin
                .merge(ops::health(ops.clone()))
                .merge(ops::metrics(ops.clone()));
            (
                ingest.merge(ops::health(ops)),
                Some((listener, finish(admin))),
            )
        }
        None => {
            let ops = Arc::new(ops);
            let all = ingest
                .merge(admin)
                .merge(ops::health(ops.clone()))
                .merge(ops::metrics(ops));
            (all, None)
        }
    };
    let router = finish(router);

    let scheduler_beat = crate::watchdog::Beat::default();
    let scheduler = crate::scheduler::Scheduler::new(
        journal.clone(),
        crate::sinks::scheduled_with(
            &config.routes,
            actions.clone(),
            config.processing.workers,
            pool.clone(),
        ),
        config.processing.clone(),
        metrics.sinks.clone(),
        stop_rx.clone(),
    )
    .with_in_flight(in_flight)
    .with_attempt_minutes(attempt_minutes.clone())
    .with_clock(clock.clone())
    .with_owner(&replica)
    .with_beat(scheduler_beat.clone());
    // Reloads replace the routes the scheduler runs, the secrets ingest
    // checks, the pool's keys and the thresholds, all in place.
    let reloader = Arc::new(crate::reload::Reloader {
        path: config.source.as_ref().map(|s| s.0.clone()),
        live: live.clone(),
        sinks: scheduler.sinks(),
        actions: actions.clone(),
        pool: pool.clone(),
        journal: journal.clone(),
        gateway_metrics: metrics.gateway.clone(),
        metrics: metrics.reload.clone(),
        current: tokio::sync::Mutex::new(config.clone()),
        loaded_at_ms: config
            .source
            .as_ref()
            .map_or(clock.now_ms(), |s| s.1)
            .into(),
        last: Default::default(),
        reloaded: Default::default(),
    });
    let scheduler = scheduler.spawn().await.map_err(StartError::Scheduler)?;
    let mut tasks = vec![
        scheduler,
        tokio::spawn(heal(journal.clone(), stop_rx.clone())),
        tokio::spawn(crate::scheduler::samples::run(
            journal.clone(),
            attempt_minutes.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(
            crate::retention::Retention {
                store: journal.clone(),
                days: config.storage.retention_days,
                window_days: crate::retention::redelivery_window_days(&config.github.api_url),
                clock: clock.clone(),
                duty: duty("retention", Duration::from_secs(120)),
            }
            .run(stop_rx.clone()),
        ),
        tokio::spawn(crate::duties::heartbeat(
            journal.clone(),
            replica.clone(),
            clock.clone(),
            metrics.journal.clone(),
            stop_rx.clone(),
        )),
    ];
    if let Some(recovery) = recovery {
        tasks.push(tokio::spawn(recovery.run(stop_rx.clone())));
    }
    if let Some(period) = crate::watchdog::period() {
        tracing::info!(period_secs = period.as_secs_f64(), "systemd watchdog on");
        tasks.push(tokio::spawn(crate::watchdog::run(
            journal.clone(),
            scheduler_beat,
            period,
            stop_rx.clone(),
        )));
    }
    if let Some(pool) = pool.as_ref().filter(|_| journal.is_shared()) {
        tasks.push(tokio::spawn(pool.clone().follow_shared(stop_rx.clone())));
    }
    let server_config = config.server.clone();
    let limits = move || server::Limits {
        max_connections: server_config.max_connections,
        max_per_address: server_config.per_address(),
        header_timeout: Duration::from_secs(server_config.header_timeout_secs),
        idle_timeout: Duration::from_secs(server_config.idle_timeout_secs),
        h2_max_streams: server_config.h2_max_concurrent_streams,
        shutdown_grace: Duration::from_secs(server_config.shutdown_grace_secs),
    };
    let mut admin_addr = None;
    if let Some((listener, router)) = admin_listener {
        let addr = listener.local_addr().expect("bound socket has an address");
        admin_addr = Some(addr);
        tasks.push(tokio::spawn(server::serve(
            listener,
            router,
            limits(),
            metrics.connections.listener("admin"),
            stop_rx.clone(),
        )));
        tracing::info!("admin UI and metrics on http://{addr}");
    }
    let mut gateway_addr = None;
    if let (Some(gw), Some(pool)) = (&config.gateway, &pool) {
        let (listener, state) = gateway(
            &config,
            pool.clone(),
            journal.clone(),
            &metrics,
            body_limits(gw.max_body_bytes),
            duty(
                crate::gateway::cache::EVICTION_DUTY,
                crate::gateway::cache::EVICTION_DUTY_TERM,
            ),
            clock.clone(),
        )
        .await?;
        if !gw.clients_file.as_os_str().is_empty() {
            // A bad file at start is a bad config: refuse to start, as
            // check-config would.
            let applied = crate::gateway::registry::apply_counted(
                &journal,
                &gw.clients_file,
                &metrics.gateway,
            )
            .await?;
            tracing::info!(
                file = %gw.clients_file.display(),
                added = applied.added.len(),
                changed = applied.changed.len(),
                revoked = applied.revoked.len(),
                "clients file applied"
            );
        }
        gateway_addr = Some(listener.local_addr().expect("bound socket has an address"));
        let upkeep = tokio::spawn(gateway_upkeep(state.clone(), stop_rx.clone()));
        let serving = server::serve(
            listener,
            crate::gateway::router(state.clone()),
            limits(),
            metrics.connections.listener("gateway"),
            stop_rx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            serving.await;
            let _ = upkeep.await;
            // Every gateway request has been answered: record the last of
            // their usage before the journal closes.
            state.usage.flush().await;
            state.cache.flush_used().await;
        }));
        tracing::info!(
            "API gateway serving on http://{}",
            gateway_addr.expect("just set")
        );
    }
    // SIGHUP is taken even with no file to reload: its default would end
    // the process.
    tasks.push(tokio::spawn(reload_on_hangup(
        reloader.clone(),
        stop_rx.clone(),
    )));
    let mut listeners = vec![("webhooks".to_string(), format!("http://{addr}"))];
    if admin_addr.is_none() && config.admin.enabled {
        listeners[0].0 = "webhooks, admin UI, metrics".into();
    }
    if webhooks_passed {
        listeners[0].0.push_str(" (socket activation)");
    }
    if let Some(a) = admin_addr {
        listeners.push(("admin UI, metrics".into(), format!("http://{a}")));
    }
    if let Some(g) = gateway_addr {
        listeners.push(("API gateway".into(), format!("http://{g}")));
    }
    let admin_base = if config.admin.public_url.is_empty() {
        format!("http://{}", admin_addr.unwrap_or(addr))
    } else {
        config.admin.public_url.trim_end_matches('/').to_string()
    };
    tasks.push(tokio::spawn(
        crate::problems::report::Reporter {
            watch,
            notifiers: crate::problems::notify::Notifier::all(&config.notify),
            duty: duty("notify", Duration::from_secs(120)),
            holder: replica.clone(),
            reloader: reloader.clone(),
            facts: crate::problems::report::Facts {
                config_file: config.source.as_ref().map(|(p, _)| p.display().to_string()),
                listeners,
                admin_base,
            },
            metrics: metrics.problems.clone(),
        }
        .run(stop_rx.clone()),
    ));
    let closing = journal.clone();
    let webhook_metrics = metrics.connections.listener("webhooks");
    let done = tokio::spawn(async move {
        server::serve(listener, router, limits(), webhook_metrics, stop_rx).await;
        for t in tasks {
            let _ = t.await;
        }
        // Every handler has returned, so nothing more can be appended: let
        // the writer commit what it holds, checkpoint and stop.
        let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    });
    tracing::info!("listening on http://{addr}");
    Ok(App {
        addr,
        gateway_addr,
        admin_addr,
        pool,
        stop,
        stopping,
        done,
        journal,
        attempt_minutes,
        clock,
    })
}

/// The admin UI, or nothing when `[admin] enabled = false`.
fn admin_router(
    config: &Config,
    journal: &Store,
    pool: &Option<Arc<crate::github::Pool>>,
    problems: Arc<crate::problems::Watch>,
    live: &crate::reload::LiveConfig,
    rejections: Arc<ingest::rejections::Rejections>,
    in_flight: Arc<crate::scheduler::in_flight::InFlight>,
) -> axum::Router {
    if !config.admin.enabled {
        return axum::Router::new();
    }
    let actions = config.actions_metrics.enabled;
    let auth = crate::admin::Auth::new(
        config.admin.clone(),
        &config.storage.path,
        journal.clone(),
        problems.clock.clone(),
    );
    if !auth.has_password() {
        tracing::warn!(
            "the admin UI has no password yet: run `gatehouse admin set-password` to set one"
        );
    }
    crate::admin::router(crate::admin::AdminState {
        journal: journal.clone(),
        auth,
        pool: pool.clone(),
        sinks: live.names.clone(),
        recovery: problems.recovery.is_some(),
        problems,
        actions,
        rejections,
        in_flight,
        routes: live.catalog.clone(),
        clients_file: config
            .gateway
            .as_ref()
            .map(|g| g.clients_file.display().to_string())
            .unwrap_or_default(),
        gateway: config.gateway.clone(),
    })
}

/// Opens the gateway's cache (this node's file, or the one replicas
/// share, evicted under `eviction`) and binds its listener.
async fn gateway(
    config: &Config,
    pool: Arc<crate::github::Pool>,
    journal: Store,
    metrics: &Metrics,
    body: server::body::Limits,
    eviction: crate::duties::Duty,
    clock: Arc<dyn clock::Clock>,
) -> Result<(TcpListener, Arc<crate::gateway::GatewayState>), StartError> {
    use crate::gateway::{GatewayState, cache::Cache, usage::Recorder};
    let gw = config.gateway.as_ref().expect("gateway is configured");
    let (max, m) = (gw.cache_max_bytes, metrics.gateway.clone());
    let cache = match journal.shared_cache() {
        Some(shared) => Cache::shared(shared, eviction, max, &gw.fresh, m),
        None => {
            let path = config.gateway_cache_path().expect("gateway is configured");
            Cache::open(&path, max, &gw.fresh, m).await
        }
    }
    .map_err(StartError::Cache)?;
    let addr = gw.listen;
    let (listener, _) = activation::listen(Role::Gateway, addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let throttle =
        crate::throttle::Throttle::new(gw.auth_failures_per_minute).with_clock(clock.clone());
    // Behind a load balancer, a guesser meets one limit.
    let throttle = if journal.is_shared() {
        throttle.shared(journal.clone(), "gateway")
    } else {
        throttle
    };
    let state = Arc::new(GatewayState {
        pool,
        usage: {
            let usage = Recorder::new(metrics.gateway.clone(), journal.clone(), clock.clone());
            usage.read_back().await;
            Arc::new(usage)
        },
        journal,
        cache: Arc::new(cache),
        config: gw.clone(),
        inflight: Default::default(),
        throttle,
        shares: crate::gateway::share::Shares::new(
            gw.fair_share_below,
            gw.priority_share,
            clock.clone(),
            metrics.journal.replicas_alive.clone(),
        ),
        body,
    });
    Ok((listener, state))
}

/// Writes client usage and cache use times every few seconds, and keeps a
/// shared cache within its bound (and, from the gateway's task, flushes
/// once more after its last request).
async fn gateway_upkeep(state: Arc<crate::gateway::GatewayState>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(GATEWAY_FLUSH_INTERVAL) => {}
            _ = shutdown::requested(&mut stop) => return,
        }
        state.usage.flush().await;
        state.cache.flush_used().await;
        state.cache.maintain().await;
    }
}

/// SIGHUP (`systemctl reload`, `gatehouse reload`) reloads the config.
async fn reload_on_hangup(reloader: Arc<crate::reload::Reloader>, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: the config applies at start only");
        return;
    };
    loop {
        tokio::select! {
            _ = hangup.recv() => {}
            _ = shutdown::requested(&mut stop) => return,
        }
        reloader.reload().await;
    }
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(config: Config) -> Result<(), StartError> {
    let app = start(config).await?;
    systemd::notify("READY=1");
    wait_for_signal().await;
    tracing::info!("shutting down");
    systemd::notify("STOPPING=1");
    app.shutdown();
    app.stopped().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// JSON 404s and 405s for what no route takes, and the admin UI's
/// security headers on every answer under `/admin`, those included.
fn finish(router: axum::Router) -> axum::Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(crate::admin::security_headers))
}

async fn not_found() -> impl axum::response::IntoResponse {
    (
        http::StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "error": "not found" })),
    )
}

async fn method_not_allowed() -> impl axum::response::IntoResponse {
    (
        http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(serde_json::json!({ "error": "method not allowed" })),
    )
}

/// Every second: is the journal's file still the one on disk (nothing
/// else notices a deleted file while no delivery comes), can an
/// unwritable journal commit again, and is a database server still
/// there?
async fn heal(journal: Store, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEAL_INTERVAL) => {}
            _ = shutdown::requested(&mut stop) => return,
        }
        let files = journal.clone();
        let in_place = tokio::task::spawn_blocking(move || files.check_files())
            .await
            .unwrap_or(false);
        if in_place
            && (journal.probe_always() || journal.health() == crate::store::Health::Unwritable)
        {
            let _ = journal.probe().await;
        }
    }
}

/// Where the embedded default keeps its webhook secret, beside the journal.
pub fn default_secret_path(db_path: &Path) -> PathBuf {
    db_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("webhook-secret")
}

/// What the embedded default generated on this start, to show once.
#[derive(Default)]
pub struct Generated {
    pub secret: Option<String>,
    pub admin_password: Option<String>,
}

/// The embedded default config (DESIGN.md): loads the webhook secret from
/// the data directory, generating and storing it the first time, and
/// likewise an admin password (only its hash is stored). Returns the config
/// and what was just generated.
pub fn embedded_default() -> std::io::Result<(Config, Generated)> {
    let mut config = Config::default();
    let path = default_secret_path(&config.storage.path);
    if let Some(dir) = path.parent() {
        crate::files::private_dir(dir)?;
    }
    let fresh = match crate::config::read_secret_file(&path) {
        Ok(secret) => {
            config.webhooks.secrets.push(secret);
            None
        }
        Err(_) if !path.exists() => {
            let value = generate_secret();
            write_private(&path, &value)?;
            config.webhooks.secrets.push(Secret::new(value.clone()));
            Some(value)
        }
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let hash_path = config.admin.hash_path(&config.storage.path);
    let admin_password = if hash_path.exists() {
        None
    } else {
        let password = crate::admin::password::generate();
        crate::admin::password::store(&hash_path, &crate::admin::password::hash(&password))?;
        Some(password)
    };
    Ok((
        config,
        Generated {
            secret: fresh,
            admin_password,
        },
    ))
}

fn generate_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{value}")?;
    f.sync_all()
}
