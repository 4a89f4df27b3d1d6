//! The API gateway (part 5), the release binary against an in-process
//! fakehub:
//!
//! 1. Replay: 20 CI jobs (4 at a time), each reading the same 7 resources
//!    of 10 repositories (repository, open pulls, two pull requests, one
//!    pull request's files, a commit's statuses, an issue's comments) and
//!    posting one comment. Rate-limit units fakehub charged, with the jobs
//!    calling fakehub directly (a token each, no conditional requests, as
//!    CI scripts do) and through the gateway; hit ratio.
//! 2. Rotation: after a full read, the installation token is renewed; the
//!    share of the next pass's revalidations that still get a 304.
//! 3. Latency: sequential reads of one pull request, direct vs through the
//!    gateway (revalidated: a 304 upstream each time) vs a fresh-window hit.
//! 4. Throughput: 64 connections reading the 70 resources for 5 s.
//!
//! `cargo bench --bench gateway`

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{Server, key};
use fakehub::{Config as HubConfig, FakeHub};

const REPOS: usize = 10;
const JOBS: usize = 20;
const JOB_CONCURRENCY: usize = 4;
const PAT: &str = "ghp_benchmarkcitoken000000000000000000";

async fn hub(token_secs: Option<i64>) -> FakeHub {
    let repos: Vec<String> = (0..REPOS).map(|i| format!("repo-{i}")).collect();
    let names: Vec<&str> = repos.iter().map(String::as_str).collect();
    let mut c = HubConfig::default()
        .org("acme", &names)
        .app(1, &key("app-a.pub.pem"), &[(11, "acme")])
        .token("ci", PAT);
    c.rate_limit.core = 1_000_000_000;
    if let Some(s) = token_secs {
        c.installation_token_secs = s;
    }
    FakeHub::start(c).await.unwrap()
}

fn gateway(hub: &FakeHub, dir: &str, extra: &str) -> (Server, String) {
    let server = Server::start(
        &std::env::temp_dir().join(dir),
        &format!(
            "[github]\napi_url = {:?}\n[[github.apps]]\nid = 1\nprivate_key_file = {:?}\n[gateway]\nlisten = \"127.0.0.1:0\"\n{extra}",
            hub.url(),
            format!("{}/fakehub/testdata/app-a.pem", env!("CARGO_MANIFEST_DIR")),
        ),
    );
    let token = server
        .cli_output(&["clients", "add", "bench"])
        .trim()
        .to_string();
    (server, token)
}

/// The 70 reads of one job.
async fn paths(hub: &FakeHub) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for i in 0..REPOS {
        let r = format!("/repos/acme/repo-{i}");
        let pr: serde_json::Value = http
            .get(format!("{}{r}/pulls/1", hub.url()))
            .header("authorization", format!("token {PAT}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sha = pr["head"]["sha"].as_str().unwrap().to_string();
        out.extend([
            r.clone(),
            format!("{r}/pulls"),
            format!("{r}/pulls/1"),
            format!("{r}/pulls/2"),
            format!("{r}/pulls/1/files"),
            format!("{r}/commits/{sha}/statuses"),
            format!("{r}/issues/4/comments"),
        ]);
    }
    out
}

#[derive(Default, Debug)]
struct Tally {
    outcomes: HashMap<String, u64>,
    requests: u64,
}

async fn get(http: &reqwest::Client, base: &str, token: &str, path: &str, t: &mut Tally) {
    let r = http
        .get(format!("{base}{path}"))
        .header("authorization", format!("token {token}"))
        .header("accept", "application/vnd.github+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    if let Some(o) = r.headers().get("x-gatehouse-cache") {
        *t.outcomes
            .entry(o.to_str().unwrap().to_string())
            .or_default() += 1;
    }
    t.requests += 1;
    let _ = r.bytes().await.unwrap();
}

async fn job(base: String, token: String, paths: Vec<String>, n: usize) -> Tally {
    let http = reqwest::Client::new();
    let mut t = Tally::default();
    for p in &paths {
        get(&http, &base, &token, p, &mut t).await;
    }
    let r = http
        .post(format!(
            "{base}/repos/acme/repo-{}/issues/4/comments",
            n % REPOS
        ))
        .header("authorization", format!("token {token}"))
        .json(&serde_json::json!({"body": format!("job {n} passed")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    t.requests += 1;
    t
}

async fn replay(base: &str, token: &str, paths: &[String]) -> Tally {
    let mut total = Tally::default();
    for wave in (0..JOBS).collect::<Vec<_>>().chunks(JOB_CONCURRENCY) {
        let mut set = tokio::task::JoinSet::new();
        for &n in wave {
            set.spawn(job(base.to_string(), token.to_string(), paths.to_vec(), n));
        }
        for t in set.join_all().await {
            total.requests += t.requests;
            for (k, v) in t.outcomes {
                *total.outcomes.entry(k).or_default() += v;
            }
        }
    }
    total
}

fn units(hub: &FakeHub, label: &str) -> u64 {
    let s = hub.stats();
    if let Ok(id) = label.parse::<i64>() {
        return s.installations.get(&id).map_or(0, |u| u.units_spent);
    }
    s.tokens.get(label).map_or(0, |u| u.units_spent)
}

async fn replay_bench() {
    let hub = hub(None).await;
    let paths = paths(&hub).await;
    hub.hub().limits.reset_stats();
    let t = Instant::now();
    let direct = replay(hub.url(), PAT, &paths).await;
    let direct_secs = t.elapsed().as_secs_f64();
    let direct_units = units(&hub, "pat:ci");

    let (server, token) = gateway(&hub, "gatehouse-bench-gateway", "");
    let base = server.gateway.clone().unwrap();
    let t = Instant::now();
    let via = replay(&base, &token, &paths).await;
    let via_secs = t.elapsed().as_secs_f64();
    let via_units = units(&hub, "11");
    let app_units = units(&hub, "app:1");
    let hits = via.outcomes.get("hit").copied().unwrap_or(0);
    let reval = via.outcomes.get("revalidated").copied().unwrap_or(0);
    let miss = via.outcomes.get("miss").copied().unwrap_or(0);
    println!(
        "replay: {} requests per run ({} reads, {} writes)",
        direct.requests,
        direct.requests - JOBS as u64,
        JOBS
    );
    println!("  direct:  {direct_units} units in {direct_secs:.2} s");
    println!(
        "  gateway: {via_units} units in {via_secs:.2} s (+{app_units} App-JWT units for token minting), saved {:.1}%",
        100.0 * (1.0 - via_units as f64 / direct_units as f64)
    );
    println!(
        "  reads: {hits} hit (coalesced), {reval} revalidated, {miss} miss; hit ratio {:.1}%",
        100.0 * (hits + reval) as f64 / (hits + reval + miss) as f64
    );
    server.stop();
}

async fn rotation_bench() {
    // Tokens the pool renews 5 minutes early live 2 s for it.
    let hub = hub(Some(302)).await;
    let paths = paths(&hub).await;
    let (server, token) = gateway(&hub, "gatehouse-bench-rotation", "");
    let base = server.gateway.clone().unwrap();
    let http = reqwest::Client::new();
    let pass = |label: &'static str| {
        let (http, base, token, paths) = (http.clone(), base.clone(), token.clone(), paths.clone());
        async move {
            let mut t = Tally::default();
            for p in &paths {
                get(&http, &base, &token, p, &mut t).await;
            }
            let reval = t.outcomes.get("revalidated").copied().unwrap_or(0);
            let miss = t.outcomes.get("miss").copied().unwrap_or(0);
            println!(
                "  {label}: {reval} of {} revalidations answered 304 ({:.1}%)",
                reval + miss,
                100.0 * reval as f64 / (reval + miss) as f64
            );
        }
    };
    println!("rotation:");
    let mut warm = Tally::default();
    for p in &paths {
        get(&http, &base, &token, p, &mut warm).await;
    }
    pass("same token         ").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    pass("right after renewal").await;
    server.stop();
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency_bench() {
    let hub = hub(None).await;
    let (plain, token) = gateway(&hub, "gatehouse-bench-lat", "");
    let (fresh, fresh_token) = gateway(
        &hub,
        "gatehouse-bench-lat-fresh",
        "[[gateway.fresh]]\npath = \"^/repos/\"\nsecs = 3600\n",
    );
    let targets = [
        ("direct to fakehub", hub.url().to_string(), PAT.to_string()),
        (
            "gateway, revalidated",
            plain.gateway.clone().unwrap(),
            token,
        ),
        (
            "gateway, fresh hit",
            fresh.gateway.clone().unwrap(),
            fresh_token,
        ),
    ];
    let http = reqwest::Client::new();
    let path = "/repos/acme/repo-0/pulls/1";
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for (_, base, token) in &targets {
        let mut t = Tally::default();
        get(&http, base, token, path, &mut t).await; // warm: token, cache
    }
    for _round in 0..10 {
        for (i, (_, base, token)) in targets.iter().enumerate() {
            for _ in 0..200 {
                let mut t = Tally::default();
                let start = Instant::now();
                get(&http, base, token, path, &mut t).await;
                samples[i].push(start.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    println!("latency, 2,000 sequential reads each (ms):");
    let mut p50s = Vec::new();
    for (i, (label, _, _)) in targets.iter().enumerate() {
        let s = &mut samples[i];
        s.sort_by(f64::total_cmp);
        p50s.push((pct(s, 0.5), pct(s, 0.99)));
        println!(
            "  {label:<22} p50 {:.3}  p99 {:.3}",
            pct(s, 0.5),
            pct(s, 0.99)
        );
    }
    for i in 1..targets.len() {
        println!(
            "  added by the gateway ({}): p50 {:.3}  p99 {:.3}",
            targets[i].0,
            p50s[i].0 - p50s[0].0,
            p50s[i].1 - p50s[0].1
        );
    }
    plain.stop();
    fresh.stop();
}

async fn throughput_bench() {
    let hub = hub(None).await;
    let paths = paths(&hub).await;
    let (server, token) = gateway(&hub, "gatehouse-bench-tput", "");
    let base = server.gateway.clone().unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let mut warm = Tally::default();
    for p in &paths {
        get(&http, &base, &token, p, &mut warm).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut set = tokio::task::JoinSet::new();
    for c in 0..64 {
        let (http, base, token, paths) = (http.clone(), base.clone(), token.clone(), paths.clone());
        set.spawn(async move {
            let mut t = Tally::default();
            let mut i = c;
            while Instant::now() < deadline {
                get(&http, &base, &token, &paths[i % paths.len()], &mut t).await;
                i += 7;
            }
            t
        });
    }
    let mut total = Tally::default();
    for t in set.join_all().await {
        total.requests += t.requests;
        for (k, v) in t.outcomes {
            *total.outcomes.entry(k).or_default() += v;
        }
    }
    println!(
        "throughput, 64 connections for 5 s over {} resources: {:.0} requests/s ({:?}); fakehub max concurrency per installation {}",
        paths.len(),
        total.requests as f64 / 5.0,
        total.outcomes,
        hub.stats()
            .installations
            .get(&11)
            .map_or(0, |u| u.max_concurrency)
    );
    server.stop();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for a list
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        replay_bench().await;
        rotation_bench().await;
        latency_bench().await;
        throughput_bench().await;
    });
}
