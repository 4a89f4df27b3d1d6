//! Test harness: gatehouse in-process on a loopback port with a real SQLite
//! file, an HMAC signer that does not share code with the one under test,
//! and the real GitHub payloads from ../shared/fixtures/github.
#![allow(dead_code)]

pub mod actions;
pub mod admin;
pub mod binary;
pub mod census;
pub mod conformance;
pub mod consumer;
pub mod haproxy;
pub mod hub;
pub mod load;
pub mod pg;
pub mod relay;
pub mod tmpfs;

use std::path::{Path, PathBuf};

use gatehouse::app::{self, App};
use gatehouse::config::{Config, Secret};
use hmac::{Hmac, KeyInit, Mac};
use rusqlite::{Connection, OpenFlags};
use sha2::Sha256;

pub const SECRET: &str = "test-webhook-secret";

/// The shared fixtures, read in place (never copied into this repo).
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("GATEHOUSE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github"));
    assert!(
        dir.join("payloads").is_dir(),
        "GitHub fixtures not found at {} (set GATEHOUSE_FIXTURES)",
        dir.display()
    );
    dir
}

/// Every payload file with its event (the directory name), sorted.
pub fn payload_files() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for event in std::fs::read_dir(fixtures().join("payloads")).unwrap() {
        let event = event.unwrap();
        for file in std::fs::read_dir(event.path()).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_some_and(|e| e == "json") {
                out.push((event.file_name().into_string().unwrap(), file));
            }
        }
    }
    out.sort();
    out
}

/// A payload as GitHub sends it: compact JSON.
pub fn compact(path: &Path) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    serde_json::to_vec(&v).unwrap()
}

/// `sha256=<hex>` computed here, independently of gatehouse's own code.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One webhook request, built like GitHub builds it.
#[derive(Clone)]
pub struct Delivery {
    pub event: Option<String>,
    pub guid: Option<String>,
    pub hook_id: Option<String>,
    pub content_type: Option<String>,
    pub signature: Option<String>,
    pub body: Vec<u8>,
    pub extra: Vec<(String, String)>,
}

impl Delivery {
    pub fn json(event: &str, guid: &str, body: impl Into<Vec<u8>>) -> Delivery {
        let body = body.into();
        Delivery {
            event: Some(event.into()),
            guid: Some(guid.into()),
            hook_id: Some("100".into()),
            content_type: Some("application/json".into()),
            signature: Some(sign(SECRET, &body)),
            body,
            extra: vec![],
        }
    }

    /// The form-encoded variant GitHub sends when a hook's content type is
    /// `application/x-www-form-urlencoded`.
    pub fn form(event: &str, guid: &str, json: &[u8]) -> Delivery {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", std::str::from_utf8(json).unwrap())
            .finish();
        let mut d = Delivery::json(event, guid, body.into_bytes());
        d.content_type = Some("application/x-www-form-urlencoded".into());
        d
    }

    pub fn hook(mut self, id: &str) -> Self {
        self.hook_id = Some(id.into());
        self
    }

    pub fn signed_with(mut self, secret: &str) -> Self {
        self.signature = Some(sign(secret, &self.body));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    pub async fn send(
        &self,
        client: &reqwest::Client,
        base: &str,
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = client
            .post(format!("{base}/webhooks/github"))
            .header("user-agent", "GitHub-Hookshot/test")
            .body(self.body.clone());
        for (name, value) in [
            ("x-github-event", &self.event),
            ("x-github-delivery", &self.guid),
            ("x-github-hook-id", &self.hook_id),
            ("content-type", &self.content_type),
            ("x-hub-signature-256", &self.signature),
        ] {
            if let Some(v) = value {
                req = req.header(name, v);
            }
        }
        for (n, v) in &self.extra {
            req = req.header(n, v);
        }
        req.send().await
    }
}

/// gatehouse running in this process on 127.0.0.1:0 with its own data dir.
pub struct TestApp {
    pub app: App,
    pub base: String,
    pub client: reqwest::Client,
    pub db_path: PathBuf,
    pub dir: tempfile::TempDir,
    config: Config,
}

pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.storage.path = dir.join("gatehouse.db");
    c.webhooks.secrets = vec![Secret::new(SECRET)];
    c.admin.password_hash = Some(admin::password_hash().to_string());
    c
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(edit: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        edit(&mut config);
        TestApp::start_in(dir, config).await
    }

    pub async fn start_in(dir: tempfile::TempDir, config: Config) -> TestApp {
        TestApp::start_on(dir, config, gatehouse::clock::system()).await
    }

    /// On a clock the test turns (quotas, leases, pauses).
    pub async fn start_on(
        dir: tempfile::TempDir,
        config: Config,
        clock: std::sync::Arc<dyn gatehouse::clock::Clock>,
    ) -> TestApp {
        let db_path = config.storage.path.clone();
        let app = app::start_on(config.clone(), clock)
            .await
            .expect("gatehouse starts");
        TestApp {
            base: format!("http://{}", app.addr()),
            app,
            client: reqwest::Client::new(),
            db_path,
            dir,
            config,
        }
    }

    /// The config it runs on, to start it again on the same data dir.
    pub fn app_config(&self) -> Config {
        self.config.clone()
    }

    pub async fn send(&self, d: &Delivery) -> reqwest::Response {
        d.send(&self.client, &self.base)
            .await
            .expect("request reaches gatehouse")
    }

    /// A separate read-only connection to the real database file.
    /// The running app's store: what tests ask instead of its file.
    pub fn store(&self) -> gatehouse::store::Store {
        self.app.journal().clone()
    }

    /// Every delivery and its jobs' states, as the operator's list shows.
    pub async fn census(&self) -> census::Census {
        census::Census::of(self.app.journal()).await
    }

    pub async fn metrics(&self) -> String {
        scrape(&self.client, &self.base).await
    }

    /// Graceful stop; returns the data dir so a test can start again on it.
    pub async fn stop(self) -> tempfile::TempDir {
        self.app.shutdown();
        self.app.stopped().await;
        self.dir
    }
}

/// `GET {base}/metrics`, as Prometheus would scrape it.
pub async fn scrape(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A read-only connection to a journal file: only for tests about the
/// file itself (integrity after kill -9, a reader pinning the WAL).
pub fn open_db(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// The value of one sample line in a Prometheus text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Sends raw bytes on a fresh connection and returns what comes back, for
/// requests an HTTP client library will not make (hand-built chunking).
pub async fn raw_http(base: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything we send.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A forward route to `url` with the defaults a test starts from.
pub fn route(name: &str, url: &str) -> gatehouse::config::RouteConfig {
    gatehouse::config::RouteConfig {
        name: name.into(),
        url: url.into(),
        events: vec![],
        actions: vec![],
        repositories: vec![],
        secret: None,
        secret_file: None,
        timeout_secs: 5,
        max_attempts: 12,
        retry: vec![],
        ordering: gatehouse::config::Ordering::Strict,
        on_dead: None,
        github_budget: false,
        breaker: Default::default(),
        batch: None,
        coalesce: None,
    }
}

/// A push payload that belongs to `org` (every owner field rewritten).
pub fn push_for(org: &str, n: usize) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&compact(&fixtures().join("payloads/push/payload.json"))).unwrap();
    v["repository"]["owner"]["login"] = org.into();
    v["repository"]["full_name"] = format!("{org}/repo").into();
    v["after"] = format!("{n:040}").into();
    serde_json::to_vec(&v).unwrap()
}

/// A push for `org` as the journal takes it straight (no HTTP): its
/// metadata, received now, and `push_for`'s body, one job for `sink`.
pub fn journal_push(
    org: &str,
    guid: &str,
    n: usize,
    sink: &str,
) -> gatehouse::journal::NewDelivery {
    use gatehouse::journal::{ContentKind, DeliveryMeta, NewDelivery, ParseStatus, model};
    let headers = model::encode_headers([
        ("x-github-event", "push".as_bytes()),
        ("x-github-delivery", guid.as_bytes()),
        ("content-type", b"application/json".as_slice()),
    ]);
    NewDelivery {
        meta: DeliveryMeta {
            hook_id: "1".into(),
            guid: guid.into(),
            event: "push".into(),
            action: None,
            installation_id: None,
            target_type: None,
            target_id: None,
            repository: Some(format!("{org}/repo")),
            owner: Some(org.into()),
            partition_key: org.into(),
            received_at_ms: gatehouse::clock::now_ms(),
            content_kind: ContentKind::Json,
            parse_status: ParseStatus::Ok,
        },
        headers,
        body: push_for(org, n).into(),
        sinks: vec![sink.into()],
        event_label: "push",
    }
}

/// A loopback port free a moment ago (for servers that must be told theirs
/// before they start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls an asynchronous check (a read through the store, say) until it
/// holds, failing the test after `limit`.
pub async fn eventually(what: &str, limit: std::time::Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !f().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Polls `f` until it holds, failing the test after `limit`.
pub async fn wait_until(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs `f` on the store at `db` opened beside the running server, as
/// an operator command does (on its own thread and runtime, so it can be
/// called from a test's runtime).
pub fn beside<T: Send + 'static>(
    db: &Path,
    f: impl AsyncFnOnce(&gatehouse::store::Store) -> T + Send + 'static,
) -> T {
    let db = db.to_path_buf();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = gatehouse::store::open_beside(&gatehouse::store::Location::Sqlite(db)).unwrap();
        let out = rt.block_on(f(&store));
        store.close();
        out
    })
    .join()
    .unwrap()
}

/// Adds a gateway client beside the running server; returns its token.
pub fn add_client(db: &Path, name: &str, scopes: &[&str], owners: &[&str]) -> String {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (name, scopes, owners) = (name.to_string(), owned(scopes), owned(owners));
    beside(db, async move |store| {
        let settings = gatehouse::gateway::clients::Settings {
            name,
            scopes,
            owners,
            limits: Default::default(),
        };
        gatehouse::gateway::clients::add(
            store,
            &settings,
            &test_actor(),
            gatehouse::clock::now_ms(),
        )
        .await
        .unwrap()
    })
}

/// Who a test is, in the audit log.
pub fn test_actor() -> gatehouse::gateway::clients::Actor {
    gatehouse::gateway::clients::Actor {
        origin: gatehouse::gateway::clients::Origin::Cli,
        who: "test".into(),
    }
}

/// A store on `path` for a test that drives it directly (the server's
/// way: process lock, migrations, writer).
pub fn open_store(path: &Path) -> gatehouse::store::Store {
    gatehouse::store::open(
        &gatehouse::store::Location::Sqlite(path.to_path_buf()),
        gatehouse::metrics::Metrics::new().journal,
        gatehouse::store::Options::default(),
    )
    .unwrap()
}

/// A GET through the gateway at `url` as the client whose token this is.
pub async fn gateway_get(http: &reqwest::Client, url: String, token: &str) -> reqwest::Response {
    http.get(url)
        .header("authorization", format!("token {token}"))
        .send()
        .await
        .unwrap()
}
