//! What the benchmarks share: the release binary started on a loopback
//! port with its journal in a fresh directory, its resource use read from
//! /proc, and the HMAC signer.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::post;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const SECRET: &str = "bench-secret";
pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// The binary under test: this build's, or `$GATEHOUSE_BIN` to measure
/// another build (an earlier commit, say) side by side in one session.
pub fn bin() -> String {
    std::env::var("GATEHOUSE_BIN").unwrap_or_else(|_| BIN.to_string())
}

pub fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A test-only RSA key from fakehub/testdata.
pub fn key(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/fakehub/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub struct Server {
    pub child: Child,
    pub base: String,
    /// The API gateway's base URL, when the config has `[gateway]`.
    pub gateway: Option<String>,
    pub config: PathBuf,
}

/// `dir/gatehouse.toml` for a server on `listen` with its journal in
/// `dir`, `storage` added to `[storage]` and `extra` after; it logs where
/// it listens (`Server` reads that from its stderr).
pub fn write_config(dir: &Path, listen: &str, storage: &str, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = {listen:?}\n[storage]\npath = {:?}\n{storage}\n[webhooks]\nsecrets = [{SECRET:?}]\n[log]\nlevel = \"warn,gatehouse::app=info\"\n{extra}",
            dir.join("gatehouse.db").display().to_string()
        ),
    )
    .unwrap();
    config
}

impl Server {
    /// Starts `gatehouse serve` with a fresh journal in `dir`; `extra` is
    /// appended to the config (routes, say).
    pub fn start(dir: &Path, extra: &str) -> Server {
        let _ = std::fs::remove_dir_all(dir);
        Server::start_in_place(dir, extra)
    }

    /// Starts `gatehouse serve` on whatever journal `dir` holds.
    pub fn start_in_place(dir: &Path, extra: &str) -> Server {
        Server::start_with_storage(dir, "", extra)
    }

    /// Starts `gatehouse serve` with `storage` added to its `[storage]`
    /// section (`url = ...` for PostgreSQL).
    pub fn start_with_storage(dir: &Path, storage: &str, extra: &str) -> Server {
        let config = write_config(dir, "127.0.0.1:0", storage, extra);
        let mut child = Command::new(bin())
            .args(["serve", "--config", config.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gatehouse");
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                for (kind, marker) in [
                    ("gateway", "API gateway serving on "),
                    ("server", "listening on "),
                ] {
                    if let Some(rest) = line.split(marker).nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send((kind, addr));
                    }
                }
            }
        });
        let mut gateway = None;
        let base = loop {
            let (kind, addr) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("gatehouse did not start");
            // The gateway's line comes first when there is one.
            match kind {
                "gateway" => gateway = Some(addr),
                _ => break addr,
            }
        };
        Server {
            child,
            base,
            gateway,
            config,
        }
    }

    /// Runs a `gatehouse` CLI command against this server's config.
    pub fn cli(&self, args: &[&str]) {
        let s = Command::new(bin())
            .args(args)
            .args(["--config", self.config.to_str().unwrap()])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(s.success(), "{args:?}");
    }

    /// Runs a `gatehouse` CLI command and returns its stdout.
    pub fn cli_output(&self, args: &[&str]) -> String {
        let out = Command::new(bin())
            .args(args)
            .args(["--config", self.config.to_str().unwrap()])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// Peak resident set size so far (VmHWM), in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = s
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        kb / 1024.0
    }

    /// CPU time used so far (user + system), in seconds.
    pub fn cpu_secs(&self) -> f64 {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = s[s.rfind(')').unwrap() + 2..].split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0
    }

    /// SIGTERM and wait: the process this benchmark started, by pid.
    pub fn stop(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A benchmark that panics still ends the server it started.
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A real push payload per org, signed once.
pub fn bodies(orgs: usize) -> Vec<(bytes::Bytes, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/github/payloads/push/payload.json");
    let template: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    (0..orgs)
        .map(|i| {
            let mut v = template.clone();
            v["repository"]["owner"]["login"] = format!("org-{i}").into();
            v["repository"]["full_name"] = format!("org-{i}/repo").into();
            let body = serde_json::to_vec(&v).unwrap();
            let sig = sign(&body);
            (body.into(), sig)
        })
        .collect()
}

/// Arrival times by GUID; `count` requests (a batch is one).
#[derive(Clone, Default)]
pub struct Consumer {
    pub arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    pub count: Arc<AtomicUsize>,
}

/// The GUIDs a request carries: its `X-GitHub-Delivery`, or each of a
/// batch's (`X-Gatehouse-Batch`, a JSON array).
pub fn guids_of(h: &http::HeaderMap, body: &[u8]) -> Vec<String> {
    if h.contains_key("x-gatehouse-batch") {
        let items: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
        return items
            .iter()
            .map(|i| {
                i["headers"]["x-github-delivery"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
    }
    vec![
        h.get("x-github-delivery")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    ]
}

pub async fn consumer() -> (String, Consumer) {
    let c = Consumer::default();
    let app = Router::new()
        .route(
            "/hook",
            post(
                |State(c): State<Consumer>, h: http::HeaderMap, body: bytes::Bytes| async move {
                    let now = Instant::now();
                    let mut arrivals = c.arrivals.lock().unwrap();
                    for guid in guids_of(&h, &body) {
                        arrivals.entry(guid).or_insert(now);
                    }
                    c.count.fetch_add(1, Ordering::Relaxed);
                    http::StatusCode::OK
                },
            ),
        )
        .with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, c)
}

/// The server's group commits so far, from `/metrics`: (commits,
/// deliveries per commit, mean commit ms).
pub async fn commit_stats(base: &str) -> (f64, f64, f64) {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let commits = value("gatehouse_journal_commit_batch_size_count");
    let ops = value("gatehouse_journal_commit_batch_size_sum");
    let commit_s = value("gatehouse_journal_commit_duration_seconds_sum");
    (
        commits,
        ops / commits.max(1.0),
        commit_s * 1000.0 / commits.max(1.0),
    )
}

/// POSTs a signed push delivery; true on `202`.
pub async fn post_push(
    client: &reqwest::Client,
    base: &str,
    guid: &str,
    body: &bytes::Bytes,
    sig: &str,
) -> bool {
    post_event(client, base, "push", guid, body, sig).await
}

/// POSTs a signed delivery of `event`; true on `202`.
pub async fn post_event(
    client: &reqwest::Client,
    base: &str,
    event: &str,
    guid: &str,
    body: &bytes::Bytes,
    sig: &str,
) -> bool {
    client
        .post(format!("{base}/webhooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", guid)
        .header("x-github-hook-id", "1")
        .header("x-hub-signature-256", sig)
        .body(body.clone())
        .send()
        .await
        .map(|r| r.status() == 202)
        .unwrap_or(false)
}

/// Waits (bounded) until `n` distinct deliveries reached the consumer.
pub async fn wait_for(c: &Consumer, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    while c.arrivals.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} arrived",
            c.arrivals.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Posts `n` deliveries (body i % bodies) from 64 connections, connection
/// c to `bases[c % bases.len()]` (as a load balancer spreads them); each
/// must be acknowledged. Bounded by count and ten minutes.
pub async fn post_all(bases: &[String], bodies: &[(bytes::Bytes, String)], n: usize, prefix: &str) {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let bodies = Arc::new(bodies.to_vec());
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut tasks = Vec::new();
    for c in 0..64 {
        let (client, base, next, bodies, prefix) = (
            client.clone(),
            bases[c % bases.len()].clone(),
            next.clone(),
            bodies.clone(),
            prefix.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n || Instant::now() > deadline {
                    break;
                }
                let (body, sig) = &bodies[i % bodies.len()];
                assert!(post_push(&client, &base, &format!("{prefix}-{i}"), body, sig).await);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Posts `total` deliveries (`{prefix}-{i}`) at `rate`/s in an open loop,
/// delivery i to `bases[i % bases.len()]`, each acknowledged; waits
/// (bounded by a minute) for all of them at the consumer. Returns each
/// one's time from POST to arrival, in ms, sorted.
pub async fn paced_latencies(
    bases: &[String],
    c: &Consumer,
    rate: u32,
    total: u32,
    prefix: &str,
) -> Vec<f64> {
    let bodies = Arc::new(bodies(50));
    let client = reqwest::Client::new();
    let sent: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        tokio::time::sleep_until(
            (started + Duration::from_secs_f64(i as f64 / rate as f64)).into(),
        )
        .await;
        let (client, base, bodies, sent) = (
            client.clone(),
            bases[i as usize % bases.len()].clone(),
            bodies.clone(),
            sent.clone(),
        );
        let guid = format!("{prefix}-{i}");
        tasks.push(tokio::spawn(async move {
            let (body, sig) = &bodies[i as usize % bodies.len()];
            sent.lock().unwrap().insert(guid.clone(), Instant::now());
            assert!(post_push(&client, &base, &guid, body, sig).await);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mine = |c: &Consumer| {
        c.arrivals
            .lock()
            .unwrap()
            .keys()
            .filter(|g| g.starts_with(&format!("{prefix}-")))
            .count()
    };
    loop {
        let have = mine(c);
        if have == total as usize {
            break;
        }
        assert!(Instant::now() < deadline, "{have} of {total} arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrivals = c.arrivals.lock().unwrap();
    let sent = sent.lock().unwrap();
    let mut lat: Vec<f64> = sent
        .iter()
        .map(|(g, t0)| (arrivals[g] - *t0).as_secs_f64() * 1000.0)
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    lat
}

/// One `GET {base}/metrics`: how long it took (ms) and the exposition.
pub async fn timed_scrape(client: &reqwest::Client, base: &str) -> (f64, String) {
    let t = Instant::now();
    let body = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (t.elapsed().as_secs_f64() * 1000.0, body)
}
