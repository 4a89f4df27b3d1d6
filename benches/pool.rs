//! Credential-pool benchmark against an in-process fakehub. Run:
//!
//!     cargo bench --bench pool
//!
//! - throughput: 64 concurrent callers for 5 s through the pool, with
//!   20 ms injected latency on every GitHub call, for 1, 2 and 4 Apps
//!   installed on one org and on 50 orgs (callers spread over the orgs).
//!   With one request in flight per credential, the ceiling is
//!   credentials / 20 ms.
//! - overhead: 2,000 sequential requests with no injected latency, sent
//!   directly with an installation token and through the pool, side by
//!   side; the difference of the medians is what the pool adds.
//!
//! Every loop is bounded by count and time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fakehub::config::FaultConfig;
use fakehub::{Config as HubConfig, FakeHub};
use gatehouse::config::{GithubAppConfig, GithubConfig, Secret};
use gatehouse::github::{Pool, Request};

use common::key;

const KEYS: [&str; 4] = ["app-a", "app-b", "app-c", "app-d"];

fn orgs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("org-{i}")).collect()
}

async fn hub(apps: usize, n_orgs: usize, latency_ms: u64) -> FakeHub {
    let mut c = HubConfig::default();
    for o in orgs(n_orgs) {
        c = c.org(&o, &["repo"]);
    }
    for (a, k) in KEYS.iter().take(apps).enumerate() {
        let inst: Vec<(i64, String)> = orgs(n_orgs)
            .into_iter()
            .enumerate()
            .map(|(i, o)| (((a + 1) * 1000 + i) as i64, o))
            .collect();
        let inst_ref: Vec<(i64, &str)> = inst.iter().map(|(i, o)| (*i, o.as_str())).collect();
        c = c.app(a as i64 + 1, &key(&format!("{k}.pub.pem")), &inst_ref);
    }
    c.rate_limit.core = 1_000_000_000;
    if latency_ms > 0 {
        let mut slow = FaultConfig::new("GET /repos/**");
        slow.latency_ms = latency_ms;
        c.faults.push(slow);
    }
    FakeHub::start(c).await.unwrap()
}

fn pool(hub: &FakeHub, apps: usize) -> Pool {
    Pool::new(&GithubConfig {
        api_url: hub.url().to_string(),
        apps: KEYS
            .iter()
            .take(apps)
            .enumerate()
            .map(|(a, k)| GithubAppConfig {
                id: a as i64 + 1,
                private_key: Some(Secret::new(key(&format!("{k}.pem")))),
                private_key_file: None,
                webhook: true,
                purposes: gatehouse::config::Purpose::ALL.to_vec(),
            })
            .collect(),
        tokens: vec![],
        max_queue: 1024,
        ..GithubConfig::default()
    })
    .unwrap()
}

async fn throughput(apps: usize, n_orgs: usize) {
    let hub = hub(apps, n_orgs, 20).await;
    let p = Arc::new(pool(&hub, apps));
    // Warm discovery and tokens so the run measures steady state.
    for o in orgs(n_orgs) {
        p.send(&o, Request::get(&format!("/repos/{o}/repo")))
            .await
            .unwrap();
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for c in 0..64 {
        let (p, done) = (p.clone(), done.clone());
        let org = format!("org-{}", c % n_orgs);
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let a = p
                    .send(&org, Request::get(&format!("/repos/{org}/repo")))
                    .await
                    .unwrap();
                assert_eq!(a.status, 200);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let s = hub.stats();
    let max_conc = s
        .installations
        .values()
        .map(|u| u.max_concurrency)
        .max()
        .unwrap_or(0);
    println!(
        "throughput  {apps} App(s) × {n_orgs:>2} org(s): {:>7.0} requests/s  ({} credentials, ceiling {:.0}/s; max concurrency per installation {max_conc})",
        n as f64 / secs,
        apps * n_orgs,
        (apps * n_orgs).min(64) as f64 / 0.020
    );
    hub.stop().await;
}

async fn overhead() {
    let hub = hub(1, 1, 0).await;
    let p = pool(&hub, 1);
    p.send("org-0", Request::get("/repos/org-0/repo"))
        .await
        .unwrap();
    // A token minted the way the pool does, for the direct side.
    let jwt = fakehub::auth::sign_app_jwt(
        1,
        &key("app-a.pem"),
        fakehub::world::now_secs() - 60,
        fakehub::world::now_secs() + 500,
    );
    let client = reqwest::Client::new();
    let v: serde_json::Value = client
        .post(format!(
            "{}/app/installations/1000/access_tokens",
            hub.url()
        ))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = format!("token {}", v["token"].as_str().unwrap());
    let url = format!("{}/repos/org-0/repo", hub.url());
    let (mut direct, mut pooled) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        let t = Instant::now();
        let r = client
            .get(&url)
            .header("authorization", &token)
            .header("user-agent", "gatehouse")
            .send()
            .await
            .unwrap();
        let _ = r.bytes().await.unwrap();
        direct.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        p.send("org-0", Request::get("/repos/org-0/repo"))
            .await
            .unwrap();
        pooled.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let p50 = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (d, q) = (p50(&mut direct), p50(&mut pooled));
    println!(
        "overhead    2,000 sequential requests: direct p50 {d:.3} ms, through the pool p50 {q:.3} ms, added {:.3} ms",
        q - d
    );
    hub.stop().await;
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        overhead().await;
        for n_orgs in [1, 50] {
            for apps in [1, 2, 4] {
                throughput(apps, n_orgs).await;
            }
        }
    });
}
