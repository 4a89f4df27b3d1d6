//! fakehub: a GitHub stand-in that behaves like GitHub where gatehouse
//! depends on it — App auth, installation tokens, REST resources with
//! pagination, rate limits (primary and secondary), credential-dependent
//! ETags, GraphQL points, webhooks with a delivery log and redelivery, and
//! injected faults. Start it in-process on a loopback port with
//! [`FakeHub::start`], or run the `fakehub` binary.

pub mod api;
pub mod auth;
pub mod config;
pub mod faults;
pub mod hub;
pub mod limits;
pub mod templates;
pub mod webhooks;
pub mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

pub use config::Config;
pub use hub::Hub;
pub use limits::{Stats, Usage};
pub use webhooks::{HookRef, Record};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Templates(#[from] templates::TemplateError),
    #[error(transparent)]
    World(#[from] world::WorldError),
}

/// A running fakehub.
pub struct FakeHub {
    addr: SocketAddr,
    url: String,
    hub: Arc<Hub>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeHub {
    pub async fn start(config: Config) -> Result<FakeHub, StartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().expect("bound");
        let root = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        // GHES's API lives under /api/v3: its bodies and links say so.
        let url = match config.enterprise {
            Some(_) => format!("{}/api/v3", root.trim_end_matches('/')),
            None => root,
        };
        let dir = config
            .fixtures
            .clone()
            .unwrap_or_else(templates::default_fixtures_dir);
        let templates = templates::Templates::load(&dir)?;
        let world = world::World::build(&config, &url, templates)?;
        let hub = Arc::new(Hub {
            world: Mutex::new(world),
            limits: limits::Limits::new(config.rate_limit.clone(), config.secondary.clone()),
            faults: faults::Faults::new(&config.faults),
            log: Mutex::new(webhooks::DeliveryLog::keeping(match config.enterprise {
                Some(_) => webhooks::GHES_LOG_SECS,
                None => webhooks::GITHUB_LOG_SECS,
            })),
            http: reqwest::Client::new(),
            webhook_timeout: Duration::from_millis(config.webhook_timeout_ms),
            enterprise: config.enterprise.clone(),
        });
        let router = api::router(hub.clone());
        let (stop, mut stopped) = watch::channel(false);
        let serve_hub = hub.clone();
        let task = tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            loop {
                let accepted = tokio::select! {
                    r = listener.accept() => r,
                    _ = stopped.wait_for(|s| *s) => break,
                };
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let (router, hub, builder) = (router.clone(), serve_hub.clone(), builder.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (router, hub) = (router.clone(), hub.clone());
                            async move {
                                // A "reset" fault drops the connection unanswered.
                                let path = api::api_path(req.uri().path()).to_string();
                                if hub.faults.resets(req.method().as_str(), &path) {
                                    return Err(std::io::Error::new(
                                        std::io::ErrorKind::ConnectionReset,
                                        "fault: reset",
                                    ));
                                }
                                router
                                    .oneshot(req.map(axum::body::Body::new))
                                    .await
                                    .map_err(|e| match e {})
                            }
                        },
                    );
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(FakeHub {
            addr,
            url,
            hub,
            stop,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, like `https://api.github.com` (no trailing
    /// slash), or `http://HOST/api/v3` when playing GHES.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Usage per token and per installation.
    pub fn stats(&self) -> Stats {
        self.hub.limits.stats()
    }

    /// Every delivery attempt logged so far, oldest first.
    pub fn deliveries(&self) -> Vec<Record> {
        self.hub.log.lock().expect("log lock").all().to_vec()
    }

    /// Sends a fixture event to a hook now, as GitHub would, and logs it.
    pub async fn deliver(
        &self,
        hook: HookRef,
        event: &str,
        file: &str,
        owner: &str,
        repo: &str,
    ) -> Result<Record, hub::DeliverError> {
        self.hub.deliver(hook, event, file, owner, repo).await
    }

    /// Stops accepting connections.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
